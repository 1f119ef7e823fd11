"""`gumbel-rerank env` and the fetch script's dry run (the network is not reachable here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_env_reports_versions_and_accelerator():
    out = subprocess.run(
        [sys.executable, "-m", "gumbel_rerank", "env"], capture_output=True, text=True, check=True
    ).stdout
    import torch
    import transformers

    for key in ("python", "torch", "transformers", "deepspeed", "datasets", "cuda available", "bf16 supported"):
        assert any(line.startswith(key) for line in out.splitlines()), key
    assert torch.__version__ in out and transformers.__version__ in out
    assert "not installed" not in out.split("deepspeed")[1].splitlines()[0]


def run_script(*args):
    return subprocess.run(
        ["bash", str(ROOT / "readers" / "get_model.sh"), *args], capture_output=True, text=True, cwd=ROOT
    )


def test_get_model_dry_run_lists_every_model_and_writes_nothing(tmp_path):
    dest = tmp_path / "ckpt"
    result = run_script("--dry-run", "--dest", str(dest), "all")
    assert result.returncode == 0, result.stderr
    for name in ("nq_reader_base", "tqa_reader_large", "hopo_reader_base", "musique_reader_large", "2wiki_reader_base"):
        assert f"{name} -> {dest}/{name}" in result.stdout
    assert "FiD/pretrained_models/nq_reader_base.tar.gz" in result.stdout
    assert "download syhuang/2wiki_reader_large" in result.stdout
    assert not dest.exists()


def test_get_model_is_idempotent_and_refuses_unknown_names(tmp_path):
    done = tmp_path / "nq_reader_base"
    done.mkdir()
    (done / ".complete").touch()
    result = run_script("--dry-run", "--dest", str(tmp_path), "nq_reader_base")
    assert "already in" in result.stdout and "curl" not in result.stdout
    bad = run_script("--dry-run", "--dest", str(tmp_path), "nq_reader_base", "no_such_reader")
    assert bad.returncode == 2 and "unknown model 'no_such_reader'" in bad.stderr
    assert "curl" not in bad.stdout


@pytest.mark.parametrize("script", ["readers/get_model.sh"])
def test_shell_scripts_pass_shellcheck(script):
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run([shellcheck, str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("command", ["convert", "evaluate", "rerank", "train", "train-reader"])
def test_every_subcommand_is_reachable_from_the_console_script(command):
    result = subprocess.run(
        [sys.executable, "-m", "gumbel_rerank", command, "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and f"gumbel-rerank {command}" in result.stdout
