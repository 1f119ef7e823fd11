"""`gumbel-rerank compare` on the demo: every objective on the embedded two-hop data, through
the shipped chain reader, from the same MiniLM start; the table with the reader's reading check.

Which passages the reader actually uses decides which objective can find them, so the reading
check (EM with all passages, without the bridge, ...) heads the table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gumbel_rerank.demo.command import (
    DEMO_CONTEXTS,
    DEMO_TRAIN_QUESTIONS,
    check_reader_directory,
    cue_groups,
    demo_config,
    demo_spec,
    prepare_data,
    reader_path,
    run_reading_check,
)
from gumbel_rerank.demo.reader_recipe import ASSETS, REDUNDANT, REDUNDANT_READER, SHIPPED_READER
from gumbel_rerank.demo.reading_check import REDUNDANT_CONTEXTS, format_reading_check
from gumbel_rerank.training.compare import run_compare
from gumbel_rerank.training.config import CompareConfig, ObjectiveConfig
from gumbel_rerank.training.protocol import run_protocol

RECIPE = ASSETS / "compare_recipe.yaml"
#: The recipe of ``compare --tune`` on the demo data (the tuning protocol's budget).
PROTOCOL_RECIPE = ASSETS / "protocol_recipe.yaml"
#: Demo data settings: "chain" (the demo's) and "redundant" (the bridge also stated by a second
#: passage in other words, with the reader fine-tuned to read either).
SETTINGS = ("chain", "redundant")


def compare_config(
    out: Path, reader: Path = SHIPPED_READER, overrides: list[str] | None = None, recipe: Path = RECIPE
) -> CompareConfig:
    """The compare recipe with this run's paths, then ``overrides`` (which win, paths included)."""
    return demo_config(out, reader, overrides, recipe=recipe)


def select_objectives(cfg: CompareConfig, names: list[str]) -> None:
    """Keep only ``names`` (in that order), each with the recipe's settings when it has them."""
    recipe = {o.name: o for o in cfg.compare.objectives}
    cfg.compare.objectives = [recipe.get(name) or ObjectiveConfig(name=name) for name in names]


def run_demo_compare(
    out: Path,
    reader: Path | str | None = None,
    train_questions: int = DEMO_TRAIN_QUESTIONS,
    check_questions: int = 300,
    objectives: list[str] | None = None,
    overrides: list[str] | None = None,
    tune: bool = False,
    setting: str = "chain",
) -> dict[str, Any]:
    """Write the demo data of ``setting``, check the reader, train and evaluate every objective
    (with ``tune``: the tuning protocol); returns the result with the reading check (the files
    are in ``out``)."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    redundant = setting == "redundant"
    reader = reader_path(reader) if reader else (REDUNDANT_READER if redundant else SHIPPED_READER)
    cfg = compare_config(out, reader, overrides, PROTOCOL_RECIPE if tune else RECIPE)
    check_reader_directory(cfg)
    if objectives:
        select_objectives(cfg, objectives)
    spec = demo_spec(train_questions)
    prepare_data(out, train_questions, dataclasses.replace(spec, redundant=REDUNDANT) if redundant else spec)
    contexts = REDUNDANT_CONTEXTS if redundant else DEMO_CONTEXTS
    check = run_reading_check(cfg, out / "data" / "dev.jsonl", check_questions, contexts)
    header = f"Reading check of the reader (dev, {check['n']['all']} questions, EM):\n\n{format_reading_check(check)}"
    print(header, flush=True)
    if tune:
        result = run_protocol(cfg, header, groups=cue_groups(out / "data" / "test.jsonl"))
    else:
        result = run_compare(cfg, header)
    return {**result, "reading_check": check}
