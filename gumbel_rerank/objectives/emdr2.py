"""EMDR2: train the reranker as the latent-passage prior of a marginal likelihood.

Sequence level (default; temperature 1)::

    log p(a | q) = log sum_i p_R(d_i | q) p(a | q, d_i),   p_R = softmax(w / tau_s)
    loss         = -mean_b log p(a_b | q_b)

with ``log p(a | q, d_i) = sum_t log p(a_t | q, d_i, a_<t)``, the reader on passage i alone,
treated as a constant (only p_R is trained). Token level (Atlas's code)::

    loss = -mean_b mean_t log sum_i p_R(d_i | q) p_tau(a_t | q, d_i, a_<t)

where ``p_tau`` is the reader's softmax over the vocabulary logits divided by ``tau_vocab``.
Inputs: reranker scores w (B, n); the frozen reader. References: Sachan et al., "End-to-End
Training of Multi-Document Reader and Retriever for Open-Domain QA" (NeurIPS 2021); Izacard et
al., "Atlas" (JMLR 2023).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gumbel_rerank.config import ConfigError, require_positive
from gumbel_rerank.objectives.base import Batch, ReaderPasses, StepContext
from gumbel_rerank.objectives.common import (
    TargetCache,
    masked_log_softmax,
    per_passage_token_logprobs,
    read_batch,
    row_mean,
)
from gumbel_rerank.objectives.registry import LEARNING_RATES, ObjectiveSpec, register
from gumbel_rerank.reader.base import Reader
from gumbel_rerank.reader.formatting import IGNORE_INDEX
from gumbel_rerank.rerankers import Reranker

LEVELS = ("sequence", "token")
#: How token-level EMDR2 averages: per question then over questions, or over the batch's tokens.
TOKEN_AVERAGES = ("question", "batch")


@dataclass
class EMDR2Settings:
    """``objective.settings`` of ``emdr2``.

    Attributes:
        level: "sequence" (the marginal likelihood of the whole answer) or "token" (Atlas).
        tau_student: temperature of p_R = softmax(w / tau_student).
        tau_vocab: token level only: temperature on the reader's vocabulary logits.
        cache_targets: compute each question's per-passage likelihoods once (exact).
        chunk_size: (question, passage) rows per decoder call; None = all at once.
        token_average: token level only: "question" (default: mean over each question's answer
            tokens, then over questions) or "batch" (Atlas: the sum over every answer token of
            the batch divided by their number, so long answers weigh more).
    """

    level: str = "sequence"
    tau_student: float = 1.0
    tau_vocab: float = 1.0
    cache_targets: bool = False
    chunk_size: int | None = None
    token_average: str = "question"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"objective.settings.level: {self.level!r} is not one of {LEVELS}")
        if self.token_average not in TOKEN_AVERAGES:
            raise ConfigError(f"objective.settings.token_average: {self.token_average!r} is not one of {TOKEN_AVERAGES}")
        require_positive(self, ("tau_student", "tau_vocab"), "objective.settings")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError("objective.settings.chunk_size must be >= 1")


def emdr2_sequence_loss(
    scores: torch.Tensor, sequence_logprob: torch.Tensor, valid: torch.Tensor, tau_student: float = 1.0
) -> torch.Tensor:
    """Sequence-level EMDR2 from tensors.

    Args:
        scores: (B, n) reranker scores. sequence_logprob: (B, n) ``log p(a | q, d_i)`` with each
            passage alone (constant). valid: (B, n) bool.

    Returns:
        ``-mean_b logsumexp_i(log_softmax(w / tau)_i + sequence_logprob_i)`` over valid i.
    """
    joint = masked_log_softmax(scores, valid, tau_student) + sequence_logprob.detach().to(scores.device)
    marginal = torch.logsumexp(joint.masked_fill(~valid, float("-inf")), dim=1)
    return row_mean(-marginal, valid.any(dim=1))


def emdr2_token_loss(
    scores: torch.Tensor,
    token_logprob: torch.Tensor,
    token_valid: torch.Tensor,
    valid: torch.Tensor,
    tau_student: float = 1.0,
    token_average: str = "question",
) -> torch.Tensor:
    """Token-level EMDR2 from tensors.

    Args:
        scores: (B, n). token_logprob: (B, n, T) ``log p(a_t | q, d_i, a_<t)`` (constant).
        token_valid: (B, T) bool, real answer tokens. valid: (B, n) bool.
        token_average: "question" or "batch" (:data:`TOKEN_AVERAGES`).

    Returns:
        ``-mean_b mean_t logsumexp_i(log_softmax(w / tau)_i + token_logprob_{i,t})`` ("question");
        with "batch" the sum over every real token of the qualifying rows over their count
        (Atlas's ``logprob``).
    """
    log_prior = masked_log_softmax(scores, valid, tau_student)  # (B, n)
    joint = log_prior[:, :, None] + token_logprob.detach().to(scores.device)  # (B, n, T)
    marginal = torch.logsumexp(joint.masked_fill(~valid[:, :, None], float("-inf")), dim=1)  # (B, T)
    keep = token_valid.to(scores.device)
    rows = valid.any(dim=1) & keep.any(dim=1)
    summed = -(marginal.masked_fill(~keep, 0.0)).sum(dim=1)  # (B,)
    if token_average == "batch" and bool(rows.any()):
        return summed[rows].sum() / keep[rows].sum()
    return row_mean(summed / keep.sum(dim=1).clamp(min=1), rows)


def fit_tokens(values: torch.Tensor, length: int) -> torch.Tensor:
    """(B, n, T') -> (B, n, length): cut or zero-pad the token axis (a cached row may have been
    computed in a batch whose longest answer differs; real tokens always fit)."""
    if values.shape[2] >= length:
        return values[:, :, :length]
    return torch.nn.functional.pad(values, (0, length - values.shape[2]))


class EMDR2Loss:
    """The EMDR2 objective (module docstring); label-free."""

    name = "emdr2"
    uses_labels = False

    def __init__(self, reader: Reader, settings: EMDR2Settings) -> None:
        self.reader = reader
        self.settings = settings
        self.cache = TargetCache(settings.cache_targets)

    def describe(self) -> dict[str, object]:
        """What the run folder records about this objective (``objective.json``)."""
        what = f"{self.settings.level}-level answer log-likelihood with each passage alone"
        return {
            "name": self.name,
            "uses_labels": False,
            "cache_targets": self.settings.cache_targets,
            "cached": what if self.settings.cache_targets else None,
        }

    def _token_logprobs(self, batch: Batch, n: int) -> torch.Tensor:
        states, labels = read_batch(self.reader, batch, n)
        tau = self.settings.tau_vocab if self.settings.level == "token" else 1.0
        return per_passage_token_logprobs(self.reader, states, labels, self.settings.chunk_size, tau)

    def loss(self, module: Reranker, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """Negative marginal likelihood of the answer with the reranker as the passage prior."""
        scores, valid = module.score(batch.questions, batch.passages)
        n = scores.shape[1]
        if self.settings.level == "sequence":
            seq = self.cache.get(batch, lambda: self._token_logprobs(batch, n).sum(dim=2))
            loss = emdr2_sequence_loss(scores, seq.to(scores.device), valid, self.settings.tau_student)
        else:
            labels = self.reader.tokenize_targets(batch.targets)
            tokens = fit_tokens(self.cache.get(batch, lambda: self._token_logprobs(batch, n)), labels.shape[1])
            loss = emdr2_token_loss(
                scores,
                tokens.to(scores.device),
                labels != IGNORE_INDEX,
                valid,
                self.settings.tau_student,
                self.settings.token_average,
            )
        return loss, ({"loss_marginal_nll": float(loss.detach())} if ctx.log else {})


register(
    ObjectiveSpec(
        name="emdr2",
        settings=EMDR2Settings,
        build=lambda settings, reader: EMDR2Loss(reader, settings),
        uses_labels=False,
        reader_passes=lambda settings, n: ReaderPasses(encoded=n, single_forward=n, once=settings.cache_targets),
        search_space={
            "optim.lr": LEARNING_RATES,
            "objective.settings.tau_student": (0.1, 1.0),
            "objective.settings.level": ("sequence", "token"),
        },
        summary="EMDR2: the reranker as the passage prior of the answer's marginal likelihood",
    )
)
