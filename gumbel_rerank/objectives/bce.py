"""BCE: pointwise binary cross-entropy of each candidate's score against its relevance label.

    loss = mean over real candidates of  -[y log sigma(w) + (1 - y) log(1 - sigma(w))]

Inputs: reranker scores w (B, n), gold flags y (B, n) (``Batch.gold``: supervised). The classic
monoBERT objective: Nogueira & Cho, "Passage Re-ranking with BERT" (2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gumbel_rerank.config import require_positive
from gumbel_rerank.objectives.base import Batch, StepContext
from gumbel_rerank.objectives.registry import ObjectiveSpec, register
from gumbel_rerank.reader.base import Reader
from gumbel_rerank.rerankers import Reranker


@dataclass
class BCESettings:
    """``objective.settings`` of ``bce``.

    Attributes:
        pos_weight: weight of the positive term (>1 counters few positives among many
            candidates); 1 = the plain loss.
    """

    pos_weight: float = 1.0

    def __post_init__(self) -> None:
        require_positive(self, ("pos_weight",), "objective.settings")


def bce_loss(scores: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, pos_weight: float = 1.0) -> torch.Tensor:
    """Pointwise BCE from tensors: scores (B, n) logits, labels (B, n) in {0, 1}, valid (B, n)
    bool -> mean over valid entries (0 when there are none)."""
    target = labels.to(scores.dtype)
    weight = torch.tensor(pos_weight, dtype=scores.dtype, device=scores.device)
    per_entry = torch.nn.functional.binary_cross_entropy_with_logits(
        scores, target, pos_weight=weight, reduction="none"
    )
    if not bool(valid.any()):
        return per_entry.sum() * 0.0
    return per_entry[valid].mean()


class BCELoss:
    """The BCE objective (module docstring); reads gold flags."""

    name = "bce"
    uses_labels = True

    def __init__(self, settings: BCESettings) -> None:
        self.settings = settings

    def loss(self, module: Reranker, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean pointwise BCE over the batch's real candidates."""
        scores, valid = module.score(batch.questions, batch.passages)
        gold = batch.gold[:, : scores.shape[1]].to(scores.device)
        loss = bce_loss(scores, gold, valid, self.settings.pos_weight)
        return loss, ({"positives": float(gold[valid].float().mean())} if ctx.log else {})


def _build(settings: BCESettings, reader: Reader) -> BCELoss:
    return BCELoss(settings)  # no reader needed: labels are the signal


register(
    ObjectiveSpec(
        name="bce",
        settings=BCESettings,
        build=_build,
        uses_labels=True,
        summary="BCE: pointwise binary cross-entropy against gold flags (supervised)",
    )
)
