"""`gumbel-rerank rerank --input FILE --output FILE --reranker DIR ...`: streaming, resumable."""

from __future__ import annotations

import argparse
import sys

from gumbel_rerank.data.questions import DataError
from gumbel_rerank.envinfo import DEVICES
from gumbel_rerank.inference.streaming import INPUT_FORMATS, OUTPUT_FORMATS, rerank


def build_parser(prog: str = "gumbel-rerank rerank") -> argparse.ArgumentParser:
    """The ``rerank`` options (input, output, reranker, formats, batching, device, resume)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Rerank candidate passages with a trained reranker. Streams the input in batches and "
            "resumes an interrupted run when the same command is run again."
        ),
    )
    parser.add_argument("--input", required=True, help="our JSON/JSONL questions, or a TREC run")
    parser.add_argument("--output", required=True, help="output file (JSONL or TREC run)")
    parser.add_argument("--reranker", required=True, help="reranker directory (save_pretrained)")
    parser.add_argument("--input-format", choices=INPUT_FORMATS, default="auto")
    parser.add_argument("--collection", help="TSV/JSONL passages (TREC input)")
    parser.add_argument("--queries", help="TSV/JSONL queries (TREC input)")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="ours")
    parser.add_argument("--batch-size", type=int, default=16, help="questions per batch")
    parser.add_argument("--max-passages", type=int, help="rerank only the first N candidates")
    parser.add_argument("--top-k", type=int, help="write only the best K passages per question")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the reranker with frozen weights: ~1.9x faster on CPU after a one-off "
        "compile (~17 s); needs a C++ compiler, else it warns and runs uncompiled",
    )  # fmt: skip
    parser.add_argument("--run-tag", default="gumbel_rerank", help="tag column of a TREC output")
    parser.add_argument("--index-dir", help="where collection indexes are kept")
    parser.add_argument(
        "--no-resume", action="store_true", help="discard a partial run and start over"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def cli_main(argv: list[str] | None = None) -> int:
    """``gumbel-rerank rerank ...``; returns the exit status (2 for bad input or options)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on bad usage, 0 on --help
        return int(e.code or 0)
    try:
        report = rerank(
            args.input,
            args.output,
            args.reranker,
            input_format=args.input_format,
            collection=args.collection,
            queries=args.queries,
            output_format=args.output_format,
            batch_size=args.batch_size,
            max_passages=args.max_passages,
            top_k=args.top_k,
            device=args.device,
            bf16=args.bf16,
            compile=args.compile,
            resume=not args.no_resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            run_tag=args.run_tag,
            index_dir=args.index_dir,
        )
    except (DataError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as err:  # a full disk or a write error: the message names the file
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    resumed = f" ({report.resumed} done earlier)" if report.resumed else ""
    print(
        f"reranked {report.records} questions{resumed}, {report.passages} passages scored in "
        f"{report.seconds:.1f} s on {report.device}{' (compiled)' if report.compiled else ''} -> {report.output}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
