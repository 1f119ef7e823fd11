"""ADist: distil where the reader's cross-attention goes while it reads the answer.

    alpha_i = sum_layers sum_t sum_{j in d_i} mean_heads( A[l,h,t,j] * ||V[l,h,j]|| )
    loss    = mean_b KL( softmax(alpha / tau_g) || softmax(w / tau_s) )

One teacher-forced reader pass with all n passages (``Reader.cross_attention_mass``). Inputs:
reranker scores w (B, n); the frozen reader. References: Izacard & Grave, "Distilling Knowledge
from Reader to Retriever" (ICLR 2021); Izacard et al., "Atlas" (JMLR 2023), "Attention
Distillation", whose shipped code path raises a KeyError: computed directly here. Atlas's
defaults tau_g = tau_s = 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gumbel_rerank.objectives.base import Batch
from gumbel_rerank.objectives.common import kl_to_student, read_batch
from gumbel_rerank.objectives.distill import DistillSettings, ReaderDistillation
from gumbel_rerank.objectives.registry import ObjectiveSpec, register


@dataclass
class ADistSettings(DistillSettings):
    """``objective.settings`` of ``adist`` (see :class:`DistillSettings`)."""


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
        """(B, n) attention mass per passage."""
        states, labels = read_batch(self.reader, batch, n)
        return self.reader.cross_attention_mass(states, labels)


register(
    ObjectiveSpec(
        name="adist",
        settings=ADistSettings,
        build=lambda settings, reader: ADistLoss(reader, settings),
        uses_labels=False,
        summary="ADist: KL to the reader's cross-attention mass per passage",
    )
)
