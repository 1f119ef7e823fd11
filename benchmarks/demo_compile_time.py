"""The demo's training time with the reranker's compiled training step against eager (issue 20's
CPU target: compiled at most 0.7x eager), and both demo tables, so "the same table within bf16
noise" can be read off.

    python benchmarks/demo_compile_time.py --out /tmp/demo-compile    # nothing else running

Runs ``gumbel-rerank demo`` twice in fresh folders under ``--out`` (same seed and recipe):
eager, then ``--reranker.settings.compile_train=true`` (torch.compile of the reranker's
training forward, lengths padded to a multiple so few shapes compile). The training stage's
seconds include the compilation. Writes ``results/demo_compile_time.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _results import publish

RESULTS = Path(__file__).resolve().parent / "results" / "demo_compile_time.md"
VARIANTS = {"eager": [], "compiled": ["--reranker.settings.compile_train=true"]}


def run_demo(folder: Path, extra: list[str], seed: int) -> dict:
    """One fresh demo run in ``folder``; its ``report/demo.json``."""
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, "-m", "gumbel_rerank", "demo", "--out", str(folder), f"--run.seed={seed}", *extra]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads((folder / "report" / "demo.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="scratch folder for the two demo runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write ('' = print only)")
    args = parser.parse_args()
    results = {name: run_demo(args.out / name, extra, args.seed) for name, extra in VARIANTS.items()}
    eager, compiled = (results[n]["stage_seconds"]["training"] for n in VARIANTS)
    columns = list(next(iter(results["eager"]["table"].values())))
    lines = [
        "# The demo's training time: compiled reranker step against eager",
        "",
        f"Command: `python benchmarks/demo_compile_time.py --out {args.out} --seed {args.seed}`",
        f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} CPUs; nothing else running; "
        "the demo's own thread settings.",
        "",
        "| variant | training seconds | demo seconds |",
        "|---|---:|---:|",
    ]
    lines += [f"| {n} | {r['stage_seconds']['training']:.0f} | {r['seconds']:.0f} |" for n, r in results.items()]
    lines += ["", f"Compiled / eager training time: **{compiled / eager:.2f}x** (issue 20's target: at most 0.70x).", ""]
    for name, result in results.items():
        lines += [f"Table ({name}):", "", "| ranking | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        lines += [f"| {row} | " + " | ".join(f"{v:.3f}" for v in values.values()) + " |" for row, values in result["table"].items()]
        lines.append("")
    publish(lines, args.results)


if __name__ == "__main__":
    main()
