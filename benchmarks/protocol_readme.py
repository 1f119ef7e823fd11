"""The README's protocol tables, taken from finished protocol reports, never copied by hand.

Each ``compare --tune`` run writes ``protocol.md`` with a quality table (``| ranking |``) and a
compute table (``| objective |``, after the line starting "Compute"). This puts each setting's
quality table between the README's ``<!-- protocol-results:SETTING -->`` markers and one compute
table of every setting (a ``setting`` column added) between ``<!-- protocol-compute -->``, with
objectives by their display names and the incoming order named as BM25's:

    .venv/bin/python benchmarks/protocol_readme.py \\
        chain=benchmarks/results/protocol/chain_protocol.md \\
        redundant=benchmarks/results/protocol/redundant_protocol.md --readme README.md

Without ``--readme`` the tables are printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _results import replace_marked

from gumbel_rerank.demo.command import OBJECTIVE_LABELS

ROW_NAMES = {**OBJECTIVE_LABELS, "incoming order": "incoming order (BM25)"}


def tables(path: Path) -> list[list[str]]:
    """Every markdown table of ``path`` in order, each as its lines."""
    found: list[list[str]] = []
    previous = ""
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                found.append([])
            found[-1].append(line)
        previous = line
    return found


def cells(line: str) -> list[str]:
    """The cells of one table line, stripped."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def row_line(values: list[str]) -> str:
    return "| " + " | ".join(values) + " |"


def renamed(lines: list[str]) -> list[str]:
    """The table with each body row's first cell by its display name."""
    out = lines[:2]
    for line in lines[2:]:
        values = cells(line)
        out.append(row_line([ROW_NAMES.get(values[0], values[0]), *values[1:]]))
    return out


def report_tables(path: Path) -> tuple[list[str], list[str]]:
    """(quality table, compute table) of one protocol report; SystemExit naming the file when
    either is missing (a report of an unfinished protocol, or not a protocol report)."""
    by_header: dict[str, list[str]] = {}
    for table in tables(path):  # the first of each: the trial table after it is also "| objective |"
        by_header.setdefault(cells(table[0])[0], table)
    if "ranking" not in by_header or "objective" not in by_header:
        raise SystemExit(f"{path}: no '| ranking |' quality table and '| objective |' compute table (not a finished protocol report?)")
    return renamed(by_header["ranking"]), renamed(by_header["objective"])


def compute_table(computes: dict[str, list[str]]) -> list[str]:
    """One compute table of every setting: a ``setting`` column after the objective's name;
    the settings' columns must agree."""
    headers = {name: cells(lines[0]) for name, lines in computes.items()}
    first = next(iter(headers.values()))
    for name, header in headers.items():
        if header != first:
            raise SystemExit(f"setting {name}: compute columns {header} differ from {first}")
    out = [row_line([first[0], "setting", *first[1:]]), "|---|---|" + "---:|" * (len(first) - 1)]
    for name, lines in computes.items():
        out += [row_line([values[0], name, *values[1:]]) for values in map(cells, lines[2:])]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", metavar="SETTING=PROTOCOL_MD")
    parser.add_argument("--readme", type=Path, help="replace the tables between this file's markers")
    args = parser.parse_args()
    quality, compute = {}, {}
    for item in args.reports:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: give SETTING=PROTOCOL_MD")
        quality[name], compute[name] = report_tables(Path(path))
    merged = "\n".join(compute_table(compute))
    if args.readme is None:
        for name, lines in quality.items():
            print(f"{name}:\n\n" + "\n".join(lines) + "\n")
        print(merged)
        return
    for name, lines in quality.items():
        replace_marked(args.readme, f"protocol-results:{name}", "\n".join(lines))
    replace_marked(args.readme, "protocol-compute", merged)


if __name__ == "__main__":
    main()
