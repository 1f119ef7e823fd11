"""Shared fixtures: everything offline, tiny models built from configs, tokenizers trained here."""

import os

# Set before transformers is imported anywhere: no test may touch a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

# CI fails on deprecation warnings caused by our own calls (tests/deprecation_guard.py).
import deprecation_guard  # noqa: E402
import pytest  # noqa: E402

deprecation_guard.install()

# Under pytest-xdist (the README's command runs one worker per core) every worker is its own
# torch process: at torch's default of one thread per core, two workers would run four threads
# on two cores and slow each other several-fold. One thread per worker, and per child process
# a test starts (the environment is inherited).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch  # noqa: E402

    torch.set_num_threads(1)


@pytest.hookimpl(optionalhook=True)  # a hook of xdist, which the GPU image lacks
def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one worker per core, at most 4 (each holds its own
    models; more would trade memory for little on a suite whose longest file runs minutes)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(4, cores or 1)


def pytest_collection_modifyitems(config, items):
    """Files holding a test marked slow run first (order otherwise kept): under xdist's
    --dist loadfile the reduced demo's file (minutes at one thread) then starts at once on one
    worker while the other works through the short files, instead of starting halfway through."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
