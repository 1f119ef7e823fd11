"""Does a recorded protocol run reproduce with today's code? Retrain its first dev evaluation
(or, with ``--full``, the whole run).

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

``--final SEED`` takes a final run of the chosen setting instead of a tuning trial; ``--full``
trains to the protocol's end (patience, cap) and compares every dev point and the best, and
leaves the run's model (its best dev point) in ``--work`` for diagnostics such as
``top_k_anatomy.py``. The demo data is written to ``--work`` (as ``compare --tune`` writes
it); one thread by default.
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
from gumbel_rerank.evaluation.report import read_metrics_log
from gumbel_rerank.training.protocol import run_config
from gumbel_rerank.training.train_reranker import run_train


def dev_curve(log: Path, metric: str) -> list[tuple[int, float]]:
    """Every (step, value) of the dev metric in a run's metrics.jsonl (none before it exists)."""
    if not log.is_file():
        return []
    return [(r["step"], r[f"dev/{metric}"]) for r in read_metrics_log(log) if f"dev/{metric}" in r]


def first_dev_value(log: Path, metric: str) -> tuple[int, float] | None:
    """(step, value) of the first dev evaluation in a run's metrics.jsonl, if there is one."""
    return next(iter(dev_curve(log, metric)), None)


def recorded_run(state: dict, label: str, trial: int | None, final: int | None) -> tuple[str, dict, int, list]:
    """(what, settings, seed, recorded curve) of a tuning trial (0-based) or of the final run
    of the chosen setting with seed ``final``; KeyError naming what the state lacks."""
    record = state["objectives"][label]
    if final is None:
        run = record["trials"][trial]
        return f"trial {trial + 1}", run["settings"], state["budget"]["tuning_seed"], run["curve"]
    if "chosen" not in record or str(final) not in record["finals"]:
        raise KeyError(f"{label}: the state holds no chosen setting or no final run with seed {final}")
    run = record["finals"][str(final)]
    return f"final seed {final}", record["trials"][record["chosen"]]["settings"], final, run["curve"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=("chain", "redundant"), default="chain")
    parser.add_argument("--objective", required=True, help="the objective's label in the state")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="trial index (0-based)")
    which.add_argument("--final", type=int, help="seed of a final run of the chosen setting")
    parser.add_argument("--full", action="store_true", help="train the whole run, compare every dev point")
    parser.add_argument("--state", type=Path, required=True, help="the protocol.json holding the record")
    parser.add_argument("--work", type=Path, default=Path("runs/repro"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default="", help="markdown file to write ('' = print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state = json.loads(args.state.read_text())
    what, settings, seed, recorded_curve = recorded_run(state, args.objective, args.trial, args.final)
    redundant = args.setting == "redundant"
    cfg = compare_config(args.work, REDUNDANT_READER if redundant else SHIPPED_READER, [], PROTOCOL_RECIPE)
    spec = demo_spec()  # the data compare --tune writes (the demo's 3,000 training questions)
    prepare_data(args.work, spec.n_train, dataclasses.replace(spec, redundant=REDUNDANT) if redundant else spec)
    objective = next(o for o in cfg.compare.objectives if o.name == state["objectives"][args.objective]["name"])
    suffix = f"trial-{args.trial}" if args.final is None else f"final-seed-{args.final}"  # trial: 0-based, as before
    folder = args.work / f"{args.setting}-{args.objective}-{suffix}"
    train_cfg = run_config(cfg, objective, folder, settings, seed)
    train_cfg.optim.max_steps = state["budget"]["max_steps"]  # the schedule of the recorded run
    metric = state["metric"]
    started = time.monotonic()
    if args.full:
        run_train(train_cfg)  # resumes from the folder's checkpoint, or returns at once when finished
    elif first_dev_value(folder / "metrics.jsonl", metric) is None:
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
    today = dev_curve(folder / "metrics.jsonl", metric)
    recorded = [tuple(point) for point in recorded_curve]
    if not args.full:
        today, recorded = today[:1], recorded[:1]
    steps = sorted({s for s, _ in today} | {s for s, _ in recorded})
    rows = [f"| {s} | {dict(recorded).get(s, '–')} | {dict(today).get(s, '–')} |" for s in steps]
    publish(
        [
            f"# Reproducing a recorded protocol run: {args.setting}, {args.objective} {what}",
            "",
            f"Settings: {settings}, seed {seed}; record: `{args.state}`"
            + (f"; today's model: `{folder / 'model'}`." if args.full else "."),
            "",
            f"| step | recorded dev {metric} | today |",
            "|---:|---:|---:|",
            *rows,
            "",
            f"Equal: {'yes' if today == recorded else 'no'}"
            + (f" (best: recorded {max(v for _, v in recorded)}, today {max(v for _, v in today)})" if args.full and today else "")
            + ". "
            f"Date: {time.strftime('%Y-%m-%d')}; {os.cpu_count()} CPUs, {args.threads} thread(s), torch "
            f"{torch.__version__}; {time.monotonic() - started:.0f} s.",
        ],
        args.results,
    )


if __name__ == "__main__":
    main()
