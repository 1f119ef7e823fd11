"""`gumbel-rerank compare`: several objectives on equal terms, one table, resumable as a whole."""

from __future__ import annotations

import json

import pytest
import yaml
from tiny_world import build_world

from gumbel_rerank.cli import main
from gumbel_rerank.training.compare import INCOMING, UNTRAINED, run_labels
from gumbel_rerank.training.config import ObjectiveConfig


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def config(world, path):
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"train": str(world.train), "dev": str(world.dev)},
                "reader": {"path": str(world.reader), "settings": {"text_maxlength": 24}},
                "reranker": {"path": str(world.reranker)},
                "eval": {"k": 2},
                "compare": {
                    "objectives": [
                        {"name": "gumbel", "settings": {"mask": {"k": 2}}},
                        {"name": "pdist", "settings": {"tau_target": 0.5, "tau_student": 1.0, "cache_targets": True}},
                        {"name": "lce"},
                    ],
                    "test_questions": 12,
                    "ks": [1, 2],
                },
                "optim": {"lr": 1e-3, "max_steps": 3, "micro_batch_size": 4},
                "run": {"eval_every": 0, "save_every": 3, "log_every": 1},
            }
        )
    )
    return path


def test_compare_trains_each_objective_once_and_writes_one_table(world, tmp_path):
    cfg, out = config(world, tmp_path / "compare.yaml"), tmp_path / "out"
    assert main(["compare", "--config", str(cfg), "--out", str(out)]) == 0
    table = json.loads((out / "compare.json").read_text())
    assert list(table) == [INCOMING, UNTRAINED, "gumbel", "pdist", "lce"]
    assert set(table["lce"]) == {
        "R@1", "R@2", "nDCG@2", "MRR", "ind. R@2", "ind. MRR", "ind. nDCG@2", "EM@2", "F1@2", "sec/step"
    }
    assert table[INCOMING]["sec/step"] is None and table["pdist"]["sec/step"] > 0
    assert (out / "compare.png").stat().st_size > 0 and "| lce |" in (out / "compare.md").read_text()
    for label in ("gumbel", "pdist", "lce"):
        assert json.loads((out / "runs" / label / "objective.json").read_text())["name"] == label
        card = (out / "runs" / label / "model" / "README.md").read_text()  # a shareable model
        assert "## In its comparison" in card and f"| R@1 | {table[label]['R@1']:.4f} |" in card
    # same reranker start for every run: the untrained row is the reranker each run began from
    configs = [yaml.safe_load((out / "runs" / n / "config.yaml").read_text()) for n in ("gumbel", "lce")]
    assert configs[0]["reranker"] == configs[1]["reranker"] and configs[0]["optim"] == configs[1]["optim"]

    # resumable as a whole: nothing is trained or evaluated again, the table is the same
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.jsonl")}
    reports = {p: p.stat().st_mtime_ns for p in out.glob("eval/*/report.json")}
    assert main(["compare", "--config", str(cfg), "--out", str(out)]) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.jsonl")}
    assert reports == {p: p.stat().st_mtime_ns for p in out.glob("eval/*/report.json")}
    assert json.loads((out / "compare.json").read_text()) == table


def test_an_interrupted_comparison_continues_where_it_stopped(world, tmp_path):
    cfg, out = config(world, tmp_path / "compare.yaml"), tmp_path / "out"
    assert main(["compare", "--config", str(cfg), "--out", str(out), "--objectives", "lce"]) == 0
    before = (out / "runs" / "lce" / "metrics.jsonl").stat().st_mtime_ns
    assert main(["compare", "--config", str(cfg), "--out", str(out), "--objectives", "lce,gumbel"]) == 0
    assert (out / "runs" / "lce" / "metrics.jsonl").stat().st_mtime_ns == before  # not re-run
    assert list(json.loads((out / "compare.json").read_text()))[2:] == ["lce", "gumbel"]


def test_a_folder_made_with_other_settings_is_refused_not_reused(world, tmp_path, capsys):
    """Rerunning with another seed or learning rate into the same folder must not print the
    old runs' numbers as the new setting's (nor continue an old run with new settings)."""
    cfg, out = config(world, tmp_path / "compare.yaml"), tmp_path / "out"
    assert main(["compare", "--config", str(cfg), "--out", str(out), "--objectives", "lce"]) == 0
    table = (out / "compare.json").read_text()
    capsys.readouterr()
    for override, key in (("--run.seed=7", "run.seed"), ("--optim.lr=0.5", "optim.lr")):
        assert main(["compare", "--config", str(cfg), "--out", str(out), "--objectives", "lce", override]) == 1
        err = capsys.readouterr().err
        assert "other settings" in err and key in err and str(out / "runs" / "lce") in err
    assert (out / "compare.json").read_text() == table  # nothing was overwritten
    # the same settings are reused as before
    assert main(["compare", "--config", str(cfg), "--out", str(out), "--objectives", "lce"]) == 0


def test_repeated_objectives_get_their_own_folders():
    objectives = [ObjectiveConfig(name="gumbel"), ObjectiveConfig(name="pdist"), ObjectiveConfig(name="gumbel")]
    assert run_labels(objectives) == ["gumbel", "pdist", "gumbel-2"]


def test_bad_compare_settings_stop_before_anything_runs(world, tmp_path, capsys):
    cfg = config(world, tmp_path / "compare.yaml")
    assert main(["compare", "--config", str(cfg), "--out", str(tmp_path / "o"), "--compare.ks=[0]"]) == 2
    assert "compare.ks" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["compare", "--config", str(cfg), "--out", str(tmp_path / "o"), "--objectives", "nope"]) == 2
    assert not (tmp_path / "o").exists()
