"""LOOP (leave-one-out perplexity): distil how much the answer suffers without each passage.

    g_i  = -(1/T) sum_t log p(a_t | q, d_1..n without d_i)   one encoding, n decoder passes
    loss = mean_b KL( softmax(g / tau_g) || softmax(w / tau_s) )   (kl_reduction: question;
                                                              Atlas's B x n entries: entry)

Passage i is removed through the same mask path G-Rerank trains through (``log M_i`` at the
floor), which equals the reader run without it, with no re-encoding. Inputs: reranker scores
w (B, n); the frozen reader. Reference: Izacard et al., "Atlas" (JMLR 2023), "Leave-one-out
Perplexity Distillation"; Atlas's defaults tau_g = tau_s = 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gumbel_rerank.objectives.base import Batch, ReaderPasses
from gumbel_rerank.objectives.common import kl_to_student, leave_one_out_nll, read_batch
from gumbel_rerank.objectives.distill import DistillSettings, ReaderDistillation
from gumbel_rerank.objectives.registry import DISTILL_SPACE, ObjectiveSpec, register


@dataclass
class LOOPSettings(DistillSettings):
    """``objective.settings`` of ``loop``; ``chunk_size`` = passages removed per decoder call."""


def loop_loss(
    scores: torch.Tensor, nll_without: torch.Tensor, valid: torch.Tensor, tau_target: float, tau_student: float
) -> torch.Tensor:
    """LOOP's loss from tensors: scores (B, n), answer NLL without each passage (B, n), valid
    (B, n) bool -> scalar."""
    return kl_to_student(nll_without, scores, valid, tau_target, tau_student)


class LOOPLoss(ReaderDistillation):
    """The LOOP objective (module docstring); label-free."""

    name = "loop"
    target_description = "answer NLL of the reader with each passage left out"

    def reader_targets(self, batch: Batch, n: int) -> torch.Tensor:
        """(B, n) mean answer NLL with passage i removed."""
        states, labels = read_batch(self.reader, batch, n)
        return leave_one_out_nll(self.reader, states, labels, self.settings.chunk_size)


register(
    ObjectiveSpec(
        name="loop",
        settings=LOOPSettings,
        build=lambda settings, reader: LOOPLoss(reader, settings),
        uses_labels=False,
        reader_passes=lambda settings, n: ReaderPasses(encoded=n, full_forward=n, once=settings.cache_targets),
        search_space=DISTILL_SPACE,
        summary="LOOP: KL to the answer NLL with each passage left out (Atlas)",
    )
)
