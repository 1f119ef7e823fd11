"""`gumbel-rerank train --config FILE [--resume] [--section.key=value ...]`."""

from __future__ import annotations

import sys

from gumbel_rerank.cli.args import check_overrides, config_parser


def cli_main(argv: list[str]) -> int:
    """Train a reranker; returns 0, or 2 for a config error (message on stderr)."""
    parser = config_parser(
        "gumbel-rerank train",
        "Train a reranker through a frozen reader with a registered objective (objective.name).",
    )
    args, rest = parser.parse_known_args(argv)
    check_overrides(parser, rest)
    from gumbel_rerank.config import ConfigError, load_config
    from gumbel_rerank.training.config import TrainConfig
    from gumbel_rerank.training.train_reranker import run_train

    try:
        cfg = load_config(TrainConfig, args.config, rest + (["--run.resume=true"] if args.resume else []))
        run_train(cfg)
    except ConfigError as err:
        print(f"gumbel-rerank: config error: {err}", file=sys.stderr)
        return 2
    return 0
