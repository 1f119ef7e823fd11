"""Converting published QA datasets into our question format (method.md section 7).

Each converter reads a dataset in the format its authors publish and writes JSON lines, one
question per line::

    {"id": "...", "question": "...", "target": "...", "answers": ["..."],
     "ctxs": [{"title": "...", "text": "...", "gold": true}, ...]}

with the per-passage ``gold`` flag taken from the dataset's own supervision, so that
:func:`gumbel_rerank.data.questions.load_questions` uses it (``gold`` is the first flag the loader tries).

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

Inputs are streamed: JSON lines line by line, a JSON list (``[`` as the first non-whitespace
character; HotpotQA, 2Wiki and FiD publish large single arrays) through an incremental decoder
over a rolling buffer. Either layout is accepted for every kind. The output is written to a
temporary file next to the destination and renamed into place only when complete, so an
interrupted or failed conversion never leaves a truncated file (nor touches an existing one).

Bad input raises :class:`gumbel_rerank.data.questions.DataError` with messages in the loader's style,
``FILE:RECORD: FIELD: what is wrong`` (RECORD: 0-based list index, or 1-based JSONL line), e.g.
``hotpot_dev.json:17: context[3][1]: expected a list of sentences, got a string``.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from gumbel_rerank.data.answers import contains_answer, match_normalize
from gumbel_rerank.data.questions import DataError, describe_type, open_input

__all__ = ["KINDS", "ConversionReport", "convert"]

#: Dataset kinds :func:`convert` understands.
KINDS = ("hotpotqa", "musique", "2wiki", "fid", "gumbel-data")

_CHUNK_BYTES = 1 << 20
# A decode error this close to the end of the buffer may just mean the record goes on in the next
# chunk; further in, it is a real syntax error (and reading on would pull the whole file in).
_NEAR_END = 64
_BOM = b"\xef\xbb\xbf"
_JSON_WS = " \t\n\r"
_WS_RE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()

# Skip reasons (keys of ConversionReport.skipped).
NO_ANSWER = "no answer (unlabelled record, e.g. a test split)"
EMPTY_ANSWER = "empty answer"
NO_PASSAGES = "no passages"
UNANSWERABLE = "unanswerable (answerable: false; keep_unanswerable keeps them)"


@dataclass
class ConversionReport:
    """What :func:`convert` did.

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


# --------------------------------------------------------------------------------------------
# Reading records


@dataclass
class _Record:
    label: int  # as shown in messages: 0-based list index, or 1-based JSONL line number
    ordinal: int  # 0-based position among the file's records (default question id)
    obj: Any


def _iter_records(f: BinaryIO, display: str) -> Iterator[_Record]:
    """Records of a JSON list or a JSONL file, told apart by the first non-whitespace byte."""
    head = f.read(len(_BOM))
    start = len(_BOM) if head == _BOM else 0
    f.seek(start)
    while True:
        chunk = f.read(65536)
        if not chunk:
            raise DataError(f"{display}: empty file, expected a JSON list or JSON lines")
        stripped = chunk.lstrip(b" \t\n\r")
        if stripped:
            first = stripped[:1]
            break
    f.seek(start)
    if first == b"[":
        return _iter_json_list(f, display)
    if first == b"{":
        return _iter_jsonl(f, display)
    shown = chr(first[0]) if first[0] < 128 else f"byte 0x{first[0]:02x}"
    raise DataError(
        f"{display}: not a JSON list or JSON lines file: the first non-whitespace character is "
        f"{shown!r}, expected '[' or '{{'"
    )


