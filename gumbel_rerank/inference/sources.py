"""What ``rerank`` reads: our question format or a TREC run, as a lazy stream of units.

A source yields raw *units* cheaply (a parsed record, a run query) and turns one into an
:class:`Item` (question text and passages, ready to score) only when asked, so the units an
interrupted run already wrote are skipped without the work of building them (for a TREC run:
without collection look-ups).

Our format is read with :mod:`gumbel_rerank.data.jsonstream`, never through the loader's Arrow
cache (which would copy the whole file first). Only what reranking needs is checked: a
non-empty string ``question`` and a ``ctxs`` list of objects with a string ``text`` (and a string
or null ``title``); every other field is passed through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gumbel_rerank.data.jsonstream import (
    DataError,
    Wording,
    describe_type,
    iter_values,
    string_problem,
)
from gumbel_rerank.data.trec import Collection, RunQuery, iter_trec_run

__all__ = ["RERANK_WORDING", "Item", "OurSource", "Source", "TrecSource"]

#: How ``gumbel-rerank rerank`` words the JSON reader's problems (as it always has).
RERANK_WORDING = Wording(
    empty="empty file",
    line_utf8="invalid UTF-8 byte 0x{byte:02x} at column {column}",
    line_json="invalid JSON: {msg} at column {line_column}",
    line_ends_early=(
        " (a truncated line, or a record spread over several lines, which JSON lines does not "
        "allow)"
    ),
    list_utf8="invalid UTF-8 ({reason})",
    truncated="invalid JSON: {msg} (truncated file?)",
    bad_json="invalid JSON: {msg}",
    separator="invalid JSON: expected ',' or ']' after the record, found {sep!r}",
    trailing_comma="invalid JSON: trailing comma before ']'",
    after_list="unexpected data after the closing ']'",
    near_end_truncated=True,
    comma_starts_record=True,
)

#: A unit of our format: (record number, 0-based position, parsed record).
OurUnit = tuple[int, int, Any]


@dataclass
class Item:
    """One question ready to score: its passages (dicts with ``text`` and optional ``title``),
    their ids (one per passage) and the output record (ours), whose ``ctxs`` is replaced after
    scoring."""

    qid: str
    question: str
    passages: list[dict]
    docids: list[str]
    record: dict


class Source(Protocol):
    """A stream of units, each turned into an :class:`Item` by :meth:`item`."""

    def __iter__(self) -> Iterator[Any]:
        """The units, in input order."""
        ...

    def item(self, unit: Any) -> Item:
        """The unit, checked and ready to score."""
        ...


def _string(value: Any, prefix: str, field: str, *, nonempty: bool) -> str:
    problem = string_problem(value, nonempty=nonempty, surrogates=True)
    if problem is not None:
        raise DataError(f"{prefix}{field}: {problem}")
    return value


def _id(value: Any, prefix: str, field: str) -> str:
    # An integer, or else a string (unlike the loader, no "or an integer" in the message).
    if type(value) is int:
        return str(value)
    return _string(value, prefix, field, nonempty=True)


def our_item(label: int, ordinal: int, obj: Any, display: str, max_passages: int | None) -> Item:
    """Check one record of our format (number ``label``) and make it an :class:`Item`; the
    record itself is kept as the output record. A missing id is the record's position."""
    prefix = f"{display}:{label}: "
    if type(obj) is not dict:
        raise DataError(f"{prefix}<record>: expected a JSON object, got {describe_type(obj)}")
    qid = str(ordinal) if obj.get("id") is None else _id(obj["id"], prefix, "id")
    if "question" not in obj:
        raise DataError(f"{prefix}question: missing field")
    question = _string(obj["question"], prefix, "question", nonempty=True)
    if "ctxs" not in obj:
        raise DataError(f"{prefix}ctxs: missing field")
    ctxs = obj["ctxs"]
    if type(ctxs) is not list:
        raise DataError(f"{prefix}ctxs: expected a list of passages, got {describe_type(ctxs)}")
    if max_passages is not None:
        ctxs = ctxs[:max_passages]  # passages past the cut are neither checked nor written
    docids = []
    for i, p in enumerate(ctxs):
        if type(p) is not dict:
            raise DataError(f"{prefix}ctxs[{i}]: expected an object, got {describe_type(p)}")
        if "text" not in p:
            raise DataError(f"{prefix}ctxs[{i}].text: missing field")
        _string(p["text"], prefix, f"ctxs[{i}].text", nonempty=False)
        if p.get("title") is not None:
            _string(p["title"], prefix, f"ctxs[{i}].title", nonempty=False)
        docids.append(str(i) if p.get("id") is None else _id(p["id"], prefix, f"ctxs[{i}].id"))
    return Item(qid=qid, question=question, passages=ctxs, docids=docids, record=obj)


