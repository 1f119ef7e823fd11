"""The `gumbel-rerank` command line: one module per subcommand, imported only when it runs.

``import gumbel_rerank.cli`` loads nothing but argparse, so ``gumbel-rerank --help`` and
``gumbel-rerank env`` answer at once; a subcommand's module imports the library when it runs.
Nothing in the library imports this package (an import-linter contract).
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module under gumbel_rerank.cli, one-line help)
SUBCOMMANDS = {
    "env": ("env", "print versions and CUDA/bf16 support (paste into bug reports)"),
    "train": ("train", "train a reranker through a frozen reader (G-Rerank or another objective)"),
    "train-reader": ("train_reader", "fine-tune a FiD reader on our data format"),
    "compare": ("compare", "train several objectives on equal terms and write one table (default: the demo)"),
    "convert": ("convert", "convert a raw dataset (HotpotQA, MuSiQue, 2Wiki, FiD NQ/TQA) to our format"),
    "evaluate": ("evaluate", "Recall/MRR/nDCG, indirect-evidence subset, EM/F1; JSON, markdown, plots"),
    "rerank": ("rerank", "rerank our JSON/JSONL or a TREC run with a trained reranker (streaming, resumable)"),
    "demo": ("demo", "the demo: G-Rerank on the embedded two-hop data, with baselines and a report"),
    "demo-reader": ("demo_reader", "remake the demo's shipped reader (demo data, tokenizer, train-reader recipe)"),
    "card": ("card", "rewrite a trained reranker's model card (README.md) from its run folder"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: lists the subcommands (each parses its own arguments)."""
    parser = argparse.ArgumentParser(
        prog="gumbel-rerank",
        description="Train rerankers end to end from a frozen FiD reader's LM loss.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``gumbel-rerank ARGV``; returns the exit status (2: usage or config error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(f"gumbel_rerank.cli.{SUBCOMMANDS[argv[0]][0]}")
        return module.cli_main(argv[1:])
    build_parser().parse_args(argv)  # --help, or a usage error naming the bad command
    return 2


if __name__ == "__main__":
    sys.exit(main())
