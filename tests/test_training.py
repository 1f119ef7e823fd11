"""The training loop: sampling, run folder, logging, checkpoints, resume, pre-emption."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from small_disk import run_on_a_small_disk
from tiny_world import assert_trained_alike, build_world

from gumbel_rerank.cli import main
from gumbel_rerank.envinfo import native_bf16
from gumbel_rerank.training.loop import GlobalBatchSampler

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def model_weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_sampler_splits_the_global_batch_the_same_way_for_any_layout():
    one = GlobalBatchSampler(10, seed=3, micro_batch=2, world_size=1, grad_accum=2)
    two = GlobalBatchSampler(10, seed=3, micro_batch=2, world_size=2, grad_accum=1)
    for step in range(7):  # crosses epochs (global batch 4, 10 examples)
        assert one.micro_batch_items(step, 0, 0) == two.micro_batch_items(step, 0, 0)
        assert one.micro_batch_items(step, 0, 1) == two.micro_batch_items(step, 1, 0)
    epoch0 = [i for s in range(5) for m in range(2) for i, _ in one.micro_batch_items(s, 0, m)][:10]
    assert sorted(epoch0) == list(range(10))  # each epoch is a permutation
    positions = [p for m in range(2) for _, p in one.micro_batch_items(0, 0, m)]
    assert positions == [0, 1, 2, 3]


def test_train_writes_run_folder_logs_and_checkpoints(world, tmp_path):
    out = tmp_path / "run"
    reader_before = model_weights(world.reader)
    # eval.ks without the mask's k (2): the in-loop dev metrics must still report @2, the table's k
    overrides = {"run.eval_every": 3, "run.keep_last": 1, "eval.ks": "[1, 5]"}
    assert main(["train", *world.overrides(out, **overrides)]) == 0
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"step-0000006", "latest"}
    assert (out / "checkpoints" / "latest").read_text() == "step-0000006"
    versions = json.loads((out / "versions.json").read_text())
    assert versions["git commit"] and versions["torch"] == torch.__version__
    # the reranker's autocast "auto" runs bf16 only on a CPU with native bf16: the run says which
    assert versions["cpu native bf16"] == str(native_bf16(torch.device("cpu")))
    assert json.loads((out / "reader.json").read_text())["legacy_bias_used"] is False
    assert "objective:" in (out / "config.yaml").read_text()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if "loss" in line]
    assert [line["step"] for line in train_lines] == [1, 2, 3, 4, 5, 6]
    for key in ("loss_soft", "loss_hard", "mask_entropy", "effective_k", "score_spread", "lr", "grad_norm"):
        assert all(key in line for line in train_lines), key
    assert all(1.0 <= line["effective_k"] <= 2.0 + 1e-6 for line in train_lines)
    dev = [line for line in lines if "dev/R@1" in line]
    assert [line["step"] for line in dev] == [3, 6] and all(0 <= d["dev/R@1"] <= 1 for d in dev)
    assert all(f"dev/{m}@{k}" in d for d in dev for m in ("R", "AllGold") for k in (1, 2, 5)), dev[0]
    # the frozen reader is untouched, the trained reranker moved
    after = model_weights(world.reader)
    assert all(torch.equal(reader_before[k], after[k]) for k in reader_before)
    trained, initial = model_weights(out / "model"), model_weights(world.reranker)
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)
    # the final dev report, with the training curves
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["rankings"]) == {"reranker", "retriever"} and "EM@2" in report["end_to_end"]["reranker"]
    assert (out / "report" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_existing_run_is_not_overwritten_without_resume(world, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *world.overrides(out, **{"optim.max_steps": 3})]) == 0
    before = (out / "checkpoints" / "step-0000003" / "model" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", *world.overrides(out, **{"optim.max_steps": 3})]) == 1
    assert "pass --resume" in capsys.readouterr().err
    assert (out / "checkpoints" / "step-0000003" / "model" / "model.safetensors").read_bytes() == before


ENGINES = {
    "torch": [],
    "deepspeed-zero2": [f"--run.deepspeed={ROOT / 'configs' / 'deepspeed' / 'zero2.json'}"],
    "deepspeed-zero3": [f"--run.deepspeed={ROOT / 'configs' / 'deepspeed' / 'zero3.json'}"],
    "deepspeed-zero2-bf16": [f"--run.deepspeed={ROOT / 'configs' / 'deepspeed' / 'zero2_bf16.json'}"],
}


def run_cli(args: list[str], engine: str) -> None:
    """Plain torch runs in-process; DeepSpeed runs in a subprocess, as users run it: ZeRO-3
    patches torch functions process-wide, which would leak into later in-process tests."""
    if engine == "torch":
        assert main(args) == 0
        return
    result = subprocess.run(
        [sys.executable, "-m", "gumbel_rerank", *args, *ENGINES[engine]],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("engine", ["torch", "deepspeed-zero2", "deepspeed-zero3"])
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(world, tmp_path, engine):
    full = tmp_path / "full"
    run_cli(["train", *world.overrides(full)], engine)
    # stop after the step-3 checkpoint: a copy of the run as it was then
    cut = tmp_path / "cut"
    (cut / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step-0000003", cut / "checkpoints" / "step-0000003")
    (cut / "checkpoints" / "latest").write_text("step-0000003")
    lines = (full / "metrics.jsonl").read_text().splitlines()
    (cut / "metrics.jsonl").write_text("\n".join(lines) + "\n")  # includes steps 4-6: must be dropped
    run_cli(["train", *world.overrides(cut), "--resume"], engine)
    a, b = model_weights(full / "model"), model_weights(cut / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("signame", ["SIGUSR1", "SIGTERM"])
def test_preemption_signal_saves_and_the_same_command_resumes_exactly(world, tmp_path, signame):
    """What run.slurm relies on: SIGUSR1 (asked ahead of the time limit) or SIGTERM (scancel,
    or the limit without a requested signal) -> checkpoint at the next step -> exit 0; --resume
    finishes with the weights of an uninterrupted run."""
    steps = {"optim.max_steps": 150, "run.save_every": 1000, "run.log_every": 1}
    reference = tmp_path / "reference"
    assert main(["train", *world.overrides(reference, **steps)]) == 0

    out = tmp_path / "preempted"
    cmd = [sys.executable, "-m", "gumbel_rerank", "train", *world.overrides(out, **steps)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            proc.send_signal(getattr(signal, signame))
            break
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "pre-empted: saved step" in output
    stopped = int((out / "checkpoints" / "latest").read_text().removeprefix("step-"))
    assert 3 <= stopped < 150
    assert not (out / "model").exists()  # the run is not finished
    assert main(["train", *world.overrides(out, **steps), "--resume"]) == 0
    a, b = model_weights(reference / "model"), model_weights(out / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_deepspeed_run_trains_and_exports(world, tmp_path):
    out = tmp_path / "bf16"
    run_cli(["train", *world.overrides(out, **{"optim.max_steps": 3})], "deepspeed-zero2-bf16")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(line["loss"])) for line in lines)
    weights = model_weights(out / "model")
    assert {w.dtype for w in weights.values()} == {torch.bfloat16}  # the bf16 config took effect
    assert any(not torch.equal(weights[k].float(), v.float()) for k, v in model_weights(world.reranker).items())


def test_bad_config_is_a_clear_error_not_a_traceback(world, tmp_path, capsys):
    assert main(["train", *world.overrides(tmp_path / "x", **{"optim.lr": "fast"})]) == 2
    assert "optim.lr: expected float" in capsys.readouterr().err
    assert main(["train", "--optim.max_steps=3"]) == 2
    assert "data.train" in capsys.readouterr().err


def test_wandb_auto_goes_offline_without_network_and_writes_locally(world, tmp_path, monkeypatch):
    from gumbel_rerank.training import metrics_log

    monkeypatch.delenv("WANDB_MODE", raising=False)  # conftest disables wandb for other tests
    assert metrics_log.wandb_mode("auto") == ("online" if metrics_log.network_reachable() else "offline")
    monkeypatch.setattr(metrics_log, "network_reachable", lambda *a, **k: False)
    out = tmp_path / "wb"
    assert main(["train", *world.overrides(out, **{"optim.max_steps": 2, "run.wandb": "auto"})]) == 0
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and (out / "wandb_id").read_text().strip() in runs[0].name


def test_zero3_with_accumulation_matches_plain_torch(world, tmp_path):
    """ZeRO-3 must see the forward pass through its engine, or accumulation goes wrong."""
    torch_run, zero3_run = tmp_path / "torch", tmp_path / "zero3"
    run_cli(["train", *world.overrides(torch_run), "--optim.grad_accum=2"], "torch")
    run_cli(["train", *world.overrides(zero3_run), "--optim.grad_accum=2"], "deepspeed-zero3")
    # ZeRO-3 sums in its own (flat, partitioned) order: equal up to rounding, and not at all on
    # the tensors whose gradient is rounding noise (tiny_world.LOSS_INVARIANT)
    assert_trained_alike(model_weights(zero3_run / "model"), model_weights(torch_run / "model"), model_weights(world.reranker))


def test_resume_may_split_the_same_global_batch_differently(world, tmp_path):
    full = tmp_path / "full"
    assert main(["train", *world.overrides(full)]) == 0
    cut = tmp_path / "cut"
    shutil.copytree(full / "checkpoints" / "step-0000003", cut / "checkpoints" / "step-0000003")
    (cut / "checkpoints" / "latest").write_text("step-0000003")
    (cut / "versions.resumed-at-5.json").write_text("{}")  # a segment training goes back before
    # half the micro-batch, twice the accumulation: the same examples and noise per step
    assert main(["train", *world.overrides(cut, **{"optim.micro_batch_size": 2, "optim.grad_accum": 2}), "--resume"]) == 0
    a, b = model_weights(full / "model"), model_weights(cut / "model")
    start = model_weights(world.reranker)
    moved = max((a[k] - start[k]).abs().max().item() for k in a)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 0.05 * moved
    assert (cut / "config.resumed-at-3.yaml").is_file()
    # the resume records its own versions beside any earlier ones (only a resume wrote here)
    assert (cut / "versions.resumed-at-3.json").is_file() and not (cut / "versions.json").exists()
    assert not (cut / "versions.resumed-at-5.json").exists()  # stale: steps 3.. were made again
    # a different seed would continue a different run: refused
    with pytest.raises(ValueError, match="run.seed=0"):
        main(["train", *world.overrides(cut, **{"run.seed": 1, "optim.max_steps": 9}), "--resume"])


def test_keep_last_never_prunes_the_checkpoint_it_just_wrote(tmp_path):
    from gumbel_rerank.training import checkpointing as ckpt

    root = tmp_path / "checkpoints"
    for step in (100, 200):  # 200 is a stale folder `latest` does not name
        (root / ckpt.checkpoint_name(step)).mkdir(parents=True)
        (root / ckpt.checkpoint_name(step) / ckpt.STATE_FILE).write_text("{}")
    tmp = root / ".tmp-step-0000150"
    tmp.mkdir()
    (tmp / ckpt.STATE_FILE).write_text("{}")
    final = ckpt.finalize(tmp, root, 150, keep_last=1)
    assert final.is_dir() and ckpt.latest_checkpoint(root) == final
    assert not (root / "step-0000100").exists()


def test_partial_reranker_settings_override_keeps_the_saved_ones(world, tmp_path):
    from gumbel_rerank.rerankers.model import Reranker

    custom = tmp_path / "custom_reranker"
    reranker = Reranker.from_pretrained(world.reranker)
    reranker.config.template = "{text}"
    reranker.save_pretrained(custom)
    out = tmp_path / "run"
    args = world.overrides(out, **{"optim.max_steps": 1, "reranker.path": custom, "reranker.settings.max_length": 40})
    assert main(["train", *args]) == 0
    saved = json.loads((out / "model" / "gumbel_rerank.json").read_text())
    assert saved["template"] == "{text}" and saved["max_length"] == 40


def test_train_on_a_folder_another_live_run_holds_exits_1_naming_it(world, tmp_path, capsys):
    import socket

    out = tmp_path / "busy"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert main(["train", *world.overrides(out, **{"optim.max_steps": 2})]) == 1
    err = capsys.readouterr().err
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in err and str(out) in err


def finished_and_half_trained(world, tmp_path: Path, steps: dict) -> tuple[Path, Path]:
    """Two runs of ``steps``: ``reference`` trained to the end in two halves, ``run`` stopped
    at the half (a checkpoint there); the schedule follows max_steps, so both halves match."""
    half = {**steps, "optim.max_steps": steps["optim.max_steps"] // 2}
    reference, out = tmp_path / "reference", tmp_path / "run"
    for folder in (reference, out):
        assert main(["train", *world.overrides(folder, **half)]) == 0
    assert main(["train", *world.overrides(reference, **steps), "--resume"]) == 0
    return reference, out


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_resumes(world, tmp_path):
    """A write error while saving a checkpoint (RLIMIT_FSIZE standing in for a full disk):
    the run stops naming the unfinished folder and the intact previous checkpoint, leaves no
    partial folder, and `--resume` once space is back ends with an uninterrupted run's weights."""
    steps = {"optim.max_steps": 6, "run.save_every": 3}
    reference, out = finished_and_half_trained(world, tmp_path, steps)
    limit = (out / "checkpoints" / "step-0000003" / "state" / "engine.pt").stat().st_size // 2
    cmd = [sys.executable, "-m", "gumbel_rerank", "train", *world.overrides(out, **steps), "--resume"]
    failed = run_on_a_small_disk(cmd, limit, cwd=ROOT)
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "saving the step 6 checkpoint into" in failed.stderr and ".tmp-step-0000006" in failed.stderr
    assert "step-0000003 is intact" in failed.stderr
    checkpoints = out / "checkpoints"
    assert not list(checkpoints.glob(".tmp-*")) and (checkpoints / "latest").read_text() == "step-0000003"
    assert main(["train", *world.overrides(out, **steps), "--resume"]) == 0
    a, b = model_weights(reference / "model"), model_weights(out / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_adamw_runs_the_fused_kernel_and_matches_torch_reference_loop():
    """The optimizer is torch's fused AdamW (one pass instead of a Python loop per tensor) with
    decay on matrices only; its updates equal the per-tensor loop's to float rounding."""
    from gumbel_rerank.training.config import OptimConfig
    from gumbel_rerank.training.engine import build_optimizer

    def module() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 1))

    cfg = OptimConfig(lr=1e-2, weight_decay=0.1)
    ours, reference = module(), module()
    optimizer = build_optimizer(ours, cfg)
    assert all(group["fused"] for group in optimizer.param_groups)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(ours[0].weight), id(ours[2].weight)}
    by_id = {id(p): q for p, q in zip(ours.parameters(), reference.parameters(), strict=True)}
    loop = torch.optim.AdamW(
        [{**g, "params": [by_id[id(p)] for p in g["params"]], "fused": None, "foreach": False} for g in optimizer.param_groups]
    )
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(4, 6, generator=generator)
        for model, opt in ((ours, optimizer), (reference, loop)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours[0].weight, module()[0].weight)  # it did train


