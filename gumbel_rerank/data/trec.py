"""TREC-style retrieval files: runs, passage collections and queries, read streaming.

Three inputs make up a TREC-style reranking job, and all three can be large:

* **Run** (``qid Q0 docid rank score tag``, whitespace separated, one candidate per line).
  :func:`iter_trec_run` yields one :class:`RunQuery` per query, in file order, holding only that
  query's candidates in memory. Runs are grouped by query in practice (every retriever writes
  them that way); a query whose lines are split into two blocks is an error, because a streaming
  reranker would otherwise write it twice. The ``Q0`` column is ignored, ``rank`` must be an
  integer and ``score`` a finite number; as in ``trec_eval``, the *score* orders candidates
  (:attr:`RunQuery.candidates` sorts by score descending, ties in file order), not the rank.
  :class:`TrecRunWriter` writes runs back (ranks from 1, scores descending).
* **Collection** (docid -> title and text): TSV or JSONL, see :class:`Collection`. Collections
  reach tens of millions of passages (MS MARCO: 8.8M, 3 GB; DPR Wikipedia: 21M, 13 GB), so the
  texts are never loaded into a dict: a one-time scan builds an on-disk SQLite index of
  ``docid -> (byte offset, length)`` of each line, and a look-up reads just that line back.
* **Queries** (qid -> text): TSV or JSONL, see :func:`load_queries`. Query files are small
  (at most a few hundred thousand lines), so they are loaded into a dict.

Problems are reported as :class:`gumbel_rerank.data.questions.DataError` with messages
``FILE:LINE: FIELD: what is wrong`` (LINE is 1-based), e.g.
``run.trec:17: score: expected a number, got 'abc'``.

Example::

    with Collection.open("collection.tsv") as coll:
        for query in iter_trec_run("bm25.trec"):
            passages = coll.get_many([c.docid for c in query.candidates])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gumbel_rerank.data.questions import DataError, open_input

__all__ = [
    "Collection",
    "RunCandidate",
    "RunQuery",
    "TrecRunWriter",
    "default_index_dir",
    "file_fingerprint",
    "format_trec_lines",
    "iter_trec_run",
    "load_queries",
]

_BOM = b"\xef\xbb\xbf"
_FINGERPRINT_SAMPLE_BYTES = 1 << 20
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
_QUERY_ID_KEYS = ("id", "_id", "qid")
_QUERY_TEXT_KEYS = ("text", "query", "question")
_QUERY_ID_COLUMNS = ("qid", "id", "_id", "query_id")


def _display(path: str | os.PathLike) -> str:
    return os.fspath(path)


def _decode(raw: bytes, display: str, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{display}:{lineno}: <line>: invalid UTF-8 byte 0x{raw[e.start]:02x} at column "
            f"{e.start + 1}"
        ) from None


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


def _sniff_jsonl(path: Path, display: str, fmt: str, what: str) -> bool:
    """True for JSONL, False for TSV: from ``fmt``, else the extension, else the first byte."""
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
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    return head.lstrip()[:1] == b"{"


# --------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class RunCandidate:
    """One line of a TREC run: a candidate ``docid`` for a query, with the run's rank/score."""

    docid: str
    rank: int
    score: float
    line: int  # 1-based line in the run file, for error messages about this candidate


@dataclass(frozen=True)
class RunQuery:
    """All candidates of one query of a run.

    Attributes:
        qid: the query id.
        line: line of the query's first candidate.
        candidates: ordered by the run's score, descending; equal scores keep file order.
    """

    qid: str
    line: int
    candidates: tuple[RunCandidate, ...]


