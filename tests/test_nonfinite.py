"""A NaN/inf loss or gradient: the step's update is skipped and counted; after
``run.max_nonfinite_steps`` in a row the run stops naming the step, the batch's question ids
and the last good checkpoint (issue 14)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from gumbel_rerank.training.config import OptimConfig, RunConfig
from gumbel_rerank.training.loop import Trainer


class Poisoned:
    """A least-squares objective on a linear layer whose loss is NaN at the steps in ``bad``."""

    uses_labels = False

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad

    def loss(self, module, batch, ctx):  # noqa: ANN001, ANN201
        x = torch.ones(len(batch.ids), 4)
        loss = (module(x) - 1.0).pow(2).mean()
        if ctx.step in self.bad:
            loss = loss * float("nan")
        return loss, {}


def trainer(tmp_path, bad: set[int], steps: int) -> Trainer:
    torch.manual_seed(0)
    return Trainer(
        module=torch.nn.Linear(4, 1),
        objective=Poisoned(bad),
        collate=lambda items: SimpleNamespace(ids=[f"q{i}" for i, _ in items]),
        n_examples=16,
        optim=OptimConfig(lr=0.1, max_steps=steps, micro_batch_size=2, scheduler="constant"),
        run=RunConfig(output_dir=str(tmp_path / "run"), eval_every=0, save_every=1, log_every=1, keep_last=10, final_report=False),
        save_module=lambda module, directory: (directory.mkdir(parents=True, exist_ok=True), torch.save(module.state_dict(), directory / "m.pt")),
    )


def test_nonfinite_steps_are_skipped_and_counted(tmp_path):
    run = trainer(tmp_path, bad={2, 3}, steps=6)
    run.fit()
    assert all(torch.isfinite(p).all() for p in run.module.parameters())
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["nonfinite_steps"] == 2
    # the skipped steps changed nothing: the weights after step 4 (two skipped) equal those of
    # a run that trained 2 steps, since every step here sees the same batch shape and target
    short = trainer(tmp_path / "short", bad=set(), steps=2)
    short.fit()
    after_skip = torch.load(tmp_path / "run" / "checkpoints" / "step-0000004" / "model" / "m.pt")
    assert torch.equal(after_skip["weight"], short.module.weight.detach())


def test_too_many_nonfinite_steps_in_a_row_stop_with_step_ids_and_checkpoint(tmp_path):
    run = trainer(tmp_path, bad={1, 2, 3, 4}, steps=6)
    with pytest.raises(FloatingPointError) as err:
        run.fit()
    message = str(err.value)
    assert "step 4: 3 step(s) in a row" in message and "'q" in message
    assert message.endswith("step-0000003")  # skipped steps leave the weights good: step 3 holds step 1's
    assert all(torch.isfinite(p).all() for p in run.module.parameters())
