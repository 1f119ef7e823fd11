"""Every registered reranker objective trains through the same `gumbel-rerank train` loop; KD
reads its teacher from a data field or a TREC run."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import build_world

from gumbel_rerank.cli import main
from gumbel_rerank.data import load_questions
from gumbel_rerank.objectives import registry
from gumbel_rerank.objectives.base import StepContext
from gumbel_rerank.objectives.kd import KDLoss, KDSettings
from gumbel_rerank.training.collate import make_collate

SETTINGS = {
    "gumbel": {"mask": {"k": 2}},
    "emdr2": {"level": "token", "tau_vocab": 2.0},
    "kd": {"loss": "kl"},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("world"))
    # teacher scores for KD: a field of the data (and passage ids for a TREC run)
    records = [json.loads(line) for line in world.train.read_text().splitlines()]
    for q, record in enumerate(records):
        for i, passage in enumerate(record["ctxs"]):
            passage["teacher"] = float((q + 3 * i) % 7) - 3.0
            passage["id"] = f"p{q}-{i}"
    world.train.write_text("".join(json.dumps(r) + "\n" for r in records))
    return world


@pytest.mark.parametrize("name", registry.names(trains="reranker"))
def test_every_objective_trains_in_the_shared_loop(world, tmp_path, name):
    out = tmp_path / name
    extra = [f"--objective.name={name}", f"--objective.settings={json.dumps(SETTINGS.get(name, {}))}"]
    if name == "kd":
        extra.append("--data.score_field=teacher")
    args = [a for a in world.overrides(out, **{"optim.max_steps": 2}) if not a.startswith("--objective.mask")]
    assert main(["train", *args, *extra]) == 0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logged if "loss" in r)
    before, after = load_file(str(world.reranker / "model.safetensors")), load_file(str(out / "model" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it learned something
    record = json.loads((out / "objective.json").read_text())
    assert record["name"] == name and record["uses_labels"] == registry.get(name).uses_labels


def test_kd_reads_teacher_scores_from_a_field_or_a_trec_run(world, tmp_path):
    questions = load_questions(world.train, score_field="teacher")
    batch = make_collate(questions, None)([(i, i) for i in range(3)])
    from_field = KDLoss(KDSettings()).teacher_scores(batch, 5)
    expected = torch.tensor([[float((q + 3 * i) % 7) - 3.0 for i in range(5)] for q in range(3)])
    torch.testing.assert_close(from_field, expected)
    run = tmp_path / "teacher.trec"
    lines = [f"{q.id} Q0 p{n}-{i} {i + 1} {10.0 - i} t" for n, q in enumerate(questions[i] for i in range(3)) for i in range(4)]
    run.write_text("\n".join(lines) + "\n")
    from_run = KDLoss(KDSettings(teacher_run=str(run))).teacher_scores(batch, 5)
    torch.testing.assert_close(from_run[:, :4], torch.tensor([[10.0, 9.0, 8.0, 7.0]] * 3))
    assert from_run[:, 4].isnan().all()  # the run has no score for the fifth passage: left out


def test_kd_without_any_teacher_score_learns_nothing_and_says_so(world):
    reranker_free = KDLoss(KDSettings(loss="kl"))
    questions = load_questions(world.dev)  # no teacher field: scores absent
    batch = make_collate(questions, None)([(0, 0), (1, 1)])
    from gumbel_rerank.rerankers import Reranker

    loss, metrics = reranker_free.loss(Reranker.from_pretrained(world.reranker), batch, StepContext(0, 0, log=True))
    assert float(loss.detach()) == 0.0 and metrics["teacher_coverage"] == 0.0
