"""Evaluation: ranking metrics (through ir_measures), end-to-end EM/F1, and in-loop evaluators.

What is measured (method.md section 4):

* Ranking: Recall@k, MRR and nDCG@k (ir_measures, i.e. trec_eval; never hand-written) of the
  reranker's order and, as a baseline row, of the incoming (retriever) order, against the gold
  passages. Plus ``AllGold@k``: the fraction of questions whose gold passages are *all* within
  the top k (not a trec_eval measure; computed here per question, see :func:`all_gold_in_top_k`).
* The same on the "indirectly relevant" subset: gold passages that do not contain an answer
  (``Question.indirect_gold_indices``) are the relevant set, over the questions that have one.
  Answer-containing gold passages stay in the ranking (they take slots) but do not count.
* And on the "directly relevant" subset (``Question.direct_gold_indices``): gold passages that
  contain an answer, e.g. the answer passage of a two-hop question, whose bridge is indirect.
* End to end: EM and F1 (:mod:`gumbel_rerank.data.answers`, max over the gold answers) of the
  reader's greedy answer from the reranker's hard top-k and from the retriever's first k.

Gold passages are those among the evaluated candidates (the first ``n_passages``). Questions
without any gold passage there are counted (``questions_without_gold``) and excluded from the
ranking metrics, never scored 0. End-to-end metrics cover every question.

Ties. trec_eval, behind ir_measures, orders equal scores by document id, descending *as
strings* ("9" before "10" before "1"), not by position; a reranker emitting equal scores (a
saturated or bf16 model) would be scored on an order no one chose, and a different one from the
passages the reader is given. So raw scores never reach ir_measures: every ranking is first
made explicit with :func:`rank_order` (score descending, ties broken by incoming position, lower
first: exactly the order :func:`gumbel_rerank.masks.hard_topk`, and hence the reader, uses), and
ir_measures receives the strictly decreasing score ``n - rank``. The incoming order is
``range(n)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import ir_measures
import torch
from ir_measures import RR, Qrel, R, ScoredDoc, nDCG

from gumbel_rerank.data.answers import exact_match, f1
from gumbel_rerank.masks import hard_topk, hard_topk_log_mask
from gumbel_rerank.reader.base import Reader

__all__ = [
    "DEFAULT_EM_KS",
    "DEFAULT_KS",
    "TIE_BREAKING",
    "ReaderEvaluator",
    "RerankerEvaluator",
    "all_gold_in_top_k",
    "evaluate",
    "order_metrics",
    "rank_order",
    "ranking_metrics",
]

#: Ranking cut-offs of :func:`evaluate`.
DEFAULT_KS = (1, 2, 5, 10, 20)
#: Passages given to the reader for the end-to-end EM/F1 of :func:`evaluate`.
DEFAULT_EM_KS = (1, 2, 5)
#: How equal scores are ordered (recorded in every report).
TIE_BREAKING = "equal scores are ordered by incoming (retriever) position, lower first"


# --------------------------------------------------------------------------------------------
# Rankings and ranking metrics


def rank_order(scores: Sequence[float]) -> list[int]:
    """Candidate positions best first: score descending, ties by position ascending.

    The same order as :func:`gumbel_rerank.masks.hard_topk` (a stable descending sort), so the
    ranking that is scored is the one whose top k the reader reads.

    Args:
        scores: (n,) one score per candidate, higher is better; -inf is allowed.

    Returns:
        A permutation of ``range(n)``.

    Raises:
        ValueError: a score is NaN (no order can be defined; it signals a broken model).
    """
    values = [float(s) for s in scores]
    if any(math.isnan(v) for v in values):
        raise ValueError(f"cannot rank NaN scores: {values}")
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def all_gold_in_top_k(order: Sequence[int], gold: Iterable[int], k: int) -> bool:
    """Whether every gold passage is among the first ``k`` entries of ``order``.

    Args:
        order: candidate positions best first.
        gold: gold positions (non-empty); one missing from ``order`` is never in the top k.
        k: cut-off, >= 1. With more than ``k`` gold passages the answer is always False.

    Raises:
        ValueError: empty ``gold`` (vacuously True; such questions must be excluded instead).
    """
    gold_set = set(gold)
    if not gold_set:
        raise ValueError("no gold passages: exclude such questions instead of scoring them")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return gold_set <= set(order[:k])


def _check_ks(ks: Iterable[int], what: str) -> tuple[int, ...]:
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"{what}: cut-offs must be integers >= 1, got {k!r}")
        out.append(k)
    if not out:
        raise ValueError(f"{what}: at least one cut-off is needed")
    return tuple(sorted(set(out)))


def order_metrics(
    orders: Mapping[str, Sequence[int]],
    gold: Mapping[str, Iterable[int]],
    ks: Sequence[int] = (1, 2, 5),
) -> dict[str, float]:
    """Recall@k, MRR, nDCG@k (ir_measures) and AllGold@k of explicit rankings.

    Args:
        orders: question key -> candidate positions best first (a permutation of
            ``range(n)``), e.g. ``rank_order(scores)``, or ``range(n)`` for the incoming order.
        gold: question key -> gold positions. Positions that are not candidates are ignored
            (a passage the ranker never saw); a question left without gold is counted in
            ``questions_without_gold`` and excluded.
        ks: cut-offs.

    Returns:
        ``{"R@k": .., "MRR": .., "nDCG@k": .., "AllGold@k": .., "questions": evaluated,
        "questions_without_gold": n}`` (floats, means over the evaluated questions). The metric
        keys are absent when no question has a gold passage.
    """
    ks = _check_ks(ks, "ks")
    golds: dict[str, list[int]] = {}
    for key, order in orders.items():
        order = list(order)
        if sorted(order) != list(range(len(order))):
            raise ValueError(f"question {key!r}: order is not a permutation of 0..n-1: {order}")
        candidates = set(order)
        kept = sorted({int(i) for i in gold.get(key, ()) if int(i) in candidates})
        if kept:
            golds[key] = kept
    out: dict[str, float] = {
        "questions": float(len(golds)),
        "questions_without_gold": float(len(orders) - len(golds)),
    }
    if not golds:
        return out
    qrels = [Qrel(key, str(i), 1) for key, positions in golds.items() for i in positions]
    # Strictly decreasing scores n - rank: trec_eval's own tie-breaking never applies.
    run = [
        ScoredDoc(key, str(position), float(len(orders[key]) - rank))
        for key in golds
        for rank, position in enumerate(orders[key])
    ]
    recall = {k: R @ k for k in ks}
    ndcg = {k: nDCG @ k for k in ks}
    result = ir_measures.calc_aggregate([*recall.values(), RR, *ndcg.values()], qrels, run)
    for k in ks:
        out[f"R@{k}"] = float(result[recall[k]])
    out["MRR"] = float(result[RR])
    for k in ks:
        out[f"nDCG@{k}"] = float(result[ndcg[k]])
    for k in ks:
        hits = sum(all_gold_in_top_k(orders[key], golds[key], k) for key in golds)
        out[f"AllGold@{k}"] = hits / len(golds)
    return out


def ranking_metrics(
    scores: Mapping[str, Sequence[float]],
    gold: Mapping[str, Sequence[int]],
    ks: Sequence[int] = (1, 2, 5),
) -> dict[str, float]:
    """Recall@k, MRR, nDCG@k and AllGold@k of per-question passage scores against gold indices.

    Ties are broken by passage position (module docstring); see :func:`order_metrics`.

    Args:
        scores: question id -> (n,) one score per candidate passage (higher = better).
        gold: question id -> indices of gold passages (may be empty).
        ks: cut-offs.

    Returns:
        {"R@k": .., "MRR": .., "nDCG@k": .., "AllGold@k": .., "questions": evaluated,
        "questions_without_gold": n}.
    """
    return order_metrics({q: rank_order(s) for q, s in scores.items()}, gold, ks)


# --------------------------------------------------------------------------------------------
# Shared helpers


def _candidates(question, n_passages: int | None) -> list[dict]:
    """The first ``n_passages`` passages of a question as reader/reranker dicts."""
    return [{"title": p.title, "text": p.text} for p in question.passages[:n_passages]]


def _batches(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _first_k(counts: Sequence[int], k: int, n: int) -> torch.Tensor:
    """(B, min(k, n)) long: the retriever's top k (positions 0..k-1), -1 past a row's count."""
    k_eff = min(k, n)
    idx = torch.arange(k_eff).expand(len(counts), k_eff)
    return torch.where(idx < torch.tensor(counts)[:, None], idx, torch.full_like(idx, -1))


# --------------------------------------------------------------------------------------------
# Full evaluation


@torch.no_grad()
def evaluate(
    questions: Iterable,
    reader: Reader | None = None,
    reranker: torch.nn.Module | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    em_ks: Sequence[int] = DEFAULT_EM_KS,
    batch_size: int = 16,
    n_passages: int | None = None,
    progress: bool = True,
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """Evaluate the retriever order, a reranker and/or a reader's end-to-end answers.

    Per batch of questions: the reranker scores the candidates once; the reader encodes them
    once (``reader.encode``) and decodes greedily from each ranking's top k for every k in
    ``em_ks`` (``reader.generate(states, doc_idx)``, an exact gather of the kept passages).

    Args:
        questions: :class:`gumbel_rerank.data.questions.Question` objects (a list or a QuestionSet).
        reader: FiD reader for EM/F1; None = no ``end_to_end`` section.
        reranker: a :class:`gumbel_rerank.rerankers.model.Reranker` (anything with ``score``); None =
            only the retriever rows. Put in eval mode for the call, then restored.
        ks: ranking cut-offs.
        em_ks: passages the reader reads.
        batch_size: questions per forward pass.
        n_passages: candidates per question (the first N); None = all.
        progress: show a tqdm bar over batches (stderr).
        max_new_tokens: generation length; None = the reader's ``answer_maxlength``.

    Returns:
        A JSON-able dict::

            {"questions": N, "questions_with_gold": G, "questions_without_gold": N - G,
             "rankings": {"reranker": {"R@1": .., "MRR": .., "nDCG@1": .., "AllGold@1": ..},
                          "retriever": {...}},
             "indirect": {"questions": M, "reranker": {...}, "retriever": {...}},
             "direct": {"questions": D, "reranker": {...}, "retriever": {...}},
             "end_to_end": {"reranker": {"EM@1": .., "F1@1": .., ...}, "retriever": {...}},
             "config": {...}}

        Metric values are fractions in [0, 1]; a ranking row is empty when no question has
        gold passages.
    """
    from tqdm.auto import tqdm

    ks = _check_ks(ks, "ks")
    em_ks = _check_ks(em_ks, "em_ks")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    names = ["reranker", "retriever"] if reranker is not None else ["retriever"]
    orders: dict[str, dict[str, list[int]]] = {name: {} for name in names}
    gold: dict[str, list[int]] = {}
    indirect: dict[str, list[int]] = {}
    direct: dict[str, list[int]] = {}
    em = {name: {k: [] for k in em_ks} for name in names}
    f1s = {name: {k: [] for k in em_ks} for name in names}

    try:
        total = math.ceil(len(questions) / batch_size)  # type: ignore[arg-type]
    except TypeError:  # a plain iterator
        total = None
    was_training = bool(getattr(reranker, "training", False))
    if reranker is not None:
        reranker.eval()  # no dropout: the ranking must be the model's deterministic one
    bar = tqdm(total=total, desc="evaluate", unit="batch", disable=not progress)
    done = 0
    try:
        for chunk in _batches(questions, batch_size):
            texts = [q.question for q in chunk]
            passages = [_candidates(q, n_passages) for q in chunk]
            counts = [len(p) for p in passages]
            n = max(counts)
            keys = [str(done + row) for row in range(len(chunk))]  # positions: ids may repeat
            done += len(chunk)
            scores = valid = None
            if reranker is not None:
                scores, valid = reranker.score(texts, passages)  # (B, n), (B, n)
                for row, key in enumerate(keys):
                    orders["reranker"][key] = rank_order(scores[row, : counts[row]].tolist())
            for row, (key, q) in enumerate(zip(keys, chunk, strict=True)):
                orders["retriever"][key] = list(range(counts[row]))
                gold[key] = [i for i in q.gold_indices if i < counts[row]]
                indirect[key] = [i for i in q.indirect_gold_indices if i < counts[row]]
                direct[key] = [i for i in q.direct_gold_indices if i < counts[row]]
            if reader is not None:
                tokens = reader.tokenize_passages(texts, passages, n_passages=n)
                states = reader.encode(tokens)  # once per batch; every top-k is a gather
                kwargs = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
                for k in em_ks:
                    chosen = {"retriever": _first_k(counts, k, n)}
                    if scores is not None:
                        chosen["reranker"] = hard_topk(scores, valid, k)[0]
                    for name, doc_idx in chosen.items():
                        answers = reader.generate(states, doc_idx, **kwargs)
                        for q, answer in zip(chunk, answers, strict=True):
                            em[name][k].append(exact_match(answer, list(q.answers)))
                            f1s[name][k].append(f1(answer, list(q.answers)))
            bar.update(1)
    finally:
        bar.close()
        if reranker is not None:
            reranker.train(was_training)
    if done == 0:
        raise ValueError("no questions to evaluate")

    def rows(relevant: Mapping[str, list[int]]) -> tuple[dict[str, dict[str, float]], int]:
        out, evaluated = {}, 0
        for name in names:
            metrics = order_metrics(orders[name], relevant, ks)
            evaluated = int(metrics.pop("questions"))
            metrics.pop("questions_without_gold")
            out[name] = metrics
        return out, evaluated

    rankings, with_gold = rows(gold)
    indirect_rows, with_indirect = rows(indirect)
    direct_rows, with_direct = rows(direct)
    report: dict[str, Any] = {
        "questions": done,
        "questions_with_gold": with_gold,
        "questions_without_gold": done - with_gold,
        "rankings": rankings,
        "indirect": {"questions": with_indirect, **indirect_rows},
        "direct": {"questions": with_direct, **direct_rows},
    }
    if reader is not None:
        end_to_end: dict[str, dict[str, float]] = {}
        for name in names:
            row = end_to_end[name] = {}
            for k in em_ks:
                row[f"EM@{k}"] = sum(em[name][k]) / done
                row[f"F1@{k}"] = sum(f1s[name][k]) / done
        report["end_to_end"] = end_to_end
    report["config"] = {
        "ks": list(ks),
        "em_ks": list(em_ks),
        "n_passages": n_passages,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "reranker": reranker is not None,
        "reader": reader is not None,
        "tie_breaking": TIE_BREAKING,
    }
    return report


# --------------------------------------------------------------------------------------------
# In-loop evaluators (training)


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

    Calling it with ``(module, step)`` returns the :func:`ranking_metrics` keys plus
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
    ):
        self.reader = reader
        self.questions = list(questions)
        self.k = k
        self.ks = ks
        self.batch_size = batch_size
        self.n_passages = n_passages

    @torch.no_grad()
    def __call__(self, module, step: int) -> dict[str, float]:
        orders: dict[str, list[int]] = {}
        gold: dict[str, list[int]] = {}
        losses = []
        for start in range(0, len(self.questions), self.batch_size):
            chunk = self.questions[start : start + self.batch_size]
            passages = [_candidates(q, self.n_passages) for q in chunk]
            texts = [q.question for q in chunk]
            batch_scores, valid = module.score(texts, passages)  # (B, n)
            n = batch_scores.shape[1]
            tokens = self.reader.tokenize_passages(texts, passages, n_passages=n)
            states = self.reader.encode(tokens)
            labels = self.reader.tokenize_targets([q.target for q in chunk])
            hard_log = hard_topk_log_mask(batch_scores, valid, self.k).to(self.reader.device)
            losses.append(self.reader.lm_loss(states, labels, hard_log).cpu())
            for row, q in enumerate(chunk):
                key = str(start + row)  # position, not q.id: ids of a plain list may repeat
                count = int(valid[row].sum())
                orders[key] = rank_order(batch_scores[row, :count].tolist())
                gold[key] = [i for i in q.gold_indices if i < count]
        metrics = order_metrics(orders, gold, self.ks)
        metrics["loss_hard_topk"] = float(torch.cat(losses).mean()) if losses else float("nan")
        return metrics


class ReaderEvaluator:
    """In-loop dev evaluation of a reader: greedy EM over all given passages, and answer NLL.

    Calling it with ``(module, step)`` returns ``{"em": .., "loss": ..}``.
    """

    def __init__(
        self,
        reader,
        questions: Sequence,
        batch_size: int = 16,
        n_passages: int | None = None,
        max_new_tokens: int = 20,
    ):
        self.reader = reader
        self.questions = list(questions)
        self.batch_size = batch_size
        self.n_passages = n_passages
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def __call__(self, module, step: int) -> dict[str, float]:
        matches, losses = [], []
        for start in range(0, len(self.questions), self.batch_size):
            chunk = self.questions[start : start + self.batch_size]
            passages = [_candidates(q, self.n_passages) for q in chunk]
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
