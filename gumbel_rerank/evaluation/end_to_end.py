"""Full evaluation of a question set: ranking metrics of each ranking and end-to-end EM/F1.

What is measured (method.md section 4):

* Ranking: Recall@k, MRR, nDCG@k and AllGold@k (:mod:`gumbel_rerank.evaluation.metrics`) of
  the reranker's order and, as a baseline row, of the incoming (retriever) order, against the
  gold passages.
* The same on the "indirectly relevant" subset: gold passages that do not contain an answer
  (``Question.indirect_gold_indices``) are the relevant set, over the questions that have one.
  Answer-containing gold passages stay in the ranking (they take slots) but do not count.
* And on the "directly relevant" subset (``Question.direct_gold_indices``): gold passages that
  contain an answer, e.g. the answer passage of a two-hop question, whose bridge is indirect.
* End to end: EM and F1 (:mod:`gumbel_rerank.data.answers`, max over the gold answers) of the
  reader's greedy answer from the reranker's hard top-k and from the retriever's first k.
* Optionally per named group of questions (``groups``, e.g. the demo's cued and uncued
  questions): every section above again, over that group's questions only.
* Optionally, with ``evidence`` (role names, e.g. ``("bridge", "answer")``): whether each
  piece of evidence is in the top k when a fact may be stated by several passages
  (:func:`gumbel_rerank.evaluation.metrics.evidence_metrics`: ``Evidence@k``, ``<role>@k``).

Gold passages are those among the evaluated candidates (the first ``n_passages``). Questions
without any gold passage there are counted (``questions_without_gold``) and excluded from the
ranking metrics, never scored 0. End-to-end metrics cover every question. Ties between scores
are broken by incoming position (:data:`gumbel_rerank.evaluation.metrics.TIE_BREAKING`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gumbel_rerank.data.answers import exact_match, f1
from gumbel_rerank.evaluation.batching import batches, candidate_passages
from gumbel_rerank.evaluation.metrics import (
    TIE_BREAKING,
    check_ks,
    evidence_metrics,
    order_metrics,
    rank_order,
)
from gumbel_rerank.masks import hard_topk
from gumbel_rerank.reader.base import Reader

__all__ = ["DEFAULT_EM_KS", "DEFAULT_KS", "evaluate"]

#: Ranking cut-offs of :func:`evaluate`.
DEFAULT_KS = (1, 2, 5, 10, 20)
#: Passages given to the reader for the end-to-end EM/F1 of :func:`evaluate`.
DEFAULT_EM_KS = (1, 2, 5)


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
    groups: Mapping[str, Collection[str]] | None = None,
    evidence: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate the retriever order, a reranker and/or a reader's end-to-end answers.

    Per batch of questions: the reranker scores the candidates once; the reader encodes them
    once (``reader.encode``) and decodes greedily from each ranking's top k for every k in
    ``em_ks`` (``reader.generate(states, doc_idx)``, an exact gather of the kept passages).

    Args:
        questions: :class:`gumbel_rerank.data.questions.Question` objects (a list or a QuestionSet).
        reader: FiD reader for EM/F1; None = no ``end_to_end`` section.
        reranker: a :class:`gumbel_rerank.rerankers.model.Reranker` (scored with
            ``score_inference``: length-sorted batches); None = only the retriever rows. Put in
            eval mode for the call, then restored.
        ks: ranking cut-offs.
        em_ks: passages the reader reads.
        batch_size: questions per forward pass.
        n_passages: candidates per question (the first N); None = all.
        progress: show a tqdm bar over batches (stderr).
        max_new_tokens: generation length; None = the reader's ``answer_maxlength``.
        groups: ``{group name: question ids}``; each group gets the report's sections again
            over its questions only (``report["groups"][name]``). An id that no evaluated
            question has is a ValueError (a typo would otherwise give an empty group).
        evidence: evidence roles; adds ``report["evidence"]`` (and per group) with
            ``{"questions": M, ranking: {"Evidence@k": .., "<role>@k": ..}}``.

    Returns:
        A JSON-able dict::

            {"questions": N, "questions_with_gold": G, "questions_without_gold": N - G,
             "rankings": {"reranker": {"R@1": .., "MRR": .., "nDCG@1": .., "AllGold@1": ..},
                          "retriever": {...}},
             "indirect": {"questions": M, "reranker": {...}, "retriever": {...}},
             "direct": {"questions": D, "reranker": {...}, "retriever": {...}},
             "end_to_end": {"reranker": {"EM@1": .., "F1@1": .., ...}, "retriever": {...}},
             "groups": {name: {"questions": .., "rankings": .., ..., "end_to_end": ..}},
             "config": {...}}

        Metric values are fractions in [0, 1]; a ranking row is empty when no question has
        gold passages.
    """
    ks = check_ks(ks, "ks")
    em_ks = check_ks(em_ks, "em_ks")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    names = ["reranker", "retriever"] if reranker is not None else ["retriever"]
    tally = _Tally.empty(names, em_ks)
    tally.evidence = tuple(evidence)
    setup = _Setup(reader, reranker, em_ks, n_passages, max_new_tokens)
    _run_batches(questions, setup, tally, batch_size, progress)
    if tally.done == 0:
        raise ValueError("no questions to evaluate")
    report = _sections(tally, ks, reader is not None)
    if groups:
        report["groups"] = {name: _sections(tally.subset(ids, name), ks, reader is not None) for name, ids in groups.items()}
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


