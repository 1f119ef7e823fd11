"""The Arrow cache behind :func:`gumbel_rerank.data.questions.load_questions`.

A question file is validated record by record (:class:`gumbel_rerank.data.records.Validator`)
and the normalised rows are written in batches to an Arrow file (the IPC stream format
``datasets`` itself uses, with the ``datasets.Features`` in the schema metadata), which
``datasets.Dataset.from_file`` then memory-maps. (``Dataset.from_generator`` would do the same,
but its per-example feature encoding was ~60% of the load time, 6 of 14 s on 50k records;
``pyarrow.Table.from_pylist`` on batches takes 0.1 s.)

The cache key (:func:`fingerprint`) is built from the file (absolute path, size, modification
time, a hash of its first and last MiB), the loading options and the source of the loader's
modules, so a changed file (or a changed loader) is re-read, and an unchanged one is not. The
Arrow file is written under a temporary name and renamed into place when complete, next to a
``report.json`` of what was skipped; a present Arrow file means a completed load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gumbel_rerank.data.jsonstream import (
    MAX_MESSAGE_LINES,
    DataError,
    UnreadableFile,
    read_records,
)
from gumbel_rerank.data.linefiles import file_fingerprint
from gumbel_rerank.data.records import Validator
from gumbel_rerank.durable import write_atomic

__all__ = [
    "MAX_PROBLEMS",
    "MAX_SKIPPED_MESSAGES",
    "CacheReport",
    "build",
    "features",
    "fingerprint",
]

#: Without ``skip_invalid`` the loader keeps validating after the first bad record, so one run
#: reports many problems at once, but stops after this many (a wrong file would list millions).
MAX_PROBLEMS = 100
#: With ``skip_invalid`` every skipped record is counted, but only this many messages are kept.
MAX_SKIPPED_MESSAGES = 1000

# Rows buffered as Python objects before each Arrow write: at most this many rows or this much
# JSON text, whichever comes first.
_WRITER_BATCH_ROWS = 1000
_WRITER_BATCH_CHARS = 16 << 20
_SCHEMA_VERSION = 2  # 2: passage role, named targets
#: The modules whose code decides what a load produces: a change to any invalidates the cache.
_LOADER_SOURCES = ("questions.py", "records.py", "cache.py", "jsonstream.py", "answers.py")
REPORT_NAME = "report.json"


@dataclass
class CacheReport:
    """What a load read: records in the file, records skipped (``skip_invalid``) and the kept
    skip messages (at most ``MAX_SKIPPED_MESSAGES``). Stored next to the Arrow file."""

    num_records: int = 0
    num_skipped: int = 0
    skipped: list[str] = field(default_factory=list)


def features() -> Any:
    """The ``datasets.Features`` of a cached question row (its Arrow schema is the file's)."""
    from datasets import Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "question": Value("string"),
            "target": Value("string"),
            "targets": List({"name": Value("string"), "text": Value("string")}),
            "answers": List(Value("string")),
            "gold_source": Value("string"),
            "gold_indices": List(Value("int32")),
            "answer_passages": List(Value("int32")),
            "passages": List(
                {
                    "title": Value("string"),
                    "text": Value("string"),
                    "gold": Value("bool"),
                    "id": Value("string"),
                    "score": Value("float64"),
                    "role": Value("string"),
                }
            ),
        }
    )


def fingerprint(path: Path, options: dict) -> str:
    """The cache key of loading ``path`` with ``options``: the file's content key
    (:func:`gumbel_rerank.data.linefiles.file_fingerprint`), the options, and the loader's own
    source, so that a fix in validation or normalisation invalidates old caches."""
    key = {"file": file_fingerprint(path), "options": options, "schema": _SCHEMA_VERSION}
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    here = Path(__file__).resolve().parent
    for name in _LOADER_SOURCES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:32]


class _Batches:
    """Rows buffered, then written to the Arrow stream in batches bounded by rows and by text
    size, so a few huge records (100 long passages each) do not pile up as Python objects."""

    def __init__(self, writer: Any, schema: Any):
        self.writer, self.schema = writer, schema
        self.rows: list[dict] = []
        self.chars = 0

    def add(self, row: dict, size: int) -> None:
        """Buffer one row (``size``: characters of its JSON text); write when the batch is full."""
        self.rows.append(row)
        self.chars += size
        if len(self.rows) >= _WRITER_BATCH_ROWS or self.chars >= _WRITER_BATCH_CHARS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows, if any."""
        import pyarrow as pa

        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows, self.chars = [], 0


def _validate_all(
    path: Path, display: str, start: int, options: dict, batches: _Batches
) -> tuple[CacheReport, list[str], int]:
    """Validate every record; valid ones go to ``batches`` while there is no problem.

    Returns (report, problems, number of rows kept). Problems are collected (up to
    ``MAX_PROBLEMS``) unless ``skip_invalid``, which skips and counts invalid records instead.
    """
    skip_invalid = options["skip_invalid"]
    validator = Validator(display, options["gold_field"], options["max_passages"], options["score_field"])
    report = CacheReport()
    problems: list[str] = []
    kept = 0
    with contextlib.closing(read_records(path, display, start)) as records:
        try:
            for raw in records:
                report.num_records += 1
                row, errs = validator(raw)
                if errs and skip_invalid:
                    report.num_skipped += 1
                    room = MAX_SKIPPED_MESSAGES - len(report.skipped)
                    report.skipped.extend(errs[: max(room, 0)])
                elif errs:
                    problems.extend(errs)
                    if len(problems) >= MAX_PROBLEMS:
                        problems.append(f"{display}: stopped after {MAX_PROBLEMS} problems")
                        break
                elif not problems:  # once the load fails, keep validating but stop writing
                    kept += 1
                    batches.add(row, raw.size)
        except UnreadableFile as e:
            raise DataError([*problems, *e.problems]) from None
    if not problems:
        batches.flush()
    return report, problems, kept


def build(path: Path, display: str, start: int, options: dict, out: Path) -> CacheReport:
    """Validate every record of ``path`` and write the valid ones to the Arrow file ``out``
    (``start``: the data's byte offset, as :func:`gumbel_rerank.data.jsonstream.sniff` found).

    Raises:
        DataError: invalid records (without ``skip_invalid``), a broken JSON list, or nothing
            to keep.
    """
    import pyarrow as pa

    schema = features().arrow_schema  # carries the datasets Features in its metadata
    # Unique temporary name, renamed into place when complete: a crash or a concurrent loader
    # (e.g. one per DDP rank) never leaves or reads a half-written cache file.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            batches = _Batches(writer, schema)
            report, problems, kept = _validate_all(path, display, start, options, batches)
        if problems:
            raise DataError(problems)
        if kept == 0:
            if report.num_skipped:
                what = f"no valid records ({report.num_skipped} skipped)"
            else:
                what = "no records"
            raise DataError([f"{display}: {what}", *report.skipped[:MAX_MESSAGE_LINES]])
        # Report first: the Arrow file's presence means the load completed (see load_questions).
        write_atomic(out.with_name(REPORT_NAME), json.dumps(report.__dict__))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report
