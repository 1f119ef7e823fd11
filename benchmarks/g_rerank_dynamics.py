"""Why G-Rerank plateaus on the demo data: per-role training dynamics and the hypotheses they
point to, each a named option trained on top of the protocol's dev-chosen G-Rerank setting
and judged on dev only (issue 19).

    python benchmarks/g_rerank_dynamics.py --protocol runs/protocol-chain --out runs/dynamics

Reads the chosen G-Rerank setting from the protocol's ``protocol.json`` (dev-chosen; no test
number is read), trains each variant below with the protocol's budget and seed 0 (resumable,
one run folder each), and writes ``dynamics.md`` (a dev table per variant) and figures: per
passage role, the mean standardised score, how often the k samples picked it, the mean
gradient of the loss w.r.t. its score, and the soft-mask against the hard top-k reader loss.

Variants (``--objective.settings`` on top of the chosen setting):
* ``chosen``: the setting itself (the tuning run's own seed-0 run, reused);
* ``kappa_anneal``: kappa annealed from its value to 3.0 over 300 steps (the mask commits);
* ``straight_through``: the hard top-k forward, the relaxed mask's gradient backward;
* ``train_k5``: a training mask of k = 5 judged at k = 3 (the mask drops a few passages from a
  nearly full context, the view leave-one-out has);
* ``samples4``: four independent masks per question (lower gradient variance);
* ``subset``: the relaxed top-k without replacement (k distinct picks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

VARIANTS = {
    "chosen": {},
    "kappa_anneal": {"objective.settings.kappa_end": 3.0, "objective.settings.anneal_steps": 300},
    "straight_through": {"objective.settings.mask.mode": "straight_through"},
    "train_k5": {"objective.settings.mask.k": 5, "eval.allow_other_k": True},
    "samples4": {"objective.settings.mask_samples": 4},
    "subset": {"objective.settings.mask.mode": "subset"},
}
ROLES = ("bridge", "answer", "wrong_chain", "trap", "entity_link", "rest")


def curve(log: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` in a metrics log (NaN entries left out)."""
    points = [(r["step"], r[key]) for r in log if key in r and r[key] == r[key]]
    return [p[0] for p in points], [p[1] for p in points]


def smooth(values: list[float], width: int = 5) -> list[float]:
    """A trailing moving average (the logged steps are single batches: noisy)."""
    return [statistics.mean(values[max(0, i - width + 1) : i + 1]) for i in range(len(values))]


def plot_roles(log: list[dict], path: Path, title: str) -> None:
    """Four panels over training steps, one line per role."""
    from gumbel_rerank.durable import write_atomic
    from gumbel_rerank.evaluation.report import new_figure, png_bytes

    figure = new_figure(12.0, 8.0)
    axes = figure.subplots(2, 2).ravel()
    for ax, (what, label) in zip(
        axes,
        (("z", "mean score the mask sees (standardised)"), ("sampled", "share picked by a Gumbel sample"),
         ("grad_score", "mean dLoss/dscore (negative = pushed up)"), ("in_topk", "share in the hard top k")),
        strict=False,
    ):  # fmt: skip
        for role in ROLES:
            steps, values = curve(log, f"role/{role}/{what}")
            if steps:
                ax.plot(steps, smooth(values), label=role)
        ax.set_title(label, fontsize="small")
        ax.set_xlabel("step")
    axes[0].legend(fontsize="x-small")
    figure.suptitle(title)
    write_atomic(path, png_bytes(figure))


