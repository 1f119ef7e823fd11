"""Evaluation: ranking metrics through ir_measures (never hand-written), reader loss under hard top-k.

Questions without any gold passage are counted and excluded from ranking metrics, not scored 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import ir_measures
import torch
from ir_measures import RR, Qrel, R, ScoredDoc, nDCG

from gumbel_rerank.masks import hard_topk
from gumbel_rerank.reader.base import Reader


def ranking_metrics(
    scores: dict[str, Sequence[float]],
    gold: dict[str, Sequence[int]],
    ks: Sequence[int] = (1, 2, 5),
) -> dict[str, float]:
    """Recall@k, MRR and nDCG@k of per-question passage scores against gold passage indices.

    Args:
        scores: question id -> one score per candidate passage (higher = better).
        gold: question id -> indices of gold passages (may be empty).
        ks: cut-offs.

    Returns:
        {"R@k": .., "MRR": .., "nDCG@k": .., "questions": evaluated, "questions_without_gold": n}.
    """
    with_gold = [q for q in scores if gold.get(q)]
    measures = [R @ k for k in ks] + [RR] + [nDCG @ k for k in ks]
    out: dict[str, float] = {"questions": float(len(with_gold)), "questions_without_gold": float(len(scores) - len(with_gold))}
    if not with_gold:
        return out
    qrels = [Qrel(q, str(i), 1) for q in with_gold for i in gold[q]]
    run = [ScoredDoc(q, str(i), float(s)) for q in with_gold for i, s in enumerate(scores[q])]
    result = ir_measures.calc_aggregate(measures, qrels, run)
    for measure, value in result.items():
        name = "MRR" if measure == RR else str(measure)
        out[name] = float(value)
    return out


class RerankerEvaluator:
    """In-loop dev evaluation of a reranker: ranking metrics and the reader's hard top-k loss.

    Args:
        reader: the frozen reader.
        questions: dev questions (objects with ``id``, ``question``, ``target``, ``passages``
            and ``gold_indices``).
        k: passages the reader gets at inference (the mask's k).
        ks: ranking cut-offs.
        batch_size: questions per forward pass.
        n_passages: candidates per question (first N), as in training.
    """

    def __init__(
        self,
        reader: Reader,
        questions: Sequence,
        k: int,
        ks: Sequence[int] = (1, 2, 5),
        batch_size: int = 16,
        n_passages: int | None = None,
    ):
        self.reader = reader
        self.questions = list(questions)
        self.k = k
        self.ks = ks
        self.batch_size = batch_size
        self.n_passages = n_passages

    @torch.no_grad()
    def __call__(self, module, step: int) -> dict[str, float]:
        scores: dict[str, list[float]] = {}
        gold: dict[str, list[int]] = {}
        losses = []
        for start in range(0, len(self.questions), self.batch_size):
            chunk = self.questions[start : start + self.batch_size]
            passages = [[{"title": p.title, "text": p.text} for p in q.passages[: self.n_passages]] for q in chunk]
            texts = [q.question for q in chunk]
            batch_scores, valid = module.score(texts, passages)
            _, hard = hard_topk(batch_scores, valid, self.k)
            tokens = self.reader.tokenize_passages(texts, passages, n_passages=batch_scores.shape[1])
            states = self.reader.encode(tokens)
            labels = self.reader.tokenize_targets([q.target for q in chunk])
            hard_log = torch.where(hard > 0, 0.0, -1e4).to(self.reader.device)
            losses.append(self.reader.lm_loss(states, labels, hard_log).cpu())
            for row, q in enumerate(chunk):
                count = int(valid[row].sum())
                scores[q.id] = batch_scores[row, :count].tolist()
                gold[q.id] = [i for i in q.gold_indices if i < count]
        metrics = ranking_metrics(scores, gold, self.ks)
        metrics["loss_hard_topk"] = float(torch.cat(losses).mean()) if losses else float("nan")
        return metrics


class ReaderEvaluator:
    """In-loop dev evaluation of a reader: greedy EM over all given passages, and answer NLL."""

    def __init__(self, reader, questions: Sequence, batch_size: int = 16, n_passages: int | None = None,
                 max_new_tokens: int = 20):
        self.reader = reader
        self.questions = list(questions)
        self.batch_size = batch_size
        self.n_passages = n_passages
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def __call__(self, module, step: int) -> dict[str, float]:
        from gumbel_rerank.answers import exact_match

        matches, losses = [], []
        for start in range(0, len(self.questions), self.batch_size):
            chunk = self.questions[start : start + self.batch_size]
            passages = [[{"title": p.title, "text": p.text} for p in q.passages[: self.n_passages]] for q in chunk]
            tokens = self.reader.tokenize_passages([q.question for q in chunk], passages)
            states = self.reader.encode(tokens)
            labels = self.reader.tokenize_targets([q.target for q in chunk])
            n = tokens.passage_valid.shape[1]
            losses.append(self.reader.lm_loss(states, labels, torch.zeros(len(chunk), n, device=self.reader.device)).cpu())
            for q, answer in zip(chunk, self.reader.generate(states, max_new_tokens=self.max_new_tokens), strict=True):
                matches.append(exact_match(answer, list(q.answers)))
        return {"em": sum(matches) / max(1, len(matches)), "loss": float(torch.cat(losses).mean())}
