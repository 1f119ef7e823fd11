"""`gumbel-rerank train --config FILE [--resume] [--section.key=value ...]`."""

from __future__ import annotations

from gumbel_rerank.cli.args import run_config_job


def _load_and_run(config: str | None, overrides: list[str]) -> None:
    from gumbel_rerank.config import load_config
    from gumbel_rerank.training.config import TrainConfig
    from gumbel_rerank.training.train_reranker import run_train

    run_train(load_config(TrainConfig, config, overrides))


def cli_main(argv: list[str]) -> int:
    """Train a reranker; returns 0, or 2 for a config error (message on stderr)."""
    return run_config_job(
        "gumbel-rerank train",
        "Train a reranker through a frozen reader with a registered objective (objective.name).",
        argv,
        _load_and_run,
    )
