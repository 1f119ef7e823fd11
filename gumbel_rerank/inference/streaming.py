"""Rerank candidate passages with a trained reranker, streaming and resumable.

The `gumbel-rerank rerank` command (:func:`cli_main`) and its library entry point :func:`rerank`.

Inputs:

* **ours** (method.md section 7): a JSON list or JSONL file of question records with ``ctxs``.
  Records are read one at a time (JSONL line by line, a JSON list through an incremental
  decoder), never all at once and never through :func:`gumbel_rerank.data.questions.load_questions`'
  Arrow cache (which would copy the whole file first). Only what reranking needs is checked: a
  non-empty string ``question`` and a ``ctxs`` list of objects with a string ``text`` (and a
  string or null ``title``); every other field is passed through untouched. Errors read
  ``FILE:RECORD: FIELD: what`` with RECORD the 1-based line (JSONL) or 0-based index (JSON
  list), as in :mod:`gumbel_rerank.data.questions`.
* **trec**: a TREC run plus a collection and a query file (:mod:`gumbel_rerank.data.trec`).

Outputs:

* **ours**: JSONL, one record per input record in input order, each as given except that
  ``ctxs`` is sorted by the new score, descending (ties keep input order), and every passage
  gets ``"rerank_score"`` (a raw logit). From a TREC input a record is ``{"id": qid,
  "question": text, "ctxs": [{"id": docid, "title", "text", "score": run score}, ...]}``.
* **trec**: a TREC run (ranks from 1, scores descending, tag ``run_tag``). From our format the
  qid is the record's ``id`` (default: its 0-based position) and the docid a passage's ``id``
  (default: its 0-based position in the record's ``ctxs``).

``max_passages=N`` reranks only the first N candidates of each question (the others are dropped
from the output); for a TREC run "first" means by the run's score. ``top_k=K`` keeps only the
best K after reranking.

Memory stays flat: ``batch_size`` questions are read, scored and written at a time, so only
one batch is in memory (plus, for TREC input, the query dict and the set of seen qids; the
collection is an on-disk index).

Resuming (``resume=True``, the default): the output is written to ``OUTPUT.partial``, and after
each batch two things happen in this order: the partial output is flushed and fsync'ed, then
``OUTPUT.progress.json`` is replaced atomically (write a temporary file, fsync, rename) with
the number of input records done, the partial file's byte size at that point, and a
fingerprint of the input, reranker and options. A crash can therefore only leave *more* output
than the sidecar claims, never less. A later call with the same arguments truncates the partial
file to the recorded size (dropping a half-written batch), skips that many input records and
continues; the result is byte-identical to an uninterrupted run (batches restart on the same
boundaries). A call whose fingerprint differs (changed input, reranker or options) refuses to
resume rather than mix two runs; ``resume=False`` (``--no-resume``) discards the partial output
and starts over. When all records are done the partial file is renamed to ``OUTPUT`` and the
sidecar removed. An existing ``OUTPUT`` is never overwritten unless ``overwrite=True``
(``--overwrite``); even then it is replaced only at the very end, by a rename, so it stays
intact if the new run fails. The fingerprint leaves out ``batch_size``, ``chunk_size`` and
``device``, which do not change the output beyond float rounding.

Example::

    report = rerank("dev.jsonl", "dev.reranked.jsonl", "runs/stage2/reranker", batch_size=32)
    print(report.records, report.seconds)
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gumbel_rerank.data.questions import DataError, describe_type, open_input
from gumbel_rerank.data.trec import (
    Collection,
    RunQuery,
    file_fingerprint,
    format_trec_lines,
    iter_trec_run,
    load_queries,
)
from gumbel_rerank.durable import fsync_dir, write_atomic
from gumbel_rerank.envinfo import resolve_device

__all__ = ["RerankReport", "rerank"]

logger = logging.getLogger(__name__)

INPUT_FORMATS = ("auto", "ours", "trec")
OUTPUT_FORMATS = ("ours", "trec")

_STATE_VERSION = 1
_CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_JSON_WS = " \t\n\r"


@dataclass
class RerankReport:
    """What one :func:`rerank` call did.

    Attributes:
        output: the finished output file.
        records: questions (records / run queries) in the output, resumed ones included.
        resumed: records already done by an earlier, interrupted call and skipped by this one.
        passages: passages scored by this call.
        batches: batches scored by this call.
        seconds: wall time of this call.
        device: the device the reranker ran on.
    """

    output: Path
    records: int
    resumed: int
    passages: int
    batches: int
    seconds: float
    device: str


@dataclass
class _Item:
    """One question ready to score: its passages (dicts with ``text`` and optional ``title``)."""

    qid: str
    question: str
    passages: list[dict]
    docids: list[str]
    record: dict  # the output record (ours), ``ctxs`` replaced after scoring


# --------------------------------------------------------------------------------------------
# Reading our format, record by record


def _sniff(path: Path, display: str) -> tuple[str, int]:
    """("list" | "lines" | "other", byte offset of the first non-whitespace character)."""
    with open_input(path, display) as f:
        head = f.read(1 << 16)
    offset = len(_BOM) if head.startswith(_BOM) else 0
    stripped = head[offset:].lstrip(_JSON_WS.encode())
    if not stripped:
        raise DataError(f"{display}: empty file")
    offset = len(head) - len(stripped)
    first = stripped[:1]
    return {b"[": "list", b"{": "lines"}.get(first, "other"), offset


def _iter_jsonl(path: Path, display: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{display}:{lineno}: <record>: invalid UTF-8 byte 0x{raw[e.start]:02x} at "
                    f"column {e.start + 1}"
                ) from None
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{display}:{lineno}: <record>: invalid JSON: {e.msg} at column {e.pos + 1}"
                    + (
                        " (a truncated line, or a record spread over several lines, which JSON "
                        "lines does not allow)"
                        if e.pos >= len(line.rstrip()) or e.msg.startswith("Unterminated")
                        else ""
                    )
                ) from None


def _iter_json_list(path: Path, display: str, start: int) -> Iterator[tuple[int, Any]]:
    """(0-based index, parsed value) of each element of a JSON list, read incrementally.

    The buffer holds the unread text; an element that does not parse is retried with more text
    until the end of the file, and each read is at least as large as the buffer so a huge
    element costs O(size) reads, not O(size^2).
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buf, pos, eof, index = "", 0, False, 0

    def fail(what: str) -> DataError:
        return DataError(f"{display}:{index}: <record>: {what}")

    with path.open("rb") as f:
        f.seek(start)

        def more() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            chunk = f.read(max(_CHUNK_BYTES, len(buf) - pos))
            eof = not chunk
            try:
                text = utf8.decode(chunk, final=eof)
            except UnicodeDecodeError as e:
                raise fail(f"invalid UTF-8 ({e.reason})") from None
            buf, pos = buf[pos:] + text, 0
            return bool(text) or not eof

        def skip_ws() -> bool:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in _JSON_WS:
                    pos += 1
                if pos < len(buf):
                    return True
                if not more():
                    return False

        skip_ws()
        pos += 1  # the "[" found by _sniff
        if not skip_ws():
            raise fail("unexpected end of file: the list is never closed with ']'")
        if buf[pos] == "]":
            return
        while True:
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as e:
                    # Only an error near the end of the buffer can be an incomplete record;
                    # anything else is bad JSON, reported without reading the rest of the file.
                    near_end = e.pos >= len(buf) - 64 or e.msg.startswith("Unterminated")
                    if not (near_end and more()):
                        truncated = " (truncated file?)" if eof else ""
                        raise fail(f"invalid JSON: {e.msg}{truncated}") from None
            yield index, obj
            pos = end
            if not skip_ws():
                raise fail("unexpected end of file: the list is never closed with ']'")
            sep = buf[pos]
            pos += 1
            if sep == "]":
                break
            if sep != ",":
                raise fail(f"invalid JSON: expected ',' or ']' after the record, found {sep!r}")
            index += 1
            if not skip_ws():
                raise fail("unexpected end of file after ',' (truncated file?)")
        if skip_ws():
            raise fail("unexpected data after the closing ']'")


