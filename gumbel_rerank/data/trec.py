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

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gumbel_rerank.data.collection import Collection, default_index_dir
from gumbel_rerank.data.jsonstream import DataError
from gumbel_rerank.data.linefiles import (
    file_fingerprint,
    is_jsonl,
    iter_text_lines,
    json_id,
    json_line,
    json_text,
)

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

_QUERY_ID_KEYS = ("id", "_id", "qid")
_QUERY_TEXT_KEYS = ("text", "query", "question")
_QUERY_ID_COLUMNS = ("qid", "id", "_id", "query_id")


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
    display = os.fspath(path)
    seen: dict[str, int] = {}  # qid -> line of its block, for the "reappears" message
    qid: str | None = None
    first_line = 0
    block: list[RunCandidate] = []
    docids: dict[str, int] = {}

    def finish() -> RunQuery:
        """The current query, candidates by score."""
        # sorted() is stable: equal scores keep file order.
        ordered = tuple(sorted(block, key=lambda c: -c.score))
        return RunQuery(qid=qid, line=first_line, candidates=ordered)  # type: ignore[arg-type]

    for lineno, text, _, _ in iter_text_lines(Path(display), display, "TREC run"):
        line_qid, cand = _parse_run_line(text.split(), display, lineno)
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
        """Write one query's candidates (:func:`format_trec_lines`)."""
        self.file.write(format_trec_lines(qid, docids, scores, self.tag))

    def close(self) -> None:
        """Close the file if the writer opened it."""
        if self._own:
            self.file.close()

    def __enter__(self) -> TrecRunWriter:
        """The writer itself; closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close (:meth:`close`)."""
        self.close()


# --------------------------------------------------------------------------------------------
# Queries


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
    display = os.fspath(path)
    resolved = Path(display).expanduser()
    if not resolved.exists():
        raise DataError(f"{display}: no such file (queries)")
    jsonl = is_jsonl(resolved, display, format, "queries")
    queries: dict[str, str] = {}
    lines: dict[str, int] = {}
    first = True
    for lineno, text, _, _ in iter_text_lines(resolved, display, "queries"):
        is_first, first = first, False
        if jsonl:
            obj = json_line(text, display, lineno)
            qid = json_id(obj, _QUERY_ID_KEYS, display, lineno)
            key, query = json_text(obj, _QUERY_TEXT_KEYS, display, lineno)
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
