"""Seconds per training step of every objective at its protocol-chosen setting, measured alone
on the machine (the protocol's own seconds ran beside other jobs).

    python benchmarks/objective_step_cost.py --protocol runs/protocol-chain --threads 2

For each objective of ``protocol.json``: the chosen setting's trainer (the protocol's data,
reader, reranker start and batch), 10 warm-up steps, then the mean of ``--steps`` steps. All
of them are first visits of their questions, as in the protocol's runs (about one epoch), so a
distillation objective's steps include computing its targets. Writes a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from _results import publish

RESULTS = Path(__file__).resolve().parent / "results" / "objective_step_cost.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", type=Path, required=True)
    parser.add_argument("--setting", default="chain", choices=("chain", "redundant"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from gumbel_rerank.demo.compare import PROTOCOL_RECIPE, compare_config
    from gumbel_rerank.demo.reader_recipe import REDUNDANT_READER, SHIPPED_READER
    from gumbel_rerank.envinfo import package_version
    from gumbel_rerank.training.compare import run_labels
    from gumbel_rerank.training.protocol import run_config
    from gumbel_rerank.training.train_reranker import build_trainer

    state = json.loads((args.protocol / "protocol.json").read_text())
    reader = REDUNDANT_READER if args.setting == "redundant" else SHIPPED_READER
    cfg = compare_config(args.protocol, reader, None, PROTOCOL_RECIPE)
    objectives = dict(zip(run_labels(cfg.compare.objectives), cfg.compare.objectives, strict=True))
    rows = {}
    for label, record in state["objectives"].items():
        settings = record["trials"][record["chosen"]]["settings"]
        with tempfile.TemporaryDirectory() as tmp:
            train_cfg = run_config(cfg, objectives[label], Path(tmp) / "run", settings, cfg.run.seed)
            train_cfg.data.dev = None  # no evaluation: the step alone
            train_cfg.run.select_metric, train_cfg.run.patience, train_cfg.run.eval_every = None, 0, 0
            train_cfg.optim.max_steps = args.steps + 10
            train_cfg.run.log_every, train_cfg.run.save_every = 1, 10_000
            trainer, _, _ = build_trainer(train_cfg)
            trainer.fit()
            logged = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
            # sec_per_step is cumulative since the start: steps 10..end, past warm-up
            timed = {r["step"]: r["sec_per_step"] for r in logged if "sec_per_step" in r}
            last = max(timed)
        rows[label] = (timed[last] * last - timed[10] * 10) / (last - 10)
    lines = [
        "# Seconds per training step of each objective at its protocol-chosen setting",
        "",
        f"Command: `python benchmarks/objective_step_cost.py --protocol {args.protocol} --setting {args.setting} "
        f"--threads {args.threads} --steps {args.steps}`",
        f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} CPUs, {args.threads} torch thread(s), torch "
        f"{package_version('torch')}; nothing else running. Mean of {args.steps} steps after 10 warm-up steps, "
        f"{cfg.optim.micro_batch_size} questions each, first visits of their questions (targets computed in the step).",
        "",
        "| objective | s / step |",
        "|---|---:|",
        *[f"| {label} | {seconds:.3f} |" for label, seconds in rows.items()],
    ]
    publish(lines, args.results)


if __name__ == "__main__":
    main()
