"""Typed configs: YAML defaults, --key=value overrides, errors that name the key."""

from __future__ import annotations

import pytest

from gumbel_rerank.config import ConfigError, load_config, parse_overrides, save_config
from gumbel_rerank.training.config import TrainConfig


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.001\n  max_steps: 50\nobjective:\n  mask:\n    k: 3\n")
    cfg = load_config(TrainConfig, path, ["--optim.lr=3e-4", "--objective.mask.tau=0.25", "--run.wandb=offline"])
    assert cfg.optim.lr == 3e-4 and cfg.optim.max_steps == 50
    assert cfg.objective.mask.k == 3 and cfg.objective.mask.tau == 0.25
    assert cfg.run.wandb == "offline"
    assert cfg.reranker.settings == {}  # keeps what the reranker directory says


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(TrainConfig, None, ["--optim.betas=[0.8, 0.95]", "--reader.settings.dtype=bfloat16"])
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(TrainConfig, tmp_path / "resolved.yaml")
    assert again == cfg and again.optim.betas == (0.8, 0.95)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--optim.lrr=1"], r"optim: unknown key\(s\) \['lrr'\]"),
        (["--optim.max_steps=ten"], r"optim.max_steps: expected int, got str"),
        (["--optim.max_steps=true"], r"optim.max_steps: expected int, got a boolean"),
        (["--objective.mask.tau=-1"], r"tau"),
        (["--run.wandb=sometimes"], r"run.wandb: 'sometimes'"),
        (["--optim.scheduler=step"], r"optim.scheduler"),
        (["--reader.settings.dtype=fp8"], r"reader.dtype"),
        (["optim.lr"], r"expected --section.key=value"),
        (["--run.save_every=0"], r"run.save_every must be >= 1"),
        (["--optim.lr=nan"], r"optim.lr must be a finite number"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, overrides)


def test_yaml_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match=f"{bad}: invalid YAML"):
        load_config(TrainConfig, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(TrainConfig, listy)


def test_parse_overrides_nests_and_types():
    assert parse_overrides(["--a.b.c=1", "--a.d=x", "--e=[1, 2]", "--f="]) == {
        "a": {"b": {"c": 1}, "d": "x"},
        "e": [1, 2],
        "f": "",
    }


@pytest.mark.parametrize(
    ("overrides", "deepspeed", "message"),
    [
        (["--data.n_passages=2", "--objective.mask.k=3"], None, r"mask.k = 3 exceeds data.n_passages = 2"),
        (["--data.n_passages=2", "--eval.k=5", "--objective.name=lce"], None, r"eval.k = 5 exceeds data.n_passages = 2"),
        (["--eval.k=3"], None, r"objective.settings.mask.k = 5 but eval.k = 3"),
        (["--eval.k=3", "--objective.settings.mask.k=2"], None, r"mask.k = 2 but eval.k = 3.*allow_other_k"),
        ([], '{"zero_optimization": {"stage": 4}}', r"run.deepspeed: .*zero_optimization.stage = 4"),
        ([], "{not json", r"run.deepspeed: .*not valid JSON"),
    ],
)
def test_contradictory_settings_stop_before_any_folder(tmp_path, overrides, deepspeed, message):
    """Settings that make no sense stop at load time, naming the key; the run's output folder
    is made later (by the trainer), so nothing exists yet."""
    extra = [f"--run.output_dir={tmp_path / 'run'}"]
    if deepspeed is not None:
        (tmp_path / "ds.json").write_text(deepspeed)
        extra.append(f"--run.deepspeed={tmp_path / 'ds.json'}")
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, overrides + extra)
    assert not (tmp_path / "run").exists()
    # the same keys with sensible values load
    load_config(TrainConfig, None, ["--data.n_passages=5", "--objective.mask.k=3", "--objective.name=lce"][:2])
    assert load_config(TrainConfig, None, ["--data.n_passages=2", "--objective.name=lce"]).data.n_passages == 2


def test_shipped_deepspeed_configs_pass_the_stage_check():
    from pathlib import Path

    from gumbel_rerank.training.config import read_deepspeed_config

    files = sorted((Path(__file__).resolve().parents[1] / "configs" / "deepspeed").glob("*.json"))
    assert files
    for path in files:
        read_deepspeed_config(str(path))


def test_mask_k_must_match_eval_k_unless_allowed():
    from gumbel_rerank.config import from_dict
    from gumbel_rerank.training.config import CompareConfig

    cfg = load_config(TrainConfig, None, ["--eval.k=3", "--objective.settings.mask.k=5", "--eval.allow_other_k=true"])
    assert (cfg.eval_k(), cfg.objective.mask.k) == (3, 5)
    assert load_config(TrainConfig, None, ["--eval.k=3", "--objective.settings.mask.k=3"]).eval_k() == 3
    # compare: a bare gumbel entry (k = 5) judged at k = 3 names its entry
    with pytest.raises(ConfigError, match=r"compare.objectives\[1\].settings.mask.k = 5 but eval.k = 3"):
        from_dict(CompareConfig, {"compare": {"objectives": [{"name": "lce"}, {"name": "gumbel"}]}, "eval": {"k": 3}})
    # without eval.k compare judges at 5, which a bare entry matches
    assert from_dict(CompareConfig, {"compare": {"objectives": [{"name": "gumbel"}]}}).eval.k == 5
