"""G-Rerank: train the reranker through the frozen reader's answer loss under a relaxed top-k mask.

    w = R(q, d_1..n)                               reranker scores (B, n)
    log M = log max_j softmax((kappa w + G_j)/tau)  relaxed top-k (gumbel_rerank.masks)
    loss = mean_b NLL(answer_b | q_b, passages_b; log M_b)   reader.lm_loss, reader frozen

No relevance labels: the gradient reaches w only through the reader's cross-attention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gumbel_rerank.config import ConfigError
from gumbel_rerank.masks import (
    MaskConfig,
    example_gumbel_noise,
    hard_topk_log_mask,
    mask_statistics,
    relaxed_topk_log_mask,
)
from gumbel_rerank.objectives.base import Batch, StepContext
from gumbel_rerank.objectives.registry import ObjectiveSpec, register
from gumbel_rerank.reader.base import Reader
from gumbel_rerank.rerankers import Reranker


@dataclass
class GumbelSettings:
    """``objective.settings`` of ``gumbel`` (G-Rerank).

    Attributes:
        mask: the relaxed top-k mask (k, kappa, tau, mode, log_floor).
        mask_samples: independent Gumbel masks per question and step, losses averaged
            (DECIDED, 1 = the paper): lowers the variance of the mask gradient at the cost of
            that many decoder passes.
        score_chunk_size: reranker pairs per forward call (bounds memory); None = all at once.
    """

    mask: MaskConfig = field(default_factory=MaskConfig)
    mask_samples: int = 1
    score_chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.mask_samples < 1:
            raise ConfigError("objective.mask_samples must be >= 1")
        if self.score_chunk_size is not None and self.score_chunk_size < 1:
            raise ConfigError("objective.settings.score_chunk_size must be >= 1")


class GumbelRerankLoss:
    """The G-Rerank objective (Huang et al., ACL 2025).

    Args:
        reader: a frozen reader (its weights never receive gradients).
        mask: relaxed top-k settings (k, kappa, tau, mode).
        score_chunk_size: reranker pairs per forward call (memory bound).

    ``loss(reranker, batch, ctx)`` returns the mean answer NLL under the soft mask and, when
    ``ctx.log``: ``loss_soft``, ``loss_hard`` (reader loss with only the reranker's hard top-k,
    the inference condition), ``mask_entropy``, ``effective_k`` (sum of M) and ``score_spread``
    (mean per-question standard deviation of the scores; near 0 = collapsed scores).
    """

    name = "gumbel"
    uses_labels = False

    def __init__(
        self,
        reader: Reader,
        mask: MaskConfig,
        score_chunk_size: int | None = None,
        mask_samples: int = 1,
    ):
        self.reader = reader
        self.mask = mask
        self.score_chunk_size = score_chunk_size
        self.mask_samples = mask_samples

    def loss(
        self, module: Reranker, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean answer NLL under the relaxed top-k mask of ``module``'s scores (B, n); the
        diagnostics of the class docstring when ``ctx.log``. Never reads ``batch.gold``."""
        scores, valid = module.score(batch.questions, batch.passages, chunk_size=self.score_chunk_size)
        n = scores.shape[1]
        counts = valid.sum(dim=1).tolist()
        samples = 1 if self.mask.mode == "deterministic" else self.mask_samples
        log_masks = []
        for draw in range(samples):
            noise = None
            if self.mask.mode != "deterministic":
                noise = example_gumbel_noise(
                    ctx.seed, ctx.step, batch.positions, counts, self.mask.k, n, draw=draw
                )
            log_masks.append(relaxed_topk_log_mask(scores, valid, self.mask, noise=noise))
        log_mask = log_masks[0]  # (B, n), the one the diagnostics describe

        tokens = self.reader.tokenize_passages(batch.questions, batch.passages, n_passages=n)
        states = self.reader.encode(tokens)
        labels = self.reader.tokenize_targets(batch.targets)
        if samples > 1:
            # S masks per question read the same encoder states: (S*B, N*L, D), draw-major
            many = type(states)(states.hidden.repeat(samples, 1, 1), states.token_mask.repeat(samples, 1, 1))
            stacked = torch.cat(log_masks).to(self.reader.device)  # (S*B, n)
            per_example = self.reader.lm_loss(many, labels.repeat(samples, 1), stacked)
        else:
            per_example = self.reader.lm_loss(states, labels, log_mask.to(self.reader.device))
        loss = per_example.mean()
        metrics: dict[str, float] = {}
        if ctx.log:
            metrics = self._diagnostics(scores.detach(), valid, log_mask.detach(), states, labels)
            metrics["loss_soft"] = float(loss.detach())
        return loss, metrics

    @torch.no_grad()
    def _diagnostics(self, scores, valid, log_mask, states, labels) -> dict[str, float]:
        hard_log = hard_topk_log_mask(scores, valid, self.mask.k, self.mask.log_floor)
        loss_hard = self.reader.lm_loss(states, labels, hard_log.to(self.reader.device)).mean()
        stats = mask_statistics(log_mask, valid)
        masked = torch.where(valid, scores, torch.nan)
        spread = torch.nanmean((masked - torch.nanmean(masked, 1, keepdim=True)).pow(2), 1).sqrt()
        return {
            "loss_hard": float(loss_hard),
            "mask_entropy": stats["mask_entropy"],
            "effective_k": stats["effective_k"],
            "score_spread": float(torch.nanmean(spread)),
        }


register(
    ObjectiveSpec(
        name="gumbel",
        settings=GumbelSettings,
        build=lambda settings, reader: GumbelRerankLoss(
            reader, settings.mask, settings.score_chunk_size, settings.mask_samples
        ),
        uses_labels=False,
        eval_k=lambda settings: settings.mask.k,
        summary="G-Rerank: the reader's answer NLL under a relaxed top-k Gumbel mask",
    )
)
