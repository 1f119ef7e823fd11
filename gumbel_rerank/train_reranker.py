"""`gumbel-rerank train`: a reranker trained through a frozen reader (G-Rerank)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from gumbel_rerank.config import ConfigError, TrainConfig
from gumbel_rerank.data import load_questions
from gumbel_rerank.distributed import is_main_process
from gumbel_rerank.evaluation import RerankerEvaluator
from gumbel_rerank.objectives.base import Batch
from gumbel_rerank.objectives.gumbel import GumbelRerankLoss
from gumbel_rerank.reader.fid import FiDReader
from gumbel_rerank.rerankers import Reranker
from gumbel_rerank.training import Trainer, resolve_device

OBJECTIVES = ("gumbel",)


def make_collate(questions: Sequence, n_passages: int | None) -> Callable[[list[tuple[int, int]]], Batch]:
    """``[(example index, position in the global batch)] -> Batch`` over ``questions``."""

    def collate(items: list[tuple[int, int]]) -> Batch:
        chosen = [questions[index] for index, _ in items]
        passages = [[{"title": p.title, "text": p.text} for p in q.passages[:n_passages]] for q in chosen]
        n = max(len(p) for p in passages)
        gold = torch.zeros(len(chosen), n, dtype=torch.bool)
        has_answer = torch.zeros(len(chosen), n, dtype=torch.bool)
        for row, q in enumerate(chosen):
            for flags, indices in ((gold, q.gold_indices), (has_answer, q.answer_passages or ())):
                for i in indices:
                    if i < n:
                        flags[row, i] = True
        return Batch(
            ids=[q.id for q in chosen],
            questions=[q.question for q in chosen],
            passages=passages,
            targets=[q.target for q in chosen],
            answers=[list(q.answers) for q in chosen],
            gold=gold,
            has_answer=has_answer,
            positions=[position for _, position in items],
        )

    return collate


def load_reader(cfg: TrainConfig, device: torch.device) -> FiDReader:
    if not cfg.reader.path:
        raise ConfigError("reader.path: a reader checkpoint directory is required")
    reader = FiDReader.from_pretrained(
        cfg.reader.path,
        tokenizer=cfg.reader.tokenizer,
        base_config=cfg.reader.base_config,
        config=cfg.reader.settings,
    )
    return reader.to(device)


def run_train(cfg: TrainConfig) -> dict[str, float]:
    """Train ``cfg.reranker`` with ``cfg.objective`` through ``cfg.reader``; returns last metrics."""
    if cfg.objective.name not in OBJECTIVES:
        raise ConfigError(f"objective.name: {cfg.objective.name!r} is not one of {OBJECTIVES}")
    if not cfg.data.train:
        raise ConfigError("data.train: a training question file is required")
    if not cfg.reranker.path:
        raise ConfigError("reranker.path: a reranker directory (HF cross-encoder or T5) is required")
    device = resolve_device(cfg.run.device)
    reader = load_reader(cfg, device)
    try:
        reranker = Reranker.from_pretrained(cfg.reranker.path, **cfg.reranker.settings)
    except TypeError as err:  # an unknown settings field
        raise ConfigError(f"reranker.settings: {err}") from err
    if cfg.reranker.gradient_checkpointing:
        reranker.gradient_checkpointing_enable()
    train = load_questions(
        cfg.data.train,
        gold_field=cfg.data.gold_field,
        skip_invalid=cfg.data.skip_invalid,
        max_passages=cfg.data.n_passages,
    )
    evaluate = None
    if cfg.data.dev:
        dev = load_questions(
            cfg.data.dev,
            gold_field=cfg.data.gold_field,
            skip_invalid=cfg.data.skip_invalid,
            max_passages=cfg.data.n_passages,
        )
        subset = [dev[i] for i in range(min(cfg.data.dev_subset, len(dev)))]
        evaluate = RerankerEvaluator(reader, subset, k=cfg.objective.mask.k, n_passages=cfg.data.n_passages)
    objective = GumbelRerankLoss(reader, cfg.objective.mask, mask_samples=cfg.objective.mask_samples)

    def save(module: Reranker, directory: Path) -> None:
        module.save_pretrained(directory)

    trainer = Trainer(
        module=reranker,
        objective=objective,
        collate=make_collate(train, cfg.data.n_passages),
        n_examples=len(train),
        optim=cfg.optim,
        run=cfg.run,
        save_module=save,
        evaluate=evaluate,
        config=cfg,
        extra_run_files={"reader.json": reader.load_report.to_dict() if reader.load_report else {}},
        device=device,
    )
    last = trainer.fit()
    final = Path(cfg.run.output_dir) / "model"
    finished = final.is_dir() and not trainer.preempted
    if cfg.run.final_report and evaluate is not None and finished and is_main_process():
        write_final_report(cfg, reader, final, evaluate.questions)
    return last


def write_final_report(cfg: TrainConfig, reader: FiDReader, model_dir: Path, questions: list) -> None:
    """Full evaluation of the trained reranker on the dev subset, with plots and curves."""
    from gumbel_rerank.evaluation import evaluate
    from gumbel_rerank.report import write_report

    reranker = Reranker.from_pretrained(model_dir).to(reader.device).eval()
    k = cfg.objective.mask.k
    report = evaluate(
        questions,
        reader=reader,
        reranker=reranker,
        em_ks=sorted({1, k}),
        n_passages=cfg.data.n_passages,
        max_new_tokens=cfg.reader.settings.answer_maxlength,
    )
    out = Path(cfg.run.output_dir)
    write_report(report, out / "report", metrics_log=out / "metrics.jsonl")
