"""`gumbel-rerank compare` on the demo: every objective on the embedded two-hop data, through
the shipped chain reader, from the same MiniLM start; the table with the reader's reading check.

Which passages the reader actually uses decides which objective can find them, so the reading
check (EM with all passages, without the bridge, ...) heads the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gumbel_rerank.demo.command import (
    DEMO_CONTEXTS,
    DEMO_TRAIN_QUESTIONS,
    check_reader_directory,
    demo_config,
    prepare_data,
    run_reading_check,
)
from gumbel_rerank.demo.reader_recipe import ASSETS, SHIPPED_READER
from gumbel_rerank.demo.reading_check import format_reading_check
from gumbel_rerank.training.compare import run_compare
from gumbel_rerank.training.config import CompareConfig, ObjectiveConfig

RECIPE = ASSETS / "compare_recipe.yaml"


def compare_config(out: Path, reader: Path = SHIPPED_READER, overrides: list[str] | None = None) -> CompareConfig:
    """The compare recipe with this run's paths, then ``overrides`` (which win, paths included)."""
    return demo_config(out, reader, overrides, recipe=RECIPE)


def select_objectives(cfg: CompareConfig, names: list[str]) -> None:
    """Keep only ``names`` (in that order), each with the recipe's settings when it has them."""
    recipe = {o.name: o for o in cfg.compare.objectives}
    cfg.compare.objectives = [recipe.get(name) or ObjectiveConfig(name=name) for name in names]


def run_demo_compare(
    out: Path,
    reader: Path = SHIPPED_READER,
    train_questions: int = DEMO_TRAIN_QUESTIONS,
    check_questions: int = 300,
    objectives: list[str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Write the demo data, check the reader, train and evaluate every objective; returns
    ``{"table", "seconds", "reading_check"}`` (the files are in ``out``)."""
    cfg = compare_config(out, reader, overrides)
    check_reader_directory(cfg)
    if objectives:
        select_objectives(cfg, objectives)
    prepare_data(out, train_questions)
    check = run_reading_check(cfg, out / "data" / "dev.jsonl", check_questions, DEMO_CONTEXTS)
    header = f"Reading check of the reader (dev, {check['n']['all']} questions, EM):\n\n{format_reading_check(check)}"
    print(header, flush=True)
    result = run_compare(cfg, header)
    return {**result, "reading_check": check}
