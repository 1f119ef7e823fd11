"""The one streaming reader of record files: a JSON list or JSON lines, never held in memory.

Question files (:mod:`gumbel_rerank.data.questions`), the published datasets the converters read
(:mod:`gumbel_rerank.data.converters`) and ``rerank``'s input (:mod:`gumbel_rerank.inference`)
are one JSON object per record, either as a JSON list (``[{...}, {...}]``) or as JSON lines (one
object per line). :func:`sniff` tells the two apart by the first non-whitespace byte (``[`` or
``{``; a UTF-8 byte order mark is skipped). Files can be far larger than memory: JSON lines are
read line by line, a JSON list through ``raw_decode`` over a rolling text buffer, so memory stays
at about one record plus one read (:data:`_CHUNK_BYTES`) whatever the file size.

:func:`read_records` yields a :class:`Record` per record: its number as messages show it (the
1-based line of a JSONL file, the 0-based index in a JSON list), its 0-based position among the
file's records (format-independent), the parsed value, and the bytes it occupies; a record's
:attr:`Record.bookmark` lets a later read resume right after it. A record that could not be
parsed (bad UTF-8 or bad JSON on a line) comes with ``problem`` set, and the caller raises it or
counts and skips it; :func:`iter_values` is the variant that raises at the first problem.
Problems after which a JSON list cannot be resynchronised (its syntax, its encoding) raise
:class:`UnreadableFile`, as do file-level problems (no such file, empty, not JSON).

Messages read ``FILE:RECORD: FIELD: what is wrong`` (``FIELD`` is ``<record>`` for the reader's
own problems) and ``FILE: what is wrong`` for the file as a whole. How the reader words its
problems is a :class:`Wording`: the loader's is the default, and each command that printed other
texts before the readers were merged keeps them (see ``CONVERT_WORDING`` in the converters and
``RERANK_WORDING`` in :mod:`gumbel_rerank.inference.sources`).

Also here, because every reader of these files needs them: :class:`DataError`,
:func:`open_input`, :func:`describe_type` and the checks of string and id fields
(:func:`string_problem`, :func:`id_problem`).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, NoReturn

__all__ = [
    "BOM",
    "Bookmark",
    "DataError",
    "Layout",
    "Record",
    "UnreadableFile",
    "Wording",
    "describe_type",
    "id_problem",
    "iter_values",
    "open_input",
    "read_records",
    "sniff",
    "string_problem",
]

#: Bytes read at a time from a JSON list (tests shrink it to put chunk borders everywhere).
_CHUNK_BYTES = 1 << 20
#: Lines shown in ``str(DataError)``; ``DataError.problems`` has them all.
MAX_MESSAGE_LINES = 20
#: The UTF-8 byte order mark some editors write first; readers skip it.
BOM = b"\xef\xbb\xbf"
_JSON_WS = " \t\n\r"
_JSON_WS_BYTES = _JSON_WS.encode()
_WS_RE = re.compile(r"[ \t\n\r]*")
# A JSON "\ud800"-style escape can produce a lone surrogate, which cannot be written as UTF-8.
# Scanning the raw record text for such escapes is cheap; only then are strings checked.
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")
# A decoding error this close to the end of the buffer may only mean the record goes on in the
# next chunk; further in, it is a real syntax error (and reading on would pull the file in).
_NEAR_END = 64
_DECODER = json.JSONDecoder()
# Every byte that is not a UTF-8 continuation byte (0x80-0xbf), for counting characters.
_NOT_CONTINUATION = bytes(b for b in range(256) if not 0x80 <= b < 0xC0)


class DataError(ValueError):
    """A data file is missing, unreadable or has invalid records.

    ``str(error)`` is the single problem, or the first problems one per line; ``problems`` holds
    every problem message (each ``FILE:RECORD: FIELD: what is wrong`` or ``FILE: what``).
    """

    def __init__(self, problems: str | Sequence[str]):
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        lines = self.problems[:MAX_MESSAGE_LINES]
        if len(self.problems) > MAX_MESSAGE_LINES:
            lines.append(f"... and {len(self.problems) - MAX_MESSAGE_LINES} more problems")
        super().__init__("\n".join(lines))


class UnreadableFile(DataError):
    """A problem after which nothing more of the file can be read (a broken JSON list, a file
    that is missing, empty or not JSON); unlike a bad JSONL line it cannot be skipped."""


@dataclass(frozen=True)
class Wording:
    """How a command words the reader's problems: ``str.format`` templates, the loader's texts by
    default. Fields a template may use: ``byte``, ``offset`` (in the file), ``reason`` (a UTF-8
    error); ``column`` (1-based character in a JSONL line, its trailing whitespace cut) and
    ``line_column`` (the same, but an error at the end of the line counts the line's end);
    ``msg`` (json's message), ``where`` (``line L column C`` in the file), ``error`` (``msg``
    joined to the position); ``sep`` and ``shown`` (an unexpected character).

    Two switches keep the numbering and classification ``convert`` and ``rerank`` always used in
    a broken JSON list: ``near_end_truncated``, a JSON error within 64 characters of the end of
    the file is a truncation (the loader: only an unterminated string, or an error at the very
    end); ``comma_starts_record``, a problem after a ``,`` belongs to the next record (the
    loader: to the record before the comma).
    """

    empty: str = "empty file, expected a JSON list or JSON lines"
    not_json: str = (
        "not a JSON list or JSON lines file: first non-whitespace character is {shown!r} at byte "
        "offset {offset}, expected '[' or '{{'"
    )
    line_utf8: str = "invalid UTF-8 byte 0x{byte:02x} at byte offset {offset}"
    line_json: str = "invalid JSON: {error}"
    line_ends_early: str = (
        " (the record ends early: a truncated line, or an object spread over several lines, "
        "which JSON lines does not allow)"
    )
    list_utf8: str = "invalid UTF-8 byte 0x{byte:02x} at byte offset {offset}"
    never_closed: str = "unexpected end of file: the list is never closed with ']'"
    truncated: str = "unexpected end of file inside the record (truncated file?): {error}"
    bad_json: str = "invalid JSON: {error}"
    separator: str = "invalid JSON: expected ',' or ']' after the record at {where}, found {sep!r}"
    trailing_comma: str = "invalid JSON: trailing comma before ']' at {where}"
    after_list: str = "unexpected data after the closing ']' at {where}"
    near_end_truncated: bool = False
    comma_starts_record: bool = False


LOADER_WORDING = Wording()
_AFTER_COMMA = "unexpected end of file after ',' (truncated file?)"


class Layout(NamedTuple):
    """What :func:`sniff` found: ``kind`` is ``"list"``, ``"lines"`` or ``"other"``, ``offset``
    the byte offset of the first non-whitespace byte (after a BOM)."""

    kind: str
    offset: int


class Bookmark(NamedTuple):
    """Where a read can resume: the byte ``offset`` just past record number ``number`` (0-based
    position ``ordinal``); :func:`read_records` continues with the record after it."""

    offset: int
    number: int
    ordinal: int


@dataclass(slots=True)
class Record:
    """One record of the file, parsed (``obj``) or not (``problem``).

    ``number`` is what messages show (1-based JSONL line, 0-based list index), ``ordinal`` the
    0-based position among the file's records (the default question id, the same in both
    layouts). ``start`` / ``end``: byte offsets of the record's text (``end`` past the line end
    of a JSONL record). ``problem`` is ``"<record>: what"`` when the text could not be parsed.
    ``maybe_surrogates``: the text has a ``\\uD8xx``-style escape (strings may hold a lone
    surrogate); ``size``: characters of JSON text, to bound what a caller buffers.
    """

    number: int
    ordinal: int
    obj: Any = None
    problem: str | None = None
    start: int = 0
    end: int = 0
    maybe_surrogates: bool = False
    size: int = 0

    @property
    def bookmark(self) -> Bookmark:
        """Resume point right after this record (see :func:`read_records`)."""
        return Bookmark(self.end, self.number, self.ordinal)


# --------------------------------------------------------------------------------------------
# Files and JSON values


def open_input(path: Path, display: str, what: str = "JSON or JSONL") -> BinaryIO:
    """Open an input file for binary reading; a missing or unreadable file is a DataError
    naming ``display`` (the path as the user gave it) instead of an OSError traceback."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise UnreadableFile(f"{display}: no such file") from None
    except IsADirectoryError:
        raise UnreadableFile(f"{display}: is a directory, expected a {what} file") from None
    except OSError as e:
        raise UnreadableFile(f"{display}: cannot open: {e.strerror or e}") from None


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


