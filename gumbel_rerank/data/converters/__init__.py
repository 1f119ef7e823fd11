"""Converting published QA datasets into our question format (method.md section 7).

One module per dataset (``hotpot``: HotpotQA and 2Wiki, ``musique``, ``fid``, ``gumbel_data``),
what they share in ``common``, and the conversion itself (:func:`convert`) here.

Each converter reads a dataset in the format its authors publish and writes JSON lines, one
question per line::

    {"id": "...", "question": "...", "target": "...", "answers": ["..."],
     "ctxs": [{"title": "...", "text": "...", "gold": true}, ...]}

with the per-passage ``gold`` flag taken from the dataset's own supervision, so that
:func:`gumbel_rerank.data.questions.load_questions` uses it (``gold`` is the first flag the loader
tries).

Kinds (``KINDS``) and what they read:

``hotpotqa``
    HotpotQA JSON list (train / dev distractor / dev fullwiki / test), records with ``_id``,
    ``question``, ``answer``, ``supporting_facts`` = ``[[title, sent_id], ...]`` and ``context`` =
    ``[[title, [sentence, ...]], ...]``. Passage text is the sentences joined with ``""`` and
    stripped: HotpotQA sentences carry their own leading whitespace, so ``"".join`` restores the
    paragraph exactly. ``gold``: the passage title is one of the supporting-fact titles (compared
    after Unicode NFC and whitespace squashing, as the loader does). ``type`` and ``level`` are
    kept.
``2wiki``
    2WikiMultihopQA JSON list, same layout as HotpotQA (plus ``evidences``, ``entity_ids``). Its
    sentences carry *no* leading whitespace, so they are joined with a single space (none is added
    where a sentence boundary already has whitespace). ``type`` is kept.
``musique``
    MuSiQue JSONL: ``id``, ``question``, ``answer``, ``answer_aliases``, ``answerable``,
    ``paragraphs`` = ``[{idx, title, paragraph_text, is_supporting}]``. ``gold`` =
    ``is_supporting``; ``answers`` = ``[answer] + answer_aliases`` (duplicates and blank aliases
    dropped); ``idx`` is kept on the passage. Unanswerable records (``answerable: false``,
    MuSiQue-Full) are skipped unless ``keep_unanswerable``; kept ones get the id
    ``<id>__unanswerable``: MuSiQue-Full pairs each unanswerable question with an answerable
    twin that can carry the same id, and the loader rejects duplicate ids.
``fid``
    FiD's NQ/TQA JSON list (as written by FiD's ``get-data.sh``; DPR retrieval output has the same
    shape): ``question``, ``answers``, optional ``target`` and ``id``, ``ctxs`` =
    ``[{id, title, text, score?, has_answer?}]``. ``gold`` = ``has_answer`` where the passage has
    it, else :func:`gumbel_rerank.data.answers.contains_answer` (DPR convention; the passage gets no
    ``gold`` when no answer normalises to any text, e.g. ``"the"``). ``id``, ``score`` and
    ``has_answer`` are kept (DPR writes scores as strings: numeric strings become numbers).
    ``target`` = the given target, else the first answer; a missing question id becomes the
    record's 0-based position, as the loader would do.
``gumbel-data``
    The preprocessed data of the paper (Hugging Face ``syhuang/gumbel-reranking-data``), already
    in our format: records are copied unchanged (gold flags under whatever name they have:
    ``gold``/``is_gold``/``is_supporting``/``has_answer``), except for ``max_passages``, and the
    output is then validated with :func:`gumbel_rerank.data.questions.load_questions` itself.

Supervision that does not exist is not invented: a HotpotQA/2Wiki record without
``supporting_facts`` or a MuSiQue record without ``is_supporting`` is written without ``gold``
(the loader then falls back to its own rules), and records without an answer (the unlabelled test
splits) are skipped and counted, since the format needs an answer. Records with no passages are
skipped and counted too.

Inputs are streamed (:mod:`gumbel_rerank.data.jsonstream`): JSON lines line by line, a JSON list
(``[`` as the first non-whitespace character; HotpotQA, 2Wiki and FiD publish large single arrays)
through an incremental decoder over a rolling buffer. Either layout is accepted for every kind. The
output is written to a temporary file next to the destination and renamed into place only when
complete, so an interrupted or failed conversion never leaves a truncated file (nor touches an
existing one).

Bad input raises :class:`gumbel_rerank.data.jsonstream.DataError` with messages in the loader's
style, ``FILE:RECORD: FIELD: what is wrong`` (RECORD: 0-based list index, or 1-based JSONL line),
e.g. ``hotpot_dev.json:17: context[3][1]: expected a list of sentences, got a string``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, Any

from gumbel_rerank.data.converters.common import (
    CONVERT_WORDING,
    EMPTY_ANSWER,
    NO_ANSWER,
    NO_PASSAGES,
    UNANSWERABLE,
    ConversionReport,
    Converter,
    Fields,
    Options,
)
from gumbel_rerank.data.converters.fid import convert_fid
from gumbel_rerank.data.converters.gumbel_data import check_with_loader, passthrough
from gumbel_rerank.data.converters.hotpot import HotpotLike, join_exact, join_spaced
from gumbel_rerank.data.converters.musique import convert_musique
from gumbel_rerank.data.jsonstream import DataError, iter_values, sniff

__all__ = [
    "EMPTY_ANSWER",
    "KINDS",
    "NO_ANSWER",
    "NO_PASSAGES",
    "UNANSWERABLE",
    "ConversionReport",
    "convert",
]

#: Dataset kinds :func:`convert` understands.
KINDS = ("hotpotqa", "musique", "2wiki", "fid", "gumbel-data")

_CONVERTERS: dict[str, Converter] = {
    "hotpotqa": HotpotLike(join_exact, ("type", "level")),
    "2wiki": HotpotLike(join_spaced, ("type",)),
    "musique": convert_musique,
    "fid": convert_fid,
    "gumbel-data": passthrough,
}


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def convert(
    kind: str,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    max_passages: int | None = None,
    limit: int | None = None,
    keep_unanswerable: bool = False,
) -> ConversionReport:
    """Convert ``src`` (a dataset in its published format, see the module docstring) into our
    JSONL question format at ``dst``.

    Args:
        kind: one of ``KINDS``.
        src: the input file (JSON list or JSON lines).
        dst: the output JSONL file; written atomically (a temporary file renamed into place), so
            on any error an existing ``dst`` is left as it was and no partial file appears.
            Parent folders are created.
        max_passages: keep only the first N passages of each question.
        limit: stop after writing N questions (quick runs); the rest of ``src`` is not read.
        keep_unanswerable: MuSiQue only: keep records with ``answerable: false``.

    Returns:
        A :class:`ConversionReport`.

    Raises:
        DataError: missing/unreadable/malformed input, a record with a missing or mistyped field
            (``FILE:RECORD: FIELD: what is wrong``), duplicate question ids, or no question to
            write.
        ValueError: an unknown ``kind`` or an invalid option.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    _positive("max_passages", max_passages)
    _positive("limit", limit)
    if keep_unanswerable and kind != "musique":
        raise ValueError("keep_unanswerable only applies to musique")
    display = os.fspath(src)
    src, dst = Path(display), Path(dst)
    if dst.exists() and src.exists() and os.path.samefile(src, dst):
        raise DataError(f"{os.fspath(dst)}: the output would overwrite the input file")
    start = sniff(src, display, wording=CONVERT_WORDING).offset  # before dst is touched
    report = ConversionReport(kind=kind, src=display, dst=os.fspath(dst))
    writer = _Writer(kind, display, Options(max_passages, keep_unanswerable), report)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Unique temporary name next to dst (same filesystem, so the rename is atomic).
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as out:
            records = iter_values(src, display, start, wording=CONVERT_WORDING)
            for ordinal, (label, obj) in enumerate(records):
                writer.add(out, label, ordinal, obj)
                if limit is not None and report.questions >= limit:
                    break
            out.flush()
            os.fsync(out.fileno())  # the data is on disk before the rename makes it visible
        writer.finish()
        if kind == "gumbel-data":
            check_with_loader(tmp, display, writer.labels, dst.parent, report)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return report


