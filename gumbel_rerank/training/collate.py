"""Turning the sampler's example indices into one micro-batch (:class:`Batch`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from gumbel_rerank.objectives.base import Batch


def make_collate(questions: Sequence, n_passages: int | None) -> Callable[[list[tuple[int, int]]], Batch]:
    """A function ``[(example index, position in the global batch)] -> Batch`` over ``questions``.

    Args:
        questions: the training questions (``gumbel_rerank.data.Question``-like objects).
        n_passages: candidates per question (the first N); None = all.

    The batch's passages are padded to the longest question's count n; ``gold`` and
    ``has_answer`` are (B, n) bool flags, False on padding; ``passage_scores`` (B, n) the
    passages' score field, NaN where absent.
    """

    def collate(items: list[tuple[int, int]]) -> Batch:
        chosen = [questions[index] for index, _ in items]
        passages = [[{"title": p.title, "text": p.text} for p in q.passages[:n_passages]] for q in chosen]
        n = max(len(p) for p in passages)
        gold = torch.zeros(len(chosen), n, dtype=torch.bool)
        has_answer = torch.zeros(len(chosen), n, dtype=torch.bool)
        scores = torch.full((len(chosen), n), float("nan"))
        for row, q in enumerate(chosen):
            for flags, indices in ((gold, q.gold_indices), (has_answer, q.answer_passages or ())):
                for i in indices:
                    if i < n:
                        flags[row, i] = True
            for i, passage in enumerate(q.passages[:n]):
                if passage.score is not None:
                    scores[row, i] = passage.score
        return Batch(
            ids=[q.id for q in chosen],
            questions=[q.question for q in chosen],
            passages=passages,
            targets=[q.target for q in chosen],
            answers=[list(q.answers) for q in chosen],
            gold=gold,
            has_answer=has_answer,
            positions=[position for _, position in items],
            passage_ids=[[p.id for p in q.passages[:n_passages]] for q in chosen],
            passage_scores=scores,
            passage_roles=[[p.role for p in q.passages[:n_passages]] for q in chosen],
            target_sets=[dict(q.targets) for q in chosen],
        )

    return collate
