"""`gumbel-rerank train`: a reranker trained by a registered objective (G-Rerank by default).

The job reads straight through: load the reader and the reranker, the questions, build the
objective the config names (``objectives.registry.build_objective``), hand all of it to the
:class:`~gumbel_rerank.training.loop.Trainer`, and write the final dev report.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch

from gumbel_rerank.config import ConfigError, to_dict
from gumbel_rerank.data import QuestionSet, load_questions
from gumbel_rerank.envinfo import resolve_device
from gumbel_rerank.evaluation import RerankerEvaluator, evaluate, write_report
from gumbel_rerank.objectives.base import Batch, Objective
from gumbel_rerank.objectives.registry import build_objective
from gumbel_rerank.reader.base import Reader
from gumbel_rerank.reader.encoder_cache import EncoderCache
from gumbel_rerank.reader.loading import load_reader_from
from gumbel_rerank.rerankers import Reranker, RerankerConfig
from gumbel_rerank.training.collate import make_collate
from gumbel_rerank.training.compute import CountingReader
from gumbel_rerank.training.config import DataConfig, ReaderTrainConfig, TrainConfig
from gumbel_rerank.training.distributed import is_main_process
from gumbel_rerank.training.loop import Trainer
from gumbel_rerank.training.run_card import write_run_card
from gumbel_rerank.training.stages import run_stages


def load_reader(cfg: TrainConfig | ReaderTrainConfig, device: torch.device, trainable: bool = False) -> Reader:
    """The reader ``cfg.reader`` (of its ``kind``) on ``device``; frozen unless ``trainable``."""
    section = cfg.reader
    if not section.path:
        raise ConfigError("reader.path: a reader checkpoint directory is required")
    reader = load_reader_from(
        section.kind,
        section.path,
        settings=section.settings,
        tokenizer=section.tokenizer,
        base_config=section.base_config,
        parallel_lm=section.parallel_lm,
        trainable=trainable,
    )
    return reader.to(device)


def load_reranker(cfg: TrainConfig) -> Reranker:
    """The reranker to train. A fresh head (a bare encoder directory) is seeded by ``run.seed``,
    so two runs of one config start from, and end with, the same weights."""
    if not cfg.reranker.path:
        raise ConfigError("reranker.path: a reranker directory (HF cross-encoder or T5) is required")
    try:
        # each given field checked on its own first: a bad value is the config's fault, not the
        # directory's (the directory's saved settings fill in the rest when it loads)
        RerankerConfig(**cfg.reranker.settings)
    except (TypeError, ValueError) as err:  # an unknown field or a bad value
        raise ConfigError(f"reranker.settings: {err}") from err
    reranker = Reranker.from_pretrained(cfg.reranker.path, seed=cfg.run.seed, **cfg.reranker.settings)
    if cfg.reranker.gradient_checkpointing:
        reranker.gradient_checkpointing_enable()
    return reranker


def load_split(data: DataConfig, path: str) -> QuestionSet:
    """One question file with the run's data settings."""
    return load_questions(
        path,
        gold_field=data.gold_field,
        skip_invalid=data.skip_invalid,
        max_passages=data.n_passages,
        score_field=data.score_field,
    )


def run_train(cfg: TrainConfig) -> dict[str, float]:
    """Train ``cfg.reranker`` with ``cfg.objective`` through ``cfg.reader`` (or, with
    ``cfg.stages``, stage after stage); returns the last logged metrics."""
    if cfg.stages:
        return run_stages(cfg, run_train)
    trainer, reader, evaluator = build_trainer(cfg)
    last = trainer.fit()
    final = Path(cfg.run.output_dir) / "model"
    finished = final.is_dir() and not trainer.preempted
    if cfg.run.final_report and evaluator is not None and finished and is_main_process():
        write_final_report(cfg, reader, final, evaluator.questions)
    if finished and is_main_process():
        write_run_card(Path(cfg.run.output_dir))  # model/README.md: how it was trained, its dev numbers
    return last


