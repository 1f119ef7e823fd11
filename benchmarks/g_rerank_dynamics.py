"""Why G-Rerank plateaus on the demo data: per-role training dynamics and the hypotheses they
point to, each a named option trained on top of the protocol's dev-chosen G-Rerank setting
and judged on dev only (issue 19).

    python benchmarks/g_rerank_dynamics.py --protocol runs/protocol-chain --out runs/dynamics

Further ``--section.key=value`` arguments override the protocol's recipe (e.g. a shorter cap
``--optim.max_steps=100``; ``tests/test_dynamics_script.py`` runs it that way in seconds). With
overrides the ``chosen`` variant is trained afresh under ``--out`` instead of read from the
protocol's trial folder; a key the chosen trial or a variant sets is refused (it would not apply).

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
* ``subset``: the relaxed top-k without replacement (k distinct picks);
* ``tau_sharp``: the mask's temperature 0.1 instead of 0.5 (each sample's softmax near one-hot,
  so the relaxed mask's loss is nearer the hard top-k loss the evaluation reads);
* ``tau_anneal``: tau annealed from 0.5 to 0.1 over 300 steps (a wide mask while the bridge is
  found, a sharp one to order the answer passage above its look-alike);
* ``drop2``: a training mask that keeps 8 distinct passages of 10 (``subset``, k = 8), judged at
  k = 3: the mask drops passages from a nearly full context, as leave-one-out does, instead of
  selecting a few.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

VARIANTS = {
    "chosen": {},
    "kappa_anneal": {"objective.settings.kappa_end": 3.0, "objective.settings.anneal_steps": 300},
    "straight_through": {"objective.settings.mask.mode": "straight_through"},
    "train_k5": {"objective.settings.mask.k": 5, "eval.allow_other_k": True},
    "samples4": {"objective.settings.mask_samples": 4},
    "subset": {"objective.settings.mask.mode": "subset"},
    "drop2": {"objective.settings.mask.k": 8, "objective.settings.mask.mode": "subset", "eval.allow_other_k": True},
    "tau_sharp": {"objective.settings.mask.tau": 0.1},
    "tau_anneal": {"objective.settings.tau_end": 0.1, "objective.settings.anneal_steps": 300},
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
    """Six panels over training steps, one line per role: raw and standardised score, how
    often a sample picks the role, its share of the hard top k, dLoss/dscore and the mask
    gradient dLoss/dlog M."""
    from gumbel_rerank.durable import write_atomic
    from gumbel_rerank.evaluation.report import new_figure, png_bytes

    figure = new_figure(12.0, 12.0)
    axes = figure.subplots(3, 2).ravel()
    for ax, (what, label) in zip(
        axes,
        (("score", "mean raw score"), ("z", "mean score the mask sees (standardised)"),
         ("sampled", "share picked by a Gumbel sample"), ("in_topk", "share in the hard top k"),
         ("grad_score", "mean dLoss/dscore (negative = pushed up)"),
         ("grad_log_mask", "mean dLoss/dlog M, the mask gradient (negative = wants the passage)")),
        strict=True,
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


def credit(cfg, objective, settings: dict, model_dir: Path, dev: Path, questions: int = 96, draws: int = 8) -> tuple[dict[str, dict[str, float]], int]:
    """Who gets credit on uncued dev questions, from the reranker in ``model_dir``: per role, the
    mean gradient of G-Rerank's loss (over ``draws`` Gumbel masks) and of LOOP's KL (target
    temperature 0.1, student 1, as in the protocol's LOOP grid) with respect to each passage's
    score; negative = that passage is pushed up. Uncued questions only: there the answer
    passage and the wrong chain read the same to a pointwise reranker, so what one gets the
    other gets too through their shared features. Returns (objective -> role -> mean, the number
    of questions read: at most ``questions``, fewer when dev has fewer uncued ones)."""
    import torch

    from gumbel_rerank.demo.reading_check import read_demo_records
    from gumbel_rerank.envinfo import resolve_device
    from gumbel_rerank.masks import example_gumbel_noise, relaxed_topk_log_mask
    from gumbel_rerank.objectives.common import leave_one_out_nll, masked_log_softmax, read_batch
    from gumbel_rerank.objectives.gumbel import standardize_scores
    from gumbel_rerank.rerankers import Reranker
    from gumbel_rerank.training.protocol import run_config
    from gumbel_rerank.training.train_reranker import ROLE_GROUPS, load_reader

    reader = load_reader(cfg, resolve_device("cpu"))
    reranker = Reranker.from_pretrained(model_dir, **cfg.reranker.settings).eval()
    records = [r for r in read_demo_records(dev) if not r["answer_cued"]][:questions]
    # the chosen setting as the protocol builds it (typed: mask and standardisation)
    chosen = run_config(cfg, objective, model_dir, settings, cfg.run.seed).objective.settings
    mask = chosen.mask
    sums: dict[str, dict[str, list[float]]] = {"G-Rerank": {}, "LOOP": {}}
    for start in range(0, len(records), 8):
        chunk = records[start : start + 8]
        batch = SimpleNamespace(  # what read_batch reads of a Batch
            questions=[r["question"] for r in chunk],
            passages=[[{"title": c["title"], "text": c["text"]} for c in r["ctxs"]] for r in chunk],
            targets=[r["target"] for r in chunk],
        )
        with torch.no_grad():
            scores, valid = reranker.score(batch.questions, batch.passages)
        states, labels = read_batch(reader, batch, scores.shape[1])
        grads = {"G-Rerank": torch.zeros_like(scores), "LOOP": torch.zeros_like(scores)}
        for draw in range(draws):
            w = scores.clone().requires_grad_(True)
            work = standardize_scores(w, valid) if chosen.standardize else w
            noise = example_gumbel_noise(1, draw, list(range(len(chunk))), valid.sum(1).tolist(), mask.k, w.shape[1])
            loss = reader.lm_loss(states, labels, relaxed_topk_log_mask(work, valid, mask, noise=noise)).sum()
            grads["G-Rerank"] += torch.autograd.grad(loss, w)[0] / draws
        target = masked_log_softmax(leave_one_out_nll(reader, states, labels), valid, 0.1).exp()
        grads["LOOP"] = masked_log_softmax(scores, valid, 1.0).exp() - target  # d KL / d w per question
        for row, record in enumerate(chunk):
            for i, passage in enumerate(record["ctxs"]):
                role = ROLE_GROUPS.get(passage["role"], "rest")
                for name in grads:
                    sums[name].setdefault(role, []).append(float(grads[name][row, i]))
    means = {name: {role: statistics.mean(values) for role, values in by_role.items()} for name, by_role in sums.items()}
    return means, len(records)


def refuse_ignored_overrides(parser: argparse.ArgumentParser, overrides: list[str], chosen: dict) -> None:
    """A usage error for an override the runs would not take: a key the chosen trial or a
    variant sets (they win over the recipe), or ``run.patience`` (the protocol's
    ``tune.patience`` sets it); the results file would otherwise name an override that did nothing."""
    fixed = set(chosen) | {key for variant in VARIANTS.values() for key in variant} | {"run.patience"}
    for item in overrides:
        key = item.removeprefix("--").split("=", 1)[0]
        if key in fixed:
            parser.error(f"{item}: the chosen trial or a variant sets {key} (use tune.patience for the patience)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", type=Path, required=True, help="a compare --tune folder (protocol.json)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--setting", default="chain", choices=("chain", "redundant"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    parser.add_argument("--credit", action="store_true", help="also the per-role credit of G-Rerank and LOOP on uncued dev questions")
    parser.add_argument("--credit-questions", type=int, default=96, help="uncued dev questions the credit is averaged over")
    # the rest are config overrides (--section.key=value), checked by the config loader
    args, overrides = parser.parse_known_args()
    args.figures.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gumbel_rerank.demo.compare import PROTOCOL_RECIPE, compare_config, select_objectives
    from gumbel_rerank.demo.reader_recipe import REDUNDANT_READER, SHIPPED_READER
    from gumbel_rerank.evaluation.report import read_metrics_log
    from gumbel_rerank.training.protocol import run_config, run_query, train_once
    from gumbel_rerank.training.records import Records

    state = json.loads((args.protocol / "protocol.json").read_text())
    record = state["objectives"]["gumbel"]
    if "chosen" not in record:  # the protocol is still tuning the next objectives: its own rule
        values = [t["best_dev"] if t["best_dev"] is not None else float("-inf") for t in record["trials"]]
        record["chosen"] = values.index(max(values))
    chosen = record["trials"][record["chosen"]]["settings"]
    refuse_ignored_overrides(parser, overrides, chosen)
    reader = REDUNDANT_READER if args.setting == "redundant" else SHIPPED_READER
    # the protocol's own data folder and budget: the same dev questions, the same cap
    cfg = compare_config(args.protocol, reader, overrides, PROTOCOL_RECIPE)
    select_objectives(cfg, ["gumbel"])
    objective = cfg.compare.objectives[0]
    rows, logs = {}, {}
    # the chosen setting is the tuning run itself, unless overrides make it another run: that one
    # is trained beside the variants, never into (or over) the protocol's own trial folder
    chosen_dir = args.out / "chosen" if overrides else args.protocol / "tune" / "gumbel" / f"trial-{record['chosen']}"
    for name in args.variants:
        folder = chosen_dir if name == "chosen" else args.out / name
        settings = {**chosen, **VARIANTS[name]}
        extra = {k: v for k, v in settings.items() if k == "eval.allow_other_k"}
        settings = {k: v for k, v in settings.items() if k not in extra}
        if extra:
            cfg.eval.allow_other_k = True
        train_cfg = run_config(cfg, objective, folder, settings, cfg.run.seed)
        # no records: every variant is trained here (or resumed from its folder)
        query = run_query(cfg, train_cfg, "gumbel", objective, settings, {})
        summary = train_once(train_cfg, f"dynamics {name}", Records(), query)
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
    credits = {}
    if args.credit:
        for when, model in (("start (untrained head)", cfg.reranker.path), ("after training (chosen run's best dev point)", chosen_dir / "model")):
            credits[when] = credit(cfg, objective, chosen, Path(model), Path(cfg.data.dev), args.credit_questions)
    budget = "the protocol's budget" if not overrides else "the protocol's budget with the overrides above"
    lines = [
        f"# G-Rerank dynamics on the demo data ({args.setting})",
        "",
        f"Command: `python benchmarks/g_rerank_dynamics.py --protocol {args.protocol} --out {args.out} --setting {args.setting}"
        f"{''.join(' ' + o for o in overrides)}`; "
        f"{time.strftime('%Y-%m-%d')}. Chosen setting (dev, protocol): `{json.dumps(chosen)}`. Seed {cfg.run.seed}, "
        f"{budget} (at most {cfg.optim.max_steps} steps, dev every {cfg.run.eval_every}, patience "
        f"{cfg.tune.patience}), {cfg.data.dev_subset} dev questions. Dev only: no test question is read.",
        "",
        "| variant | " + " | ".join(next(iter(rows.values()))) + " |",
        "|---|" + "---:|" * len(next(iter(rows.values()))),
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    # every dev evaluation, not only the best: the curve is what says whether a variant plateaus
    steps = sorted({r["step"] for log in logs.values() for r in log if "dev/Evidence@3" in r})
    lines += ["", "Dev AllGold@3 at every evaluation (step: value):", "",
              "| variant | " + " | ".join(str(s) for s in steps) + " |", "|---|" + "---:|" * len(steps)]
    for name, log in logs.items():
        at = dict(zip(*curve(log, "dev/Evidence@3"), strict=True))
        lines.append(f"| {name} | " + " | ".join(f"{at[s]:.3f}" if s in at else "–" for s in steps) + " |")
    for when, (table, asked) in credits.items():
        roles = list(next(iter(table.values())))
        lines += ["", f"Mean dLoss/dscore per role on {asked} uncued dev questions, reranker at the {when} "
                  "(negative = pushed up; G-Rerank: 8 Gumbel masks; LOOP: KL to its target at 0.1):", "",
                  "| objective | " + " | ".join(roles) + " |", "|---|" + "---:|" * len(roles)]
        lines += [f"| {name} | " + " | ".join(f"{row[r]:+.4f}" for r in roles) + " |" for name, row in table.items()]
    text = "\n".join(lines) + "\n"
    (args.out / "dynamics.md").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "dynamics.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
