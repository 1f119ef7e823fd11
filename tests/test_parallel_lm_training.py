"""The decoder-only reader behind every objective by configuration alone: `gumbel-rerank
train` with each label-free objective, `train-reader` fine-tuning a causal LM in parallel
mode, and `compare --tune`, all through ``reader.kind: parallel_lm``."""

from __future__ import annotations

import json

import pytest
import yaml
from tiny_world import build_lm_reader, build_world

from gumbel_rerank.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("world"))
    world.lm = build_lm_reader(world, "qwen2")
    return world


@pytest.mark.parametrize(
    "objective", ["gumbel", "pdist", "loop", "emdr2", "adist"]
)
def test_every_reader_objective_trains_with_the_decoder_reader_by_configuration(world, tmp_path, objective):
    out = tmp_path / objective
    extra = {"objective.name": objective, "reader.kind": "parallel_lm", "reader.path": world.lm, "optim.max_steps": 3,
             "run.eval_every": 3, "data.dev_subset": 8}
    overrides = world.overrides(out, **extra)
    if objective != "gumbel":  # the world's defaults set G-Rerank's mask
        overrides = [o for o in overrides if not o.startswith("--objective.mask.k")]
    assert main(["train", *overrides]) == 0
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("dev/R@1" in r for r in log) and all(r["loss"] == r["loss"] for r in log if "loss" in r)
    assert (out / "model" / "config.json").is_file() and (out / "report" / "report.json").is_file()


def test_train_reader_fine_tunes_a_causal_lm_to_read_in_parallel(world, tmp_path):
    out = tmp_path / "lm-reader"
    cfg = tmp_path / "reader.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"train": str(world.train), "dev": str(world.dev), "dev_subset": 8},
        "reader": {"kind": "parallel_lm", "path": str(world.lm), "settings": {"text_maxlength": 24, "answer_maxlength": 4}},
        "optim": {"lr": 1e-3, "max_steps": 6, "micro_batch_size": 4},
        "run": {"output_dir": str(out), "eval_every": 3, "save_every": 3, "log_every": 1},
        "curriculum": [{"steps": 3, "contexts": "gold"}, {"steps": 3, "contexts": "all"}],
    }))  # fmt: skip
    assert main(["train-reader", "--config", str(cfg)]) == 0
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "model")  # a plain HF causal LM directory


def test_compare_tune_runs_with_the_decoder_reader(world, tmp_path):
    import shutil

    test = tmp_path / "test.jsonl"
    shutil.copy(world.dev, test)
    cfg = tmp_path / "compare.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"train": str(world.train), "dev": str(world.dev), "dev_subset": 8},
        "reader": {"kind": "parallel_lm", "path": str(world.lm), "settings": {"text_maxlength": 24}},
        "reranker": {"path": str(world.reranker)},
        "eval": {"k": 2},
        "compare": {"objectives": [{"name": "gumbel", "settings": {"mask": {"k": 2}}}, {"name": "loop", "settings": {"cache_targets": True}}],
                    "test": str(test), "test_questions": 8, "ks": [1, 2]},
        "tune": {"trials": 2, "seeds": [1], "patience": 1},
        "optim": {"lr": 1e-3, "max_steps": 2, "micro_batch_size": 4},
        "run": {"eval_every": 1, "save_every": 100, "log_every": 1},
    }))  # fmt: skip
    out = tmp_path / "out"
    assert main(["compare", "--tune", "--config", str(cfg), "--out", str(out)]) == 0
    assert "| loop |" in (out / "protocol.md").read_text()
