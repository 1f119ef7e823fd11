"""A complete tiny training set-up on disk: look-up data, tokenizers, a random reader and reranker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tiny_t5 import tiny_t5
from transformers import BertConfig

from gumbel_rerank.demo.synthetic import LookupSpec, lookup_questions, vocabulary_text
from gumbel_rerank.demo.wordlevel import train_bert_tokenizer, train_t5_tokenizer
from gumbel_rerank.rerankers.model import RerankerConfig, build_reranker_from_config


@dataclass
class TinyWorld:
    root: Path
    train: Path
    dev: Path
    reader: Path
    reranker: Path

    def overrides(self, output_dir: Path, **extra) -> list[str]:
        """Overrides for a short G-Rerank run in this world."""
        base = {
            "data.train": self.train,
            "data.dev": self.dev,
            "data.dev_subset": 20,
            "reader.path": self.reader,
            "reader.settings.text_maxlength": 24,
            # the answers are one word: a longer generation budget only lets an untrained
            # reader run on to the cap in every final evaluation (the suite's largest cost)
            "reader.settings.answer_maxlength": 4,
            "reranker.path": self.reranker,
            "objective.mask.k": 2,
            "optim.lr": 1e-3,
            "optim.max_steps": 6,
            "optim.micro_batch_size": 4,
            "run.output_dir": output_dir,
            "run.eval_every": 0,
            "run.save_every": 3,
            "run.log_every": 1,
        }
        base.update(extra)
        return [f"--{k}={v}" for k, v in base.items()]


def write_jsonl(records: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def build_world(root: Path, n_train: int = 64, n_dev: int = 20, seed: int = 0) -> TinyWorld:
    root.mkdir(parents=True, exist_ok=True)
    train = lookup_questions(LookupSpec(n_questions=n_train, n_passages=5, seed=seed + 1))
    dev = lookup_questions(LookupSpec(n_questions=n_dev, n_passages=5, seed=seed + 2))
    texts = vocabulary_text(train + dev)
    reader_tok = train_t5_tokenizer(texts, root / "reader")
    # tiny_t5's wider init: the reader's output depends visibly on the passages, so mask
    # gradients are not vanishingly small (Adam on ~1e-5 gradients turns float rounding into
    # sign flips, which would make layout-equivalence checks ill-conditioned)
    tiny_t5(len(reader_tok), seed=seed).save_pretrained(root / "reader")
    bert_tok = train_bert_tokenizer(texts, root / "bert_tok")
    bert = BertConfig(
        vocab_size=len(bert_tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=1,
        initializer_range=0.2,  # scores that differ between passages from the first step
        # no dropout: runs on different process layouts must compute the same thing
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    build_reranker_from_config(bert, bert_tok, RerankerConfig(max_length=48)).save_pretrained(root / "reranker")
    return TinyWorld(
        root=root,
        train=write_jsonl(train, root / "train.jsonl"),
        dev=write_jsonl(dev, root / "dev.jsonl"),
        reader=root / "reader",
        reranker=root / "reranker",
    )


def reader_reranker_batch(world: TinyWorld, n: int = 4):
    """The world's reader (frozen), its reranker and a batch of its first ``n`` training
    questions: what objective tests run a loss on."""
    from gumbel_rerank.data import load_questions
    from gumbel_rerank.reader.fid import FiDReader, FiDReaderConfig
    from gumbel_rerank.rerankers import Reranker
    from gumbel_rerank.training.collate import make_collate

    reader = FiDReader.from_pretrained(world.reader, config=FiDReaderConfig(text_maxlength=24))
    reranker = Reranker.from_pretrained(world.reranker)
    batch = make_collate(load_questions(world.train), None)([(i, i) for i in range(n)])
    return reader, reranker, batch


def build_lm_reader(world: TinyWorld, family: str = "llama") -> Path:
    """A tiny random causal LM of ``family`` with a word-level tokenizer over the world's
    vocabulary, saved as a plain HF directory (``reader.kind: parallel_lm``)."""
    from tiny_lm import tiny_lm
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    questions = [json.loads(line) for path in (world.train, world.dev) for line in path.read_text().splitlines()]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(vocabulary_text(questions) + ["question answer title text :"], trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>", "<unk>"]))
    tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    directory = world.root / f"lm-{family}"
    tiny_lm(family, len(fast)).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


#: Reranker tensors the training loss cannot see: a bias shared by all of a question's passages
#: (the head's) or by all keys of an attention row leaves every softmax unchanged, so the exact
#: gradient is zero and the computed one is rounding noise, which Adam (dividing by the
#: gradient's own running size) turns into steps of about lr in either direction.
LOSS_INVARIANT = ("classifier.bias", "attention.self.key.bias")


def assert_trained_alike(got: dict, want: dict, start: dict) -> None:
    """Two trainings of one reranker from ``start`` reached the same weights up to float32
    reduction order: each tensor the loss can see within rtol 1e-4 / atol 1e-5 (a left-out or
    repeated micro-batch moves them by about lr = 1e-3), and training moved them (> 1e-3)."""
    moved = max((want[k] - start[k]).abs().max().item() for k in want)
    assert moved > 1e-3, moved  # training did something
    assert set(got) == set(want)
    for name in want:
        if not name.endswith(LOSS_INVARIANT):
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=lambda m, k=name: f"{k}: {m}")