def string_problem(value: Any, *, nonempty: bool = False, surrogates: bool = False) -> str | None:
    """Why ``value`` is not an acceptable string field, or None. ``nonempty``: blank is a
    problem; ``surrogates``: check for a lone surrogate (from a ``\\ud800`` escape), which no
    UTF-8 writer or tokenizer accepts."""
    if type(value) is not str:
        return f"expected a string, got {describe_type(value)}"
    if nonempty and not value.strip():
        return "empty string"
    if surrogates and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid unicode: lone surrogate from a \\uXXXX escape"
    return None


def id_problem(value: Any, *, surrogates: bool = False) -> str | None:
    """Why ``value`` is not an acceptable id (a non-blank string or an integer), or None."""
    if type(value) is int:
        return None
    if type(value) is str:
        return string_problem(value, nonempty=True, surrogates=surrogates)
    return f"expected a string or an integer, got {describe_type(value)}"


def _json_error(msg: str, location: str) -> str:
    # json's messages are written to be followed by a position ("... starting at: line 1 ...").
    return f"{msg} {location}" if msg.endswith(" at") else f"{msg} at {location}"


def _shown(byte: int) -> str:
    return chr(byte) if byte < 128 else f"byte 0x{byte:02x}"


# --------------------------------------------------------------------------------------------
# Sniffing


