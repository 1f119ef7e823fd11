"""Passage collections (docid -> title and text) of TREC-style jobs, as an on-disk index.

Collections reach tens of millions of passages (MS MARCO: 8.8M, 3 GB; DPR Wikipedia: 21M,
13 GB), so the texts are never loaded into a dict: a one-time scan builds an on-disk SQLite index
of ``docid -> (byte offset, length)`` of each line, and a look-up reads just that line back
(:class:`Collection`). Problems are :class:`gumbel_rerank.data.jsonstream.DataError` with
messages ``FILE:LINE: FIELD: what is wrong`` (LINE is 1-based).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gumbel_rerank.data.jsonstream import BOM, DataError, open_input
from gumbel_rerank.data.linefiles import (
    decode_line,
    file_fingerprint,
    is_jsonl,
    iter_text_lines,
    json_id,
    json_line,
    json_text,
)

__all__ = ["Collection", "default_index_dir"]

_INDEX_FORMAT_VERSION = 1
_INDEX_SUBDIR = "gumbel_rerank_collections"
_INSERT_BATCH = 10_000
# SQLite builds before 3.32 allow at most 999 parameters per statement.
_LOOKUP_BATCH = 900

_ID_COLUMNS = ("id", "_id", "docid", "doc_id", "pid")
_TEXT_COLUMNS = ("text", "contents", "passage", "body")
_OTHER_COLUMNS = ("title", "url")
_JSON_DOC_ID_KEYS = ("id", "_id", "docid")
_JSON_DOC_TEXT_KEYS = ("text", "contents")


def _unquote(field: str) -> str:
    """Undo CSV-style quoting of one TSV field (DPR's psgs_w100.tsv quotes its texts).

    Only a field that is validly quoted as a whole (``"..."`` with every inner quote doubled) is
    unquoted, so MS MARCO passages that merely contain quotes are left alone.
    """
    if len(field) >= 2 and field[0] == '"' and field[-1] == '"':
        inner = field[1:-1]
        if '"' not in inner.replace('""', ""):
            return inner.replace('""', '"')
    return field


@dataclass(frozen=True)
class _TsvLayout:
    id_col: int
    text_col: int
    title_col: int | None
    n_cols: int | None  # None: 2 or 3 columns without a header, decided per line


def _tsv_header(first: str) -> _TsvLayout | None:
    """The column layout named by a header line, or None when ``first`` is not a header."""
    names = [n.strip().lower() for n in first.rstrip("\r\n").split("\t")]
    if len(names) < 2 or names[0] not in _ID_COLUMNS:
        return None
    if not all(n in _TEXT_COLUMNS or n in _OTHER_COLUMNS for n in names[1:]):
        return None
    text = [i for i, n in enumerate(names) if n in _TEXT_COLUMNS]
    if len(text) != 1:
        return None
    title = [i for i, n in enumerate(names) if n == "title"]
    return _TsvLayout(0, text[0], title[0] if title else None, len(names))


def _parse_tsv_doc(
    line: str, layout: _TsvLayout | None, display: str, lineno: int
) -> tuple[str, str, str]:
    """(docid, title, text) of one collection TSV line."""
    fields = line.rstrip("\r\n").split("\t")
    if layout is None:
        if len(fields) == 2:
            layout = _TsvLayout(0, 1, None, 2)
        elif len(fields) == 3:
            layout = _TsvLayout(0, 2, 1, 3)
        else:
            raise DataError(
                f"{display}:{lineno}: <line>: expected 2 tab-separated fields 'docid text' or 3 "
                f"'docid title text', got {len(fields)} (a header line such as 'id\\ttext\\ttitle' "
                "names other layouts)"
            )
    elif len(fields) != layout.n_cols:
        raise DataError(
            f"{display}:{lineno}: <line>: expected {layout.n_cols} tab-separated fields as in "
            f"the header, got {len(fields)}"
        )
    docid = fields[layout.id_col].strip()
    if not docid:
        raise DataError(f"{display}:{lineno}: docid: empty")
    title = "" if layout.title_col is None else _unquote(fields[layout.title_col])
    return docid, title, _unquote(fields[layout.text_col])


def _parse_json_doc(raw_text: str, display: str, lineno: int) -> tuple[str, str, str]:
    """(docid, title, text) of one collection JSONL line."""
    obj = json_line(raw_text, display, lineno)
    docid = json_id(obj, _JSON_DOC_ID_KEYS, display, lineno)
    _, text = json_text(obj, _JSON_DOC_TEXT_KEYS, display, lineno)
    title = obj.get("title")
    if title is None:
        title = ""
    elif type(title) is not str:
        raise DataError(f"{display}:{lineno}: title: expected a string")
    return docid, title, text


def default_index_dir() -> Path:
    """Where collection indexes go by default: ``<HF_DATASETS_CACHE>/gumbel_rerank_collections``,
    next to the question cache of :func:`gumbel_rerank.data.questions.load_questions` (one
    setting moves both to a big disk)."""
    cache = os.environ.get("HF_DATASETS_CACHE")
    if not cache:
        home = os.environ.get("HF_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"),
            "huggingface",
        )
        cache = os.path.join(home, "datasets")
    return Path(cache).expanduser() / _INDEX_SUBDIR


class Collection:
    """A read-only docid -> (title, text) look-up over a TSV or JSONL collection file.

    Use :meth:`open` (it builds the index when needed). Memory stays flat whatever the collection
    size: the SQLite index holds ``docid -> (line, byte offset, byte length)`` of each line, and a
    look-up reads that line back from the original file with ``pread`` and parses it. The index
    costs roughly 40 bytes per passage on disk (MS MARCO: ~0.4 GB) instead of a second copy of
    the texts, and rebuilding it is one sequential scan (validating every line, so look-ups
    cannot fail later).

    Formats (``format="auto"`` picks JSONL for ``.jsonl``/``.json``/``.ndjson``, TSV for
    ``.tsv``/``.txt``, otherwise JSONL when the first byte is ``{``):

    * TSV. A first line is a *header* when its first field is an id column name (``id``, ``_id``,
      ``docid``, ``doc_id``, ``pid``) and every other field is ``text``/``contents``/``passage``/
      ``body`` (exactly one of these), ``title`` or ``url`` (case-insensitive); the header then
      names the columns, e.g. DPR's ``psgs_w100.tsv`` (``id text title``). Without a header a line
      is ``docid<TAB>text`` (MS MARCO ``collection.tsv``) or ``docid<TAB>title<TAB>text``. A field
      quoted CSV-style as a whole (``"..."`` with inner quotes doubled, as in DPR's file) is
      unquoted.
    * JSONL: ``{"id" | "_id" | "docid": ..., "title"?: ..., "text" | "contents": ...}`` (BEIR
      ``corpus.jsonl``, Pyserini). Integer ids become strings.

    Compressed files are not supported (byte offsets need random access): decompress first.

    The index lives in ``index_dir`` under a name derived from :func:`file_fingerprint` of the
    collection and the format, so a changed file gets a new index. It is built into a temporary
    file and renamed into place, so an interrupted build or two concurrent builders never leave a
    broken index. Stale indexes of older versions of a file are not deleted automatically.
    """

    def __init__(
        self, path: Path, index_path: Path, jsonl: bool, layout: _TsvLayout | None, display: str
    ):
        self.path = path
        self.index_path = index_path
        self.display = display
        self.jsonl = jsonl
        self._layout = layout
        # Read-only: look-ups never write, and a read-only handle cannot damage a shared index.
        self._db = sqlite3.connect(f"{index_path.as_uri()}?mode=ro", uri=True)
        self._file = path.open("rb")
        (self._size,) = self._db.execute("SELECT COUNT(*) FROM docs").fetchone()
        row = self._db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        self.fingerprint: str = row[0]

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        format: str = "auto",
        index_dir: str | os.PathLike | None = None,
        progress: bool = False,
    ) -> Collection:
        """Open a collection, building its index first if there is none for this file content.

        Args:
            path: the TSV or JSONL collection file.
            format: ``"auto"``, ``"tsv"`` or ``"jsonl"``.
            index_dir: where indexes are kept (default :func:`default_index_dir`).
            progress: show a progress bar (bytes read) while building.

        Raises:
            DataError: missing file, or an invalid or duplicate line (``FILE:LINE: FIELD: what``).
        """
        display = os.fspath(path)
        resolved = Path(display).expanduser().resolve()
        if not resolved.is_file():
            raise DataError(
                f"{display}: no such file (collection)"
                if not resolved.exists()
                else f"{display}: not a regular file (collection)"
            )
        jsonl = is_jsonl(resolved, display, format, "collection")
        layout = None if jsonl else cls._read_layout(resolved, display)
        fingerprint = file_fingerprint(resolved)
        key = hashlib.sha256(
            f"{fingerprint}:{'jsonl' if jsonl else 'tsv'}:{_INDEX_FORMAT_VERSION}".encode()
        ).hexdigest()[:32]
        root = default_index_dir() if index_dir is None else Path(index_dir).expanduser()
        index_path = root / f"{resolved.stem[:40]}-{key}.sqlite"
        if not index_path.is_file():
            root.mkdir(parents=True, exist_ok=True)
            cls._build(resolved, display, jsonl, layout, fingerprint, index_path, progress)
        return cls(resolved, index_path, jsonl, layout, display)

    @staticmethod
    def _read_layout(path: Path, display: str) -> _TsvLayout | None:
        with open_input(path, display, "collection") as f:
            first = f.readline()
        if first.startswith(BOM):
            first = first[len(BOM) :]
        return _tsv_header(decode_line(first, display, 1))

    @staticmethod
    def _build(
        path: Path,
        display: str,
        jsonl: bool,
        layout: _TsvLayout | None,
        fingerprint: str,
        index_path: Path,
        progress: bool,
    ) -> None:
        """Scan the collection into a new index at ``index_path`` (validating every line)."""
        tmp = index_path.with_name(f".{index_path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        db = sqlite3.connect(tmp)
        try:
            # A throwaway file until the rename: no journal, no syncs while loading.
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            # The unique index is created after the bulk insert: sorting once is much faster
            # than keeping a B-tree ordered through millions of random-order inserts.
            db.execute(
                "CREATE TABLE docs (docid TEXT, line INTEGER, offset INTEGER, length INTEGER)"
            )
            _insert_lines(db, path, display, jsonl, layout, progress)
            _finish_index(db, display, fingerprint, jsonl)
            db.close()
            # Durable before it becomes visible under its final name.
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, index_path)
        finally:
            db.close()
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ look-ups
    def __len__(self) -> int:
        """Number of passages."""
        return self._size

    def __contains__(self, docid: object) -> bool:
        """Whether ``docid`` is in the collection."""
        return (
            isinstance(docid, str)
            and self._db.execute("SELECT 1 FROM docs WHERE docid = ?", (docid,)).fetchone()
            is not None
        )

    def __getitem__(self, docid: str) -> tuple[str, str]:
        """``(title, text)`` of one passage (title "" when the collection has none)."""
        found = self.get_many([docid])[0]
        if found is None:
            raise KeyError(docid)
        return found

    def get_many(self, docids: Sequence[str]) -> list[tuple[str, str] | None]:
        """``(title, text)`` for each docid, aligned with ``docids``; None for unknown ids."""
        where: dict[str, tuple[int, int, int]] = {}
        unique = list(dict.fromkeys(docids))
        for start in range(0, len(unique), _LOOKUP_BATCH):
            part = unique[start : start + _LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            for docid, line, offset, length in self._db.execute(
                f"SELECT docid, line, offset, length FROM docs WHERE docid IN ({marks})", part
            ):
                where[docid] = (line, offset, length)
        out: list[tuple[str, str] | None] = []
        for docid in docids:
            loc = where.get(docid)
            out.append(None if loc is None else self._read(*loc))
        return out

    def _read(self, line: int, offset: int, length: int) -> tuple[str, str]:
        if hasattr(os, "pread"):
            raw = os.pread(self._file.fileno(), length, offset)
        else:  # Windows
            self._file.seek(offset)
            raw = self._file.read(length)
        if len(raw) != length:
            raise DataError(
                f"{self.display}: changed since it was indexed ({self.index_path}); reopen it"
            )
        text = decode_line(raw, self.display, line)
        if self.jsonl:
            _, title, body = _parse_json_doc(text, self.display, line)
        else:
            _, title, body = _parse_tsv_doc(text, self._layout, self.display, line)
        return title, body

    def close(self) -> None:
        """Close the index and the collection file."""
        self._db.close()
        self._file.close()

    def __enter__(self) -> Collection:
        """The collection itself; closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close (:meth:`close`)."""
        self.close()

    def __repr__(self) -> str:
        """File, size and index path."""
        return (
            f"Collection({self.display!r}, {self._size} passages, index={str(self.index_path)!r})"
        )


def _insert_lines(
    db: sqlite3.Connection,
    path: Path,
    display: str,
    jsonl: bool,
    layout: _TsvLayout | None,
    progress: bool,
) -> None:
    """Parse every passage line and insert ``(docid, line, offset, length)`` rows."""
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=path.stat().st_size, unit="B", unit_scale=True, desc=f"indexing {path.name}"
        )
    rows: list[tuple[str, int, int, int]] = []
    end = 0
    for line in iter_text_lines(path, display, "collection"):
        end = line.offset + line.length
        if bar is not None and line.lineno % 10_000 == 0:
            bar.update(end - bar.n)
        if line.lineno == 1 and layout is not None:
            continue  # the header
        if jsonl:
            docid, _, _ = _parse_json_doc(line.text, display, line.lineno)
        else:
            docid, _, _ = _parse_tsv_doc(line.text, layout, display, line.lineno)
        rows.append((docid, line.lineno, line.offset, line.length))
        if len(rows) >= _INSERT_BATCH:
            db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", rows)
            rows = []
    if rows:
        db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", rows)
    if bar is not None:
        bar.update(path.stat().st_size - bar.n)
        bar.close()


def _finish_index(db: sqlite3.Connection, display: str, fingerprint: str, jsonl: bool) -> None:
    """Index the docids (a duplicate is an error naming both lines), check the collection is not
    empty, record the metadata and commit."""
    try:
        db.execute("CREATE UNIQUE INDEX docs_docid ON docs (docid)")
    except sqlite3.IntegrityError:
        docid, first, second = db.execute(
            "SELECT docid, MIN(line), MAX(line) FROM docs GROUP BY docid "
            "HAVING COUNT(*) > 1 ORDER BY MIN(line) LIMIT 1"
        ).fetchone()
        raise DataError(
            f"{display}:{second}: docid: duplicate id {docid!r} (first on line {first})"
        ) from None
    (count,) = db.execute("SELECT COUNT(*) FROM docs").fetchone()
    if count == 0:
        raise DataError(f"{display}: no passages in the collection")
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [
            ("fingerprint", fingerprint),
            ("format", "jsonl" if jsonl else "tsv"),
            ("version", str(_INDEX_FORMAT_VERSION)),
        ],
    )
    db.commit()
