"""Runs of the tuning protocol kept as records, so its results outlive its run folders.

A protocol is hours of training; its run folders (checkpoints, weights) are large and live
on one machine, while ``protocol.json`` is small and can be committed or copied. Each run the
protocol finishes is recorded there with the configuration it was trained with
(:func:`record_config`: every key of its run config, the files it read as content digests,
not paths), and each final run with its test report. A later protocol that would train the
same run (same objective, settings, seed, budget, data, reader and reranker start) takes the
record instead of training again when the folder is gone: from its own ``protocol.json`` or
from ``tune.records`` (e.g. the committed state of an earlier session, or a part of the
protocol run on another machine). A final run's record is taken only when its test report is
of the same test questions (content, count, cut-offs, groups).

Matching follows the run-folder rule of :func:`~.compare.check_same_settings`: a key added
to the config after a record was made is read at its default (the project keeps a new key's
default at the old behaviour), every other difference refuses the record.

Records made before run configs were recorded (no ``config``) are adopted only from a state
whose budget and dev metric equal this protocol's and whose test file had the same content
(which tells the demo's data settings apart), for the same objective (name and search space),
settings and seed. An adopted record keeps what it was matched by (``adopted``), never a
config it was not trained with, so every later protocol checks it the same way, and the
report counts such runs.

Every state also carries the records it was given but has not reached again (``carried``),
so an interrupted call that rewrites ``protocol.json`` loses none of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from gumbel_rerank.config import config_differences, flatten, to_dict
from gumbel_rerank.envinfo import package_commit_at
from gumbel_rerank.training.compare import RESUMABLE_KEYS, UNTRAINED, file_digest
from gumbel_rerank.training.config import TrainConfig
from gumbel_rerank.training.loop import versions_segments

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
    "objective.settings.teacher_run",
)

#: What identifies the test questions a report was computed on (its ``compare`` section).
TEST_KEYS = ("test_content", "questions", "ks", "k", "groups")


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
    relative name and content), or ``missing:<path>`` (e.g. a hub id: compared by name).
    Cached per path while no file in it changes (size and modification time)."""
    target = Path(path)
    if not target.exists():
        return f"missing:{path}"
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    signature = json.dumps([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files])
    return _digest(str(target.resolve()), signature)


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


#: What a versions file says when it cannot name a run's code or device.
UNKNOWN = "unknown"


def made_by(folder: Path) -> dict[str, str]:
    """Which code (version, git commit of the package) and device trained the run in
    ``folder``, read from the versions files its training wrote (``versions.json``, and
    ``versions.resumed-at-N.json`` for each resume), never from the process asking: a run
    finished by earlier code keeps that code's name. A commit that changed within the run is
    named with the step it took over from (``"a; from step 219: b"``); steps no file covers
    (a run resumed from a copied checkpoint) are ``unknown``. Folders written before the
    package commit was recorded hold the checkout's HEAD, named as in :func:`commit_names`;
    their device is "cpu" where the machine had no CUDA, else unknown.

    Raises:
        ValueError: a versions file that is not a JSON object (named).
    """
    versions: list[tuple[int, dict[str, Any]]] = []
    for step, path in versions_segments(folder):
        try:
            info = json.loads(path.read_text())
        except ValueError as err:
            info = f"not JSON ({err})"
        if not isinstance(info, dict):
            raise ValueError(f"{path}: {info if isinstance(info, str) else 'not a JSON object'}; it records which code "
                             "trained the run: restore it, or delete it to record that code as unknown")
        versions.append((step, info))
    if not versions or versions[0][0] != 0:
        versions.insert(0, (0, {}))
    commits: list[tuple[int, str]] = []
    for step, info in versions:
        commit = commit_names(str(info.get("git commit") or UNKNOWN))
        if not commits or commits[-1][1] != commit:
            commits.append((step, commit))
    first = versions[0][1]
    device = first.get("device") or ("cpu" if first.get("cuda available") == "False" else UNKNOWN)
    return {
        "gumbel_rerank": str(first.get("gumbel_rerank") or UNKNOWN),
        "commit": "; ".join(c if i == 0 else f"from step {step}: {c}" for i, (step, c) in enumerate(commits)),
        "device": str(device),
    }


def commit_names(text: str) -> str:
    """``text`` with every commit id in it (7 to 40 hex digits, ``+dirty`` kept) replaced by
    the package's last commit at that commit (12 digits,
    :func:`~gumbel_rerank.envinfo.package_commit_at`), so a HEAD recorded by older code, or a
    short id, names the code the same way :func:`~gumbel_rerank.envinfo.code_commit` does
    and one code never reads as several commits. Ids this checkout does not know are kept."""
    return re.sub(r"\b[0-9a-f]{7,40}\b", lambda m: package_commit_at(m.group()), text)


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    return json.loads(json.dumps(flatten(to_dict(TrainConfig()))))


def record_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``["key: old -> new", ...]`` between a record's config and the current run's; a key
    the record lacks is read at today's default (it was added after the record was made)."""
    defaults = _defaults()
    old = {**{k: defaults[k] for k in current if k in defaults}, **recorded}
    return config_differences(dict(old), dict(current))


