"""G-Rerank: train the reranker through the frozen reader's answer loss under a relaxed top-k mask.

    w = R(q, d_1..n)                               reranker scores (B, n)
    log M = log max_j softmax((kappa w + G_j)/tau)  relaxed top-k (gumbel_rerank.masks)
    loss = mean_b NLL(answer_b | q_b, passages_b; log M_b)   reader.lm_loss, reader frozen

No relevance labels: the gradient reaches w only through the reader's cross-attention.

Exploration (DECIDED options, all off by default = the paper's method). Once the scores spread
by several units, Gumbel noise never samples a passage ranked below the top few, so a passage
that only helps together with another (a bridge) never gets a gradient (docs/bugs-and-fixes.md,
"saturated scores"). ``standardize`` rescales each question's scores to mean 0 and standard
deviation 1 before the mask, so the noise keeps its weight whatever the spread; ``kappa_end`` /
``tau_end`` anneal kappa and tau linearly over ``anneal_steps``; ``entropy_weight`` subtracts
that multiple of the mask's entropy from the loss. The selection each step draws (the k
per-sample winners) is kept for the trainer's exploration diagnostics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from gumbel_rerank.config import ConfigError, require_positive
from gumbel_rerank.masks import (
    MaskConfig,
    example_gumbel_noise,
    hard_topk_log_mask,
    mask_statistics,
    relaxed_topk_log_mask,
)
from gumbel_rerank.objectives.base import Batch, ReaderPasses, StepContext
from gumbel_rerank.objectives.common import row_mean
from gumbel_rerank.objectives.registry import LEARNING_RATES, ObjectiveSpec, register
from gumbel_rerank.reader.base import EncodedPassages, Reader
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
    standardize: bool = False
    kappa_end: float | None = None
    tau_end: float | None = None
    anneal_steps: int = 0
    entropy_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.mask_samples < 1:
            raise ConfigError("objective.mask_samples must be >= 1")
        if self.score_chunk_size is not None and self.score_chunk_size < 1:
            raise ConfigError("objective.settings.score_chunk_size must be >= 1")
        require_positive(self, ("kappa_end", "tau_end"), "objective.settings")
        if (self.kappa_end is not None or self.tau_end is not None) and self.anneal_steps < 1:
            raise ConfigError("objective.settings.anneal_steps must be >= 1 with kappa_end or tau_end")
        if self.anneal_steps < 0 or self.entropy_weight < 0:
            raise ConfigError("objective.settings.anneal_steps and entropy_weight must be >= 0")

    def mask_at(self, step: int) -> MaskConfig:
        """The mask settings of optimizer step ``step``: kappa and tau moved linearly from
        ``mask`` to their ``*_end`` values over ``anneal_steps``, constant after."""
        if self.kappa_end is None and self.tau_end is None:
            return self.mask
        t = min(1.0, step / self.anneal_steps)
        kappa = self.mask.kappa if self.kappa_end is None else self.mask.kappa + t * (self.kappa_end - self.mask.kappa)
        tau = self.mask.tau if self.tau_end is None else self.mask.tau + t * (self.tau_end - self.mask.tau)
        return dataclasses.replace(self.mask, kappa=kappa, tau=tau)


def standardize_scores(scores: torch.Tensor, valid: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per question: (w - mean) / sqrt(var + eps) over its valid passages (B, n); padding stays
    as it is (the mask never selects it). Differentiable with a finite gradient everywhere: a
    question with one valid passage, or with tied scores, gets 0 and a finite gradient (the
    eps sits inside the square root, whose derivative at 0 would be infinite, and 0 x inf is
    the NaN that reached every parameter before; docs/bugs-and-fixes.md)."""
    count = valid.sum(dim=1, keepdim=True).clamp(min=1)
    zeros = torch.zeros_like(scores)
    mean = torch.where(valid, scores, zeros).sum(dim=1, keepdim=True) / count
    centred = torch.where(valid, scores - mean, zeros)
    std = (centred.pow(2).sum(dim=1, keepdim=True) / count + eps).sqrt()
    return torch.where(valid, centred / std, scores)


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
        settings: GumbelSettings | None = None,
    ) -> None:
        self.reader = reader
        self.mask = mask
        self.score_chunk_size = score_chunk_size
        self.mask_samples = mask_samples
        self.settings = settings or GumbelSettings(mask, mask_samples, score_chunk_size)
        #: (B, k) passages the first mask's k samples picked at the last logged step (-1 =
        #: padding), for the trainer's exploration diagnostics; None before any
        self.last_selection: torch.Tensor | None = None
        #: at the last logged step, (B, n) tensors for per-passage diagnostics: "score" (raw
        #: reranker scores), "z" (what the mask saw: standardised or raw), "valid" and, once
        #: backward has run, "grad_score" (dLoss/dscore) and "grad_log_mask" (dLoss/dlog M of
        #: the first draw); empty before any
        self.last_passages: dict[str, torch.Tensor] = {}

    def loss(
        self, module: Reranker, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean answer NLL under the relaxed top-k mask of ``module``'s scores (B, n); the
        diagnostics of the class docstring when ``ctx.log``. Never reads ``batch.gold``."""
        scores, valid = module.score(batch.questions, batch.passages, chunk_size=self.score_chunk_size)
        log_masks = self._log_masks(scores, valid, batch, ctx)
        log_mask = log_masks[0]  # (B, n), the one the diagnostics describe
        if ctx.log:
            self._keep_for_diagnostics(scores, valid, log_mask)
        n = scores.shape[1]

        tokens = self.reader.tokenize_passages(batch.questions, batch.passages, n_passages=n)
        states = self.reader.encode(tokens, cached=True)
        labels = self.reader.tokenize_targets(batch.targets)
        if len(log_masks) > 1:
            # S masks per question read the same encoder states: (S*B, N*L, D), draw-major
            stacked = torch.cat(log_masks).to(self.reader.device)  # (S*B, n)
            per_example = self.reader.lm_loss(states.repeat(len(log_masks)), labels.repeat(len(log_masks), 1), stacked)
        else:
            per_example = self.reader.lm_loss(states, labels, log_mask.to(self.reader.device))
        # A question with no more valid candidates than k keeps them all: a constant mask and no
        # gradient; it is left out of the mean so it does not dilute the others' gradient.
        selects = (valid.sum(dim=1) > self.settings.mask.k).to(per_example.device)
        loss = row_mean(per_example, selects.repeat(len(log_masks)))
        metrics: dict[str, float] = {}
        if ctx.log:
            metrics = self._diagnostics(scores.detach(), valid, log_mask.detach(), states, labels)
            metrics["loss_soft"] = float(loss.detach())
        if self.settings.entropy_weight:
            entropy = mask_entropy(log_mask, valid)
            loss = loss - self.settings.entropy_weight * entropy
        return loss, metrics

    def _log_masks(
        self, scores: torch.Tensor, valid: torch.Tensor, batch: Batch, ctx: StepContext
    ) -> list[torch.Tensor]:
        """One (B, n) log mask per draw (``mask_samples``), with this step's kappa and tau;
        records the first draw's selection when logging."""
        mask = self.settings.mask_at(ctx.step)
        work = standardize_scores(scores, valid) if self.settings.standardize else scores
        counts = valid.sum(dim=1).tolist()
        log_masks = []
        for draw in range(1 if mask.mode == "deterministic" else self.mask_samples):
            noise = None
            if mask.mode != "deterministic":
                noise = example_gumbel_noise(ctx.seed, ctx.step, batch.positions, counts, mask.k, scores.shape[1], draw=draw)
            log_masks.append(relaxed_topk_log_mask(work, valid, mask, noise=noise))
            if draw == 0 and ctx.log:
                self.last_selection = sample_winners(work.detach(), valid, mask, noise)
        return log_masks

    def _keep_for_diagnostics(self, scores: torch.Tensor, valid: torch.Tensor, log_mask: torch.Tensor) -> None:
        """Keep this logged step's per-passage tensors, and hooks that catch their gradients
        when the trainer runs backward (read by the trainer's per-role diagnostics)."""
        work = standardize_scores(scores, valid) if self.settings.standardize else scores
        kept = {"score": scores.detach().float(), "z": work.detach().float(), "valid": valid.detach()}
        self.last_passages = kept
        for name, tensor in (("grad_score", scores), ("grad_log_mask", log_mask)):
            if tensor.requires_grad:
                tensor.register_hook(lambda grad, name=name: kept.__setitem__(name, grad.detach().float()))

    @torch.no_grad()
    def _diagnostics(
        self,
        scores: torch.Tensor,
        valid: torch.Tensor,
        log_mask: torch.Tensor,
        states: EncodedPassages,
        labels: torch.Tensor,
    ) -> dict[str, float]:
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


def mask_entropy(log_mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over questions of the entropy (nats) of the normalised mask ``M / sum M`` over the
    valid passages: differentiable (the exploration term), 0 for a one-hot mask."""
    log_p = log_mask.masked_fill(~valid, float("-inf")).log_softmax(dim=1)
    p = log_p.exp()
    return torch.where(valid, -p * log_p, torch.zeros_like(p)).sum(dim=1).mean()


@torch.no_grad()
def sample_winners(scores: torch.Tensor, valid: torch.Tensor, mask: MaskConfig, noise: torch.Tensor | None) -> torch.Tensor:
    """(B, k) the passage each Gumbel sample j picks, ``argmax_i kappa w_i + G_ij`` (the hard
    content of the relaxed mask); in "subset" mode the top k of the first draw's perturbed
    scores; without noise, the top k. -1 for a sample in a row with no valid passage."""
    logits = (scores * mask.kappa).masked_fill(~valid, float("-inf"))
    k = min(mask.k, scores.shape[1])
    if noise is None:
        picked = logits.topk(k, dim=1).indices
    elif mask.mode == "subset":  # one draw, k distinct picks: the top k of the perturbed scores
        picked = (logits + noise[0].to(scores.device, scores.dtype)).topk(k, dim=1).indices
    else:
        picked = (logits.unsqueeze(0) + noise.to(scores.device, scores.dtype)).argmax(dim=-1).T  # (B, k)
    return torch.where(valid.any(dim=1, keepdim=True), picked, torch.full_like(picked, -1))


def samples(settings: GumbelSettings) -> int:
    """Masks per question and step: ``mask_samples``, one without noise."""
    return 1 if settings.mask.mode == "deterministic" else settings.mask_samples


register(
    ObjectiveSpec(
        name="gumbel",
        settings=GumbelSettings,
        build=lambda settings, reader: GumbelRerankLoss(
            reader, settings.mask, settings.score_chunk_size, settings.mask_samples, settings
        ),
        uses_labels=False,
        eval_k=lambda settings: settings.mask.k,
        reader_passes=lambda settings, n: ReaderPasses(encoded=n, full_forward=samples(settings), full_backward=samples(settings)),
        search_space={
            "optim.lr": LEARNING_RATES,
            "objective.settings.mask.kappa": (0.5, 1.0, 2.0),
            "objective.settings.standardize": (True, False),
            "objective.settings.mask.mode": ("gumbel", "straight_through"),
        },
        summary="G-Rerank: the reader's answer NLL under a relaxed top-k Gumbel mask",
    )
)
