"""Evaluation: ranking metrics (ir_measures), the indirect-evidence subset, end-to-end EM/F1 from
each ranking's hard top-k, the in-loop evaluators the trainer calls, and reports with plots.

Modules: :mod:`~gumbel_rerank.evaluation.metrics` (rankings and their metrics),
:mod:`~gumbel_rerank.evaluation.end_to_end` (:func:`evaluate`),
:mod:`~gumbel_rerank.evaluation.in_loop` (:class:`RerankerEvaluator`, :class:`ReaderEvaluator`),
:mod:`~gumbel_rerank.evaluation.report` (``report.json``, ``report.md``, plots)."""

from gumbel_rerank.evaluation.end_to_end import DEFAULT_EM_KS, DEFAULT_KS, evaluate
from gumbel_rerank.evaluation.in_loop import ReaderEvaluator, RerankerEvaluator
from gumbel_rerank.evaluation.metrics import (
    TIE_BREAKING,
    all_gold_in_top_k,
    order_metrics,
    rank_order,
    ranking_metrics,
)
from gumbel_rerank.evaluation.report import render_markdown, write_report

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
    "render_markdown",
    "write_report",
]
