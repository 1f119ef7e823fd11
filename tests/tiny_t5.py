"""Tiny T5 readers and a word-level tokenizer built in-process (no hub, no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

from gumbel_rerank.demo.wordlevel import train_t5_tokenizer

WORDS = ["question:", "title:", "context:", "who", "what", "where", "when", "is", "the", "a", "of", "in", "was", "born", "city", "river", "marie", "curie", "polonium", "radium", "paris", "warsaw", "vistula", "seine", "france", "poland", "chemist", "element", "discovered", "capital", "flows", "through", "scientist", "answer", "passage", "bridge", "entity", "one", "two", "three"]


def build_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with T5's special ids (pad 0, eos 1, unk 2), saved to ``directory``.

    It appends </s> by default, like transformers 5.x T5 tokenizers, so tests prove the reader
    does not rely on the default.
    """
    directory.mkdir(parents=True, exist_ok=True)
    return train_t5_tokenizer([" ".join(WORDS)], directory)


def tiny_t5_config(vocab_size: int, layers: int = 2, **overrides) -> T5Config:
    fields = dict(
        vocab_size=vocab_size,
        d_model=32,
        d_ff=64,
        d_kv=8,
        num_heads=4,
        num_layers=layers,
        num_decoder_layers=layers,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    fields.update(overrides)
    return T5Config(**fields)


def tiny_t5(vocab_size: int, seed: int = 0, layers: int = 2, **overrides) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(tiny_t5_config(vocab_size, layers, **overrides))
    # Random init puts tiny weights everywhere; larger ones make outputs depend visibly on input.
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    return model.eval()


QUESTIONS = ["who discovered polonium", "what river flows through warsaw", "where was marie curie born"]
PASSAGES = [
    [
        {"title": "marie curie", "text": "marie curie discovered polonium and radium"},
        {"title": "paris", "text": "paris is the capital of france"},
        {"title": "vistula", "text": "the vistula flows through warsaw"},
    ],
    [
        {"title": "vistula", "text": "the vistula flows through warsaw in poland"},
        {"title": "seine", "text": "the seine flows through paris"},
    ],
    [
        {"title": "warsaw", "text": "marie curie was born in warsaw"},
        {"title": "polonium", "text": "polonium is an element"},
        {"title": "paris", "text": "the chemist was in paris"},
        {"title": "radium", "text": "radium was discovered in paris"},
    ],
]
ANSWERS = ["marie curie", "vistula", "warsaw"]
