"""The embedded two-hop demo dataset: deterministic, in our question format, built in seconds.

Every question needs two passages, chained through an intermediate ("bridge") entity::

    question  which city was the mentor of nilo born in ?
    bridge    nilo studied under the teacher bakomu .      (question entity -> intermediate)
    answer    bakomu was born in the city lima .           (intermediate -> answer)

The question composes a LINK relation (person -> person: mentor, spouse, ...; :data:`LINKS`)
with an ATTRIBUTE relation (person -> value: city, color, ...; :data:`ATTRIBUTES`). The bridge
passage states the link for the question's entity and names the intermediate entity, never the
answer; the answer passage states the attribute of the intermediate entity and, unless it is
cued (below), does not name the question's entity. What each passage offers a pointwise reranker
follows demo.md: the bridge shares the question's entity (a rare word); the answer passage
shares the question's relation words ("born in the city"), since a passage sharing nothing with
the question cannot be ranked high by any reranker that scores passages one at a time. Two link templates
share their noun with the question ("sister", "coach"); the others do not ("mentor" vs "studied
under the teacher"), so telling the bridge from the question entity's other links is partly a
lexical and partly a learned match.

Distractors (``role = "distractor:<kind>"``, :data:`DISTRACTOR_KINDS`) share entities and words
with the question; the kinds asking for the same attribute of other people are the ones that
force a reader to follow the bridge: with several "X was born in the city Y" passages in the
context, only the bridge says which X is meant. How many of each kind a question gets is
``DemoSpec.distractor_mix`` (weights, apportioned to ``n_passages - 2`` slots by
:func:`distractor_counts`); every question of a spec gets the same counts.

Invariants (tested in tests/test_demo_data.py):

* **The answer appears in exactly one passage: the answer passage** (with
  ``DemoSpec.redundant`` containing "answer": in exactly the answer passage and its restatement). No distractor and not the
  bridge contains the answer word (nor does any title): distractor values are drawn from the
  attribute's values with the answer excluded, and the answer vocabularies of different
  attributes are disjoint. So no passage other than the bridge-selected one lets a reader answer,
  and the answer passage is the only one for which ``gumbel_rerank.data.questions`` finds the answer.
* **The chain is unique.** No distractor states the asked link of the question's entity or the
  asked attribute of the intermediate entity; within a question every (subject, relation) pair is
  stated at most once, so the facts of one question never contradict each other.
* **Values do not repeat by frequency.** Distractor values of an attribute are dealt from a
  shuffled deck (refilled only once its 7 non-answer values are used), so "the value that occurs
  once" is not a shortcut to the answer.

Facts are drawn afresh for every question (the mentor of nilo differs from question to question),
so nothing can be memorised across questions; a reader has to read. The ANSWER vocabulary (40
single-word values, 8 per attribute) is shared by all splits: demo.md measured that tiny readers
learn to copy only values they have produced in training. The PEOPLE (question entities,
intermediate entities and everyone in distractors) are pronounceable pseudo-words
(:func:`gumbel_rerank.demo.synthetic.pseudo_words`, one word-level token each) from pools that are
disjoint between train, dev and test, so dev/test measure reading, not recall.

**The answer cue.** A cross-encoder scores each passage alone, so an answer passage that names
only the intermediate entity cannot be told from another "X was born in the city Y" passage by
any pointwise reranker (demo.md measured this). A fraction ``DemoSpec.answer_cue`` of questions
(drawn per question) therefore get a cued answer passage that also names the question's entity
through the link, as an apposition: "bakomu , the mentor of nilo , was born in the city lima ."
(``answer_cued`` on the record). On cued questions the answer passage alone answers the question;
on uncued ones only the bridge tells the answer passage from the wrong chain, which is what the
demo's reading check measures.

The incoming order is a lexical retriever's: Okapi BM25 (k1 = 1.2, b = 0.75) of the question's
word tokens against each passage's "title text", ``ctxs`` sorted by score descending, the score
stored on each passage. By default document frequencies and the average length come from all
candidate passages of the split (``idf_scope="split"``), as a retriever's corpus statistics
would: names are then rare and weigh a lot, template words are common and weigh little. Per
question statistics (``idf_scope="question"``, 10 documents) are flat and noisy. Passages are
shuffled before the (stable) sort, so ties are broken at random, not by construction order.

Each question draws from its own ``random.Random`` seeded with (seed, split, index): the first
100 questions of a 4000-question split are those of a 100-question split (BM25 scores aside,
which depend on the split's statistics), and the output is byte-identical for the same spec.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gumbel_rerank.demo.bm25 import CorpusStats, bm25_scores, corpus_stats, word_tokens
from gumbel_rerank.demo.synthetic import SYLLABLES, pseudo_words
from gumbel_rerank.durable import write_atomic

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_MIX",
    "DISTRACTOR_KINDS",
    "FIELD_WORDS",
    "LINKS",
    "REDUNDANT_FACTS",
    "RESTATED",
    "SPLITS",
    "CorpusStats",
    "DemoSpec",
    "bm25_scores",
    "corpus_stats",
    "demo_vocabulary",
    "distractor_counts",
    "entity_pools",
    "generate_all",
    "generate_split",
    "word_tokens",
    "write_demo_data",
]

SPLITS = ("train", "dev", "test")
#: The words FiD's input format adds around every passage (reader.formatting.format_passage).
FIELD_WORDS = "question: title: context:"

#: Link relations, person -> person: name -> (question noun, passage template). The question
#: reads "... the {noun} of {entity} ..."; ``{s}`` is the subject, ``{o}`` the linked person.
#: No template uses a word of an attribute template (the answer passage's cue stays its own).
LINKS: dict[str, tuple[str, str]] = {
    "mentor": ("mentor", "{s} studied under the teacher {o} ."),
    "spouse": ("spouse", "{s} is married to {o} ."),
    "rival": ("rival", "{s} often competed against {o} ."),
    "employer": ("employer", "{s} works for {o} ."),
    "neighbor": ("neighbor", "{s} lives next door to {o} ."),
    "sister": ("sister", "{s} has a sister named {o} ."),
    "coach": ("coach", "{s} was trained by the coach {o} ."),
}

#: Attribute relations, person -> value: name -> (question template, passage template, values).
#: ``{x}`` in the question is "the {noun} of {entity}"; the passage template shares its relation
#: words with the question ("born in the city"), which is the answer passage's visible cue.
ATTRIBUTES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "city": (
        "which city was {x} born in ?",
        "{s} was born in the city {a} .",
        ("paris", "lagos", "lima", "oslo", "quito", "hanoi", "tunis", "perth"),
    ),
    "color": (
        "which color does {x} like best ?",
        "{s} likes the color {a} best .",
        ("red", "blue", "green", "amber", "violet", "silver", "coral", "olive"),
    ),
    "instrument": (
        "which instrument does {x} play ?",
        "{s} plays the instrument {a} .",
        ("piano", "violin", "flute", "cello", "guitar", "drums", "harp", "banjo"),
    ),
    "animal": (
        "which animal does {x} keep ?",
        "{s} keeps the animal {a} at home .",
        ("otter", "heron", "lynx", "gecko", "bison", "koala", "viper", "moose"),
    ),
    "food": (
        "which food does {x} cook ?",
        "{s} cooks the food {a} .",
        ("rice", "bread", "soup", "curry", "pasta", "salad", "stew", "tacos"),
    ),
}

#: Restatements of a fact in other words (the redundant-evidence setting, ``DemoSpec.redundant``):
#: "the {noun} of {s} is {o} ." for a link, "the {noun} of {s} is {a} ." for an attribute, where
#: noun is the question's noun of the relation. Every word is already a word of the templates and
#: questions, so the demo vocabulary (and the shipped readers' tokenizer) covers them.
RESTATED = "the {noun} of {s} is {o} ."
#: Facts that ``DemoSpec.redundant`` may state twice, and the role of the second statement.
REDUNDANT_FACTS = {"bridge": "bridge:restated", "answer": "answer:restated"}

#: Distractor kinds. E = the question's entity, M = the intermediate entity, "asked" = the
#: question's link or attribute. None contains the answer (module docstring, invariants).
DISTRACTOR_KINDS: dict[str, str] = {
    "entity_trap": "the asked attribute of E, with another value: a one-hop answer that is wrong "
    "('nilo was born in the city oslo .'); at most one per question",
    "entity_attribute": "another attribute of E ('nilo likes the color red best .')",
    "entity_link": "another link of E to a new person P ('nilo is married to rafu .')",
    "other_bridge": "the asked link for other people ('kelo studied under the teacher simu .')",
    "linked_attribute": "the asked attribute of a person named by an entity_link or other_bridge "
    "distractor ('rafu was born in the city oslo .'): a complete wrong chain, so the reader must "
    "check which link the bridge states; a new person when none is left",
    "intermediate_attribute": "another attribute of M ('bakomu keeps the animal lynx at home .')",
    "same_attribute": "the asked attribute of an unrelated new person",
    "unrelated": "another attribute of an unrelated new person; also what a kind that cannot be "
    "made any more in a question falls back to (a second entity_trap, a fifth entity_attribute)",
}

#: Default mix for 8 distractors (n_passages=10). Two passages besides the answer state the asked
#: attribute: the entity_trap (names E: a one-hop reader's wrong answer) and one
#: linked_attribute (a complete wrong chain through E's other link). Without the bridge a reader
#: is at a coin flip between the answer passage and that chain; with it, it is sure. Five
#: passages name E (bridge, trap, 2 x entity_attribute, entity_link), so finding the bridge
#: takes the link's words, not the name alone. Only one non-E competitor, because a pointwise
#: reranker cannot tell an uncued answer passage from it (module docstring).
DEFAULT_MIX: tuple[tuple[str, int], ...] = (
    ("entity_trap", 1),
    ("entity_attribute", 2),
    ("entity_link", 1),
    ("other_bridge", 1),
    ("linked_attribute", 1),
    ("intermediate_attribute", 2),
)

# Kinds are built in this order whatever the mix lists first: linked_attribute needs the people
# that entity_link / other_bridge introduced.
_BUILD_ORDER = (
    "entity_trap",
    "entity_attribute",
    "entity_link",
    "other_bridge",
    "linked_attribute",
    "intermediate_attribute",
    "same_attribute",
    "unrelated",
)
assert set(_BUILD_ORDER) == set(DISTRACTOR_KINDS)

# What the HF ``Whitespace`` pre-tokenizer (gumbel_rerank.demo.wordlevel) splits text into.
_PRETOKEN_RE = re.compile(r"\w+|[^\w\s]+")


def _check_tables() -> None:
    values = [v for _, _, vals in ATTRIBUTES.values() for v in vals]
    # Disjoint value sets: a value of one attribute can never be the answer to another.
    if len(values) != len(set(values)):
        raise AssertionError("attribute values must be distinct across attributes")
    for word in values:
        if not re.fullmatch(r"[a-z]+", word):
            raise AssertionError(f"value {word!r} must be one lowercase word")


_check_tables()


@dataclass(frozen=True)
class DemoSpec:
    """Everything that determines the demo data; the same spec gives byte-identical files.

    Args:
        n_train, n_dev, n_test: questions per split.
        n_passages: candidates per question (bridge + answer + ``n_passages - 2`` distractors).
        seed: fixes entity pools, questions, distractors and tie-breaking.
        n_entities_train, n_entities_dev, n_entities_test: sizes of the disjoint person pools.
        syllables: syllables per pseudo-word name (16 syllables: 16**syllables possible names).
        distractor_mix: (kind, weight) pairs, kinds from :data:`DISTRACTOR_KINDS`; weights are
            apportioned to the distractor slots (:func:`distractor_counts`).
        bm25_k1, bm25_b: BM25 parameters of the incoming order.
        idf_scope: ``"split"`` (corpus = all candidates of the split) or ``"question"``.
        answer_cue: fraction of questions whose answer passage also names the question's
            entity (module docstring, "the answer cue"); 0 = never, 1 = always.
        shared_pool: 0 = disjoint person pools per split (``n_entities_*``); N > 0 = one pool
            of N names for every split (facts are still drawn per question, so dev and test
            measure reading; demo.md: tiny readers learn two-hop matching on a shared pool).
        chain_target: train the reader on the chain "<intermediate> <answer>" (``target``);
            ``answers`` stay the answer word, so EM and F1 judge the final hop only.
        redundant: facts of the chain stated by a second passage in other words
            (:data:`REDUNDANT_FACTS`: "bridge", "answer"), as Wikipedia repeats facts across
            articles: "the mentor of nilo is bakomu ." besides "nilo studied under the teacher
            bakomu ."; the second passage is gold too, with role ``bridge:restated`` /
            ``answer:restated``, and takes a distractor's slot. Either statement suffices.
            Restating "answer" makes the answer the one value stated twice (no other attribute
            passage is restated), a frequency cue a reader can learn instead of the bridge
            (measured: demo/assets/README.md); the demo's redundant setting restates the bridge.
    """

    n_train: int = 4000
    n_dev: int = 500
    n_test: int = 500
    n_passages: int = 10
    seed: int = 0
    n_entities_train: int = 600
    n_entities_dev: int = 200
    n_entities_test: int = 200
    syllables: int = 3
    distractor_mix: tuple[tuple[str, int], ...] = DEFAULT_MIX
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    idf_scope: str = "split"
    answer_cue: float = 0.5
    shared_pool: int = 0
    chain_target: bool = False
    redundant: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [fact for fact in self.redundant if fact not in REDUNDANT_FACTS]
        if unknown or len(set(self.redundant)) != len(self.redundant):
            raise ValueError(f"redundant: {list(self.redundant)} must be distinct facts of {sorted(REDUNDANT_FACTS)}")
        if self.n_passages < 2 + len(self.redundant):
            raise ValueError(f"n_passages must be >= {2 + len(self.redundant)} (bridge, answer and their restatements)")
        for name in ("n_train", "n_dev", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_passages < 2:
            raise ValueError(f"n_passages must be >= 2 (bridge + answer), got {self.n_passages}")
        for kind, weight in self.distractor_mix:
            if kind not in DISTRACTOR_KINDS:
                raise ValueError(
                    f"unknown distractor kind {kind!r}; known: {sorted(DISTRACTOR_KINDS)}"
                )
            if weight < 0:
                raise ValueError(f"distractor weight for {kind!r} must be >= 0, got {weight}")
        if self.n_passages > 2 + len(self.redundant) and sum(w for _, w in self.distractor_mix) <= 0:
            raise ValueError("distractor_mix needs a positive total weight when n_passages > 2")
        # A question uses at most 2 people per passage (other_bridge introduces two).
        need = 2 * self.n_passages
        if self.shared_pool and self.shared_pool < need:
            raise ValueError(f"shared_pool={self.shared_pool} is too small: a question may need {need} people")
        for split in SPLITS if not self.shared_pool else ():
            size = getattr(self, f"n_entities_{split}")
            if size < need:
                raise ValueError(
                    f"n_entities_{split}={size} is too small: a question with "
                    f"{self.n_passages} passages may need {need} distinct people"
                )
        if self.syllables < 1:
            raise ValueError(f"syllables must be >= 1, got {self.syllables}")
        available = len(SYLLABLES) ** self.syllables - len(_reserved_words())
        total = self.shared_pool or self.n_entities_train + self.n_entities_dev + self.n_entities_test
        if total > available:
            raise ValueError(
                f"{total} entity names requested but only {available} "
                f"{self.syllables}-syllable names exist"
            )
        if self.idf_scope not in ("split", "question"):
            raise ValueError(f"idf_scope must be 'split' or 'question', got {self.idf_scope!r}")
        if not 0.0 <= self.answer_cue <= 1.0:
            raise ValueError(f"answer_cue must be in [0, 1], got {self.answer_cue}")
        if self.bm25_k1 < 0 or not 0 <= self.bm25_b <= 1:
            raise ValueError("BM25 needs k1 >= 0 and 0 <= b <= 1")

    def n_questions(self, split: str) -> int:
        """Questions in ``split``."""
        _check_split(split)
        return getattr(self, f"n_{split}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# --------------------------------------------------------------------------------------------
# Vocabulary and entity pools


def _template_texts() -> list[str]:
    """Every fixed string of the generator (templates with their slots emptied, values)."""
    texts = [FIELD_WORDS, "the of ,"]  # "the {noun} of {entity}" in questions and answer cues
    for noun, template in LINKS.values():
        texts += [noun, template.format(s="", o="")]
    for question, template, values in ATTRIBUTES.values():
        texts += [question.format(x=""), template.format(s="", a=""), *values]
    return texts


def _pretokens(text: str) -> list[str]:
    return _PRETOKEN_RE.findall(text.lower())


def _reserved_words() -> frozenset[str]:
    """Words a name must not be (it would be confused with a template word or a value)."""
    return frozenset(w for t in _template_texts() for w in _pretokens(t))


def entity_pools(spec: DemoSpec) -> dict[str, tuple[str, ...]]:
    """The person names of each split: disjoint pools of pseudo-words, fixed by ``spec.seed``."""
    if spec.shared_pool:
        sizes = {"shared": spec.shared_pool}
    else:
        sizes = {split: getattr(spec, f"n_entities_{split}") for split in SPLITS}
    reserved = _reserved_words()
    # Ask for enough extra names that dropping reserved words still leaves the total.
    drawn = pseudo_words(
        sum(sizes.values()) + len(reserved), seed=spec.seed, syllables=spec.syllables
    )
    names = [n for n in drawn if n not in reserved]
    # pseudo_words returns names sorted; shuffle so each split gets names from the whole range.
    random.Random(f"gumbel-demo/{spec.seed}/pools").shuffle(names)
    if spec.shared_pool:
        shared = tuple(names[: spec.shared_pool])
        return dict.fromkeys(SPLITS, shared)
    pools: dict[str, tuple[str, ...]] = {}
    start = 0
    for split in SPLITS:
        pools[split] = tuple(names[start : start + sizes[split]])
        start += sizes[split]
    return pools


def demo_vocabulary(spec: DemoSpec) -> list[str]:
    """Every word (pre-token) a word-level tokenizer needs for the demo data of ``spec``.

    The union over all splits of the names in the entity pools, the template words, the answer
    values and FiD's field words ("question", "title", "context", ":"), as the HF ``Whitespace``
    pre-tokenizer splits them, sorted. Built from the pools, not from generated records, so it is
    cheap and a superset of what the records use (tests check the coverage). Feed it to
    :func:`gumbel_rerank.demo.wordlevel.train_t5_tokenizer` / ``train_bert_tokenizer``.
    """
    words = set(_reserved_words())
    for pool in entity_pools(spec).values():
        words.update(pool)
    return sorted(words)


# --------------------------------------------------------------------------------------------
# Distractor mix


def distractor_counts(spec: DemoSpec) -> dict[str, int]:
    """Distractors of each kind per question: ``spec.distractor_mix`` weights apportioned to
    ``n_passages - 2 - len(spec.redundant)`` slots by largest remainder (ties go to the kind
    listed first)."""
    slots = spec.n_passages - 2 - len(spec.redundant)
    weights: dict[str, int] = {}
    for kind, weight in spec.distractor_mix:
        weights[kind] = weights.get(kind, 0) + weight
    total = sum(weights.values())
    if slots == 0 or total == 0:
        return {kind: 0 for kind in weights}
    quotas = {kind: slots * w / total for kind, w in weights.items()}
    counts = {kind: math.floor(q) for kind, q in quotas.items()}
    order = list(weights)
    rest = sorted(order, key=lambda k: (-(quotas[k] - counts[k]), order.index(k)))
    for kind in rest[: slots - sum(counts.values())]:
        counts[kind] += 1
    return counts


# --------------------------------------------------------------------------------------------
# One question


def _fact_text(subject: str, relation: str, obj: str, cue: str = "") -> str:
    """The passage text stating (subject, relation, obj); ``cue`` is an apposition after the
    subject ("bakomu , the mentor of nilo , was born ...")."""
    if cue:
        subject = f"{subject} , {cue} ,"
    if relation in LINKS:
        return LINKS[relation][1].format(s=subject, o=obj)
    return ATTRIBUTES[relation][1].format(s=subject, a=obj)


class _Question:
    """The facts of one question, kept consistent: each (subject, relation) stated once."""

    def __init__(
        self,
        rng: random.Random,
        people: Iterator[str],
        link: str,
        attr: str,
        cued: bool,
        redundant: Sequence[str] = (),
    ) -> None:
        self.rng = rng
        self.people = people
        self.link = link
        self.attr = attr
        self.entity = next(people)
        self.middle = next(people)
        self.answer = rng.choice(ATTRIBUTES[attr][2])
        self.facts: dict[tuple[str, str], str] = {}
        self.decks: dict[str, list[str]] = {}
        self.dangling: list[str] = []  # people named by link distractors, awaiting an attribute
        self.passages: list[dict] = []
        self._add(self.entity, link, self.middle, "bridge")
        cue = f"the {LINKS[link][0]} of {self.entity}" if cued else ""
        self._add(self.middle, attr, self.answer, "answer", cue)
        restated = {"bridge": (self.entity, LINKS[link][0], self.middle), "answer": (self.middle, attr, self.answer)}
        for fact in redundant:  # the same fact again, in other words (not a new fact)
            subject, noun, obj = restated[fact]
            self.passages.append(
                {
                    "title": subject,
                    "text": RESTATED.format(noun=noun, s=subject, o=obj),
                    "gold": True,
                    "role": REDUNDANT_FACTS[fact],
                }
            )

    def _add(self, subject: str, relation: str, obj: str, role: str, cue: str = "") -> None:
        if (subject, relation) in self.facts:  # a bug in a maker, never data-dependent
            raise AssertionError(f"{subject} {relation} stated twice")
        self.facts[(subject, relation)] = obj
        self.passages.append(
            {
                "title": subject,
                "text": _fact_text(subject, relation, obj, cue),
                "gold": role in ("bridge", "answer"),
                "role": role,
            }
        )

    def _value(self, attr: str) -> str:
        """The next value of ``attr`` from a shuffled deck without the answer."""
        deck = self.decks.get(attr)
        if not deck:
            deck = [v for v in ATTRIBUTES[attr][2] if v != self.answer]
            self.rng.shuffle(deck)
            self.decks[attr] = deck
        return deck.pop()

    def _free(self, subject: str, relations: Sequence[str], exclude: str) -> list[str]:
        return [r for r in relations if r != exclude and (subject, r) not in self.facts]

    def _make(self, kind: str) -> tuple[str, str, str] | None:
        """(subject, relation, object) of a ``kind`` distractor, or None if none can be made."""
        rng, attrs, links = self.rng, sorted(ATTRIBUTES), sorted(LINKS)
        if kind == "entity_trap":
            if (self.entity, self.attr) in self.facts:
                return None
            return self.entity, self.attr, self._value(self.attr)
        if kind == "entity_attribute":
            free = self._free(self.entity, attrs, self.attr)
            if not free:
                return None
            relation = rng.choice(free)
            return self.entity, relation, self._value(relation)
        if kind == "entity_link":
            free = self._free(self.entity, links, self.link)
            if not free:
                return None
            person = next(self.people)
            self.dangling.append(person)
            return self.entity, rng.choice(free), person
        if kind == "other_bridge":
            subject, person = next(self.people), next(self.people)
            self.dangling.append(person)
            return subject, self.link, person
        if kind == "linked_attribute":
            subject = self.dangling.pop(0) if self.dangling else next(self.people)
            return subject, self.attr, self._value(self.attr)
        if kind == "intermediate_attribute":
            free = self._free(self.middle, attrs, self.attr)
            if not free:
                return None
            relation = rng.choice(free)
            return self.middle, relation, self._value(relation)
        if kind == "same_attribute":
            return next(self.people), self.attr, self._value(self.attr)
        if kind == "unrelated":
            relation = rng.choice([r for r in attrs if r != self.attr])
            return next(self.people), relation, self._value(relation)
        raise ValueError(f"unknown distractor kind {kind!r}")

    def add_distractor(self, kind: str) -> None:
        fact = self._make(kind)
        if fact is None:
            kind, fact = "unrelated", self._make("unrelated")
        assert fact is not None
        self._add(*fact, role=f"distractor:{kind}")


def _question(
    spec: DemoSpec, split: str, index: int, pool: Sequence[str], counts: Mapping[str, int]
) -> dict:
    # Per-question generator (str seeds are hashed with SHA-512: stable across runs and
    # PYTHONHASHSEED), so a question does not depend on how many come before it.
    rng = random.Random(f"gumbel-demo/{spec.seed}/{split}/{index}")
    attr = rng.choice(sorted(ATTRIBUTES))
    link = rng.choice(sorted(LINKS))
    people = iter(rng.sample(list(pool), 2 * spec.n_passages))
    cued = rng.random() < spec.answer_cue
    q = _Question(rng, people, link, attr, cued, spec.redundant)
    for kind in _BUILD_ORDER:
        for _ in range(counts.get(kind, 0)):
            q.add_distractor(kind)
    qid = f"demo-{split}-{index}"
    ctxs = q.passages
    # Shuffle before BM25's stable sort: ties must not keep the construction order (bridge first).
    rng.shuffle(ctxs)
    for j, passage in enumerate(ctxs):
        passage["id"] = f"{qid}-{j}"
    noun = LINKS[link][0]
    chain = f"{q.middle} {q.answer}"
    return {
        "id": qid,
        "question": ATTRIBUTES[attr][0].format(x=f"the {noun} of {q.entity}"),
        "target": chain if spec.chain_target else q.answer,
        # what a reader curriculum can train on instead (train-reader's curriculum target:)
        "targets": {"answer": q.answer, "link": q.middle, "chain": chain},
        "answers": [q.answer],
        "ctxs": ctxs,
        "question_entity": q.entity,
        "bridge_entity": q.middle,
        "link": link,
        "attribute": attr,
        "answer_cued": cued,
    }


def _passage_tokens(passage: dict) -> list[str]:
    return word_tokens(f"{passage['title']} {passage['text']}")


def _order_by_bm25(records: list[dict], spec: DemoSpec) -> None:
    """Store each passage's BM25 score and sort ``ctxs`` by it, descending (in place)."""
    docs = [[_passage_tokens(p) for p in r["ctxs"]] for r in records]
    split_stats = None
    if spec.idf_scope == "split":
        split_stats = corpus_stats([d for question_docs in docs for d in question_docs])
    for record, question_docs in zip(records, docs, strict=True):
        scores = bm25_scores(
            word_tokens(record["question"]),
            question_docs,
            k1=spec.bm25_k1,
            b=spec.bm25_b,
            stats=split_stats,
        )
        for passage, score in zip(record["ctxs"], scores, strict=True):
            # Rounded so that the stored score is exactly what the order was decided on.
            passage["score"] = round(score, 6)
        record["ctxs"].sort(key=lambda p: -p["score"])