def build_trainer(cfg: TrainConfig) -> tuple[Trainer, Reader, RerankerEvaluator | None]:
    """The :class:`Trainer` of one single-stage run of ``cfg`` (reader, reranker, data,
    objective, dev evaluator), not started; also the reader and the evaluator (None without
    ``data.dev``). Benchmarks time its steps; :func:`run_train` fits it."""
    if not cfg.data.train:
        raise ConfigError("data.train: a training question file is required")
    device = resolve_device(cfg.run.device)
    reader = load_reader(cfg, device)
    reranker = load_reranker(cfg)
    train = load_split(cfg.data, cfg.data.train)
    evaluator = None
    if cfg.data.dev:
        dev = load_split(cfg.data, cfg.data.dev)
        subset = [dev[i] for i in range(min(cfg.data.dev_subset, len(dev)))]
        evaluator = RerankerEvaluator(
            reader,
            subset,
            k=cfg.eval_k(),
            ks=sorted({*cfg.eval.ks, cfg.eval_k()}),
            n_passages=cfg.data.n_passages,
            evidence=cfg.data.evidence_roles,
        )
    if cfg.reader.encoder_cache_mib > 0:
        expected = len(train) + (len(evaluator.questions) if evaluator is not None else 0)
        reader.use_encoder_cache(EncoderCache(cfg.reader.encoder_cache_mib, expected_questions=expected))
    # the objective reads through a counter of its reader work (the compare table's compute
    # columns); the evaluator reads the reader itself, so evaluations are not counted
    counting = CountingReader(reader)
    objective = build_objective(cfg.objective.name, cfg.objective.settings, reader=counting)

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
        evaluate=evaluator,
        config=cfg,
        extra_run_files={
            "reader.json": reader.load_report.to_dict() if reader.load_report else {},
            "objective.json": describe(objective, cfg),
        },
        device=device,
        step_diagnostics=lambda batch: {**exploration_metrics(objective, batch), **role_metrics(objective, batch)},
        log_extras=lambda: {**cache_metrics(reader), **reader_work(counting, trainer, objective)},
    )
    return trainer, reader, evaluator


def reader_work(counting: CountingReader, trainer: Trainer, objective: Objective) -> dict[str, float]:
    """The objective's reader work since this process started (``reader/<count>``), the step
    counting started at (``reader/since_step``: a resumed run counts afresh, and its caches
    start empty too, so the ratio per question stays right) and, for objectives that cache
    reader targets, the seconds spent computing them (``reader/target_seconds``)."""
    out = {f"reader/{name}": float(value) for name, value in asdict(counting.counts).items()}
    out["reader/since_step"] = float(trainer.start_step)
    cache = getattr(objective, "cache", None)
    if cache is not None and getattr(cache, "enabled", False):
        out["reader/target_seconds"] = float(cache.seconds)
    return out


@torch.no_grad()
def exploration_metrics(objective: Objective, batch: Batch) -> dict[str, float]:
    """How often the passages that matter were among what the objective sampled this step.

    For objectives that sample a selection (G-Rerank's ``last_selection``, (B, k)): the share
    of direct gold passages (gold, containing the answer) and of indirect ones (gold without
    the answer: bridges) that one of the k samples picked. Computed here, in the trainer, from
    gold flags the objective itself never reads; NaN when the batch has none of a kind (every
    rank logs the same keys).
    """
    selection = getattr(objective, "last_selection", None)
    if selection is None or batch.gold is None:
        return {}
    n = batch.gold.shape[1]
    picked = torch.zeros(len(batch), n + 1, dtype=torch.bool)
    picked.scatter_(1, selection.cpu().clamp(min=-1) % (n + 1), True)  # -1 lands in the spare column
    picked = picked[:, :n]
    direct = batch.gold & batch.has_answer
    out = {}
    for name, kind in (("sampled_gold_direct", direct), ("sampled_gold_indirect", batch.gold & ~direct)):
        out[name] = float((picked & kind).sum() / kind.sum()) if bool(kind.any()) else math.nan
    return out


