"""The reader interface shared by every reader (FiD today, parallel-encoding decoders later).

Objectives and the training loop talk to a reader only through :class:`Reader`; a second
reader slots in by implementing it, without touching them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class PassageTokens:
    """Tokenised passages of a batch, each passage padded to the same length L.

    Attributes:
        input_ids: (B, N, L) long.
        attention_mask: (B, N, L) bool, True on real tokens.
        passage_valid: (B, N) bool, False for padding passages (a question with fewer
            candidates than the batch's N).
        prompt_ids / prompt_mask: (B, Tp) the question prompt a decoder-only reader reads
            after the passages (left-padded), and its real tokens; None for FiD, whose
            question is inside every passage's encoder input.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    passage_valid: torch.Tensor
    prompt_ids: torch.Tensor | None = None
    prompt_mask: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> PassageTokens:
        """A copy with every tensor on ``device``."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return PassageTokens(**{name: None if t is None else t.to(device) for name, t in fields.items()})


@dataclass
class EncodedPassages:
    """Encoder states of N independently encoded passages per question.

    Attributes:
        hidden: (B, N * L, D) encoder output, passages concatenated in order.
        token_mask: (B, N, L) bool, True on real tokens of real passages.
        slots: (B, N) long, the slot each passage held in the candidate set it was encoded in
            (None = 0..N-1). Only a position-dependent reader reads it: FiD's legacy
            cross-attention bias sees passage i's tokens at positions ``slot * L + t``, so
            :meth:`select` keeps the kept passages where the training mask saw them, and a 0/1
            mask equals the selection exactly (docs/bugs-and-fixes.md, "legacy bias slots").
        prompt_ids / prompt_mask: (B, Tp) a decoder-only reader's question prompt (see
            :class:`PassageTokens`); None for FiD.

    ``hidden`` is whatever per-token state the reader attends to: FiD's encoder outputs
    (D = d_model), or a decoder-only reader's per-layer keys and values packed along D. Every
    operation here works on the token axis only, so it serves both.
    """

    hidden: torch.Tensor
    token_mask: torch.Tensor
    slots: torch.Tensor | None = None
    prompt_ids: torch.Tensor | None = None
    prompt_mask: torch.Tensor | None = None

    def _prompts(self, repeat: int = 1, interleave: int = 1) -> dict[str, torch.Tensor | None]:
        """The prompt fields repeated block-wise (``repeat``) or per row (``interleave``)."""
        if self.prompt_ids is None:
            return {}
        return {
            name: getattr(self, name).repeat_interleave(interleave, dim=0).repeat(repeat, 1)
            for name in ("prompt_ids", "prompt_mask")
        }

    def slot_index(self) -> torch.Tensor:
        """(B, N) long: :attr:`slots`, or 0..N-1 for every question when not set."""
        if self.slots is not None:
            return self.slots
        b, n, _ = self.token_mask.shape
        return torch.arange(n, device=self.token_mask.device).expand(b, n)

    @property
    def n_passages(self) -> int:
        """N, passages per question."""
        return self.token_mask.shape[1]

    @property
    def passage_length(self) -> int:
        """L, tokens per passage."""
        return self.token_mask.shape[2]

    @property
    def passage_valid(self) -> torch.Tensor:
        """(B, N) bool: passages with at least one real token."""
        return self.token_mask.any(dim=-1)

    def singles(self) -> EncodedPassages:
        """Each passage as its own question: hidden (B * N, L, D), token_mask (B * N, 1, L).

        Row ``b * N + i`` is passage i of question b alone, exactly as the reader sees a
        question with that single passage (each passage was encoded on its own, and it sits in
        slot 0, as in a one-passage question). Padding passages give rows with no real token.
        """
        b, n, length = self.token_mask.shape
        hidden = self.hidden.view(b * n, length, self.hidden.shape[-1])
        return EncodedPassages(hidden, self.token_mask.reshape(b * n, 1, length), **self._prompts(interleave=n))

    def repeat(self, times: int) -> EncodedPassages:
        """The batch repeated ``times`` times (block-major: rows b, b + B, ... are question b)."""
        slots = None if self.slots is None else self.slots.repeat(times, 1)
        return EncodedPassages(
            self.hidden.repeat(times, 1, 1), self.token_mask.repeat(times, 1, 1), slots, **self._prompts(repeat=times)
        )

    def select(self, doc_idx: torch.Tensor) -> EncodedPassages:
        """Keep only the passages in ``doc_idx`` (B, k), in that order; -1 means "none".

        Exact, because each passage was encoded on its own: its states do not depend on
        which other passages are present. Each kept passage keeps its slot (:attr:`slots`), so
        a reader whose attention depends on key positions reads it as the training mask did.
        """
        b, n, length = self.token_mask.shape
        d = self.hidden.shape[-1]
        k = doc_idx.shape[1]
        none = doc_idx < 0
        idx = doc_idx.clamp(min=0)
        hidden = self.hidden.view(b, n, length, d)
        # gather index (B, k, L, D) picks whole passages
        gathered = hidden.gather(1, idx[:, :, None, None].expand(b, k, length, d))
        token_mask = self.token_mask.gather(1, idx[:, :, None].expand(b, k, length))
        token_mask = token_mask & ~none[:, :, None]
        # zero the "none" slots too: a row with nothing selected then reads nothing, instead of
        # attending to a copy of passage 0
        gathered = gathered.masked_fill(none[:, :, None, None], 0.0)
        slots = self.slot_index().gather(1, idx)
        return EncodedPassages(gathered.reshape(b, k * length, d), token_mask, slots, **self._prompts())


class Reader(Protocol):
    """What objectives and the training loop need from a frozen reader."""

    def tokenize_passages(
        self, questions: list[str], passages: list[list[dict]], n_passages: int | None = None
    ) -> PassageTokens:
        """(B, N, L) tokens of B questions with their passages (``title``/``text`` dicts),
        padded to N passages (``n_passages``, default the longest list)."""
        ...

    def tokenize_targets(self, answers: list[str]) -> torch.Tensor:
        """(B, T) labels, -100 at padding."""
        ...

    def encode(self, tokens: PassageTokens, with_grad: bool = False, cached: bool = False) -> EncodedPassages:
        """Encoder states (B, N * L, D) of every passage, each encoded on its own; ``cached``
        lets a frozen reader serve them from its encoder cache, if it has one."""
        ...

    def token_logprobs(
        self,
        states: EncodedPassages,
        labels: torch.Tensor,
        log_doc_mask: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """(B, T) log p(a_t | q, passages) under log M (B, N), the vocabulary logits divided by
        ``temperature``; 0 where labels are -100."""
        ...

    def cross_attention_mass(
        self, states: EncodedPassages, labels: torch.Tensor, log_doc_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, N) attention mass per passage while reading the answer (ADist's signal): decoder
        cross-attention probability times the value vector's norm, averaged over heads, summed
        over layers, answer tokens and the passage's tokens."""
        ...

    @property
    def attention_layers(self) -> int:
        """The layers :meth:`cross_attention_mass` sums over (ADist's Atlas normaliser)."""
        ...

    def lm_loss(
        self, states: EncodedPassages, labels: torch.Tensor, log_doc_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B,) answer NLL, mean over answer tokens, under the passage mask log M (B, N)."""
        ...

    def generate(
        self, states: EncodedPassages, doc_idx: torch.Tensor | None = None, max_new_tokens: int = 50
    ) -> list[str]:
        """B greedy answers reading the passages ``doc_idx`` (B, k) (-1 = none; None = all)."""
        ...


class StatefulReader:
    """What both reader kinds share around their model: ``model`` (the HF module), ``trainable``,
    an optional encoder cache, the device and dtype, moving, and :meth:`encode` (cached or not,
    with or without gradients), which calls the subclass's ``_encode`` on tokens already on the
    device and attaches the question prompts the tokens carry."""

    model: torch.nn.Module
    trainable: bool
    encoder_cache: Any  # an EncoderCache (reader/encoder_cache.py, which imports this module) or None

    @property
    def device(self) -> torch.device:
        """The model's device (where batches are moved)."""
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        """The model's parameter dtype (``FiDReaderConfig.dtype``)."""
        return self.model.dtype

    def to(self, device: torch.device | str) -> StatefulReader:
        """Move the model to ``device`` in place (an encoder cache is emptied: its states were on
        the old device); returns ``self``."""
        if self.encoder_cache is not None and torch.device(device) != self.device:
            self.encoder_cache.clear()
        self.model.to(device)
        return self

    def use_encoder_cache(self, cache: Any) -> None:
        """Serve :meth:`encode` (without gradients) from ``cache`` (None detaches it). Only for a
        frozen reader: cached states would go stale once the weights change."""
        if cache is not None and self.trainable:
            raise ValueError("an encoder cache needs a frozen reader; this one is trainable")
        self.encoder_cache = cache

    def _encode(self, tokens: PassageTokens) -> EncodedPassages:
        raise NotImplementedError

    def encode(self, tokens: PassageTokens, with_grad: bool = False, cached: bool = False) -> EncodedPassages:
        """Every real passage encoded on its own, under no_grad unless ``with_grad`` (training
        the reader itself; no_grad is exact for the mask gradient, which enters only the
        reading). Padding passages are not run at all; their states are zeros and fully
        masked. ``cached``: questions already in the encoder cache (:meth:`use_encoder_cache`)
        are served from it and new ones stored; the training objectives ask for it, since they
        see the same candidate sets every epoch, while evaluations of changing top-k subsets do
        not.

        Returns:
            EncodedPassages with hidden (B, N * L, D) and token_mask (B, N, L), plus the
            tokens' question prompts (a decoder-only reader's).
        """
        if cached and self.encoder_cache is not None and not with_grad:
            with torch.no_grad():
                states = self.encoder_cache.encode(tokens, lambda part: self._encode(part.to(self.device)))
        else:
            with torch.set_grad_enabled(with_grad):
                states = self._encode(tokens.to(self.device))
        if tokens.prompt_ids is None:
            return states
        return dataclasses.replace(states, prompt_ids=tokens.prompt_ids.to(self.device), prompt_mask=tokens.prompt_mask.to(self.device))
