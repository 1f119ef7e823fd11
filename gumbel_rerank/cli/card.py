"""`gumbel-rerank card RUN_DIR [--model DIR] [--test-report FILE]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cli_main(argv: list[str]) -> int:
    """Rewrite the model card of a run's reranker; 0, or 1 naming what is missing."""
    parser = argparse.ArgumentParser(
        prog="gumbel-rerank card",
        description="Rewrite the model card (README.md) and sentence-transformers files of a trained reranker from "
        "its run folder (objective, reader, data, steps, seed, the dev report), e.g. after a later evaluation.",
    )
    parser.add_argument("run_dir", type=Path, help="the training run folder (config.yaml, report/, model/)")
    parser.add_argument("--model", type=Path, help="the reranker folder (default RUN_DIR/model)")
    parser.add_argument("--test-report", type=Path, help="an evaluation report.json on test questions to include")
    args = parser.parse_args(argv)
    from gumbel_rerank.training.run_card import write_run_card

    try:
        test = json.loads(args.test_report.read_text()) if args.test_report else None
        path = write_run_card(args.run_dir, args.model, test_report=test)
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as err:
        print(f"gumbel-rerank card: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0
