"""`gumbel-rerank train-reader --config FILE [--resume] [--section.key=value ...]`."""

from __future__ import annotations

import sys

from gumbel_rerank.cli.args import check_overrides, config_parser


def cli_main(argv: list[str]) -> int:
    """Fine-tune a FiD reader; returns 0, or 2 for a config error (message on stderr)."""
    parser = config_parser("gumbel-rerank train-reader", "Fine-tune a FiD reader on our data format.")
    args, rest = parser.parse_known_args(argv)
    check_overrides(parser, rest)
    from gumbel_rerank.config import ConfigError, load_config
    from gumbel_rerank.training.config import ReaderTrainConfig
    from gumbel_rerank.training.train_reader import run_train_reader

    try:
        cfg = load_config(ReaderTrainConfig, args.config, rest + (["--run.resume=true"] if args.resume else []))
        run_train_reader(cfg)
    except ConfigError as err:
        print(f"gumbel-rerank: config error: {err}", file=sys.stderr)
        return 2
    return 0
