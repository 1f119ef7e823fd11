"""Loading questions with candidate passages (method.md section 7) into typed, memory-mapped sets.

Input: one JSON object per question, either a JSON list (``[{...}, {...}]``) or JSON lines (one
object per line); the two are told apart by the first non-whitespace character (``[`` or ``{``).
A record looks like::

    {"id": "0", "question": "...", "target": "Polonium", "answers": ["Polonium", "Po"],
     "ctxs": [{"title": "Marie Curie", "text": "...", "id": "123", "score": 71.2}, ...]}

Files can be far larger than memory. :func:`load_questions` streams the records (JSONL line by
line; a JSON list through an incremental decoder over a rolling buffer), validates each one, and
writes the normalised records in batches to an Arrow file in the cache (the IPC stream format
datasets itself uses, with the ``datasets.Features`` in the schema metadata), then opens it with
``datasets.Dataset.from_file``, memory-mapped. :class:`QuestionSet` is a thin typed view over
that dataset. (``Dataset.from_generator`` would do the same, but its per-example feature
encoding was ~60% of the load time, 6 of 14 s on 50k records; ``pyarrow.Table.from_pylist`` on
batches takes 0.1 s.) The cache key is built from the file's absolute path, size, modification
time, a hash of its first and last MiB, the loading options and the source of this module, so a
changed file (or a changed loader) is re-read, and an unchanged one is not.

Validation errors read ``FILE:RECORD: FIELD: what is wrong`` (for example
``data/dev.jsonl:17: ctxs[3].text: expected a string, got null``). ``RECORD`` is the 1-based
line number in a JSONL file and the 0-based list index in a JSON list. Problems that are not
about one field use the pseudo-field ``<record>`` (bad JSON, bad UTF-8, not an object), and
problems with the file as a whole read ``FILE: what is wrong``.

Gold passages are decided per question, first rule that applies (``Question.gold_source``):

1. ``"flag"``: a per-passage flag. ``gold_field`` if given, else the first of ``gold``,
   ``is_gold``, ``is_supporting``, ``has_answer`` present (and not null) on any passage of the
   record. Values must be booleans or the integers 0/1. Passages without the flag are not gold.
   DPR's ``has_answer`` is itself an answer-string match computed by DPR; it counts as an
   explicit flag only when the file carries it, and is the last flag tried.
2. ``"titles"``: question-level supporting titles, ``supporting_titles`` (list of strings) or
   HotpotQA's ``supporting_facts`` (list of ``[title, sentence_id]``); passages whose title
   matches (after Unicode NFC and whitespace squashing; case-sensitive) are gold. An empty or
   null list counts as absent.
3. ``"answer"``: passages containing a normalised answer (DPR convention,
   :func:`gumbel_rerank.data.answers.contains_answer`).
4. ``"none"``: none of the above could be applied (every answer normalises to nothing, e.g.
   ``"the"``). ``Passage.gold`` is then ``None``.

A question whose gold rule found no gold passage keeps its ``gold_source`` and has empty
``gold_indices``; evaluation should count and exclude such questions (:func:`count_without_gold`,
:meth:`QuestionSet.with_gold`) rather than score them 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
import os
import re
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gumbel_rerank.data.answers import contains_answer, contains_any, match_normalize
from gumbel_rerank.durable import write_atomic

__all__ = [
    "GOLD_FLAG_FIELDS",
    "GOLD_SOURCES",
    "DataError",
    "Passage",
    "Question",
    "QuestionSet",
    "count_without_gold",
    "load_questions",
]

logger = logging.getLogger(__name__)

#: Per-passage gold flags tried, in this order, when ``gold_field`` is not given.
GOLD_FLAG_FIELDS = ("gold", "is_gold", "is_supporting", "has_answer")
#: Possible values of ``Question.gold_source``.
GOLD_SOURCES = ("flag", "titles", "answer", "none")

#: Without ``skip_invalid`` the loader keeps validating after the first bad record, so one run
#: reports many problems at once, but stops after this many (a wrong file would list millions).
MAX_PROBLEMS = 100
#: With ``skip_invalid`` every skipped record is counted, but only this many messages are kept.
MAX_SKIPPED_MESSAGES = 1000
#: Lines shown in ``str(DataError)``; ``DataError.problems`` has them all.
_MAX_MESSAGE_LINES = 20

_CHUNK_BYTES = 1 << 20
_FINGERPRINT_SAMPLE_BYTES = 1 << 20
# Rows buffered as Python objects before each Arrow write: at most this many rows or this much
# JSON text, whichever comes first.
_WRITER_BATCH_ROWS = 1000
_WRITER_BATCH_CHARS = 16 << 20
_CACHE_SUBDIR = "gumbel_rerank_questions"
_ARROW_NAME = "questions.arrow"
_REPORT_NAME = "report.json"
_SCHEMA_VERSION = 1
_BOM = b"\xef\xbb\xbf"
_JSON_WS = b" \t\n\r"
_WS_RE = re.compile(r"[ \t\n\r]*")
# A JSON "\ud800"-style escape can produce a lone surrogate, which Arrow cannot store as UTF-8.
# Scanning the raw record text for such escapes is cheap; only then are strings checked.
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")
_DECODER = json.JSONDecoder()


class DataError(ValueError):
    """A data file is missing, unreadable or has invalid records.

    ``str(error)`` is the single problem, or the first problems one per line; ``problems`` holds
    every problem message (each ``FILE:RECORD: FIELD: what is wrong`` or ``FILE: what``).
    """

    def __init__(self, problems: str | Sequence[str]):
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        lines = self.problems[:_MAX_MESSAGE_LINES]
        if len(self.problems) > _MAX_MESSAGE_LINES:
            lines.append(f"... and {len(self.problems) - _MAX_MESSAGE_LINES} more problems")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Passage:
    """One candidate passage. ``gold`` is the decided label (``None`` if undecidable); ``id``
    and ``score`` are the retriever's, when the file has them."""

    title: str
    text: str
    gold: bool | None = None
    id: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class Question:
    """A question with its candidate passages (in the file's order) and gold labels.

    ``target`` is the answer the reader is trained on; ``answers`` are all accepted answers (for
    EM/F1 and answer matching). ``gold_source`` says which rule decided ``Passage.gold`` (see the
    module docstring). ``answer_passages`` are the indices of passages containing a normalised
    answer, whatever the gold source; computed here when not given.
    """

    id: str
    question: str
    target: str
    answers: tuple[str, ...]
    passages: tuple[Passage, ...]
    gold_source: str
    answer_passages: tuple[int, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.gold_source not in GOLD_SOURCES:
            raise ValueError(f"gold_source must be one of {GOLD_SOURCES}, got {self.gold_source!r}")
        if self.answer_passages is None:
            found = tuple(
                i for i, p in enumerate(self.passages) if contains_answer(p.text, self.answers)
            )
            # Frozen dataclass: the only way to fill a derived field in __post_init__.
            object.__setattr__(self, "answer_passages", found)

    @property
    def gold_indices(self) -> tuple[int, ...]:
        """Indices of the gold passages (empty if none is gold or gold is undecidable)."""
        return tuple(i for i, p in enumerate(self.passages) if p.gold)

    @property
    def has_gold(self) -> bool:
        """Whether at least one passage is gold."""
        return any(p.gold for p in self.passages)

    @property
    def indirect_gold_indices(self) -> tuple[int, ...]:
        """Gold passages that do not contain an answer: the "indirectly relevant" subset
        (method.md section 4), e.g. bridge passages of multi-hop questions."""
        with_answer = set(self.answer_passages or ())
        return tuple(i for i in self.gold_indices if i not in with_answer)

    @property
    def direct_gold_indices(self) -> tuple[int, ...]:
        """Gold passages that contain an answer (the complement of the indirect subset among
        the gold), e.g. the answer passage of a two-hop question."""
        with_answer = set(self.answer_passages or ())
        return tuple(i for i in self.gold_indices if i in with_answer)


# --------------------------------------------------------------------------------------------
# Arrow-backed set


def _features():
    from datasets import Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "question": Value("string"),
            "target": Value("string"),
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
                }
            ),
        }
    )