def test_a_full_disk_while_appending_to_the_metrics_log_keeps_whole_lines_and_resumes(world, tmp_path):
    """A write error while appending to metrics.jsonl (RLIMIT_FSIZE in the child, a few bytes
    above the log's size): the run exits 1 naming the log and the intact checkpoint, the log
    keeps its whole lines and no cut one, and `--resume` once space is back ends with an
    uninterrupted run's weights and one record per logged step."""
    steps = {"optim.max_steps": 12, "run.save_every": 6}
    reference, out = finished_and_half_trained(world, tmp_path, steps)
    log = out / "metrics.jsonl"
    before = log.read_bytes()
    limit = len(before) + 40  # the next line is longer: it is cut at the limit
    assert limit > max(p.stat().st_size for p in out.glob("*.yaml"))  # the run folder files fit
    cmd = [sys.executable, "-m", "gumbel_rerank", "train", *world.overrides(out, **steps), "--resume"]
    failed = run_on_a_small_disk(cmd, limit, cwd=ROOT)
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert f"while appending step 7 to {log}" in failed.stderr
    assert f"the last checkpoint {out / 'checkpoints' / 'step-0000006'} is intact" in failed.stderr
    assert log.read_bytes() == before  # the cut line was removed
    assert main(["train", *world.overrides(out, **steps), "--resume"]) == 0
    a, b = model_weights(reference / "model"), model_weights(out / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert logged == list(range(1, 13))


def test_grad_chunk_recompute_trains_to_the_weights_of_plain_chunked_scoring(world, tmp_path):
    """reranker.settings.grad_chunk_size (activations recomputed per chunk in backward) trains
    to the same weights as scoring the same chunks with every activation kept."""
    steps = {"optim.max_steps": 3, "run.save_every": 3}
    plain, chunked = tmp_path / "plain", tmp_path / "chunked"
    assert main(["train", *world.overrides(plain, **steps, **{"objective.settings.score_chunk_size": 3})]) == 0
    assert main(["train", *world.overrides(chunked, **steps, **{"reranker.settings.grad_chunk_size": 3})]) == 0
    a, b = model_weights(plain / "model"), model_weights(chunked / "model")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=key)
    assert main(["train", *world.overrides(tmp_path / "bad", **{"reranker.settings.grad_chunk_size": 0})]) == 2
    assert not (tmp_path / "bad").exists()


