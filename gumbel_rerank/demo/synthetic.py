"""Deterministic synthetic QA data in our question format (tests, smoke runs, the demo).

``lookup_questions``: single-hop relation look-up. Exactly one candidate passage answers the
question; the distractors share its entity or its form but state other relations. A reader that
copies the value from the passage it reads gives a sharp signal: the loss is low only when the
mask selects the answer passage, so a reranker trained from the reader alone must learn which
passage answers what is asked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SYLLABLES = ["ba", "ko", "ri", "mu", "sa", "te", "lo", "ni", "du", "ve", "ga", "pi", "zo", "ha", "fe", "ru"]
# relation -> (question template, passage template, answer vocabulary)
RELATIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "color": (
        "which color does {e} like ?",
        "{e} likes the color {a} .",
        ("red", "blue", "green", "amber", "violet", "silver", "coral", "olive"),
    ),
    "city": (
        "which city does {e} live in ?",
        "{e} lives in the city {a} .",
        ("paris", "lagos", "lima", "oslo", "quito", "hanoi", "tunis", "perth"),
    ),
    "animal": (
        "which animal does {e} keep ?",
        "{e} keeps the animal {a} .",
        ("otter", "heron", "lynx", "gecko", "bison", "koala", "viper", "moose"),
    ),
    "food": (
        "which food does {e} cook ?",
        "{e} cooks the food {a} .",
        ("rice", "bread", "soup", "curry", "pasta", "salad", "stew", "tacos"),
    ),
    "sport": (
        "which sport does {e} play ?",
        "{e} plays the sport {a} .",
        ("tennis", "rugby", "golf", "polo", "judo", "squash", "hockey", "cricket"),
    ),
}


def pseudo_words(count: int, seed: int, syllables: int = 2) -> list[str]:
    """``count`` distinct pronounceable names, the same for the same seed."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(syllables)))
    return sorted(names)


@dataclass(frozen=True)
class LookupSpec:
    """Size of a look-up dataset; ``seed`` fixes everything. ``n_passages`` <= len(RELATIONS)."""

    n_questions: int = 200
    n_passages: int = 5
    n_entities: int = 40
    seed: int = 0


def lookup_questions(spec: LookupSpec, entities: list[str] | None = None) -> list[dict]:
    """Questions in the format of method.md section 7, gold flag on the answer passage.

    A question asks for one relation (color, city, ...) of one entity. The answer passage
    states that relation of that entity; each distractor states a different relation of another
    entity, so it never holds an answer of the asked kind. (Distractors about the question's own
    entity make a surface cue that points the wrong way; a reranker that takes it early saturates
    the mask and stops learning: measured, R@1 stuck at 0.4.) Attribute values
    are drawn afresh for every question (nothing can be memorised from the question), and
    passages are shuffled (position tells nothing). The reranker has to learn which passage
    answers what is asked; the reader has to copy the value from the passage it reads.
    """
    if not 2 <= spec.n_passages <= len(RELATIONS):
        raise ValueError(f"n_passages must be between 2 and {len(RELATIONS)}, got {spec.n_passages}")
    rng = random.Random(spec.seed)
    entities = entities or pseudo_words(spec.n_entities, seed=1234)
    records = []
    for qid in range(spec.n_questions):
        asked, *other_relations = rng.sample(sorted(RELATIONS), spec.n_passages)
        entity, *subjects = rng.sample(entities, spec.n_passages)
        question_t, passage_t, values = RELATIONS[asked]
        answer = rng.choice(values)
        ctxs = [{"title": entity, "text": passage_t.format(e=entity, a=answer), "gold": True}]
        for relation, subject in zip(other_relations, subjects, strict=True):
            _, template, vocab = RELATIONS[relation]
            ctxs.append({"title": subject, "text": template.format(e=subject, a=rng.choice(vocab)), "gold": False})
        rng.shuffle(ctxs)
        records.append(
            {
                "id": f"lookup-{spec.seed}-{qid}",
                "question": question_t.format(e=entity),
                "target": answer,
                "answers": [answer],
                "ctxs": ctxs,
            }
        )
    return records


def vocabulary_text(records: list[dict]) -> list[str]:
    """Every string a tokenizer for these records must cover, plus the reader's field words."""
    texts = ["question: title: context:"]
    for record in records:
        texts.append(record["question"])
        texts.extend(record["answers"])
        texts.extend(f"{c['title']} {c['text']}" for c in record["ctxs"])
    return texts
