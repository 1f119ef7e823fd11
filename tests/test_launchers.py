"""run.sh and run.slurm: the same entry point; SLURM pre-emption saves, requeues and resumes.

SLURM itself is not here: `srun` and `scontrol` are replaced on PATH by two small scripts that
do what the cluster does for this job (srun runs the task with SLURM_* variables set; scontrol
names the host and records the requeue). The launcher logic and the training run are real.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_world import build_world

from gumbel_rerank.cli import main
from gumbel_rerank.config import parse_overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def write_config(world, out: Path, path: Path, **extra) -> Path:
    nested = parse_overrides([str(x) for x in world.overrides(out, **extra)])
    path.write_text(yaml.safe_dump(nested))
    return path


@pytest.mark.parametrize("script", ["run.sh", "run.slurm"])
def test_launchers_pass_shellcheck(script):
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run([shellcheck, str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_run_sh_trains_on_cpu_with_overrides(world, tmp_path):
    config = write_config(world, tmp_path / "run", tmp_path / "c.yaml")
    env = dict(os.environ, NGPUS="0", PYTHON=sys.executable)
    result = subprocess.run(
        ["bash", str(ROOT / "run.sh"), str(config), "--optim.max_steps=2"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step-0000002"


def fake_cluster(bin_dir: Path, requeue_log: Path) -> None:
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        "#!/usr/bin/env bash\n"
        "while [[ $1 == --* ]]; do shift; done\n"
        "export SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_STEP_NUM_TASKS=1 SLURM_LOCALID=0\n"
        'exec "$@"\n'
    )
    (bin_dir / "scontrol").write_text(
        "#!/usr/bin/env bash\n"
        'if [[ $1 == show ]]; then echo localhost; else echo "$*" >> ' + str(requeue_log) + "; fi\n"
    )
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)


def test_slurm_preemption_checkpoints_requeues_and_resumes_exactly(world, tmp_path):
    steps = {"optim.max_steps": 150, "run.save_every": 1000}
    reference = tmp_path / "reference"
    assert main(["train", *world.overrides(reference, **steps)]) == 0

    out = tmp_path / "job"
    config = write_config(world, out, tmp_path / "job.yaml", **steps)
    requeue_log = tmp_path / "requeues.txt"
    fake_cluster(tmp_path / "bin", requeue_log)
    env = dict(
        os.environ,
        PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        PYTHON=sys.executable,
        SLURM_JOB_ID="4242",
        SLURM_JOB_NODELIST="node1",
        PYTHONUNBUFFERED="1",
    )
    cmd = ["bash", str(ROOT / "run.slurm"), str(config)]
    job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and job.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            job.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@300 does
            break
        time.sleep(0.05)
    output, _ = job.communicate(timeout=180)
    assert job.returncode == 0, output[-3000:]
    assert requeue_log.read_text().split() == ["requeue", "4242"]
    stopped = int((out / "checkpoints" / "latest").read_text().removeprefix("step-"))
    assert 3 <= stopped < 150, output[-2000:]

    # the requeued job runs the same script again
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"resumed from {out / 'checkpoints' / f'step-{stopped:07d}'}" in rerun.stdout
    a = load_file(str(reference / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
