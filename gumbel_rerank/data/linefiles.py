"""Line-oriented inputs of TREC-style jobs (runs, collections, queries): lines, formats, fields.

Runs, collections and query files are read line by line (:func:`iter_text_lines`: a BOM on the
first line is dropped, lines must be UTF-8, blank lines are skipped and still counted). A
collection or a query file is TSV or JSONL (:func:`is_jsonl`); a JSONL line is one object whose
id and text may sit under several keys (:func:`json_line`, :func:`json_id`, :func:`json_text`).
Problems read ``FILE:LINE: FIELD: what is wrong`` (LINE is 1-based).

Also here: :func:`file_fingerprint`, the cheap content key of any input file, which tells
whether a cache, an index or a half-finished output still belongs to the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from gumbel_rerank.data.jsonstream import BOM, DataError, open_input

__all__ = [
    "TextLine",
    "decode_line",
    "file_fingerprint",
    "is_jsonl",
    "iter_text_lines",
    "json_id",
    "json_line",
    "json_text",
]

_FINGERPRINT_SAMPLE_BYTES = 1 << 20


class TextLine(NamedTuple):
    """One non-blank line: 1-based ``lineno``, its ``text`` (line end included), and the byte
    ``offset`` and ``length`` of its bytes in the file (a BOM excluded), to read it back."""

    lineno: int
    text: str
    offset: int
    length: int


def decode_line(raw: bytes, display: str, lineno: int) -> str:
    """``raw`` as UTF-8 text; a bad byte is a DataError naming the line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{display}:{lineno}: <line>: invalid UTF-8 byte 0x{raw[e.start]:02x} at column "
            f"{e.start + 1}"
        ) from None


def iter_text_lines(path: Path, display: str, what: str) -> Iterator[TextLine]:
    """The non-blank lines of a text file (``what`` names it in a "no such file" message)."""
    offset = 0
    with open_input(path, display, what) as f:
        for lineno, raw in enumerate(f, start=1):
            start, offset = offset, offset + len(raw)
            if lineno == 1 and raw.startswith(BOM):
                raw, start = raw[len(BOM) :], start + len(BOM)
            text = decode_line(raw, display, lineno)
            if text.strip():
                yield TextLine(lineno, text, start, len(raw))


def file_fingerprint(path: str | os.PathLike) -> str:
    """A cheap content key of a file: absolute path, size, mtime and its first and last MiB.

    Used to tell whether an index or a half-finished output still belongs to this file. The head
    and tail bytes catch rewrites that keep size and a coarse (1-2 s) mtime.
    """
    path = Path(path).resolve()
    st = path.stat()
    h = hashlib.sha256(
        json.dumps(
            {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}, sort_keys=True
        ).encode()
    )
    with path.open("rb") as f:
        h.update(f.read(_FINGERPRINT_SAMPLE_BYTES))
        if st.st_size > 2 * _FINGERPRINT_SAMPLE_BYTES:
            f.seek(-_FINGERPRINT_SAMPLE_BYTES, os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:32]


def is_jsonl(path: Path, display: str, fmt: str, what: str) -> bool:
    """True for JSONL, False for TSV: from ``fmt`` (``"auto"``, ``"tsv"``, ``"jsonl"``), else
    the extension, else whether the first byte is ``{``."""
    if fmt not in ("auto", "tsv", "jsonl"):
        raise ValueError(f"format must be 'auto', 'tsv' or 'jsonl', got {fmt!r}")
    if fmt != "auto":
        return fmt == "jsonl"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return True
    if suffix in (".tsv", ".txt"):
        return False
    with open_input(path, display, what) as f:
        head = f.read(4096)
    if head.startswith(BOM):
        head = head[len(BOM) :]
    return head.lstrip()[:1] == b"{"


def _json_first(obj: dict, keys: Sequence[str]) -> tuple[str | None, Any]:
    for key in keys:
        if key in obj and obj[key] is not None:
            return key, obj[key]
    return None, None


def json_line(raw_text: str, display: str, lineno: int) -> dict:
    """The JSON object on one line."""
    try:
        obj = json.loads(raw_text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{display}:{lineno}: <record>: invalid JSON: {e.msg} at column {e.pos + 1}"
        ) from None
    if type(obj) is not dict:
        raise DataError(f"{display}:{lineno}: <record>: expected a JSON object")
    return obj


def json_id(obj: dict, keys: Sequence[str], display: str, lineno: int) -> str:
    """The id under the first of ``keys`` present (and not null): a non-blank string, or an
    integer (returned as a string)."""
    key, value = _json_first(obj, keys)
    if key is None:
        raise DataError(f"{display}:{lineno}: {keys[0]}: missing field (tried {', '.join(keys)})")
    if type(value) is int:
        return str(value)
    if type(value) is not str or not value.strip():
        raise DataError(f"{display}:{lineno}: {key}: expected a non-empty string or an integer")
    return value


def json_text(obj: dict, keys: Sequence[str], display: str, lineno: int) -> tuple[str, str]:
    """(key, string) of the first of ``keys`` present (and not null)."""
    key, value = _json_first(obj, keys)
    if key is None:
        raise DataError(f"{display}:{lineno}: {keys[0]}: missing field (tried {', '.join(keys)})")
    if type(value) is not str:
        raise DataError(f"{display}:{lineno}: {key}: expected a string")
    return key, value
