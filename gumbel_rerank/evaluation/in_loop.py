"""In-loop dev evaluators the trainers call every ``eval_every`` steps.

:class:`RerankerEvaluator` measures a reranker being trained (ranking metrics and the frozen
reader's loss given its hard top-k); :class:`ReaderEvaluator` measures a reader being trained
(greedy EM over all passages and answer NLL). Both are cheap by design: no per-k generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gumbel_rerank.data.answers import exact_match
from gumbel_rerank.evaluation.batching import candidate_passages
from gumbel_rerank.evaluation.metrics import evidence_metrics, order_metrics, rank_order
from gumbel_rerank.masks import hard_topk_log_mask
from gumbel_rerank.reader.base import Reader

__all__ = ["ReaderEvaluator", "RerankerEvaluator"]


class RerankerEvaluator:
    """In-loop dev evaluation of a reranker: ranking metrics and the reader's hard top-k loss.

    Cheap by design (run every ``eval_every`` steps): one reranker pass, one encoder pass and one
    teacher-forced decoder pass per batch; no generation.

    Args:
        reader: the frozen reader.
        questions: dev questions (objects with ``id``, ``question``, ``target``, ``passages``
            and ``gold_indices``).
        k: passages the reader gets at inference (the mask's k).
        ks: ranking cut-offs.
        batch_size: questions per forward pass.
        n_passages: candidates per question (first N), as in training.
        evidence: evidence roles (``data.evidence_roles``); adds the
            :func:`~gumbel_rerank.evaluation.metrics.evidence_metrics` keys.

    Calling it with ``(module, step)`` returns the
    :func:`~gumbel_rerank.evaluation.metrics.order_metrics` keys plus
    ``loss_hard_topk`` (mean answer NLL given the reranker's hard top-k).
    """

    def __init__(
        self,
        reader: Reader,
        questions: Sequence,
        k: int,
        ks: Sequence[int] = (1, 2, 5),
        batch_size: int = 16,
        n_passages: int | None = None,
        evidence: Sequence[str] = (),
    ) -> None:
        self.reader = reader
        self.questions = list(questions)
        self.k = k
        self.ks = ks
        self.evidence = tuple(evidence)
        self.batch_size = batch_size
        self.n_passages = n_passages

    @torch.no_grad()
    def __call__(self, module: Any, step: int) -> dict[str, float]:
        """Metrics of the reranker ``module`` (anything with ``score``) at training ``step``."""
        orders: dict[str, list[int]] = {}
        gold: dict[str, list[int]] = {}
        roles: dict[str, list[str | None]] = {}
        losses = []
        for start in range(0, len(self.questions), self.batch_size):
            chunk = self.questions[start : start + self.batch_size]
            passages = [candidate_passages(q, self.n_passages) for q in chunk]
            texts = [q.question for q in chunk]
            batch_scores, valid = module.score(texts, passages)  # (B, n)
            n = batch_scores.shape[1]
            tokens = self.reader.tokenize_passages(texts, passages, n_passages=n)
            states = self.reader.encode(tokens, cached=True)  # the same dev candidates every time
            labels = self.reader.tokenize_targets([q.target for q in chunk])
            hard_log = hard_topk_log_mask(batch_scores, valid, self.k).to(self.reader.device)
            losses.append(self.reader.lm_loss(states, labels, hard_log).cpu())
            for row, q in enumerate(chunk):
                key = str(start + row)  # position, not q.id: ids of a plain list may repeat
                count = int(valid[row].sum())
                orders[key] = rank_order(batch_scores[row, :count].tolist())
                gold[key] = [i for i in q.gold_indices if i < count]
                roles[key] = [p.role for p in q.passages[:count]]
        metrics = order_metrics(orders, gold, self.ks)
        if self.evidence:
            found = evidence_metrics(orders, roles, self.evidence, self.ks)
            metrics.update({k: v for k, v in found.items() if "@" in k})
        metrics["loss_hard_topk"] = float(torch.cat(losses).mean()) if losses else float("nan")
        return metrics


class ReaderEvaluator:
    """In-loop dev evaluation of a reader: greedy EM over all given passages, and answer NLL.

    Calling it with ``(module, step)`` returns ``{"em": .., "loss": ..}``.
    """

    def __init__(
        self,
        reader: Reader,
        questions: Sequence,
        batch_size: int = 16,
        n_passages: int | None = None,
        max_new_tokens: int = 20,
    ) -> None:
        self.reader = reader
        self.questions = list(questions)
        self.batch_size = batch_size
        self.n_passages = n_passages
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def __call__(self, module: Any, step: int) -> dict[str, float]:
        """EM and loss of ``self.reader`` at ``step``; ``module`` (the trainer's module: the
        reader's own model, which ``self.reader`` runs) is not used directly."""
        matches, losses = [], []
        for start in range(0, len(self.questions), self.batch_size):
            chunk = self.questions[start : start + self.batch_size]
            passages = [candidate_passages(q, self.n_passages) for q in chunk]
            tokens = self.reader.tokenize_passages([q.question for q in chunk], passages)
            states = self.reader.encode(tokens)
            labels = self.reader.tokenize_targets([q.target for q in chunk])
            n = tokens.passage_valid.shape[1]
            all_kept = torch.zeros(len(chunk), n, device=self.reader.device)  # log M = 0
            losses.append(self.reader.lm_loss(states, labels, all_kept).cpu())
            answers = self.reader.generate(states, max_new_tokens=self.max_new_tokens)
            for q, answer in zip(chunk, answers, strict=True):
                matches.append(exact_match(answer, list(q.answers)))
        return {"em": sum(matches) / max(1, len(matches)), "loss": float(torch.cat(losses).mean())}
