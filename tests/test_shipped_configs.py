"""Every shipped config loads, names a DeepSpeed file that exists, and points at what
readers/get_model.sh fetches."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from gumbel_rerank.config import load_config
from gumbel_rerank.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*_fid_*.yaml"))
DRY_RUN = subprocess.run(
    ["bash", str(ROOT / "readers" / "get_model.sh"), "--dry-run", "--dest", "X", "all"],
    capture_output=True, text=True, check=True,
).stdout  # fmt: skip
FETCHABLE = set(re.findall(r"^(\S+) -> X/", DRY_RUN, re.M))


def test_every_published_setting_has_a_config():
    names = {p.stem for p in CONFIGS}
    for dataset in ("hotpotqa", "musique", "2wiki", "nq", "tqa"):
        for size in ("base", "large"):
            assert f"{dataset}_fid_{size}" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid_and_points_at_fetchable_models(path):
    cfg = load_config(TrainConfig, path)
    assert (ROOT / cfg.run.deepspeed).is_file()
    json.loads((ROOT / cfg.run.deepspeed).read_text())
    for model_path in (cfg.reader.path, cfg.reader.tokenizer, cfg.reranker.path):
        folder = Path(model_path)
        assert folder.parent == Path("readers/checkpoints"), model_path
        assert folder.name in FETCHABLE, model_path
    size = path.stem.rsplit("_", 1)[1]
    assert cfg.reader.settings.text_maxlength == {"base": 200, "large": 250}[size]  # FiD's lengths


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "deepspeed").glob("*.json")), ids=lambda p: p.stem)
def test_deepspeed_configs_leave_batch_sizes_to_the_optim_section(path):
    config = json.loads(path.read_text())
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert config.get(key, "auto") == "auto"
    assert "optimizer" not in config and "scheduler" not in config
    assert config["zero_optimization"]["stage"] in (0, 1, 2, 3)
