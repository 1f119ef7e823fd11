"""FiD's NQ / TriviaQA files (DPR retrieval output has the same shape; see the package docstring
of :mod:`gumbel_rerank.data.converters`)."""

from __future__ import annotations

from typing import Any

from gumbel_rerank.data.answers import contains_answer, match_normalize
from gumbel_rerank.data.converters.common import NO_PASSAGES, Converted, Fields, Options
from gumbel_rerank.data.jsonstream import describe_type

__all__ = ["convert_fid"]


def convert_fid(obj: Any, ordinal: int, f: Fields, opts: Options) -> Converted:
    """One FiD/DPR record -> (output object, how gold was decided), or a skip reason. A missing
    question id becomes the record's 0-based position ``ordinal``, as the loader would do."""
    r = f.record(obj)
    qid = r.get("id")
    qid = str(ordinal) if qid is None else f.ident(qid, "id")
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
    ctxs, sources = _passages(f, ctxs_in, answers)
    if not ctxs:
        return NO_PASSAGES
    out = {"id": qid, "question": question, "target": target, "answers": answers, "ctxs": ctxs}
    how = " + ".join(sorted(sources)) or "none (no answer normalises to any text)"
    return out, how


def _passages(f: Fields, ctxs_in: list, answers: list[str]) -> tuple[list[dict], set[str]]:
    """(passages, how their gold was decided): ``has_answer`` where a passage has it, else answer
    matching, if some answer survives normalisation (not "the")."""
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
    return ctxs, sources


def _score(f: Fields, value: Any, where: str) -> float | None:
    """A passage score: a number, or a numeric string (DPR's retriever writes "81.2")."""
    if value is None:
        return None
    if type(value) in (int, float):
        return float(value)
    if type(value) is str:
        try:
            return float(value)
        except ValueError:
            f.fail(where, f"expected a number, got the string {value[:40]!r}")
    f.fail(where, f"expected a number, got {describe_type(value)}")
