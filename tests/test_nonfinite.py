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


def test_a_second_run_on_the_same_folder_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path):
    """One run per output folder: a live holder (pid and host in the message) is refused, a
    lock left by a run that died on this host is taken over, and a finished run leaves none."""
    import os
    import socket
    import subprocess
    import sys

    from gumbel_rerank.training.checkpointing import RunFolderBusy

    lock = tmp_path / "run" / ".lock"
    lock.parent.mkdir(parents=True)
    for holder in ({"pid": os.getpid(), "host": socket.gethostname()}, {"pid": 1, "host": "other-node-7"}):
        lock.write_text(json.dumps(holder))
        with pytest.raises(RunFolderBusy, match=f"pid {holder['pid']} on host {holder['host']}"):
            trainer(tmp_path, bad=set(), steps=2).fit()
        assert json.loads(lock.read_text()) == holder  # the holder's lock is left alone
        assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was written
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    trainer(tmp_path, bad=set(), steps=2).fit()
    assert (tmp_path / "run" / "checkpoints" / "latest").is_file() and not lock.exists()


def resumed(tmp_path, steps: int) -> Trainer:
    run = trainer(tmp_path, bad=set(), steps=steps)
    run.run.resume = True
    return run


def test_resume_falls_back_past_a_corrupt_or_missing_latest_and_cleans_leftovers(tmp_path, capsys):
    """A truncated latest checkpoint, then ``latest`` naming a removed folder: each resume
    says what is wrong, continues from the newest complete checkpoint, and ends with the
    weights of an uninterrupted run; unfinished saves are removed."""
    reference = trainer(tmp_path / "ref", bad=set(), steps=6)
    reference.fit()
    root = tmp_path / "run" / "checkpoints"
    trainer(tmp_path, bad=set(), steps=4).fit()
    engine_file = root / "step-0000004" / "state" / "engine.pt"
    engine_file.write_bytes(engine_file.read_bytes()[:100])  # truncated
    (root / ".tmp-step-0000005").mkdir()  # a save that never finished
    capsys.readouterr()
    run = resumed(tmp_path, 5)
    run.fit()
    out = capsys.readouterr().out
    assert "step-0000004 cannot be loaded" in out and "resumed from" in out and "step-0000003" in out
    assert "removed .tmp-step-0000005" in out and not (root / ".tmp-step-0000005").exists()
    # now point latest at a removed folder: the newest complete one (step 5) is used
    (root / "latest").write_text("step-0000099")
    run = resumed(tmp_path, 6)
    run.fit()
    out = capsys.readouterr().out
    assert "names step-0000099, which is missing or incomplete" in out and "step-0000005 (step 5)" in out
    assert torch.equal(run.module.weight.detach(), reference.module.weight.detach())


def test_resume_without_any_loadable_checkpoint_stops_instead_of_starting_over(tmp_path):
    from gumbel_rerank.training.checkpointing import CheckpointStateError

    trainer(tmp_path, bad=set(), steps=2).fit()
    for engine_file in (tmp_path / "run" / "checkpoints").glob("step-*/state/engine.pt"):
        engine_file.write_bytes(b"")
    with pytest.raises(CheckpointStateError, match="no checkpoint can be resumed from.*nothing was started from scratch"):
        resumed(tmp_path, 4).fit()
