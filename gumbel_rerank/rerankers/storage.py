"""Reranker directories on disk: atomic saving and strict local loading.

A saved reranker is a plain Hugging Face directory (``config.json``, safetensors weights,
tokenizer files) plus ``gumbel_rerank.json`` with the :class:`RerankerConfig`, so a
cross-encoder loads without this package in ``AutoModelForSequenceClassification`` and in
sentence-transformers' ``CrossEncoder``. :func:`save_directory` writes one so that a crash at
any point leaves either the old or the new complete directory; :func:`load_components` reads
one back into the (model, tokenizer, config) that :class:`~gumbel_rerank.rerankers.model.Reranker`
wraps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from gumbel_rerank.durable import fsync_dir, write_atomic
from gumbel_rerank.rerankers.card import CARD_NAME, ModelCard, render, sentence_transformers_files
from gumbel_rerank.rerankers.config import RerankerConfig, kind_of

logger = logging.getLogger(__name__)

SETTINGS_NAME = "gumbel_rerank.json"
"""File name of our settings inside a saved reranker directory."""

SETTINGS_FORMAT_VERSION = 1

__all__ = [
    "SETTINGS_FORMAT_VERSION",
    "SETTINGS_NAME",
    "WeightsError",
    "load_components",
    "read_settings",
    "save_directory",
]


# ---------------------------------------------------------------------- saving
def save_directory(
    hf_model: nn.Module,
    tokenizer: Any,
    config: RerankerConfig,
    path: str | os.PathLike,
    state_dict: Mapping[str, Tensor] | None = None,
    card: ModelCard | None = None,
) -> Path:
    """Write model, tokenizer and settings to ``path``, replacing it only once complete.

    Everything is written into a hidden sibling directory, flushed to disk, then renamed into
    place; an existing directory at ``path`` is kept until the new one is in place (see
    :meth:`gumbel_rerank.rerankers.model.Reranker.save_pretrained`).

    Args:
        hf_model: the Hugging Face model (its ``save_pretrained`` writes the weights).
        tokenizer: its tokenizer, saved with ``model_max_length = config.max_length``.
        config: the settings written to ``gumbel_rerank.json``.
        path: target directory (created with its parents if needed).
        state_dict: optional weights to write instead of the live parameters; keys may carry
            an ``hf_model.`` prefix.
        card: the model card (``README.md``); None writes a card of the reranker alone (its
            settings, base model and loading snippets), which a training run later fills in.

    Returns:
        The path written.
    """
    path = Path(path)
    if card is None:
        card = ModelCard(config, base_model=getattr(hf_model.config, "_name_or_path", None) or None)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"Cannot save a reranker to {path}: it exists and is a file.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()  # respects the umask, unlike tempfile.mkdtemp (0700)
    try:
        _write_directory(hf_model, tokenizer, config, tmp, state_dict)
        write_card_files(tmp, card)
        _fsync_tree(tmp)
        _replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_directory(
    hf_model: nn.Module,
    tokenizer: Any,
    config: RerankerConfig,
    directory: Path,
    state_dict: Mapping[str, Tensor] | None,
) -> None:
    """Write the three parts into ``directory`` (no atomicity here; see :func:`save_directory`)."""
    if state_dict is not None:
        prefix = "hf_model."
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
        state_dict = dict(state_dict)
    hf_model.save_pretrained(directory, state_dict=state_dict)
    _save_tokenizer(tokenizer, directory, config.max_length)
    _write_settings(directory, config)


def write_card_files(directory: Path, card: ModelCard) -> None:
    """``README.md`` (the card) and, for a cross-encoder, sentence-transformers' files."""
    import torch
    import transformers


    versions = {"pytorch": torch.__version__, "transformers": transformers.__version__}
    for name, text in sentence_transformers_files(card.config, versions).items():
        write_atomic(directory / name, text + "\n")
    write_atomic(directory / CARD_NAME, render(card))


def _save_tokenizer(tokenizer: Any, directory: Path, max_length: int) -> None:
    """Save the tokenizer with model_max_length = max_length, leaving the live object unchanged."""
    previous = tokenizer.model_max_length
    tokenizer.model_max_length = max_length
    try:
        tokenizer.save_pretrained(directory)
    finally:
        tokenizer.model_max_length = previous


def _write_settings(directory: Path, config: RerankerConfig) -> None:
    """Write ``gumbel_rerank.json``: the config fields, the format and the package version."""
    from gumbel_rerank import __version__

    data = {
        **config.to_dict(),
        "format_version": SETTINGS_FORMAT_VERSION,
        "gumbel_rerank_version": __version__,
    }
    (directory / SETTINGS_NAME).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _fsync_tree(directory: Path) -> None:
    """Flush every file (and the directory entries) so the rename publishes durable content."""
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(root))


def _replace_directory(src: Path, dst: Path) -> None:
    """Move the complete directory ``src`` to ``dst``, replacing any existing ``dst``.

    rename(2) cannot replace a non-empty directory, so an existing ``dst`` is first moved aside
    and removed only after ``src`` is in place (and moved back if that fails).
    """
    if not dst.exists():
        os.replace(src, dst)
        fsync_dir(dst.parent)
        return
    backup = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:12]}"
    os.replace(dst, backup)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(backup, dst)
        raise
    fsync_dir(dst.parent)
    shutil.rmtree(backup, ignore_errors=True)


