"""`gumbel-rerank compare` on the demo: every objective on the embedded two-hop data, through
the shipped reader, from the same MiniLM start; the table with the reader's reading check.

Which passages the reader actually uses decides which objective can find them, so the reading
check (EM with all passages, without the bridge, ...) heads the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gumbel_rerank.config import load_config
from gumbel_rerank.demo.command import minilm_directory
from gumbel_rerank.demo.dataset import DemoSpec, write_demo_data
from gumbel_rerank.demo.reader_recipe import ASSETS, SHIPPED_READER
from gumbel_rerank.demo.reading_check import format_reading_check, read_demo_records, reading_check
from gumbel_rerank.envinfo import resolve_device
from gumbel_rerank.reader.fid import FiDReader
from gumbel_rerank.training.compare import run_compare
from gumbel_rerank.training.config import CompareConfig, ObjectiveConfig

RECIPE = ASSETS / "compare_recipe.yaml"


def compare_config(out: Path, reader: Path = SHIPPED_READER, overrides: list[str] | None = None) -> CompareConfig:
    """The recipe with this run's paths (data under ``out/data``, runs under ``out``), then
    ``overrides`` (which win, paths included)."""
    paths = [
        f"--data.train={out / 'data' / 'train.jsonl'}",
        f"--data.dev={out / 'data' / 'dev.jsonl'}",
        f"--compare.test={out / 'data' / 'test.jsonl'}",
        f"--reader.path={reader}",
        f"--reranker.path={minilm_directory()}",
        f"--run.output_dir={out}",
    ]
    return load_config(CompareConfig, RECIPE, paths + list(overrides or []))


def select_objectives(cfg: CompareConfig, names: list[str]) -> None:
    """Keep only ``names`` (in that order), each with the recipe's settings when it has them."""
    recipe = {o.name: o for o in cfg.compare.objectives}
    cfg.compare.objectives = [recipe.get(name) or ObjectiveConfig(name=name) for name in names]


def run_demo_compare(
    out: Path,
    reader: Path = SHIPPED_READER,
    train_questions: int = 4000,
    check_questions: int = 300,
    objectives: list[str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Write the demo data, check the reader, train and evaluate every objective; returns
    ``{"table", "seconds", "reading_check"}`` (the files are in ``out``)."""
    cfg = compare_config(out, reader, overrides)
    if objectives:
        select_objectives(cfg, objectives)
    spec = DemoSpec(n_train=train_questions)
    write_demo_data(spec, out / "data")  # deterministic: rewriting gives the same files
    model = FiDReader.from_pretrained(cfg.reader.path, config=cfg.reader.settings).to(resolve_device(cfg.run.device))
    check = reading_check(model, read_demo_records(out / "data" / "dev.jsonl", limit=check_questions))
    del model
    header = f"Reading check of the reader (dev, {check['n']['all']} questions, EM):\n\n{format_reading_check(check)}"
    print(header, flush=True)
    result = run_compare(cfg, header)
    return {**result, "reading_check": check}
