"""MuSiQue (JSON lines with ``paragraphs`` and ``is_supporting``; see the package docstring of
:mod:`gumbel_rerank.data.converters`)."""

from __future__ import annotations

from typing import Any

from gumbel_rerank.data.converters.common import (
    EMPTY_ANSWER,
    NO_ANSWER,
    NO_PASSAGES,
    UNANSWERABLE,
    Converted,
    Fields,
    Options,
    answer_field,
)
from gumbel_rerank.data.jsonstream import describe_type

__all__ = ["convert_musique"]


def convert_musique(obj: Any, ordinal: int, f: Fields, opts: Options) -> Converted:
    """One MuSiQue record -> (output object, how gold was decided), or a skip reason."""
    r = f.record(obj)
    qid = f.ident(f.require(r, "id"), "id")
    question = f.string(f.require(r, "question"), "question", nonempty=True)
    answerable = r.get("answerable", True)
    if type(answerable) is not bool:
        f.fail("answerable", f"expected a bool, got {describe_type(answerable)}")
    answer = answer_field(f, r)
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
    ctxs, labelled = _passages(f, paragraphs)
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


def _passages(f: Fields, paragraphs: list) -> tuple[list[dict], bool]:
    """(passages, whether any carries ``is_supporting``) of the record's paragraphs."""
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
    return ctxs, labelled
