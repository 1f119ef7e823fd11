"""What a trained reranker puts in its top k on the demo data, per passage role: why one
objective's Evidence@k beats another's (dev questions only).

    python benchmarks/top_k_anatomy.py --dev runs/protocol-redundant/data/dev.jsonl \\
        LCE=runs/protocol-redundant/final/lce/seed-1/model ADist=runs/protocol-redundant/final/adist/seed-1/model

For each model and the first ``--questions`` dev questions (the protocol's in-loop dev set is
the first 200), the share of questions whose top ``--k`` holds: every fact (Evidence@k: a
statement of the bridge and the answer passage), the bridge (either statement), both
statements of a restated bridge, the answer passage, the wrong chain's attribute passage (on
uncued questions it reads like the answer to a pointwise reranker) and the trap; each on all
questions, cued and uncued. Writes a markdown table to ``--results`` (default: print only).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _results import publish

#: column -> test on the set of roles in a question's top k
COLUMNS = {
    "Evidence": lambda roles: bool(roles & {"bridge", "bridge:restated"}) and "answer" in roles,
    "bridge (either)": lambda roles: bool(roles & {"bridge", "bridge:restated"}),
    "both bridge statements": lambda roles: {"bridge", "bridge:restated"} <= roles,
    "answer": lambda roles: "answer" in roles,
    "wrong chain": lambda roles: "distractor:linked_attribute" in roles,
    "trap": lambda roles: "distractor:entity_trap" in roles,
}


def top_roles(model_dir: Path, records: list[dict], k: int, settings: dict) -> list[set[str]]:
    """The roles of each question's top-``k`` passages by ``model_dir``'s scores (ties: the
    incoming order first, as evaluation's stable sort)."""
    import torch

    from gumbel_rerank.rerankers import Reranker

    reranker = Reranker.from_pretrained(model_dir, **settings).eval()
    tops = []
    with torch.no_grad():
        for start in range(0, len(records), 16):
            chunk = records[start : start + 16]
            scores, valid = reranker.score([r["question"] for r in chunk], [r["ctxs"] for r in chunk])
            order = torch.sort(scores.masked_fill(~valid, float("-inf")), dim=1, descending=True, stable=True).indices
            for row, record in enumerate(chunk):
                tops.append({record["ctxs"][int(i)]["role"] for i in order[row, :k]})
    return tops


def shares(tops: list[set[str]], records: list[dict]) -> dict[str, str]:
    """Per column: the share on all questions, then on cued / uncued ones."""
    out = {}
    for name, test in COLUMNS.items():
        parts = []
        for group in (None, True, False):
            picked = [t for t, r in zip(tops, records, strict=True) if group is None or bool(r["answer_cued"]) == group]
            parts.append(f"{sum(map(test, picked)) / len(picked):.3f}" if picked else "–")
        out[name] = " / ".join(parts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="NAME=MODEL_DIR")
    parser.add_argument("--dev", type=Path, required=True, help="demo dev questions (JSONL with roles)")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64, help="reranker max_length (the protocol recipe's)")
    parser.add_argument("--results", default="", help="markdown file to write ('' = print only)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gumbel_rerank.demo.reading_check import read_demo_records

    records = read_demo_records(args.dev, limit=args.questions)
    models = {}
    for item in args.models:
        name, sep, path = item.partition("=")
        if not sep or not (Path(path) / "config.json").is_file():
            parser.error(f"{item!r}: give NAME=MODEL_DIR, a directory holding a saved reranker")
        models[name] = Path(path)
    settings = {"max_length": args.max_length, "autocast": "auto"}
    rows = {name: shares(top_roles(path, records, args.k, settings), records) for name, path in models.items()}
    cued = sum(bool(r["answer_cued"]) for r in records)
    lines = [
        f"# What each reranker puts in its top {args.k} (dev)",
        "",
        f"Command: `python benchmarks/top_k_anatomy.py --dev {args.dev} --questions {args.questions} --k {args.k} "
        + " ".join(args.models) + "`",
        f"Date: {time.strftime('%Y-%m-%d')}. {len(records)} dev questions ({cued} cued, {len(records) - cued} uncued); "
        f"each cell: share of all / cued / uncued questions whose top {args.k} holds it.",
        "",
        "| model | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
        *[f"| {name} | " + " | ".join(row.values()) + " |" for name, row in rows.items()],
    ]
    publish(lines, args.results)


if __name__ == "__main__":
    main()
