"""Deterministic synthetic QA data in our question format (tests, smoke runs, the demo).

``lookup_questions``: single-hop attribute look-up. Each question names one entity; exactly one
candidate passage states that entity's attribute (the answer); the distractors state other
entities' attributes, share the question's words, and never hold the answer. A reader that
copies the attribute from the passage it reads gives a sharp signal: the loss is low only when
the mask selects the answer passage, so a reranker trained from the reader alone must learn to
match the question's entity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SYLLABLES = ["ba", "ko", "ri", "mu", "sa", "te", "lo", "ni", "du", "ve", "ga", "pi", "zo", "ha", "fe", "ru"]
ATTRIBUTES = ["red", "blue", "green", "amber", "violet", "silver", "coral", "olive", "teal", "ivory", "crimson", "indigo"]


def pseudo_words(count: int, seed: int, syllables: int = 2) -> list[str]:
    """``count`` distinct pronounceable names, the same for the same seed."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(syllables)))
    return sorted(names)


@dataclass(frozen=True)
class LookupSpec:
    """Size of a look-up dataset; ``seed`` fixes everything."""

    n_questions: int = 200
    n_passages: int = 5
    n_entities: int = 40
    seed: int = 0


def lookup_questions(spec: LookupSpec, entities: list[str] | None = None) -> list[dict]:
    """Questions in the format of method.md section 7, gold flag on the answer passage.

    Attributes are drawn afresh for every question, so no entity has a fixed answer a reader
    could memorise from the question: it has to read the passage. Distractors carry other
    attributes than the answer. Passages are shuffled, so position tells nothing.
    """
    rng = random.Random(spec.seed)
    entities = entities or pseudo_words(spec.n_entities, seed=1234)
    records = []
    for qid in range(spec.n_questions):
        entity, *distractors = rng.sample(entities, spec.n_passages)
        answer, *others = rng.sample(ATTRIBUTES, spec.n_passages)
        ctxs = [{"title": entity, "text": f"{entity} likes the color {answer} .", "gold": True}]
        ctxs += [
            {"title": d, "text": f"{d} likes the color {color} .", "gold": False}
            for d, color in zip(distractors, others, strict=True)
        ]
        rng.shuffle(ctxs)
        records.append(
            {
                "id": f"lookup-{spec.seed}-{qid}",
                "question": f"which color does {entity} like ?",
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
