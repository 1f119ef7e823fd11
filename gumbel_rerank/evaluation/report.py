"""Evaluation reports on disk: ``report.json``, ``report.md`` and PNG plots.

:func:`write_report` takes the dict of :func:`gumbel_rerank.evaluation.end_to_end.evaluate` and writes

* ``report.json``: the dict itself (metric values as fractions in [0, 1]);
* ``report.md``: markdown tables, one row per ranking (reranker, retriever), numbers in percent:
  Recall@k and MRR, nDCG@k, all gold passages in the top k; the same for the indirectly
  relevant subset; EM/F1 of the reader's answer from each ranking's top k;
* ``recall_at_k.png``: Recall@k against k, one solid line per ranking, the indirect subset
  dashed in the same colour;
* ``training_curves.png`` (when a training ``metrics.jsonl`` is given): train losses (and dev
  losses, dashed) against step, and the dev metrics against step.

Every file is written to a temporary name in the same folder and renamed into place, so a reader
of the folder never sees half a file. Plots use matplotlib's object API (``Figure``, Agg
canvas), never pyplot: no global backend switch, no GUI, safe in a headless job.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gumbel_rerank.durable import write_atomic, write_atomic_group

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "format_percent",
    "markdown_table",
    "new_figure",
    "plot_recall_at_k",
    "plot_training_curves",
    "png_bytes",
    "read_metrics_log",
    "render_markdown",
    "write_report",
]

MISSING = "–"
# Counters that the in-loop evaluator logs next to the metrics; not worth a curve.
_COUNT_KEYS = frozenset({"questions", "questions_without_gold"})


# --------------------------------------------------------------------------------------------
# Markdown


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _default_format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_percent(value: float) -> str:
    """A fraction in [0, 1] as a percentage with one decimal: 0.8333 -> "83.3"."""
    return f"{100.0 * value:.1f}"


def _cell(text: str) -> str:
    # A "|" inside a cell would end it; newlines would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Mapping[str, Mapping[str, Any]],
    columns: Sequence[str],
    *,
    label: str = "",
    fmt: Callable[[Any], str] | None = None,
) -> str:
    """A GitHub markdown table: one row per ``rows`` key, one column per name in ``columns``.

    Args:
        rows: row label -> {column: value}. A missing, None or NaN value shows as "–".
        columns: column names, in order (also the header).
        label: header of the first (row label) column.
        fmt: value -> cell text; default: floats with 4 decimals, anything else ``str``.

    Returns:
        The table, lines joined by "\\n", without a trailing newline.
    """
    fmt = fmt or _default_format
    header = [label, *columns]
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|",
    ]
    for name, values in rows.items():
        cells = [_cell(str(name))]
        for column in columns:
            value = values.get(column)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append(MISSING)
            else:
                cells.append(_cell(fmt(value)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _columns(rows: Mapping[str, Mapping[str, Any]], prefix: str) -> list[str]:
    """Columns named ``prefix@k`` (or exactly ``prefix``) in the rows, sorted by k."""
    found: set[str] = set()
    for values in rows.values():
        found.update(c for c in values if c == prefix or c.startswith(f"{prefix}@"))

    def cut(column: str) -> int:
        _, _, k = column.partition("@")
        return int(k) if k.isdigit() else 0

    return sorted(found, key=cut)


def _ranking_tables(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not any(rows.values()):
        return []
    return [
        "Recall@k and MRR:\n\n"
        + markdown_table(
            rows, _columns(rows, "R") + _columns(rows, "MRR"), label="ranking", fmt=format_percent
        ),
        "nDCG@k:\n\n"
        + markdown_table(rows, _columns(rows, "nDCG"), label="ranking", fmt=format_percent),
        "All gold passages in the top k:\n\n"
        + markdown_table(rows, _columns(rows, "AllGold"), label="ranking", fmt=format_percent),
    ]


def _ranking_rows(section: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {name: values for name, values in section.items() if isinstance(values, Mapping)}


def render_markdown(report: Mapping[str, Any]) -> str:
    """The markdown text of ``report.md`` for an :func:`~gumbel_rerank.evaluation.end_to_end.evaluate` dict."""
    n = report.get("questions", 0)
    with_gold = report.get("questions_with_gold", n - report.get("questions_without_gold", 0))
    config = report.get("config", {})
    parts = [
        "# Evaluation report",
        f"{n} questions; {with_gold} with at least one gold passage among the candidates, "
        f"{report.get('questions_without_gold', 0)} without (counted, excluded from the ranking "
        "metrics). Numbers are percentages. Ties between reranker scores: "
        f"{config.get('tie_breaking', 'n/a')}.",
        "## Ranking: gold passages",
    ]
    rankings = _ranking_rows(report.get("rankings", {}))
    parts += _ranking_tables(rankings) or ["No question has a gold passage."]

    for key, title, which in (
        ("indirect", "indirectly relevant gold passages (without the answer)", "does not contain"),
        ("direct", "directly relevant gold passages (with the answer)", "contains"),
    ):
        section = report.get(key, {})
        parts.append(f"## Ranking: {title}")
        tables = _ranking_tables(_ranking_rows(section))
        if tables:
            parts.append(
                f"{section.get('questions', 0)} questions have a gold passage that {which} "
                "the answer; those passages are the relevant set."
            )
            parts += tables
        else:
            parts.append(f"No question has a gold passage that {which} the answer.")

    if "end_to_end" in report:
        rows = report["end_to_end"]
        em_ks = sorted({int(c.partition("@")[2]) for v in rows.values() for c in v})
        columns = [name for k in em_ks for name in (f"EM@{k}", f"F1@{k}")]
        parts.append("## End to end: reader's greedy answer from the top k")
        parts.append(
            "EM / F1 over all questions (SQuAD normalisation, best gold answer); the reader "
            "reads the reranker's hard top k or the retriever's first k passages."
        )
        parts.append(markdown_table(rows, columns, label="ranking", fmt=format_percent))

    if config:
        parts.append("## Configuration")
        parts.append("\n".join(f"- {key}: {value}" for key, value in config.items()))
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Files


def _json_safe(value: Any) -> Any:
    """NaN / inf become None (strict JSON has no such numbers); tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def png_bytes(figure: Figure) -> bytes:
    """The PNG encoding (120 dpi) of ``figure``, to be written atomically by the caller."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def new_figure(width: float, height: float) -> Figure:
    """An empty matplotlib ``Figure`` of ``width`` x ``height`` inches on its own Agg canvas.

    Uses the object API, never pyplot: no global backend switch, no GUI, safe in a headless job
    and in threads; ``layout="constrained"`` keeps labels inside the image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself; no pyplot, no global backend
    return figure


