"""`gumbel-rerank env`: versions and CUDA/bf16 support, for bug reports."""

from __future__ import annotations

import argparse


def cli_main(argv: list[str]) -> int:
    """Print the environment report; returns 0."""
    argparse.ArgumentParser(prog="gumbel-rerank env", description="Versions and accelerator support.").parse_args(argv)
    from gumbel_rerank.envinfo import environment_report, format_report

    print(format_report(environment_report()))
    return 0
