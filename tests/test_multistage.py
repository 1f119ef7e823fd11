"""Multi-stage training: stage boundaries, stage 2 starting from stage 1's reranker, the run
folder's record of the stages, and an exact resume inside stage 2."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import build_world

from gumbel_rerank.cli import main
from gumbel_rerank.config import ConfigError, load_config
from gumbel_rerank.training.config import TrainConfig

STAGES = [
    "--stages=[{objective: {name: gumbel, settings: {mask: {k: 2}}}, steps: 3},"
    " {objective: {name: lce}, steps: 2, lr: 5.0e-4}]",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def weights(directory):
    return load_file(str(directory / "model.safetensors"))


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def staged(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("staged") / "run"
    assert main(["train", *world.overrides(out, **{"run.save_every": 1, "run.keep_last": 3}), *STAGES]) == 0
    return out


def test_each_stage_has_its_folder_objective_steps_and_lr(staged):
    records = json.loads((staged / "stages.json").read_text())
    assert [r["name"] for r in records] == ["stage-1-gumbel", "stage-2-lce"]
    assert [r["status"] for r in records] == ["finished", "finished"]
    assert records[1]["started_from"] == str(staged / "stage-1-gumbel" / "model")
    assert records[1]["lr"] == 5e-4 and records[1]["objective"]["name"] == "lce"
    for name, steps in (("stage-1-gumbel", 3), ("stage-2-lce", 2)):
        logged = [json.loads(line)["step"] for line in (staged / name / "metrics.jsonl").read_text().splitlines()]
        assert max(logged) == steps  # each stage counts its own steps
        saved = json.loads((staged / name / "objective.json").read_text())
        assert saved["name"] == name.split("-")[-1]
    assert saved["uses_labels"] is True  # LCE reads gold flags, and the run folder says so
    assert same(weights(staged / "model"), weights(staged / "stage-2-lce" / "model"))


def test_stage_two_starts_from_stage_ones_reranker(world, staged, tmp_path):
    """Stage 1 then stage 2 by hand, as two plain runs, gives the same weights."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", *world.overrides(one, **{"optim.max_steps": 3})]) == 0
    assert same(weights(one / "model"), weights(staged / "stage-1-gumbel" / "model"))
    lce = {"reranker.path": one / "model", "optim.max_steps": 2, "optim.lr": 5e-4, "objective.name": "lce"}
    args = [a for a in world.overrides(two, **lce) if not a.startswith("--objective.mask")]
    assert main(["train", *args]) == 0
    assert same(weights(two / "model"), weights(staged / "model"))


def test_resume_inside_stage_two_continues_exactly(world, staged, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(staged, out)
    stage2 = out / "stage-2-lce"
    shutil.rmtree(stage2 / "checkpoints" / "step-0000002")  # as if killed after step 1
    (stage2 / "checkpoints" / "latest").write_text("step-0000001")
    shutil.rmtree(stage2 / "model")
    shutil.rmtree(out / "model")
    args = world.overrides(out, **{"run.save_every": 1, "run.keep_last": 3})
    assert main(["train", *args, *STAGES, "--resume"]) == 0
    assert same(weights(out / "model"), weights(staged / "model"))
    assert same(weights(out / "stage-1-gumbel" / "model"), weights(staged / "stage-1-gumbel" / "model"))


def test_bad_stages_stop_at_start_up():
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        load_config(TrainConfig, None, ["--stages=[{objective: {name: lce}, steps: 0}]"])
    with pytest.raises(ConfigError, match=r"objective\.name: 'nope'"):
        load_config(TrainConfig, None, ["--stages=[{objective: {name: nope}, steps: 3}]"])
