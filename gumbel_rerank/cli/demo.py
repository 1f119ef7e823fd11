"""`gumbel-rerank demo [--out DIR] [--section.key=value ...]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gumbel_rerank.cli.args import check_overrides, positive_int
from gumbel_rerank.config import ConfigError
from gumbel_rerank.demo.command import DemoOptions, reader_path, run_demo


def cli_main(argv: list[str]) -> int:
    """``gumbel-rerank demo``."""
    parser = argparse.ArgumentParser(
        prog="gumbel-rerank demo",
        description="G-Rerank against BM25, the untrained reranker and PDist on the embedded two-hop "
        "data: reading check, training, one table. Rerunning the same command resumes. Any key of "
        "demo/assets/demo_recipe.yaml can be overridden: --run.seed=1, --optim.max_steps=50",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    parser.add_argument(
        "--reader",
        default="chain",
        help="chain (the shipped FiD chain reader) or a reader directory (a decoder-only LM, such as "
        "`demo-reader --recipe decoder` trains, reads the passages in parallel with that recipe's settings)",
    )
    parser.add_argument("--train-questions", type=positive_int, default=DemoOptions.train_questions)
    parser.add_argument(
        "--test-questions", type=positive_int, default=None, help="first N test questions (recipe: 300)"
    )
    parser.add_argument("--check-questions", type=positive_int, default=DemoOptions.check_questions)
    args, rest = parser.parse_known_args(argv)
    check_overrides(parser, rest)
    options = DemoOptions(
        out=args.out,
        reader=reader_path(args.reader),
        train_questions=args.train_questions,
        test_questions=args.test_questions,
        check_questions=args.check_questions,
    )
    try:
        run_demo(options, rest)
    except ConfigError as err:
        print(f"gumbel-rerank demo: config error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, RuntimeError) as err:
        print(f"gumbel-rerank demo: {err}", file=sys.stderr)
        return 1
    return 0