# --------------------------------------------------------------------------------------------
# Splits and files


def generate_split(spec: DemoSpec, split: str) -> list[dict]:
    """The questions of ``split`` ("train", "dev" or "test") in our format, BM25-ordered.

    Each record: ``id``, ``question``, ``target``, ``answers`` (the target alone), ``ctxs``
    (``id``, ``title``, ``text``, ``gold``, ``role``, ``score``), and, for analysis only,
    ``question_entity``, ``bridge_entity`` (the intermediate entity), ``link``, ``attribute``,
    ``answer_cued`` (the answer passage also names the question's entity).
    """
    _check_split(split)
    pool = entity_pools(spec)[split]
    counts = distractor_counts(spec)
    records = [_question(spec, split, i, pool, counts) for i in range(spec.n_questions(split))]
    _order_by_bm25(records, spec)
    return records


def generate_all(spec: DemoSpec) -> dict[str, list[dict]]:
    """All three splits."""
    return {split: generate_split(spec, split) for split in SPLITS}


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_demo_data(spec: DemoSpec, directory: str | os.PathLike) -> dict[str, Path]:
    """Write ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` into ``directory``; their paths.

    Each file is written to a temporary name in the same directory and renamed into place, so a
    reader of the directory never sees a half-written file.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split, records in generate_all(spec).items():
        path = out / f"{split}.jsonl"
        write_atomic(path, _jsonl(records))
        paths[split] = path
    return paths
