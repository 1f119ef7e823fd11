"""`gumbel-rerank evaluate --data FILE [--reranker DIR] [--reader DIR] ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from gumbel_rerank.cli.args import positive_int
from gumbel_rerank.evaluation import DEFAULT_EM_KS, DEFAULT_KS, evaluate


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``evaluate`` options to ``parser`` (for a subcommand); returns it."""
    parser.add_argument("--data", required=True, type=Path, help="question file (JSON or JSONL)")
    parser.add_argument("--reranker", type=Path, help="reranker directory; omit for retriever only")
    parser.add_argument("--reader", type=Path, help="FiD reader directory, for end-to-end EM/F1")
    parser.add_argument(
        "--reader-tokenizer", type=Path, help="reader tokenizer directory (default: --reader)"
    )
    parser.add_argument(
        "--base-config", help="reader T5 configuration: t5-base, t5-large or a config.json path"
    )
    parser.add_argument("--text-maxlength", type=positive_int, help="reader tokens per passage")
    parser.add_argument(
        "--k", nargs="+", type=positive_int, default=list(DEFAULT_KS), help="ranking cut-offs"
    )
    parser.add_argument(
        "--em-k",
        nargs="+",
        type=positive_int,
        default=list(DEFAULT_EM_KS),
        help="passages the reader reads for EM/F1",
    )
    parser.add_argument(
        "--n-passages", type=positive_int, help="candidates per question (first N)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--max-new-tokens", type=positive_int, help="reader generation length")
    parser.add_argument("--gold-field", help="per-passage gold flag (default: auto-detect)")
    parser.add_argument("--out", type=Path, help="write report.json, report.md and plots here")
    parser.add_argument(
        "--metrics-log", type=Path, help="a training metrics.jsonl: adds training_curves.png"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--bf16", action="store_true", help="run reader and reranker in bfloat16")
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the reranker with frozen weights (faster scoring after a one-off compile)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _fail(message: str) -> int:
    """Print one ``gumbel-rerank evaluate: error: ...`` line to stderr; returns exit status 2."""
    print(f"gumbel-rerank evaluate: error: {message}", file=sys.stderr)
    return 2


def _argument_error(args: argparse.Namespace) -> str | None:
    """The message of an inconsistent option combination, or None when the options fit."""
    if args.reader is None and (args.reader_tokenizer or args.base_config or args.text_maxlength):
        return "--reader-tokenizer, --base-config and --text-maxlength need --reader"
    if args.metrics_log is not None and args.out is None:
        return "--metrics-log needs --out (the training curves are written there)"
    if args.device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: CUDA is not available"
    return None


def _load_models(args: argparse.Namespace, device: torch.device, dtype: str) -> tuple[Any, Any]:
    """``(reranker or None, reader or None)`` from ``--reranker`` / ``--reader``, on ``device``.

    Raises the loaders' errors (OSError for missing directories, CheckpointError for bad
    reader checkpoints) for :func:`run_cli` to report.
    """
    reranker = None
    if args.reranker is not None:
        from gumbel_rerank.rerankers.model import Reranker

        reranker = Reranker.from_pretrained(args.reranker).to(device)
        if args.bf16:
            reranker = reranker.to(torch.bfloat16)  # scores come back as float32
        if args.compile:
            reranker.compile_for_inference()
    reader = None
    if args.reader is not None:
        from gumbel_rerank.reader.fid import FiDReader, FiDReaderConfig

        settings: dict[str, Any] = {"dtype": dtype}
        if args.text_maxlength is not None:
            settings["text_maxlength"] = args.text_maxlength
        reader = FiDReader.from_pretrained(
            args.reader,
            tokenizer=args.reader_tokenizer,
            base_config=args.base_config,
            config=FiDReaderConfig(**settings),
        ).to(device)
    return reranker, reader


def run_cli(args: argparse.Namespace) -> int:
    """Run ``evaluate`` from parsed :func:`add_arguments` options; returns the exit status.

    Bad paths (missing data, reader or reranker directory, metrics log) and invalid data or
    checkpoints print one ``gumbel-rerank evaluate: error: ...`` line naming the path and return
    2, before any model runs.
    """
    from gumbel_rerank.data.questions import DataError, load_questions
    from gumbel_rerank.evaluation.report import render_markdown, write_report
    from gumbel_rerank.reader.checkpoints import CheckpointError

    message = _argument_error(args)
    if message is not None:
        return _fail(message)
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    dtype = "bfloat16" if args.bf16 else "float32"
    try:
        if args.metrics_log is not None and not args.metrics_log.is_file():
            raise FileNotFoundError(f"{args.metrics_log}: metrics log not found")
        questions = load_questions(
            args.data, gold_field=args.gold_field, max_passages=args.n_passages
        )
        reranker, reader = _load_models(args, device, dtype)
    except (DataError, CheckpointError, OSError) as err:
        # OSError includes FileNotFoundError (a missing reranker directory, metrics log).
        return _fail(str(err))

    report = evaluate(
        questions,
        reader=reader,
        reranker=reranker,
        ks=args.k,
        em_ks=args.em_k,
        batch_size=args.batch_size,
        n_passages=args.n_passages,
        progress=not args.no_progress,
        max_new_tokens=args.max_new_tokens,
    )
    report["config"].update(
        {
            "data": str(args.data),
            "reranker_path": None if args.reranker is None else str(args.reranker),
            "reader_path": None if args.reader is None else str(args.reader),
            "device": str(device),
            "dtype": dtype,
            # whether the compiled model served the scores (False: not asked, or it fell back)
            "reranker_compiled": reranker is not None and reranker.is_compiled,
        }
    )
    print(render_markdown(report))
    if args.out is not None:
        try:
            paths = write_report(report, args.out, args.metrics_log)
        except OSError as err:
            return _fail(str(err))
        print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def cli_main(argv: list[str] | None = None) -> int:
    """``gumbel-rerank evaluate --data FILE [--reranker DIR] [--reader DIR] ...``.

    Prints the markdown tables, writes the report to ``--out``; returns the exit status (0 ok,
    2 bad arguments or paths).
    """
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="gumbel-rerank evaluate",
            description="Ranking metrics of the retriever and a reranker, and end-to-end EM/F1.",
        )
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on bad arguments (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    return run_cli(args)