def _row_to_question(row: dict[str, Any]) -> Question:
    return Question(
        id=row["id"],
        question=row["question"],
        target=row["target"],
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
        dataset,
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
        return len(self.dataset)

    def __getitem__(self, index):
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
        # Batched reads: one Arrow slice per batch instead of one per question.
        for batch in self.dataset.iter(batch_size=64):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys), strict=True):
                yield _row_to_question(dict(zip(keys, values, strict=True)))

    def __repr__(self) -> str:
        return f"QuestionSet({len(self)} questions from {self.path or '<memory>'!r})"

    def select(self, indices) -> QuestionSet:
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


# --------------------------------------------------------------------------------------------
# Reading records


class _Fatal(Exception):
    """A problem after which the file cannot be read further (raised inside the readers)."""


@dataclass
class _Raw:
    record: int  # line number (JSONL) or list index (JSON list), as shown in messages
    ordinal: int  # 0-based position among the file's records: default id, format-independent
    obj: Any = None
    problem: str | None = None  # "FIELD: what" when the record could not even be parsed
    maybe_surrogates: bool = False
    size: int = 0  # characters of JSON text, to bound the rows buffered before a write


def open_input(path: Path, display: str, what: str = "JSON or JSONL") -> BinaryIO:
    """Open an input file for binary reading; a missing or unreadable file is a DataError
    naming ``display`` (the path as the user gave it) instead of an OSError traceback."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{display}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{display}: is a directory, expected a {what} file") from None
    except OSError as e:
        raise DataError(f"{display}: cannot open: {e.strerror or e}") from None


def _sniff(path: Path, display: str) -> tuple[str, int]:
    """Return ("list" | "lines", offset of the first non-whitespace byte)."""
    with open_input(path, display) as f:
        offset = 0
        head = f.read(len(_BOM))
        if head == _BOM:
            offset = len(_BOM)
        else:
            f.seek(0)
        while True:
            chunk = f.read(65536)
            if not chunk:
                raise DataError(f"{display}: empty file, expected a JSON list or JSON lines")
            stripped = chunk.lstrip(_JSON_WS)
            if stripped:
                offset += len(chunk) - len(stripped)
                first = stripped[:1]
                if first == b"[":
                    return "list", offset
                if first == b"{":
                    return "lines", offset
                shown = chr(first[0]) if first[0] < 128 else f"byte 0x{first[0]:02x}"
                raise DataError(
                    f"{display}: not a JSON list or JSON lines file: first non-whitespace "
                    f"character is {shown!r} at byte offset {offset}, expected '[' or '{{'"
                )
            offset += len(chunk)


def _bad_utf8(data: bytes, start: int, base: int) -> str:
    return f"<record>: invalid UTF-8 byte 0x{data[start]:02x} at byte offset {base + start}"


def _json_error(msg: str, location: str) -> str:
    # json's messages are written to be followed by a position ("... starting at: line 1 ...").
    return f"{msg} {location}" if msg.endswith(" at") else f"{msg} at {location}"


def _iter_jsonl(f: BinaryIO) -> Iterator[_Raw]:
    offset = 0
    ordinal = 0
    for lineno, raw in enumerate(f, start=1):
        start = offset
        offset += len(raw)
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
            start += len(_BOM)
        if not raw.strip(_JSON_WS):
            continue  # blank lines are allowed and still counted in line numbers
        rec = _Raw(record=lineno, ordinal=ordinal)
        ordinal += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            rec.problem = _bad_utf8(raw, e.start, start)
            yield rec
            continue
        line = line.rstrip(" \t\n\r")
        try:
            rec.obj = json.loads(line)
        except json.JSONDecodeError as e:
            # Column in characters, 1-based, within this line.
            rec.problem = f"<record>: invalid JSON: {_json_error(e.msg, f'column {e.pos + 1}')}"
            # Unterminated strings report where the string starts, not where the text ends.
            if e.pos >= len(line) or e.msg.startswith("Unterminated"):
                rec.problem += (
                    " (the record ends early: a truncated line, or an object spread over several"
                    " lines, which JSON lines does not allow)"
                )
            yield rec
            continue
        rec.maybe_surrogates = _SURROGATE_ESCAPE_RE.search(line) is not None
        rec.size = len(line)
        yield rec


class _TextReader:
    """UTF-8 text of a binary file, decoded chunk by chunk.

    An invalid byte is reported only when the text up to it has been consumed and more is asked
    for, so the error lands on the record that contains it.
    """

    def __init__(self, f: BinaryIO, offset: int):
        self.f = f
        self.offset = offset  # file offset of self.carry[0]
        self.carry = b""  # undecoded bytes: an incomplete multi-byte sequence, or a bad byte
        self.bad: str | None = None
        self.eof = False

    def read(self, size: int) -> str:
        """Up to about ``size`` bytes of further text; "" only at the end of the file."""
        while True:
            if self.bad is not None:
                raise _Fatal(self.bad)
            if self.eof:
                return ""
            more = self.f.read(size)
            data = self.carry + more
            self.eof = not more
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                if not (e.reason == "unexpected end of data" and not self.eof):
                    # A bad byte (or a sequence cut by the end of the file): hand out the text
                    # before it now, raise on the next read.
                    self.bad = _bad_utf8(data, e.start, self.offset)
                    self.eof = False
                text = data[: e.start].decode("utf-8")
                self.carry = data[e.start :]
                self.offset += e.start
            else:
                self.carry = b""
                self.offset += len(data)
            if text:
                return text


def _iter_json_list(f: BinaryIO, start: int, display: str) -> Iterator[_Raw]:
    """Records of a JSON list. Syntax and encoding errors are fatal (``_Fatal``): after them the
    list structure cannot be recovered, unlike a bad line of a JSONL file."""
    f.seek(start)
    reader = _TextReader(f, start)
    buf = ""
    pos = 0
    # Line/column of buf[0] in the file, to turn buffer positions into positions users can find.
    line0, col0 = 1, 1
    index = 0

    def more() -> bool:
        nonlocal buf, pos, line0, col0
        consumed = buf[:pos]
        newlines = consumed.count("\n")
        if newlines:
            line0 += newlines
            col0 = pos - consumed.rfind("\n")
        else:
            col0 += pos
        # Read at least as much as is buffered, so a huge record costs O(size), not O(size^2).
        chunk = reader.read(max(_CHUNK_BYTES, len(buf) - pos))
        buf = buf[pos:] + chunk
        pos = 0
        return bool(chunk)

    def where(p: int) -> str:
        newlines = buf.count("\n", 0, p)
        if newlines:
            column = p - buf.rfind("\n", 0, p)
            return f"line {line0 + newlines} column {column}"
        return f"line {line0} column {col0 + p}"

    def fatal(what: str) -> _Fatal:
        return _Fatal(f"{display}:{index}: {what}")

    def skip_ws() -> bool:
        """Advance past whitespace; False at end of file."""
        nonlocal pos
        while True:
            pos = _WS_RE.match(buf, pos).end()
            if pos < len(buf):
                return True
            if not more():
                return False

    try:
        skip_ws()
        pos += 1  # the "[" found by _sniff
        if not skip_ws():
            raise fatal("<record>: unexpected end of file: the list is never closed with ']'")
        if buf[pos] == "]":
            pos += 1
        else:
            while True:
                if not skip_ws():
                    raise fatal("<record>: unexpected end of file (truncated file?)")
                while True:
                    try:
                        obj, end = _DECODER.raw_decode(buf, pos)
                    except json.JSONDecodeError as e:
                        # Incomplete input fails near the end of the buffer (or in an unterminated
                        # string): read more and retry; at end of file, retry once more so the
                        # error positions refer to the final (compacted) buffer.
                        near_end = e.pos >= len(buf) - 64 or e.msg.startswith("Unterminated")
                        if near_end and not reader.eof:
                            more()
                            continue
                        error = _json_error(e.msg, where(e.pos))
                        if e.msg.startswith("Unterminated") or e.pos >= len(buf.rstrip(" \t\n\r")):
                            raise fatal(
                                f"<record>: unexpected end of file inside the record "
                                f"(truncated file?): {error}"
                            ) from None
                        raise fatal(f"<record>: invalid JSON: {error}") from None
                    if end == len(buf) and more():
                        continue  # a top-level scalar may continue in the next chunk
                    # more() moves the unread text to the buffer start, so pos is the record start.
                    break
                yield _Raw(
                    record=index,
                    ordinal=index,
                    obj=obj,
                    maybe_surrogates=_SURROGATE_ESCAPE_RE.search(buf, pos, end) is not None,
                    size=end - pos,
                )
                pos = end
                if not skip_ws():
                    raise fatal(
                        "<record>: unexpected end of file: the list is never closed with ']'"
                    )
                sep = buf[pos]
                pos += 1
                if sep == "]":
                    break
                if sep != ",":
                    raise fatal(
                        f"<record>: invalid JSON: expected ',' or ']' after the record at "
                        f"{where(pos - 1)}, found {sep!r}"
                    )
                if not skip_ws():
                    raise fatal("<record>: unexpected end of file after ',' (truncated file?)")
                if buf[pos] == "]":
                    raise fatal(
                        f"<record>: invalid JSON: trailing comma before ']' at {where(pos)}"
                    )
                index += 1
        if skip_ws():
            raise fatal(f"<record>: unexpected data after the closing ']' at {where(pos)}")
    except _Fatal as e:
        # Decoding errors are raised without the record prefix; give them the current record.
        message = str(e)
        if message.startswith("<record>"):
            message = f"{display}:{index}: {message}"
        raise _Fatal(message) from None


# --------------------------------------------------------------------------------------------
# Validation

_MISSING = object()


def describe_type(value: Any) -> str:
    """How a JSON value's type reads in an error message ("a string", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _str_error(value: Any, *, nonempty: bool, surrogates: bool) -> str | None:
    """Why ``value`` is not an acceptable string, or None."""
    if type(value) is not str:
        return f"expected a string, got {describe_type(value)}"
    if nonempty and not value.strip():
        return "empty string"
    if surrogates:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid unicode: lone surrogate from a \\uXXXX escape"
    return None


