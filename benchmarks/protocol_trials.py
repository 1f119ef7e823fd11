"""The tuning trials of one or more `compare --tune` states, as one markdown table.

The README's trial table covers both demo data settings; each protocol's own `protocol.md`
has its setting's trials only, and an unfinished protocol has no `protocol.md` at all. This
prints the table from the states (``protocol.json``, finished or in progress), so no number is
copied by hand:

    .venv/bin/python benchmarks/protocol_trials.py \
        chain=benchmarks/results/protocol/in_progress/chain_protocol.json \
        redundant=benchmarks/results/protocol/in_progress/redundant_protocol.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gumbel_rerank.evaluation.report import markdown_table
from gumbel_rerank.training.protocol import trial_rows


def trials_table(states: dict[str, dict]) -> str:
    """One row per objective and setting (objectives in their protocol order), a column per trial."""
    per_setting = {name: trial_rows(state, f", {name}") for name, state in states.items()}
    labels = list(dict.fromkeys(label for state in states.values() for label in state["objectives"]))
    rows = {}
    for label in labels:
        for name in states:
            row = per_setting[name].get(f"{label}, {name}")
            if row is not None:
                rows[f"{label}, {name}"] = row
    trials = max(state["budget"]["trials"] for state in states.values())
    return markdown_table(rows, [f"trial {i + 1}" for i in range(trials)], label="objective")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("states", nargs="+", metavar="SETTING=PROTOCOL_JSON")
    args = parser.parse_args()
    states = {}
    for item in args.states:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: give SETTING=PROTOCOL_JSON")
        states[name] = json.loads(Path(path).read_text())
    print(trials_table(states))


if __name__ == "__main__":
    main()
