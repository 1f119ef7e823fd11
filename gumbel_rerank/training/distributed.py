"""Process-group set-up shared by the plain and DeepSpeed engines (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the process group (1 process: rank 0 of 1)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder, logs and user-facing outputs."""
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup(device: torch.device, need_group: bool) -> DistInfo:
    """Join the process group the launcher described (torchrun, deepspeed, srun, or env vars).

    A single process without a launcher gets RANK/WORLD_SIZE/MASTER_* defaults, because
    ``deepspeed.initialize`` otherwise looks for mpi4py and fails. ``need_group`` forces a
    group even for one process (DeepSpeed requires one).
    """
    if "SLURM_STEP_NUM_TASKS" in os.environ and "RANK" not in os.environ:
        # inside an srun step (not merely inside an allocation, where SLURM_NTASKS is set too):
        # one task per process; translate its variables for torch.distributed
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_STEP_NUM_TASKS"]
        os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 and not need_group:
        return DistInfo(0, 1, 0)
    if world > 1 and not ("MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ):
        # each rank would pick its own port on its own host and wait forever
        raise RuntimeError(
            f"WORLD_SIZE={world} but MASTER_ADDR/MASTER_PORT are not set: launch with "
            "torchrun, deepspeed, run.sh or run.slurm"
        )
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))


def is_main_process() -> bool:
    """True outside a process group, or on rank 0."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if dist.is_initialized():
        dist.barrier()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any (e.g. a pre-emption signal on one node)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average logged metrics over ranks (same keys on every rank)."""
    if not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist(), strict=True))


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()
