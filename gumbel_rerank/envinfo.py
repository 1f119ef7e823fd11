"""The versions and capabilities users paste into bug reports (`gumbel-rerank env`)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

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
    report["cpu threads"] = str(torch.get_num_threads())
    return report


def format_report(report: dict[str, str]) -> str:
    width = max(len(key) for key in report)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in report.items())
