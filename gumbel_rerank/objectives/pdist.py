"""PDist: distil the reader's per-passage answer likelihood into the reranker.

    g_i  = (1/T) sum_t log p(a_t | q, d_i)          the reader with passage i alone
    loss = mean_b KL( softmax(g / tau_g) || softmax(w / tau_s) )   (kl_reduction: question)

Atlas averages the KL over the B x n entries instead (``kl_reduction: entry``,
:data:`~.common.KL_REDUCTIONS`).

Inputs: reranker scores w (B, n), the question's candidates and target answer; the reader is
frozen (eval mode, targets under no_grad). Reference: Izacard et al., "Atlas: Few-shot Learning
with Retrieval Augmented Language Models" (JMLR 2023), "Perplexity Distillation". Atlas's
defaults are tau_g = tau_s = 0.01 (our defaults too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gumbel_rerank.objectives.base import Batch, ReaderPasses
from gumbel_rerank.objectives.common import kl_to_student, per_passage_token_logprobs, read_batch
from gumbel_rerank.objectives.distill import DistillSettings, ReaderDistillation
from gumbel_rerank.objectives.registry import DISTILL_SPACE, ObjectiveSpec, register
from gumbel_rerank.reader.formatting import IGNORE_INDEX


@dataclass
class PDistSettings(DistillSettings):
    """``objective.settings`` of ``pdist`` (see :class:`DistillSettings`)."""


def pdist_loss(
    scores: torch.Tensor, passage_logprob: torch.Tensor, valid: torch.Tensor, tau_target: float, tau_student: float
) -> torch.Tensor:
    """PDist's loss from tensors: scores (B, n), mean answer log-likelihood with each passage
    alone (B, n), valid (B, n) bool -> scalar."""
    return kl_to_student(passage_logprob, scores, valid, tau_target, tau_student)


class PDistLoss(ReaderDistillation):
    """The PDist objective (module docstring); label-free."""

    name = "pdist"
    target_description = "mean answer log-likelihood of the reader with each passage alone"

    def reader_targets(self, batch: Batch, n: int) -> torch.Tensor:
        """(B, n) mean answer token log-probability with each passage alone."""
        states, labels = read_batch(self.reader, batch, n)
        logp = per_passage_token_logprobs(self.reader, states, labels, self.settings.chunk_size)
        tokens = (labels != IGNORE_INDEX).sum(dim=1).clamp(min=1).to(logp.device)  # (B,)
        return logp.sum(dim=2) / tokens[:, None]


register(
    ObjectiveSpec(
        name="pdist",
        settings=PDistSettings,
        build=lambda settings, reader: PDistLoss(reader, settings),
        uses_labels=False,
        reader_passes=lambda settings, n: ReaderPasses(encoded=n, single_forward=n, once=settings.cache_targets),
        search_space=DISTILL_SPACE,
        summary="PDist: KL to the reader's per-passage answer likelihood (Atlas)",
    )
)
