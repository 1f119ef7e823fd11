"""Optimisation engines: DeepSpeed (ZeRO 0-3, bf16, multi-process) or plain torch (one process).

Both implement :class:`Engine`, the only interface the training loop uses, so the loop reads the
same for either. Per micro-batch the loop calls ``loss(batch, ctx)``, ``backward(loss)`` and
``step()``; the optimizer steps at the accumulation boundary. ``save_state`` / ``load_state``
give exact resume and ``export`` writes the user-facing model directory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch

from gumbel_rerank.objectives.base import Batch, Objective, StepContext
from gumbel_rerank.training.checkpointing import load_tensors
from gumbel_rerank.training.config import OptimConfig, read_deepspeed_config

#: ``(module, directory)``: writes the trained module as a user-facing directory (HF format).
SaveFn = Callable[[torch.nn.Module, Path], None]


class Engine(Protocol):
    """What the training loop needs from an optimisation engine.

    Attributes:
        module: the module being trained (for ``train()``/``eval()`` and in-loop evaluation);
            under DeepSpeed the unwrapped model, its parameters possibly ZeRO-partitioned.
        last_grad_norm: global gradient norm of the last optimizer step (before clipping).
    """

    module: torch.nn.Module
    last_grad_norm: float

    def loss(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """The objective on one micro-batch: (scalar loss, metrics). Runs through the engine's
        own forward (DeepSpeed sets up ZeRO-3's backward there)."""
        ...

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate gradients of ``loss``, scaled by 1 / grad_accum."""
        ...

    def step(self) -> bool:
        """Count one micro-batch; at the accumulation boundary clip, step the optimizer and the
        schedule, zero the gradients and return True."""
        ...

    def lr(self) -> float:
        """The learning rate the next optimizer step uses."""
        ...

    def save_state(self, directory: Path) -> None:
        """Write weights, optimizer and scheduler state for an exact resume (collective)."""
        ...

    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote."""
        ...

    def export(self, save_fn: SaveFn, directory: Path, is_main: bool) -> None:
        """Write the trained module with ``save_fn`` on the main rank (ZeRO-3 parameters are
        gathered first: collective)."""
        ...


class ObjectiveModule(torch.nn.Module):
    """The trained module with its objective as ``forward``: what DeepSpeed wraps.

    DeepSpeed's engine forward registers the backward prologue ZeRO-3 needs for gradient
    accumulation; calling the inner module's methods directly skipped it and gave wrong
    gradients with ZeRO-3 and grad_accum > 1 (measured: 2e-2 off a plain-torch run).
    """

    def __init__(self, model: torch.nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective  # not a Module: a frozen reader is no trained parameter

    def forward(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """The objective's loss of ``model`` on one micro-batch."""
        return self.objective.loss(self.model, batch, ctx)


def lr_lambda(cfg: OptimConfig) -> Callable[[int], float]:
    """Linear warmup to the peak, then linear/cosine decay to 0 at ``max_steps`` (or constant)."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(max(progress, 0.0), 1.0)
        if cfg.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


# devices with torch's fused AdamW kernel (torch >= 2.4 has it on CPU too)
FUSED_ADAMW_DEVICES = frozenset({"cpu", "cuda", "xpu", "mps"})


def build_optimizer(module: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norms (the usual transformer recipe)."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    params = decay + no_decay
    # torch's default on CPU is one Python loop over the tensors; the fused kernel is one pass
    # and takes 0.011 s instead of 0.082 s for MiniLM's 22 M parameters on one thread (12% of
    # a bf16 demo step; benchmarks/step_anatomy.py). Deterministic like the loop, not bitwise
    # equal to it.
    fused = bool(params) and all(p.device.type in FUSED_ADAMW_DEVICES and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


class TorchEngine:
    """:class:`Engine` for one process in plain torch: AdamW, schedule, accumulation, clipping."""

    def __init__(self, module: torch.nn.Module, objective: Objective, cfg: OptimConfig):
        self.module = module
        self.wrapper = ObjectiveModule(module, objective)
        self.cfg = cfg
        self.optimizer = build_optimizer(module, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.micro_steps = 0
        self.last_grad_norm = 0.0

    def loss(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """See :meth:`Engine.loss`."""
        return self.wrapper(batch, ctx)

    def backward(self, loss: torch.Tensor) -> None:
        """See :meth:`Engine.backward`."""
        # mean over the accumulated micro-batches, as DeepSpeed scales it
        (loss / self.cfg.grad_accum).backward()

    def step(self) -> bool:
        """Count a micro-batch; at the accumulation boundary clip, step and return True."""
        self.micro_steps += 1
        if self.micro_steps % self.cfg.grad_accum:
            return False
        params = [p for p in self.module.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip or float("inf"))
        self.last_grad_norm = float(norm)
        if math.isfinite(self.last_grad_norm):
            self.optimizer.step()
            self.scheduler.step()
        # else: a NaN/inf gradient (or loss) would poison the weights and Adam's moments; the
        # update is skipped and the trainer counts it (run.max_nonfinite_steps)
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def lr(self) -> float:
        """See :meth:`Engine.lr`."""
        return self.scheduler.get_last_lr()[0]

    def save_state(self, directory: Path) -> None:
        """See :meth:`Engine.save_state`: one ``engine.pt`` (weights, optimizer, scheduler)."""
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "module": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            },
            directory / "engine.pt",
        )

    def load_state(self, directory: Path) -> None:
        """See :meth:`Engine.load_state`."""
        state = load_tensors(directory / "engine.pt")
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # checkpoints are taken at step boundaries: a resume may change grad_accum freely
        self.micro_steps = 0

    def export(self, save_fn: SaveFn, directory: Path, is_main: bool) -> None:
        """See :meth:`Engine.export`."""
        if is_main:
            save_fn(self.module, directory)


class DeepSpeedEngine:
    """:class:`Engine` over DeepSpeed: the config file's ZeRO stage and precision; our AdamW and
    schedule.

    The JSON file decides ZeRO stage, bf16, offload and communication; batch sizes and
    clipping come from ``optim`` so one source of truth sets them.
    """

    def __init__(
        self, module: torch.nn.Module, objective: Objective, cfg: OptimConfig, config_path: str, world_size: int
    ):
        import deepspeed

        ds_config = read_deepspeed_config(config_path)
        ds_config.update(
            train_micro_batch_size_per_gpu=cfg.micro_batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            train_batch_size=cfg.micro_batch_size * cfg.grad_accum * world_size,
            gradient_clipping=cfg.grad_clip,
            # a torch AdamW passed in: no second op build, and it is the same optimizer as TorchEngine
            zero_allow_untested_optimizer=True,
        )
        ds_config.setdefault("steps_per_print", 10**9)  # we log ourselves
        optimizer = build_optimizer(module, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=ObjectiveModule(module, objective),
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=ds_config,
        )
        self.module = self.engine.module.model
        self.cfg = cfg
        self.zero_stage = self.engine.zero_optimization_stage()

    def loss(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """See :meth:`Engine.loss`."""
        return self.engine(batch, ctx)

    def backward(self, loss: torch.Tensor) -> None:
        """See :meth:`Engine.backward`."""
        self.engine.backward(loss)

    def step(self) -> bool:
        """See :meth:`Engine.step`."""
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        return boundary

    @property
    def last_grad_norm(self) -> float:
        """See :class:`Engine`."""
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else 0.0

    def lr(self) -> float:
        """See :meth:`Engine.lr`."""
        return self.scheduler.get_last_lr()[0]

    def save_state(self, directory: Path) -> None:
        """See :meth:`Engine.save_state`."""
        # collective: every rank writes its ZeRO partition
        self.engine.save_checkpoint(str(directory), tag="state")

    def load_state(self, directory: Path) -> None:
        """See :meth:`Engine.load_state`."""
        path, _ = self.engine.load_checkpoint(str(directory), tag="state")
        if path is None:
            raise RuntimeError(f"{directory}: DeepSpeed found no checkpoint to resume from")

    def export(self, save_fn: SaveFn, directory: Path, is_main: bool) -> None:
        """See :meth:`Engine.export`."""
        import deepspeed

        # ZeRO-3 keeps each parameter partitioned; gather (collective) before the main rank saves.
        params = list(self.module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if is_main:
                save_fn(self.module, directory)
