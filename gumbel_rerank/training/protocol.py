"""`gumbel-rerank compare --tune`: every objective tuned on dev with the same budget, then
trained with several seeds and evaluated once on test.

1. **Tune** (dev only). Each objective of ``compare.objectives`` gets ``tune.trials`` settings
   drawn (seeded) from its search space (:attr:`ObjectiveSpec.search_space`, or
   ``tune.grids``), each on top of the objective's entry in ``compare.objectives``. Every trial
   trains from the same start with seed ``run.seed`` under the same budget: at most
   ``optim.max_steps``, a dev evaluation every ``run.eval_every`` steps on the first
   ``data.dev_subset`` dev questions, stopped after ``tune.patience`` evaluations without a
   better dev metric (``tune.metric``), the best dev point kept (:mod:`~.selection`).
2. **Choose**: per objective, the trial with the best dev metric (ties: the earlier trial).
3. **Final runs**: the chosen setting trained again with each seed of ``tune.seeds`` (the
   tuning run is not reused: its seed was the one selected on).
4. **Test**, read here for the first time, when every objective's setting is chosen: each final
   run as soon as it is trained, then the incoming order and the untrained reranker, once each
   (:func:`~.compare.evaluate_model` keeps each evaluation).
5. **Report**: ``protocol.md`` / ``protocol.json`` (mean and standard deviation over seeds, how
   each row's settings were chosen, the compute columns of :mod:`~.compute`), and
   ``curves.png`` (the dev metric of every objective against steps).

Resumable trial by trial: a finished run is not trained again, an interrupted one continues
from its checkpoint, and ``protocol.json`` is rewritten after every run. Each run is recorded
there with the config it was trained with, and each final run with its test report, so a run
whose folder is gone is taken from the record instead of trained again (from this folder's
``protocol.json`` or the files of ``tune.records``: :mod:`~.records`). Nothing before the
final runs opens the test questions, so the tuning can run without them (a test removes the
file); each final run is evaluated as soon as it is trained, after every choice is made.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gumbel_rerank.config import ConfigError, from_dict, to_dict
from gumbel_rerank.data.questions import Question
from gumbel_rerank.durable import write_atomic
from gumbel_rerank.envinfo import code_commit, resolve_device
from gumbel_rerank.evaluation.report import markdown_table, new_figure, png_bytes, read_metrics_log
from gumbel_rerank.training.compare import (
    UNTRAINED,
    check_same_settings,
    evaluate_model,
    file_digest,
    load_test_set,
    objective_run_config,
    run_labels,
)
from gumbel_rerank.training.compute import reader_flops
from gumbel_rerank.training.config import CompareConfig, ObjectiveConfig, TrainConfig
from gumbel_rerank.training.records import (
    UNKNOWN,
    Records,
    RunQuery,
    commit_names,
    load_records,
    made_by,
    record_config,
    test_identity,
)
from gumbel_rerank.training.run_card import write_run_card
from gumbel_rerank.training.stages import stage_finished
from gumbel_rerank.training.train_reranker import load_reader, run_train

#: (n, FiD size) points of the compute columns: where LOOP's n passes cost most.
FLOP_POINTS = ((20, "FiD-base"), (100, "FiD-base"), (20, "FiD-large"), (100, "FiD-large"))


# -- trials -----------------------------------------------------------------------------------
def search_space(cfg: CompareConfig, objective: ObjectiveConfig) -> dict[str, tuple[Any, ...]]:
    """The objective's grid: ``tune.grids[name]`` if given, else its declared search space."""
    grid = cfg.tune.grids.get(objective.name)
    return {k: tuple(v) for k, v in grid.items()} if grid is not None else dict(objective.spec.search_space)


