"""A reranker's model compiled for inference: torch.compile with inductor's weight freezing.

Freezing folds the weights into the compiled graph as constants, so inductor can pre-pack them
for oneDNN's matrix kernels and fuse the element-wise work around them: on this project's CPU
that scores 1.9x the pairs per second of the eager float32 model, scores equal to 1e-7
(``benchmarks/rerank_throughput.py``). The price is a one-off compilation (about 17 s for
MiniLM on 2 cores, new shapes included), repaid after about 1,300 pairs.

Because the weights are constants, the compiled model is only right for the weights it was
compiled with. :class:`CompiledInference` notices an update and then falls back to the eager
model with a warning: an optimizer step on any of its parameters (a global step hook: fused
kernels do not bump the parameters' version counters), ``load_state_dict`` (a module hook),
and any other in-place change (the version counters). It is used only without gradients.
Where inductor cannot build its kernels (no C++ compiler, an unsupported platform), the first
call warns and the eager model is used from then on.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

logger = logging.getLogger(__name__)

# every live CompiledInference, for the optimizer hook (weak: dropping a reranker frees it)
_LIVE: weakref.WeakSet[CompiledInference] = weakref.WeakSet()
_HOOK: list[Any] = []  # the global optimizer hook's handle, registered once


def parameter_versions(model: nn.Module) -> tuple[int, ...]:
    """The in-place version counter of every parameter and buffer (most updates bump one)."""
    return tuple(t._version for t in (*model.parameters(), *model.buffers()))


def _after_optimizer_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Mark every compiled model whose parameters this optimizer just updated as stale."""
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for compiled in list(_LIVE):
        if any(id(p) in stepped for p in compiled.model.parameters()):
            compiled.weights_changed = True


class CompiledInference:
    """``model``'s forward, compiled with frozen weights on first use.

    Args:
        model: the Hugging Face model the reranker wraps (its weights are snapshot when the
            first call compiles).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.compiled: Callable[..., Any] | None = torch.compile(model, dynamic=True)
        self.versions: tuple[int, ...] = ()  # the weights' versions when the first call compiled
        self.working: bool | None = None  # None until the first call has compiled (or failed)
        self.weights_changed = False
        if not _HOOK:
            _HOOK.append(register_optimizer_step_post_hook(_after_optimizer_step))
        _LIVE.add(self)
        self._load_hook = model.register_load_state_dict_post_hook(self._loaded)

    def _loaded(self, module: nn.Module, incompatible: Any) -> None:
        self.weights_changed = True

    def usable(self) -> bool:
        """Whether the compiled model may serve a call: compilation has not failed, the weights
        are those it was compiled for, and no gradient is wanted."""
        if self.working is False or torch.is_grad_enabled():
            return False
        if self.working and (self.weights_changed or parameter_versions(self.model) != self.versions):
            logger.warning(
                "the reranker's weights changed after compile_for_inference(); scoring with the "
                "eager model (call compile_for_inference() again to compile the new weights)"
            )
            self._give_up()
            return False
        return True

    def _give_up(self) -> None:
        self.working = False
        self.compiled = None  # frees the graph and its frozen copy of the weights

    def release(self) -> None:
        """Stop serving for good: drop the compiled graph and detach from the model's hooks
        (the load hook would otherwise keep this object, and its graph, alive)."""
        self._give_up()
        self._load_hook.remove()
        _LIVE.discard(self)

    def __call__(self, **inputs: Any) -> Any:
        """The model's output for ``inputs``; the eager model's if compilation fails."""
        # inductor reads `freezing` from its global config when a graph compiles (the first
        # call, and recompiles for new shapes); torch.compile(options=...) does not reach it
        # (measured: no speed-up), so each call runs inside a patch of that config rather than
        # changing it for the user's other compiled code
        import torch._inductor.config as inductor_config

        if self.working:
            with inductor_config.patch(freezing=True):
                return self.compiled(**inputs)
        self.versions = parameter_versions(self.model)
        self.weights_changed = False
        try:
            with inductor_config.patch(freezing=True):
                out = self.compiled(**inputs)
        except Exception as err:  # inductor raises many kinds (no compiler, unsupported op)
            logger.warning("compiling the reranker failed (%s: %s); scoring with the eager model", type(err).__name__, str(err)[:300])
            self._give_up()
            return self.model(**inputs)
        self.working = True
        return out


class CompiledTraining:
    """``model``'s forward for training, through ``torch.compile`` (weights stay parameters, so
    optimizer steps need no recompilation); the eager model once compilation has failed.

    Args:
        model: the Hugging Face model the reranker wraps.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.compiled: Callable[..., Any] | None = torch.compile(model, dynamic=False)
        self.working: bool | None = None  # None until the first call has compiled (or failed)

    def __call__(self, **inputs: Any) -> Any:
        """The model's output for ``inputs`` (with gradients); the eager model's if compiling
        fails (warned once)."""
        if self.working is False:
            return self.model(**inputs)
        try:
            out = self.compiled(**inputs)
        except Exception as err:  # inductor raises many kinds (no compiler, unsupported op)
            if self.working:  # it compiled before: a real error of this call
                raise
            logger.warning("compiling the reranker for training failed (%s: %s); training eagerly", type(err).__name__, str(err)[:300])
            self.working, self.compiled = False, None
            return self.model(**inputs)
        self.working = True
        return out
