"""The `gumbel-rerank` command line: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import sys


def _env(args: argparse.Namespace) -> int:
    from gumbel_rerank.envinfo import environment_report, format_report

    print(format_report(environment_report()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gumbel-rerank",
        description="Train rerankers end to end from a frozen FiD reader's LM loss.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="print versions and CUDA/bf16 support (paste into bug reports)")
    env.set_defaults(func=_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
