"""Passage rerankers: (question, passages) -> one scalar score per passage.

Two families are supported, both wrapped by :class:`Reranker`:

* ``"cross_encoder"``: any Hugging Face ``AutoModelForSequenceClassification`` (BERT, ELECTRA,
  RoBERTa, XLM-R such as bge-reranker). The pair ``(question, formatted passage)`` is encoded
  jointly and the score is the classification logit (see :class:`Reranker` for ``num_labels``).
* ``"rankt5"``: a T5-style ``AutoModelForSeq2SeqLM`` scored as in RankT5 (Zhuang et al., SIGIR
  2023): the encoder reads ``"Query: {question} Document: {passage}"``, the decoder runs one step
  from ``decoder_start_token_id`` and the score is the logit of one reserved token.

Scores are raw logits (no sigmoid): the Gumbel top-k relaxation consumes them as log-weights, so
any monotone squashing would only shrink their useful range.

A trained reranker is saved as a plain Hugging Face directory (safetensors weights, tokenizer,
``config.json``) plus a small ``gumbel_rerank.json`` with the :class:`RerankerConfig`, so a
cross-encoder loads without this package in ``AutoModelForSequenceClassification`` and in
sentence-transformers' ``CrossEncoder``. The settings live in :mod:`gumbel_rerank.rerankers.config`,
saving and loading directories in :mod:`gumbel_rerank.rerankers.storage`; this module holds the
scoring module itself (its settings names are re-exported here).

Example::

    reranker = Reranker.from_pretrained("runs/stage2/reranker")
    for hit in reranker.rank("who wrote on the origin of species", passages, top_k=5):
        print(hit.index, hit.score, hit.passage)
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from gumbel_rerank.envinfo import native_bf16
from gumbel_rerank.rerankers.card import ModelCard
from gumbel_rerank.rerankers.compiled import CompiledInference, CompiledTraining
from gumbel_rerank.rerankers.config import (
    DEFAULT_RANKT5_TOKEN,
    RerankerConfig,
    format_passage,
    kind_of,
)
from gumbel_rerank.rerankers.pairs import check_question_lists, passage_mask, scatter_scores
from gumbel_rerank.rerankers.storage import SETTINGS_NAME, load_components, save_directory

# RoBERTa-style position ids start at padding_idx + 1, so two positions are unusable.
_ROBERTA_LIKE = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert"})


@dataclass(frozen=True)
class RankResult:
    """One ranked passage.

    Attributes:
        index: position of the passage in the list given to :meth:`Reranker.rank`.
        score: the reranker's raw score (a logit; higher is more relevant).
        passage: the passage exactly as given (a str or a dict).
    """

    index: int
    score: float
    passage: str | dict


class ScoreOutput(NamedTuple):
    """Result of :meth:`Reranker.score`; unpacks as ``scores, mask = reranker.score(...)``.

    Attributes:
        scores: float32 tensor (B, n_max); entries where ``mask`` is False hold the fill value
            and receive no gradient: mask them (e.g. ``masked_fill(~mask, -inf)``) before a softmax.
        mask: bool tensor (B, n_max); True where question b has a passage at position j.
    """

    scores: Tensor
    mask: Tensor


@dataclass
class TokenizedPairs:
    """Output of :meth:`Reranker.tokenize`, built on CPU so data-loader workers can make it.

    Attributes:
        features: model inputs for the P = mask.sum() valid pairs, flattened question-major
            (question 0's passages in order, then question 1's, ...): ``input_ids`` and
            ``attention_mask`` (P, L) and, for cross-encoders whose tokenizer makes them,
            ``token_type_ids`` (P, L). Pass as ``reranker(**features)``.
        mask: bool (B, n_max) validity mask used by :func:`scatter_scores`.
    """

    features: dict[str, Tensor]
    mask: Tensor

    def to(self, device: torch.device | str) -> TokenizedPairs:
        """A copy with the features and the mask on ``device``."""
        return TokenizedPairs(
            {k: v.to(device) for k, v in self.features.items()}, self.mask.to(device)
        )

    @property
    def num_pairs(self) -> int:
        """P, the number of valid (question, passage) pairs (``mask.sum()``)."""
        return int(self.mask.sum())


def _check_cross_encoder(hf_model: nn.Module) -> None:
    """A cross-encoder must be a sequence classifier with one or two labels."""
    if not type(hf_model).__name__.endswith("ForSequenceClassification"):
        raise ValueError(
            f"A cross-encoder reranker needs an AutoModelForSequenceClassification model, "
            f"got {type(hf_model).__name__}; load it with "
            "AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)."
        )
    num_labels = hf_model.config.num_labels
    if num_labels not in (1, 2):
        raise ValueError(
            f"Unsupported cross-encoder with num_labels={num_labels}: a reranker needs one "
            "score per pair. Use num_labels=1 (score = logit) or 2 (score = logit[1] - "
            "logit[0]); to start from this backbone with a fresh head, load it with "
            "AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, "
            "ignore_mismatched_sizes=True)."
        )


def _check_max_length(hf_config: Any, max_length: int) -> None:
    """``max_length`` must fit the positions the model can embed (RoBERTa-style: two fewer)."""
    max_pos = getattr(hf_config, "max_position_embeddings", None)
    if isinstance(max_pos, int) and max_pos > 0:
        usable = max_pos - 2 if getattr(hf_config, "model_type", "") in _ROBERTA_LIKE else max_pos
        if max_length > usable:
            raise ValueError(
                f"RerankerConfig.max_length={max_length} exceeds the {usable} positions "
                f"the {getattr(hf_config, 'model_type', '?')} model can embed; lower it."
            )


class Reranker(nn.Module):
    """A passage reranker: (question, passages) -> one raw score per passage.

    Args:
        hf_model: a Hugging Face ``*ForSequenceClassification`` model (cross-encoder) or a T5-style
            ``*ForConditionalGeneration`` model (RankT5). Its kind must match ``config.kind``.
        tokenizer: the matching tokenizer; it must have a pad token. It is not modified (it may
            be shared, e.g. with a T5 reader).
        config: settings; ``None`` uses the defaults with ``kind`` detected from the model.

    Cross-encoder ``num_labels``: 1 gives ``score = logits[:, 0]``. 2 (some public rerankers
    are binary classifiers with label 1 = relevant) gives ``score = logits[:, 1] - logits[:, 0]``,
    the log-odds of relevance, which is what ``softmax(logits)[:, 1]`` is a sigmoid of, so the
    ranking is the classifier's and the score is again a logit. Other values raise ValueError.

    Attributes:
        hf_model: the wrapped Hugging Face model (what ``save_pretrained`` writes).
        tokenizer: the wrapped tokenizer.
        config: the resolved :class:`RerankerConfig` (``rankt5_token`` filled in for RankT5).
    """

    def __init__(
        self, hf_model: nn.Module, tokenizer: Any, config: RerankerConfig | None = None
    ) -> None:
        super().__init__()
        hf_config = getattr(hf_model, "config", None)
        if hf_config is None:
            raise TypeError(
                f"Reranker needs a Hugging Face PreTrainedModel, got {type(hf_model).__name__}."
            )
        detected = kind_of(hf_config)
        if config is None:
            config = RerankerConfig(kind=detected)
        elif not isinstance(config, RerankerConfig):
            raise TypeError(f"config must be a RerankerConfig, got {type(config).__name__}.")
        if config.kind != detected:
            raise ValueError(
                f"RerankerConfig.kind={config.kind!r} but the model is a "
                f"{type(hf_model).__name__} (model_type={hf_config.model_type!r}), "
                f"which is scored as {detected!r}; pass RerankerConfig(kind={detected!r}, ...)."
            )
        if getattr(tokenizer, "pad_token_id", None) is None:
            raise ValueError(
                "The reranker tokenizer has no pad token, which batching needs; set one, e.g. "
                "tokenizer.pad_token = tokenizer.eos_token or add '[PAD]' and resize embeddings."
            )
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self._compiled: CompiledInference | None = None  # see compile_for_inference
        # the training graph (config.compile_train), built on first use
        self._train_compiled: CompiledTraining | None = None
        self._token_id: int | None = None
        self._decoder_start_id: int | None = None

        if config.kind == "cross_encoder":
            _check_cross_encoder(hf_model)
        else:
            config = self._resolve_rankt5(config)
        _check_max_length(hf_config, config.max_length)
        self.config = config

    def _resolve_rankt5(self, config: RerankerConfig) -> RerankerConfig:
        """Check the RankT5 score token and decoder start id; the config with the token filled in."""
        token = config.rankt5_token
        vocab = self.tokenizer.get_vocab()
        if token is None:
            if DEFAULT_RANKT5_TOKEN not in vocab:
                raise ValueError(
                    f"RankT5 scores with the logit of {DEFAULT_RANKT5_TOKEN!r} by default, but "
                    "this tokenizer has no such token; set RerankerConfig(rankt5_token=...) to "
                    "a single token of its vocabulary."
                )
            token = DEFAULT_RANKT5_TOKEN
        elif token not in vocab:
            raise ValueError(
                f"RerankerConfig.rankt5_token={token!r} is not a single token of the tokenizer's "
                "vocabulary; pick one that is (an unused sentinel such as <extra_id_10> for T5)."
            )
        token_id = vocab[token]
        vocab_size = self.hf_model.get_output_embeddings().weight.shape[0]
        if token_id >= vocab_size:
            raise ValueError(
                f"rankt5_token {token!r} has id {token_id} but the model's output layer has only "
                f"{vocab_size} rows; resize the model's token embeddings."
            )
        start = getattr(self.hf_model.config, "decoder_start_token_id", None)
        if start is None:
            gen = getattr(self.hf_model, "generation_config", None)
            start = getattr(gen, "decoder_start_token_id", None)
        if start is None:
            raise ValueError(
                "The RankT5 model's config has no decoder_start_token_id (T5 uses the pad id, 0); "
                "set hf_model.config.decoder_start_token_id."
            )
        self._token_id = int(token_id)
        self._decoder_start_id = int(start)
        return dataclasses.replace(config, rankt5_token=token)

    # ------------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        """``"cross_encoder"`` or ``"rankt5"`` (``config.kind``)."""
        return self.config.kind

    @property
    def device(self) -> torch.device:
        """The device of the wrapped model's parameters (where inputs are moved)."""
        return next(self.hf_model.parameters()).device

    @property
    def rankt5_token_id(self) -> int | None:
        """Vocabulary id whose first-step logit is the RankT5 score (None for cross-encoders)."""
        return self._token_id

    # ------------------------------------------------------------------ tokenisation
    def _tokenizer_call(self, questions: Sequence[str], passage_texts: Sequence[str], **padding: Any) -> Any:
        """The tokenizer on flat, aligned (question, formatted passage) lists, truncated to
        ``max_length`` as this reranker's kind does it; ``padding`` goes to the tokenizer."""
        if self.kind == "cross_encoder":
            return self.tokenizer(
                list(questions),
                list(passage_texts),
                truncation="longest_first",
                max_length=self.config.max_length,
                **padding,
            )
        texts = [
            self.config.rankt5_query_template.format(question=q, passage=p)
            for q, p in zip(questions, passage_texts, strict=True)
        ]
        return self.tokenizer(texts, truncation=True, max_length=self.config.max_length, **padding)

    def _encode(self, questions: Sequence[str], passage_texts: Sequence[str]) -> dict[str, Tensor]:
        """Tokenise flat, aligned (question, formatted passage) lists -> (P, L) tensors; with
        ``compile_train``, L is rounded up to ``pad_multiple`` (few shapes, few compilations)."""
        enc = self._tokenizer_call(questions, passage_texts, padding=True, return_tensors="pt")
        features = {k: enc[k] for k in self._feature_keys() if k in enc}
        multiple = self.config.pad_multiple if self.config.compile_train else None
        length = features["input_ids"].shape[1]
        if multiple and length % multiple:
            # never past max_length: the model's position table may end there
            extra = min(-(-length // multiple) * multiple, max(self.config.max_length, length)) - length
            pad = {"input_ids": self.tokenizer.pad_token_id}
            features = {k: nn.functional.pad(v, (0, extra), value=pad.get(k, 0)) for k, v in features.items()}
        return features

    def _feature_keys(self) -> tuple[str, ...]:
        """The tokenizer outputs the model takes (RankT5 has no token types)."""
        if self.kind == "cross_encoder":
            return ("input_ids", "attention_mask", "token_type_ids")
        return ("input_ids", "attention_mask")

    def tokenize(
        self, questions: Sequence[str], passages: Sequence[Sequence[str | Mapping[str, Any]]]
    ) -> TokenizedPairs:
        """Tokenise B questions with their (ragged) passage lists into flat pairs.

        Args:
            questions: B question strings.
            passages: B lists; list b holds question b's passages (dicts with ``text`` and optional
                ``title``, or plain strings), possibly of different lengths (including empty).

        Returns:
            :class:`TokenizedPairs` with features (P, L) for the P valid pairs (question-major)
            and the bool mask (B, n_max). Tensors are on CPU.
        """
        check_question_lists(questions, passages)
        flat_q = [q for q, plist in zip(questions, passages, strict=True) for _ in plist]
        flat_p = [format_passage(p, self.config.template) for plist in passages for p in plist]
        mask = passage_mask(passages)
        if not flat_q:
            empty = torch.zeros((0, 0), dtype=torch.long)
            return TokenizedPairs({"input_ids": empty, "attention_mask": empty.clone()}, mask)
        return TokenizedPairs(self._encode(flat_q, flat_p), mask)

    # ------------------------------------------------------------------ scoring
    def _forward_chunk(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None
    ) -> Tensor:
        """(P,) scores of one chunk of (P, L) pairs, in the model's dtype."""
        compiled = self._compiled is not None and self._compiled.usable()
        model = self._compiled if compiled else self.hf_model
        if self.config.compile_train and torch.is_grad_enabled():
            if self._train_compiled is None:
                self._train_compiled = CompiledTraining(self.hf_model)
            model = self._train_compiled
        if self.kind == "cross_encoder":
            kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            logits = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
            if logits.shape[-1] == 1:
                return logits[:, 0]
            return logits[:, 1] - logits[:, 0]
        # RankT5: one decoder step from the start token; its logit for the reserved token.
        # Full-vocabulary logits cost P x V floats; acceptable next to the encoder activations,
        # and it keeps model internals (T5's tied-embedding output scaling) out of this code.
        start = torch.full(
            (input_ids.shape[0], 1),
            self._decoder_start_id,
            dtype=input_ids.dtype,
            device=input_ids.device,
        )
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=start,
            # No generation follows; a KV cache would only cost memory (and warns under
            # activation checkpointing).
            use_cache=False,
        )
        return out.logits[:, 0, self._token_id]

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        chunk_size: int | None = None,
    ) -> Tensor:
        """Score pre-tokenised flat pairs.

        Args:
            input_ids: (P, L) token ids from :meth:`tokenize`.
            attention_mask: (P, L).
            token_type_ids: (P, L) or None (ignored by RankT5).
            chunk_size: run the model on at most this many pairs at a time (lowers the peak of
                temporaries; results and gradients equal the unchunked run). While gradients
                are on, ``config.grad_chunk_size`` also bounds it and each chunk is recomputed
                in backward instead of keeping its activations.

        Returns:
            (P,) float32 scores, differentiable with respect to the model's parameters.
        """
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}.")
        device = self.device
        input_ids = input_ids.to(device)
        attention_mask = attention_mask.to(device)
        if token_type_ids is not None:
            token_type_ids = token_type_ids.to(device)
        n = input_ids.shape[0]
        if n == 0:
            # An empty (0,) result still attached to the graph, so callers can always backprop.
            return next(self.hf_model.parameters()).flatten()[:0].float() * 0.0
        step = n if chunk_size is None else chunk_size
        recompute = self.config.grad_chunk_size is not None and torch.is_grad_enabled()
        if recompute:
            step = min(step, self.config.grad_chunk_size)
        parts = []
        bf16 = self.config.autocast == "bf16" or (self.config.autocast == "auto" and native_bf16(device))
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        with autocast:
            for start in range(0, n, step):
                sl = slice(start, start + step)
                tt = None if token_type_ids is None else token_type_ids[sl]
                if recompute:
                    # keeps only the chunk's token ids; backward reruns the chunk (same dropout
                    # masks: the RNG state is restored, autocast too) and frees it again
                    parts.append(checkpoint(self._forward_chunk, input_ids[sl], attention_mask[sl], tt, use_reentrant=False))
                else:
                    parts.append(self._forward_chunk(input_ids[sl], attention_mask[sl], tt))
        # float32: downstream Gumbel/softmax arithmetic should not run in bf16.
        return torch.cat(parts).float()

    def score(
        self,
        questions: Sequence[str],
        passages: Sequence[Sequence[str | Mapping[str, Any]]],
        chunk_size: int | None = None,
        fill_value: float = 0.0,
    ) -> ScoreOutput:
        """Score each question's passages (differentiable; used in training).

        Equivalent to ``tokenize`` + ``forward`` + :func:`scatter_scores`. All valid pairs go
        through the model in one batch (or ``chunk_size`` pairs at a time). Runs in the module's
        current mode (``train()`` keeps dropout on).

        Args:
            questions: B strings.
            passages: B lists of passages (dicts with ``text``/optional ``title``, or strings),
                possibly ragged.
            chunk_size: optional maximum number of pairs per model call.
            fill_value: score placed at padding positions.

        Returns:
            :class:`ScoreOutput` ``(scores (B, n_max) float32, mask (B, n_max) bool)``.
        """
        tokenized = self.tokenize(questions, passages)
        flat = self.forward(**tokenized.features, chunk_size=chunk_size)
        mask = tokenized.mask.to(flat.device)
        return ScoreOutput(scatter_scores(flat, mask, fill_value), mask)

    @torch.no_grad()
    def rank(
        self,
        question: str,
        passages: Sequence[str | Mapping[str, Any]],
        top_k: int | None = None,
        batch_size: int = 32,
    ) -> list[RankResult]:
        """Rank passages for one question (inference: eval mode, no gradients).

        Args:
            question: the query.
            passages: strings (passage text) or dicts with ``text`` and optional ``title``.
            top_k: keep only the best ``top_k`` (None keeps all; larger than the list keeps all).
            batch_size: passages per model call.

        Returns:
            :class:`RankResult` list sorted by score descending (ties: lower input index first).
            The module's previous train/eval mode is restored afterwards.
        """
        if not isinstance(question, str):
            raise TypeError(f"question must be a str, got {type(question).__name__}.")
        if isinstance(passages, (str, Mapping)):
            raise TypeError("passages must be a list of passages; wrap a single one in a list.")
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}.")
        items = list(passages)
        scores = self.predict([(question, p) for p in items], batch_size=batch_size)  # checks batch_size
        order = sorted(range(len(items)), key=lambda i: (-scores[i], i))
        if top_k is not None:
            order = order[:top_k]
        return [RankResult(index=i, score=scores[i], passage=items[i]) for i in order]

    def predict(
        self, pairs: Sequence[tuple[str, str | Mapping[str, Any]]], batch_size: int = 32
    ) -> list[float]:
        """Score (question, passage) pairs for inference: one score per pair, in input order.

        Faster than :meth:`score` on many pairs of mixed length: every pair is tokenised in one
        call (the Rust tokenizer runs it in parallel), pairs are batched by length so a batch
        pads to its own longest pair only, and the model runs under ``inference_mode`` in eval
        mode (the previous mode is restored). The scores equal :meth:`score`'s up to float
        rounding (padding is masked out either way).

        Args:
            pairs: P (question, passage) tuples; a passage is a string or a dict with ``text``
                and optional ``title``, formatted by the reranker's template.
            batch_size: pairs per model call.

        Returns:
            P float scores.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        pairs = list(pairs)
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise TypeError(f"pairs[{i}] must be a (question, passage) tuple, got {type(pair).__name__}.")
        if not pairs:
            return []
        texts = [format_passage(p, self.config.template) for _, p in pairs]
        encoded = self._encode_unpadded([q for q, _ in pairs], texts)
        order = sorted(range(len(pairs)), key=lambda i: -len(encoded[i]["input_ids"]))
        scores = [0.0] * len(pairs)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    rows = order[start : start + batch_size]
                    batch = self.tokenizer.pad([encoded[i] for i in rows], return_tensors="pt")
                    features = {k: batch[k] for k in self._feature_keys() if k in batch}
                    for i, value in zip(rows, self.forward(**features).tolist(), strict=True):
                        scores[i] = value
        finally:
            self.train(was_training)
        return scores

    def score_inference(
        self,
        questions: Sequence[str],
        passages: Sequence[Sequence[str | Mapping[str, Any]]],
        batch_size: int = 32,
        fill_value: float = 0.0,
    ) -> ScoreOutput:
        """:meth:`score`'s output for inference (evaluation, ``rerank``): the same (B, n_max)
        scores and mask, computed by :meth:`predict` (length-sorted batches of ``batch_size``
        pairs, ``inference_mode``, eval mode); not differentiable."""
        check_question_lists(questions, passages)
        mask = passage_mask(passages)
        pairs = [(q, p) for q, plist in zip(questions, passages, strict=True) for p in plist]
        flat = torch.tensor(self.predict(pairs, batch_size=batch_size), dtype=torch.float32)
        return ScoreOutput(scatter_scores(flat, mask, fill_value), mask)

    def _encode_unpadded(self, questions: Sequence[str], passage_texts: Sequence[str]) -> list[dict[str, list[int]]]:
        """Per pair, the token features of :meth:`_encode` without padding (same truncation)."""
        enc = self._tokenizer_call(questions, passage_texts)
        keys = [k for k in self._feature_keys() if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(enc["input_ids"]))]

    def compile_for_inference(self, enabled: bool = True) -> Reranker:
        """Score without gradients (``predict``, ``score_inference``, ``rank``, evaluation,
        ``rerank``) through ``torch.compile`` with frozen weights (see
        :mod:`gumbel_rerank.rerankers.compiled`): 1.9x the eager float32 throughput of MiniLM on
        this project's CPU after a one-off compile of about 17 s. The weights are snapshot at
        the first call; if they change later, scoring falls back to the eager model with a
        warning. Training (gradients on) always runs eagerly. ``enabled=False`` drops it.
        Returns ``self``."""
        if self._compiled is not None:
            self._compiled.release()
        self._compiled = CompiledInference(self.hf_model) if enabled else None
        return self

    @property
    def is_compiled(self) -> bool:
        """Whether scoring without gradients runs the compiled model: compiled by a first call,
        and neither fallen back (no compiler, changed weights) nor dropped."""
        return self._compiled is not None and self._compiled.working is True

    # ------------------------------------------------------------------ training helpers
    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict | None = None
    ) -> None:
        """Turn on activation checkpointing in the wrapped model (recompute in backward).

        Defaults to ``use_reentrant=False``: the reentrant variant silently drops parameter
        gradients when no checkpoint input requires grad (e.g. frozen embeddings).
        """
        kwargs = (
            {"use_reentrant": False}
            if gradient_checkpointing_kwargs is None
            else dict(gradient_checkpointing_kwargs)
        )
        # transformers 5.x renamed the method (the old name warns FutureWarning, gone in v6).
        enable = getattr(self.hf_model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs=kwargs)
        else:  # transformers 4.x
            self.hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def gradient_checkpointing_disable(self) -> None:
        """Turn activation checkpointing off again in the wrapped model."""
        disable = getattr(self.hf_model, "activation_checkpointing_disable", None)
        if disable is not None:
            disable()
        else:
            self.hf_model.gradient_checkpointing_disable()

    # ------------------------------------------------------------------ persistence
    def save_pretrained(
        self, path: str | os.PathLike, state_dict: Mapping[str, Tensor] | None = None, card: ModelCard | None = None
    ) -> Path:
        """Write a plain Hugging Face directory, replacing ``path`` only once it is complete.

        Contents: the model (``config.json``, ``model.safetensors``), the tokenizer (its
        ``model_max_length`` set to ``config.max_length`` so sentence-transformers' CrossEncoder
        truncates like we do), ``gumbel_rerank.json`` (the config plus the package version), a
        model card ``README.md`` (``card``, or one of the reranker alone) and, for a
        cross-encoder, sentence-transformers' configuration (identity activation: its
        ``CrossEncoder(path).predict`` returns these scores; :mod:`~gumbel_rerank.rerankers.card`).

        Everything is written into a hidden sibling directory, flushed to disk, then renamed into
        place. An existing directory at ``path`` is first renamed to a hidden ``.old`` sibling
        and deleted only after the new one is in place, so a failure at any point leaves either
        the old or the new complete directory at ``path`` (a crash exactly between the two
        renames leaves the old one recoverable as ``.<name>.old-*``). Call on one process only.

        Args:
            path: target directory (created with its parents if needed).
            state_dict: optional weights to write instead of the live parameters, e.g. a
                consolidated ZeRO-3 state dict (whose partitioned live parameters are empty).
                Keys may be the wrapped model's own or carry this module's ``hf_model.`` prefix.

        Returns:
            The path written.
        """
        return save_directory(self.hf_model, self.tokenizer, self.config, path, state_dict, card)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        config: RerankerConfig | None = None,
        *,
        model_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        **overrides: Any,
    ) -> Reranker:
        """Load a reranker from a local directory (never the hub).

        The kind is detected from ``config.json`` (encoder-decoder / T5 family -> ``"rankt5"``,
        anything else -> ``"cross_encoder"``). Settings come from ``gumbel_rerank.json`` if the
        directory has one, else the defaults; an explicit ``config`` replaces them, and keyword
        ``overrides`` (RerankerConfig field names) are applied last.

        A cross-encoder directory whose architecture is not ``*ForSequenceClassification`` (a bare
        backbone such as a BERT MLM checkpoint) gets a fresh, randomly initialised one-logit head.

        Args:
            path: a directory with ``config.json``, weights and tokenizer files.
            config: optional settings replacing the saved ones.
            model_kwargs: extra arguments for the HF ``from_pretrained`` (e.g. ``dtype``,
                ``attn_implementation``).
            seed: seeds the initialisation of whatever the directory does not hold (a fresh
                head), so the same seed gives the same weights; the global RNG is left as it
                was. None = the global RNG draws it (not reproducible across processes).
            **overrides: RerankerConfig fields, e.g. ``max_length=128``.
        """
        if seed is None:
            return cls(*load_components(path, config, model_kwargs, overrides))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(*load_components(path, config, model_kwargs, overrides))


def build_reranker_from_config(
    hf_config: Any, tokenizer: Any, cfg: RerankerConfig | None = None
) -> Reranker:
    """A randomly initialised reranker from a Hugging Face config object (tests, demos).

    Encoder-decoder configs (T5 family) give a RankT5 scorer via ``AutoModelForSeq2SeqLM``; others
    a cross-encoder via ``AutoModelForSequenceClassification`` with ``num_labels`` forced to 1
    (the PretrainedConfig default is 2). ``hf_config`` itself is not modified. Seed torch first
    for reproducible weights.
    """
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    hf_config = copy.deepcopy(hf_config)
    if kind_of(hf_config) == "rankt5":
        model = AutoModelForSeq2SeqLM.from_config(hf_config)
    else:
        hf_config.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(hf_config)
    if cfg is None:
        cfg = RerankerConfig(kind=kind_of(hf_config))
    return Reranker(model, tokenizer, cfg)


__all__ = [
    "DEFAULT_RANKT5_TOKEN",
    "SETTINGS_NAME",
    "RankResult",
    "Reranker",
    "RerankerConfig",
    "ScoreOutput",
    "TokenizedPairs",
    "build_reranker_from_config",
    "format_passage",
    "scatter_scores",
]
