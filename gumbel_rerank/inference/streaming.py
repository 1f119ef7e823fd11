"""Rerank candidate passages with a trained reranker, streaming and resumable.

The `gumbel-rerank rerank` command (:func:`cli_main`) and its library entry point :func:`rerank`.

Inputs:

* **ours** (method.md section 7): a JSON list or JSONL file of question records with ``ctxs``.
  Records are read one at a time (:mod:`gumbel_rerank.data.jsonstream`: JSONL line by line, a
  JSON list through an incremental decoder; :mod:`gumbel_rerank.inference.sources`), never all
  at once and never through :func:`gumbel_rerank.data.questions.load_questions`' Arrow cache
  (which would copy the whole file first). Only what reranking needs is checked: a
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

Resuming (``resume=True``, the default): the output is written to ``OUTPUT.partial``, and after each
batch two things happen in this order: the partial output is flushed and fsync'ed, then
``OUTPUT.progress.json`` is replaced atomically (write a temporary file, fsync, rename) with the
number of input records done, the partial file's byte size at that point, and a fingerprint of the
input, reranker and options (:mod:`gumbel_rerank.inference.resume`). A crash can therefore only
leave *more* output than the sidecar claims, never less. A later call with the same arguments
truncates the partial file to the recorded size (dropping a half-written batch), skips that many
input records and continues; the result is byte-identical to an uninterrupted run (batches restart
on the same boundaries). A call whose fingerprint differs (changed input, reranker or options)
refuses to resume rather than mix two runs; ``resume=False`` (``--no-resume``) discards the partial
output and starts over. When all records are done the partial file is renamed to ``OUTPUT`` and the
sidecar removed. An existing ``OUTPUT`` is never overwritten unless ``overwrite=True``
(``--overwrite``); even then it is replaced only at the very end, by a rename, so it stays intact if
the new run fails. The fingerprint leaves out ``batch_size``, ``chunk_size`` and ``device``, which
do not change the output beyond float rounding.

Example::

    report = rerank("dev.jsonl", "dev.reranked.jsonl", "runs/stage2/reranker", batch_size=32)
    print(report.records, report.seconds)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gumbel_rerank.data.jsonstream import DataError, Layout, sniff
from gumbel_rerank.data.trec import Collection, file_fingerprint, format_trec_lines, load_queries
from gumbel_rerank.envinfo import resolve_device
from gumbel_rerank.inference.resume import (
    STATE_VERSION,
    PartialOutput,
    job_fingerprint,
    reranker_fingerprint,
)
from gumbel_rerank.inference.sources import (
    RERANK_WORDING,
    Item,
    OurSource,
    Source,
    TrecSource,
)

__all__ = ["INPUT_FORMATS", "OUTPUT_FORMATS", "RerankReport", "rerank"]

logger = logging.getLogger(__name__)

INPUT_FORMATS = ("auto", "ours", "trec")
OUTPUT_FORMATS = ("ours", "trec")


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
        compiled: whether the reranker ran compiled (``compile=True`` and the compilation
            worked; False when it fell back to the eager model).
    """

    output: Path
    records: int
    resumed: int
    passages: int
    batches: int
    seconds: float
    device: str
    compiled: bool = False


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
    compile: bool = False,
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
        input_format: ``"ours"``, ``"trec"`` or ``"auto"`` (``[``/``{`` first: ours; else a run).
        collection: TSV/JSONL passages for a TREC run (:class:`gumbel_rerank.data.trec.Collection`).
        queries: TSV/JSONL queries for a TREC run (:func:`gumbel_rerank.data.trec.load_queries`).
        output_format: ``"ours"`` or ``"trec"``.
        batch_size: questions per batch: read, scored and written together (the resume unit).
        max_passages: rerank only the first N candidates of each question.
        top_k: write only the best K passages of each question.
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        bf16: bfloat16 autocast on CUDA (ignored with a warning on CPU); scores stay float32.
        compile: score through :meth:`Reranker.compile_for_inference` (1.9x faster on CPU after
            a one-off compile; equal scores to float rounding, so a resume may switch it).
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
    _check_options(
        input_format, output_format, batch_size, max_passages, top_k, chunk_size, run_tag
    )
    in_display = os.fspath(input)
    in_path = Path(in_display).expanduser()
    job = PartialOutput(Path(os.fspath(output)).expanduser())
    layout = _check_files(in_path, in_display, job, overwrite)
    input_format = _check_inputs(input_format, layout.kind, in_display, collection, queries)
    reranker_path = Path(os.fspath(reranker_dir)).expanduser()
    if not reranker_path.is_dir():
        raise FileNotFoundError(f"reranker directory {str(reranker_path)!r} does not exist")
    # Cheap checks first: building a collection index can take minutes.
    torch_device = resolve_device(device)
    parts = _fingerprint_parts(
        in_path, input_format, output_format, max_passages, top_k, run_tag, bf16, reranker_path
    )
    with contextlib.ExitStack() as stack:
        source: Source
        if input_format == "ours":
            trec_out = output_format == "trec"
            source = OurSource(
                in_path, in_display, layout.offset, max_passages, unique_ids=trec_out
            )
        else:
            assert collection is not None and queries is not None  # checked above
            source = _trec_source(
                stack, parts, in_display, collection, queries, index_dir, progress, max_passages
            )
        job.fingerprint = job_fingerprint(parts)
        done, offset = job.resume_point(resume)
        job.output.parent.mkdir(parents=True, exist_ok=True)
        scorer = _Scorer(reranker_path, torch_device, bf16, chunk_size, top_k, output_format, run_tag, compile)
        stream = _Stream(source, scorer, job, batch_size, on_batch)
        stream.run(done, offset, progress, in_display)
    return stream.report(done, time.perf_counter() - t0, str(torch_device))


def _fingerprint_parts(
    in_path: Path,
    input_format: str,
    output_format: str,
    max_passages: int | None,
    top_k: int | None,
    run_tag: str,
    bf16: bool,
    reranker_path: Path,
) -> dict[str, Any]:
    """What decides a job's output (:func:`gumbel_rerank.inference.resume.job_fingerprint`);
    ``batch_size``, ``chunk_size`` and ``device`` change it only by float rounding."""
    return {
        "version": STATE_VERSION,
        "input": file_fingerprint(in_path),
        "input_format": input_format,
        "output_format": output_format,
        "max_passages": max_passages,
        "top_k": top_k,
        "run_tag": run_tag if output_format == "trec" else None,
        "bf16": bool(bf16),
        "reranker": reranker_fingerprint(reranker_path),
    }


def _check_files(in_path: Path, in_display: str, job: PartialOutput, overwrite: bool) -> Layout:
    """Sniff the input; refuse an output that is the input or exists (without ``overwrite``)."""
    layout = sniff(in_path, in_display, wording=RERANK_WORDING, other_ok=True)
    out_path = job.output
    if in_path.resolve() in (out_path.resolve(), job.partial.resolve()):
        raise ValueError(f"output {str(out_path)!r} would overwrite the input")
    if out_path.exists() and not overwrite:
        raise FileExistsError(
            f"{out_path}: already exists (a completed run?); pass overwrite=True (--overwrite) to "
            "replace it"
        )
    return layout


def _trec_source(
    stack: contextlib.ExitStack,
    parts: dict[str, Any],
    run: str,
    collection: str | os.PathLike,
    queries: str | os.PathLike,
    index_dir: str | os.PathLike | None,
    progress: bool,
    max_passages: int | None,
) -> TrecSource:
    """The TREC run ``run`` with its queries and collection (opened on ``stack``, indexed if
    needed); their fingerprints go into the job's ``parts``."""
    query_map = load_queries(queries)
    coll = stack.enter_context(Collection.open(collection, index_dir=index_dir, progress=progress))
    parts["collection"] = coll.fingerprint
    parts["queries"] = file_fingerprint(queries)
    return TrecSource(run, coll, query_map, os.fspath(queries), max_passages)


def _positive(name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}"
        )


def _check_options(
    input_format: str,
    output_format: str,
    batch_size: int,
    max_passages: int | None,
    top_k: int | None,
    chunk_size: int | None,
    run_tag: str,
) -> None:
    """Raise ValueError for an unknown format, a count that is not a positive integer or a run
    tag with whitespace."""
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


def _check_inputs(
    input_format: str,
    kind: str,
    in_display: str,
    collection: str | os.PathLike | None,
    queries: str | os.PathLike | None,
) -> str:
    """The input format (``"auto"`` decided by ``kind``, the sniffed layout), after checking the
    input file fits it and that collection and queries are given exactly for a TREC run."""
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
    return input_format


class _Scorer:
    """The reranker, and the output bytes of scored batches (ours: JSONL, or a TREC run)."""

    def __init__(
        self,
        reranker_path: Path,
        device: Any,
        bf16: bool,
        chunk_size: int | None,
        top_k: int | None,
        output_format: str,
        run_tag: str,
        compile: bool = False,
    ):
        from gumbel_rerank.rerankers.model import Reranker

        self.reranker = Reranker.from_pretrained(reranker_path).to(device).eval()
        if compile:
            self.reranker.compile_for_inference()
        if bf16 and device.type != "cuda":
            logger.warning("bf16 autocast is only used on CUDA; scoring in float32 on %s.", device)
        self.bf16 = bf16 and device.type == "cuda"
        self.chunk_size, self.top_k = chunk_size, top_k
        self.output_format, self.run_tag = output_format, run_tag
        self.passages = self.batches = 0

    def encode(self, items: list[Item]) -> bytes:
        """Score a batch of B questions and return their output lines."""
        import torch

        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            # scores: [B, P] logits, P the longest passage list (padding past each length);
            # pairs batched by length, chunk_size per model call (None: the whole batch)
            pairs = sum(len(it.passages) for it in items)
            scores, _mask = self.reranker.score_inference(
                [it.question for it in items],
                [it.passages for it in items],
                batch_size=self.chunk_size or max(1, pairs),
            )
        rows = scores.float().cpu().tolist()
        chunks = [
            self._format(it, row[: len(it.passages)]) for it, row in zip(items, rows, strict=True)
        ]
        self.batches += 1
        return b"".join(chunks)

    def _format(self, it: Item, row: list[float]) -> bytes:
        """One question's output: its passages by score, descending (ties keep input order)."""
        n = len(it.passages)
        order = sorted(range(n), key=lambda j: -row[j])[: self.top_k]
        self.passages += n
        if self.output_format == "trec":
            docids = [it.docids[j] for j in order]
            return format_trec_lines(it.qid, docids, [row[j] for j in order], self.run_tag).encode(
                "utf-8"
            )
        ctxs = []
        for j in order:
            it.passages[j]["rerank_score"] = row[j]
            ctxs.append(it.passages[j])
        it.record["ctxs"] = ctxs
        return _encode_record(it.record)


def _encode_record(record: dict) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate from a "\ud800"-style escape in the input cannot be UTF-8; escaped
        # output keeps it exactly as read.
        return (json.dumps(record) + "\n").encode("utf-8")


class _Stream:
    """Reads the source, scores and writes it batch by batch, checkpointing after each."""

    def __init__(
        self,
        source: Source,
        scorer: _Scorer,
        job: PartialOutput,
        batch_size: int,
        on_batch: Callable[[int], None] | None,
    ):
        self.source, self.scorer, self.job = source, scorer, job
        self.batch_size, self.on_batch = batch_size, on_batch
        self.done = self.position = 0

    def run(self, resumed: int, offset: int, progress: bool, in_display: str) -> None:
        """Write every record after the first ``resumed`` (done, with ``offset`` bytes of output,
        by an interrupted run) and publish the output."""
        from tqdm import tqdm

        self.done = resumed
        bar = tqdm(
            desc="rerank",
            unit="q",
            initial=resumed,
            disable=not progress,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        try:
            with self.job.open(offset) as out, bar:
                for batch in self._batches(resumed):
                    self._write(out, batch, bar)
                if self.position < resumed:
                    raise DataError(
                        f"{in_display}: has {self.position} records but the progress file "
                        f"{self.job.state_path} says {resumed} were done; pass resume=False "
                        "(--no-resume) to start over"
                    )
                if self.position == 0:
                    raise DataError(f"{in_display}: no records")
                out.flush()
                os.fsync(out.fileno())
        except OSError as err:
            self.job.discard_unrecorded()
            if err.filename is not None:
                raise
            # a full disk or a file-size limit: say where, and that nothing recorded is lost
            raise OSError(
                err.errno,
                f"{err.strerror} while writing {self.job.partial}; the {self.done} records "
                "recorded so far are kept: free space and run the same command to resume",
                str(self.job.partial),
            ) from err
        except BaseException:
            self.job.discard_unrecorded()
            raise
        self.job.publish()

    def _batches(self, resumed: int) -> Iterator[list[Item]]:
        """Batches of items after skipping the first ``resumed`` records (the last batch may be
        short); ``position`` counts the records read."""
        batch: list[Item] = []
        self.position = 0
        for unit in self.source:
            self.position += 1
            if self.position <= resumed:
                continue  # written by the interrupted run
            batch.append(self.source.item(unit))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def report(self, resumed: int, seconds: float, device: str) -> RerankReport:
        """What the run did (after :meth:`run`)."""
        return RerankReport(
            output=self.job.output,
            records=self.done,
            resumed=resumed,
            passages=self.scorer.passages,
            batches=self.scorer.batches,
            seconds=seconds,
            device=device,
            compiled=self.scorer.reranker.is_compiled,
        )

    def _write(self, out: IO[bytes], batch: list[Item], bar: Any) -> None:
        """Score and write one batch, then checkpoint it."""
        out.write(self.scorer.encode(batch))
        self.done += len(batch)
        bar.update(len(batch))
        self.job.checkpoint(out, self.done)
        if self.on_batch is not None:
            self.on_batch(self.done)
