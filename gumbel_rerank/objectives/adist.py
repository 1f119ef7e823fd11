"""ADist: distil where the reader's cross-attention goes while it reads the answer.

    alpha_i = sum_layers sum_t sum_{j in d_i} mean_heads( A[l,h,t,j] * ||V[l,h,j]|| )
              / (256 * layers * answer tokens)                         (Atlas's "evalnormsum")
    loss    = mean_b KL( softmax(alpha / tau_g) || softmax(w / tau_s) )

The normaliser is Atlas's (``aggregate_value`` in its FiD code: the hard-coded 256, the number
of decoder layers summed over and the question's non-padding answer tokens), so Atlas's
temperatures mean here what they mean there: without it the raw mass is about 3,000 times
larger on the demo reader and 15,000 times on a 12-layer T5 with 5 answer tokens, and any
temperature turns the target one-hot (docs/bugs-and-fixes.md). ``normaliser: none`` keeps the
raw sum. Averaging: ``kl_reduction`` (see :class:`DistillSettings`).

One teacher-forced reader pass with all n passages (``Reader.cross_attention_mass``). Inputs:
reranker scores w (B, n); the frozen reader. References: Izacard & Grave, "Distilling Knowledge
from Reader to Retriever" (ICLR 2021); Izacard et al., "Atlas" (JMLR 2023), "Attention
Distillation", whose shipped code path raises a KeyError: computed directly here. Atlas's
defaults tau_g = tau_s = 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gumbel_rerank.config import ConfigError
from gumbel_rerank.objectives.base import Batch, ReaderPasses
from gumbel_rerank.objectives.common import kl_to_student, read_batch
from gumbel_rerank.objectives.distill import DistillSettings, ReaderDistillation
from gumbel_rerank.objectives.registry import DISTILL_SPACE, ObjectiveSpec, register
from gumbel_rerank.reader.formatting import IGNORE_INDEX

#: Atlas's fixed divisor of the attention mass (with layers and answer tokens).
ATLAS_MASS_SCALE = 256
NORMALISERS = ("atlas", "none")


@dataclass
class ADistSettings(DistillSettings):
    """``objective.settings`` of ``adist`` (see :class:`DistillSettings`).

    Attributes:
        normaliser: "atlas" divides the attention mass by 256 x layers x answer tokens (module
            docstring); "none" uses the raw sum.
    """

    normaliser: str = "atlas"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.normaliser not in NORMALISERS:
            raise ConfigError(f"objective.settings.normaliser: {self.normaliser!r} is not one of {NORMALISERS}")


def atlas_normalised_mass(mass: torch.Tensor, labels: torch.Tensor, layers: int) -> torch.Tensor:
    """Atlas's ``evalnormsum``: ``mass`` (B, n) divided by 256 x ``layers`` x the question's
    non-padding answer tokens (labels (B, T), -100 at padding)."""
    tokens = (labels != IGNORE_INDEX).sum(dim=1, keepdim=True).clamp(min=1).to(mass.device, mass.dtype)
    return mass / (ATLAS_MASS_SCALE * layers * tokens)


def adist_loss(
    scores: torch.Tensor, attention_mass: torch.Tensor, valid: torch.Tensor, tau_target: float, tau_student: float
) -> torch.Tensor:
    """ADist's loss from tensors: scores (B, n), attention mass per passage (B, n), valid
    (B, n) bool -> scalar."""
    return kl_to_student(attention_mass, scores, valid, tau_target, tau_student)


class ADistLoss(ReaderDistillation):
    """The ADist objective (module docstring); label-free."""

    name = "adist"
    target_description = "cross-attention mass of the reader per passage, all passages read"

    def reader_targets(self, batch: Batch, n: int) -> torch.Tensor:
        """(B, n) attention mass per passage, normalised as ``settings.normaliser`` says."""
        states, labels = read_batch(self.reader, batch, n)
        mass = self.reader.cross_attention_mass(states, labels)
        if self.settings.normaliser == "atlas":
            mass = atlas_normalised_mass(mass, labels, self.reader.attention_layers)
        return mass


register(
    ObjectiveSpec(
        name="adist",
        settings=ADistSettings,
        build=lambda settings, reader: ADistLoss(reader, settings),
        uses_labels=False,
        reader_passes=lambda settings, n: ReaderPasses(encoded=n, full_forward=1, once=settings.cache_targets),
        search_space={
            **DISTILL_SPACE,
            # Atlas-normalised attention mass differs little between passages: Atlas's 0.01
            # leaves the demo reader's target near uniform (2.25 of 2.30 nats on 32 dev
            # questions); 0.0003 / 0.001 / 0.003 give 0.09 / 0.43 / 1.66 nats, the range LOOP's
            # and PDist's 0.01 / 0.1 / 1.0 span (0.01-0.09 / 0.09 / 0.96-1.57)
            "objective.settings.tau_target": (0.0003, 0.001, 0.003),
        },
        summary="ADist: KL to the reader's cross-attention mass per passage",
    )
)
