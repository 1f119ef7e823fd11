"""Helpers for batches of (question, passage-list) pairs: input checks, the validity mask of
ragged passage lists, and scattering flat per-pair scores back into a (B, n_max) grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor


def scatter_scores(flat: Tensor, mask: Tensor, fill_value: float = 0.0) -> Tensor:
    """Place flat per-pair scores back into a padded (B, n_max) grid.

    Args:
        flat: (P,) scores in question-major order, P == mask.sum().
        mask: bool (B, n_max).
        fill_value: value at padding positions.

    Returns:
        (B, n_max) tensor; differentiable with respect to ``flat`` (padding gets no gradient).
    """
    if flat.dim() != 1 or flat.numel() != int(mask.sum()):
        raise ValueError(
            f"scatter_scores: got {tuple(flat.shape)} scores for {int(mask.sum())} valid pairs."
        )
    mask = mask.to(flat.device)
    out = flat.new_full(mask.shape, fill_value)
    # Boolean-mask assignment fills True positions in row-major order, i.e. question-major,
    # which is exactly the flattening order of Reranker.tokenize. index_put is differentiable.
    out[mask] = flat
    return out


def check_question_lists(questions: Sequence[str], passages: Sequence[Sequence[Any]]) -> None:
    """TypeError/ValueError naming the position when ``questions`` is not B strings or
    ``passages`` is not B lists (a single string or dict instead of a list is refused)."""
    if isinstance(questions, str):
        raise TypeError("questions must be a list of strings, not a single string.")
    if len(questions) != len(passages):
        raise ValueError(
            f"Got {len(questions)} questions but {len(passages)} passage lists; "
            "pass one list of passages per question."
        )
    for b, (question, plist) in enumerate(zip(questions, passages, strict=True)):
        if not isinstance(question, str):
            raise TypeError(f"questions[{b}] must be a str, got {type(question).__name__}.")
        if isinstance(plist, (str, Mapping)):
            raise TypeError(
                f"passages[{b}] must be a list of passages, got a single "
                f"{type(plist).__name__}; wrap it in a list."
            )


def passage_mask(passages: Sequence[Sequence[Any]]) -> Tensor:
    """(B, n_max) bool: True where question b has a passage j (ragged lists padded)."""
    counts = torch.tensor([len(p) for p in passages], dtype=torch.long)
    n_max = int(counts.max()) if len(counts) else 0
    return torch.arange(n_max).unsqueeze(0) < counts.view(-1, 1)
