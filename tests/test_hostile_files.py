"""Hostile files: every loader of weights, checkpoint state and configs refuses code with the
project's own error and a message that says why, without running the payload (issue 14)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from tiny_encoders import tiny_bert_config, train_wordpiece_tokenizer

import gumbel_rerank
from gumbel_rerank.config import ConfigError, load_config
from gumbel_rerank.rerankers.config import RerankerConfig
from gumbel_rerank.rerankers.model import Reranker, build_reranker_from_config
from gumbel_rerank.rerankers.storage import WeightsError
from gumbel_rerank.training.checkpointing import CheckpointStateError, load_rng, load_tensors
from gumbel_rerank.training.config import TrainConfig


class Payload:
    """Unpickling this would create ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def test_a_reranker_weights_file_with_code_is_refused_with_the_projects_error(tmp_path):
    tokenizer = train_wordpiece_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    reranker = build_reranker_from_config(tiny_bert_config(len(tokenizer)), tokenizer, RerankerConfig(max_length=16))
    reranker.save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.unlink()
    marker = tmp_path / "pwned"
    torch.save({"bert.embeddings.word_embeddings.weight": Payload(marker)}, tmp_path / "model" / "pytorch_model.bin")
    with pytest.raises(WeightsError, match=r"refused to load the weights.*safetensors") as err:
        Reranker.from_pretrained(tmp_path / "model")
    assert str(tmp_path / "model") in str(err.value)
    assert not marker.exists()  # the payload never ran


@pytest.mark.parametrize("name", ["engine.pt", "rng-rank0.pt"])
def test_checkpoint_state_with_code_is_refused_naming_the_file(tmp_path, name):
    marker = tmp_path / "pwned"
    torch.save({"module": Payload(marker)}, tmp_path / name)
    with pytest.raises(CheckpointStateError, match="refused") as err:
        load_tensors(tmp_path / name) if name == "engine.pt" else load_rng(tmp_path, 0)
    assert name in str(err.value) and not marker.exists()


def test_a_truncated_checkpoint_file_names_the_file(tmp_path):
    torch.save({"x": torch.ones(1000)}, tmp_path / "engine.pt")
    data = (tmp_path / "engine.pt").read_bytes()
    (tmp_path / "engine.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointStateError, match=r"engine.pt: cannot be read"):
        load_tensors(tmp_path / "engine.pt")


def test_yaml_configs_are_read_with_a_safe_loader(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"optim: !!python/object/apply:os.mkdir [{str(marker)!r}]\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(TrainConfig, path)
    assert not marker.exists()


def test_no_loader_enables_remote_code_or_an_unsafe_yaml_loader():
    """Static check over the package's source: the flags that would run downloaded or embedded
    code are never set."""
    package = Path(gumbel_rerank.__file__).parent
    unsafe = re.compile(r"trust_remote_code\s*=\s*True|yaml\.(unsafe_)?load\(|yaml\.(Unsafe|Full)?Loader|weights_only\s*=\s*False")
    hits = [f"{p}:{i}" for p in package.rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1) if unsafe.search(line)]
    assert hits == []