def plot_losses(logs: dict[str, list[dict]], path: Path) -> None:
    """Soft-mask (training) loss against the hard top-k reader loss per variant."""
    from gumbel_rerank.durable import write_atomic
    from gumbel_rerank.evaluation.report import new_figure, png_bytes

    figure = new_figure(9.0, 4.5)
    ax = figure.subplots()
    for i, (name, log) in enumerate(logs.items()):
        for key, style in (("loss_soft", "-"), ("loss_hard", "--")):
            steps, values = curve(log, key)
            ax.plot(steps, smooth(values), style, color=f"C{i}", label=f"{name} {key.split('_')[1]}")
    ax.set_xlabel("step")
    ax.set_ylabel("reader answer NLL")
    ax.legend(fontsize="x-small", ncol=2)
    write_atomic(path, png_bytes(figure))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", type=Path, required=True, help="a compare --tune folder (protocol.json)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--setting", default="chain", choices=("chain", "redundant"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    args.figures.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gumbel_rerank.demo.compare import PROTOCOL_RECIPE, compare_config, select_objectives
    from gumbel_rerank.demo.reader_recipe import REDUNDANT_READER, SHIPPED_READER
    from gumbel_rerank.evaluation.report import read_metrics_log
    from gumbel_rerank.training.protocol import run_config, train_once

    state = json.loads((args.protocol / "protocol.json").read_text())
    record = state["objectives"]["gumbel"]
    if "chosen" not in record:  # the protocol is still tuning the next objectives: its own rule
        values = [t["best_dev"] if t["best_dev"] is not None else float("-inf") for t in record["trials"]]
        record["chosen"] = values.index(max(values))
    chosen = record["trials"][record["chosen"]]["settings"]
    reader = REDUNDANT_READER if args.setting == "redundant" else SHIPPED_READER
    # the protocol's own data folder and budget: the same dev questions, the same cap
    cfg = compare_config(args.protocol, reader, None, PROTOCOL_RECIPE)
    select_objectives(cfg, ["gumbel"])
    objective = cfg.compare.objectives[0]
    rows, logs = {}, {}
    for name in args.variants:
        folder = args.protocol / "tune" / "gumbel" / f"trial-{record['chosen']}" if name == "chosen" else args.out / name
        settings = {**chosen, **VARIANTS[name]}
        extra = {k: v for k, v in settings.items() if k == "eval.allow_other_k"}
        settings = {k: v for k, v in settings.items() if k not in extra}
        if extra:
            cfg.eval.allow_other_k = True
        summary = train_once(run_config(cfg, objective, folder, settings, cfg.run.seed), f"dynamics {name}")
        cfg.eval.allow_other_k = False
        log = read_metrics_log(folder / "metrics.jsonl")
        logs[name] = log
        last = [r for r in log if "dev/Evidence@3" in r]
        best = max(last, key=lambda r: r["dev/Evidence@3"])
        rows[name] = {
            "dev AllGold@3 (best)": best["dev/Evidence@3"],
            "at step": best["step"],
            "dev bridge R@3": best.get("dev/bridge@3"),
            "dev answer R@3": best.get("dev/answer@3"),
            "steps run": summary["steps"],
        }
        plot_roles(log, args.figures / f"dynamics_{args.setting}_{name}.png", f"G-Rerank per passage role: {name}")
    plot_losses(logs, args.figures / f"dynamics_{args.setting}_losses.png")
    lines = [
        f"# G-Rerank dynamics on the demo data ({args.setting})",
        "",
        f"Command: `python benchmarks/g_rerank_dynamics.py --protocol {args.protocol} --out {args.out} --setting {args.setting}`; "
        f"{time.strftime('%Y-%m-%d')}. Chosen setting (dev, protocol): `{json.dumps(chosen)}`. Seed {cfg.run.seed}, the "
        f"protocol's budget (at most {cfg.optim.max_steps} steps, dev every {cfg.run.eval_every}, patience "
        f"{cfg.tune.patience}), {cfg.data.dev_subset} dev questions. Dev only: no test question is read.",
        "",
        "| variant | " + " | ".join(next(iter(rows.values()))) + " |",
        "|---|" + "---:|" * len(next(iter(rows.values()))),
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    text = "\n".join(lines) + "\n"
    (args.out / "dynamics.md").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "dynamics.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
