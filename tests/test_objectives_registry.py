"""The objective registry and the config around it; label-free objectives never read labels;
two regressions found while restructuring (an unseeded fresh head, an epoch order recomputed
on every micro-batch)."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import build_world, reader_reranker_batch
from transformers import BertConfig, BertModel, BertTokenizerFast

from gumbel_rerank.cli import main
from gumbel_rerank.config import ConfigError, from_dict, load_config, to_dict
from gumbel_rerank.masks import MaskConfig
from gumbel_rerank.objectives import registry
from gumbel_rerank.objectives.base import Batch, StepContext
from gumbel_rerank.objectives.gumbel import GumbelSettings
from gumbel_rerank.objectives.reader_nll import CurriculumStage, ReaderNLLSettings
from gumbel_rerank.training import loop
from gumbel_rerank.training.config import TrainConfig


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def parts(world):
    return reader_reranker_batch(world)


# -- registry and config ----------------------------------------------------------------------
def test_registry_lists_the_objectives_with_what_they_train():
    assert "gumbel" in registry.names(trains="reranker")
    assert registry.names(trains="reader") == ["reader_nll"]
    assert registry.get("gumbel").settings is GumbelSettings
    assert registry.get("gumbel").uses_labels is False
    assert registry.get("reader_nll").uses_labels is True


def test_unknown_objective_is_refused_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"objective\.name: 'nope' is not one of \[.*'gumbel'"):
        load_config(TrainConfig, None, ["--objective.name=nope"])
    with pytest.raises(ConfigError, match="objective.name: 'reader_nll'"):  # trains the reader
        load_config(TrainConfig, None, ["--objective.name=reader_nll"])


def test_settings_are_typed_by_the_objective_and_errors_name_the_dotted_key():
    cfg = load_config(TrainConfig, None, ["--objective.settings.mask.k=3", "--objective.settings.mask_samples=2"])
    assert isinstance(cfg.objective.settings, GumbelSettings)
    assert cfg.objective.settings.mask == MaskConfig(k=3)
    assert cfg.objective.settings.mask_samples == 2
    with pytest.raises(ConfigError, match=r"objective\.settings: unknown key\(s\) \['kk'\]"):
        load_config(TrainConfig, None, ["--objective.settings.kk=3"])
    with pytest.raises(ConfigError, match=r"objective\.settings\.mask.*tau"):
        load_config(TrainConfig, None, ["--objective.settings.mask.tau=0"])
    with pytest.raises(ConfigError, match=r"objective\.settings\.mask_samples: expected int"):
        load_config(TrainConfig, None, ["--objective.settings.mask_samples=many"])


def test_the_pre_registry_spelling_still_configures_gumbel(tmp_path):
    old = load_config(TrainConfig, None, ["--objective.mask.k=4", "--objective.mask_samples=3"])
    new = load_config(TrainConfig, None, ["--objective.settings.mask.k=4", "--objective.settings.mask_samples=3"])
    assert old.objective == new.objective and old.objective.mask.k == 4
    with pytest.raises(ConfigError, match="objective: mask and settings.mask are both set; keep settings.mask"):
        load_config(TrainConfig, None, ["--objective.mask.k=4", "--objective.settings.mask.k=2"])


def test_an_old_style_override_merges_over_a_new_style_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("objective:\n  name: gumbel\n  settings:\n    mask:\n      k: 5\n      tau: 0.3\n")
    cfg = load_config(TrainConfig, path, ["--objective.mask.k=2"])
    assert cfg.objective.settings.mask == MaskConfig(k=2, tau=0.3)


def test_a_saved_config_loads_back_to_the_same_config():
    cfg = load_config(TrainConfig, None, ["--objective.mask.k=3", "--eval.k=2", "--eval.allow_other_k=true", "--optim.lr=1e-4"])
    again = from_dict(TrainConfig, to_dict(cfg))
    assert again == cfg
    assert "mask" not in to_dict(cfg)["objective"]  # written in the canonical spelling


def test_eval_k_is_its_own_key_and_defaults_to_the_objectives_k():
    assert load_config(TrainConfig, None, ["--objective.mask.k=3"]).eval_k() == 3
    assert load_config(TrainConfig, None, ["--objective.mask.k=3", "--eval.k=1", "--eval.allow_other_k=true"]).eval_k() == 1
    with pytest.raises(ConfigError, match="eval.k must be >= 1"):
        load_config(TrainConfig, None, ["--eval.k=0"])


def test_build_objective_builds_from_a_mapping_or_its_settings(parts):
    reader, _, _ = parts
    from_mapping = registry.build_objective("gumbel", {"mask": {"k": 2, "tau": 0.3}}, reader=reader)
    from_settings = registry.build_objective("gumbel", GumbelSettings(MaskConfig(k=2, tau=0.3)), reader=reader)
    assert from_mapping.mask == from_settings.mask == MaskConfig(k=2, tau=0.3)
    with pytest.raises(ConfigError, match="settings of ReaderNLLSettings given for objective 'gumbel'"):
        registry.build_objective("gumbel", ReaderNLLSettings(), reader=reader)


# -- label-free objectives never read labels ---------------------------------------------------
class _LabelTrap(Batch):
    """A batch whose relevance labels cannot be read."""

    @property
    def gold(self):  # a data descriptor wins over the instance attribute
        raise AssertionError("the objective read Batch.gold")


def trapped(batch: Batch) -> Batch:
    out = copy.copy(batch)
    out.__class__ = _LabelTrap
    return out


def test_the_trap_catches_an_objective_that_reads_labels(parts):
    """Control: the reader objective's gold-pair curriculum reads the flags, and is caught."""
    reader, _, batch = parts
    objective = registry.build_objective(
        "reader_nll", ReaderNLLSettings([CurriculumStage(steps=5, contexts="gold")]), reader=reader
    )
    with pytest.raises(AssertionError, match="read Batch.gold"):
        objective.loss(reader.model, trapped(batch), StepContext(step=0, seed=0))


