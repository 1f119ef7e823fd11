"""HotpotQA and 2WikiMultihopQA: the same layout, different sentence joining (see the package
docstring of :mod:`gumbel_rerank.data.converters`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gumbel_rerank.data.converters.common import (
    EMPTY_ANSWER,
    NO_ANSWER,
    NO_PASSAGES,
    Converted,
    Fields,
    Options,
    answer_field,
    describe_value,
)
from gumbel_rerank.data.records import title_key

__all__ = ["HotpotLike", "join_exact", "join_spaced"]


def join_exact(sentences: list[str]) -> str:
    """HotpotQA: sentences carry their own leading whitespace, so ``"".join`` restores the
    paragraph exactly."""
    return "".join(sentences).strip()


def join_spaced(sentences: list[str]) -> str:
    """2Wiki: sentences carry no leading whitespace; join with one space where a sentence
    boundary has none."""
    out: list[str] = []
    for s in sentences:
        if out and not out[-1][-1:].isspace() and not s[:1].isspace():
            out.append(" ")
        out.append(s)
    return "".join(out).strip()


class HotpotLike:
    """Converter of a HotpotQA-style record (``_id``, ``question``, ``answer``,
    ``supporting_facts``, ``context``); ``join`` makes a passage of its sentences, ``keep``
    names the string fields copied to the output."""

    def __init__(self, join: Callable[[list[str]], str], keep: tuple[str, ...]):
        self.join = join
        self.keep = keep

    def __call__(self, obj: Any, ordinal: int, f: Fields, opts: Options) -> Converted:
        """One record -> (output object, how gold was decided), or a skip reason."""
        r = f.record(obj)
        qid = f.ident(f.require(r, "_id"), "_id")
        question = f.string(f.require(r, "question"), "question", nonempty=True)
        answer = answer_field(f, r)
        context = f.list(f.require(r, "context"), "context", "a list of [title, sentences] pairs")
        titles = _supporting_titles(f, r.get("supporting_facts"))
        if answer is None:
            return NO_ANSWER
        if not answer.strip():
            return EMPTY_ANSWER
        if opts.max_passages is not None:
            context = context[: opts.max_passages]
        ctxs = self._passages(f, context, titles)
        if not ctxs:
            return NO_PASSAGES
        out: dict[str, Any] = {
            "id": qid,
            "question": question,
            "target": answer,
            "answers": [answer],
        }
        for key in self.keep:
            if type(r.get(key)) is str:
                out[key] = r[key]
        out["ctxs"] = ctxs
        return out, "supporting_facts" if titles is not None else "none (no supporting_facts)"

    def _passages(self, f: Fields, context: list, titles: set[str] | None) -> list[dict]:
        """Passages of the ``context`` pairs, gold when their title is a supporting one."""
        ctxs = []
        for i, item in enumerate(context):
            if type(item) is not list or len(item) != 2:
                f.fail(
                    f"context[{i}]",
                    f"expected a [title, sentences] pair, got {describe_value(item)}",
                )
            title = f.string(item[0], f"context[{i}][0]")
            sentences = f.list(item[1], f"context[{i}][1]", "a list of sentences")
            for j, s in enumerate(sentences):
                f.string(s, f"context[{i}][1][{j}]")
            ctx: dict[str, Any] = {"title": title, "text": self.join(sentences)}
            if titles is not None:
                ctx["gold"] = title_key(title) in titles
            ctxs.append(ctx)
        return ctxs


def _supporting_titles(f: Fields, facts: Any) -> set[str] | None:
    """The supporting-fact titles (as the loader matches them), None without supervision."""
    if facts is None:
        return None
    facts = f.list(facts, "supporting_facts", "a list of [title, sentence_id] pairs")
    titles = set()
    for i, fact in enumerate(facts):
        if not (
            type(fact) is list and len(fact) == 2 and type(fact[0]) is str and type(fact[1]) is int
        ):
            f.fail(
                f"supporting_facts[{i}]",
                f"expected a [title, sentence_id] pair, got {describe_value(fact)}",
            )
        titles.add(title_key(fact[0]))
    return titles
