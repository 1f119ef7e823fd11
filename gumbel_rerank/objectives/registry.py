"""The objective registry: ``objective.name`` in a config picks one of these.

Each objective module in ``gumbel_rerank/objectives/`` registers one :class:`ObjectiveSpec` at
import time with :func:`register`: its name, a typed settings dataclass (the config section
``objective.settings``), a builder, and whether it reads relevance labels. The registry finds
those modules by itself (every module of this package is imported on first use), so adding an
objective is one new module and its tests.

    spec = get("gumbel")
    settings = parse_settings("gumbel", {"mask": {"k": 3}}, where="objective.settings")
    objective = build_objective("gumbel", settings, reader=reader)
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gumbel_rerank.config import ConfigError, from_dict
from gumbel_rerank.objectives.base import Objective, ReaderPasses

#: What an objective trains: the reranker (``gumbel-rerank train``) or the reader itself
#: (``gumbel-rerank train-reader``).
TRAINS = ("reranker", "reader")
_NOT_OBJECTIVES = {"base", "registry"}


@dataclass(frozen=True)
class ObjectiveSpec:
    """One registered objective.

    Attributes:
        name: the value of ``objective.name``.
        settings: the dataclass of ``objective.settings`` (every field has a default).
        build: ``(settings, reader) -> Objective``; ``reader`` is the frozen reader (or, for a
            reader objective, the reader being trained).
        uses_labels: True when the loss reads relevance labels (``Batch.gold``) or teacher
            scores; label-free objectives are tested never to touch ``Batch.gold``.
        trains: "reranker" or "reader".
        eval_k: ``settings -> k`` used for in-loop and final evaluation when ``eval.k`` is not
            set (G-Rerank: the mask's k, so the reader reads what the mask was trained to keep).
        summary: one line for ``--help`` texts and the README.
        reader_passes: ``(settings, n) -> ReaderPasses``, the reader's work per training
            question with n candidates (the compare table's compute columns; a test checks it
            against counted passes). Objectives that never run the reader keep the default.
        search_space: the settings worth tuning and the values to try, as dotted keys of the
            objective's run config (``optim.lr``, ``objective.settings.tau_target``, ...) ->
            values; ``compare --tune`` draws its trials from it (``tune.grids`` overrides it).
    """

    name: str
    settings: type
    build: Callable[[Any, Any], Objective]
    uses_labels: bool
    trains: str = "reranker"
    eval_k: Callable[[Any], int] = lambda settings: 5
    summary: str = ""
    reader_passes: Callable[[Any, int], ReaderPasses] = lambda settings, n: ReaderPasses()
    search_space: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=lambda: {"optim.lr": LEARNING_RATES})

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.settings):
            raise TypeError(f"objective {self.name!r}: settings must be a dataclass")
        if self.trains not in TRAINS:
            raise TypeError(f"objective {self.name!r}: trains must be one of {TRAINS}")


#: The learning rates every objective's search space tries (AdamW, linear decay, fresh head).
LEARNING_RATES = (1e-4, 3e-4, 1e-3)
#: Reader-target and student temperatures of the KL distillation objectives: sharp to soft
#: (LOOP's and PDist's targets differ by nats between passages; Atlas uses 0.01 for both).
DISTILL_SPACE = {
    "optim.lr": LEARNING_RATES,
    "objective.settings.tau_target": (0.01, 0.1, 1.0),
    "objective.settings.tau_student": (0.1, 1.0),
}

_REGISTRY: dict[str, ObjectiveSpec] = {}
_loaded = False


def register(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Add ``spec``; a second objective under the same name is a programming error."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"objective {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    # Import every objective module once, so each one registers itself.
    global _loaded
    if _loaded:
        return
    package = importlib.import_module("gumbel_rerank.objectives")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_OBJECTIVES and not module.name.startswith("_"):
            importlib.import_module(f"gumbel_rerank.objectives.{module.name}")
    _loaded = True


def names(trains: str | None = None) -> list[str]:
    """Registered objective names, sorted; only those that train ``trains`` when given."""
    _load_all()
    return sorted(n for n, s in _REGISTRY.items() if trains is None or s.trains == trains)


def get(name: str, trains: str | None = None, where: str = "objective.name") -> ObjectiveSpec:
    """The spec registered as ``name``; a :class:`ConfigError` naming ``where`` otherwise."""
    known = names(trains)
    if name not in known:
        raise ConfigError(f"{where}: {name!r} is not one of {known}")
    return _REGISTRY[name]


def parse_settings(name: str, raw: Any, where: str = "objective.settings") -> Any:
    """``objective.settings`` as the objective's dataclass: a mapping is checked key by key
    (errors name the dotted key), an instance of the right class is returned as it is."""
    spec = get(name)
    if isinstance(raw, spec.settings):
        return raw
    if raw is None:
        raw = {}
    if dataclasses.is_dataclass(raw):
        raise ConfigError(f"{where}: settings of {type(raw).__name__} given for objective {name!r}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    return from_dict(spec.settings, raw, where)


def build_objective(name: str, settings: Any, *, reader: Any) -> Objective:
    """The objective ``name`` with ``settings`` (a mapping or its dataclass) over ``reader``."""
    spec = get(name)
    return spec.build(parse_settings(name, settings), reader)
