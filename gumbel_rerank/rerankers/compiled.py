"""A reranker's model compiled for inference: torch.compile with inductor's weight freezing.

Freezing folds the weights into the compiled graph as constants, so inductor can pre-pack them
for oneDNN's matrix kernels and fuse the element-wise work around them: on this project's CPU
that scores 1.9x the pairs per second of the eager float32 model, scores equal to 1e-7
(``benchmarks/rerank_throughput.py``). The price is a one-off compilation (about 17 s for
MiniLM on 2 cores, new shapes included), repaid after about 1,300 pairs.

Because the weights are constants, the compiled model is only right for the weights it was
compiled with: :class:`CompiledInference` records the parameters' in-place version counters and
falls back to the eager model (with a warning) once any of them changed, as an optimizer step
or ``load_state_dict`` would do. It is used only without gradients. Where inductor cannot
build its kernels (no C++ compiler, an unsupported platform), the first call warns and the
eager model is used from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


def parameter_versions(model: nn.Module) -> tuple[int, ...]:
    """The in-place version counter of every parameter and buffer (any update bumps one)."""
    return tuple(t._version for t in (*model.parameters(), *model.buffers()))


class CompiledInference:
    """``model``'s forward, compiled with frozen weights on first use.

    Args:
        model: the Hugging Face model the reranker wraps (its weights are snapshot when the
            first call compiles).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        # inductor reads `freezing` from its global config when a graph compiles (on the first
        # call and on recompiles for new shapes); torch.compile(options=...) does not reach it
        # (measured: no speed-up), so every call runs inside a patch of that config instead of
        # changing it for the user's other compiled code
        import torch._inductor.config as inductor_config

        self.freezing = lambda: inductor_config.patch(freezing=True)
        self.compiled: Callable[..., Any] = torch.compile(model, dynamic=True)
        self.versions: tuple[int, ...] = ()  # the weights' versions when the first call compiled
        self.working: bool | None = None  # None until the first call has compiled (or failed)

    def usable(self) -> bool:
        """Whether the compiled model may serve a call: compilation has not failed, the weights
        are those it was compiled for, and no gradient is wanted."""
        if self.working is False or torch.is_grad_enabled():
            return False
        if self.working and parameter_versions(self.model) != self.versions:
            logger.warning(
                "the reranker's weights changed after compile_for_inference(); scoring with the "
                "eager model (call compile_for_inference() again to compile the new weights)"
            )
            self.working = False
            return False
        return True

    def __call__(self, **inputs: Any) -> Any:
        """The model's output for ``inputs``; the eager model's if compilation fails."""
        if self.working:
            with self.freezing():
                return self.compiled(**inputs)
        self.versions = parameter_versions(self.model)
        try:
            with self.freezing():
                out = self.compiled(**inputs)
        except Exception as err:  # inductor raises many kinds (no compiler, unsupported op)
            logger.warning("compiling the reranker failed (%s: %s); scoring with the eager model", type(err).__name__, str(err)[:300])
            self.working = False
            return self.model(**inputs)
        self.working = True
        return out