# ---------------------------------------------------------------------- loading
def read_settings(directory: Path) -> dict[str, Any] | None:
    """The RerankerConfig fields of ``directory/gumbel_rerank.json``, or None without one.

    A newer ``format_version`` only warns (the known fields are loaded); invalid JSON or a
    non-object raises ValueError naming the file.
    """
    file = directory / SETTINGS_NAME
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON ({err}); fix or delete it.") from err
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object of RerankerConfig fields.")
    version = data.pop("format_version", SETTINGS_FORMAT_VERSION)
    data.pop("gumbel_rerank_version", None)
    if not isinstance(version, int) or version > SETTINGS_FORMAT_VERSION:
        logger.warning(
            "%s has format_version %s, newer than this package understands (%s); loading the "
            "known fields.",
            file,
            version,
            SETTINGS_FORMAT_VERSION,
        )
    return data


def load_components(
    path: str | os.PathLike,
    config: RerankerConfig | None,
    model_kwargs: dict[str, Any] | None,
    overrides: dict[str, Any],
) -> tuple[nn.Module, Any, RerankerConfig]:
    """Read a local reranker directory into ``(hf_model, tokenizer, config)``.

    Settings: ``config`` if given, else ``gumbel_rerank.json``, else the defaults for the kind
    detected from ``config.json``; ``overrides`` (RerankerConfig field names) are applied last.
    See :meth:`gumbel_rerank.rerankers.model.Reranker.from_pretrained` for the full contract.
    """
    from transformers import AutoConfig

    path = _check_model_directory(path)
    settings = read_settings(path)
    if config is None:
        config = RerankerConfig.from_dict(settings) if settings is not None else None
    elif not isinstance(config, RerankerConfig):
        raise TypeError(f"config must be a RerankerConfig, got {type(config).__name__}.")
    hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    config = _resolve_config(path, hf_config, config, overrides)
    model = _load_model(path, hf_config, config.kind, dict(model_kwargs or {}))
    return model, _load_tokenizer(path), config


def _check_model_directory(path: str | os.PathLike) -> Path:
    """``path`` as a Path, after checking it is a local directory with a ``config.json``."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"Reranker directory {str(path)!r} does not exist. from_pretrained loads local "
            "directories only; download hub models first (e.g. `hf download <repo> "
            "--local-dir DIR`)."
        )
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(path)!r} has no config.json, so it is not a Hugging Face model directory "
            "(expected config.json, model weights and tokenizer files)."
        )
    return path


def _resolve_config(
    path: Path, hf_config: Any, config: RerankerConfig | None, overrides: dict[str, Any]
) -> RerankerConfig:
    """The final settings: defaults for the detected kind, then ``overrides``; kinds must agree."""
    kind = kind_of(hf_config)
    if config is None:
        config = RerankerConfig(kind=kind)
    if overrides:
        known = {f.name for f in dataclasses.fields(RerankerConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(
                f"Unknown reranker setting(s) {unknown}; valid ones are {sorted(known)} "
                "(model loading options go in model_kwargs=...)."
            )
        config = dataclasses.replace(config, **overrides)
    if config.kind != kind:
        raise ValueError(
            f"Settings ask for kind={config.kind!r} but {str(path)!r} holds a "
            f"{hf_config.model_type!r} model, which is scored as {kind!r}."
        )
    return config


class WeightsError(ValueError):
    """A reranker directory whose weights cannot be read safely (e.g. a pickle that would run
    code); the message names the directory and why."""


def _load_model(path: Path, hf_config: Any, kind: str, model_kwargs: dict[str, Any]) -> nn.Module:
    """The HF model of ``path`` (see :func:`_load_hf_model`); a weights file that holds code
    (a pickle that torch's ``weights_only`` loader refuses) or cannot be unpickled raises
    :class:`WeightsError` naming the directory, never torch's raw ``UnpicklingError``."""
    import pickle

    try:
        return _load_hf_model(path, hf_config, kind, model_kwargs)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path}: refused to load the weights: the pickle holds more than tensors (torch's "
            f"weights_only loader never runs code; convert the file to safetensors): {err}"
        ) from err


def _load_hf_model(path: Path, hf_config: Any, kind: str, model_kwargs: dict[str, Any]) -> nn.Module:
    """The HF model of ``path``: seq2seq for RankT5, a sequence classifier for cross-encoders.

    A backbone without a classification head gets a fresh one-logit head (with a warning).
    """
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    if kind == "rankt5":
        return AutoModelForSeq2SeqLM.from_pretrained(
            path, config=hf_config, local_files_only=True, **model_kwargs
        )
    architectures = getattr(hf_config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        # A bare backbone's config says num_labels=2 only because that is the
        # PretrainedConfig default; a reranker wants a single logit.
        logger.warning(
            "%s holds %s, not a sequence classifier: adding a new one-logit head "
            "(randomly initialised; train before use).",
            path,
            architectures or "a backbone",
        )
        hf_config.num_labels = 1
    elif hf_config.num_labels not in (1, 2):
        raise ValueError(
            f"{str(path)!r} is a classifier with num_labels={hf_config.num_labels}; a "
            "reranker supports num_labels=1 (score = logit) or 2 (score = logit[1] - "
            "logit[0])."
        )
    return AutoModelForSequenceClassification.from_pretrained(
        path, config=hf_config, local_files_only=True, **model_kwargs
    )


def _load_tokenizer(path: Path) -> Any:
    """The tokenizer saved in ``path``; FileNotFoundError naming the path when it has none."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f"Could not load a tokenizer from {str(path)!r} ({err}); the directory needs the "
            "tokenizer files (tokenizer.json / tokenizer_config.json)."
        ) from err
