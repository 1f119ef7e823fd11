"""Streaming, resumable reranking of question files and TREC runs with a trained reranker."""

from gumbel_rerank.inference.streaming import RerankReport, rerank

__all__ = ["RerankReport", "rerank"]
