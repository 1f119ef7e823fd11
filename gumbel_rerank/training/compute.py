"""Compute accounting for the comparison: the reader's work per training question, counted
while training and estimated in FLOPs for FiD readers of real sizes.

:class:`CountingReader` wraps the frozen reader an objective trains through and counts what it
asks of it (passages encoded; decoder passes reading all passages or one; passes whose loss is
back-propagated into the mask). Each objective also declares its reader work per question
(``ObjectiveSpec.reader_passes``); a test checks the declaration against these counts, so the
FLOP estimates of :func:`reader_flops` (which scale the declaration to other n and model sizes)
rest on measured behaviour.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from gumbel_rerank.objectives.base import ReaderPasses
from gumbel_rerank.reader.base import EncodedPassages, PassageTokens, Reader

#: FiD reader sizes of the compute columns: the shipped T5 configurations and FiD's passage
#: lengths (text_maxlength 200 for base readers, 250 for large ones).
FID_SIZES = {"FiD-base": ("t5-base", 200), "FiD-large": ("t5-large", 250)}


@dataclass
class ReaderCounts:
    """Running totals of a :class:`CountingReader`."""

    encoded: int = 0
    full_forward: int = 0
    single_forward: int = 0
    full_backward: int = 0

    def per_question(self, questions: int) -> dict[str, float]:
        """Each total divided by ``questions`` (visits of training questions)."""
        return {name: value / max(1, questions) for name, value in asdict(self).items()}


class CountingReader:
    """A reader that counts the work asked of it and otherwise is the wrapped reader.

    Counted: ``encode`` (real passages), and the decoder passes of ``lm_loss``,
    ``token_logprobs`` and ``cross_attention_mass`` (one per row: a row reading one passage is
    a single pass, else a full one; a row whose log mask requires grad is also a backward
    pass). Everything else is delegated unchanged.
    """

    def __init__(self, reader: Reader) -> None:
        self.inner = reader
        self.counts = ReaderCounts()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _decoder(self, states: EncodedPassages, log_doc_mask: torch.Tensor | None) -> None:
        rows = states.token_mask.shape[0]
        if states.n_passages == 1:
            self.counts.single_forward += rows
        else:
            self.counts.full_forward += rows
            if log_doc_mask is not None and log_doc_mask.requires_grad and torch.is_grad_enabled():
                self.counts.full_backward += rows

    def encode(self, tokens: PassageTokens, with_grad: bool = False, cached: bool = False) -> EncodedPassages:
        """The wrapped ``encode``; counts the real passages."""
        self.counts.encoded += int(tokens.passage_valid.sum())
        return self.inner.encode(tokens, with_grad=with_grad, cached=cached)

    def lm_loss(self, states: EncodedPassages, labels: torch.Tensor, log_doc_mask: torch.Tensor) -> torch.Tensor:
        """The wrapped ``lm_loss``; one decoder pass per row."""
        self._decoder(states, log_doc_mask)
        return self.inner.lm_loss(states, labels, log_doc_mask)

    def token_logprobs(
        self,
        states: EncodedPassages,
        labels: torch.Tensor,
        log_doc_mask: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """The wrapped ``token_logprobs``; one decoder pass per row."""
        self._decoder(states, log_doc_mask)
        return self.inner.token_logprobs(states, labels, log_doc_mask, temperature)

    def cross_attention_mass(
        self, states: EncodedPassages, labels: torch.Tensor, log_doc_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The wrapped ``cross_attention_mass``; one decoder pass per row."""
        self._decoder(states, log_doc_mask)
        return self.inner.cross_attention_mass(states, labels, log_doc_mask)


def shipped_t5_config(name: str) -> dict[str, Any]:
    """A T5 configuration shipped with the package (``t5-base`` / ``t5-large``), as a dict."""
    return json.loads((Path(__file__).resolve().parents[1] / "reader" / "configs" / f"{name}.json").read_text())


def t5_shape(cfg: dict[str, Any]) -> dict[str, int]:
    """d_model, d_ff, inner (heads x d_kv), layers, vocab and FFN matrices of a T5
    configuration (a ``config.json`` as a dict)."""
    gated = str(cfg.get("feed_forward_proj", "relu")).startswith("gated")
    return {
        "d": cfg["d_model"],
        "ff": cfg["d_ff"],
        "inner": cfg["num_heads"] * cfg["d_kv"],
        "enc_layers": cfg["num_layers"],
        "dec_layers": cfg.get("num_decoder_layers", cfg["num_layers"]),
        "vocab": cfg["vocab_size"],
        "ff_mats": 3 if gated else 2,
    }


def encoder_flops(shape: dict[str, int], length: int) -> float:
    """Forward FLOPs (2 per multiply-add) of encoding one passage of ``length`` tokens."""
    d, inner, ff = shape["d"], shape["inner"], shape["ff"]
    per_token = 2 * (4 * d * inner + shape["ff_mats"] * d * ff)  # q, k, v, o and the FFN
    attention = 2 * 2 * inner * length  # scores and weighted values, per token
    return shape["enc_layers"] * length * (per_token + attention)


def decoder_flops(shape: dict[str, int], keys: int, answer: int) -> float:
    """Forward FLOPs of one teacher-forced decoder pass over ``answer`` tokens that
    cross-attends to ``keys`` encoder tokens (the key/value projections of those tokens
    included: each pass recomputes them)."""
    d, inner, ff = shape["d"], shape["inner"], shape["ff"]
    # self-attention q, k, v, o and cross-attention q, o per answer token (the cross k, v act on
    # the encoder states: cross_kv); the FFN
    per_token = 2 * (6 * d * inner + shape["ff_mats"] * d * ff)
    self_attention = 2 * 2 * inner * answer
    cross_attention = 2 * 2 * inner * keys
    cross_kv = 2 * 2 * d * inner * keys  # projecting the encoder states to keys and values
    layers = shape["dec_layers"] * (answer * (per_token + self_attention + cross_attention) + cross_kv)
    return layers + 2 * d * shape["vocab"] * answer  # the LM head


def reader_flops(passes: ReaderPasses, size: str, n: int, answer: int = 8) -> float:
    """Reader FLOPs per training question for ``passes`` (declared at ``n`` candidates) with
    the FiD reader ``size`` (:data:`FID_SIZES`). A backward pass through the frozen reader
    costs about one forward (activation gradients only, no weight gradients)."""
    name, length = FID_SIZES[size]
    shape = t5_shape(shipped_t5_config(name))
    full = decoder_flops(shape, n * length, answer)
    single = decoder_flops(shape, length, answer)
    return (
        passes.encoded * encoder_flops(shape, length)
        + (passes.full_forward + passes.full_backward) * full
        + passes.single_forward * single
    )
