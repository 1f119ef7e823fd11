"""Choosing a run's published model on dev: the best evaluation so far, and early stopping.

With ``run.select_metric`` the trainer keeps the model of the evaluation that scored best on
the in-loop dev metric (``<output_dir>/best``) and publishes it as ``model/``; with
``run.patience`` it stops after that many evaluations in a row without an improvement. The
state lives in every checkpoint's ``trainer_state.json``, so a resumed run makes the same
decisions as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass
class DevSelection:
    """Best dev point so far and the patience count.

    Attributes:
        metric: the in-loop dev key that is maximised (e.g. "AllGold@3").
        patience: evaluations in a row without improvement before stopping (0 = never).
        best_value / best_step: the best evaluation so far (None before the first).
        bad_evals: evaluations since the last improvement.
        stopped_early: set when patience ran out.
        best_seconds: training seconds (steps only) spent up to the best point.
    """

    metric: str
    patience: int = 0
    best_value: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    best_seconds: float | None = None

    def update(self, result: dict[str, float], step: int, seconds: float = 0.0) -> bool:
        """Record the evaluation ``result`` of ``step``; True when it is the new best (strictly
        better: a tie keeps the earlier, cheaper point). A KeyError names the metrics the
        evaluation has when ``metric`` is not among them; a NaN never improves."""
        if self.metric not in result:
            raise KeyError(f"run.select_metric {self.metric!r} is not an in-loop dev metric; it has {sorted(result)}")
        value = float(result[self.metric])
        improved = not math.isnan(value) and (self.best_value is None or value > self.best_value)
        if improved:
            self.best_value, self.best_step, self.bad_evals = value, step, 0
            self.best_seconds = round(seconds, 3)
        else:
            self.bad_evals += 1
        if self.patience and self.bad_evals >= self.patience:
            self.stopped_early = True
        return improved

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (stored in checkpoints and ``selection.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def restore(cls, metric: str, patience: int, saved: dict[str, Any] | None) -> DevSelection:
        """The state saved in a checkpoint, for the same metric; a fresh one otherwise."""
        if not saved or saved.get("metric") != metric:
            return cls(metric, patience)
        fields = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in saved.items() if k in fields})
        state.patience = patience
        return state
