"""Tiny offline encoders for tests: tokenizers trained in-process, models built from configs.

Nothing here touches a model hub. Each tokenizer is saved to a folder and reloaded with
``AutoTokenizer.from_pretrained(folder)`` so tests exercise the same round trip users do.
"""

from __future__ import annotations

from pathlib import Path

import tiny_t5
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertTokenizerFast,
    PreTrainedTokenizerFast,
    T5Config,
)

from gumbel_rerank.demo import wordlevel

CORPUS = [
    "who wrote on the origin of species ?",
    "charles darwin wrote on the origin of species in 1859 .",
    "the capital of france is paris , a city on the seine .",
    "paris is the largest city in france .",
    "berlin is the capital of germany and its largest city .",
    "what is the capital of germany ?",
    "the eiffel tower was built in 1889 for the world fair .",
    "natural selection is a mechanism of evolution .",
    "query : document : title text passage answer question",
]

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece_tokenizer(save_dir: str | Path, vocab_size: int = 300) -> BertTokenizerFast:
    """A BERT-style WordPiece tokenizer trained on CORPUS, saved to and reloaded from save_dir."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIALS)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    wrapped = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    wrapped.save_pretrained(save_dir)
    return AutoTokenizer.from_pretrained(save_dir)


def tiny_bert_config(vocab_size: int, **overrides) -> BertConfig:
    """Hidden 32, 2 layers, 2 heads; dropout off so train-mode comparisons are deterministic."""
    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=1,
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def train_t5_tokenizer(
    save_dir: str | Path, extra_tokens: tuple[str, ...] = ("<extra_id_10>",)
) -> PreTrainedTokenizerFast:
    """A T5-like WordLevel tokenizer (<pad>=0, </s>=1, <unk>=2, appends </s>), saved and reloaded."""
    wordlevel.train_t5_tokenizer(CORPUS, save_dir, extra_tokens)
    return AutoTokenizer.from_pretrained(save_dir)


def tiny_t5_config(vocab_size: int, **overrides) -> T5Config:
    """d_model 32, one encoder and one decoder layer; decoder starts from the pad id 0."""
    return tiny_t5.tiny_t5_config(vocab_size, **{"layers": 1, "d_kv": 16, "num_heads": 2, **overrides})