def _id_error(value: Any, *, surrogates: bool) -> str | None:
    if type(value) is int:
        return None
    if type(value) is str:
        return _str_error(value, nonempty=True, surrogates=surrogates)
    return f"expected a string or an integer, got {describe_type(value)}"


def _title_key(title: str) -> str:
    return " ".join(unicodedata.normalize("NFC", title).split())


class _Validator:
    """Turns one parsed record into an Arrow row, or into problem messages.

    Written for speed on the common path (this runs for every passage of every question):
    exact ``type(...) is`` checks (``json`` only produces exact types), details only on errors.
    """

    def __init__(self, display: str, gold_field: str | None, max_passages: int | None):
        self.display = display
        self.gold_field = gold_field
        self.max_passages = max_passages
        self.seen_ids: dict[str, int] = {}

    def __call__(self, raw: _Raw) -> tuple[dict | None, list[str]]:
        prefix = f"{self.display}:{raw.record}: "
        if raw.problem is not None:
            return None, [prefix + raw.problem]
        rec = raw.obj
        if type(rec) is not dict:
            return None, [f"{prefix}<record>: expected a JSON object, got {describe_type(rec)}"]
        problems: list[str] = []
        sur = raw.maybe_surrogates

        def bad(where: str, what: str | None) -> None:
            # Takes the checkers' result directly: None means "no problem".
            if what is not None:
                problems.append(f"{prefix}{where}: {what}")

        # id: string or int (normalised to str); missing -> the record's 0-based position among
        # the file's records, which is the same for a JSON list and JSONL of the same data.
        qid = rec.get("id")
        if qid is None:
            qid = str(raw.ordinal)
        else:
            bad("id", _id_error(qid, surrogates=sur))
            qid = str(qid)

        question = rec.get("question", _MISSING)
        if question is _MISSING:
            bad("question", "missing field")
        else:
            bad("question", _str_error(question, nonempty=True, surrogates=sur))

        target = rec.get("target")
        if target is not None:
            bad("target", _str_error(target, nonempty=True, surrogates=sur))
        answers = rec.get("answers")
        if answers is not None:
            if type(answers) is not list:
                bad("answers", f"expected a list of strings, got {describe_type(answers)}")
            else:
                for i, a in enumerate(answers):
                    bad(f"answers[{i}]", _str_error(a, nonempty=True, surrogates=sur))
                if not answers and target is None:
                    bad("answers", "empty list (and no target)")
        elif target is None:
            bad("answers", "missing field (and no target)")

        passages, objs = self._passages(rec, bad, sur)
        flag = self._flag_field(objs, bad) if objs else None
        if problems:
            return None, problems

        # Both present, or one standing in for the other (method.md: target may be missing).
        answers = list(answers) if answers else [target]
        if target is None:
            target = answers[0]

        normalised = [a for a in map(match_normalize, answers) if a]
        answer_passages = [i for i, p in enumerate(passages) if contains_any(p["text"], normalised)]

        # Gold passages: explicit flag > supporting titles > answer containment.
        gold: list[bool | None]
        if flag is not None:
            source = "flag"
            gold = []
            for i, p in enumerate(objs):
                value = p.get(flag)
                # bool, or the integers 0/1 (type() excludes bool from int, and 1.0 from int).
                if value is None or type(value) is bool or (type(value) is int and value in (0, 1)):
                    gold.append(bool(value))
                else:
                    shown = str(value) if type(value) in (int, float) else describe_type(value)
                    bad(f"ctxs[{i}].{flag}", f"expected a bool or 0/1, got {shown}")
        else:
            titles = self._supporting_titles(rec, bad)
            if titles:
                source = "titles"
                gold = [_title_key(p["title"]) in titles for p in passages]
            elif normalised:
                source = "answer"
                with_answer = set(answer_passages)
                gold = [i in with_answer for i in range(len(passages))]
            else:
                source = "none"  # e.g. every answer is "the" or punctuation
                gold = [None] * len(passages)
        if problems:
            return None, problems

        first = self.seen_ids.get(qid)
        if first is not None:
            bad("id", f"duplicate id {qid!r} (first used by record {first})")
            return None, problems
        self.seen_ids[qid] = raw.record

        for p, g in zip(passages, gold, strict=True):
            p["gold"] = g
        row = {
            "id": qid,
            "question": question,
            "target": target,
            "answers": answers,
            "gold_source": source,
            "gold_indices": [i for i, g in enumerate(gold) if g],
            "answer_passages": answer_passages,
            "passages": passages,
        }
        return row, problems

    def _passages(self, rec: dict, bad, sur: bool) -> tuple[list[dict], list[dict]]:
        """Validate ``ctxs``; returns (Arrow passage rows, the raw passage objects)."""
        ctxs = rec.get("ctxs", _MISSING)
        if ctxs is _MISSING:
            bad("ctxs", "missing field")
            return [], []
        if type(ctxs) is not list:
            bad("ctxs", f"expected a list of passages, got {describe_type(ctxs)}")
            return [], []
        if not ctxs:
            bad("ctxs", "empty list, expected at least one passage")
            return [], []
        if self.max_passages is not None:
            # Passages past the cut are never looked at, so junk there does not reject a record.
            ctxs = ctxs[: self.max_passages]
        rows: list[dict] = []
        objs: list[dict] = []
        for i, p in enumerate(ctxs):
            if type(p) is not dict:
                bad(f"ctxs[{i}]", f"expected an object, got {describe_type(p)}")
                continue
            text = p.get("text", _MISSING)
            title = p.get("title")
            if sur or type(text) is not str or (title is not None and type(title) is not str):
                if text is _MISSING:
                    bad(f"ctxs[{i}].text", "missing field")
                else:
                    bad(f"ctxs[{i}].text", _str_error(text, nonempty=False, surrogates=sur))
                if title is not None:
                    bad(f"ctxs[{i}].title", _str_error(title, nonempty=False, surrogates=sur))
            pid = p.get("id")
            if pid is not None:
                if type(pid) is not str or sur:
                    bad(f"ctxs[{i}].id", _id_error(pid, surrogates=sur))
                pid = str(pid)
            score = p.get("score")
            if score is not None:
                if type(score) is int:
                    score = float(score)
                elif type(score) is not float:
                    bad(f"ctxs[{i}].score", f"expected a number, got {describe_type(score)}")
            objs.append(p)
            rows.append(
                {"title": title or "", "text": text, "gold": None, "id": pid, "score": score}
            )
        return rows, objs

    def _flag_field(self, objs: list[dict], bad) -> str | None:
        """The per-passage gold flag this record uses, if any."""
        if self.gold_field is not None:
            if any(p.get(self.gold_field) is not None for p in objs):
                return self.gold_field
            bad("ctxs", f"gold field {self.gold_field!r} is not present on any passage")
            return None
        keys: set[str] = set()
        for p in objs:
            keys.update(p)
        for name in GOLD_FLAG_FIELDS:
            # "Present" means present and not null on at least one passage.
            if name in keys and any(p.get(name) is not None for p in objs):
                return name
        return None

    def _supporting_titles(self, rec: dict, bad) -> set[str]:
        """Question-level gold titles (normalised), from supporting_titles or supporting_facts."""
        titles = rec.get("supporting_titles")
        if titles is not None:
            if type(titles) is not list:
                bad("supporting_titles", f"expected a list of strings, got {describe_type(titles)}")
                return set()
            out = set()
            for i, t in enumerate(titles):
                if type(t) is not str:
                    bad(f"supporting_titles[{i}]", f"expected a string, got {describe_type(t)}")
                else:
                    out.add(_title_key(t))
            if titles:
                return out
        facts = rec.get("supporting_facts")
        if facts is None:
            return set()
        if type(facts) is not list:
            bad(
                "supporting_facts",
                f"expected a list of [title, sentence_id] pairs, got {describe_type(facts)}",
            )
            return set()
        out = set()
        for i, fact in enumerate(facts):
            if type(fact) is list and len(fact) == 2 and type(fact[0]) is str:
                out.add(_title_key(fact[0]))
            else:
                bad(
                    f"supporting_facts[{i}]",
                    f"expected a [title, sentence_id] pair, got {describe_type(fact)}",
                )
        return out


