"""Summarise a `gumbel-rerank compare` run on the chain-reader demo data (issue 12's exploration
study): per ranking AllGold@k, bridge R@k (indirect gold), answer R@k (direct gold), EM@k, and
per G-Rerank run the exploration diagnostics of its metrics log (how often the k samples reached
the bridge, score spread, mask entropy), first and last logged values.

    python benchmarks/demo_v2_exploration.py runs/v2/explore [k]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summary(out: Path, k: int) -> str:
    """A markdown table of the compare run in ``out``."""
    lines = [
        f"| ranking | AllGold@{k} | bridge R@{k} | answer R@{k} | EM@{k} | sampled bridge first/last "
        "| score spread first/last | mask entropy first/last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    settings = {}
    for run in sorted((out / "runs").glob("*")):
        settings[run.name] = json.loads((run / "objective.json").read_text()).get("settings")
    for report_dir in sorted((out / "eval").glob("*")):
        report = json.loads((report_dir / "report.json").read_text())
        rows = [("incoming order (BM25)", "retriever")] if report_dir.name == "untrained_reranker" else []
        rows.append((report_dir.name, "reranker"))
        for label, ranking in rows:
            cells = [
                report["rankings"][ranking][f"AllGold@{k}"],
                report["indirect"][ranking][f"R@{k}"],
                report["direct"][ranking][f"R@{k}"],
                report["end_to_end"][ranking][f"EM@{k}"],
            ]
            extra = ["", "", ""]
            log = out / "runs" / report_dir.name / "metrics.jsonl"
            if ranking == "reranker" and log.is_file():
                records = [json.loads(x) for x in log.read_text().splitlines() if '"loss"' in x]
                for i, key in enumerate(("sampled_gold_indirect", "score_spread", "mask_entropy")):
                    values = [r[key] for r in records if key in r]
                    if values:
                        extra[i] = f"{values[0]:.2f} / {values[-1]:.2f}"
            name = label if label not in settings else f"{label} {json.dumps(settings[label], separators=(',', ':'))}"
            lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " | " + " | ".join(extra) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3))
