"""Question records: the typed :class:`Question` / :class:`Passage`, and the validation of one
parsed record into the row the Arrow cache stores, with its gold passages decided.

Gold passages are decided per question, first rule that applies (``Question.gold_source``):

1. ``"flag"``: a per-passage flag. ``gold_field`` if given, else the first of ``gold``,
   ``is_gold``, ``is_supporting``, ``has_answer`` present (and not null) on any passage of the
   record. Values must be booleans or the integers 0/1. Passages without the flag are not gold.
   DPR's ``has_answer`` is itself an answer-string match computed by DPR; it counts as an
   explicit flag only when the file carries it, and is the last flag tried.
2. ``"titles"``: question-level supporting titles, ``supporting_titles`` (list of strings) or
   HotpotQA's ``supporting_facts`` (list of ``[title, sentence_id]``); passages whose title
   matches (after Unicode NFC and whitespace squashing; case-sensitive) are gold. An empty or
   null list counts as absent.
3. ``"answer"``: passages containing a normalised answer (DPR convention,
   :func:`gumbel_rerank.data.answers.contains_answer`).
4. ``"none"``: none of the above could be applied (every answer normalises to nothing, e.g.
   ``"the"``). ``Passage.gold`` is then ``None``.

A question whose gold rule found no gold passage keeps its ``gold_source`` and has empty
``gold_indices``; evaluation should count and exclude such questions
(:func:`gumbel_rerank.data.questions.count_without_gold`,
:meth:`gumbel_rerank.data.questions.QuestionSet.with_gold`) rather than score them 0.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gumbel_rerank.data.answers import contains_answer, contains_any, match_normalize
from gumbel_rerank.data.jsonstream import Record, describe_type, id_problem, string_problem

__all__ = [
    "GOLD_FLAG_FIELDS",
    "GOLD_SOURCES",
    "Passage",
    "Question",
    "Validator",
    "flag_problem",
    "title_key",
]

#: Per-passage gold flags tried, in this order, when ``gold_field`` is not given.
GOLD_FLAG_FIELDS = ("gold", "is_gold", "is_supporting", "has_answer")
#: Possible values of ``Question.gold_source``.
GOLD_SOURCES = ("flag", "titles", "answer", "none")

_MISSING = object()
# Records a problem: (field, what is wrong, or None for no problem).
_Bad = Callable[[str, "str | None"], None]


@dataclass(frozen=True)
class Passage:
    """One candidate passage. ``gold`` is the decided label (``None`` if undecidable); ``id``
    and ``score`` are the retriever's, when the file has them; ``role`` is the file's optional
    per-passage kind (e.g. "bridge", "distractor:entity_link"), which reader-training curricula
    can select contexts by."""

    title: str
    text: str
    gold: bool | None = None
    id: str | None = None
    score: float | None = None
    role: str | None = None


@dataclass(frozen=True)
class Question:
    """A question with its candidate passages (in the file's order) and gold labels.

    ``target`` is the answer the reader is trained on; ``answers`` are all accepted answers (for
    EM/F1 and answer matching). ``targets`` are further named targets of the record (its
    optional ``targets`` object, e.g. ``{"link": "bakomu"}`` for a reader curriculum's other
    example types). ``gold_source`` says which rule decided ``Passage.gold`` (see the
    module docstring). ``answer_passages`` are the indices of passages containing a normalised
    answer, whatever the gold source; computed here when not given.
    """

    id: str
    question: str
    target: str
    answers: tuple[str, ...]
    passages: tuple[Passage, ...]
    gold_source: str
    answer_passages: tuple[int, ...] | None = field(default=None)
    targets: tuple[tuple[str, str], ...] = ()

    def named_target(self, name: str | None) -> str:
        """The target called ``name`` (the record's ``targets`` mapping), or ``target`` for
        None. A KeyError naming the question when the record has no such target."""
        if name is None:
            return self.target
        for key, text in self.targets:
            if key == name:
                return text
        raise KeyError(f"question {self.id!r} has no target {name!r} (it has {[k for k, _ in self.targets]})")

    def __post_init__(self) -> None:
        """Check ``gold_source``; compute ``answer_passages`` when not given."""
        if self.gold_source not in GOLD_SOURCES:
            raise ValueError(f"gold_source must be one of {GOLD_SOURCES}, got {self.gold_source!r}")
        if self.answer_passages is None:
            found = tuple(
                i for i, p in enumerate(self.passages) if contains_answer(p.text, self.answers)
            )
            # Frozen dataclass: the only way to fill a derived field in __post_init__.
            object.__setattr__(self, "answer_passages", found)

    @property
    def gold_indices(self) -> tuple[int, ...]:
        """Indices of the gold passages (empty if none is gold or gold is undecidable)."""
        return tuple(i for i, p in enumerate(self.passages) if p.gold)

    @property
    def has_gold(self) -> bool:
        """Whether at least one passage is gold."""
        return any(p.gold for p in self.passages)

    @property
    def indirect_gold_indices(self) -> tuple[int, ...]:
        """Gold passages that do not contain an answer: the "indirectly relevant" subset
        (method.md section 4), e.g. bridge passages of multi-hop questions.

        The rule is the paper's, applied literally: "does not contain an answer string". So on a
        question whose answer is stated in no passage, typically a yes/no comparison question
        (HotpotQA's "Are X and Y both ...?": no passage says "yes"), every gold passage is
        indirect, and such questions enter the indirect subset with both supporting passages.
        A passage that happens to contain the word "yes" counts as containing the answer."""
        with_answer = set(self.answer_passages or ())
        return tuple(i for i in self.gold_indices if i not in with_answer)

    @property
    def direct_gold_indices(self) -> tuple[int, ...]:
        """Gold passages that contain an answer (the complement of the indirect subset among
        the gold), e.g. the answer passage of a two-hop question."""
        with_answer = set(self.answer_passages or ())
        return tuple(i for i in self.gold_indices if i in with_answer)


def title_key(title: str) -> str:
    """A title as gold-title matching compares it: Unicode NFC, whitespace squashed, case kept."""
    return " ".join(unicodedata.normalize("NFC", title).split())


def flag_problem(value: Any) -> str | None:
    """Why ``value`` is not a gold flag (a bool, or the integer 0 or 1), or None."""
    # type() excludes bool from int, and 1.0 from int.
    if type(value) is bool or (type(value) is int and value in (0, 1)):
        return None
    shown = str(value) if type(value) in (int, float) else describe_type(value)
    return f"expected a bool or 0/1, got {shown}"


class Validator:
    """Turns one parsed record into an Arrow row (the cache's schema), or into problem messages.

    Written for speed on the common path (this runs for every passage of every question):
    exact ``type(...) is`` checks (``json`` only produces exact types), details only on errors.
    Ids are remembered across calls, so a repeated id is a problem of the later record.
    """

    def __init__(
        self, display: str, gold_field: str | None, max_passages: int | None, score_field: str = "score"
    ) -> None:
        self.display = display
        self.gold_field = gold_field
        self.max_passages = max_passages
        self.score_field = score_field
        self.seen_ids: dict[str, int] = {}

    def __call__(self, raw: Record) -> tuple[dict | None, list[str]]:
        """``(row, [])`` for a valid record, ``(None, problems)`` otherwise; each problem reads
        ``FILE:RECORD: FIELD: what is wrong``."""
        prefix = f"{self.display}:{raw.number}: "
        if raw.problem is not None:
            return None, [prefix + raw.problem]
        rec = raw.obj
        if type(rec) is not dict:
            return None, [f"{prefix}<record>: expected a JSON object, got {describe_type(rec)}"]
        problems: list[str] = []
        sur = raw.maybe_surrogates

        def bad(where: str, what: str | None) -> None:
            # Takes the checkers' result directly: None means "no problem".
            if what is not None:
                problems.append(f"{prefix}{where}: {what}")

        qid, question, target, answers = _question_fields(rec, raw.ordinal, bad, sur)
        passages, objs = self._passages(rec, bad, sur)
        flag = self._flag_field(objs, bad) if objs else None
        targets = _named_targets(rec, bad, sur)
        if problems:
            return None, problems

        # Both present, or one standing in for the other (method.md: target may be missing).
        answers = list(answers) if answers else [target]
        if target is None:
            target = answers[0]
        normalised = [a for a in map(match_normalize, answers) if a]
        answer_passages = [i for i, p in enumerate(passages) if contains_any(p["text"], normalised)]
        source, gold = self._gold(rec, flag, objs, passages, normalised, answer_passages, bad)
        if problems:
            return None, problems

        first = self.seen_ids.get(qid)
        if first is not None:
            bad("id", f"duplicate id {qid!r} (first used by record {first})")
            return None, problems
        self.seen_ids[qid] = raw.number

        for p, g in zip(passages, gold, strict=True):
            p["gold"] = g
        row = {
            "id": qid,
            "question": question,
            "target": target,
            "targets": targets,
            "answers": answers,
            "gold_source": source,
            "gold_indices": [i for i, g in enumerate(gold) if g],
            "answer_passages": answer_passages,
            "passages": passages,
        }
        return row, problems

    def _gold(
        self,
        rec: dict,
        flag: str | None,
        objs: list[dict],
        passages: list[dict],
        normalised: list[str],
        answer_passages: list[int],
        bad: _Bad,
    ) -> tuple[str, list[bool | None]]:
        """(gold source, gold label of each passage): explicit flag > supporting titles >
        answer containment > none (module docstring)."""
        if flag is not None:
            gold: list[bool | None] = []
            for i, p in enumerate(objs):
                value = p.get(flag)
                problem = None if value is None else flag_problem(value)
                if problem is None:
                    gold.append(bool(value))
                else:
                    bad(f"ctxs[{i}].{flag}", problem)
            return "flag", gold
        titles = self._supporting_titles(rec, bad)
        if titles:
            return "titles", [title_key(p["title"]) in titles for p in passages]
        if normalised:
            with_answer = set(answer_passages)
            return "answer", [i in with_answer for i in range(len(passages))]
        return "none", [None] * len(passages)  # e.g. every answer is "the" or punctuation

    def _passages(self, rec: dict, bad: _Bad, sur: bool) -> tuple[list[dict], list[dict]]:
        """Validate ``ctxs``; returns (Arrow passage rows, the raw passage objects)."""
        ctxs = rec.get("ctxs", _MISSING)
        if ctxs is _MISSING:
            bad("ctxs", "missing field")
            return [], []
        if type(ctxs) is not list:
            bad("ctxs", f"expected a list of passages, got {describe_type(ctxs)}")
            return [], []
        if not ctxs:
            bad("ctxs", "empty list, expected at least one passage")
            return [], []
        if self.max_passages is not None:
            # Passages past the cut are never looked at, so junk there does not reject a record.
            ctxs = ctxs[: self.max_passages]
        rows: list[dict] = []
        objs: list[dict] = []
        for i, p in enumerate(ctxs):
            if type(p) is not dict:
                bad(f"ctxs[{i}]", f"expected an object, got {describe_type(p)}")
                continue
            text = p.get("text", _MISSING)
            title = p.get("title")
            if sur or type(text) is not str or (title is not None and type(title) is not str):
                if text is _MISSING:
                    bad(f"ctxs[{i}].text", "missing field")
                else:
                    bad(f"ctxs[{i}].text", string_problem(text, nonempty=False, surrogates=sur))
                if title is not None:
                    bad(f"ctxs[{i}].title", string_problem(title, nonempty=False, surrogates=sur))
            pid = p.get("id")
            if pid is not None:
                if type(pid) is not str or sur:
                    bad(f"ctxs[{i}].id", id_problem(pid, surrogates=sur))
                pid = str(pid)
            score = p.get(self.score_field)
            if score is not None:
                if type(score) is int:
                    score = float(score)
                elif type(score) is not float:
                    bad(f"ctxs[{i}].{self.score_field}", f"expected a number, got {describe_type(score)}")
            role = p.get("role")
            if role is not None:
                bad(f"ctxs[{i}].role", string_problem(role, nonempty=True, surrogates=sur))
            objs.append(p)
            rows.append(
                {"title": title or "", "text": text, "gold": None, "id": pid, "score": score, "role": role}
            )
        return rows, objs

    def _flag_field(self, objs: list[dict], bad: _Bad) -> str | None:
        """The per-passage gold flag this record uses, if any."""
        if self.gold_field is not None:
            if any(p.get(self.gold_field) is not None for p in objs):
                return self.gold_field
            bad("ctxs", f"gold field {self.gold_field!r} is not present on any passage")
            return None
        keys: set[str] = set()
        for p in objs:
            keys.update(p)
        for name in GOLD_FLAG_FIELDS:
            # "Present" means present and not null on at least one passage.
            if name in keys and any(p.get(name) is not None for p in objs):
                return name
        return None

    def _supporting_titles(self, rec: dict, bad: _Bad) -> set[str]:
        """Question-level gold titles (normalised), from supporting_titles or supporting_facts."""
        titles = rec.get("supporting_titles")
        if titles is not None:
            if type(titles) is not list:
                bad("supporting_titles", f"expected a list of strings, got {describe_type(titles)}")
                return set()
            out = set()
            for i, t in enumerate(titles):
                if type(t) is not str:
                    bad(f"supporting_titles[{i}]", f"expected a string, got {describe_type(t)}")
                else:
                    out.add(title_key(t))
            if titles:
                return out
        facts = rec.get("supporting_facts")
        if facts is None:
            return set()
        if type(facts) is not list:
            bad(
                "supporting_facts",
                f"expected a list of [title, sentence_id] pairs, got {describe_type(facts)}",
            )
            return set()
        out = set()
        for i, fact in enumerate(facts):
            if type(fact) is list and len(fact) == 2 and type(fact[0]) is str:
                out.add(title_key(fact[0]))
            else:
                bad(
                    f"supporting_facts[{i}]",
                    f"expected a [title, sentence_id] pair, got {describe_type(fact)}",
                )
        return out


def _named_targets(rec: dict, bad: _Bad, sur: bool) -> list[dict[str, str]]:
    """The optional ``targets`` object (name -> non-empty string) as Arrow rows."""
    targets = rec.get("targets")
    if targets is None:
        return []
    if type(targets) is not dict:
        bad("targets", f"expected an object of named targets, got {describe_type(targets)}")
        return []
    for name, text in targets.items():
        bad(f"targets.{name}", string_problem(text, nonempty=True, surrogates=sur))
    return [{"name": name, "text": text} for name, text in targets.items()]


def _question_fields(rec: dict, ordinal: int, bad: _Bad, sur: bool) -> tuple[str, Any, Any, Any]:
    """Check the question-level fields; (id, question, target, answers) as found (the id as a
    string; a missing id is the record's 0-based position, the same for a JSON list and JSONL
    of the same data)."""
    qid = rec.get("id")
    if qid is None:
        qid = str(ordinal)
    else:
        bad("id", id_problem(qid, surrogates=sur))
        qid = str(qid)

    question = rec.get("question", _MISSING)
    if question is _MISSING:
        bad("question", "missing field")
    else:
        bad("question", string_problem(question, nonempty=True, surrogates=sur))

    target = rec.get("target")
    if target is not None:
        bad("target", string_problem(target, nonempty=True, surrogates=sur))
    answers = rec.get("answers")
    if answers is not None:
        if type(answers) is not list:
            bad("answers", f"expected a list of strings, got {describe_type(answers)}")
        else:
            for i, a in enumerate(answers):
                bad(f"answers[{i}]", string_problem(a, nonempty=True, surrogates=sur))
            if not answers and target is None:
                bad("answers", "empty list (and no target)")
    elif target is None:
        bad("answers", "missing field (and no target)")
    return qid, question, target, answers