class OurSource:
    """Records of our JSON list / JSONL format (``start``: the offset :func:`sniff` found).

    With ``unique_ids`` (a TREC output, where a repeated qid would corrupt the run) a repeated
    question id is an error, checked on every record, also those a resumed run skips.
    """

    def __init__(
        self,
        path: Path,
        display: str,
        start: int,
        max_passages: int | None,
        *,
        unique_ids: bool = False,
    ):
        self.path, self.display, self.start = path, display, start
        self.max_passages = max_passages
        self.unique_ids = unique_ids

    def __iter__(self) -> Iterator[OurUnit]:
        """(record number, position, parsed record) of each record."""
        records = iter_values(self.path, self.display, self.start, wording=RERANK_WORDING)
        seen: set[str] = set()
        for ordinal, (label, obj) in enumerate(records):
            if self.unique_ids:
                qid = self.qid((label, ordinal, obj))
                if qid in seen:
                    raise DataError(
                        f"{self.display}:{label}: id: duplicate id {qid!r}; a TREC run needs "
                        "unique query ids"
                    )
                seen.add(qid)
            yield label, ordinal, obj

    def qid(self, unit: OurUnit) -> str:
        """The unit's question id, without checking the record."""
        _label, ordinal, obj = unit
        if type(obj) is dict and obj.get("id") is not None:
            return str(obj["id"])
        return str(ordinal)

    def item(self, unit: OurUnit) -> Item:
        """The record, checked and ready to score."""
        return our_item(*unit, self.display, self.max_passages)


class TrecSource:
    """Queries of a TREC run, their texts from the query file and passages from the collection."""

    def __init__(
        self,
        run: str,
        collection: Collection,
        queries: dict[str, str],
        queries_display: str,
        max_passages: int | None,
    ):
        self.run, self.collection, self.queries = run, collection, queries
        self.queries_display = queries_display
        self.max_passages = max_passages

    def __iter__(self) -> Iterator[RunQuery]:
        """The run's queries, in file order."""
        return iter_trec_run(self.run)

    def qid(self, unit: RunQuery) -> str:
        """The run query's id."""
        return unit.qid

    def item(self, unit: RunQuery) -> Item:
        """The query with its first ``max_passages`` candidates (by run score) looked up."""
        question = self.queries.get(unit.qid)
        if question is None:
            raise DataError(
                f"{self.run}:{unit.line}: qid: query {unit.qid!r} is not in the queries file "
                f"{self.queries_display}"
            )
        cands = unit.candidates[: self.max_passages]
        found = self.collection.get_many([c.docid for c in cands])
        passages = []
        for cand, doc in zip(cands, found, strict=True):
            if doc is None:
                raise DataError(
                    f"{self.run}:{cand.line}: docid: {cand.docid!r} is not in the collection "
                    f"{self.collection.display}"
                )
            title, text = doc
            passages.append({"id": cand.docid, "title": title, "text": text, "score": cand.score})
        record = {"id": unit.qid, "question": question, "ctxs": passages}
        return Item(
            qid=unit.qid,
            question=question,
            passages=passages,
            docids=[c.docid for c in cands],
            record=record,
        )
