"""What every dataset converter shares: the report, skip reasons, options, and typed field reads
whose problems name the file, the record and the field (the loader's message style)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from gumbel_rerank.data.jsonstream import (
    DataError,
    Wording,
    describe_type,
    id_problem,
    string_problem,
)
from gumbel_rerank.data.records import flag_problem

__all__ = [
    "CONVERT_WORDING",
    "EMPTY_ANSWER",
    "NO_ANSWER",
    "NO_PASSAGES",
    "UNANSWERABLE",
    "ConversionReport",
    "Converted",
    "Converter",
    "Fields",
    "Options",
    "answer_field",
    "describe_value",
]

# Skip reasons (keys of ConversionReport.skipped).
NO_ANSWER = "no answer (unlabelled record, e.g. a test split)"
EMPTY_ANSWER = "empty answer"
NO_PASSAGES = "no passages"
UNANSWERABLE = "unanswerable (answerable: false; keep_unanswerable keeps them)"

#: How ``gumbel-rerank convert`` words the JSON reader's problems (as it always has).
CONVERT_WORDING = Wording(
    not_json=(
        "not a JSON list or JSON lines file: the first non-whitespace character is {shown!r}, "
        "expected '[' or '{{'"
    ),
    line_utf8="invalid UTF-8 byte 0x{byte:02x} at column {column}",
    line_json="invalid JSON: {msg} at column {column}",
    line_ends_early=" (the line ends early: a truncated file?)",
    list_utf8="invalid UTF-8 byte 0x{byte:02x}",
    never_closed="unexpected end of file: the list is never closed with ']' (truncated file?)",
    truncated="unexpected end of file inside the record (truncated file?): {msg} at {where}",
    bad_json="invalid JSON: {msg} at {where}",
    separator="invalid JSON: expected ',' or ']' after the record, found {sep!r} at {where}",
    near_end_truncated=True,
    comma_starts_record=True,
)

_MISSING = object()


@dataclass
class ConversionReport:
    """What :func:`gumbel_rerank.data.converters.convert` did.

    ``records``: records read from the source (up to ``limit``); ``questions`` / ``passages`` /
    ``gold_passages``: written; ``skipped``: reason -> number of records skipped for it;
    ``without_gold``: written questions none of whose passages is gold (evaluation counts and
    excludes them); ``gold_sources``: how gold was decided -> number of questions.
    """

    kind: str
    src: str
    dst: str
    records: int = 0
    questions: int = 0
    passages: int = 0
    gold_passages: int = 0
    without_gold: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    gold_sources: dict[str, int] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        """Records skipped, all reasons together."""
        return sum(self.skipped.values())

    def summary(self) -> str:
        """A few human-readable lines (what ``gumbel-rerank convert`` prints)."""
        lines = [
            f"converted {self.kind}: {self.src} -> {self.dst}",
            f"  records read:       {self.records}",
            f"  questions written:  {self.questions} ({self.passages} passages, "
            f"{self.gold_passages} gold)",
            f"  skipped:            {self.num_skipped}",
        ]
        lines += [f"    {n:>8}  {reason}" for reason, n in sorted(self.skipped.items())]
        lines.append(f"  without any gold passage: {self.without_gold}")
        if self.gold_sources:
            lines.append("  gold decided by (questions):")
            lines += [f"    {n:>8}  {how}" for how, n in sorted(self.gold_sources.items())]
        return "\n".join(lines)


@dataclass
class Options:
    """The conversion options a record converter needs."""

    max_passages: int | None
    keep_unanswerable: bool


class Fields:
    """Typed reads of one record's fields; any problem raises ``DataError`` naming the file, the
    record and the field (the loader's message style)."""

    def __init__(self, display: str, label: int):
        self.prefix = f"{display}:{label}: "

    def fail(self, where: str, what: str) -> NoReturn:
        """Raise the problem ``what`` of field ``where``."""
        raise DataError(f"{self.prefix}{where}: {what}")

    def check(self, where: str, problem: str | None) -> None:
        """Raise ``problem`` (a checker's result) of field ``where``, unless it is None."""
        if problem is not None:
            self.fail(where, problem)

    def record(self, obj: Any) -> dict:
        """The record itself, which must be a JSON object."""
        if type(obj) is not dict:
            self.fail("<record>", f"expected a JSON object, got {describe_type(obj)}")
        return obj

    def require(self, obj: dict, key: str, where: str | None = None) -> Any:
        """``obj[key]``, which must be present."""
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            self.fail(where or key, "missing field")
        return value

    def string(self, value: Any, where: str, *, nonempty: bool = False) -> str:
        """``value``, which must be a string (non-blank if ``nonempty``)."""
        self.check(where, string_problem(value, nonempty=nonempty))
        return value

    def ident(self, value: Any, where: str) -> str:
        """``value`` as an id: a non-blank string, or an integer (returned as a string)."""
        self.check(where, id_problem(value))
        return str(value)

    def list(self, value: Any, where: str, what: str = "a list") -> list:
        """``value``, which must be a list (``what`` says of what, for the message)."""
        if type(value) is not list:
            self.fail(where, f"expected {what}, got {describe_type(value)}")
        return value

    def obj(self, value: Any, where: str) -> dict:
        """``value``, which must be an object."""
        if type(value) is not dict:
            self.fail(where, f"expected an object, got {describe_type(value)}")
        return value

    def flag(self, value: Any, where: str) -> bool:
        """``value`` as a gold flag: a bool, or the integers 0/1 (what the loader accepts)."""
        self.check(where, flag_problem(value))
        return bool(value)


def answer_field(f: Fields, rec: dict) -> str | None:
    """The record's ``answer`` string, or None when it has none (unlabelled)."""
    answer = rec.get("answer")
    if answer is None:
        return None
    return f.string(answer, "answer")


def describe_value(value: Any) -> str:
    """:func:`describe_type`, with the length of a list ("a list of 1 items")."""
    if type(value) is list:
        return f"a list of {len(value)} items"
    return describe_type(value)


#: What a record converter returns: the output object and how its gold was decided, or a skip
#: reason (a string).
Converted = tuple[dict, str] | str
#: A record converter: (parsed record, its 0-based position, field reader, options) -> result.
Converter = Callable[[Any, int, Fields, Options], Converted]