def _str_field(value: Any, prefix: str, field: str, *, nonempty: bool) -> str:
    if type(value) is not str:
        raise DataError(f"{prefix}{field}: expected a string, got {describe_type(value)}")
    if nonempty and not value.strip():
        raise DataError(f"{prefix}{field}: empty string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # A "\ud800"-style escape decodes to a lone surrogate, which no tokenizer accepts.
            raise DataError(
                f"{prefix}{field}: invalid unicode: lone surrogate from a \\uXXXX escape"
            ) from None
    return value


def _id_field(value: Any, prefix: str, field: str) -> str:
    if type(value) is int:
        return str(value)
    return _str_field(value, prefix, field, nonempty=True)


def _our_item(label: int, ordinal: int, obj: Any, display: str, max_passages: int | None) -> _Item:
    """Validate one record of our format into an :class:`_Item` (the record itself is kept)."""
    prefix = f"{display}:{label}: "
    if type(obj) is not dict:
        raise DataError(f"{prefix}<record>: expected a JSON object, got {describe_type(obj)}")
    qid = str(ordinal) if obj.get("id") is None else _id_field(obj["id"], prefix, "id")
    if "question" not in obj:
        raise DataError(f"{prefix}question: missing field")
    question = _str_field(obj["question"], prefix, "question", nonempty=True)
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
        _str_field(p["text"], prefix, f"ctxs[{i}].text", nonempty=False)
        if p.get("title") is not None:
            _str_field(p["title"], prefix, f"ctxs[{i}].title", nonempty=False)
        docids.append(
            str(i) if p.get("id") is None else _id_field(p["id"], prefix, f"ctxs[{i}].id")
        )
    return _Item(qid=qid, question=question, passages=ctxs, docids=docids, record=obj)


# --------------------------------------------------------------------------------------------
# Sources: a lazy stream of raw units, turned into items only when not skipped on resume


class _OurSource:
    def __init__(self, path: Path, display: str, kind: str, start: int, max_passages):
        self.path, self.display, self.kind, self.start = path, display, kind, start
        self.max_passages = max_passages

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        records = (
            _iter_json_list(self.path, self.display, self.start)
            if self.kind == "list"
            else _iter_jsonl(self.path, self.display)
        )
        for ordinal, (label, obj) in enumerate(records):
            yield label, ordinal, obj

    def qid(self, unit: tuple[int, int, Any]) -> str:
        label, ordinal, obj = unit
        if type(obj) is dict and obj.get("id") is not None:
            return str(obj["id"])
        return str(ordinal)

    def item(self, unit: tuple[int, int, Any]) -> _Item:
        return _our_item(*unit, self.display, self.max_passages)


class _TrecSource:
    def __init__(
        self,
        run: str,
        collection: Collection,
        queries: dict[str, str],
        queries_display: str,
        max_passages,
    ):
        self.run, self.collection, self.queries = run, collection, queries
        self.queries_display = queries_display
        self.max_passages = max_passages

    def __iter__(self) -> Iterator[RunQuery]:
        return iter_trec_run(self.run)

    def qid(self, unit: RunQuery) -> str:
        return unit.qid

    def item(self, unit: RunQuery) -> _Item:
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
        return _Item(
            qid=unit.qid,
            question=question,
            passages=passages,
            docids=[c.docid for c in cands],
            record=record,
        )


# --------------------------------------------------------------------------------------------
# Output and resume state


def _encode_record(record: dict) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate from a "\ud800"-style escape in the input cannot be UTF-8; escaped
        # output keeps it exactly as read.
        return (json.dumps(record) + "\n").encode("utf-8")


def _write_state(path: Path, state: dict) -> None:
    write_atomic(path, json.dumps(state, indent=1))


def _reranker_fingerprint(directory: Path) -> str:
    """Settings files by content, weight files by name, size and mtime (hashing GBs is slow)."""
    h = hashlib.sha256()
    for entry in sorted(directory.iterdir()):
        if entry.name in ("config.json", "gumbel_rerank.json"):
            h.update(entry.name.encode() + entry.read_bytes())
        elif entry.suffix in (".safetensors", ".bin", ".pt") and entry.is_file():
            st = entry.stat()
            h.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def _positive(name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}"
        )


