"""Ranking metrics of explicit rankings: Recall@k, MRR, nDCG@k (ir_measures) and AllGold@k.

* Recall@k, MRR and nDCG@k come from ir_measures (i.e. trec_eval; never hand-written).
  ``AllGold@k``, the fraction of questions whose gold passages are *all* within the top k, is
  not a trec_eval measure; it is computed here per question (:func:`all_gold_in_top_k`).
* Questions without any gold passage among the candidates are counted
  (``questions_without_gold``) and excluded, never scored 0.

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
from collections.abc import Iterable, Mapping, Sequence

import ir_measures
from ir_measures import RR, Qrel, R, ScoredDoc, nDCG

__all__ = [
    "TIE_BREAKING",
    "all_gold_in_top_k",
    "check_ks",
    "evidence_groups",
    "evidence_metrics",
    "order_metrics",
    "rank_order",
    "ranking_metrics",
]

#: How equal scores are ordered (recorded in every report).
TIE_BREAKING = "equal scores are ordered by incoming (retriever) position, lower first"


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


def check_ks(ks: Iterable[int], what: str) -> tuple[int, ...]:
    """Validated cut-offs, sorted and deduplicated; ValueError (naming ``what``) otherwise.

    Args:
        ks: cut-offs; each must be an int >= 1 (not a bool), and there must be at least one.
        what: the argument's name, for the error message.
    """
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"{what}: cut-offs must be integers >= 1, got {k!r}")
        out.append(k)
    if not out:
        raise ValueError(f"{what}: at least one cut-off is needed")
    return tuple(sorted(set(out)))


def _gold_among_candidates(
    orders: Mapping[str, Sequence[int]], gold: Mapping[str, Iterable[int]]
) -> dict[str, list[int]]:
    """Per question with any, its gold positions that are candidates (sorted, deduplicated).

    Raises ValueError when an order is not a permutation of ``0..n-1``.
    """
    golds: dict[str, list[int]] = {}
    for key, order in orders.items():
        order = list(order)
        if sorted(order) != list(range(len(order))):
            raise ValueError(f"question {key!r}: order is not a permutation of 0..n-1: {order}")
        candidates = set(order)
        kept = sorted({int(i) for i in gold.get(key, ()) if int(i) in candidates})
        if kept:
            golds[key] = kept
    return golds


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
    ks = check_ks(ks, "ks")
    golds = _gold_among_candidates(orders, gold)
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


def evidence_groups(roles: Sequence[str | None], groups: Sequence[str]) -> dict[str, list[int]]:
    """Positions of each evidence group's passages: a passage belongs to group ``g`` when its
    role is ``g`` or starts with ``g:`` (``bridge`` and ``bridge:restated`` both state the
    bridge fact)."""
    return {g: [i for i, r in enumerate(roles) if r is not None and (r == g or r.startswith(g + ":"))] for g in groups}


def evidence_metrics(
    orders: Mapping[str, Sequence[int]],
    roles: Mapping[str, Sequence[str | None]],
    groups: Sequence[str],
    ks: Sequence[int],
) -> dict[str, float]:
    """Whether each piece of evidence is in the top k, when a fact may be stated by several
    passages (any one of them suffices).

    Args:
        orders: question key -> candidate positions best first.
        roles: question key -> each candidate's role (by position).
        groups: evidence groups (role names, see :func:`evidence_groups`), e.g. ("bridge",
            "answer").
        ks: cut-offs.

    Returns:
        ``{"Evidence@k": share of questions whose top k holds a passage of every group,
        "<group>@k": share whose top k holds one of that group, "questions": evaluated,
        "questions_without_evidence": left out}``. Only questions with at least one passage of
        every group are evaluated. With one passage per group, Evidence@k is AllGold@k over
        those passages and ``<group>@k`` their Recall@k.
    """
    ks = check_ks(ks, "ks")
    members = {key: evidence_groups(roles[key], groups) for key in orders}
    kept = [key for key in orders if all(members[key][g] for g in groups)]
    out: dict[str, float] = {"questions": float(len(kept)), "questions_without_evidence": float(len(orders) - len(kept))}
    if not kept:
        return out
    for k in ks:
        found = {g: [bool(set(members[key][g]) & set(orders[key][:k])) for key in kept] for g in groups}
        out[f"Evidence@{k}"] = sum(all(hits) for hits in zip(*found.values(), strict=True)) / len(kept)
        for g in groups:
            out[f"{g}@{k}"] = sum(found[g]) / len(kept)
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
