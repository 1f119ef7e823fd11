"""Remake the demo's shipped reader: ``gumbel-rerank demo-reader --out DIR``.

One command writes the reader's training data (the demo generator with more training
questions), a word-level tokenizer over the demo vocabulary, a randomly initialised tiny T5, and
then runs ``train-reader`` with the recipe in ``demo/assets/reader_recipe.yaml`` (overridable
with ``--section.key=value``, resumable with ``--resume``). The trained reader ends in
``DIR/run/model``. The shipped reader is an early checkpoint of such a run (step 1000: a reader
of small contexts, whose loss depends on the mask's selection); ``demo/assets/README.md`` has the
exact commands and the reason.

Why this recipe (measured, ``shared/docs/demo.md`` and ``docs/bugs-and-fixes.md``): answers
are a small closed set of single tokens shared by all splits, so the reader only has to learn
to *choose* the right passage, not to spell new names; the curriculum starts on the answer
passage, then adds distractors step by step up to all ten candidates, because the reader is
used by G-Rerank on all ten (with a soft mask over them).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

from gumbel_rerank.config import load_config
from gumbel_rerank.demo.dataset import DemoSpec, demo_vocabulary, write_demo_data
from gumbel_rerank.demo.wordlevel import train_t5_tokenizer
from gumbel_rerank.reader.fid import FiDReaderConfig
from gumbel_rerank.reader.parallel_lm import ParallelLMSettings
from gumbel_rerank.training.config import ReaderTrainConfig

ASSETS = Path(__file__).resolve().parent / "assets"
RECIPE = ASSETS / "reader_recipe.yaml"
#: The demo's reader: the two-stage chain reader (assets/README.md has its remake commands).
SHIPPED_READER = ASSETS / "chain_reader"
#: The reader of the redundant-evidence setting: the chain reader fine-tuned to read facts
#: stated twice (``DemoSpec.redundant``; assets/README.md has its remake command).
REDUNDANT_READER = ASSETS / "chain_reader_redundant"
#: Reader recipes of ``gumbel-rerank demo-reader --recipe``.
RECIPES = ("answer", "chain", "redundant", "decoder")
#: The facts the redundant-evidence setting states twice: the bridge only. Restating the answer
#: fact as well made the answer the one value stated twice, a frequency cue the reader learned
#: instead of the bridge (EM with no bridge at all 0.974; gumbel_rerank/demo/assets/README.md).
REDUNDANT = ("bridge",)
#: The chain reader's name pool (shared by all splits; demo.md "Chain readers").
CHAIN_POOL = 60

#: Training questions for the reader (the demo's reranker uses the default 4000): more distinct
#: questions cost nothing to generate and keep a long run from revisiting the same contexts.
READER_TRAIN_QUESTIONS = 40000


@dataclass(frozen=True)
class DemoReaderArch:
    """The shipped reader's T5 shape (about 3 M parameters, 12 MB in float32).

    Four decoder layers because answering takes three look-ups in sequence: the bridge (which
    names the question's entity), the passage whose subject is the bridge's object, and the
    value in it; the encoder sees one passage at a time and cannot do the matching.
    """

    d_model: int = 128
    d_ff: int = 512
    d_kv: int = 32
    num_heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 4
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 64

    def t5_config(self, vocab_size: int) -> T5Config:
        """The HF configuration; T5's special ids (pad 0 = decoder start, eos 1)."""
        return T5Config(
            vocab_size=vocab_size,
            d_model=self.d_model,
            d_ff=self.d_ff,
            d_kv=self.d_kv,
            num_heads=self.num_heads,
            num_layers=self.encoder_layers,
            num_decoder_layers=self.decoder_layers,
            relative_attention_num_buckets=self.relative_attention_num_buckets,
            relative_attention_max_distance=self.relative_attention_max_distance,
            dropout_rate=0.0,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )


def reader_spec(n_train: int = READER_TRAIN_QUESTIONS, recipe: str = "answer") -> DemoSpec:
    """The data spec of a reader recipe with ``n_train`` training questions: the default demo
    spec ("answer"), or ("chain") one shared pool of names, chain targets and uncued answer
    passages (the bridge is then the only way to the answer), or ("redundant") the chain spec
    with the bridge stated twice in other words (:data:`REDUNDANT`)."""
    if recipe in ("chain", "redundant", "decoder"):
        redundant = REDUNDANT if recipe == "redundant" else ()
        return DemoSpec(n_train=n_train, shared_pool=CHAIN_POOL, chain_target=True, answer_cue=0.0, redundant=redundant)
    return DemoSpec(n_train=n_train)


def recipe_file(recipe: str) -> Path:
    """The train-reader recipe of ``recipe`` (one of :data:`RECIPES`)."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    names = {"chain": "reader_chain_recipe.yaml", "redundant": "reader_redundant_recipe.yaml", "decoder": "reader_decoder_recipe.yaml"}
    return ASSETS / names[recipe] if recipe in names else RECIPE


def build_initial_reader(
    directory: str | Path, spec: DemoSpec, arch: DemoReaderArch | None = None, seed: int = 0
) -> Path:
    """Write a word-level tokenizer over the demo vocabulary and a random T5 to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_t5_tokenizer([" ".join(demo_vocabulary(spec))], directory)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration((arch or DemoReaderArch()).t5_config(len(tokenizer)))
    model.save_pretrained(str(directory))
    return directory


@dataclass(frozen=True)
class DecoderReaderArch:
    """The demo decoder reader's Llama shape (about 1.6 M parameters besides the embeddings).

    Six layers: a block's own layers read its sentence; the answer's query finds the bridge
    (the block naming the question's entity through the asked link), then, once the
    intermediate is generated, the block whose subject it is."""

    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    max_position_embeddings: int = 256

    def llama_config(self, vocab_size: int) -> LlamaConfig:
        """The HF configuration, with the word-level tokenizer's ids (pad 0, eos 1)."""
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_attention_heads,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=True,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=None,
        )