def draw_trials(cfg: CompareConfig, label: str, objective: ObjectiveConfig) -> list[dict[str, Any]]:
    """``tune.trials`` distinct grid points (dotted key -> value), drawn without replacement
    by a generator seeded with ``tune.sample_seed`` and the objective's label. A grid with
    fewer points than trials is a ConfigError: every objective must get the same number."""
    grid = search_space(cfg, objective)
    keys = sorted(grid)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    if len(points) < cfg.tune.trials:
        raise ConfigError(
            f"tune: the search space of {label} has {len(points)} points, fewer than tune.trials = "
            f"{cfg.tune.trials}; every objective gets the same number of trials (widen tune.grids.{objective.name})"
        )
    return random.Random(f"{cfg.tune.sample_seed}/{label}").sample(points, cfg.tune.trials)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``key`` "a.b" (sections created as needed)."""
    *path, last = key.split(".")
    node = data
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def run_config(
    cfg: CompareConfig, objective: ObjectiveConfig, folder: Path, settings: Mapping[str, Any], seed: int
) -> TrainConfig:
    """One protocol run: the objective's compare run config with ``settings`` applied, seed
    ``seed``, and the dev selection (``tune.metric``, ``tune.patience``). It has no test file:
    runs never see the test questions."""
    data = to_dict(objective_run_config(cfg, objective, folder))
    for key, value in settings.items():
        set_dotted(data, key, value)
    data["run"].update(seed=seed, select_metric=cfg.tune_metric(), patience=cfg.tune.patience)
    return from_dict(TrainConfig, data, where=f"tune run {folder}")


def train_once(train_cfg: TrainConfig, what: str, records: Records, query: RunQuery) -> dict[str, Any]:
    """The summary of ``query``'s run: taken from ``records`` (a final run: whenever they hold
    its report on these test questions; a trial: when its folder holds no finished run), else
    from its folder, trained first unless finished; with the config it was trained with and
    what made it (:mod:`~.records`)."""
    folder = Path(train_cfg.run.output_dir)
    check_same_settings(folder, train_cfg)
    finished = stage_finished(folder, train_cfg.optim.max_steps)
    recorded = records.find(query) if query.test is not None or not finished else None
    if recorded is not None:
        how = " (adopted: made before runs recorded their config)" if "adopted" in recorded else ""
        print(f"[tune] {what}: recorded in {', '.join(records.sources)}{how}, not trained again", flush=True)
        return {**recorded, "from_record": True}
    if finished:
        print(f"[tune] {what}: finished earlier, not trained again", flush=True)
    else:
        print(f"[tune] {what}: training (at most {train_cfg.optim.max_steps} steps)", flush=True)
        run_train(train_cfg)
        if not stage_finished(folder, train_cfg.optim.max_steps):
            raise RuntimeError(f"{what} stopped before the end; run the same command again to resume")
        check_same_settings(folder, train_cfg)  # records the data it was trained on
    # what trained the run, from its folder: a run finished by an earlier call keeps its code
    return {**run_summary(folder, train_cfg.run.select_metric or ""), "config": query.config, "recorded_by": made_by(folder)}


def run_summary(folder: Path, metric: str) -> dict[str, Any]:
    """What the protocol keeps of a finished run: its dev selection, its dev curve, steps and
    seconds per step, and the reader work it counted (from ``metrics.jsonl``)."""
    selection = json.loads((folder / "selection.json").read_text())
    log = read_metrics_log(folder / "metrics.jsonl")
    curve = [[r["step"], r[f"dev/{metric}"]] for r in log if f"dev/{metric}" in r]
    train = [r for r in log if "sec_per_step" in r]
    last = train[-1] if train else {}
    return {
        "best_step": selection["best_step"],
        "best_dev": selection["best_value"],
        "stopped_early": selection["stopped_early"],
        "seconds_to_best": selection.get("best_seconds"),
        "steps": max((r["step"] for r in log), default=0),
        "sec_per_step": last.get("sec_per_step"),
        "target_seconds": last.get("reader/target_seconds"),
        "curve": curve,
    }


# -- the protocol ---------------------------------------------------------------------------
def run_protocol(
    cfg: CompareConfig,
    header: str = "",
    groups: Callable[[Sequence[Question]], Mapping[str, list[str]]] | None = None,
) -> dict[str, Any]:
    """The whole protocol (module docstring); returns what ``protocol.json`` holds."""
    check_protocol(cfg)
    code_commit()  # names the code this process loaded, before any commit made while it runs
    started = time.monotonic()
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = run_labels(cfg.compare.objectives)
    objectives = dict(zip(labels, cfg.compare.objectives, strict=True))
    state: dict[str, Any] = {"metric": cfg.tune_metric(), "budget": budget(cfg), "objectives": {}}
    # read before this call rewrites it: the runs of an earlier call whose folders may be gone
    records = load_records([out / "protocol.json", *cfg.tune.records])
    # what a record without a config must share; the test file's bytes are hashed, no question read
    context = json.loads(json.dumps({"budget": state["budget"], "metric": state["metric"], "test_content": file_digest(cfg.compare.test)}))
    for label, objective in objectives.items():
        state["objectives"][label] = tune_objective(cfg, label, objective, out, state, (records, context))
    # every choice is made: the test questions are read from here on (a missing file stops here)
    test = load_test_set(cfg, groups)
    identity = test_identity({"compare": {**test.settings, "test_content": file_digest(test.settings["test"])}})
    readers: list[Any] = []  # loaded at the first evaluation (none when every final is recorded)
    for seed in cfg.tune.seeds:  # seed by seed: a stop leaves whole seeds for every objective
        for label, objective in objectives.items():
            record = state["objectives"][label]
            settings = record["trials"][record["chosen"]]["settings"]
            folder = out / "final" / label / f"seed-{seed}"
            train_cfg = run_config(cfg, objective, folder, settings, seed)
            query = run_query(cfg, train_cfg, label, objective, settings, context, identity)
            summary = train_once(train_cfg, f"{label} seed {seed}", records, query)
            if "test" not in summary:  # evaluated once, now, so the record outlives the weights
                readers = readers or [load_reader(cfg, resolve_device(cfg.run.device))]
                directory = out / "eval" / label / f"seed-{seed}"
                summary["test"] = evaluate_model(
                    cfg, readers[0], test, folder / "model", directory, seed, metrics_log=folder / "metrics.jsonl"
                )
            record["finals"][str(seed)] = summary
            save_state(out, state, records)
    readers = readers or [load_reader(cfg, resolve_device(cfg.run.device))]
    untrained = evaluate_model(cfg, readers[0], test, Path(cfg.reranker.path), out / "eval" / "untrained", cfg.run.seed, head_seed=cfg.run.seed)
    state["test"] = {UNTRAINED: untrained}
    state["seconds"] = round(time.monotonic() - started, 1)
    save_state(out, state, records)
    write_protocol_report(cfg, state, out, header)
    return state


def run_query(
    cfg: CompareConfig,
    train_cfg: TrainConfig,
    label: str,
    objective: ObjectiveConfig,
    settings: Mapping[str, Any],
    context: Mapping[str, Any],
    test: Mapping[str, Any] | None = None,
) -> RunQuery:
    """What records of the run ``train_cfg`` are matched by (``test``: a final's test questions)."""
    return RunQuery(
        config=record_config(train_cfg),
        label=label,
        name=objective.name,
        space=json.loads(json.dumps(search_space(cfg, objective))),
        settings=json.loads(json.dumps(dict(settings))),
        seed=train_cfg.run.seed,
        test=None if test is None else dict(test),
        context=dict(context),
    )


#: What a search space may set: the objective's settings and the optimizer's learning-rate
#: schedule. Budget keys (steps, batch, evaluation, data, seeds) are the protocol's, the same
#: for every objective.
TUNABLE_PREFIXES = ("objective.settings.", "optim.lr", "optim.weight_decay", "optim.warmup_steps", "optim.scheduler", "optim.betas")


def check_protocol(cfg: CompareConfig) -> None:
    """ConfigErrors for a protocol that could not be what it claims: no separate test file
    (dev would be read as test), no evaluation within the step budget, a final seed equal to
    the tuning seed (the dev-selected run reused), or a search-space key outside
    :data:`TUNABLE_PREFIXES` (it would change one objective's budget)."""
    if not cfg.data.dev:
        raise ConfigError("compare --tune chooses on dev: set data.dev")
    if not cfg.compare.test or Path(cfg.compare.test).resolve() == Path(cfg.data.dev).resolve():
        raise ConfigError("compare --tune needs compare.test, a question file other than data.dev (settings are chosen on dev)")
    if not 1 <= cfg.run.eval_every <= cfg.optim.max_steps:
        raise ConfigError(f"compare --tune: run.eval_every must be in 1..optim.max_steps ({cfg.optim.max_steps}), got {cfg.run.eval_every}")
    if cfg.run.seed in cfg.tune.seeds:
        raise ConfigError(f"tune.seeds {cfg.tune.seeds} must not contain run.seed = {cfg.run.seed}, the seed the trials were chosen with")
    for objective in cfg.compare.objectives:
        for key in search_space(cfg, objective):
            if not key.startswith(TUNABLE_PREFIXES):
                raise ConfigError(
                    f"tune: the search space of {objective.name} sets {key!r}; only {TUNABLE_PREFIXES} may differ "
                    "between objectives (the rest is the shared budget)"
                )


def budget(cfg: CompareConfig) -> dict[str, Any]:
    """The budget every trial and final run shares (for the report)."""
    return {
        "trials": cfg.tune.trials,
        "seeds": list(cfg.tune.seeds),
        "tuning_seed": cfg.run.seed,
        "max_steps": cfg.optim.max_steps,
        "eval_every": cfg.run.eval_every,
        "patience": cfg.tune.patience,
        "dev_questions": cfg.data.dev_subset,
        "micro_batch_size": cfg.optim.micro_batch_size,
    }


def tune_objective(
    cfg: CompareConfig,
    label: str,
    objective: ObjectiveConfig,
    out: Path,
    state: dict,
    recorded: tuple[Records, Mapping[str, Any]],
) -> dict[str, Any]:
    """Train every trial of ``label`` (resumable); the record with the chosen trial's index."""
    record: dict[str, Any] = {"name": objective.name, "space": search_space(cfg, objective), "trials": [], "finals": {}}
    state["objectives"][label] = record
    for index, settings in enumerate(draw_trials(cfg, label, objective)):
        folder = out / "tune" / label / f"trial-{index}"
        what = f"{label} trial {index + 1}/{cfg.tune.trials} {settings}"
        train_cfg = run_config(cfg, objective, folder, settings, cfg.run.seed)
        summary = train_once(train_cfg, what, recorded[0], run_query(cfg, train_cfg, label, objective, settings, recorded[1]))
        record["trials"].append({"settings": settings, **summary})
        save_state(out, state, recorded[0])
    # the first of equal bests; a trial whose every evaluation was NaN (best_dev None) loses
    values = [t["best_dev"] if t["best_dev"] is not None else float("-inf") for t in record["trials"]]
    record["chosen"] = values.index(max(values))
    save_state(out, state, recorded[0])  # the choice is on record before anything reads the test questions
    return record


def save_state(out: Path, state: Mapping[str, Any], records: Records) -> None:
    """``protocol.json``, rewritten whole (atomically) after every run, with the records this
    call was given and has not reached yet (``carried``: an interruption loses none)."""
    write_atomic(out / "protocol.json", json.dumps({**state, "carried": records.carried()}, indent=1, default=str) + "\n")


# -- the report ---------------------------------------------------------------------------
def table_columns(cfg: CompareConfig, groups: Sequence[str] = ()) -> list[tuple[str, tuple[str, ...]]]:
    """(column, key path into an evaluation report) of the protocol table at k; ``{r}`` is
    the ranking's name. With evidence roles the evidence section (a fact found when any of
    its passages is), else all gold, indirect (bridge) and direct (answer) gold; the last
    recall column again on each question group of ``groups`` (e.g. the demo's uncued
    questions, where only the bridge tells the answer passage from the wrong chain)."""
    k = cfg.eval_k()
    if cfg.data.evidence_roles:
        # Evidence@k, not AllGold@k: a fact counts as found through any passage stating it (on the
        # redundant data the bridge has two), so the two differ where facts are restated
        columns = [(f"Evidence@{k}", ("evidence", "{r}", f"Evidence@{k}"))]
        columns += [(f"{role} R@{k}", ("evidence", "{r}", f"{role}@{k}")) for role in cfg.data.evidence_roles]
    else:
        columns = [
            (f"AllGold@{k}", ("rankings", "{r}", f"AllGold@{k}")),
            (f"indirect R@{k}", ("indirect", "{r}", f"R@{k}")),
            (f"direct R@{k}", ("direct", "{r}", f"R@{k}")),
        ]
    last_name, last_path = columns[-1]
    columns += [(f"{last_name} {group}", ("groups", group, *last_path)) for group in groups]
    return [*columns, (f"EM@{k}", ("end_to_end", "{r}", f"EM@{k}"))]


def cell(report: Mapping[str, Any], path: Sequence[str], ranking: str) -> float:
    """The value at ``path`` of ``report`` for ``ranking`` (NaN when absent)."""
    value: Any = report
    for key in path:
        value = value.get(key.format(r=ranking)) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else math.nan


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` (sample standard deviation over seeds), three decimals; "–" when a
    value is missing (NaN: e.g. no question has indirect gold)."""
    if not values or any(math.isnan(v) for v in values):
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def result_rows(cfg: CompareConfig, state: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The quality table: the incoming order and the untrained reranker (one evaluation each),
    then each objective's mean ± std over the final seeds, with how its setting was chosen."""
    untrained = state["test"][UNTRAINED]
    columns = table_columns(cfg, [g for g in ("uncued",) if g in untrained.get("groups", {})])
    rows: dict[str, dict[str, str]] = {}
    for name, ranking in (("incoming order", "retriever"), (UNTRAINED, "reranker")):
        rows[name] = {c: mean_std([cell(untrained, p, ranking)]) for c, p in columns}
        rows[name]["chosen by"] = "not trained"
    for label, record in state["objectives"].items():
        reports = [final["test"] for final in record["finals"].values()]
        rows[label] = {c: mean_std([cell(r, p, "reranker") for r in reports]) for c, p in columns}
        chosen = record["trials"][record["chosen"]]
        rows[label]["chosen by"] = (
            f"best dev {state['metric']} {chosen['best_dev'] if chosen['best_dev'] is None else round(chosen['best_dev'], 3)} of {len(record['trials'])} trials: "
            + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in chosen["settings"].items())
        )
    return rows


def compute_rows(cfg: CompareConfig, state: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The compute table per objective: reader work per training question (declared and
    counted), target-caching seconds, seconds per step, training seconds and steps to the best
    dev point (means over seeds), and reader FLOPs per question at FiD sizes."""
    rows = {}
    n = cfg.data.n_passages or 10
    objectives = dict(zip(run_labels(cfg.compare.objectives), cfg.compare.objectives, strict=True))
    for label, record in state["objectives"].items():
        objective = objectives[label]
        settings = objective_settings(objective, record["trials"][record["chosen"]]["settings"])
        passes = objective.spec.reader_passes(settings, n)
        finals = list(record["finals"].values())
        row = {
            "reader passes / question": describe_passes(passes),
            "target caching s": f"{mean_of(finals, 'target_seconds'):.0f}" if passes.once else "–",
            "s / step": f"{mean_of(finals, 'sec_per_step'):.2f}",
            "best step": f"{mean_of(finals, 'best_step'):.0f}",
            "train s to best": f"{mean_of(finals, 'seconds_to_best'):.0f}",
        }
        for points, size in FLOP_POINTS:
            flops = reader_flops(objective.spec.reader_passes(settings, points), size, points)
            row[f"TFLOP {size} n={points}"] = f"{flops / 1e12:.2f}"
        rows[label] = row
    return rows


def mean_of(records: Sequence[Mapping[str, Any]], key: str) -> float:
    """The mean of ``key`` over the records that have it (NaN when none does)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.mean(values) if values else math.nan


def objective_settings(objective: ObjectiveConfig, chosen: Mapping[str, Any]) -> Any:
    """The objective's settings dataclass with the chosen trial's ``objective.settings.*``."""
    data = to_dict(objective)
    for key, value in chosen.items():
        if key.startswith("objective."):
            set_dotted(data, key.removeprefix("objective."), value)
    return from_dict(ObjectiveConfig, data, where="tune").settings


def describe_passes(passes: Any) -> str:
    """E.g. "enc 10, dec 1 fwd + 1 bwd (all n)" or "enc 10, dec 10 fwd (one passage), once"."""
    parts = []
    if passes.encoded:
        parts.append(f"enc {passes.encoded}")
    if passes.full_forward:
        back = f" + {passes.full_backward} bwd" if passes.full_backward else ""
        parts.append(f"dec {passes.full_forward} fwd{back} (all n)")
    if passes.single_forward:
        parts.append(f"dec {passes.single_forward} fwd (one passage)")
    if not parts:
        return "none"
    return ", ".join(parts) + (", once (cached)" if passes.once else ", every visit")


def plot_curves(state: Mapping[str, Any], path: Path) -> None:
    """The dev metric against steps: each objective's final runs (thin) and their mean (thick)."""
    figure = new_figure(8.0, 4.5)
    ax = figure.subplots()
    for index, (label, record) in enumerate(state["objectives"].items()):
        colour = f"C{index}"
        by_step: dict[int, list[float]] = {}
        for final in record["finals"].values():
            steps, values = zip(*final["curve"], strict=True) if final["curve"] else ((), ())
            ax.plot(steps, values, color=colour, alpha=0.3, linewidth=0.8)
            for step, value in final["curve"]:
                by_step.setdefault(step, []).append(value)
        steps = sorted(by_step)
        ax.plot(steps, [statistics.mean(by_step[s]) for s in steps], color=colour, linewidth=2, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"dev {state['metric']}")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize="small")
    write_atomic(path, png_bytes(figure))


def trial_rows(state: Mapping[str, Any], suffix: str = "") -> dict[str, dict[str, str]]:
    """Every tuning trial's best dev metric, the step it was reached at and its settings, per
    objective (row label + ``suffix``); the chosen trial in bold, once every trial is done."""
    rows: dict[str, dict[str, str]] = {}
    for label, record in state["objectives"].items():
        row = {}
        for index, trial in enumerate(record["trials"]):
            value = "NaN" if trial["best_dev"] is None else f"{trial['best_dev']:.3f}"
            settings = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in trial["settings"].items())
            step = f" at step {trial['best_step']}" if trial.get("best_step") is not None else ""
            row[f"trial {index + 1}"] = f"**{value}**" if record.get("chosen") == index else value
            row[f"trial {index + 1}"] += f"{step} ({settings})"
        rows[label + suffix] = row
    return rows


def provenance_note(state: Mapping[str, Any]) -> str:
    """What the report must say about runs it did not train here: how many were taken from
    records (earlier calls, sessions or machines), how many of those were adopted from states
    made before runs recorded their config, and the devices the runs were made on when they
    differ (the seconds columns then mix machines)."""
    runs = [r for rec in state["objectives"].values() for r in [*rec["trials"], *rec["finals"].values()]]
    taken = sum(bool(r.get("from_record")) for r in runs)
    adopted = sum("adopted" in r for r in runs)
    made = [r["recorded_by"] for r in runs if "recorded_by" in r]
    # a record written by older code may say None, or name a HEAD rather than the package's commit
    devices = sorted({str(m.get("device") or UNKNOWN) for m in made})
    commits = sorted({commit_names(str(m.get("commit") or UNKNOWN)) for m in made})
    parts = []
    if taken:
        parts.append(f"{taken} of the {len(runs)} runs were taken from records of earlier calls (their folders gone; training.records)")
    if adopted:
        parts.append(
            f"{adopted} of them from states made before runs recorded their config, matched by objective, settings, "
            "seed, budget, dev metric and test file content"
        )
    if len(devices) > 1 or (devices and adopted):
        parts.append(f"runs were made on {', '.join(devices)}{' and earlier unrecorded devices' if adopted else ''}: the seconds columns may mix machines")
    if len(commits) > 1 or (commits and adopted):
        parts.append(
            f"runs were made by code at commits {', '.join(commits)}{' and by unrecorded earlier code' if adopted else ''} "
            "(benchmarks/protocol_repro.py retrains a record's first dev point to check it)"
        )
    return "".join(f" {p[0].upper()}{p[1:]}." for p in parts)


def write_protocol_report(cfg: CompareConfig, state: Mapping[str, Any], out: Path, header: str = "") -> str:
    """``protocol.md`` (both tables, the budget, how rows were chosen) and ``curves.png``."""
    quality = result_rows(cfg, state)
    compute = compute_rows(cfg, state)
    trials = trial_rows(state)
    for label, record in state["objectives"].items():  # every final model's card: its test numbers and row
        for seed, final in record["finals"].items():
            folder = out / "final" / label / f"seed-{seed}"
            if (folder / "model").is_dir():  # a run taken from a record has no folder here
                row = {**quality[label], "(this seed's test numbers above; the row is the mean over seeds)": ""}
                write_run_card(folder, test_report=final["test"], compare_row=row)
    b = state["budget"]
    note = (
        f"Test: {state['test'][UNTRAINED]['compare']['questions']} questions, read once per final run. "
        f"Each objective: {b['trials']} settings drawn from its search space, trained with seed "
        f"{b['tuning_seed']}, chosen by the best dev {state['metric']} on {b['dev_questions']} dev questions; "
        f"then seeds {b['seeds']} at the chosen setting (mean ± standard deviation over them; the untrained "
        f"row is the start with the head seeded {b['tuning_seed']}). Every run: "
        f"at most {b['max_steps']} steps of {b['micro_batch_size']} questions, a dev evaluation every "
        f"{b['eval_every']} steps, stopped after {b['patience']} evaluations without improvement, the "
        "best dev point kept."
    )
    note += provenance_note(state)
    text = "\n\n".join(
        part
        for part in (
            "# gumbel-rerank compare --tune",
            header,
            note,
            markdown_table(quality, list(next(iter(quality.values()))), label="ranking"),
            "Compute (means over the final runs; reader FLOPs per training question at FiD sizes "
            "from the declared reader work, backward = one forward through the frozen reader):",
            markdown_table(compute, list(next(iter(compute.values()))), label="objective"),
            f"Every tuning trial (seed {b['tuning_seed']}; best dev {state['metric']}, the step it was reached at, "
            "the settings; the chosen one in bold):",
            markdown_table(trials, [f"trial {i + 1}" for i in range(b["trials"])], label="objective"),
            "Dev learning curves: curves.png.",
        )
        if part
    )
    write_atomic(out / "protocol.md", text + "\n")
    plot_curves(state, out / "curves.png")
    print(text, flush=True)
    return text

