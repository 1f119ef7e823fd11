"""Training objectives: a registry (``registry``) and one module per objective.

Each objective module defines a typed settings dataclass (the config's ``objective.settings``),
a loss class with ``loss(module, batch, ctx) -> (scalar, metrics)``, and registers itself with
:func:`~gumbel_rerank.objectives.registry.register`, declaring whether it reads relevance
labels. ``objective.name`` picks one; :func:`~gumbel_rerank.objectives.registry.build_objective`
builds it. To add an objective, add a module here (the registry imports every module of this
package) and its tests.
"""

from gumbel_rerank.objectives.base import Batch, Objective, StepContext

__all__ = ["Batch", "Objective", "StepContext"]
