"""`gumbel-rerank train-reader --config FILE [--resume] [--section.key=value ...]`."""

from __future__ import annotations

from gumbel_rerank.cli.args import run_config_job


def _load_and_run(config: str | None, overrides: list[str]) -> None:
    from gumbel_rerank.config import load_config
    from gumbel_rerank.training.config import ReaderTrainConfig
    from gumbel_rerank.training.train_reader import run_train_reader

    run_train_reader(load_config(ReaderTrainConfig, config, overrides))


def cli_main(argv: list[str]) -> int:
    """Fine-tune a FiD reader; returns 0, or 2 for a config error (message on stderr)."""
    return run_config_job("gumbel-rerank train-reader", "Fine-tune a FiD reader on our data format.", argv, _load_and_run)