def sniff(
    path: Path, display: str, *, wording: Wording = LOADER_WORDING, other_ok: bool = False
) -> Layout:
    """Tell a JSON list from JSON lines by the first non-whitespace byte (after a BOM).

    Raises:
        DataError: no such file, an empty (or all-whitespace) file, or, unless ``other_ok``
            (then the kind is ``"other"``), a first byte other than ``[`` or ``{``.
    """
    with open_input(path, display) as f:
        offset = len(BOM) if f.read(len(BOM)) == BOM else 0
        f.seek(offset)
        while True:
            chunk = f.read(65536)
            if not chunk:
                raise UnreadableFile(f"{display}: {wording.empty}")
            stripped = chunk.lstrip(_JSON_WS_BYTES)
            offset += len(chunk) - len(stripped)
            if stripped:
                break
    kind = {b"[": "list", b"{": "lines"}.get(stripped[:1], "other")
    if kind == "other" and not other_ok:
        shown = _shown(stripped[0])
        raise UnreadableFile(f"{display}: {wording.not_json.format(shown=shown, offset=offset)}")
    return Layout(kind, offset)


def _kind_at(path: Path, display: str, start: int | None, wording: Wording) -> str:
    """The layout's kind: sniffed, or told by the byte at ``start`` (an offset from sniff)."""
    if start is None:
        return sniff(path, display, wording=wording).kind
    with open_input(path, display) as f:
        f.seek(start)
        return "list" if f.read(1) == b"[" else "lines"


# --------------------------------------------------------------------------------------------
# Reading