def build_initial_decoder(directory: str | Path, spec: DemoSpec, arch: DecoderReaderArch | None = None, seed: int = 0) -> Path:
    """Write a word-level tokenizer over the demo vocabulary and a random Llama to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_t5_tokenizer([" ".join(demo_vocabulary(spec))], directory)
    torch.manual_seed(seed)
    LlamaForCausalLM((arch or DecoderReaderArch()).llama_config(len(tokenizer))).save_pretrained(str(directory))
    return directory


def recipe_config(out: Path, overrides: list[str] | None = None, recipe: str = "answer") -> ReaderTrainConfig:
    """The train-reader config of the recipe with this run's paths, then ``overrides``.

    The paths are passed as overrides ahead of the user's, so the config system's own deep
    merge applies and a user override (even of a path) wins.
    """
    paths = [
        f"--data.train={out / 'data' / 'train.jsonl'}",
        f"--data.dev={out / 'data' / 'dev.jsonl'}",
        f"--reader.path={out / 'init'}",
        f"--run.output_dir={out / 'run'}",
    ]
    return load_config(ReaderTrainConfig, recipe_file(recipe), paths + list(overrides or []))


def prepare(out: Path, seed: int = 0, n_train: int = READER_TRAIN_QUESTIONS, recipe: str = "answer") -> None:
    """Data (the recipe's spec) and the initial reader under ``out``: random init from ``seed``,
    or for "redundant" a copy of the shipped chain reader (it fine-tunes that reader; the
    restatements use only words its tokenizer has). Each is skipped when already there, so a
    resume reuses them."""
    spec = reader_spec(n_train, recipe)
    if not (out / "data" / "train.jsonl").is_file():
        print(f"demo-reader: writing {spec.n_train} training questions to {out / 'data'}", flush=True)
        write_demo_data(spec, out / "data")
    if (out / "init" / "model.safetensors").is_file():
        return
    if recipe == "decoder":
        build_initial_decoder(out / "init", spec, seed=seed)
    elif recipe == "redundant":
        (out / "init").mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy2(SHIPPED_READER / name, out / "init" / name)
    else:
        build_initial_reader(out / "init", spec, seed=seed)
def check_reader(
    model: Path,
    dev: Path,
    settings: FiDReaderConfig,
    device: str = "auto",
    recipe: str = "answer",
    kind: str = "fid",
    parallel_lm: ParallelLMSettings | None = None,
) -> str:
    """The reading check (``gumbel_rerank.demo.reading_check``) of a saved demo reader, as markdown;
    also written next to the model as ``reading_check.json``."""
    from gumbel_rerank.demo.reading_check import (
        CHAIN_CONTEXTS,
        CONTEXTS,
        REDUNDANT_CONTEXTS,
        format_reading_check,
        read_demo_records,
        reading_check,
    )
    from gumbel_rerank.durable import write_atomic
    from gumbel_rerank.envinfo import resolve_device
    from gumbel_rerank.reader.loading import load_reader_from

    reader = load_reader_from(kind, model, settings=settings, parallel_lm=parallel_lm).to(resolve_device(device))
    contexts = {"chain": CHAIN_CONTEXTS, "decoder": CHAIN_CONTEXTS, "redundant": REDUNDANT_CONTEXTS}.get(recipe, CONTEXTS)
    result = reading_check(reader, read_demo_records(dev), contexts=contexts)
    write_atomic(model / "reading_check.json", json.dumps(result, indent=1) + "\n")
    return format_reading_check(result)
