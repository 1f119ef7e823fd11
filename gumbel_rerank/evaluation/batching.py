"""Question batches for the evaluators: the candidate passages of a question, and fixed-size
chunks of a question stream (a list, a QuestionSet or a plain iterator)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["batches", "candidate_passages"]

T = TypeVar("T")


def candidate_passages(question: Any, n_passages: int | None) -> list[dict]:
    """The first ``n_passages`` passages of a question as reader/reranker dicts.

    Args:
        question: an object with ``passages`` (each with ``title`` and ``text``), e.g. a
            :class:`gumbel_rerank.data.questions.Question`.
        n_passages: how many candidates to keep (the first N); None keeps all.

    Returns:
        ``[{"title": .., "text": ..}, ...]`` in incoming (retriever) order.
    """
    return [{"title": p.title, "text": p.text} for p in question.passages[:n_passages]]


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive chunks of ``size`` items (the last may be shorter), without materialising
    ``items``, so a streamed question file is read one batch at a time."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