@dataclass
class _Setup:
    """What one :func:`evaluate` call runs on each batch (its models and settings)."""

    reader: Reader | None
    reranker: torch.nn.Module | None
    em_ks: tuple[int, ...]
    n_passages: int | None
    max_new_tokens: int | None


@dataclass
class _Tally:
    """What :func:`evaluate` accumulates over batches, keyed by question position (as str).

    ``orders[name][key]``: ranking ``name``'s candidate positions best first; ``gold``,
    ``indirect`` and ``direct``: relevant positions among the candidates; ``em`` / ``f1s``:
    ``[name][k]`` one score per question; ``ids``: question ids in order; ``done``: questions seen.
    """

    names: list[str]
    orders: dict[str, dict[str, list[int]]]
    em: dict[str, dict[int, list[float]]]
    f1s: dict[str, dict[int, list[float]]]
    gold: dict[str, list[int]] = field(default_factory=dict)
    indirect: dict[str, list[int]] = field(default_factory=dict)
    direct: dict[str, list[int]] = field(default_factory=dict)
    roles: dict[str, list[str | None]] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    ids: list[str] = field(default_factory=list)
    done: int = 0

    @classmethod
    def empty(cls, names: list[str], em_ks: Sequence[int]) -> _Tally:
        """A tally for the rankings ``names`` with nothing counted yet."""
        return cls(
            names=names,
            orders={name: {} for name in names},
            em={name: {k: [] for k in em_ks} for name in names},
            f1s={name: {k: [] for k in em_ks} for name in names},
        )

    def subset(self, ids: Collection[str], group: str) -> _Tally:
        """The tally of the questions whose id is in ``ids`` only (positions renumbered)."""
        wanted = set(ids)
        unknown = wanted - set(self.ids)
        if unknown:
            raise ValueError(f"group {group!r}: {len(unknown)} question ids not evaluated, e.g. {sorted(unknown)[:3]}")
        keep = [i for i, qid in enumerate(self.ids) if qid in wanted]
        keys = {str(old): str(new) for new, old in enumerate(keep)}

        def pick(values: Mapping[str, list[int]]) -> dict[str, list[int]]:
            return {keys[key]: value for key, value in values.items() if key in keys}

        return _Tally(
            names=self.names,
            orders={name: pick(orders) for name, orders in self.orders.items()},
            em={name: {k: [v[i] for i in keep] for k, v in by_k.items()} for name, by_k in self.em.items()},
            f1s={name: {k: [v[i] for i in keep] for k, v in by_k.items()} for name, by_k in self.f1s.items()},
            gold=pick(self.gold),
            indirect=pick(self.indirect),
            direct=pick(self.direct),
            roles={keys[key]: value for key, value in self.roles.items() if key in keys},
            evidence=self.evidence,
            ids=[self.ids[i] for i in keep],
            done=len(keep),
        )


def _run_batches(
    questions: Iterable, setup: _Setup, tally: _Tally, batch_size: int, progress: bool
) -> None:
    """Evaluate every batch into ``tally``, the reranker in eval mode (restored afterwards)."""
    from tqdm.auto import tqdm

    reranker = setup.reranker
    try:
        total = math.ceil(len(questions) / batch_size)  # type: ignore[arg-type]
    except TypeError:  # a plain iterator
        total = None
    was_training = bool(getattr(reranker, "training", False))
    if reranker is not None:
        reranker.eval()  # no dropout: the ranking must be the model's deterministic one
    bar = tqdm(total=total, desc="evaluate", unit="batch", disable=not progress)
    try:
        for chunk in batches(questions, batch_size):
            _evaluate_batch(chunk, setup, tally)
            bar.update(1)
    finally:
        bar.close()
        if reranker is not None:
            reranker.train(was_training)


def _evaluate_batch(chunk: list, setup: _Setup, tally: _Tally) -> None:
    """Rank one batch of questions (reranker, retriever) and, with a reader, answer them."""
    texts = [q.question for q in chunk]
    passages = [candidate_passages(q, setup.n_passages) for q in chunk]
    counts = [len(p) for p in passages]
    keys = [str(tally.done + row) for row in range(len(chunk))]  # positions: ids may repeat
    tally.done += len(chunk)
    tally.ids.extend(q.id for q in chunk)
    scores = valid = None
    if setup.reranker is not None:
        scores, valid = setup.reranker.score_inference(texts, passages)  # (B, n), (B, n)
        for row, key in enumerate(keys):
            tally.orders["reranker"][key] = rank_order(scores[row, : counts[row]].tolist())
    for row, (key, q) in enumerate(zip(keys, chunk, strict=True)):
        tally.orders["retriever"][key] = list(range(counts[row]))
        tally.gold[key] = [i for i in q.gold_indices if i < counts[row]]
        tally.indirect[key] = [i for i in q.indirect_gold_indices if i < counts[row]]
        tally.direct[key] = [i for i in q.direct_gold_indices if i < counts[row]]
        tally.roles[key] = [p.role for p in q.passages[: counts[row]]]
    if setup.reader is not None:
        # k -> ranking name -> (B, k) passage indices, -1 = none
        chosen_by_k = {k: _top_k_choices(counts, k, scores, valid) for k in setup.em_ks}
        _answer_batch(chunk, texts, passages, chosen_by_k, setup, tally)


