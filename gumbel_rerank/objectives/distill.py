"""The shared shape of the reader-distillation objectives (PDist, LOOP, ADist): a reader-derived
target per candidate, computed without gradient and optionally cached, and the KL from its
temperature softmax to the reranker's. No objective is registered here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from gumbel_rerank.config import ConfigError, require_positive
from gumbel_rerank.objectives.base import Batch, StepContext
from gumbel_rerank.objectives.common import (
    KL_REDUCTIONS,
    TargetCache,
    kl_to_student,
    masked_log_softmax,
)
from gumbel_rerank.reader.base import Reader
from gumbel_rerank.rerankers import Reranker

#: Atlas's default temperatures for the target and the student (Izacard et al. 2022).
ATLAS_TAU = 0.01


@dataclass
class DistillSettings:
    """Settings every reader-distillation objective has.

    Attributes:
        tau_target: temperature of the target softmax ``softmax(g / tau_target)``.
        tau_student: temperature of the reranker's ``softmax(w / tau_student)``.
        cache_targets: compute each question's target once and reuse it (exact: the reader is
            frozen in eval mode and the candidates are fixed); the run folder says so.
        chunk_size: reader rows per decoder call (bounds memory); None = all at once.
        kl_reduction: how the KL is averaged over a batch: "question" (default: the mean over
            questions of each one's KL) or "entry" (Atlas: the summed KL over the number of
            (question, candidate) entries, i.e. the per-question mean divided by n; under Adam
            this mainly changes how gradient clipping and eps act).
    """

    tau_target: float = ATLAS_TAU
    tau_student: float = ATLAS_TAU
    cache_targets: bool = False
    chunk_size: int | None = None
    kl_reduction: str = "question"

    def __post_init__(self) -> None:
        require_positive(self, ("tau_target", "tau_student"), "objective.settings")
        if self.kl_reduction not in KL_REDUCTIONS:
            raise ConfigError(f"objective.settings.kl_reduction: {self.kl_reduction!r} is not one of {KL_REDUCTIONS}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError("objective.settings.chunk_size must be >= 1")


class ReaderDistillation(ABC):
    """Base of PDist / LOOP / ADist: subclasses define :meth:`reader_targets` (B, n).

    ``loss(reranker, batch, ctx)`` = KL(softmax(g / tau_target) || softmax(w / tau_student)),
    mean over questions; with ``ctx.log`` also ``target_entropy`` (nats, of the target
    distribution) and ``target_agreement`` (share of questions where the reranker's best
    passage is the target's). Never reads ``Batch.gold``.
    """

    name = "distill"
    uses_labels = False
    #: what the cached target is, for the run folder
    target_description = "reader-derived target"

    def __init__(self, reader: Reader, settings: DistillSettings) -> None:
        self.reader = reader
        self.settings = settings
        self.cache = TargetCache(settings.cache_targets)

    @abstractmethod
    def reader_targets(self, batch: Batch, n: int) -> torch.Tensor:
        """(B, n) target scores g (higher = more useful passage), no gradient."""

    def describe(self) -> dict[str, object]:
        """What the run folder records about this objective (``objective.json``)."""
        return {
            "name": self.name,
            "uses_labels": self.uses_labels,
            "cache_targets": self.settings.cache_targets,
            "cached": self.target_description if self.settings.cache_targets else None,
        }

    def loss(self, module: Reranker, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """KL from the reader-derived target to the reranker's softmax over the candidates."""
        scores, valid = module.score(batch.questions, batch.passages)
        n = scores.shape[1]
        target = self.cache.get(batch, lambda: self.reader_targets(batch, n)).to(scores.device)
        settings = self.settings
        loss = kl_to_student(target, scores, valid, settings.tau_target, settings.tau_student, settings.kl_reduction)
        metrics: dict[str, float] = {}
        if ctx.log:
            metrics = target_metrics(target, scores.detach(), valid, self.settings.tau_target)
        return loss, metrics


@torch.no_grad()
def target_metrics(target: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, tau: float) -> dict[str, float]:
    """``target_entropy`` (mean nats of softmax(target / tau) over valid candidates) and
    ``target_agreement`` (share of questions whose best-scored passage is the target's best)."""
    log_p = masked_log_softmax(target, valid, tau)
    p = log_p.exp()
    entropy = torch.where(valid, -p * log_p, torch.zeros_like(p)).sum(dim=1)
    best_target = target.masked_fill(~valid, float("-inf")).argmax(dim=1)
    best_score = scores.masked_fill(~valid, float("-inf")).argmax(dim=1)
    return {
        "target_entropy": float(entropy.mean()),
        "target_agreement": float((best_target == best_score).float().mean()),
    }