def test_identity(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The :data:`TEST_KEYS` of a test report's ``compare`` section (None without one)."""
    section = (report or {}).get("compare")
    return {k: section.get(k) for k in TEST_KEYS} if isinstance(section, Mapping) else None


@dataclass
class RunQuery:
    """A run the protocol is about to train, as records are matched against it.

    Attributes:
        config: :func:`record_config` of its run config.
        label: the objective's label in ``compare.objectives``; ``name``: its registry name;
            ``space``: its search space (dotted key -> values, JSON-normalised).
        settings: the trial's settings; ``seed``: the run's seed.
        test: for a final run, :func:`test_identity` of the test questions it will be judged
            on (a record without a report of those is of no use: its weights may be gone);
            None for a trial.
        context: budget, dev metric and the test file's digest: what a record without a config
            must share to be adopted.
    """

    config: dict[str, Any]
    label: str
    name: str
    space: dict[str, Any]
    settings: dict[str, Any]
    seed: int
    test: dict[str, Any] | None
    context: dict[str, Any]


@dataclass
class Records:
    """Finished runs a protocol may take instead of training (module docstring).

    Attributes:
        entries: ``{"summary": ...}`` for runs with a config; for the others also what they
            are matched by (``label``, ``name``, ``space``, ``settings``, ``seed``,
            ``context``).
        sources: the files read, for messages.
    """

    entries: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    _taken: set[int] = field(default_factory=set)

    def add(self, entry: dict[str, Any]) -> None:
        """Add ``entry`` unless an equal one is there."""
        if entry not in self.entries:
            self.entries.append(entry)

    def find(self, query: RunQuery) -> dict[str, Any] | None:
        """The summary of a record of ``query``'s run (a copy, "adopted" for a record without a
        config), or None. A trial's copy drops any test report (a final taken as a trial)."""
        for index, entry in enumerate(self.entries):
            summary = entry["summary"]
            if query.test is not None and test_identity(summary.get("test")) != query.test:
                continue
            if "config" in summary:
                if record_differences(summary["config"], query.config):
                    continue
            elif not _same_run(entry, query):
                continue
            self._taken.add(index)
            found = json.loads(json.dumps(summary))
            if "config" not in found:
                found["adopted"] = {k: entry[k] for k in ("label", "name", "space", "settings", "seed", "context")}
            if query.test is None:
                found.pop("test", None)
            return found
        return None

    def carried(self) -> list[dict[str, Any]]:
        """The records not taken by this call: kept in the state it writes."""
        return [e for i, e in enumerate(self.entries) if i not in self._taken]


def _same_run(entry: Mapping[str, Any], query: RunQuery) -> bool:
    """A record without a config matches only the same objective, settings, seed, budget,
    metric and test file content (the last unknown: no match)."""
    if not entry["context"].get("test_content") or entry["context"] != query.context:
        return False
    return all(entry[k] == getattr(query, k) for k in ("label", "name", "space", "settings", "seed"))


def state_entries(state: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """The record entries of a ``protocol.json`` state: every trial and final run (a final's
    test report kept beside it by states made before finals carried it joined in), then the
    state's ``carried`` records."""
    budget = state.get("budget") or {}
    untrained = state.get("test", {}).get(UNTRAINED) or {}
    context = {
        "budget": budget,
        "metric": state.get("metric"),
        "test_content": (untrained.get("compare") or {}).get("test_content"),
    }
    old_tests = state.get("test", {})
    for label, record in state.get("objectives", {}).items():
        runs = [(t["settings"], budget.get("tuning_seed"), t, None) for t in record.get("trials", [])]
        if "chosen" in record:
            chosen = record["trials"][record["chosen"]]["settings"]
            runs += [(chosen, int(seed), final, old_tests.get(label, {}).get(seed)) for seed, final in record.get("finals", {}).items()]
        for settings, seed, run, old_test in runs:
            summary = {k: v for k, v in run.items() if k != "settings"}
            if "test" not in summary and old_test is not None:
                summary["test"] = old_test
            if "config" in summary:
                yield {"summary": summary}
            elif "adopted" in summary:  # keeps what it was adopted by
                yield {**summary["adopted"], "summary": {k: v for k, v in summary.items() if k != "adopted"}}
            else:
                yield {
                    "label": label,
                    "name": record.get("name"),
                    "space": record.get("space"),
                    "settings": settings,
                    "seed": seed,
                    "context": context,
                    "summary": summary,
                }
    yield from state.get("carried", [])


def load_records(paths: Sequence[str | Path]) -> Records:
    """The records of the ``protocol.json`` files at ``paths`` (missing files skipped: a
    protocol's own state does not exist on its first call). A file that is not a protocol
    state is a ValueError naming it."""
    records = Records()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        try:
            entries = list(state_entries(json.loads(path.read_text())))
            for entry in entries:
                if not isinstance(entry.get("summary"), dict):
                    raise TypeError("a run without a summary")
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}: not a protocol.json of `compare --tune` ({err!r})") from err
        records.sources.append(str(path))
        for entry in entries:
            records.add(entry)
    return records
