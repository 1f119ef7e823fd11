"""The machine: versions and capabilities for bug reports (`gumbel-rerank env`), and the one
place a device name becomes a torch device."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Accepted device names (``run.device``, ``--device``).
DEVICES = ("auto", "cpu", "cuda")

PACKAGES = (
    "gumbel_rerank",
    "torch",
    "transformers",
    "deepspeed",
    "datasets",
    "tokenizers",
    "safetensors",
    "sentencepiece",
    "wandb",
    "ir_measures",
)


def package_version(name: str) -> str:
    """Installed version from package metadata, without importing the package (DeepSpeed's
    import alone takes seconds and may compile ops)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict[str, str]:
    """Python, platform, package versions, and what the accelerator supports."""
    import torch

    report = {"python": sys.version.split()[0], "platform": platform.platform()}
    report.update({name: package_version(name) for name in PACKAGES})
    cuda = torch.cuda.is_available()
    report["cuda available"] = str(cuda)
    report["cuda version (torch build)"] = str(torch.version.cuda)
    if cuda:
        report["gpus"] = ", ".join(
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        )
        report["bf16 supported"] = str(torch.cuda.is_bf16_supported())
    else:
        # bf16 matmuls run on CPU (slowly); DeepSpeed fp16 does not, so bf16 is the CPU choice
        report["bf16 supported"] = "True (cpu)"
    # what the reranker's autocast "auto" decides: bf16 arithmetic only where the CPU has it
    # natively, fp32 elsewhere; so a run's numbers depend on it and its versions file says it
    report["cpu native bf16"] = str(native_bf16(torch.device("cpu")))
    report["cpu threads"] = str(torch.get_num_threads())
    return report


def format_report(report: dict[str, str]) -> str:
    """The report as aligned ``key  value`` lines."""
    width = max(len(key) for key in report)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in report.items())


def resolve_device(name: str) -> torch.device:
    """``"auto"`` / ``"cuda"`` / ``"cpu"`` -> a torch device; CUDA means this process's GPU.

    ``"auto"`` is CUDA when torch sees a GPU for every process of this node, else the CPU. The
    GPU index is the process's LOCAL_RANK (or SLURM_LOCALID): models are loaded before the
    process group exists, and a bare "cuda" would put every rank's frozen reader on GPU 0.
    When a node runs more processes than it has GPUs (LOCAL_WORLD_SIZE / SLURM_NTASKS_PER_NODE
    above the GPU count, e.g. two test processes on a one-GPU machine), "auto" puts every
    process on the CPU (gloo) and says so: a process asking for a missing ``cuda:1`` would
    fail, and mixing nccl and gloo ranks would hang. Asking for "cuda" there, or on a machine
    without CUDA, is a ``ValueError`` naming the counts.
    """
    import torch

    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("SLURM_NTASKS_PER_NODE", str(local + 1))))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        name = "cuda" if gpus else "cpu"
        if gpus and max(per_node, local + 1) > gpus:
            print(
                f"device auto: {max(per_node, local + 1)} processes on this node but {gpus} GPU(s) visible; "
                "every process runs on the CPU (gloo)",
                file=sys.stderr,
                flush=True,
            )
            name = "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not gpus:
        raise ValueError("device='cuda' was asked for but torch sees no CUDA GPU; use 'cpu'")
    if local >= gpus:
        raise ValueError(f"device='cuda': this is process {local} of its node but only {gpus} GPU(s) are visible")
    return torch.device(f"cuda:{local}")


@functools.cache  # asked on every reranker forward; hardware does not change
def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX-512 BF16 or AMX tiles (torch's own CPU feature probes; False where torch lacks them)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def _git(*args: str) -> str | None:
    """``git args`` run in this package's folder: its output, or None where git or a
    checkout is missing or the command fails."""
    try:
        done = subprocess.run(
            # no optional locks: a status taken while the user commits must not block them
            ["git", "--no-optional-locks", "-C", str(Path(__file__).resolve().parent), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The last commit that changed this package's files, 12 hex digits (``+dirty`` when the
    files differ from it), or None outside a git checkout: which code made a run.

    The package's last change, not the checkout's HEAD: results and documentation committed
    while a long job runs move HEAD but not the code. Taken once per process, at its first
    call (a command's start), so it names the code the process loaded. In a shallow clone
    whose history stops after the package's last change, the oldest commit it has (which
    holds the same code)."""
    last = _git("log", "-1", "--format=%H", "--", ".")
    if not last:
        return None
    dirty = _git("status", "--porcelain", "--", ".")
    return last[:12] + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=256)
def package_commit_at(commit: str) -> str:
    """The last commit at or before ``commit`` that changed this package's files (12 hex
    digits): what :func:`code_commit` would have said at a checkout whose HEAD was ``commit``
    (run folders written before it record HEAD). ``commit`` shortened where this checkout
    does not know it."""
    known = _git("log", "-1", "--format=%H", commit, "--", ".")
    return (known or commit)[:12]
