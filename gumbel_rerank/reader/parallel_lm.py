"""A frozen decoder-only LM that reads passages in parallel, with the passage mask in its
attention: the second reader kind behind :class:`~gumbel_rerank.reader.base.Reader`.

Parallel context encoding (as in Parallel Context Windows, APE and Block-Attention)::

    [prefix] [block 1] ... [block N] [prompt + answer]
     0..P-1   P..P+L-1      P..P+L-1   P+L, P+L+1, ...        (positions)

* An optional shared prefix (the tokenizer's BOS, then ``prefix`` text) is encoded once.
* Each passage is a block (``block_template`` with ``{question}``, ``{title}``, ``{text}``),
  encoded on its own after the prefix, at positions P..P+L-1 whatever its slot: its keys and
  values do not depend on the other passages. They are kept per layer and packed along the
  feature axis of :class:`EncodedPassages`, ``hidden`` (B, N * L, layers x 2 x kv heads x
  head dim), so ``select``, ``singles``, ``repeat`` and the encoder cache work unchanged.
* The question prompt and the answer follow at positions after the longest block, attend
  causally to themselves and to the prefix and every real passage token, and get ``log M_i``
  added to their attention logits on passage i's tokens in every layer (a 4-D float mask).
  ``log M`` is first shifted so the strongest passage has M = 1: the answer also attends to
  the prefix and to itself, so without it a shift ``log M + c`` would change what is read,
  where for FiD only the ratios of M between passages matter.

So, as for FiD, a 0/1 mask is exactly reading only the kept passages, and the mask's gradient
flows through the frozen LM's attention. The reading pass runs with eager attention (the mask
inside the softmax as written; its gradient reaches the mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedTokenizerBase

from gumbel_rerank.masks import LOG_FLOOR
from gumbel_rerank.reader.base import EncodedPassages, PassageTokens, StatefulReader
from gumbel_rerank.reader.encoder_cache import EncoderCache
from gumbel_rerank.reader.fid import DTYPES, FiDReaderConfig, final_answer
from gumbel_rerank.reader.formatting import IGNORE_INDEX


@dataclass
class ParallelLMSettings:
    """How a decoder-only reader formats what it reads (``reader.parallel_lm``).

    Attributes:
        block_template: one passage's block, with ``{title}``, ``{text}`` and optionally
            ``{question}`` (question-aware blocks, as FiD's encoder inputs are).
        prompt_template: what follows the blocks, with ``{question}``; the answer follows it.
        prefix: shared instruction text encoded once before every block ("" = only the
            tokenizer's BOS, when it adds one).
        chat_template: format the prompt as a user turn with the tokenizer's chat template
            (models that have one), the answer being the assistant's reply.
        answer_prefix: put before the answer when tokenised (BPE vocabularies spell a word
            after a space differently from one that starts a text).
    """

    block_template: str = "{title}: {text}\n"
    prompt_template: str = "Question: {question}\nAnswer:"
    prefix: str = ""
    chat_template: bool = False
    answer_prefix: str = " "


def _pack(cache: DynamicCache, start: int) -> torch.Tensor:
    """(rows, L, layers x 2 x kv heads x head dim): the cache's keys and values from ``start``."""
    parts = []
    for layer in cache.layers:
        for tensor in (layer.keys, layer.values):  # (rows, kv heads, P + L, head dim)
            block = tensor[:, :, start:, :]
            parts.append(block.transpose(1, 2).reshape(block.shape[0], block.shape[2], -1))
    return torch.cat(parts, dim=-1)


class ParallelLMReader(StatefulReader):
    """A causal LM reading passages in parallel (module docstring); a :class:`Reader`.

    Args:
        model: a Hugging Face ``*ForCausalLM`` (Llama, Qwen2, GPT-2, ... families).
        tokenizer: its tokenizer.
        config: the settings readers share (lengths, dtype, answer_from, encode chunk size).
        settings: the block and prompt templates.
        trainable: leave the LM trainable (``train-reader``); frozen in eval mode otherwise.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        config: FiDReaderConfig | None = None,
        settings: ParallelLMSettings | None = None,
        trainable: bool = False,
    ) -> None:
        self.config = config or FiDReaderConfig()
        self.settings = settings or ParallelLMSettings()
        self.trainable = trainable
        model.set_attn_implementation("eager")  # the mask inside the softmax, with its gradient
        self.model = model.to(DTYPES[self.config.dtype])
        if not trainable:
            self.model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        if tokenizer.eos_token_id is None:
            raise ValueError("the reader's tokenizer has no EOS token: answers could not end")
        self.encoder_cache: EncoderCache | None = None
        self.load_report = None  # the FiD loader's report; nothing to report for a plain HF LM
        self.use_legacy_bias = False
        cfg = self.model.config.get_text_config()
        self.layers = cfg.num_hidden_layers
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.prefix_ids = self._prefix_ids()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        tokenizer: str | Path | None = None,
        config: FiDReaderConfig | None = None,
        settings: ParallelLMSettings | None = None,
        trainable: bool = False,
    ) -> ParallelLMReader:
        """Load a local causal LM directory (``AutoModelForCausalLM``), offline."""
        model = AutoModelForCausalLM.from_pretrained(str(path))
        tok = AutoTokenizer.from_pretrained(str(tokenizer or path))
        if len(tok) > model.get_input_embeddings().weight.shape[0]:
            raise ValueError(f"{tokenizer or path}: the tokenizer has {len(tok)} tokens but the LM {path} embeds fewer")
        if trainable:
            model.requires_grad_(True)
        return cls(model, tok, config, settings, trainable)

    def _prefix_ids(self) -> list[int]:
        """The shared prefix: the tokenizer's BOS when it adds one itself, then ``prefix``."""
        probe = self.tokenizer("x").input_ids
        bos = self.tokenizer.bos_token_id
        ids = [bos] if bos is not None and probe and probe[0] == bos else []
        if self.settings.prefix:
            ids += self.tokenizer(self.settings.prefix, add_special_tokens=False).input_ids
        return ids

    # -- bookkeeping ------------------------------------------------------------------------
    @property
    def attention_layers(self) -> int:
        """Layers whose attention the ADist mass sums over: all of them."""
        return self.layers

    # -- tokenisation -----------------------------------------------------------------------
    def _prompt(self, question: str) -> str:
        text = self.settings.prompt_template.format(question=question)
        if self.settings.chat_template and getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        return text

    def tokenize_passages(
        self, questions: list[str], passages: list[list[dict]], n_passages: int | None = None
    ) -> PassageTokens:
        """Blocks (B, N, L), right-padded, and the question prompts (B, Tp), left-padded (so
        every answer starts at the same column)."""
        n = n_passages or max((len(p) for p in passages), default=1)
        blocks, valid = [], []
        for question, plist in zip(questions, passages, strict=True):
            row = [self.settings.block_template.format(question=question, title=p.get("title") or "", text=p["text"]) for p in plist[:n]]
            valid.append([True] * len(row) + [False] * (n - len(row)))
            blocks.append(row + [""] * (n - len(row)))
        flat = [b for row in blocks for b in row]
        ids = self.tokenizer(flat, add_special_tokens=False, truncation=True, max_length=self.config.text_maxlength).input_ids
        length = self.config.text_maxlength if self.config.pad_to_max_length else max(1, max(len(i) for i in ids))
        input_ids = torch.full((len(flat), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(flat), length, dtype=torch.bool)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = True
        prompts = self.tokenizer([self._prompt(q) for q in questions], add_special_tokens=False).input_ids
        width = max(len(p) for p in prompts)
        prompt_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        prompt_mask = torch.zeros(len(prompts), width, dtype=torch.bool)
        for row, tokens in enumerate(prompts):
            prompt_ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            prompt_mask[row, width - len(tokens) :] = True
        b = len(questions)
        return PassageTokens(
            input_ids.view(b, n, length),
            mask.view(b, n, length),
            torch.tensor(valid, dtype=torch.bool).view(b, n),
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
        )

    def tokenize_targets(self, answers: list[str]) -> torch.Tensor:
        """(B, T) labels: the answer's ids (after ``answer_prefix``), EOS, -100 padding."""
        ids = self.tokenizer([self.settings.answer_prefix + a for a in answers], add_special_tokens=False).input_ids
        ids = [i[: self.config.answer_maxlength - 1] + [self.tokenizer.eos_token_id] for i in ids]
        labels = torch.full((len(ids), max(len(i) for i in ids)), IGNORE_INDEX, dtype=torch.long)
        for row, tokens in enumerate(ids):
            labels[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return labels

    # -- passage encoding -------------------------------------------------------------------
    def _prefix_cache(self, rows: int) -> DynamicCache | None:
        """The prefix's keys and values for ``rows`` rows (None without a prefix)."""
        if not self.prefix_ids:
            return None
        ids = torch.tensor([self.prefix_ids], device=self.device)
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            out = self.model(input_ids=ids, use_cache=True)
        layers = [(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1)) for layer in out.cache.layers]
        return DynamicCache(ddp_cache_data=layers)

    def _encode(self, tokens: PassageTokens) -> EncodedPassages:
        """Each real passage's block after the prefix, its per-layer keys and values packed as
        ``hidden`` (B, N * L, layers x 2 x kv heads x head dim)."""
        b, n, length = tokens.input_ids.shape
        p = len(self.prefix_ids)
        flat_ids = tokens.input_ids.view(b * n, length)
        flat_mask = tokens.attention_mask.view(b * n, length)
        real = tokens.passage_valid.view(b * n).nonzero().squeeze(-1)
        width = self.layers * 2 * self.kv_heads * self.head_dim
        hidden = torch.zeros(b * n, length, width, dtype=self.dtype, device=self.device)
        chunk = self.config.encode_chunk_size or max(len(real), 1)
        positions = torch.arange(p, p + length, device=self.device)[None]
        causal = torch.ones(length, length, dtype=torch.bool, device=self.device).tril()
        low = torch.finfo(self.dtype).min
        parts = []
        for rows in real.split(chunk) if len(real) else ():
            keys = torch.cat([torch.ones(len(rows), length, p, dtype=torch.bool, device=self.device), (causal[None] & flat_mask[rows][:, None, :])], dim=2)
            mask = torch.zeros(keys.shape, dtype=self.dtype, device=self.device).masked_fill(~keys, low)[:, None]
            out = self.model(
                input_ids=flat_ids[rows], attention_mask=mask, position_ids=positions.expand(len(rows), -1),
                cache=self._prefix_cache(len(rows)), use_cache=True,
            )  # fmt: skip
            parts.append(_pack(out.cache, p))
        if parts:
            hidden = hidden.index_copy(0, real, torch.cat(parts))
        token_mask = tokens.attention_mask & tokens.passage_valid[:, :, None]
        return EncodedPassages(hidden.view(b, n * length, width), token_mask)

    # -- reading ----------------------------------------------------------------------------
    def _passage_cache(self, states: EncodedPassages) -> DynamicCache:
        """Prefix and passage keys/values of every question as the reading pass's cache."""
        b = states.hidden.shape[0]
        packed = states.hidden.view(b, -1, self.layers, 2, self.kv_heads, self.head_dim)
        prefix = self._prefix_cache(b)
        layers = []
        for layer in range(self.layers):
            k, v = (packed[:, :, layer, j].transpose(1, 2) for j in (0, 1))  # (B, kv heads, N*L, dim)
            if prefix is not None:
                k = torch.cat([prefix.layers[layer].keys, k], dim=2)
                v = torch.cat([prefix.layers[layer].values, v], dim=2)
            layers.append((k, v))
        return DynamicCache(ddp_cache_data=layers)

    def _context_mask(self, states: EncodedPassages, log_doc_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, P + N*L) additive mask of the prefix (0) and passage tokens (log M_i; the
        dtype's minimum on padding)."""
        b, n, length = states.token_mask.shape
        if log_doc_mask is None:
            log_doc_mask = torch.zeros(b, n, device=self.device)
        if log_doc_mask.shape != (b, n):
            raise ValueError(f"log_doc_mask has shape {tuple(log_doc_mask.shape)}, expected {(b, n)}")
        # Only the ratios of M between passages carry meaning (as in FiD), but here the answer
        # also attends to the prefix and to itself: the strongest passage is set to M = 1, so a
        # shift log M + c changes nothing and a 0/1 mask stays exactly "read only the kept ones"
        log_m = log_doc_mask.to(self.device, torch.promote_types(self.dtype, torch.float32)).clamp(min=LOG_FLOOR)
        valid = states.token_mask.any(dim=2)
        top = log_m.masked_fill(~valid, LOG_FLOOR).amax(dim=1, keepdim=True)
        log_m = (log_m - top).clamp(min=LOG_FLOOR).to(self.dtype)
        low = torch.tensor(torch.finfo(self.dtype).min, dtype=self.dtype, device=self.device)
        passages = torch.where(states.token_mask, log_m[:, :, None].expand(b, n, length), low).reshape(b, n * length)
        prefix = torch.zeros(b, len(self.prefix_ids), dtype=self.dtype, device=self.device)
        return torch.cat([prefix, passages], dim=1)

    def _read(
        self, states: EncodedPassages, queries: torch.Tensor, query_mask: torch.Tensor, log_doc_mask: torch.Tensor | None, **kwargs: Any
    ) -> Any:
        """The LM over ``queries`` (B, Tq) placed after the longest block, attending causally to
        themselves (real ones only) and to the context under ``log_doc_mask``."""
        b, tq = queries.shape
        start = len(self.prefix_ids) + states.passage_length
        positions = start + (query_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        low = torch.finfo(self.dtype).min
        causal = torch.ones(tq, tq, dtype=torch.bool, device=self.device).tril()
        own = torch.zeros(b, tq, tq, dtype=self.dtype, device=self.device).masked_fill(~(causal[None] & query_mask[:, None, :]), low)
        context = self._context_mask(states, log_doc_mask)[:, None, :].expand(b, tq, -1)
        mask = torch.cat([context, own], dim=2)[:, None]  # (B, 1, Tq, P + N*L + Tq)
        return self.model(
            input_ids=queries, attention_mask=mask, position_ids=positions, cache=self._passage_cache(states), use_cache=True, **kwargs
        )

    def _teacher_forced(self, states: EncodedPassages, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(queries, query mask, first predicting column): the prompt then the answer's tokens
        but the last; column ``first + t`` predicts answer token t."""
        labels = labels.to(self.device)
        answer = labels[:, :-1].clamp(min=0).masked_fill(labels[:, :-1] == IGNORE_INDEX, self.pad_id)
        queries = torch.cat([states.prompt_ids.to(self.device), answer], dim=1)
        query_mask = torch.cat([states.prompt_mask.to(self.device), labels[:, :-1] != IGNORE_INDEX], dim=1)
        return queries, query_mask, states.prompt_ids.shape[1] - 1

    def token_logprobs(
        self, states: EncodedPassages, labels: torch.Tensor, log_doc_mask: torch.Tensor | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """(B, T) log p(a_t | prompt, passages, a_<t) under log M (B, N), the vocabulary logits
        divided by ``temperature``; 0 where labels are -100. Differentiable w.r.t. log M."""
        labels = labels.to(self.device)
        queries, query_mask, first = self._teacher_forced(states, labels)
        logits = self._read(states, queries, query_mask, log_doc_mask).logits[:, first : first + labels.shape[1]]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        logp = (logits / temperature).log_softmax(dim=-1)
        keep = labels != IGNORE_INDEX
        return logp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1) * keep

    def lm_loss(self, states: EncodedPassages, labels: torch.Tensor, log_doc_mask: torch.Tensor) -> torch.Tensor:
        """(B,) answer NLL, mean over answer tokens, under log M."""
        logp = self.token_logprobs(states, labels, log_doc_mask)
        tokens = (labels != IGNORE_INDEX).sum(dim=1).clamp(min=1).to(self.device)
        return -logp.sum(dim=1) / tokens

    @torch.no_grad()
    def cross_attention_mass(
        self, states: EncodedPassages, labels: torch.Tensor, log_doc_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ADist's signal: for every layer, head, answer token (the positions that predict the
        answer) and passage token, the attention probability times the norm of the token's
        value vector, averaged over heads, summed over layers, answer tokens and the passage's
        tokens. (B, N) float32; 0 for padding passages."""
        labels = labels.to(self.device)
        b, n, length = states.token_mask.shape
        queries, query_mask, first = self._teacher_forced(states, labels)
        out = self._read(states, queries, query_mask, log_doc_mask, output_attentions=True)
        answer = (labels != IGNORE_INDEX).float()  # (B, T)
        p = len(self.prefix_ids)
        packed = states.hidden.view(b, n * length, self.layers, 2, self.kv_heads, self.head_dim)
        mass = torch.zeros(b, n * length, device=self.device)
        for layer, attn in enumerate(out.attentions):  # (B, H, Tq, P + N*L + Tq)
            norms = packed[:, :, layer, 1].float().norm(dim=-1)  # (B, N*L, kv heads)
            norms = norms.repeat_interleave(self.heads // self.kv_heads, dim=2).transpose(1, 2)  # (B, H, N*L)
            rows = attn[:, :, first : first + labels.shape[1], p : p + n * length].float()  # (B, H, T, N*L)
            mass += ((rows * norms[:, :, None, :]).mean(dim=1) * answer[:, :, None]).sum(dim=1)
        return (mass.view(b, n, length) * states.token_mask).sum(dim=-1)

    @torch.no_grad()
    def generate(self, states: EncodedPassages, doc_idx: torch.Tensor | None = None, max_new_tokens: int | None = None) -> list[str]:
        """Greedy answers reading the passages ``doc_idx`` (B, k) (-1 = none; None = all)."""
        if doc_idx is not None:
            states = states.select(doc_idx.to(states.token_mask.device))
        eos = self.tokenizer.eos_token_id
        prompt = states.prompt_ids.to(self.device)
        query_mask = states.prompt_mask.to(self.device)
        out = self._read(states, prompt, query_mask, None)
        cache, b = out.cache, prompt.shape[0]
        context = self._context_mask(states, None)
        low = torch.finfo(self.dtype).min
        own = torch.zeros(b, prompt.shape[1], dtype=self.dtype, device=self.device).masked_fill(~query_mask, low)
        position = len(self.prefix_ids) + states.passage_length + query_mask.sum(dim=1)  # (B,)
        token = out.logits[:, -1].argmax(dim=-1)
        finished = torch.zeros(b, dtype=torch.bool, device=self.device)
        produced = []
        for _ in range(max_new_tokens or self.config.answer_maxlength):
            token = torch.where(finished, torch.full_like(token, self.pad_id), token)
            produced.append(token)
            finished |= token == eos
            if bool(finished.all()):
                break
            own = torch.cat([own, torch.zeros(b, 1, dtype=self.dtype, device=self.device)], dim=1)
            mask = torch.cat([context, own], dim=1)[:, None, None, :]
            out = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=position[:, None], cache=cache, use_cache=True)
            cache, position = out.cache, position + 1
            token = out.logits[:, -1].argmax(dim=-1)
        ids = torch.stack(produced, dim=1).tolist()
        texts = [self.tokenizer.decode(row[: row.index(eos)] if eos in row else row, skip_special_tokens=True) for row in ids]
        return [final_answer(text.strip(), self.config.answer_from) for text in texts]