class _Writer:
    """Converts records one by one, writes the questions and keeps the report's counts."""

    def __init__(self, kind: str, display: str, opts: Options, report: ConversionReport):
        self.kind, self.display, self.opts, self.report = kind, display, opts, report
        self.converter = _CONVERTERS[kind]
        self.id_field = "_id" if kind in ("hotpotqa", "2wiki") else "id"
        self.skipped: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()
        self.seen: dict[str, int] = {}
        self.labels: list[int] = []  # input record of each output line (to map loader messages)

    def add(self, out: IO[bytes], label: int, ordinal: int, obj: Any) -> None:
        """Convert one input record (number ``label``) and write it, or count why it is skipped."""
        report = self.report
        report.records += 1
        f = Fields(self.display, label)
        result = self.converter(obj, ordinal, f, self.opts)
        if isinstance(result, str):
            self.skipped[result] += 1
            return
        obj, how = result
        if self.kind != "gumbel-data":  # there the loader checks ids itself
            first = self.seen.setdefault(obj["id"], label)
            if first != label:
                f.fail(self.id_field, f"duplicate id {obj['id']!r} (first used by record {first})")
            self.sources[how] += 1
            golds = sum(1 for p in obj["ctxs"] if p.get("gold"))
            report.gold_passages += golds
            report.without_gold += int(golds == 0)
        report.passages += len(obj["ctxs"]) if type(obj.get("ctxs")) is list else 0
        try:
            line = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            f.fail("<record>", "invalid unicode: lone surrogate from a \\uXXXX escape")
        out.write(line + b"\n")
        self.labels.append(label)
        report.questions += 1

    def finish(self) -> None:
        """Put the counts into the report; no question written at all is an error."""
        report = self.report
        report.skipped = dict(self.skipped)
        if report.questions == 0:
            reasons = "; ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            raise DataError(
                f"{self.display}: no questions to write"
                + (f" ({report.records} records skipped: {reasons})" if self.skipped else "")
            )
        if self.kind != "gumbel-data":
            report.gold_sources = dict(self.sources)