# --------------------------------------------------------------------------------------------
# Loading


@dataclass
class _Report:
    num_records: int = 0
    num_skipped: int = 0
    skipped: list[str] = field(default_factory=list)


def _build(path: Path, display: str, kind: str, start: int, options: dict, out: Path) -> _Report:
    """Validate every record of ``path`` and write the valid ones to the Arrow file ``out``."""
    import pyarrow as pa

    schema = _features().arrow_schema  # carries the datasets Features in its metadata
    skip_invalid = options["skip_invalid"]
    validator = _Validator(display, options["gold_field"], options["max_passages"])
    report = _Report()
    problems: list[str] = []
    stopped_early = False
    kept = 0
    batch: list[dict] = []
    batch_chars = 0
    # Unique temporary name, renamed into place when complete: a crash or a concurrent loader
    # (e.g. one per DDP rank) never leaves or reads a half-written cache file.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with (
            path.open("rb") as f,
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_stream(sink, schema) as writer,
        ):
            records = _iter_json_list(f, start, display) if kind == "list" else _iter_jsonl(f)
            try:
                for raw in records:
                    report.num_records += 1
                    row, errs = validator(raw)
                    if errs:
                        if skip_invalid:
                            report.num_skipped += 1
                            room = MAX_SKIPPED_MESSAGES - len(report.skipped)
                            report.skipped.extend(errs[: max(room, 0)])
                            continue
                        problems.extend(errs)
                        if len(problems) >= MAX_PROBLEMS:
                            stopped_early = True
                            break
                        continue
                    if problems:
                        continue  # the load fails anyway: keep validating, stop writing
                    kept += 1
                    batch.append(row)
                    batch_chars += raw.size
                    # Bounded by rows and by text size, so a few huge records (100 long passages
                    # each) do not pile up as Python objects before being written.
                    if len(batch) >= _WRITER_BATCH_ROWS or batch_chars >= _WRITER_BATCH_CHARS:
                        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                        batch, batch_chars = [], 0
            except _Fatal as e:
                raise DataError([*problems, str(e)]) from None
            if batch and not problems:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        if problems:
            if stopped_early:
                problems.append(f"{display}: stopped after {MAX_PROBLEMS} problems")
            raise DataError(problems)
        if kept == 0:
            if report.num_skipped:
                what = f"no valid records ({report.num_skipped} skipped)"
            else:
                what = "no records"
            raise DataError([f"{display}: {what}", *report.skipped[:_MAX_MESSAGE_LINES]])
        # Report first: the Arrow file's presence means the load completed (see load_questions).
        write_atomic(out.with_name(_REPORT_NAME), json.dumps(report.__dict__))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _fingerprint(path: Path, options: dict) -> str:
    st = path.stat()
    h = hashlib.sha256()
    key = {
        "path": str(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "options": options,
        "schema": _SCHEMA_VERSION,
    }
    h.update(json.dumps(key, sort_keys=True).encode())
    # Head and tail bytes catch rewrites that keep the size and a coarse mtime (filesystems with
    # 1-2 s timestamps, or a file rewritten within the same tick).
    with path.open("rb") as f:
        h.update(f.read(_FINGERPRINT_SAMPLE_BYTES))
        if st.st_size > 2 * _FINGERPRINT_SAMPLE_BYTES:
            f.seek(-_FINGERPRINT_SAMPLE_BYTES, os.SEEK_END)
            h.update(f.read())
    # The loader's own source: a fix in validation or normalisation must invalidate old caches.
    here = Path(__file__).resolve().parent
    for name in ("questions.py", "answers.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:32]


def _default_cache_dir() -> Path:
    from datasets import config

    return Path(config.HF_DATASETS_CACHE)


def load_questions(
    path: str | os.PathLike,
    *,
    gold_field: str | None = None,
    skip_invalid: bool = False,
    max_passages: int | None = None,
    cache_dir: str | os.PathLike | None = None,
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
    display = os.fspath(path)
    resolved = Path(display).expanduser().resolve()
    kind, start = _sniff(resolved, display)

    options = {
        "gold_field": gold_field,
        "skip_invalid": bool(skip_invalid),
        "max_passages": max_passages,
    }
    root = _default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    out_dir = root / _CACHE_SUBDIR / _fingerprint(resolved, options)
    out = out_dir / _ARROW_NAME
    report_path = out_dir / _REPORT_NAME
    if out.is_file() and report_path.is_file():
        report = _Report(**json.loads(report_path.read_text(encoding="utf-8")))
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        report = _build(resolved, display, kind, start, options, out)

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
