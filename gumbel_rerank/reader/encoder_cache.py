"""Encoder states of a frozen reader, kept by content and reused across steps and evaluations.

A frozen FiD reader's encoder output for a question depends only on the reader and on that
question's tokenised (question, passage) inputs, so it can be computed once and reused every
epoch and every evaluation. :class:`EncoderCache` keys each question by a digest of its real
passages' token ids and attention masks (the padding passages a batch adds are left out), so a
changed candidate set or text length is a different entry, never a stale one. With
``pad_to_max_length: false`` the token length L follows each batch's longest passage, which
makes entries batch-specific: keep the default (FiD's fixed L) when caching. Entries live on the reader's
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
    """Digest of question ``b``'s real passages' token ids and masks (shape and values); the
    padding passages a batch adds are left out, so the key does not depend on the batch."""
    real = tokens.passage_valid[b].detach().to("cpu")
    digest = hashlib.blake2b(digest_size=16)
    for tensor in (tokens.input_ids[b], tokens.attention_mask[b]):
        cpu = tensor.detach().to("cpu")[real].contiguous()
        digest.update(str((tuple(cpu.shape), cpu.dtype)).encode())
        digest.update(cpu.numpy().tobytes())
    digest.update(real.nonzero().flatten().numpy().tobytes())  # which slots are real
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
        ``encode`` (run once, on just those questions, each distinct question once) and stored
        while the budget allows.

        Args:
            tokens: the batch's (B, N, L) passage tokens.
            encode: the reader's uncached encoder (no gradients).

        Returns:
            EncodedPassages with hidden (B, N * L, D) and token_mask (B, N, L), equal to what
            ``encode`` gives: each question's real passages as when it was first encoded,
            zeros and False on padding passages (as the encoder leaves them).
        """
        b_size, n, length = tokens.input_ids.shape
        keys = [question_key(tokens, b) for b in range(b_size)]
        first_of: dict[str, int] = {}
        for b, key in enumerate(keys):
            if key not in self._entries:
                first_of.setdefault(key, b)
        missing = list(first_of.values())
        self.stats.hits += b_size - len(missing)
        self.stats.misses += len(missing)
        if len(missing) == b_size:
            states = encode(tokens)  # all new and distinct: exactly the uncached computation
            for b in missing:
                self._store(keys[b], self._real_rows(states, tokens, b, b))
            return states
        if missing:
            rows = torch.tensor(missing, device=tokens.input_ids.device)
            states = encode(PassageTokens(tokens.input_ids[rows], tokens.attention_mask[rows], tokens.passage_valid[rows]))
            fresh = {keys[b]: self._real_rows(states, tokens, i, b) for i, b in enumerate(missing)}
            for key, entry in fresh.items():
                self._store(key, entry)
        else:
            fresh = {}
        some = next(iter(fresh.values()), None) or self._entries[keys[0]]
        hidden = torch.zeros(b_size, n, length, some[0].shape[-1], dtype=some[0].dtype, device=some[0].device)
        token_mask = torch.zeros(b_size, n, length, dtype=torch.bool, device=some[1].device)
        for b, key in enumerate(keys):
            real_hidden, real_mask = fresh[key] if key in fresh else self._entries[key]
            slots = tokens.passage_valid[b].to(hidden.device)
            hidden[b, slots] = real_hidden
            token_mask[b, slots] = real_mask
        return EncodedPassages(hidden.view(b_size, n * length, -1), token_mask)

    @staticmethod
    def _real_rows(states: EncodedPassages, tokens: PassageTokens, row: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Question ``b``'s real passages (row ``row`` of ``states``): hidden (n_real, L, D)
        and token_mask (n_real, L)."""
        n, length = states.token_mask.shape[1:]
        slots = tokens.passage_valid[b].to(states.hidden.device)
        return states.hidden[row].view(n, length, -1)[slots], states.token_mask[row][slots]

    def _store(self, key: str, entry: tuple[torch.Tensor, torch.Tensor]) -> None:
        if key in self._entries:
            return
        size = sum(t.numel() * t.element_size() for t in entry)
        if self.stats.bytes + size > self.budget_bytes:
            self.stats.not_stored += 1
            self._warn_full(size)
            return
        # a copy: a view would keep the whole batch's tensor alive
        self._entries[key] = (entry[0].clone(), entry[1].clone())
        self.stats.entries += 1
        self.stats.bytes += size

    def clear(self) -> None:
        """Drop every entry (the reader moved to another device, or its weights changed)."""
        self._entries.clear()
        self.stats.entries = 0
        self.stats.bytes = 0

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