def plot_grouped_bars(
    table: Mapping[str, Mapping[str, float]], path: Path, ylabel: str = "", ylim: tuple[float, float] | None = (0, 1)
) -> Path:
    """A grouped bar chart of ``table`` (row label -> {column: value}): one group per column,
    one bar per row, written atomically as a PNG at ``path``. Missing values are left out."""
    columns = list(next(iter(table.values())))
    figure = new_figure(max(8.0, 1.2 * len(columns)), 4.0)
    ax = figure.subplots()
    width = 0.8 / len(table)
    for i, (label, row) in enumerate(table.items()):
        xs = [j + (i - (len(table) - 1) / 2) * width for j in range(len(columns))]
        values = [row.get(c) for c in columns]
        kept = [(x, v) for x, v in zip(xs, values, strict=True) if _is_number(v) and not math.isnan(v)]
        ax.bar([x for x, _ in kept], [v for _, v in kept], width, label=label)
    ax.set_xticks(range(len(columns)), columns)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    write_atomic(path, png_bytes(figure))
    return path


def plot_recall_at_k(report: Mapping[str, Any], path: Path) -> Path:
    """Write ``path`` (PNG, atomically): :func:`recall_at_k_png` of ``report``."""
    write_atomic(path, recall_at_k_png(report))
    return path


