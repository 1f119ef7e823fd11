"""`gumbel-rerank train-reader`: fine-tune a FiD reader on our data format.

FiD's own training code no longer runs on current transformers; this uses the same formatting,
encoding and loss code as the frozen reader of reranker training, and the same loop, engine,
checkpoints and logging as `train`. The result (``<output_dir>/model``) is a plain HF T5
directory with its tokenizer, which ``FiDReader.from_pretrained`` loads. With
``reader.kind: parallel_lm`` the same job fine-tunes a causal LM to read passages in parallel
(blocks encoded on their own, the answer attending to all of them), and the result is a plain
HF causal LM directory.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gumbel_rerank.config import ConfigError
from gumbel_rerank.data.questions import load_questions
from gumbel_rerank.envinfo import resolve_device
from gumbel_rerank.evaluation import ReaderEvaluator
from gumbel_rerank.objectives.reader_nll import ReaderNLLSettings
from gumbel_rerank.objectives.registry import build_objective
from gumbel_rerank.reader.checkpoints import LEGACY_BIAS_KEY
from gumbel_rerank.training.collate import make_collate
from gumbel_rerank.training.config import ReaderTrainConfig
from gumbel_rerank.training.loop import Trainer
from gumbel_rerank.training.train_reranker import load_reader


def run_train_reader(cfg: ReaderTrainConfig) -> dict[str, float]:
    """Fine-tune ``cfg.reader`` on ``cfg.data``; returns the last logged metrics."""
    if not cfg.reader.path:
        raise ConfigError("reader.path: the reader to start from (HF T5 or FiD checkpoint directory)")
    if not cfg.data.train:
        raise ConfigError("data.train: a training question file is required")
    device = resolve_device(cfg.run.device)
    reader = load_reader(cfg, device, trainable=True)
    train = load_questions(cfg.data.train, skip_invalid=cfg.data.skip_invalid, max_passages=cfg.data.n_passages)
    evaluate = None
    if cfg.data.dev:
        dev = load_questions(cfg.data.dev, skip_invalid=cfg.data.skip_invalid, max_passages=cfg.data.n_passages)
        subset = [dev[i] for i in range(min(cfg.data.dev_subset, len(dev)))]
        evaluate = ReaderEvaluator(reader, subset, n_passages=cfg.data.n_passages, max_new_tokens=cfg.eval_answer_maxlength)

    def save(module: torch.nn.Module, directory: Path) -> None:
        module.save_pretrained(str(directory))
        reader.tokenizer.save_pretrained(str(directory))
        if getattr(reader, "use_legacy_bias", False):
            # trained with FiD's legacy cross-attention bias: export it under its key so the
            # reader loader runs the fine-tuned model exactly as it was trained
            weights = directory / "model.safetensors"
            state = load_file(str(weights))
            state[LEGACY_BIAS_KEY] = reader.legacy_bias_weight.detach().cpu().contiguous()
            save_file(state, str(weights), metadata={"format": "pt"})

    trainer = Trainer(
        module=reader.model,
        objective=build_objective("reader_nll", ReaderNLLSettings(cfg.curriculum), reader=reader),
        collate=make_collate(train, cfg.data.n_passages),
        n_examples=len(train),
        optim=cfg.optim,
        run=cfg.run,
        save_module=save,
        evaluate=evaluate,
        config=cfg,
        device=device,
    )
    return trainer.fit()
