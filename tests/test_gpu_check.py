"""The GPU check's rehearsal: ``benchmarks/gpu_check.sh --tiny`` runs every part of the device
script at tiny sizes on the CPU (the user's run.sh on the shipped FiD configs with DeepSpeed
and with the plain engine, n = 100 with the memory options, predict, the report), so a renamed
option or a broken override fails here, long before a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_rehearses_every_part_on_the_cpu(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), WORK=str(tmp_path / "work"), PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--tiny"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    parts = [r["part"] for r in rows]
    assert parts == ["env", "build", "train", "train", "train", "predict"]
    trains = [r for r in rows if r["part"] == "train"]
    assert all(r["ok"] and r["steps"] == 2 and r["sec_per_step"] > 0 and r["tflop_per_step"] > 0 for r in trains)
    assert {(r["engine"], r["n"]) for r in trains} == {("ds", 20), ("ds", 100), ("torch", 20)}
    report = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| large:100:ds | ds | 100 |" in report and "gpu_check: 0 part(s) failed" in done.stdout
    assert "| tiny (" in (tmp_path / "out" / "decoder_reader_gpu.md").read_text()
    # the n = 100 run used the memory options
    config = (tmp_path / "work" / "runs" / "large-100-ds" / "config.yaml").read_text()
    assert "grad_chunk_size: 20" in config and "encode_chunk_size: 20" in config
