"""Runs of the tuning protocol kept as records, so its results outlive its run folders.

A protocol is hours of training; its run folders (checkpoints, weights) are large and live
on one machine, while ``protocol.json`` is small and can be committed or copied. Each run the
protocol finishes is recorded there with the configuration it was trained with
(:func:`record_config`: every key of its run config, the files it read as content digests,
not paths). A later protocol that would train the same run (same objective, settings, seed,
budget, data, reader and reranker start) takes the record instead of training again when the
folder is gone: from its own ``protocol.json`` or from ``tune.records`` (e.g. the committed
state of an earlier session, or a part of the protocol run on another machine).

Matching follows the run-folder rule of :func:`~.compare.check_same_settings`: a key added
to the config after a record was made is read at its default (the project keeps a new key's
default at the old behaviour), every other difference refuses the record.

Records made before run configs were recorded (no ``config``) are matched by objective label,
settings and seed, and only from a ``protocol.json`` whose budget and dev metric equal this
protocol's; each such record is marked ``adopted`` and the report counts them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from gumbel_rerank.config import config_differences, to_dict
from gumbel_rerank.training.compare import RESUMABLE_KEYS, file_digest
from gumbel_rerank.training.config import TrainConfig

#: Run-config keys that name a file or folder: a record keeps what was read there (its
#: content's digest), so the same data under another path matches and other data does not.
PATH_KEYS = (
    "data.train",
    "data.dev",
    "reader.path",
    "reader.tokenizer",
    "reader.base_config",
    "reranker.path",
    "run.deepspeed",
)


@lru_cache(maxsize=64)
def _digest(path: str, signature: str) -> str:
    target = Path(path)
    if target.is_file():
        return f"sha1:{file_digest(target)}"
    digest = hashlib.sha1()
    for item in sorted(p for p in target.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(target).as_posix()}\0{file_digest(item)}\0".encode())
    return f"sha1-dir:{digest.hexdigest()}"


def path_digest(path: str) -> str:
    """``sha1:<hex>`` of a file's content, ``sha1-dir:<hex>`` of a folder's (every file's
    relative name and content), or ``missing:<path>``. Cached per path while no file in it
    changes (size and modification time)."""
    target = Path(path)
    if not target.exists():
        return f"missing:{path}"
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    signature = json.dumps([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files])
    return _digest(str(target.resolve()), signature)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def record_config(cfg: TrainConfig) -> dict[str, Any]:
    """What a record says its run was trained with: the flat run config (dotted keys),
    without the keys a run may change on resuming (:data:`~.compare.RESUMABLE_KEYS`: output
    folder, device, ...), each of :data:`PATH_KEYS` replaced by the digest of what it names.
    JSON-normalised (lists, not tuples), so a record read back compares equal."""
    flat = {k: v for k, v in flatten(to_dict(cfg)).items() if k not in RESUMABLE_KEYS}
    for key in PATH_KEYS:
        if flat.get(key):
            flat[key] = path_digest(str(flat[key]))
    return json.loads(json.dumps(flat))


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    return json.loads(json.dumps(flatten(to_dict(TrainConfig()))))


def record_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``["key: old -> new", ...]`` between a record's config and the current run's; a key
    the record lacks is read at today's default (it was added after the record was made)."""
    defaults = _defaults()
    old = {**{k: defaults[k] for k in current if k in defaults}, **recorded}
    return config_differences(dict(old), dict(current))


@dataclass
class Records:
    """Finished runs a protocol may take instead of training (module docstring).

    Attributes:
        keyed: run summaries that carry their ``config``.
        legacy: (label, settings as sorted JSON, seed) -> summary, for records without a
            config from states whose budget and metric equal this protocol's.
        sources: the files read, for messages.
    """

    keyed: list[dict[str, Any]] = field(default_factory=list)
    legacy: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def find(
        self, config: Mapping[str, Any], label: str, settings: Mapping[str, Any], seed: int, need_test: bool = False
    ) -> dict[str, Any] | None:
        """The record of the run ``config`` (a copy, marked ``adopted`` when matched by
        label, settings and seed), or None. ``need_test``: only a record with its test report
        (a final run's weights are gone with its folder, so one never evaluated is of no use)."""
        for summary in self.keyed:
            if (not need_test or "test" in summary) and not record_differences(summary["config"], config):
                return dict(summary)
        legacy = self.legacy.get((label, json.dumps(dict(settings), sort_keys=True), seed))
        if legacy is None or (need_test and "test" not in legacy):
            return None
        return {**legacy, "config": dict(config), "adopted": True}


def state_runs(state: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], int, dict[str, Any]]]:
    """(label, settings, seed, summary) of every run a ``protocol.json`` state records; a
    final's test report (kept beside it by states made before finals carried it) joined in."""
    runs = []
    tuning_seed = state.get("budget", {}).get("tuning_seed")
    old_tests = state.get("test", {})
    for label, record in state.get("objectives", {}).items():
        for trial in record.get("trials", []):
            settings = trial["settings"]
            runs.append((label, settings, tuning_seed, {k: v for k, v in trial.items() if k != "settings"}))
        if "chosen" not in record:
            continue
        chosen = record["trials"][record["chosen"]]["settings"]
        for seed, final in record.get("finals", {}).items():
            summary = dict(final)
            if "test" not in summary and seed in old_tests.get(label, {}):
                summary["test"] = old_tests[label][seed]
            runs.append((label, chosen, int(seed), summary))
    return runs


def load_records(paths: Sequence[str | Path], budget: Mapping[str, Any], metric: str) -> Records:
    """The records of the ``protocol.json`` files at ``paths`` (missing files skipped: a
    protocol's own state does not exist on its first call). A file that is not a protocol
    state is a ValueError naming it."""
    records = Records()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        try:
            state = json.loads(path.read_text())
            runs = state_runs(state)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}: not a protocol.json of `compare --tune` ({err})") from err
        records.sources.append(str(path))
        same_budget = state.get("budget") == json.loads(json.dumps(dict(budget))) and state.get("metric") == metric
        for label, settings, seed, summary in runs:
            if "config" in summary:
                records.keyed.append(summary)
            elif same_budget and seed is not None:
                records.legacy.setdefault((label, json.dumps(dict(settings), sort_keys=True), int(seed)), summary)
    return records