def recall_at_k_png(report: Mapping[str, Any]) -> bytes:
    """PNG bytes: Recall@k against k per ranking of ``report`` (an
    :func:`~gumbel_rerank.evaluation.end_to_end.evaluate` dict); indirect subset dashed."""
    figure = new_figure(6.0, 4.0)
    ax = figure.add_subplot()
    all_ks: set[int] = set()
    styles = (("rankings", "-", ""), ("indirect", "--", " (indirect)"))
    colours: dict[str, str] = {}  # one colour per ranking, shared by its indirect line
    for section, style, suffix in styles:
        for name, row in _ranking_rows(report.get(section, {})).items():
            points = sorted((int(c[2:]), v) for c, v in row.items() if c.startswith("R@"))
            if not points:
                continue
            colour = colours.setdefault(name, f"C{len(colours)}")
            ks, values = zip(*points, strict=True)
            ax.plot(ks, [100 * v for v in values], style, marker="o", color=colour,
                    label=f"{name}{suffix}")  # fmt: skip
            all_ks.update(ks)
    if all_ks:
        # Log scale (k = 1, 2, 5, 10, 20 spread evenly), ticks exactly at the evaluated k; the
        # ticks must be set after the scale, which replaces the locator.
        ax.set_xscale("log")
        ax.minorticks_off()
        ticks = sorted(all_ks)
        ax.set_xticks(ticks, [str(k) for k in ticks])
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no question has a gold passage", ha="center", va="center")
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k (%)")
    ax.set_ylim(0, 102)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"Recall@k ({report.get('questions_with_gold', '?')} questions with gold)")
    return png_bytes(figure)


def read_metrics_log(path: Path) -> list[dict[str, Any]]:
    """Records of a training ``metrics.jsonl`` (``{"step": s, ...}`` per line).

    Lines that are not JSON objects with a numeric ``step`` (e.g. a line cut by a crash) are
    skipped. Raises FileNotFoundError when the file is missing.
    """
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and _is_number(record.get("step")):
            records.append(record)
    return records


def plot_training_curves(metrics_log: Path, path: Path) -> Path:
    """Write ``path`` (PNG, atomically): :func:`training_curves_png` of ``metrics_log``."""
    write_atomic(path, training_curves_png(metrics_log))
    return path


def training_curves_png(metrics_log: Path) -> bytes:
    """PNG bytes: losses (left) and dev metrics (right) of a training run by step.

    Left: every key containing "loss" (train solid; ``dev/...loss...`` dashed). Right: the other
    ``dev/`` keys (R@k, MRR, nDCG@k, ...; counters excluded).
    """
    records = read_metrics_log(metrics_log)
    series: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key == "step" or not _is_number(value) or not math.isfinite(value):
                continue
            series.setdefault(key, []).append((record["step"], value))
    losses = sorted(k for k in series if "loss" in k)
    dev = sorted(
        k
        for k in series
        if k.startswith("dev/") and "loss" not in k and k.removeprefix("dev/") not in _COUNT_KEYS
    )
    figure = new_figure(11.0, 4.0)
    left, right = figure.subplots(1, 2)
    for ax, keys, title in ((left, losses, "losses"), (right, dev, "dev metrics")):
        for key in keys:
            steps, values = zip(*sorted(series[key]), strict=True)
            style = "--" if key.startswith("dev/") and ax is left else "-"
            ax.plot(steps, values, style, marker="." if len(steps) < 50 else None, label=key)
        if keys:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {title} in the log", ha="center", va="center")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    figure.suptitle(str(metrics_log))
    return png_bytes(figure)


def write_report(
    report: Mapping[str, Any], out_dir: Path, metrics_log: Path | None = None
) -> list[Path]:
    """Write ``report.json``, ``report.md``, ``recall_at_k.png`` (and ``training_curves.png``).

    Args:
        report: an :func:`~gumbel_rerank.evaluation.end_to_end.evaluate` dict.
        out_dir: output folder (created).
        metrics_log: a training ``metrics.jsonl``; adds ``training_curves.png``.

    Returns:
        The paths written, in that order. The files are written as one group: all of them are
        staged first, then renamed into place, so a failed write (a full disk) leaves the
        previous report whole rather than new JSON beside an old figure.

    Raises:
        FileNotFoundError: ``metrics_log`` is given but missing (checked before writing).
        OSError: a write failed; the message names the file, and no report file was replaced.
    """
    out_dir = Path(out_dir)
    if metrics_log is not None and not Path(metrics_log).is_file():
        raise FileNotFoundError(f"{metrics_log}: metrics log not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n"
    files = {
        out_dir / "report.json": text.encode("utf-8"),
        out_dir / "report.md": render_markdown(report).encode("utf-8"),
        out_dir / "recall_at_k.png": recall_at_k_png(report),
    }
    if metrics_log is not None:
        files[out_dir / "training_curves.png"] = training_curves_png(Path(metrics_log))
    write_atomic_group(files)
    return list(files)
