"""Loading questions with candidate passages (method.md section 7) into typed, memory-mapped sets.

Input: one JSON object per question, either a JSON list (``[{...}, {...}]``) or JSON lines (one
object per line); the two are told apart by the first non-whitespace character (``[`` or ``{``).
A record looks like::

    {"id": "0", "question": "...", "target": "Polonium", "answers": ["Polonium", "Po"],
     "ctxs": [{"title": "Marie Curie", "text": "...", "id": "123", "score": 71.2}, ...]}

Files can be far larger than memory. :func:`load_questions` streams the records
(:mod:`gumbel_rerank.data.jsonstream`: JSONL line by line; a JSON list through an incremental
decoder over a rolling buffer), validates each one (:mod:`gumbel_rerank.data.records`, which also
decides the gold passages), and writes the normalised records in batches to an Arrow file in the
cache (:mod:`gumbel_rerank.data.cache`), then opens it with ``datasets.Dataset.from_file``,
memory-mapped. :class:`QuestionSet` is a thin typed view over that dataset. The cache key is
built from the file's absolute path, size, modification time, a hash of its first and last MiB,
the loading options and the source of the loader, so a changed file (or a changed loader) is
re-read, and an unchanged one is not.

Validation errors read ``FILE:RECORD: FIELD: what is wrong`` (for example
``data/dev.jsonl:17: ctxs[3].text: expected a string, got null``). ``RECORD`` is the 1-based
line number in a JSONL file and the 0-based list index in a JSON list. Problems that are not
about one field use the pseudo-field ``<record>`` (bad JSON, bad UTF-8, not an object), and
problems with the file as a whole read ``FILE: what is wrong``.

Gold passages are decided per question by the first rule that applies: a per-passage flag,
supporting titles, answer containment, or none (``Question.gold_source``; the rules in detail are
in :mod:`gumbel_rerank.data.records`). A question whose gold rule found no gold passage keeps its
``gold_source`` and has empty ``gold_indices``; evaluation should count and exclude such
questions (:func:`count_without_gold`, :meth:`QuestionSet.with_gold`) rather than score them 0.
"""

from __future__ import annotations

import json
import logging
import operator
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gumbel_rerank.data.cache import (
    MAX_PROBLEMS,
    MAX_SKIPPED_MESSAGES,
    REPORT_NAME,
    CacheReport,
    build,
    fingerprint,
)
from gumbel_rerank.data.jsonstream import DataError, describe_type, open_input, sniff
from gumbel_rerank.data.records import GOLD_FLAG_FIELDS, GOLD_SOURCES, Passage, Question

__all__ = [
    "GOLD_FLAG_FIELDS",
    "GOLD_SOURCES",
    "MAX_PROBLEMS",
    "MAX_SKIPPED_MESSAGES",
    "DataError",
    "Passage",
    "Question",
    "QuestionSet",
    "count_without_gold",
    "describe_type",
    "load_questions",
    "open_input",
]

logger = logging.getLogger(__name__)

_CACHE_SUBDIR = "gumbel_rerank_questions"
_ARROW_NAME = "questions.arrow"


def _row_to_question(row: dict[str, Any]) -> Question:
    return Question(
        id=row["id"],
        question=row["question"],
        target=row["target"],
        targets=tuple((t["name"], t["text"]) for t in row.get("targets") or ()),
        answers=tuple(row["answers"]),
        passages=tuple(Passage(**p) for p in row["passages"]),
        gold_source=row["gold_source"],
        answer_passages=tuple(row["answer_passages"]),
    )


