"""Evaluation: ranking metrics (ir_measures), the indirect-evidence subset, end-to-end EM/F1 from
each ranking's hard top-k, the in-loop evaluators the trainer calls, and reports with plots."""

from gumbel_rerank.evaluation.core import (
    ReaderEvaluator,
    RerankerEvaluator,
    evaluate,
    order_metrics,
    ranking_metrics,
)
from gumbel_rerank.evaluation.report import render_markdown, write_report

__all__ = [
    "ReaderEvaluator",
    "RerankerEvaluator",
    "evaluate",
    "order_metrics",
    "ranking_metrics",
    "render_markdown",
    "write_report",
]
