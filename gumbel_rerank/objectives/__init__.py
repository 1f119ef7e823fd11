"""Training objectives, one module per family; each is a small class with a documented loss."""

from gumbel_rerank.objectives.base import Batch, Objective, StepContext

__all__ = ["Batch", "Objective", "StepContext"]
