"""FiD reader fine-tuning: answer NLL over the passages given (``gumbel-rerank train-reader``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gumbel_rerank.config import ConfigError
from gumbel_rerank.masks import NoiseStream, noise_generator
from gumbel_rerank.objectives.base import Batch, StepContext
from gumbel_rerank.objectives.registry import ObjectiveSpec, register
from gumbel_rerank.reader.fid import FiDReader


@dataclass
class CurriculumStage:
    """Which passages the reader reads for ``steps`` optimizer steps of ``train-reader``.

    Attributes:
        steps: length of the stage; the last stage also runs past its end until max_steps.
        contexts: "answer" (gold passages that contain the answer), "gold" (all gold passages),
            or "all" (every candidate, FiD's own training).
        distractors: random non-gold passages added to "answer"/"gold" contexts, so the reader
            must pick the right passage inside contexts of the size a reranker will select.
    """

    steps: int = 1000
    contexts: str = "all"
    distractors: int = 0

    def __post_init__(self) -> None:
        if self.contexts not in ("answer", "gold", "all"):
            raise ConfigError(f"curriculum.contexts: {self.contexts!r} is not answer, gold or all")
        if self.steps < 1 or self.distractors < 0:
            raise ConfigError("curriculum: steps must be >= 1 and distractors >= 0")



@dataclass
class ReaderNLLSettings:
    """Settings of ``reader_nll`` (``train-reader``'s top-level ``curriculum`` key)."""

    curriculum: list[CurriculumStage] = field(default_factory=list)



def stage_at(curriculum: list[CurriculumStage], step: int) -> CurriculumStage | None:
    """The stage that covers optimizer step ``step`` (0-based); the last one runs on."""
    end = 0
    for stage in curriculum:
        end += stage.steps
        if step < end:
            return stage
    return curriculum[-1] if curriculum else None


def select_contexts(
    batch: Batch, stage: CurriculumStage | None, seed: int, step: int
) -> list[list[dict]]:
    """Each question's passages for this stage, in their original order.

    Random distractors are drawn per example from (seed, step, position), so a resumed run
    reads the same contexts. A question without a passage of the requested kind falls back
    to all its passages rather than training on an empty context.
    """
    if stage is None or stage.contexts == "all":
        return batch.passages
    wanted = batch.gold & batch.has_answer if stage.contexts == "answer" else batch.gold
    out = []
    for row, passages in enumerate(batch.passages):
        n = len(passages)
        keep = [i for i in range(n) if wanted[row, i]]
        if not keep:
            out.append(passages)
            continue
        others = [i for i in range(n) if not batch.gold[row, i]]
        if stage.distractors and others:
            gen = noise_generator(seed, step, batch.positions[row], NoiseStream.CONTEXT_DISTRACTORS)
            order = torch.randperm(len(others), generator=gen).tolist()
            keep += [others[j] for j in order[: stage.distractors]]
        out.append([passages[i] for i in sorted(keep)])
    return out


class ReaderNLLLoss:
    """Mean answer NLL of a FiD reader reading each question's passages.

    The reader's T5 is the trained module: passages are encoded with gradients (unlike the
    frozen reader of reranker training) and the loss is FiD's, per-example mean over answer
    tokens, then mean over the batch. An optional curriculum chooses which passages are read
    at each step (answer passage only -> gold passages -> all, with distractors).

    Args:
        reader: a FiDReader whose ``model`` is the module the engine trains.
        curriculum: stages in order (empty = all passages throughout).
    """

    name = "reader_nll"
    uses_labels = True  # curricula read gold flags to choose contexts

    def __init__(self, reader: FiDReader, curriculum: list[CurriculumStage] | None = None):
        self.reader = reader
        self.curriculum = list(curriculum or [])

    def loss(
        self, module: torch.nn.Module, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean answer NLL of the reader over this step's curriculum contexts."""
        if module is not self.reader.model:
            raise ValueError("ReaderNLLLoss trains the reader's own T5 model")
        stage = stage_at(self.curriculum, ctx.step)
        passages = select_contexts(batch, stage, ctx.seed, ctx.step)
        tokens = self.reader.tokenize_passages(batch.questions, passages)
        states = self.reader.encode(tokens, with_grad=True)
        labels = self.reader.tokenize_targets(batch.targets)
        n = tokens.passage_valid.shape[1]
        loss = self.reader.lm_loss(states, labels, torch.zeros(len(batch), n, device=self.reader.device))
        metrics = {}
        if ctx.log:
            metrics = {"loss_nll": float(loss.mean().detach()), "context_passages": float(tokens.passage_valid.sum(1).float().mean())}
        return loss.mean(), metrics


register(
    ObjectiveSpec(
        name="reader_nll",
        settings=ReaderNLLSettings,
        build=lambda settings, reader: ReaderNLLLoss(reader, settings.curriculum),
        uses_labels=True,
        trains="reader",
        summary="FiD reader fine-tuning: answer NLL over the given passages, with a curriculum",
    )
)
