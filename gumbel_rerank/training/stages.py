"""Multi-stage training: stage i trains with its own objective, steps and learning rate,
starting from stage i-1's reranker; the run folder records every stage and a resumed run
continues at the stage (and step) where it stopped.

Layout of ``<output_dir>``::

    stages.json          one record per stage: name, objective, steps, lr, start, status
    <stage name>/        a complete run folder per stage (config, metrics, checkpoints, model)
    model/               the last stage's reranker
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from gumbel_rerank.config import ConfigError, to_dict
from gumbel_rerank.durable import write_atomic
from gumbel_rerank.training import checkpointing as ckpt
from gumbel_rerank.training.config import StageConfig, TrainConfig

STAGES_FILE = "stages.json"


def stage_name(index: int, stage: StageConfig) -> str:
    """The stage's folder name: its own, or ``stage-<i>-<objective>`` (1-based)."""
    return stage.name or f"stage-{index + 1}-{stage.objective.name}"


def stage_config(cfg: TrainConfig, index: int, start_from: str) -> TrainConfig:
    """The plain (one-objective) train config of stage ``index``, reading ``start_from``."""
    stage = cfg.stages[index]
    optim = dataclasses.replace(
        cfg.optim,
        max_steps=stage.steps,
        lr=stage.lr if stage.lr is not None else cfg.optim.lr,
        warmup_steps=stage.warmup_steps if stage.warmup_steps is not None else cfg.optim.warmup_steps,
    )
    out = Path(cfg.run.output_dir) / stage_name(index, stage)
    return dataclasses.replace(
        cfg,
        objective=stage.objective,
        optim=optim,
        reranker=dataclasses.replace(cfg.reranker, path=start_from),
        run=dataclasses.replace(cfg.run, output_dir=str(out)),
        stages=[],
    )


def stage_finished(directory: Path, steps: int) -> bool:
    """Whether the stage in ``directory`` trained all its ``steps`` (or stopped early on dev,
    ``run.patience``) and published its model."""
    try:
        latest = ckpt.latest_checkpoint(directory / "checkpoints")
    except FileNotFoundError:
        return False
    if latest is None or not (directory / "model" / "config.json").is_file():
        return False
    state = ckpt.read_trainer_state(latest)
    if "selection" in state and not (directory / "selection.json").is_file():
        return False  # published but stopped before saying which dev point: publish again
    return int(state["step"]) >= steps or bool(state.get("selection", {}).get("stopped_early"))


def run_stages(cfg: TrainConfig, train_one: Callable[[TrainConfig], dict[str, float]]) -> dict[str, float]:
    """Train every stage of ``cfg.stages`` in order with ``train_one`` (the one-stage job);
    finished stages are not trained again. Returns the last stage's last metrics."""
    names = [stage_name(i, s) for i, s in enumerate(cfg.stages)]
    if len(set(names)) != len(names):
        raise ConfigError(f"stages: two stages share a folder name: {names}")
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, start_from, last = [], cfg.reranker.path, {}
    for index, stage in enumerate(cfg.stages):
        one = stage_config(cfg, index, start_from)
        directory = Path(one.run.output_dir)
        record = {
            "index": index + 1,
            "name": names[index],
            "objective": to_dict(stage.objective),
            "steps": stage.steps,
            "lr": one.optim.lr,
            "started_from": start_from,
            "folder": str(directory),
        }
        if stage_finished(directory, stage.steps):
            record["status"] = "finished"
        else:
            _write_records(out, [*records, {**record, "status": "running"}])
            last = train_one(one)
            if not stage_finished(directory, stage.steps):  # pre-empted: saved, resumable
                _write_records(out, [*records, {**record, "status": "stopped"}])
                return last
            record["status"] = "finished"
        records.append(record)
        start_from = str(directory / "model")
    _write_records(out, records)
    ckpt.publish_directory(Path(start_from), out / "model")
    return last


def _write_records(out: Path, records: list[dict]) -> None:
    write_atomic(out / STAGES_FILE, json.dumps(records, indent=2) + "\n")