def _top_k_choices(
    counts: Sequence[int], k: int, scores: torch.Tensor | None, valid: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Each ranking's top-k passage indices: ``{"retriever": (B, min(k, n)), "reranker": (B, k')}``.

    The retriever's are positions 0..k-1 (-1 past a row's count); the reranker's are its hard
    top k of ``scores`` (B, n) under ``valid`` (B, n), only when it scored the batch.
    """
    n = max(counts)
    k_eff = min(k, n)
    idx = torch.arange(k_eff).expand(len(counts), k_eff)
    first_k = torch.where(idx < torch.tensor(counts)[:, None], idx, torch.full_like(idx, -1))
    chosen = {"retriever": first_k}
    if scores is not None:
        chosen["reranker"] = hard_topk(scores, valid, k)[0]
    return chosen


def _answer_batch(
    chunk: list,
    texts: list[str],
    passages: list[list[dict]],
    chosen_by_k: Mapping[int, Mapping[str, torch.Tensor]],
    setup: _Setup,
    tally: _Tally,
) -> None:
    """Encode the batch once, then answer greedily from each ranking's top k; tally EM and F1."""
    reader = setup.reader
    n = max(len(p) for p in passages)
    tokens = reader.tokenize_passages(texts, passages, n_passages=n)
    states = reader.encode(tokens, cached=True)  # once per batch; every top-k is a gather
    kwargs = {} if setup.max_new_tokens is None else {"max_new_tokens": setup.max_new_tokens}
    for k, chosen in chosen_by_k.items():
        for name, doc_idx in chosen.items():
            answers = reader.generate(states, doc_idx, **kwargs)
            for q, answer in zip(chunk, answers, strict=True):
                tally.em[name][k].append(exact_match(answer, list(q.answers)))
                tally.f1s[name][k].append(f1(answer, list(q.answers)))


def _ranking_rows(
    tally: _Tally, relevant: Mapping[str, list[int]], ks: Sequence[int]
) -> tuple[dict[str, dict[str, float]], int]:
    """``({ranking: metrics}, questions evaluated)`` of every ranking against ``relevant``."""
    out, evaluated = {}, 0
    for name in tally.names:
        metrics = order_metrics(tally.orders[name], relevant, ks)
        evaluated = int(metrics.pop("questions"))
        metrics.pop("questions_without_gold")
        out[name] = metrics
    return out, evaluated


def _ranking_report(tally: _Tally, ks: Sequence[int]) -> dict[str, Any]:
    """The question counts and the ranking sections (all gold, indirect, direct) of the report."""
    rankings, with_gold = _ranking_rows(tally, tally.gold, ks)
    indirect_rows, with_indirect = _ranking_rows(tally, tally.indirect, ks)
    direct_rows, with_direct = _ranking_rows(tally, tally.direct, ks)
    return {
        "questions": tally.done,
        "questions_with_gold": with_gold,
        "questions_without_gold": tally.done - with_gold,
        "rankings": rankings,
        "indirect": {"questions": with_indirect, **indirect_rows},
        "direct": {"questions": with_direct, **direct_rows},
        **({"evidence": _evidence_rows(tally, ks)} if tally.evidence else {}),
    }


def _evidence_rows(tally: _Tally, ks: Sequence[int]) -> dict[str, Any]:
    """``{"questions": M, ranking: {"Evidence@k": .., "<role>@k": ..}}`` of every ranking."""
    section: dict[str, Any] = {}
    for name in tally.names:
        metrics = evidence_metrics(tally.orders[name], tally.roles, tally.evidence, ks)
        section["questions"] = int(metrics.pop("questions"))
        metrics.pop("questions_without_evidence")
        section[name] = metrics
    return section


def _sections(tally: _Tally, ks: Sequence[int], with_reader: bool) -> dict[str, Any]:
    """The ranking sections and, with a reader, the end-to-end section of ``tally``."""
    report = _ranking_report(tally, ks)
    if with_reader:
        report["end_to_end"] = _end_to_end_section(tally) if tally.done else {}
    return report


def _end_to_end_section(tally: _Tally) -> dict[str, dict[str, float]]:
    """``{ranking: {"EM@k": .., "F1@k": .., ...}}``: means over every question."""
    end_to_end: dict[str, dict[str, float]] = {}
    for name in tally.names:
        row = end_to_end[name] = {}
        for k in tally.em[name]:
            row[f"EM@{k}"] = sum(tally.em[name][k]) / tally.done
            row[f"F1@{k}"] = sum(tally.f1s[name][k]) / tally.done
    return end_to_end