def _iter_jsonl(f: BinaryIO, display: str) -> Iterator[_Record]:
    ordinal = 0
    for lineno, raw in enumerate(f, start=1):
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.strip(b" \t\n\r"):
            continue  # blank lines are allowed (and still counted in line numbers)
        try:
            line = raw.decode("utf-8").rstrip(_JSON_WS)
        except UnicodeDecodeError as e:
            raise DataError(
                f"{display}:{lineno}: <record>: invalid UTF-8 byte 0x{raw[e.start]:02x} "
                f"at column {e.start + 1}"
            ) from None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            what = f"invalid JSON: {e.msg} at column {e.pos + 1}"
            if e.pos >= len(line) or e.msg.startswith("Unterminated"):
                what += " (the line ends early: a truncated file?)"
            raise DataError(f"{display}:{lineno}: <record>: {what}") from None
        yield _Record(label=lineno, ordinal=ordinal, obj=obj)
        ordinal += 1


def _iter_json_list(f: BinaryIO, display: str) -> Iterator[_Record]:
    """Records of one JSON array, decoded incrementally (``raw_decode`` over a rolling buffer):
    memory stays at about one record plus one chunk, whatever the file size."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buf = ""
    pos = 0
    eof = False
    index = 0
    line0, col0 = 1, 1  # file line/column of buf[0], for messages users can act on

    def fill() -> bool:
        """Drop the consumed text, append the next chunk; False once the file is exhausted."""
        nonlocal buf, pos, eof, line0, col0
        if eof:
            return False
        consumed = buf[:pos]
        newlines = consumed.count("\n")
        if newlines:
            line0 += newlines
            col0 = pos - consumed.rfind("\n")
        else:
            col0 += pos
        text = ""
        while not text and not eof:
            # At least as much as is buffered: a record spanning many chunks costs O(size).
            data = f.read(max(_CHUNK_BYTES, len(buf) - pos))
            eof = not data
            try:
                text = decoder.decode(data, final=eof)
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{display}:{index}: <record>: invalid UTF-8 byte 0x{e.object[e.start]:02x}"
                ) from None
        buf = buf[pos:] + text
        pos = 0
        return bool(text)

    def where(p: int) -> str:
        newlines = buf.count("\n", 0, p)
        if newlines:
            return f"line {line0 + newlines} column {p - buf.rfind(chr(10), 0, p)}"
        return f"line {line0} column {col0 + p}"

    def fail(what: str) -> NoReturn:
        raise DataError(f"{display}:{index}: <record>: {what}")

    def skip_ws() -> bool:
        """Advance past whitespace; False at the end of the file."""
        nonlocal pos
        while True:
            pos = _WS_RE.match(buf, pos).end()
            if pos < len(buf):
                return True
            if not fill():
                return False

    skip_ws()
    pos += 1  # the "[" seen by _iter_records
    if not skip_ws():
        fail("unexpected end of file: the list is never closed with ']' (truncated file?)")
    if buf[pos] == "]":
        pos += 1
    else:
        while True:
            while True:
                try:
                    obj, end = _DECODER.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    incomplete = e.pos >= len(buf) - _NEAR_END or e.msg.startswith("Unterminated")
                    if incomplete and not eof:
                        # Retry with more text; at the end of the file, once more, so the error
                        # positions refer to the final (compacted) buffer.
                        fill()
                        continue
                    if incomplete:
                        fail(
                            f"unexpected end of file inside the record (truncated file?): "
                            f"{e.msg} at {where(e.pos)}"
                        )
                    fail(f"invalid JSON: {e.msg} at {where(e.pos)}")
                if end == len(buf) and not eof:
                    fill()  # a top-level scalar may go on in the next chunk: decode again
                    continue
                break
            yield _Record(label=index, ordinal=index, obj=obj)
            pos = end
            if not skip_ws():
                fail("unexpected end of file: the list is never closed with ']' (truncated file?)")
            sep = buf[pos]
            pos += 1
            if sep == "]":
                break
            if sep != ",":
                fail(
                    f"invalid JSON: expected ',' or ']' after the record, found {sep!r} at "
                    f"{where(pos - 1)}"
                )
            index += 1
            if not skip_ws():
                fail("unexpected end of file after ',' (truncated file?)")
            if buf[pos] == "]":
                fail(f"invalid JSON: trailing comma before ']' at {where(pos)}")
    if skip_ws():
        fail(f"unexpected data after the closing ']' at {where(pos)}")


# --------------------------------------------------------------------------------------------
# Field checks


_MISSING = object()


class _Fields:
    """Typed reads of one record's fields; any problem raises ``DataError`` naming the file, the
    record and the field (the loader's message style)."""

    def __init__(self, display: str, label: int):
        self.prefix = f"{display}:{label}: "

    def fail(self, where: str, what: str) -> NoReturn:
        raise DataError(f"{self.prefix}{where}: {what}")

    def record(self, obj: Any) -> dict:
        if type(obj) is not dict:
            self.fail("<record>", f"expected a JSON object, got {describe_type(obj)}")
        return obj

    def require(self, obj: dict, key: str, where: str | None = None) -> Any:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            self.fail(where or key, "missing field")
        return value

    def string(self, value: Any, where: str, *, nonempty: bool = False) -> str:
        if type(value) is not str:
            self.fail(where, f"expected a string, got {describe_type(value)}")
        if nonempty and not value.strip():
            self.fail(where, "empty string")
        return value

    def ident(self, value: Any, where: str) -> str:
        if type(value) is int:
            return str(value)
        if type(value) is not str:
            self.fail(where, f"expected a string or an integer, got {describe_type(value)}")
        if not value.strip():
            self.fail(where, "empty string")
        return value

    def list(self, value: Any, where: str, what: str = "a list") -> list:
        if type(value) is not list:
            self.fail(where, f"expected {what}, got {describe_type(value)}")
        return value

    def obj(self, value: Any, where: str) -> dict:
        if type(value) is not dict:
            self.fail(where, f"expected an object, got {describe_type(value)}")
        return value

    def flag(self, value: Any, where: str) -> bool:
        # bool, or the integers 0/1 (what the loader accepts for gold flags).
        if type(value) is bool or (type(value) is int and value in (0, 1)):
            return bool(value)
        shown = str(value) if type(value) in (int, float) else describe_type(value)
        self.fail(where, f"expected a bool or 0/1, got {shown}")


def _title_key(title: str) -> str:
    # The loader's title matching (data.py): NFC, whitespace squashed, case kept.
    return " ".join(unicodedata.normalize("NFC", title).split())


def _join_exact(sentences: list[str]) -> str:
    return "".join(sentences).strip()


def _join_spaced(sentences: list[str]) -> str:
    out: list[str] = []
    for s in sentences:
        if out and not out[-1][-1:].isspace() and not s[:1].isspace():
            out.append(" ")
        out.append(s)
    return "".join(out).strip()


def _answer(f: _Fields, rec: dict) -> str | None:
    """The record's answer string, or None when it has none (unlabelled)."""
    answer = rec.get("answer")
    if answer is None:
        return None
    return f.string(answer, "answer")


@dataclass
class _Options:
    max_passages: int | None
    keep_unanswerable: bool


# A converter turns one record into an output object plus how its gold was decided, or returns
# a skip reason (a string).
_Converted = tuple[dict, str] | str


def _hotpot_like(join: Callable[[list[str]], str], keep: tuple[str, ...]):
    def convert_record(rec: _Record, f: _Fields, opts: _Options) -> _Converted:
        r = f.record(rec.obj)
        qid = f.ident(f.require(r, "_id"), "_id")
        question = f.string(f.require(r, "question"), "question", nonempty=True)
        answer = _answer(f, r)
        context = f.list(f.require(r, "context"), "context", "a list of [title, sentences] pairs")
        facts = r.get("supporting_facts")
        titles: set[str] | None = None
        if facts is not None:
            facts = f.list(facts, "supporting_facts", "a list of [title, sentence_id] pairs")
            titles = set()
            for i, fact in enumerate(facts):
                if not (
                    type(fact) is list
                    and len(fact) == 2
                    and type(fact[0]) is str
                    and type(fact[1]) is int
                ):
                    f.fail(
                        f"supporting_facts[{i}]",
                        f"expected a [title, sentence_id] pair, got {_describe(fact)}",
                    )
                titles.add(_title_key(fact[0]))
        if answer is None:
            return NO_ANSWER
        if not answer.strip():
            return EMPTY_ANSWER
        if opts.max_passages is not None:
            context = context[: opts.max_passages]
        ctxs = []
        for i, item in enumerate(context):
            if type(item) is not list or len(item) != 2:
                f.fail(
                    f"context[{i}]", f"expected a [title, sentences] pair, got {_describe(item)}"
                )
            title = f.string(item[0], f"context[{i}][0]")
            sentences = f.list(item[1], f"context[{i}][1]", "a list of sentences")
            for j, s in enumerate(sentences):
                f.string(s, f"context[{i}][1][{j}]")
            ctx: dict[str, Any] = {"title": title, "text": join(sentences)}
            if titles is not None:
                ctx["gold"] = _title_key(title) in titles
            ctxs.append(ctx)
        if not ctxs:
            return NO_PASSAGES
        out: dict[str, Any] = {
            "id": qid,
            "question": question,
            "target": answer,
            "answers": [answer],
        }
        for key in keep:
            if type(r.get(key)) is str:
                out[key] = r[key]
        out["ctxs"] = ctxs
        return out, "supporting_facts" if titles is not None else "none (no supporting_facts)"

    return convert_record


def _describe(value: Any) -> str:
    if type(value) is list:
        return f"a list of {len(value)} items"
    return describe_type(value)


def _musique(rec: _Record, f: _Fields, opts: _Options) -> _Converted:
    r = f.record(rec.obj)
    qid = f.ident(f.require(r, "id"), "id")
    question = f.string(f.require(r, "question"), "question", nonempty=True)
    answerable = r.get("answerable", True)
    if type(answerable) is not bool:
        f.fail("answerable", f"expected a bool, got {describe_type(answerable)}")
    answer = _answer(f, r)
    aliases = r.get("answer_aliases")
    if aliases is None:
        aliases = []
    for i, alias in enumerate(f.list(aliases, "answer_aliases", "a list of strings")):
        f.string(alias, f"answer_aliases[{i}]")
    paragraphs = f.list(f.require(r, "paragraphs"), "paragraphs", "a list of paragraphs")
    if not answerable and not opts.keep_unanswerable:
        return UNANSWERABLE
    if answer is None:
        return NO_ANSWER
    if not answer.strip():
        return EMPTY_ANSWER
    answers = list(dict.fromkeys(a for a in [answer, *aliases] if a.strip()))
    if opts.max_passages is not None:
        paragraphs = paragraphs[: opts.max_passages]
    ctxs = []
    labelled = False
    for i, p in enumerate(paragraphs):
        where = f"paragraphs[{i}]"
        p = f.obj(p, where)
        ctx: dict[str, Any] = {
            "title": f.string(f.require(p, "title", f"{where}.title"), f"{where}.title"),
            "text": f.string(
                f.require(p, "paragraph_text", f"{where}.paragraph_text"),
                f"{where}.paragraph_text",
            ),
        }
        idx = p.get("idx")
        if idx is not None:
            if type(idx) is not int:
                f.fail(f"{where}.idx", f"expected an integer, got {describe_type(idx)}")
            ctx["idx"] = idx
        supporting = p.get("is_supporting")
        if supporting is not None:
            ctx["gold"] = f.flag(supporting, f"{where}.is_supporting")
            labelled = True
        ctxs.append(ctx)
    if not ctxs:
        return NO_PASSAGES
    out: dict[str, Any] = {
        # MuSiQue-Full's unanswerable twin can share the answerable question's id.
        "id": qid if answerable else f"{qid}__unanswerable",
        "question": question,
        "target": answer,
        "answers": answers,
        "answerable": answerable,
        "ctxs": ctxs,
    }
    return out, "is_supporting" if labelled else "none (no is_supporting)"


def _score(f: _Fields, value: Any, where: str) -> float | None:
    if value is None:
        return None
    if type(value) in (int, float):
        return float(value)
    if type(value) is str:
        # DPR's retriever writes scores as strings ("81.2").
        try:
            return float(value)
        except ValueError:
            f.fail(where, f"expected a number, got the string {value[:40]!r}")
    f.fail(where, f"expected a number, got {describe_type(value)}")


def _fid(rec: _Record, f: _Fields, opts: _Options) -> _Converted:
    r = f.record(rec.obj)
    qid = r.get("id")
    qid = str(rec.ordinal) if qid is None else f.ident(qid, "id")
    question = f.string(f.require(r, "question"), "question", nonempty=True)
    target = r.get("target")
    if target is not None:
        target = f.string(target, "target", nonempty=True)
    answers = r.get("answers")
    if answers is None:
        answers = []
    for i, a in enumerate(f.list(answers, "answers", "a list of strings")):
        f.string(a, f"answers[{i}]", nonempty=True)
    if not answers and target is None:
        f.fail("answers", "missing or empty (and no target)")
    answers = list(answers) if answers else [target]
    if target is None:
        target = answers[0]
    ctxs_in = f.list(f.require(r, "ctxs"), "ctxs", "a list of passages")
    if opts.max_passages is not None:
        ctxs_in = ctxs_in[: opts.max_passages]
    # Answer matching decides gold only if some answer survives normalisation (not "the").
    matchable = any(match_normalize(a) for a in answers)
    ctxs = []
    sources = set()
    for i, p in enumerate(ctxs_in):
        where = f"ctxs[{i}]"
        p = f.obj(p, where)
        text = f.string(f.require(p, "text", f"{where}.text"), f"{where}.text")
        title = p.get("title")
        ctx: dict[str, Any] = {
            "title": "" if title is None else f.string(title, f"{where}.title"),
            "text": text,
        }
        pid = p.get("id")
        if pid is not None:
            ctx["id"] = f.ident(pid, f"{where}.id")
        score = _score(f, p.get("score"), f"{where}.score")
        if score is not None:
            ctx["score"] = score
        has_answer = p.get("has_answer")
        if has_answer is not None:
            ctx["has_answer"] = ctx["gold"] = f.flag(has_answer, f"{where}.has_answer")
            sources.add("has_answer")
        elif matchable:
            ctx["gold"] = contains_answer(text, answers)
            sources.add("answer match")
        ctxs.append(ctx)
    if not ctxs:
        return NO_PASSAGES
    out = {"id": qid, "question": question, "target": target, "answers": answers, "ctxs": ctxs}
    how = " + ".join(sorted(sources)) or "none (no answer normalises to any text)"
    return out, how


def _passthrough(rec: _Record, f: _Fields, opts: _Options) -> _Converted:
    r = f.record(rec.obj)
    ctxs = r.get("ctxs")
    if opts.max_passages is not None and type(ctxs) is list:
        r = {**r, "ctxs": ctxs[: opts.max_passages]}
    return r, ""  # validated (and gold decided) by load_questions afterwards


_CONVERTERS: dict[str, Callable[[_Record, _Fields, _Options], _Converted]] = {
    "hotpotqa": _hotpot_like(_join_exact, ("type", "level")),
    "2wiki": _hotpot_like(_join_spaced, ("type",)),
    "musique": _musique,
    "fid": _fid,
    "gumbel-data": _passthrough,
}


# --------------------------------------------------------------------------------------------
# Converting


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
    report = ConversionReport(kind=kind, src=display, dst=os.fspath(dst))
    opts = _Options(max_passages=max_passages, keep_unanswerable=keep_unanswerable)
    converter = _CONVERTERS[kind]
    id_field = "_id" if kind in ("hotpotqa", "2wiki") else "id"
    skipped: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    seen: dict[str, int] = {}
    labels: list[int] = []  # input record of each output line (to map loader messages back)

    with open_input(src, display) as fin:
        records = _iter_records(fin, display)  # sniffs: bad files fail before dst is touched
        dst.parent.mkdir(parents=True, exist_ok=True)
        # Unique temporary name next to dst (same filesystem, so the rename is atomic).
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as out:
                for rec in records:
                    report.records += 1
                    f = _Fields(display, rec.label)
                    result = converter(rec, f, opts)
                    if isinstance(result, str):
                        skipped[result] += 1
                        continue
                    obj, how = result
                    if kind != "gumbel-data":  # there the loader checks ids itself
                        first = seen.setdefault(obj["id"], rec.label)
                        if first != rec.label:
                            f.fail(
                                id_field,
                                f"duplicate id {obj['id']!r} (first used by record {first})",
                            )
                        sources[how] += 1
                        golds = sum(1 for p in obj["ctxs"] if p.get("gold"))
                        report.gold_passages += golds
                        report.without_gold += int(golds == 0)
                    report.passages += len(obj["ctxs"]) if type(obj.get("ctxs")) is list else 0
                    try:
                        line = json.dumps(obj, ensure_ascii=False).encode("utf-8")
                    except UnicodeEncodeError:
                        f.fail("<record>", "invalid unicode: lone surrogate from a \\uXXXX escape")
                    out.write(line + b"\n")
                    labels.append(rec.label)
                    report.questions += 1
                    if limit is not None and report.questions >= limit:
                        break
                out.flush()
                os.fsync(out.fileno())  # the data is on disk before the rename makes it visible
            report.skipped = dict(skipped)
            if report.questions == 0:
                reasons = "; ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
                raise DataError(
                    f"{display}: no questions to write"
                    + (f" ({report.records} records skipped: {reasons})" if skipped else "")
                )
            if kind == "gumbel-data":
                _check_with_loader(tmp, display, labels, dst.parent, report)
            else:
                report.gold_sources = dict(sources)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
    return report


def _check_with_loader(
    tmp: Path, display: str, labels: list[int], workdir: Path, report: ConversionReport
) -> None:
    """Validate the written file with the loader itself and take the gold statistics from it.
    Loader messages name the temporary file and its line numbers; they are mapped back to
    ``display`` and the input's record numbers."""
    import pyarrow.compute as pc

    from gumbel_rerank.data.questions import load_questions

    cache = Path(tempfile.mkdtemp(prefix=".convert-check-", dir=workdir))
    try:
        try:
            qs = load_questions(tmp, cache_dir=cache)
        except DataError as err:
            raise DataError([_map_message(m, tmp, display, labels) for m in err.problems]) from None
        table = qs.dataset.select_columns(["gold_source", "gold_indices"]).with_format("arrow")
        sources: Counter[str] = Counter()
        for batch in table.iter(batch_size=8192):
            golds = pc.list_value_length(batch["gold_indices"]).to_numpy(zero_copy_only=False)
            report.gold_passages += int(golds.sum())
            report.without_gold += int((golds == 0).sum())
            sources.update(batch["gold_source"].to_pylist())
        report.gold_sources = {f"loader rule {k!r}": n for k, n in sources.items()}
        del qs, table  # release the memory map before the cache folder goes
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _map_message(message: str, tmp: Path, display: str, labels: list[int]) -> str:
    prefix = os.fspath(tmp)
    if not message.startswith(prefix):
        return message
    rest = message[len(prefix) :]
    m = re.match(r":(\d+):", rest)
    if m:
        line = int(m.group(1))
        label = labels[line - 1] if 0 < line <= len(labels) else line
        return f"{display}:{label}:{rest[m.end() :]}"
    return display + rest
