"""KD: distil a teacher's passage scores into the reranker.

MarginMSE (Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture
Knowledge Distillation", 2020), over every (gold, non-gold) pair (i, j) of a question::

    loss = mean_pairs ( (w_i - w_j) - (t_i - t_j) )^2

KL (Hinton et al. 2015 applied to ranking)::

    loss = mean_b KL( softmax(t / tau_t) || softmax(w / tau_s) )

Inputs: reranker scores w (B, n); teacher scores t (B, n), read from the data's per-passage
score field (``data.score_field``, default ``score``) or from a TREC run file keyed by question
id and passage id. Supervised: teacher scores (and, for MarginMSE, gold flags) are labels.
Candidates without a teacher score are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gumbel_rerank.config import ConfigError, require_positive
from gumbel_rerank.data.trec import iter_trec_run
from gumbel_rerank.objectives.base import Batch, StepContext
from gumbel_rerank.objectives.common import kl_to_student
from gumbel_rerank.objectives.registry import ObjectiveSpec, register
from gumbel_rerank.reader.base import Reader
from gumbel_rerank.rerankers import Reranker

LOSSES = ("margin_mse", "kl")


@dataclass
class KDSettings:
    """``objective.settings`` of ``kd``.

    Attributes:
        loss: "margin_mse" or "kl".
        teacher_run: a TREC run file of teacher scores (question id, passage id, score); None =
            the data's per-passage score field (``data.score_field``).
        tau_teacher / tau_student: temperatures of the KL's two softmaxes.
    """

    loss: str = "margin_mse"
    teacher_run: str | None = None
    tau_teacher: float = 1.0
    tau_student: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"objective.settings.loss: {self.loss!r} is not one of {LOSSES}")
        require_positive(self, ("tau_teacher", "tau_student"), "objective.settings")
        if self.teacher_run is not None and not Path(self.teacher_run).is_file():
            raise ConfigError(f"objective.settings.teacher_run: {self.teacher_run} is not a file")


def margin_mse_loss(scores: torch.Tensor, teacher: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """MarginMSE from tensors: scores and teacher (B, n); positive and negative (B, n) bool.
    Mean over all (positive i, negative j) pairs of the same question of
    ``((w_i - w_j) - (t_i - t_j))^2`` (0 when there is no pair)."""
    student = scores[:, :, None] - scores[:, None, :]  # (B, n, n): w_i - w_j
    target = (teacher[:, :, None] - teacher[:, None, :]).to(scores.dtype)
    pairs = positive[:, :, None] & negative[:, None, :]
    if not bool(pairs.any()):
        return scores.sum() * 0.0
    return (student - target.detach()).pow(2)[pairs].mean()


def kd_kl_loss(scores: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor, tau_teacher: float, tau_student: float) -> torch.Tensor:
    """KL to the teacher from tensors: scores, teacher (B, n), valid (B, n) bool -> scalar."""
    return kl_to_student(teacher, scores, valid, tau_teacher, tau_student)


def read_teacher_run(path: str) -> dict[str, dict[str, float]]:
    """question id -> passage id -> teacher score, from a TREC run file."""
    return {query.qid: {c.docid: c.score for c in query.candidates} for query in iter_trec_run(path)}


class KDLoss:
    """The KD objective (module docstring); reads teacher scores (and gold flags for MarginMSE)."""

    name = "kd"
    uses_labels = True

    def __init__(self, settings: KDSettings) -> None:
        self.settings = settings
        self.run = read_teacher_run(settings.teacher_run) if settings.teacher_run else None

    def teacher_scores(self, batch: Batch, n: int) -> torch.Tensor:
        """(B, n) teacher scores, NaN where the teacher has none."""
        if self.run is None:
            if batch.passage_scores is None:
                raise ValueError("kd: the batch carries no passage scores (data.score_field)")
            return batch.passage_scores[:, :n].float()
        out = torch.full((len(batch), n), float("nan"))
        for row, qid in enumerate(batch.ids):
            known = self.run.get(qid, {})
            for i, pid in enumerate((batch.passage_ids or [[]] * len(batch))[row][:n]):
                if pid is not None and pid in known:
                    out[row, i] = known[pid]
        return out

    def loss(self, module: Reranker, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """MarginMSE or KL between the reranker's and the teacher's scores."""
        scores, valid = module.score(batch.questions, batch.passages)
        n = scores.shape[1]
        teacher = self.teacher_scores(batch, n).to(scores.device)
        covered = valid & ~teacher.isnan()
        teacher = teacher.nan_to_num(0.0)
        if self.settings.loss == "kl":
            loss = kd_kl_loss(scores, teacher, covered, self.settings.tau_teacher, self.settings.tau_student)
        else:
            gold = batch.gold[:, :n].to(scores.device)
            loss = margin_mse_loss(scores, teacher, covered & gold, covered & ~gold)
        metrics = {}
        if ctx.log:
            metrics = {"teacher_coverage": float(covered.sum() / valid.sum().clamp(min=1))}
        return loss, metrics


def _build(settings: KDSettings, reader: Reader) -> KDLoss:
    return KDLoss(settings)  # no reader needed: the teacher's scores are the signal


register(
    ObjectiveSpec(
        name="kd",
        settings=KDSettings,
        build=_build,
        uses_labels=True,
        summary="KD: MarginMSE or KL to a teacher's scores (data field or TREC run)",
    )
)
