"""DeepSpeed ZeRO-2 over two gloo processes trains exactly like one process on the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import assert_trained_alike, build_world

from gumbel_rerank.cli import main

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_zero2_matches_one_process(tmp_path):
    world = build_world(tmp_path / "world")
    # one process, plain torch: 2 accumulation steps of 4 questions = global batch 8.
    # torchrun starts its workers with OMP_NUM_THREADS=1: the single process runs at that thread
    # count too, so both sum in one order (docs/bugs-and-fixes.md; tiny_world.LOSS_INVARIANT)
    single = tmp_path / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *world.overrides(single), "--optim.grad_accum=2"]) == 0
    finally:
        torch.set_num_threads(threads)
    # two processes, DeepSpeed ZeRO-2 over gloo: 1 step of 4 questions each = global batch 8
    double = tmp_path / "double"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        "-m", "gumbel_rerank", "train", *world.overrides(double),
        f"--run.deepspeed={ROOT / 'configs' / 'deepspeed' / 'zero2.json'}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    a = load_file(str(single / "model" / "model.safetensors"))
    b = load_file(str(double / "model" / "model.safetensors"))
    start = load_file(str(world.reranker / "model.safetensors"))
    # averaging two ranks' gradients equals accumulating two halves (halving is exact), so the
    # weights agree to float32 rounding; a rank's gradient left out or counted twice moves them
    # by about lr (Adam hides a global scale error; the logged losses below check the scale)
    assert_trained_alike(b, a, start)
    # both ranks logged the same global-batch loss the single process saw
    single_loss = [line for line in (single / "metrics.jsonl").read_text().splitlines()]
    double_loss = [line for line in (double / "metrics.jsonl").read_text().splitlines()]
    for x, y in zip(single_loss, double_loss, strict=True):
        torch.testing.assert_close(json.loads(x)["loss"], json.loads(y)["loss"], rtol=1e-4, atol=1e-5)
    # the DeepSpeed checkpoint holds each rank's RNG and the engine state for resume
    last = double / "checkpoints" / "step-0000006"
    assert (last / "rng-rank0.pt").is_file() and (last / "rng-rank1.pt").is_file()
    assert (last / "state" / "state").is_dir()


@pytest.mark.parametrize("fails", [False, True])
def test_every_job_leaves_the_process_group_on_success_and_on_errors(tmp_path, fails):
    """A DeepSpeed job joins a process group; the job destroys it when it ends, also when
    training raises (here a fault injected into the step after the group exists)."""
    world = build_world(tmp_path / "world")
    script = f"""
import sys, torch.distributed as dist
from gumbel_rerank.cli import main
from gumbel_rerank.training import loop
if {fails}:
    def broken(self, *args, **kwargs):
        assert dist.is_initialized()
        raise OSError("disk gone")
    loop.Trainer._train_step = broken
code = main(["train", *{[*world.overrides(tmp_path / "run", **{"optim.max_steps": 2}), f"--run.deepspeed={ROOT / 'configs' / 'deepspeed' / 'zero0.json'}", "--run.device=cpu"]!r}])
print("exit", code, "group left", not dist.is_initialized())
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert f"exit {1 if fails else 0} group left True" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]


def test_auto_device_puts_every_process_on_the_cpu_when_a_node_has_fewer_gpus_than_processes(monkeypatch, capsys):
    """Two processes on a one-GPU machine: "auto" runs both on the CPU (gloo), saying so; an
    explicit "cuda" for the second process names the counts instead of failing on cuda:1."""
    from gumbel_rerank.envinfo import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("LOCAL_RANK", rank)
        assert resolve_device("auto") == torch.device("cpu")
    assert "2 processes on this node but 1 GPU(s) visible" in capsys.readouterr().err
    with pytest.raises(ValueError, match="process 1 of its node but only 1 GPU"):
        resolve_device("cuda")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resolve_device("auto") == torch.device("cuda:0")