def _parse_run_line(fields: list[str], display: str, lineno: int) -> tuple[str, RunCandidate]:
    where = f"{display}:{lineno}: "
    if len(fields) != 6:
        raise DataError(
            f"{where}<line>: expected 6 whitespace-separated fields "
            f"'qid Q0 docid rank score tag', got {len(fields)}"
        )
    qid, _q0, docid, rank_s, score_s, _tag = fields
    try:
        rank = int(rank_s)
    except ValueError:
        raise DataError(f"{where}rank: expected an integer, got {rank_s!r}") from None
    try:
        score = float(score_s)
    except ValueError:
        raise DataError(f"{where}score: expected a number, got {score_s!r}") from None
    if not math.isfinite(score):
        raise DataError(f"{where}score: expected a finite number, got {score_s!r}")
    return qid, RunCandidate(docid=docid, rank=rank, score=score, line=lineno)


def iter_trec_run(path: str | os.PathLike) -> Iterator[RunQuery]:
    """Stream a TREC run file query by query, in file order.

    Only the current query's candidates are held in memory (plus the set of query ids seen, to
    detect a query split into two blocks). Blank lines are skipped.

    Raises:
        DataError: missing file, a line without 6 fields, a non-integer rank, a non-numeric or
            non-finite score, a docid listed twice for one query, a query whose lines are not
            contiguous, or an empty run.
    """
    display = _display(path)
    seen: dict[str, int] = {}  # qid -> line of its block, for the "reappears" message
    qid: str | None = None
    first_line = 0
    block: list[RunCandidate] = []
    docids: dict[str, int] = {}

    def finish() -> RunQuery:
        # sorted() is stable: equal scores keep file order.
        ordered = tuple(sorted(block, key=lambda c: -c.score))
        return RunQuery(qid=qid, line=first_line, candidates=ordered)  # type: ignore[arg-type]

    with open_input(Path(display), display, "TREC run") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            fields = _decode(raw, display, lineno).split()
            if not fields:
                continue
            line_qid, cand = _parse_run_line(fields, display, lineno)
            if line_qid != qid:
                if qid is not None:
                    yield finish()
                if line_qid in seen:
                    raise DataError(
                        f"{display}:{lineno}: qid: query {line_qid!r} reappears after other "
                        f"queries (its first block starts on line {seen[line_qid]}); a run must "
                        "list each query's lines together (sort it, e.g. `sort -s -k1,1`)"
                    )
                qid, first_line = line_qid, lineno
                seen[qid] = lineno
                block, docids = [], {}
            if cand.docid in docids:
                raise DataError(
                    f"{display}:{lineno}: docid: {cand.docid!r} is listed twice for query "
                    f"{qid!r} (first on line {docids[cand.docid]})"
                )
            docids[cand.docid] = lineno
            block.append(cand)
    if qid is None:
        raise DataError(f"{display}: empty run file, expected lines 'qid Q0 docid rank score tag'")
    yield finish()


def format_trec_lines(
    qid: str, docids: Sequence[str], scores: Sequence[float], tag: str = "gumbel_rerank"
) -> str:
    """TREC run lines for one query: sorted by score descending (ties keep input order), ranks
    from 1. Scores are written with 9 significant digits, which round-trips float32 exactly.

    Args:
        qid: query id (no whitespace).
        docids: N document ids (no whitespace).
        scores: N scores aligned with ``docids``.
        tag: the run tag (last column; no whitespace).

    Returns:
        N newline-terminated lines ("" for N = 0).
    """
    if len(docids) != len(scores):
        raise ValueError(f"got {len(docids)} docids but {len(scores)} scores")
    for name, value in (("qid", qid), ("tag", tag), *(("docid", d) for d in docids)):
        if not value or len(value.split()) != 1 or value.strip() != value:
            raise ValueError(f"TREC {name} must be non-empty without whitespace, got {value!r}")
    order = sorted(range(len(docids)), key=lambda i: -scores[i])
    return "".join(
        f"{qid} Q0 {docids[i]} {rank} {format(float(scores[i]), '.9g')} {tag}\n"
        for rank, i in enumerate(order, start=1)
    )