#: Passage roles of the demo data grouped for the per-role diagnostics (others: "rest").
ROLE_GROUPS = {
    "bridge": "bridge",
    "answer": "answer",
    "bridge:restated": "bridge_restated",
    "answer:restated": "answer_restated",
    "distractor:linked_attribute": "wrong_chain",
    "distractor:entity_link": "entity_link",
    "distractor:entity_trap": "trap",
}


@torch.no_grad()
def role_metrics(objective: Objective, batch: Batch) -> dict[str, float]:
    """Per passage role (data with ``role`` fields, e.g. the demo's): the mean raw score, the
    score the mask saw (standardised or raw), how often one of the k samples picked it, how
    often the hard top-k holds it, and the mean gradient of the loss w.r.t. its score and its
    log mask entry, from the objective's last logged step (``last_passages``). Keys
    ``role/<group>/<what>``; groups of :data:`ROLE_GROUPS` (the rest: "rest"). Nothing for
    objectives or data without them. Reads roles the objective itself never sees."""
    kept = getattr(objective, "last_passages", None)
    if not kept or batch.passage_roles is None or not any(r for row in batch.passage_roles for r in row):
        return {}
    n = kept["score"].shape[1]
    groups = [[ROLE_GROUPS.get(r, "rest") if r is not None else None for r in row[:n]] for row in batch.passage_roles]
    picked = torch.zeros(len(batch), n + 1, dtype=torch.bool)
    selection = getattr(objective, "last_selection", None)
    if selection is not None:
        picked.scatter_(1, selection.cpu().clamp(min=-1) % (n + 1), True)
    k = int(objective.settings.mask.k)
    in_top = torch.zeros(len(batch), n, dtype=torch.bool)
    top = kept["z"].cpu().masked_fill(~kept["valid"].cpu(), float("-inf")).topk(min(k, n), dim=1).indices
    in_top.scatter_(1, top, True)
    in_top &= kept["valid"].cpu()
    values = {"score": kept["score"], "z": kept["z"], "sampled": picked[:, :n].float(), "in_topk": in_top.float()}
    values.update({name: kept[name] for name in ("grad_score", "grad_log_mask") if name in kept})
    out = {}
    for group in [*dict.fromkeys(ROLE_GROUPS.values()), "rest"]:
        where = torch.tensor([[g == group for g in row] + [False] * (n - len(row)) for row in groups])
        for what, tensor in values.items():
            out[f"role/{group}/{what}"] = float(tensor.cpu()[where].mean()) if bool(where.any()) else math.nan
    return out


def cache_metrics(reader: Reader) -> dict[str, float]:
    """The encoder cache's running counts (questions served from it, encoded, held, MiB), or
    nothing without a cache; logged with each logging step's metrics."""
    cache = reader.encoder_cache
    if cache is None:
        return {}
    stats = cache.stats
    return {
        "encoder_cache/hits": float(stats.hits),
        "encoder_cache/misses": float(stats.misses),
        "encoder_cache/entries": float(stats.entries),
        "encoder_cache/mib": stats.bytes / 2**20,
    }


def describe(objective: Objective, cfg: TrainConfig) -> dict[str, object]:
    """What the run folder says about the objective: name, settings, whether it reads labels,
    and which targets it caches (``objective.json``)."""
    record = {"name": cfg.objective.name, "uses_labels": cfg.objective.spec.uses_labels}
    record["settings"] = to_dict(cfg.objective.settings)
    describe_own = getattr(objective, "describe", None)
    if describe_own is not None:
        record.update(describe_own())
    return record


def write_final_report(cfg: TrainConfig, reader: Reader, model_dir: Path, questions: list) -> None:
    """Full evaluation of the trained reranker on the dev subset, with plots and curves."""
    reranker = Reranker.from_pretrained(model_dir).to(reader.device).eval()
    report = evaluate(
        questions,
        reader=reader,
        reranker=reranker,
        em_ks=sorted({1, cfg.eval_k()}),
        n_passages=cfg.data.n_passages,
        max_new_tokens=cfg.reader.settings.answer_maxlength,
        evidence=cfg.data.evidence_roles,
    )
    out = Path(cfg.run.output_dir)
    write_report(report, out / "report", metrics_log=out / "metrics.jsonl")
