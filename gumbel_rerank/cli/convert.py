"""`gumbel-rerank convert KIND SRC DST`: a published dataset to our question format."""

from __future__ import annotations

import argparse
import sys

from gumbel_rerank.cli.args import positive_int
from gumbel_rerank.data.converters import KINDS, convert
from gumbel_rerank.data.questions import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``convert`` arguments (KIND SRC DST and options) to ``parser``, so the main CLI
    can mount it as a subcommand (with ``func=run_from_args``)."""
    parser.description = (
        "Convert a published QA dataset into the gumbel-rerank question format (JSONL, gold "
        "passages from the dataset's own supervision)."
    )
    parser.add_argument(
        "kind", choices=KINDS, metavar="KIND", help=f"format of SRC: {', '.join(KINDS)}"
    )
    parser.add_argument(
        "src", metavar="SRC", help="the dataset file as published (JSON list or JSONL)"
    )
    parser.add_argument("dst", metavar="DST", help="output JSONL file (written atomically)")
    parser.add_argument(
        "--max-passages", type=positive_int, metavar="N", help="keep the first N passages"
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="stop after N questions (quick runs)"
    )
    parser.add_argument(
        "--keep-unanswerable",
        action="store_true",
        help="musique: keep records with answerable=false (default: skip and count them)",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run a conversion from parsed :func:`add_arguments` arguments; print the report.

    Returns 0 on success, 2 for bad input or options (message on stderr), 1 when the output
    cannot be written.
    """
    prog = "gumbel-rerank convert"
    if args.keep_unanswerable and args.kind != "musique":
        print(f"{prog}: error: --keep-unanswerable only applies to musique", file=sys.stderr)
        return 2
    try:
        report = convert(
            args.kind,
            args.src,
            args.dst,
            max_passages=args.max_passages,
            limit=args.limit,
            keep_unanswerable=args.keep_unanswerable,
        )
    except DataError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the output folder is not writable, or the disk is full
        print(f"{prog}: error: cannot write {args.dst}: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def cli_main(argv: list[str] | None = None) -> int:
    """``gumbel-rerank convert KIND SRC DST [--max-passages N] [--limit N]
    [--keep-unanswerable]``. Returns the exit status (argparse usage errors: 2)."""
    parser = argparse.ArgumentParser(prog="gumbel-rerank convert")
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help or a usage error: argparse has printed the message
        return exit_.code if isinstance(exit_.code, int) else 2
    return run_from_args(args)




if __name__ == "__main__":
    sys.exit(cli_main())
