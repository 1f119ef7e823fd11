"""Does a demo reader read? EM under controlled contexts, split by whether the bridge is needed.

A reranker trained from a reader's loss can only find what the reader uses, so the demo checks
the reader before it trains anything. Contexts, built from the passages' ``role`` fields of the
demo data (``gumbel_rerank.demo.dataset``):

* ``all``: every candidate;
* ``all_but_bridge``: every candidate except the bridge: the test of bridge use. With the
  bridge gone, the answer passage and the wrong chain (a ``linked_attribute`` distractor) look
  alike, so a reader that follows the bridge drops to about a coin flip on uncued questions;
* ``gold``: bridge and answer passage;
* ``answer``: the answer passage alone (the value can be copied; no choice is left);
* ``bridge``: the bridge alone (the answer is not in it: EM measures guessing).

Data with a restated bridge (``DemoSpec.redundant``: role ``bridge:restated``) has
:data:`REDUNDANT_CONTEXTS`: ``all_but_bridge`` then keeps the restatement, so it measures
whether the other statement covers; ``all_but_restated_bridge`` drops only the restatement;
``all_but_any_bridge`` drops both; ``hard_restated`` is ``hard`` with the bridge given only by
its restatement (``hard_but_any_bridge``: by neither).

Each EM is reported over all questions, the cued ones (the answer passage names the question's
entity, so the bridge is redundant) and the uncued ones (only the bridge tells the answer passage
from the wrong chain). The reader "uses the bridge" when uncued EM with ``all`` is clearly above
uncued EM with ``all_but_bridge``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from gumbel_rerank.data.answers import exact_match
from gumbel_rerank.reader.base import Reader

CONTEXTS = ("all", "all_but_bridge", "gold", "answer", "bridge")
#: The hard contexts of a chain reader's check: the passages that compete for the answer
#: (the trap, the question entity's other link and the wrong chain it starts) with and without
#: the bridge; and the 3-passage contexts {bridge, answer, wrong chain} with and without it.
HARD_ROLES = ("bridge", "answer", "distractor:entity_link", "distractor:linked_attribute", "distractor:entity_trap")
TRIPLE_ROLES = ("bridge", "answer", "distractor:linked_attribute")
CHAIN_CONTEXTS = ("hard", "hard_but_bridge", "triple", "triple_but_bridge", *CONTEXTS)
#: The redundant-evidence reader's check: each copy of each fact alone and neither.
REDUNDANT_CONTEXTS = (
    "all",
    "all_but_bridge",
    "all_but_restated_bridge",
    "all_but_any_bridge",
    "hard",
    "hard_restated",
    "hard_but_any_bridge",
)
SUBSETS = ("all", "cued", "uncued")
_RESTATED = {"bridge": "bridge:restated"}
_HARD_RESTATED = tuple(_RESTATED.get(role, role) for role in HARD_ROLES)


def read_demo_records(path: str | Path, limit: int | None = None) -> list[dict]:
    """Demo-data records (JSONL) with the fields the check needs; errors name file and line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if limit is not None and len(records) >= limit:
                break
            record = json.loads(line)
            roles = [c.get("role") for c in record.get("ctxs", [])]
            if roles.count("bridge") != 1 or roles.count("answer") != 1 or "answer_cued" not in record:
                raise ValueError(
                    f"{path}:{number}: ctxs[].role / answer_cued: not demo data (needs exactly one "
                    "'bridge' and one 'answer' passage and an answer_cued flag)"
                )
            records.append(record)
    return records


def context_passages(record: dict, context: str) -> list[dict]:
    """The passages (title, text) of ``record`` that ``context`` keeps, in candidate order."""
    keep = {
        "all": lambda role: True,
        "all_but_bridge": lambda role: role != "bridge",
        "gold": lambda role: role in ("bridge", "answer"),
        "answer": lambda role: role == "answer",
        "bridge": lambda role: role == "bridge",
        "hard": lambda role: role in HARD_ROLES,
        "hard_but_bridge": lambda role: role in HARD_ROLES and role != "bridge",
        "triple": lambda role: role in TRIPLE_ROLES,
        "triple_but_bridge": lambda role: role in TRIPLE_ROLES and role != "bridge",
        "all_but_restated_bridge": lambda role: role != "bridge:restated",
        "all_but_any_bridge": lambda role: role not in ("bridge", "bridge:restated"),
        "hard_restated": lambda role: role in _HARD_RESTATED,
        "hard_but_any_bridge": lambda role: role in HARD_ROLES + _HARD_RESTATED and not role.startswith("bridge"),
    }[context]
    return [{"title": c["title"], "text": c["text"]} for c in record["ctxs"] if keep(c["role"])]


@torch.no_grad()
def reader_answers(
    reader: Reader, questions: Sequence[str], contexts: Sequence[list[dict]], batch_size: int = 64
) -> list[str]:
    """Greedy answers of ``reader`` for each question from its given passages."""
    answers: list[str] = []
    for start in range(0, len(questions), batch_size):
        tokens = reader.tokenize_passages(
            list(questions[start : start + batch_size]), list(contexts[start : start + batch_size])
        )
        answers += reader.generate(reader.encode(tokens))
    return answers


def reading_check(
    reader: Reader, records: Sequence[dict], batch_size: int = 64, contexts: Sequence[str] = CONTEXTS
) -> dict[str, dict[str, float]]:
    """EM per context (``contexts``: :data:`CONTEXTS`, or :data:`CHAIN_CONTEXTS` for a chain
    reader) and subset (:data:`SUBSETS`); also ``n`` per subset.

    Returns ``{context: {subset: em}}`` plus ``{"n": {subset: count}}``.
    """
    questions = [r["question"] for r in records]
    cued = [bool(r["answer_cued"]) for r in records]
    out: dict[str, dict[str, float]] = {
        "n": {"all": len(records), "cued": sum(cued), "uncued": len(records) - sum(cued)}
    }
    for context in contexts:
        passages = [context_passages(r, context) for r in records]
        answers = reader_answers(reader, questions, passages, batch_size)
        hits = [exact_match(a, r["answers"]) for a, r in zip(answers, records, strict=True)]
        row = {}
        for subset in SUBSETS:
            chosen = [h for h, c in zip(hits, cued, strict=True) if subset == "all" or c == (subset == "cued")]
            row[subset] = sum(chosen) / len(chosen) if chosen else float("nan")
        out[context] = row
    return out


def format_reading_check(result: dict[str, dict[str, float]]) -> str:
    """A markdown table: contexts as rows, subsets as columns."""
    n = result["n"]
    head = "| context | " + " | ".join(f"EM {s} (n={n[s]})" for s in SUBSETS) + " |"
    lines = [head, "|" + "---|" * (len(SUBSETS) + 1)]
    for context in (c for c in result if c != "n"):
        lines.append(f"| {context} | " + " | ".join(f"{result[context][s]:.3f}" for s in SUBSETS) + " |")
    return "\n".join(lines)


def uses_bridge(result: dict[str, dict[str, float]], margin: float = 0.1) -> bool:
    """Uncued EM with all passages at least ``margin`` above it without the bridge."""
    return result["all"]["uncued"] >= result["all_but_bridge"]["uncued"] + margin