# --------------------------------------------------------------------------------------------
# The job


def rerank(
    input: str | os.PathLike,
    output: str | os.PathLike,
    reranker_dir: str | os.PathLike,
    *,
    input_format: str = "auto",
    collection: str | os.PathLike | None = None,
    queries: str | os.PathLike | None = None,
    output_format: str = "ours",
    batch_size: int = 16,
    max_passages: int | None = None,
    top_k: int | None = None,
    device: str = "auto",
    bf16: bool = False,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    run_tag: str = "gumbel_rerank",
    chunk_size: int | None = 256,
    index_dir: str | os.PathLike | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RerankReport:
    """Rerank every question's candidate passages and write them out (module docstring).

    Args:
        input: our JSON list / JSONL question file, or a TREC run.
        output: the file to write (JSONL for ``"ours"``, a run for ``"trec"``).
        reranker_dir: a directory saved by :meth:`Reranker.save_pretrained` (or any local HF
            cross-encoder / T5 directory :meth:`Reranker.from_pretrained` loads).
        input_format: ``"ours"``, ``"trec"`` or ``"auto"`` (``[`` or ``{`` first: ours; else a
            run).
        collection: TSV/JSONL passages for a TREC run (:class:`gumbel_rerank.data.trec.Collection`).
        queries: TSV/JSONL queries for a TREC run (:func:`gumbel_rerank.data.trec.load_queries`).
        output_format: ``"ours"`` or ``"trec"``.
        batch_size: questions per batch: read, scored and written together (also the resume
            granularity).
        max_passages: rerank only the first N candidates of each question.
        top_k: write only the best K passages of each question.
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        bf16: bfloat16 autocast on CUDA (ignored with a warning on CPU); scores stay float32.
        resume: continue an interrupted run of the same job; False starts over.
        overwrite: allow replacing an existing ``output``.
        progress: show a tqdm progress bar (questions) on stderr.
        run_tag: the tag column of a TREC output.
        chunk_size: at most this many (question, passage) pairs per model call within a batch
            (bounds activation memory; None: the whole batch at once).
        index_dir: where collection indexes are kept (default
            :func:`gumbel_rerank.data.trec.default_index_dir`).
        on_batch: called after each batch is durably written, with the number of input records
            done so far (resumed ones included); an exception raised there stops the run
            exactly as a crash after that batch would (tests use this).

    Returns:
        A :class:`RerankReport`.

    Raises:
        DataError: unreadable or invalid input, run, collection or queries
            (``FILE:LINE: FIELD: what``), unknown qids or docids.
        FileNotFoundError: the reranker directory does not exist.
        FileExistsError: ``output`` exists and ``overwrite`` is False.
        ValueError: bad options, or a partial run of a different job to resume.
    """
    t0 = time.perf_counter()
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    _positive("batch_size", batch_size, optional=False)
    _positive("max_passages", max_passages, optional=True)
    _positive("top_k", top_k, optional=True)
    _positive("chunk_size", chunk_size, optional=True)
    if not run_tag or len(run_tag.split()) != 1 or run_tag.strip() != run_tag:
        raise ValueError(f"run_tag must be non-empty without whitespace, got {run_tag!r}")

    in_display = os.fspath(input)
    in_path = Path(in_display).expanduser()
    out_path = Path(os.fspath(output)).expanduser()
    partial = out_path.with_name(out_path.name + ".partial")
    state_path = out_path.with_name(out_path.name + ".progress.json")
    kind, start = _sniff(in_path, in_display)
    if in_path.resolve() in (out_path.resolve(), partial.resolve()):
        raise ValueError(f"output {str(out_path)!r} would overwrite the input")
    if out_path.exists() and not overwrite:
        raise FileExistsError(
            f"{out_path}: already exists (a completed run?); pass overwrite=True (--overwrite) to "
            "replace it"
        )

    if input_format == "auto":
        input_format = "trec" if kind == "other" else "ours"
    if input_format == "ours":
        if kind == "other":
            raise DataError(
                f"{in_display}: not a JSON list or JSON lines file (first non-whitespace "
                "character is not '[' or '{'); for a TREC run pass input_format='trec' "
                "(--input-format trec)"
            )
        if collection is not None or queries is not None:
            raise ValueError(
                "collection and queries only apply to a TREC run input, but the input is in our "
                "JSON format"
            )
    else:
        missing = [n for n, v in (("collection", collection), ("queries", queries)) if v is None]
        if missing:
            raise ValueError(
                f"a TREC run input needs {' and '.join(missing)} (--collection FILE, --queries "
                "FILE): the run holds only ids"
            )

    reranker_path = Path(os.fspath(reranker_dir)).expanduser()
    if not reranker_path.is_dir():
        raise FileNotFoundError(f"reranker directory {str(reranker_path)!r} does not exist")
    # Cheap checks first: building a collection index can take minutes.
    torch_device = resolve_device(device)

    coll: Collection | None = None
    try:
        fingerprint_parts: dict[str, Any] = {
            "version": _STATE_VERSION,
            "input": file_fingerprint(in_path),
            "input_format": input_format,
            "output_format": output_format,
            "max_passages": max_passages,
            "top_k": top_k,
            "run_tag": run_tag if output_format == "trec" else None,
            "bf16": bool(bf16),
            "reranker": _reranker_fingerprint(reranker_path),
        }
        if input_format == "ours":
            source: _OurSource | _TrecSource = _OurSource(
                in_path, in_display, kind, start, max_passages
            )
        else:
            assert collection is not None and queries is not None  # checked above
            query_map = load_queries(queries)
            coll = Collection.open(collection, index_dir=index_dir, progress=progress)
            fingerprint_parts["collection"] = coll.fingerprint
            fingerprint_parts["queries"] = file_fingerprint(queries)
            source = _TrecSource(in_display, coll, query_map, os.fspath(queries), max_passages)
        fingerprint = hashlib.sha256(
            json.dumps(fingerprint_parts, sort_keys=True).encode()
        ).hexdigest()[:32]

        done, offset = 0, 0
        if resume and state_path.is_file():
            done, offset = _resume_point(state_path, partial, fingerprint)
        if done == 0:
            partial.unlink(missing_ok=True)
            state_path.unlink(missing_ok=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        return _run(
            source,
            reranker_path,
            torch_device,
            bf16=bf16,
            partial=partial,
            state_path=state_path,
            out_path=out_path,
            fingerprint=fingerprint,
            done=done,
            offset=offset,
            batch_size=batch_size,
            chunk_size=chunk_size,
            top_k=top_k,
            output_format=output_format,
            run_tag=run_tag,
            progress=progress,
            on_batch=on_batch,
            t0=t0,
            in_display=in_display,
        )
    finally:
        if coll is not None:
            coll.close()


def _resume_point(state_path: Path, partial: Path, fingerprint: str) -> tuple[int, int]:
    """(records done, byte size of their output) from the sidecar; (0, 0) to start over."""
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        done, offset, saved = int(state["records"]), int(state["offset"]), state["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("Unreadable progress file %s (%s); starting over.", state_path, err)
        return 0, 0
    if saved != fingerprint:
        raise ValueError(
            f"{state_path} belongs to a run with a different input, reranker or options, so its "
            f"partial output {partial} cannot be continued; pass resume=False (--no-resume) to "
            "discard it and start over"
        )
    size = partial.stat().st_size if partial.is_file() else -1
    if size < offset:
        logger.warning(
            "Partial output %s is shorter than its progress file records (%d < %d bytes); "
            "starting over.",
            partial,
            size,
            offset,
        )
        return 0, 0
    logger.info("Resuming: %d records already done in %s.", done, partial)
    return done, offset


def _run(
    source,
    reranker_path: Path,
    torch_device,
    *,
    bf16: bool,
    partial: Path,
    state_path: Path,
    out_path: Path,
    fingerprint: str,
    done: int,
    offset: int,
    batch_size: int,
    chunk_size: int | None,
    top_k: int | None,
    output_format: str,
    run_tag: str,
    progress: bool,
    on_batch: Callable[[int], None] | None,
    t0: float,
    in_display: str,
) -> RerankReport:
    import torch
    from tqdm import tqdm

    from gumbel_rerank.rerankers.model import Reranker

    reranker = Reranker.from_pretrained(reranker_path).to(torch_device).eval()
    if bf16 and torch_device.type != "cuda":
        logger.warning(
            "bf16 autocast is only used on CUDA; scoring in float32 on %s.", torch_device
        )

    def autocast():
        if bf16 and torch_device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    resumed = done
    check_ids = output_format == "trec" and isinstance(source, _OurSource)
    seen: set[str] = set()  # qids written, when duplicates would corrupt a TREC run
    passages_scored = batches = 0

    def write_batch(out: IO[bytes], items: list[_Item]) -> int:
        nonlocal passages_scored, batches
        with torch.inference_mode(), autocast():
            scores, _mask = reranker.score(
                [it.question for it in items], [it.passages for it in items], chunk_size=chunk_size
            )
        rows = scores.float().cpu().tolist()
        chunks: list[bytes] = []
        for it, row in zip(items, rows, strict=True):
            n = len(it.passages)
            row = row[:n]
            order = sorted(range(n), key=lambda j: -row[j])[:top_k]
            if output_format == "trec":
                text = format_trec_lines(
                    it.qid, [it.docids[j] for j in order], [row[j] for j in order], run_tag
                )
                chunks.append(text.encode("utf-8"))
            else:
                ctxs = []
                for j in order:
                    it.passages[j]["rerank_score"] = row[j]
                    ctxs.append(it.passages[j])
                it.record["ctxs"] = ctxs
                chunks.append(_encode_record(it.record))
            passages_scored += n
        out.write(b"".join(chunks))
        batches += 1
        return len(items)

    bar = tqdm(
        desc="rerank",
        unit="q",
        initial=done,
        disable=not progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    try:
        with partial.open("r+b" if partial.exists() else "wb") as out, bar:
            # Drop anything past the last completed batch (a batch half-written before a crash).
            out.truncate(offset)
            out.seek(offset)
            batch: list[_Item] = []
            position = 0
            for unit in source:
                position += 1
                if check_ids:
                    qid = source.qid(unit)
                    if qid in seen:
                        raise DataError(
                            f"{in_display}:{unit[0]}: id: duplicate id {qid!r}; a TREC run needs "
                            "unique query ids"
                        )
                    seen.add(qid)
                if position <= resumed:
                    continue  # written by the interrupted run
                batch.append(source.item(unit))
                if len(batch) < batch_size:
                    continue
                done += write_batch(out, batch)
                bar.update(len(batch))
                batch = []
                _checkpoint(out, state_path, fingerprint, done)
                if on_batch is not None:
                    on_batch(done)
            if batch:
                done += write_batch(out, batch)
                bar.update(len(batch))
                _checkpoint(out, state_path, fingerprint, done)
                if on_batch is not None:
                    on_batch(done)
            if position < resumed:
                raise DataError(
                    f"{in_display}: has {position} records but the progress file {state_path} "
                    f"says {resumed} were done; pass resume=False (--no-resume) to start over"
                )
            if position == 0:
                raise DataError(f"{in_display}: no records")
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        # Nothing checkpointed: a partial file without a sidecar is useless, do not leave it.
        if not state_path.exists():
            partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out_path)
    state_path.unlink(missing_ok=True)
    fsync_dir(out_path.parent)
    return RerankReport(
        output=out_path,
        records=done,
        resumed=resumed,
        passages=passages_scored,
        batches=batches,
        seconds=time.perf_counter() - t0,
        device=str(torch_device),
    )


def _checkpoint(out: IO[bytes], state_path: Path, fingerprint: str, done: int) -> None:
    """Make the output durable, then record it: the sidecar never claims unwritten output."""
    out.flush()
    os.fsync(out.fileno())
    _write_state(
        state_path,
        {
            "version": _STATE_VERSION,
            "fingerprint": fingerprint,
            "records": done,
            "offset": out.tell(),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
