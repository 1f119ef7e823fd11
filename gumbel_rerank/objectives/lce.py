"""LCE (localized contrastive estimation): softmax cross-entropy over one positive and a group
of the question's own negatives.

    G_b  = {p_b} + negatives of question b          p_b: a gold passage
    loss = mean_b -log( exp(w_{p_b}) / sum_{j in G_b} exp(w_j) )

Inputs: reranker scores w (B, n) and gold flags (``Batch.gold``: supervised); questions without a
gold passage or without a negative are left out. Reference: Gao, Dai & Callan, "Rethink Training
of BERT Rerankers in Multi-Stage Retrieval Pipeline" (ECIR 2021), the objective of
luyug/Reranker.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gumbel_rerank.config import ConfigError
from gumbel_rerank.masks import NoiseStream, noise_generator
from gumbel_rerank.objectives.base import Batch, StepContext
from gumbel_rerank.objectives.common import row_mean
from gumbel_rerank.objectives.registry import LEARNING_RATES, ObjectiveSpec, register
from gumbel_rerank.reader.base import Reader
from gumbel_rerank.rerankers import Reranker

POSITIVE_CHOICES = ("random", "first")


@dataclass
class LCESettings:
    """``objective.settings`` of ``lce``.

    Attributes:
        group_size: passages per group, the positive included (luyug/Reranker's
            ``train_group_size``); None = the positive and every negative of the question.
        positive: "random" (a gold passage drawn per question and step, seeded) or "first".
    """

    group_size: int | None = None
    positive: str = "random"

    def __post_init__(self) -> None:
        if self.group_size is not None and self.group_size < 2:
            raise ConfigError("objective.settings.group_size must be >= 2 (a positive and a negative)")
        if self.positive not in POSITIVE_CHOICES:
            raise ConfigError(f"objective.settings.positive: {self.positive!r} is not one of {POSITIVE_CHOICES}")


def lce_loss(scores: torch.Tensor, positive: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """LCE from tensors.

    Args:
        scores: (B, n). positive: (B,) long, the positive's index (-1 = no positive: row left
            out). group: (B, n) bool, the group's members, the positive included.

    Returns:
        Mean over rows with a positive and at least one other member of
        ``-log_softmax(scores over the group)[positive]``.
    """
    logits = scores.to(torch.promote_types(scores.dtype, torch.float32)).masked_fill(~group, float("-inf"))
    log_p = logits.log_softmax(dim=1)
    picked = log_p.gather(1, positive.clamp(min=0)[:, None]).squeeze(1)
    rows = (positive >= 0) & (group.sum(dim=1) >= 2)
    return row_mean(-picked.masked_fill(~rows, 0.0), rows)


def choose_groups(
    gold: torch.Tensor, valid: torch.Tensor, settings: LCESettings, seed: int, step: int, positions: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each question's positive (B,) and group (B, n) bool; random choices are keyed by (seed,
    step, position in the global batch), so a resumed run draws the same groups."""
    b, n = gold.shape
    positive = torch.full((b,), -1, dtype=torch.long)
    group = torch.zeros(b, n, dtype=torch.bool)
    for row in range(b):
        pos = (gold[row] & valid[row]).nonzero().flatten().tolist()
        neg = (~gold[row] & valid[row]).nonzero().flatten().tolist()
        if not pos:
            continue
        gen = noise_generator(seed, step, positions[row], NoiseStream.LCE_GROUP)
        chosen = pos[0] if settings.positive == "first" else pos[int(torch.randint(len(pos), (1,), generator=gen))]
        if settings.group_size is not None and len(neg) > settings.group_size - 1:
            order = torch.randperm(len(neg), generator=gen)[: settings.group_size - 1].tolist()
            neg = [neg[i] for i in sorted(order)]
        positive[row] = chosen
        group[row, [chosen, *neg]] = True
    return positive, group


class LCELoss:
    """The LCE objective (module docstring); reads gold flags."""

    name = "lce"
    uses_labels = True

    def __init__(self, settings: LCESettings) -> None:
        self.settings = settings

    def loss(self, module: Reranker, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """Group softmax cross-entropy of the positive against its negatives."""
        scores, valid = module.score(batch.questions, batch.passages)
        gold = batch.gold[:, : scores.shape[1]]
        positive, group = choose_groups(gold, valid.cpu(), self.settings, ctx.seed, ctx.step, batch.positions)
        loss = lce_loss(scores, positive.to(scores.device), group.to(scores.device))
        return loss, ({"questions_with_positive": float((positive >= 0).float().mean())} if ctx.log else {})


def _build(settings: LCESettings, reader: Reader) -> LCELoss:
    return LCELoss(settings)  # no reader needed: labels are the signal


register(
    ObjectiveSpec(
        name="lce",
        settings=LCESettings,
        build=_build,
        uses_labels=True,
        search_space={"optim.lr": LEARNING_RATES, "objective.settings.group_size": (None, 4)},
        summary="LCE: softmax cross-entropy of a gold passage against its question's negatives",
    )
)
