"""Shared fixtures: everything offline, tiny models built from configs, tokenizers trained here."""

import os

# Set before transformers is imported anywhere: no test may touch a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

# CI fails on deprecation warnings caused by our own calls (tests/deprecation_guard.py).
import deprecation_guard  # noqa: E402

deprecation_guard.install()
