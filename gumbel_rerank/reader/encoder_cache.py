"""Encoder states of a frozen reader, kept by content and reused across steps and evaluations.

A frozen FiD reader's encoder output for a question depends only on the reader and on that
question's tokenised (question, passage) inputs, so it can be computed once and reused every
epoch and every evaluation. :class:`EncoderCache` keys each question by a digest of its
(N, L) token ids, attention mask and passage validity, so a changed candidate set, passage
count or text length is a different entry, never a stale one. Entries live on the reader's
device until ``budget_mib`` is reached; questions that do not fit are encoded on every call,
and the first time that happens a warning says how much the whole set would need.

Only valid while the reader's weights do not change: the reranker trainer attaches a cache to
its frozen reader; reader training never does.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gumbel_rerank.reader.base import EncodedPassages, PassageTokens

logger = logging.getLogger(__name__)

Encode = Callable[[PassageTokens], EncodedPassages]


def question_key(tokens: PassageTokens, b: int) -> str:
    """Digest of question ``b``'s tokenised inputs (shape and values of ids, mask, validity)."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in (tokens.input_ids[b], tokens.attention_mask[b], tokens.passage_valid[b]):
        cpu = tensor.detach().to("cpu").contiguous()
        digest.update(str((tuple(cpu.shape), cpu.dtype)).encode())
        digest.update(cpu.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class CacheStats:
    """Counters of an :class:`EncoderCache`: questions served from it (hits), encoded
    (misses), the entries it holds and their size, and misses it could not store (full)."""

    hits: int = 0
    misses: int = 0
    entries: int = 0
    bytes: int = 0
    not_stored: int = 0


class EncoderCache:
    """Per-question encoder states of a frozen reader, bounded by ``budget_mib``.

    Args:
        budget_mib: the most the cached states may take on the reader's device (MiB).
        expected_questions: how many distinct questions the job will encode (training plus
            dev), used only to say how much memory caching all of them needs.
    """

    def __init__(self, budget_mib: float, expected_questions: int | None = None):
        if not budget_mib > 0:
            raise ValueError(f"EncoderCache: budget_mib must be > 0, got {budget_mib!r}")
        self.budget_bytes = int(budget_mib * 2**20)
        self.expected_questions = expected_questions
        self.stats = CacheStats()
        self._entries: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._warned = False

    def encode(self, tokens: PassageTokens, encode: Encode) -> EncodedPassages:
        """Encoder states of a batch: cached questions from the cache, the others through
        ``encode`` (run once, on just those questions) and stored while the budget allows.

        Args:
            tokens: the batch's (B, N, L) passage tokens.
            encode: the reader's uncached encoder (no gradients).

        Returns:
            EncodedPassages with hidden (B, N * L, D) and token_mask (B, N, L); each question's
            rows equal what ``encode`` gave when that question was first encoded.
        """
        keys = [question_key(tokens, b) for b in range(tokens.input_ids.shape[0])]
        missing = [b for b, key in enumerate(keys) if key not in self._entries]
        self.stats.hits += len(keys) - len(missing)
        self.stats.misses += len(missing)
        fresh: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if missing:
            if len(missing) == len(keys):
                states = encode(tokens)  # the whole batch: exactly the uncached computation
            else:
                rows = torch.tensor(missing, device=tokens.input_ids.device)
                states = encode(
                    PassageTokens(tokens.input_ids[rows], tokens.attention_mask[rows], tokens.passage_valid[rows])
                )
            for i, b in enumerate(missing):
                fresh[b] = (states.hidden[i], states.token_mask[i])
                self._store(keys[b], fresh[b])
        parts = [fresh[b] if b in fresh else self._entries[key] for b, key in enumerate(keys)]
        return EncodedPassages(torch.stack([h for h, _ in parts]), torch.stack([m for _, m in parts]))

    def _store(self, key: str, entry: tuple[torch.Tensor, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in entry)
        if self.stats.bytes + size > self.budget_bytes:
            self.stats.not_stored += 1
            self._warn_full(size)
            return
        # a copy: a view would keep the whole batch's tensor alive
        self._entries[key] = (entry[0].clone(), entry[1].clone())
        self.stats.entries += 1
        self.stats.bytes += size

    def _warn_full(self, size: int) -> None:
        if self._warned:
            return
        self._warned = True
        need = ""
        if self.expected_questions:
            need = f"; caching all {self.expected_questions} questions needs about {self.expected_questions * size / 2**20:.0f} MiB"
        logger.warning(
            "encoder cache full: %d questions (%.0f MiB) fill the budget of %.0f MiB, so further "
            "questions are encoded at every step%s (reader.encoder_cache_mib)",
            self.stats.entries,
            self.stats.bytes / 2**20,
            self.budget_bytes / 2**20,
            need,
        )