class TrecRunWriter:
    """Write a TREC run query by query to a text file object (or a path, opened for writing).

    Example::

        with TrecRunWriter("reranked.trec", tag="my_reranker") as w:
            w.write("q1", ["d3", "d7"], [2.5, -0.1])
    """

    def __init__(self, file: str | os.PathLike | IO[str], tag: str = "gumbel_rerank"):
        self._own = not hasattr(file, "write")
        # The writer owns a file it opened and closes it in close() / __exit__.
        self.file: IO[str] = (
            open(file, "w", encoding="utf-8")  # noqa: SIM115
            if self._own
            else file  # type: ignore[assignment]
        )
        self.tag = tag

    def write(self, qid: str, docids: Sequence[str], scores: Sequence[float]) -> None:
        self.file.write(format_trec_lines(qid, docids, scores, self.tag))

    def close(self) -> None:
        if self._own:
            self.file.close()

    def __enter__(self) -> TrecRunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Collections


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


def _json_first(obj: dict, keys: Sequence[str]) -> tuple[str | None, Any]:
    for key in keys:
        if key in obj and obj[key] is not None:
            return key, obj[key]
    return None, None


def _json_line(raw_text: str, display: str, lineno: int) -> dict:
    try:
        obj = json.loads(raw_text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{display}:{lineno}: <record>: invalid JSON: {e.msg} at column {e.pos + 1}"
        ) from None
    if type(obj) is not dict:
        raise DataError(f"{display}:{lineno}: <record>: expected a JSON object")
    return obj


def _json_id(obj: dict, keys: Sequence[str], display: str, lineno: int) -> str:
    key, value = _json_first(obj, keys)
    if key is None:
        raise DataError(f"{display}:{lineno}: {keys[0]}: missing field (tried {', '.join(keys)})")
    if type(value) is int:
        return str(value)
    if type(value) is not str or not value.strip():
        raise DataError(f"{display}:{lineno}: {key}: expected a non-empty string or an integer")
    return value


def _json_text(obj: dict, keys: Sequence[str], display: str, lineno: int) -> tuple[str, str]:
    key, value = _json_first(obj, keys)
    if key is None:
        raise DataError(f"{display}:{lineno}: {keys[0]}: missing field (tried {', '.join(keys)})")
    if type(value) is not str:
        raise DataError(f"{display}:{lineno}: {key}: expected a string")
    return key, value


def _parse_json_doc(raw_text: str, display: str, lineno: int) -> tuple[str, str, str]:
    obj = _json_line(raw_text, display, lineno)
    docid = _json_id(obj, _JSON_DOC_ID_KEYS, display, lineno)
    _, text = _json_text(obj, _JSON_DOC_TEXT_KEYS, display, lineno)
    title = obj.get("title")
    if title is None:
        title = ""
    elif type(title) is not str:
        raise DataError(f"{display}:{lineno}: title: expected a string")
    return docid, title, text