class QuestionSet:
    """Questions backed by a memory-mapped Arrow dataset (``.dataset``).

    Supports ``len()``, indexing (an int gives a :class:`Question`, a slice a ``QuestionSet``),
    iteration and :meth:`select`. ``skipped`` / ``num_skipped`` / ``num_records`` report the load
    that produced the set (with ``skip_invalid=True``): the kept messages (at most
    ``MAX_SKIPPED_MESSAGES``), the number of skipped records and the number read from the file.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        path: str = "",
        skipped: Sequence[str] = (),
        num_skipped: int = 0,
        num_records: int | None = None,
    ):
        self.dataset = dataset
        self.path = path
        self.skipped = list(skipped)
        self.num_skipped = num_skipped
        self.num_records = len(dataset) + num_skipped if num_records is None else num_records

    def __len__(self) -> int:
        """Number of questions."""
        return len(self.dataset)

    def __getitem__(self, index: int | slice) -> Question | QuestionSet:
        """The question at ``index`` (negative counts from the end); a slice gives a set."""
        if isinstance(index, slice):
            return self.select(range(*index.indices(len(self))))
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"question index {index} out of range for {n} questions")
        return _row_to_question(self.dataset[i])

    def __iter__(self) -> Iterator[Question]:
        """The questions in order, read in batches."""
        # Batched reads: one Arrow slice per batch instead of one per question.
        for batch in self.dataset.iter(batch_size=64):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys), strict=True):
                yield _row_to_question(dict(zip(keys, values, strict=True)))

    def __repr__(self) -> str:
        """Size and source file."""
        return f"QuestionSet({len(self)} questions from {self.path or '<memory>'!r})"

    def select(self, indices: Iterable[int]) -> QuestionSet:
        """The questions at ``indices`` (an iterable of ints), as a new set over the same data."""
        return QuestionSet(
            self.dataset.select(list(indices)),
            path=self.path,
            skipped=self.skipped,
            num_skipped=self.num_skipped,
            num_records=self.num_records,
        )

    @property
    def ids(self) -> list[str]:
        """Question ids, in order."""
        return list(self.dataset.select_columns(["id"]).with_format("arrow")[:]["id"].to_pylist())

    def without_gold_indices(self) -> list[int]:
        """Positions of questions with no gold passage (to be counted and excluded)."""
        import pyarrow.compute as pc

        out: list[int] = []
        offset = 0
        column = self.dataset.select_columns(["gold_indices"]).with_format("arrow")
        for batch in column.iter(batch_size=8192):
            lengths = pc.list_value_length(batch["gold_indices"]).to_numpy(zero_copy_only=False)
            out.extend(int(offset + j) for j in (lengths == 0).nonzero()[0])
            offset += len(lengths)
        return out

    @property
    def num_without_gold(self) -> int:
        """Number of questions with no gold passage."""
        return len(self.without_gold_indices())

    def with_gold(self) -> QuestionSet:
        """Only the questions that have at least one gold passage."""
        missing = set(self.without_gold_indices())
        return self.select(i for i in range(len(self)) if i not in missing)


def count_without_gold(qs: QuestionSet) -> int:
    """Number of questions in ``qs`` without any gold passage (excluded from reranker metrics)."""
    return qs.num_without_gold


def _default_cache_dir() -> Path:
    """The datasets cache (``HF_DATASETS_CACHE``), root of the default question cache."""
    from datasets import config

    return Path(config.HF_DATASETS_CACHE)


def load_questions(
    path: str | os.PathLike,
    *,
    gold_field: str | None = None,
    skip_invalid: bool = False,
    max_passages: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    score_field: str = "score",
) -> QuestionSet:
    """Load and validate a question file (JSON list or JSONL) into a memory-mapped QuestionSet.

    The file is streamed (never held in memory) and validated record by record; valid records
    are written to an Arrow file under ``cache_dir`` and memory-mapped. A later call with the
    same file (absolute path, size, mtime, head/tail bytes) and options reuses that file.

    Args:
        path: the file. Format detected from the first non-whitespace character.
        gold_field: per-passage flag naming gold passages; if None, the first of
            ``GOLD_FLAG_FIELDS`` present in each record is used, then supporting titles, then
            answer containment (module docstring). If given, a record where no passage carries
            it is invalid.
        skip_invalid: skip invalid records instead of raising; the set's ``skipped`` /
            ``num_skipped`` report them and one warning line is logged. Syntax and encoding
            errors in a JSON *list* remain fatal (the list cannot be resynchronised after them).
        max_passages: keep only the first N passages of each question (the rest is not
            validated).
        score_field: the per-passage numeric field read as ``Passage.score`` (default the
            retriever's ``score``; e.g. a teacher's scores for KD).
        cache_dir: root of the Arrow cache (default: the datasets cache, ``HF_DATASETS_CACHE``);
            files go to ``<cache_dir>/gumbel_rerank_questions/<fingerprint>/``.

    Raises:
        DataError: missing/unreadable/empty file, not JSON, or invalid records. Messages read
            ``FILE:RECORD: FIELD: what is wrong`` with RECORD the 1-based line (JSONL) or the
            0-based list index (JSON list). Without ``skip_invalid`` all problems up to
            ``MAX_PROBLEMS`` are collected in ``DataError.problems``.
    """
    if gold_field is not None and (not isinstance(gold_field, str) or not gold_field):
        raise ValueError(f"gold_field must be a non-empty string or None, got {gold_field!r}")
    if max_passages is not None and (
        isinstance(max_passages, bool) or not isinstance(max_passages, int) or max_passages < 1
    ):
        raise ValueError(f"max_passages must be a positive integer or None, got {max_passages!r}")
    if not isinstance(score_field, str) or not score_field:
        raise ValueError(f"score_field must be a non-empty string, got {score_field!r}")
    display = os.fspath(path)
    resolved = Path(display).expanduser().resolve()
    start = sniff(resolved, display).offset

    options = {
        "gold_field": gold_field,
        "skip_invalid": bool(skip_invalid),
        "max_passages": max_passages,
        "score_field": score_field,
    }
    root = _default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    out_dir = root / _CACHE_SUBDIR / fingerprint(resolved, options)
    out = out_dir / _ARROW_NAME
    report_path = out_dir / REPORT_NAME
    if out.is_file() and report_path.is_file():
        report = CacheReport(**json.loads(report_path.read_text(encoding="utf-8")))
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        report = build(resolved, display, start, options, out)

    from datasets import Dataset

    qs = QuestionSet(
        Dataset.from_file(str(out), in_memory=False),
        path=display,
        skipped=report.skipped,
        num_skipped=report.num_skipped,
        num_records=report.num_records,
    )
    if qs.num_skipped:
        first = qs.skipped[0] if qs.skipped else "?"
        logger.warning(
            "skipped %d invalid records of %d in %s (first: %s)",
            qs.num_skipped,
            qs.num_records,
            display,
            first,
        )
    return qs
