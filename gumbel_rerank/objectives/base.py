"""What every objective receives and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Batch:
    """One micro-batch of questions with their candidate passages.

    Attributes:
        ids: B question ids.
        questions: B question strings.
        passages: B lists of passage dicts ("title", "text"), at most n each.
        targets: B training targets (the answer the reader is scored on).
        answers: B lists of acceptable answers (evaluation).
        gold: (B, n) bool gold flags (evaluation and reader-training curricula only; no
            reranker objective that claims to be label-free reads them).
        has_answer: (B, n) bool, passage contains a normalised answer (DPR convention).
        positions: B places of the examples in the step's global batch (noise keys).
        passage_ids: B lists of the passages' ids (None where the file has none).
        passage_scores: (B, n) float, each passage's score field (``data.score_field``, e.g. a
            teacher's scores for KD), NaN where absent or padding.
        passage_roles: B lists of the passages' ``role`` (None where the file has none).
        target_sets: B mappings of the records' named targets (their ``targets`` object).
    """

    ids: list[str]
    questions: list[str]
    passages: list[list[dict]]
    targets: list[str]
    answers: list[list[str]]
    gold: torch.Tensor
    has_answer: torch.Tensor
    positions: list[int]
    passage_ids: list[list[str | None]] | None = None
    passage_scores: torch.Tensor | None = None
    passage_roles: list[list[str | None]] | None = None
    target_sets: list[dict[str, str]] | None = None

    def __len__(self) -> int:
        return len(self.questions)


@dataclass(frozen=True)
class ReaderPasses:
    """The frozen reader's work for one training question (compute accounting).

    Attributes:
        encoded: passages run through the encoder (no gradient).
        full_forward: decoder passes over the answer reading all n passages.
        single_forward: decoder passes reading one passage alone.
        full_backward: of the full passes, those back-propagated into the mask (activation
            gradients only: the reader's weights are frozen).
        once: True when the work is done once per question and its result cached (a
            distillation target), False when every visit of the question pays it again.
    """

    encoded: int = 0
    full_forward: int = 0
    single_forward: int = 0
    full_backward: int = 0
    once: bool = False


@dataclass
class StepContext:
    """Where in training a loss is computed: noise and logging depend on it."""

    step: int
    seed: int
    log: bool = False


class Objective(Protocol):
    """A loss over a micro-batch for the module being trained.

    Attributes:
        name: the registry name (``objective.name``).
        uses_labels: True when ``loss`` reads ``Batch.gold`` (relevance labels) or teacher
            scores. A label-free objective must never touch ``Batch.gold``: a test hands every
            one of them a batch whose ``gold`` raises.
    """

    name: str
    uses_labels: bool

    def loss(
        self, module: torch.nn.Module, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss (mean over the micro-batch) and metrics to log."""
        ...