@pytest.mark.parametrize("name", [n for n in registry.names(trains="reranker") if not registry.get(n).uses_labels])
def test_label_free_objectives_never_read_gold_flags(parts, name):
    reader, reranker, batch = parts
    objective = registry.build_objective(name, {}, reader=reader)
    assert objective.uses_labels is False
    loss, metrics = objective.loss(reranker, trapped(batch), StepContext(step=1, seed=0, log=True))
    loss.backward()
    assert torch.isfinite(loss) and metrics
    reranker.zero_grad(set_to_none=True)


# -- regressions -------------------------------------------------------------------------------
def bare_encoder(world, directory):
    """A BERT backbone without a classification head (what `reranker.path` often points at)."""
    tokenizer = BertTokenizerFast.from_pretrained(world.root / "bert_tok")
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_fresh_head_is_seeded_so_two_runs_of_one_config_give_the_same_weights(world, tmp_path):
    encoder = bare_encoder(world, tmp_path / "encoder")
    steps = {"reranker.path": encoder, "reranker.settings.max_length": 48, "optim.max_steps": 2, "run.save_every": 2}
    outs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    assert main(["train", *world.overrides(outs[0], **steps)]) == 0
    torch.rand(7)  # whatever the global RNG did in between must not matter
    assert main(["train", *world.overrides(outs[1], **steps)]) == 0
    assert main(["train", *world.overrides(outs[2], **steps, **{"run.seed": 1})]) == 0
    a, b, c = (load_file(str(o / "model" / "model.safetensors")) for o in outs)
    assert a.keys() == b.keys() and "classifier.weight" in a
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])  # the seed decides


def test_the_epoch_order_is_computed_once_per_epoch(monkeypatch):
    calls = []
    real = torch.randperm

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    loop._epoch_order.cache_clear()
    monkeypatch.setattr(torch, "randperm", counting)
    sampler = loop.GlobalBatchSampler(1000, seed=5, micro_batch=4, world_size=1, grad_accum=2)
    items = [sampler.micro_batch_items(step, 0, micro) for step in range(50) for micro in range(2)]
    assert len(calls) == 1  # 100 micro-batches of one epoch, one permutation
    flat = [i for batch in items for i, _ in batch]
    assert sorted(flat) == sorted(set(flat)) and len(flat) == 400  # no repeats within the epoch
    expected = real(1000, generator=torch.Generator().manual_seed(5 * 1_000_003)).tolist()[:400]
    assert flat == expected
