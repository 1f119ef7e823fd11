"""The tuning trials of one or more `compare --tune` states, as one markdown table.

The README's trial table covers both demo data settings; each protocol's own `protocol.md`
has its setting's trials only, and an unfinished protocol has no `protocol.md` at all. This
prints the table from the states (``protocol.json``, finished or in progress), so no number is
copied by hand:

    .venv/bin/python benchmarks/protocol_trials.py \
        chain=benchmarks/results/protocol/chain_protocol.json \
        redundant=benchmarks/results/protocol/redundant_protocol.json

``--readme README.md`` writes the table (objectives by their display names) in place of the one
between the README's ``<!-- trial-table -->`` and ``<!-- /trial-table -->`` markers, leaving
every other line as it was.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import replace_marked

from gumbel_rerank.demo.command import OBJECTIVE_LABELS
from gumbel_rerank.evaluation.report import markdown_table
from gumbel_rerank.training.protocol import trial_rows


def trials_table(states: dict[str, dict], names: dict[str, str] | None = None) -> str:
    """One row per objective and setting (objectives in their protocol order), a column per
    trial; ``names`` maps an objective's label to the name a row shows."""
    per_setting = {name: trial_rows(state, f", {name}") for name, state in states.items()}
    labels = list(dict.fromkeys(label for state in states.values() for label in state["objectives"]))
    rows = {}
    for label in labels:
        for name in states:
            row = per_setting[name].get(f"{label}, {name}")
            if row is not None:
                rows[f"{(names or {}).get(label, label)}, {name}"] = row
    trials = max(state["budget"]["trials"] for state in states.values())
    return markdown_table(rows, [f"trial {i + 1}" for i in range(trials)], label="objective")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("states", nargs="+", metavar="SETTING=PROTOCOL_JSON")
    parser.add_argument("--readme", type=Path, help="replace the table between this file's markers")
    args = parser.parse_args()
    states = {}
    for item in args.states:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: give SETTING=PROTOCOL_JSON")
        states[name] = json.loads(Path(path).read_text())
    if args.readme is None:
        print(trials_table(states))
    else:
        replace_marked(args.readme, "trial-table", trials_table(states, OBJECTIVE_LABELS))


if __name__ == "__main__":
    main()
