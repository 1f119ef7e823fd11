"""Does a recorded protocol run reproduce with today's code? Retrain its first dev evaluation.

A protocol's records (``protocol.json``) may be taken instead of training again
(``gumbel_rerank.training.records``); records made before runs carried their config are adopted
on trust that today's code trains the same run the same way. This checks that trust cheaply:
it retrains a recorded tuning trial of the demo protocol (same recipe, data, settings and seed
0) up to its first dev evaluation (``run.eval_every`` steps, 1/8 of the budget) and prints the
dev metric next to the first point of the record's curve. Equal values are what the project's
"same config, same seed: same weights" promises; a difference means the record was made by
other code (or another environment) and says by how much.

    .venv/bin/python benchmarks/protocol_repro.py --setting chain --objective loop --trial 3 \\
        --state benchmarks/results/protocol/chain_protocol.json --work runs/repro

The demo data is written to ``--work`` (as ``compare --tune`` writes it); one thread by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch
from _results import publish

from gumbel_rerank.demo.command import demo_spec, prepare_data
from gumbel_rerank.demo.compare import PROTOCOL_RECIPE, compare_config
from gumbel_rerank.demo.reader_recipe import REDUNDANT, REDUNDANT_READER, SHIPPED_READER
from gumbel_rerank.training.protocol import run_config
from gumbel_rerank.training.train_reranker import run_train


def first_dev_value(log: Path, metric: str) -> tuple[int, float] | None:
    """(step, value) of the first dev evaluation in a run's metrics.jsonl, if there is one."""
    if not log.is_file():
        return None
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if f"dev/{metric}" in record:
            return record["step"], record[f"dev/{metric}"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=("chain", "redundant"), default="chain")
    parser.add_argument("--objective", required=True, help="the objective's label in the state")
    parser.add_argument("--trial", type=int, required=True, help="trial index (0-based)")
    parser.add_argument("--state", type=Path, required=True, help="the protocol.json holding the record")
    parser.add_argument("--work", type=Path, default=Path("runs/repro"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default="", help="markdown file to write ('' = print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state = json.loads(args.state.read_text())
    trial = state["objectives"][args.objective]["trials"][args.trial]
    redundant = args.setting == "redundant"
    cfg = compare_config(args.work, REDUNDANT_READER if redundant else SHIPPED_READER, [], PROTOCOL_RECIPE)
    spec = demo_spec()  # the data compare --tune writes (the demo's 3,000 training questions)
    prepare_data(args.work, spec.n_train, dataclasses.replace(spec, redundant=REDUNDANT) if redundant else spec)
    objective = next(o for o in cfg.compare.objectives if o.name == state["objectives"][args.objective]["name"])
    folder = args.work / f"{args.setting}-{args.objective}-trial-{args.trial}"
    train_cfg = run_config(cfg, objective, folder, trial["settings"], state["budget"]["tuning_seed"])
    train_cfg.optim.max_steps = state["budget"]["max_steps"]  # the schedule of the recorded run
    metric = state["metric"]
    started = time.monotonic()
    if first_dev_value(folder / "metrics.jsonl", metric) is None:
        # train until the first dev evaluation is logged, then stop the process's training
        # (SIGUSR1: the loop saves and returns; the schedule is that of the full run)
        import signal
        import threading

        def watch() -> None:
            while first_dev_value(folder / "metrics.jsonl", metric) is None:
                time.sleep(2)
            os.kill(os.getpid(), signal.SIGUSR1)

        threading.Thread(target=watch, daemon=True).start()
        run_train(train_cfg)
    step, today = first_dev_value(folder / "metrics.jsonl", metric)
    recorded_step, recorded = trial["curve"][0]
    publish(
        [
            f"# Reproducing a recorded protocol trial: {args.setting}, {args.objective} trial {args.trial + 1}",
            "",
            f"Settings: {trial['settings']}, seed {state['budget']['tuning_seed']}; record: `{args.state}`.",
            "",
            f"| | step | dev {metric} |",
            "|---|---:|---:|",
            f"| recorded | {recorded_step} | {recorded} |",
            f"| today | {step} | {today} |",
            "",
            f"Equal: {'yes' if (step, today) == (recorded_step, recorded) else 'no'}. "
            f"Date: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} CPUs, {args.threads} thread(s), torch "
            f"{torch.__version__}; {time.monotonic() - started:.0f} s.",
        ],
        args.results,
    )


if __name__ == "__main__":
    main()
