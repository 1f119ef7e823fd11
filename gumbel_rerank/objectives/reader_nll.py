"""FiD reader fine-tuning: answer NLL over the passages given (``gumbel-rerank train-reader``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gumbel_rerank.config import ConfigError
from gumbel_rerank.masks import NoiseStream, noise_generator
from gumbel_rerank.objectives.base import Batch, StepContext
from gumbel_rerank.objectives.registry import ObjectiveSpec, register
from gumbel_rerank.reader.base import Reader

CONTEXTS = ("answer", "gold", "all", "roles")


def _check_context(where: str, contexts: str, roles: list[str], distractors: int) -> None:
    if contexts not in CONTEXTS:
        raise ConfigError(f"{where}.contexts: {contexts!r} is not one of {CONTEXTS}")
    if contexts == "roles" and not roles:
        raise ConfigError(f"{where}.roles: contexts=roles needs the passage roles to read")
    if distractors < 0:
        raise ConfigError(f"{where}: distractors must be >= 0")


@dataclass
class ExampleKind:
    """One kind of training example of a mixed curriculum stage: which passages it reads and
    which of the question's targets it is trained to produce.

    Attributes:
        weight: relative frequency of this kind in the stage's batches.
        contexts / roles / distractors: as in :class:`CurriculumStage`.
        target: a named target of the record (its ``targets`` object); None = ``target``.
    """

    weight: float = 1.0
    contexts: str = "all"
    roles: list[str] = field(default_factory=list)
    distractors: int = 0
    target: str | None = None

    def __post_init__(self) -> None:
        _check_context("curriculum.mix", self.contexts, self.roles, self.distractors)
        if not self.weight > 0:
            raise ConfigError(f"curriculum.mix.weight must be > 0, got {self.weight}")


@dataclass
class CurriculumStage:
    """What the reader reads, and is trained to say, for ``steps`` steps of ``train-reader``.

    Attributes:
        steps: length of the stage; the last stage also runs past its end until max_steps.
        contexts: "answer" (gold passages that contain the answer), "gold" (all gold passages),
            "all" (every candidate, FiD's own training), or "roles" (the passages whose
            ``role`` is in ``roles``, e.g. the hard contexts of a multi-hop set).
        roles: passage roles read with ``contexts: roles`` (the data's per-passage ``role``).
        distractors: random non-gold passages added to "answer"/"gold"/"roles" contexts, so
            the reader must pick the right passage inside contexts of the size a reranker keeps.
        target: a named target of the record to train on (its ``targets`` object); None = the
            record's ``target``.
        mix: kinds of examples drawn at random per example (by weight, seeded per example and
            step); when given, it replaces the stage's own contexts/roles/distractors/target.
    """

    steps: int = 1000
    contexts: str = "all"
    distractors: int = 0
    roles: list[str] = field(default_factory=list)
    target: str | None = None
    mix: list[ExampleKind] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError("curriculum: steps must be >= 1 and distractors >= 0")
        _check_context("curriculum", self.contexts, self.roles, self.distractors)

    def kinds(self) -> list[ExampleKind]:
        """The stage's example kinds: ``mix``, or the one kind its own fields describe."""
        return self.mix or [ExampleKind(1.0, self.contexts, self.roles, self.distractors, self.target)]


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


def _kind_of(stage: CurriculumStage, seed: int, step: int, position: int) -> ExampleKind:
    kinds = stage.kinds()
    if len(kinds) == 1:
        return kinds[0]
    gen = noise_generator(seed, step, position, NoiseStream.EXAMPLE_KIND)
    weights = torch.tensor([k.weight for k in kinds], dtype=torch.float64)
    return kinds[int(torch.multinomial(weights, 1, generator=gen))]


def _context(batch: Batch, row: int, kind: ExampleKind, seed: int, step: int) -> list[dict]:
    """One example's passages for ``kind``, in their original order; all of them when the
    question has no passage of the requested kind (never an empty context)."""
    passages = batch.passages[row]
    n = len(passages)
    if kind.contexts == "all":
        return passages
    if kind.contexts == "roles":
        roles = (batch.passage_roles or [[None] * n] * len(batch))[row]
        keep = [i for i in range(n) if roles[i] in kind.roles]
    else:
        wanted = batch.gold[row] & batch.has_answer[row] if kind.contexts == "answer" else batch.gold[row]
        keep = [i for i in range(n) if wanted[i]]
    if not keep:
        return passages
    others = [i for i in range(n) if not batch.gold[row, i] and i not in keep]
    if kind.distractors and others:
        gen = noise_generator(seed, step, batch.positions[row], NoiseStream.CONTEXT_DISTRACTORS)
        order = torch.randperm(len(others), generator=gen).tolist()
        keep += [others[j] for j in order[: kind.distractors]]
    return [passages[i] for i in sorted(keep)]


def select_examples(
    batch: Batch, stage: CurriculumStage | None, seed: int, step: int
) -> tuple[list[list[dict]], list[str]]:
    """Each question's passages and target for this stage.

    Random choices (the example kind of a mixed stage, distractors) are drawn per example from
    (seed, step, position in the global batch), so a resumed run reads the same examples.
    """
    if stage is None:
        return batch.passages, list(batch.targets)
    passages, targets = [], []
    for row in range(len(batch)):
        kind = _kind_of(stage, seed, step, batch.positions[row])
        passages.append(_context(batch, row, kind, seed, step))
        if kind.target is None:
            targets.append(batch.targets[row])
        else:
            named = (batch.target_sets or [{}] * len(batch))[row]
            if kind.target not in named:
                raise ValueError(f"question {batch.ids[row]!r} has no target {kind.target!r} (it has {sorted(named)})")
            targets.append(named[kind.target])
    return passages, targets


def select_contexts(
    batch: Batch, stage: CurriculumStage | None, seed: int, step: int
) -> list[list[dict]]:
    """Each question's passages for this stage (:func:`select_examples` without targets)."""
    return select_examples(batch, stage, seed, step)[0]


class ReaderNLLLoss:
    """Mean answer NLL of a FiD reader reading each question's passages.

    The reader's T5 is the trained module: passages are encoded with gradients (unlike the
    frozen reader of reranker training) and the loss is FiD's, per-example mean over answer
    tokens, then mean over the batch. An optional curriculum chooses which passages are read
    at each step (answer passage only -> gold passages -> all, with distractors).

    Args:
        reader: a trainable reader (FiD or parallel LM) whose ``model`` is the module the
            engine trains.
        curriculum: stages in order (empty = all passages throughout).
    """

    name = "reader_nll"
    uses_labels = True  # curricula read gold flags to choose contexts

    def __init__(self, reader: Reader, curriculum: list[CurriculumStage] | None = None):
        self.reader = reader
        self.curriculum = list(curriculum or [])

    def loss(
        self, module: torch.nn.Module, batch: Batch, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean answer NLL of the reader over this step's curriculum contexts."""
        if module is not self.reader.model:
            raise ValueError("ReaderNLLLoss trains the reader's own T5 model")
        stage = stage_at(self.curriculum, ctx.step)
        passages, targets = select_examples(batch, stage, ctx.seed, ctx.step)
        tokens = self.reader.tokenize_passages(batch.questions, passages)
        states = self.reader.encode(tokens, with_grad=True)
        labels = self.reader.tokenize_targets(targets)
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