def read_records(
    path: Path,
    display: str,
    start: int | None = None,
    *,
    after: Bookmark | None = None,
    wording: Wording = LOADER_WORDING,
) -> Iterator[Record]:
    """Stream the records of a JSON list or JSON lines file (module docstring).

    Args:
        path: the file.
        display: the path as the user gave it, for messages.
        start: :attr:`Layout.offset` from :func:`sniff` (saves a second sniff); None: sniff.
        after: resume after this record (a :attr:`Record.bookmark` of an earlier read of the
            same file): records, numbers and ordinals continue from there.
        wording: how the reader's problems read (default: the loader's).

    Yields:
        One :class:`Record` per record (blank JSONL lines are skipped, and still counted in
        line numbers). A JSONL line that is not UTF-8 or not JSON is a Record with ``problem``.

    Raises:
        UnreadableFile: the file cannot be opened, is empty or not JSON, or a JSON list is
            broken (bad syntax or encoding: the list cannot be resynchronised after it).
    """
    kind = _kind_at(path, display, start, wording)
    with open_input(path, display) as f:
        if kind == "list":
            yield from _ListReader(f, display, wording, after)
        else:
            yield from _iter_lines(f, wording, after)


def iter_values(
    path: Path,
    display: str,
    start: int | None = None,
    *,
    after: Bookmark | None = None,
    wording: Wording = LOADER_WORDING,
) -> Iterator[tuple[int, Any]]:
    """``(record number, parsed value)`` of each record, as :func:`read_records` reads them,
    raising a :class:`DataError` at the first record that cannot be parsed."""
    with contextlib.closing(read_records(path, display, start, after=after, wording=wording)) as rs:
        for rec in rs:
            if rec.problem is not None:
                raise DataError(f"{display}:{rec.number}: {rec.problem}")
            yield rec.number, rec.obj


def _iter_lines(f: BinaryIO, wording: Wording, after: Bookmark | None) -> Iterator[Record]:
    """Records of a JSON lines file, one per non-blank line."""
    offset, lineno, ordinal = (
        (0, 0, 0) if after is None else (after.offset, after.number, after.ordinal + 1)
    )
    f.seek(offset)
    for raw in f:
        lineno += 1
        start = offset
        offset += len(raw)
        if start == 0 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
            start += len(BOM)
        if not raw.strip(_JSON_WS_BYTES):
            continue  # blank lines are allowed and still counted in line numbers
        rec = Record(number=lineno, ordinal=ordinal, start=start, end=offset)
        ordinal += 1
        _parse_line(rec, raw, wording)
        yield rec