def test_encoder_cache_trains_to_the_same_weights_and_serves_later_epochs(world, tmp_path):
    """reader.encoder_cache_mib: the second epoch's questions come from the cache (the log says
    how many), and the run ends with the weights of a run that encodes every time."""
    steps = {"optim.max_steps": 24, "run.save_every": 24, "run.log_every": 8}  # 96 examples of 64
    plain, cached = tmp_path / "plain", tmp_path / "cached"
    assert main(["train", *world.overrides(plain, **steps)]) == 0
    assert main(["train", *world.overrides(cached, **steps, **{"reader.encoder_cache_mib": 64})]) == 0
    a, b = model_weights(plain / "model"), model_weights(cached / "model")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)
    last = [json.loads(line) for line in (cached / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["step"] == 24 and last["encoder_cache/entries"] == 64
    assert last["encoder_cache/hits"] >= 32 - 4 and last["encoder_cache/misses"] == 64  # every question encoded once
    assert "encoder_cache/hits" not in (plain / "metrics.jsonl").read_text()
    assert main(["train", *world.overrides(tmp_path / "bad", **{"reader.encoder_cache_mib": -1})]) == 2


def test_dev_selection_publishes_the_best_point_stops_on_patience_and_resumes_exactly(world, tmp_path):
    """run.select_metric keeps the best dev evaluation's model as model/ and run.patience stops
    after that many evaluations without improvement; a run stopped midway and resumed makes
    the same decisions and ends with the same weights."""
    steps = {
        "optim.max_steps": 40, "optim.scheduler": "constant", "optim.lr": 3e-3, "run.eval_every": 2,
        "run.save_every": 1000, "run.select_metric": "MRR", "run.patience": 3,
    }  # fmt: skip
    full = tmp_path / "full"
    assert main(["train", *world.overrides(full, **steps)]) == 0
    chosen = json.loads((full / "selection.json").read_text())
    evals = [r for r in map(json.loads, (full / "metrics.jsonl").read_text().splitlines()) if "dev/MRR" in r]
    curve = [(r["step"], r["dev/MRR"]) for r in evals]
    best = max(value for _, value in curve)
    assert chosen["best_value"] == pytest.approx(best)
    assert chosen["best_step"] == next(step for step, value in curve if value == best)  # the first best
    assert chosen["stopped_early"], curve  # MRR saturates long before 40 steps in this world
    last = curve[-1][0]
    assert last == chosen["best_step"] + 3 * 2 < 40  # three evaluations without improvement
    assert int((full / "checkpoints" / "latest").read_text().removeprefix("step-")) == last
    assert all(torch.equal(a, b) for a, b in zip(model_weights(full / "model").values(), model_weights(full / "best").values(), strict=True))
    assert chosen["best_seconds"] > 0

    # stop before the best point, then resume to the end: the same selection and weights
    part = tmp_path / "part"
    assert main(["train", *world.overrides(part, **{**steps, "optim.max_steps": 4})]) == 0
    assert main(["train", *world.overrides(part, **steps), "--resume"]) == 0
    again = json.loads((part / "selection.json").read_text())
    assert {k: again[k] for k in ("best_step", "best_value", "stopped_early")} == {k: chosen[k] for k in ("best_step", "best_value", "stopped_early")}
    a, b = model_weights(full / "model"), model_weights(part / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a stopped run resumed again trains nothing more
    assert main(["train", *world.overrides(part, **steps), "--resume"]) == 0
    assert int((part / "checkpoints" / "latest").read_text().removeprefix("step-")) == last
