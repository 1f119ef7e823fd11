"""Tiny random decoder-only LMs of three families (Llama, Qwen2, GPT-2) and a word-level
tokenizer, built in-process: what the parallel-LM reader tests run on."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

WORDS = (
    "question answer title text who what where discovered polonium radium marie curie paris france "
    "capital river vistula warsaw flows through poland born city seine of the is a and in : ? ."
)
FAMILIES = ("llama", "qwen2", "gpt2")


def lm_tokenizer(directory: Path | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over WORDS with <s>, </s>, <pad>, <unk>; adds <s> itself."""
    from tokenizers.processors import TemplateProcessing

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([WORDS], trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>", "<unk>"]))
    tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    if directory is not None:
        fast.save_pretrained(directory)
    return fast


def tiny_lm(family: str, vocab: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random 2-layer LM of ``family`` (GQA for Llama / Qwen2), wide init so outputs depend
    visibly on what it attends to."""
    torch.manual_seed(seed)
    if family == "llama":
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model = LlamaForCausalLM(cfg)
    elif family == "qwen2":
        cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model = Qwen2ForCausalLM(cfg)
    elif family == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=256, initializer_range=0.2,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(family)
    return model.to(dtype).eval()