def _parse_line(rec: Record, raw: bytes, wording: Wording) -> None:
    """Fill ``rec.obj`` from one JSONL line, or ``rec.problem`` with why it cannot be read."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        what = wording.line_utf8.format(
            byte=raw[e.start], offset=rec.start + e.start, column=e.start + 1, reason=e.reason
        )
        rec.problem = f"<record>: {what}"
        return
    line = text.rstrip(_JSON_WS)
    try:
        rec.obj = json.loads(line)
    except json.JSONDecodeError as e:
        # Positions are 1-based characters within the line. An error at the very end (or in an
        # unterminated string) means the line ends early.
        ends_early = e.pos >= len(line) or e.msg.startswith("Unterminated")
        line_column = len(text) + 1 if e.pos >= len(line) else e.pos + 1
        what = wording.line_json.format(
            msg=e.msg, error=_json_error(e.msg, f"column {e.pos + 1}"), column=e.pos + 1,
            line_column=line_column,
        )  # fmt: skip
        rec.problem = f"<record>: {what}" + (wording.line_ends_early if ends_early else "")
        return
    rec.maybe_surrogates = _SURROGATE_ESCAPE_RE.search(line) is not None
    rec.size = len(line)


class _BadBytes(Exception):
    """Raised by :class:`_TextReader` at a byte that is not UTF-8 (the reader's message)."""


class _TextReader:
    """UTF-8 text of a binary file, decoded chunk by chunk.

    An invalid byte is reported only when the text up to it has been consumed and more is asked
    for, so the error lands on the record that contains it.
    """

    def __init__(self, f: BinaryIO, offset: int, wording: Wording):
        self.f = f
        self.offset = offset  # file offset of self.carry[0]
        self.wording = wording
        self.carry = b""  # undecoded bytes: an incomplete multi-byte sequence, or a bad byte
        self.bad: str | None = None
        self.eof = False

    def read(self, size: int) -> str:
        """Up to about ``size`` bytes of further text; "" only at the end of the file."""
        while True:
            if self.bad is not None:
                raise _BadBytes(self.bad)
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
                    self.bad = self.wording.list_utf8.format(
                        byte=data[e.start], offset=self.offset + e.start, reason=e.reason
                    )
                    self.eof = False
                text = data[: e.start].decode("utf-8")
                self.carry = data[e.start :]
                self.offset += e.start
            else:
                self.carry = b""
                self.offset += len(data)
            if text:
                return text


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class _ListReader:
    """The records of one JSON list, decoded incrementally (``raw_decode`` over a rolling buffer).

    ``buf[pos:]`` is the text not yet consumed. Reads are at least as large as the buffer, so a
    huge record costs O(size) reads, not O(size^2). Positions in messages are file lines and
    columns; byte offsets of records are counted as the buffer is consumed.
    """

    def __init__(self, f: BinaryIO, display: str, wording: Wording, after: Bookmark | None):
        self.display = display
        self.wording = wording
        self.after = after
        if after is None:
            start = len(BOM) if f.read(len(BOM)) == BOM else 0
            self.index = 0
        else:
            start, self.index = after.offset, after.number
        f.seek(start)
        self.reader = _TextReader(f, start, wording)
        self.buf = ""
        self.pos = 0
        self.line0, self.col0 = 1, 1  # line and column of buf[0] (relative to `start`)
        self.origin: tuple[int, int] | None = (1, 1) if after is None else None
        self.base = start  # byte offset of buf[0]
        self.mark, self.mark_bytes = 0, 0  # a buffer position and its UTF-8 length from buf[0]
        self.f = f

    # ---------------------------------------------------------------- buffer
    def _more(self) -> bool:
        """Drop the consumed text, append the next chunk; False once the file is exhausted."""
        buf, pos = self.buf, self.pos
        consumed = buf[:pos]
        newlines = consumed.count("\n")
        if newlines:
            self.line0 += newlines
            self.col0 = pos - consumed.rfind("\n")
        else:
            self.col0 += pos
        self.base = self._byte_offset(pos)
        self.mark = self.mark_bytes = 0
        try:
            chunk = self.reader.read(max(_CHUNK_BYTES, len(buf) - pos))
        except _BadBytes as e:
            self._fail(str(e))
        self.buf = buf[pos:] + chunk
        self.pos = 0
        return bool(chunk)

    def _byte_offset(self, p: int) -> int:
        """File offset of ``buf[p]``; ``p`` never goes back before the last position asked."""
        self.mark_bytes += _utf8_len(self.buf[self.mark : p])
        self.mark = p
        return self.base + self.mark_bytes

    def _skip_ws(self) -> bool:
        """Advance past whitespace; False at the end of the file."""
        while True:
            self.pos = _WS_RE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return True
            if not self._more():
                return False

    # ---------------------------------------------------------------- messages
    def _where(self, p: int) -> str:
        """``line L column C`` of ``buf[p]`` in the file."""
        buf = self.buf
        newlines = buf.count("\n", 0, p)
        if newlines:
            line, column = self.line0 + newlines, p - buf.rfind("\n", 0, p)
        else:
            line, column = self.line0, self.col0 + p
        line_r, col_r = self._origin()
        return f"line {line_r + line - 1} column {column if line > 1 else col_r + column - 1}"

    def _origin(self) -> tuple[int, int]:
        """File line and column where this read started: (1, 1), or after resuming from a
        bookmark counted from the file's start, only when a message needs it."""
        if self.origin is None:
            line, column = 1, 1
            self.f.seek(0)
            remaining = self.after.offset
            while remaining > 0:
                chunk = self.f.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                at_start = remaining == self.after.offset
                remaining -= len(chunk)
                if at_start and chunk.startswith(BOM):
                    chunk = chunk[len(BOM) :]
                newlines = chunk.count(b"\n")
                if newlines:
                    line, column = line + newlines, 1
                    chunk = chunk[chunk.rfind(b"\n") + 1 :]
                # Characters, not bytes: UTF-8 continuation bytes do not start a character.
                column += len(chunk) - len(chunk.translate(None, _NOT_CONTINUATION))
            self.origin = (line, column)
        return self.origin

    def _fail(self, what: str) -> NoReturn:
        raise UnreadableFile(f"{self.display}:{self.index}: <record>: {what}") from None

    # ---------------------------------------------------------------- records
    def __iter__(self) -> Iterator[Record]:
        """The list's records, from its start or after the bookmark."""
        if self.after is None:
            self._skip_ws()
            self.pos += 1  # the "[" found by sniff
            if not self._skip_ws():
                self._fail(self.wording.never_closed)
            more = self.buf[self.pos] != "]"
            if not more:
                self.pos += 1
        else:
            more = self._end_of_record()  # the separator after the bookmarked record
        while more:
            yield self._decode()
            more = self._end_of_record()
        if self._skip_ws():
            self._fail(self.wording.after_list.format(where=self._where(self.pos)))

    def _decode(self) -> Record:
        """Decode the record at ``pos`` (reading more text as needed) and move past it."""
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # Incomplete input fails near the end of the buffer (or in an unterminated
                # string): read more and retry; at the end of the file, retry once more so the
                # error positions refer to the final (compacted) buffer.
                near_end = e.pos >= len(self.buf) - _NEAR_END or e.msg.startswith("Unterminated")
                if near_end and not self.reader.eof:
                    self._more()
                    continue
                self._bad_json(e)
            if end == len(self.buf) and self._more():
                continue  # a top-level scalar may go on in the next chunk
            break  # _more() moves the unread text to the buffer start: pos is the record start
        buf, pos = self.buf, self.pos
        rec = Record(
            number=self.index,
            ordinal=self.index,
            obj=obj,
            start=self._byte_offset(pos),
            end=self._byte_offset(end),
            maybe_surrogates=_SURROGATE_ESCAPE_RE.search(buf, pos, end) is not None,
            size=end - pos,
        )
        self.pos = end
        return rec

    def _bad_json(self, e: json.JSONDecodeError) -> NoReturn:
        where = self._where(e.pos)
        fields = {"msg": e.msg, "where": where, "error": _json_error(e.msg, where)}
        if self.wording.near_end_truncated:
            at_end = e.pos >= len(self.buf) - _NEAR_END
        else:
            at_end = e.pos >= len(self.buf.rstrip(_JSON_WS))
        if e.msg.startswith("Unterminated") or at_end:
            self._fail(self.wording.truncated.format(**fields))
        self._fail(self.wording.bad_json.format(**fields))

    def _end_of_record(self) -> bool:
        """Consume the separator after a record: True (and the next record's index) when another
        record follows, False at the closing ``]``."""
        w = self.wording
        if not self._skip_ws():
            self._fail(w.never_closed)
        sep = self.buf[self.pos]
        self.pos += 1
        if sep == "]":
            return False
        if sep != ",":
            self._fail(w.separator.format(where=self._where(self.pos - 1), sep=sep))
        self.index += w.comma_starts_record
        if not self._skip_ws():
            self._fail(_AFTER_COMMA)
        if self.buf[self.pos] == "]":
            self._fail(w.trailing_comma.format(where=self._where(self.pos)))
        self.index += not w.comma_starts_record
        return True
