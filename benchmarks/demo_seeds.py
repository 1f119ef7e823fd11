"""The demo's table at several seeds, each a fresh ``gumbel-rerank demo --run.seed=S`` run, with
every stage's seconds and the mean +- standard deviation over the seeds: the source of the
README's demo tables (same config, seed and thread count give the same weights, so a re-run at
the same thread count reproduces them; bf16 rounding moves with the thread count).

    python benchmarks/demo_seeds.py --out /tmp/demo-seeds --seeds 0 1 2 [--note "beside two jobs"]

Writes ``results/demo_seeds.md``. Times are only comparable when nothing else ran (say so with
``--note`` otherwise).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _results import publish
from demo_compile_time import run_demo

RESULTS = Path(__file__).resolve().parent / "results" / "demo_seeds.md"


def table_lines(columns: list[str], rows: dict[str, list[str]]) -> list[str]:
    """A markdown table: ``rows`` maps a ranking to its formatted cells."""
    lines = ["| ranking | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    return lines + [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()] + [""]


def results_lines(results: dict[int, dict], command: str, note: str) -> list[str]:
    """The results markdown of demo runs (seed -> the run's ``report/demo.json``): a time row
    per seed, each seed's table, and mean ± sample standard deviation per cell (two seeds or more)."""
    first = next(iter(results.values()))
    columns = list(next(iter(first["table"].values())))
    stages = list(first["stage_seconds"])
    lines = [
        "# The demo at several seeds",
        "",
        f"Command: `{command}`",
        f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} CPUs; {note}; "
        f"threads: {os.environ.get('OMP_NUM_THREADS', 'torch default')}.",
        "",
        "| seed | demo seconds | " + " | ".join(f"{s} s" for s in stages) + " |",
        "|---:|---:|" + "---:|" * len(stages),
    ]
    lines += [
        f"| {seed} | {r['seconds']:.0f} | " + " | ".join(f"{r['stage_seconds'][s]:.0f}" for s in stages) + " |"
        for seed, r in results.items()
    ]
    lines.append("")
    for seed, result in results.items():
        rows = {name: [f"{v:.3f}" for v in values.values()] for name, values in result["table"].items()}
        lines += [f"Seed {seed}:", "", *table_lines(columns, rows)]
    if len(results) > 1:
        rows = {}
        for name in first["table"]:
            values = {c: [r["table"][name][c] for r in results.values()] for c in columns}
            rows[name] = [f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" for v in values.values()]
        lines += [f"Mean ± standard deviation over seeds {', '.join(map(str, results))}:", "", *table_lines(columns, rows)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="scratch folder for the demo runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--note", default="nothing else running", help="what else ran on the machine")
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write ('' = print only)")
    args = parser.parse_args()
    results = {seed: run_demo(args.out / f"seed-{seed}", [], seed) for seed in args.seeds}
    command = f"python benchmarks/demo_seeds.py --out {args.out} --seeds {' '.join(map(str, args.seeds))}"
    publish(results_lines(results, command, args.note), args.results)


if __name__ == "__main__":
    main()
