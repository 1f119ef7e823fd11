"""``benchmarks/g_rerank_dynamics.py`` end to end at a few steps: it broke unseen once when the
protocol's ``train_once`` gained arguments, so the script that made ``docs/g_rerank_dynamics.md``
is run here on the demo data with the shipped reader, two variants and the credit table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gumbel_rerank.demo.command import SHIPPED_READER, demo_spec, prepare_data
from gumbel_rerank.evaluation.report import read_metrics_log

ROOT = Path(__file__).resolve().parents[1]
# the chain setting G-Rerank's tuning chose on dev (benchmarks/results/protocol/chain_protocol.json)
CHOSEN = {"objective.settings.mask.kappa": 0.5, "objective.settings.standardize": True,
          "objective.settings.mask.mode": "gumbel", "optim.lr": 1e-4}  # fmt: skip


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows by their first cell (a later table's row of the same name wins)."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in lines}


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED_READER / "config.json").is_file(), reason="no shipped reader")
def test_the_dynamics_script_trains_its_variants_and_writes_table_figures_and_credit(tmp_path):
    protocol = tmp_path / "protocol"
    prepare_data(protocol, 64, demo_spec(64))
    # a protocol that has tuned G-Rerank and not yet chosen (the script then applies the rule)
    state = {"objectives": {"gumbel": {"trials": [{"settings": {**CHOSEN, "optim.lr": 3e-4}, "best_dev": 0.1},
                                                  {"settings": CHOSEN, "best_dev": 0.4}]}}}  # fmt: skip
    (protocol / "protocol.json").write_text(json.dumps(state))
    out, figures = tmp_path / "dynamics", tmp_path / "figures"
    overrides = ["--optim.max_steps=2", "--optim.warmup_steps=0", "--optim.micro_batch_size=4",
                 "--run.eval_every=2", "--run.log_every=1", "--data.dev_subset=8"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "benchmarks/g_rerank_dynamics.py", "--protocol", str(protocol), "--out", str(out),
               "--figures", str(figures), "--variants", "chosen", "drop2", "--credit", "--credit-questions", "8"]  # fmt: skip
    done = subprocess.run(command + overrides, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    text = (out / "dynamics.md").read_text()
    summary, rest = text.split("Dev AllGold@3 at every evaluation")
    curves, credit_text = rest.split("Mean dLoss", 1)
    rows = table_rows(summary)
    header = rows.pop("variant")
    assert set(header[1:]) >= {"dev AllGold@3 (best)", "steps run"}
    for name in ("chosen", "drop2"):
        row = dict(zip(header, rows[name], strict=True))
        assert row["steps run"] == "2" and 0.0 <= float(row["dev AllGold@3 (best)"]) <= 1.0
    assert "--optim.max_steps=2" in text and json.dumps(CHOSEN) in text and "with the overrides above" in text
    # with overrides the chosen setting is another run: trained beside the variants, never in
    # the protocol's trial folder (a resumed protocol would refuse that folder's settings)
    assert not (protocol / "tune").exists()
    log = read_metrics_log(out / "chosen" / "metrics.jsonl")
    gradients = [r["role/answer/grad_log_mask"] for r in log if "role/answer/grad_log_mask" in r]
    assert gradients and all(math.isfinite(g) for g in gradients)
    assert (out / "drop2" / "metrics.jsonl").is_file()
    assert "| variant | 2 |" in curves and curves.count("| chosen | ") == curves.count("| drop2 | ") == 1
    # the credit tables: both objectives, the evidence roles, on 8 uncued questions, two readings
    assert text.count("on 8 uncued dev questions") == 2
    rows = table_rows(credit_text)
    for name in ("G-Rerank", "LOOP"):
        credit = rows[name]
        assert len(credit) >= 3 and all(math.isfinite(float(c)) for c in credit[1:])
    assert {"bridge", "answer"} <= set(rows["objective"])
    for name in ("chain_chosen", "chain_drop2", "chain_losses"):
        assert (figures / f"dynamics_{name}.png").stat().st_size > 0

    # an override the runs would not take (the chosen trial sets the rate) is a usage error
    ignored = subprocess.run(command + ["--optim.lr=0.5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert ignored.returncode == 2 and "--optim.lr=0.5: the chosen trial or a variant sets optim.lr" in ignored.stderr