def default_index_dir() -> Path:
    """Where collection indexes go by default: ``<HF_DATASETS_CACHE>/gumbel_rerank_collections``,
    next to the question cache of :func:`gumbel_rerank.data.questions.load_questions` (one setting moves
    both to a big disk)."""
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
        display = _display(path)
        resolved = Path(display).expanduser().resolve()
        if not resolved.is_file():
            raise DataError(
                f"{display}: no such file (collection)"
                if not resolved.exists()
                else f"{display}: not a regular file (collection)"
            )
        jsonl = _sniff_jsonl(resolved, display, format, "collection")
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
        if first.startswith(_BOM):
            first = first[len(_BOM) :]
        return _tsv_header(_decode(first, display, 1))

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
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(
                    total=path.stat().st_size,
                    unit="B",
                    unit_scale=True,
                    desc=f"indexing {path.name}",
                )
            rows: list[tuple[str, int, int, int]] = []
            offset = 0
            with open_input(path, display, "collection") as f:
                for lineno, raw in enumerate(f, start=1):
                    start, offset = offset, offset + len(raw)
                    if bar is not None and lineno % 10_000 == 0:
                        bar.update(offset - bar.n)
                    if lineno == 1:
                        if raw.startswith(_BOM):
                            raw, start = raw[len(_BOM) :], start + len(_BOM)
                        if layout is not None:
                            continue  # the header
                    text = _decode(raw, display, lineno)
                    if not text.strip():
                        continue
                    if jsonl:
                        docid, _, _ = _parse_json_doc(text, display, lineno)
                    else:
                        docid, _, _ = _parse_tsv_doc(text, layout, display, lineno)
                    rows.append((docid, lineno, start, len(raw)))
                    if len(rows) >= _INSERT_BATCH:
                        db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", rows)
                        rows = []
            if rows:
                db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", rows)
            if bar is not None:
                bar.update(offset - bar.n)
                bar.close()
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
        return self._size

    def __contains__(self, docid: object) -> bool:
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
        text = _decode(raw, self.display, line)
        if self.jsonl:
            _, title, body = _parse_json_doc(text, self.display, line)
        else:
            _, title, body = _parse_tsv_doc(text, self._layout, self.display, line)
        return title, body

    def close(self) -> None:
        self._db.close()
        self._file.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Collection({self.display!r}, {self._size} passages, index={str(self.index_path)!r})"
        )


# --------------------------------------------------------------------------------------------
# Queries


def _iter_lines(path: Path, display: str, what: str) -> Iterable[tuple[int, str]]:
    with open_input(path, display, what) as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            text = _decode(raw, display, lineno)
            if text.strip():
                yield lineno, text


def load_queries(path: str | os.PathLike, *, format: str = "auto") -> dict[str, str]:
    """Read a query file into ``{qid: text}`` (query files are small enough for a dict).

    Formats (``format="auto"`` decides as :class:`Collection` does):

    * TSV ``qid<TAB>text``; a first line ``qid|id|_id|query_id <TAB> text|query|question`` is a
      header and skipped.
    * JSONL ``{"id" | "_id" | "qid": ..., "text" | "query" | "question": ...}``.

    Raises:
        DataError: missing file, a malformed line, an empty query text, a duplicate qid or no
            queries at all (``FILE:LINE: FIELD: what``).
    """
    display = _display(path)
    resolved = Path(display).expanduser()
    if not resolved.exists():
        raise DataError(f"{display}: no such file (queries)")
    jsonl = _sniff_jsonl(resolved, display, format, "queries")
    queries: dict[str, str] = {}
    lines: dict[str, int] = {}
    first = True
    for lineno, text in _iter_lines(resolved, display, "queries"):
        is_first, first = first, False
        if jsonl:
            obj = _json_line(text, display, lineno)
            qid = _json_id(obj, _QUERY_ID_KEYS, display, lineno)
            key, query = _json_text(obj, _QUERY_TEXT_KEYS, display, lineno)
        else:
            fields = text.rstrip("\r\n").split("\t")
            if is_first and len(fields) == 2:
                names = [n.strip().lower() for n in fields]
                if names[0] in _QUERY_ID_COLUMNS and names[1] in _QUERY_TEXT_KEYS:
                    continue  # header
            if len(fields) != 2:
                raise DataError(
                    f"{display}:{lineno}: <line>: expected 2 tab-separated fields 'qid text', "
                    f"got {len(fields)}"
                )
            qid, query, key = fields[0].strip(), fields[1], "text"
            if not qid:
                raise DataError(f"{display}:{lineno}: qid: empty")
        if not query.strip():
            raise DataError(f"{display}:{lineno}: {key}: empty query text")
        if qid in lines:
            raise DataError(
                f"{display}:{lineno}: qid: duplicate id {qid!r} (first on line {lines[qid]})"
            )
        lines[qid] = lineno
        queries[qid] = query
    if not queries:
        raise DataError(f"{display}: no queries in the file")
    return queries
