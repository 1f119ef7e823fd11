"""`gumbel-rerank compare`: several objectives on equal terms, then one table.

Every objective of ``compare.objectives`` trains with the same reader, data, reranker start
(a fresh head is seeded by ``run.seed``), step budget and seed, in ``<out>/runs/<label>``; then
the incoming order, the untrained reranker and every trained one are evaluated on the same
questions (``<out>/eval/<label>``) and the table is written as ``compare.md``,
``compare.json`` and ``compare.png``. Resumable as a whole: a finished run is not trained
again, an interrupted one continues from its checkpoint, and an evaluation already done with
the same settings is reused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gumbel_rerank.config import ConfigError, config_differences, from_dict, to_dict
from gumbel_rerank.data.questions import Question
from gumbel_rerank.durable import write_atomic
from gumbel_rerank.envinfo import resolve_device
from gumbel_rerank.evaluation import evaluate, write_report
from gumbel_rerank.evaluation.report import markdown_table, plot_grouped_bars, read_metrics_log
from gumbel_rerank.reader.base import Reader
from gumbel_rerank.rerankers import Reranker
from gumbel_rerank.training.config import CompareConfig, ObjectiveConfig, TrainConfig
from gumbel_rerank.training.run_card import write_run_card
from gumbel_rerank.training.stages import stage_finished
from gumbel_rerank.training.train_reranker import load_reader, load_split, run_train

INCOMING = "incoming order"
UNTRAINED = "untrained reranker"


def run_labels(objectives: Sequence[ObjectiveConfig]) -> list[str]:
    """One folder name per objective: its name, with ``-2``, ``-3`` ... for repeats."""
    labels: list[str] = []
    for objective in objectives:
        label, copy = objective.name, 2
        while label in labels:
            label, copy = f"{objective.name}-{copy}", copy + 1
        labels.append(label)
    return labels


def objective_run_config(cfg: CompareConfig, objective: ObjectiveConfig, out: Path) -> TrainConfig:
    """The plain train config of one compared objective: everything shared but the objective
    and the run folder; always resumable, no per-run final report (compare evaluates)."""
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    shared.update(
        objective=objective,
        stages=[],
        eval=dataclasses.replace(cfg.eval, k=cfg.eval_k()),
        run=dataclasses.replace(cfg.run, output_dir=str(out), resume=True, final_report=False),
    )
    return TrainConfig(**shared)


def train_all(cfg: CompareConfig, out: Path) -> dict[str, Path]:
    """Train every objective that has not finished; returns label -> run folder."""
    folders = {}
    labels = run_labels(cfg.compare.objectives)
    for number, (label, objective) in enumerate(zip(labels, cfg.compare.objectives, strict=True), 1):
        folder = out / "runs" / label
        folders[label] = folder
        check_same_settings(folder, objective_run_config(cfg, objective, folder))
        if stage_finished(folder, cfg.optim.max_steps):
            print(f"[compare {number}/{len(labels)}] {label}: finished earlier, not trained again", flush=True)
            continue
        print(f"[compare {number}/{len(labels)}] training {label} ({cfg.optim.max_steps} steps)", flush=True)
        run_train(objective_run_config(cfg, objective, folder))
        if not stage_finished(folder, cfg.optim.max_steps):
            raise RuntimeError(f"{label} stopped before the end; run the same command again to resume")
        check_same_settings(folder, objective_run_config(cfg, objective, folder))  # records its data
    return folders


#: Keys that may change between a run and its continuation without changing what it trains
#: (``run.output_dir``: the folder checked is the run's, wherever it was moved to).
RESUMABLE_KEYS = ("run.resume", "run.device", "run.progress", "run.output_dir")


#: Where a compared run records the content of the data it was trained on.
DATA_FINGERPRINT = "data_fingerprint.json"


def file_digest(path: str | Path | None) -> str | None:
    """SHA-1 of a file's content (None for no file): the same path may hold other questions
    (the demo rewrites its data on every call)."""
    if not path or not Path(path).is_file():
        return None
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_same_settings(folder: Path, cfg: TrainConfig) -> None:
    """RuntimeError listing the differences when ``folder`` holds a run started with other
    settings than ``cfg`` (its ``config.yaml``) or on other data (the content of its training
    and dev files, ``data_fingerprint.json``): reusing or continuing it would put another
    experiment's numbers in this table. A folder without a fingerprint gets one."""
    saved = folder / "config.yaml"
    if not saved.is_file():
        return
    old = yaml.safe_load(saved.read_text())
    # A key added to the config after the run was made is read at its default, which by the
    # project's rule keeps the old behaviour; a real change still shows up. A saved config
    # today's schema cannot read is compared raw (every difference listed).
    with contextlib.suppress(ConfigError, TypeError, ValueError):
        old = to_dict(from_dict(TrainConfig, old, where=str(saved)))
    differences = config_differences(old, cfg, ignore=RESUMABLE_KEYS)
    data = {"train": file_digest(cfg.data.train), "dev": file_digest(cfg.data.dev)}
    recorded = folder / DATA_FINGERPRINT
    if recorded.is_file():
        before = json.loads(recorded.read_text())
        differences += [f"content of data.{k} changed" for k in data if before.get(k) != data[k]]
    if differences:
        raise RuntimeError(
            f"{folder} holds a run made with other settings ({'; '.join(differences[:5])}"
            f"{'; ...' if len(differences) > 5 else ''}); use another --out or remove that folder"
        )
    write_atomic(recorded, json.dumps(data) + "\n")


def model_fingerprint(model: Path) -> str:
    """Size and mtime of the weights in ``model``: an evaluation saved for other weights (a
    retrained run in the same folder) is not reused."""
    stats = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model.glob("*.safetensors"))
    return json.dumps(stats)


@dataclass
class TestSet:
    """The questions every ranking is judged on, and what identifies an evaluation of them.

    Attributes:
        questions: the first ``compare.test_questions`` of ``compare.test`` (or ``data.dev``).
        settings: file, count, cut-offs and k: part of each saved evaluation's key.
        groups: ``{group name: question ids}`` for per-group sections, or None.
    """

    questions: list[Question]
    settings: dict[str, Any]
    groups: dict[str, list[str]] | None = None


def load_test_set(
    cfg: CompareConfig, groups: Callable[[Sequence[Question]], Mapping[str, list[str]]] | None = None
) -> TestSet:
    """The test questions of ``cfg`` (read here, and only when an evaluation needs them). A
    missing file is a FileNotFoundError naming it and the key that sets it."""
    test = cfg.compare.test or cfg.data.dev
    if not test:
        raise ValueError("compare needs questions to evaluate: set compare.test or data.dev")
    if not Path(test).is_file():
        raise FileNotFoundError(f"{test}: the test questions (compare.test) are missing")
    questions = load_split(cfg.data, test)
    count = min(cfg.compare.test_questions or len(questions), len(questions))
    chosen = [questions[i] for i in range(count)]
    k = cfg.eval_k()
    by_group = dict(groups(chosen)) if groups else None
    settings = {"test": str(test), "questions": count, "ks": sorted({*cfg.compare.ks, k}), "k": k}
    if by_group:
        settings["groups"] = {name: len(ids) for name, ids in by_group.items()}
    return TestSet(chosen, settings, by_group)


def evaluate_model(
    cfg: CompareConfig,
    reader: Reader,
    test: TestSet,
    model: Path,
    directory: Path,
    seed: int,
    head_seed: int | None = None,
    metrics_log: Path | None = None,
) -> dict[str, Any]:
    """The report of reranker ``model`` on ``test`` (written to ``directory``), or the one
    saved there for the same questions, settings, seed and weights: each test number is
    computed once. ``head_seed`` seeds a fresh head (the untrained row starts exactly where
    the training runs started); ``metrics_log`` adds the run's training curves."""
    key = {**test.settings, "test_content": file_digest(test.settings["test"]), "model": model_fingerprint(model), "seed": seed}
    saved = json.loads((directory / "report.json").read_text()) if (directory / "report.json").is_file() else {}
    if saved.get("compare") == key:
        return saved
    print(f"[compare] evaluating {model} on {test.settings['questions']} questions", flush=True)
    reranker = Reranker.from_pretrained(model, seed=head_seed, **cfg.reranker.settings).to(reader.device)
    report = evaluate(
        test.questions,
        reader=reader,
        reranker=reranker,
        ks=test.settings["ks"],
        em_ks=(test.settings["k"],),
        n_passages=cfg.data.n_passages,
        max_new_tokens=cfg.reader.settings.answer_maxlength,
        groups=test.groups,
        evidence=cfg.data.evidence_roles,
    )
    report["compare"] = key
    write_report(report, directory, metrics_log=metrics_log if metrics_log is not None and metrics_log.is_file() else None)
    return report


def evaluate_all(
    cfg: CompareConfig,
    folders: Mapping[str, Path],
    out: Path,
    groups: Callable[[Sequence[Question]], Mapping[str, list[str]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The untrained and every trained reranker on the same questions; label -> report.

    ``groups`` maps the evaluated questions to ``{group name: question ids}`` for per-group
    sections (``evaluate(groups=)``), e.g. the demo's cued and uncued questions."""
    reader = load_reader(cfg, resolve_device(cfg.run.device))
    test = load_test_set(cfg, groups)
    rankers = {UNTRAINED: Path(cfg.reranker.path), **{label: folder / "model" for label, folder in folders.items()}}
    reports = {}
    for label, model in rankers.items():
        untrained = label == UNTRAINED
        reports[label] = evaluate_model(
            cfg,
            reader,
            test,
            model,
            out / "eval" / label.replace(" ", "_"),
            cfg.run.seed,
            head_seed=cfg.run.seed if untrained else None,
            metrics_log=None if untrained else model.parent / "metrics.jsonl",
        )
    return reports


def seconds_per_step(folder: Path) -> float | None:
    """The last logged training time per step of a run (``metrics.jsonl``)."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return None
    times = [r["sec_per_step"] for r in read_metrics_log(path) if "sec_per_step" in r]
    return times[-1] if times else None


def compare_table(
    reports: Mapping[str, Mapping[str, Any]], folders: Mapping[str, Path], ks: Sequence[int], k: int
) -> dict[str, dict[str, float | None]]:
    """Rows: the incoming order, the untrained reranker, each objective. Columns in the layout
    of the paper's tables: Recall@k, nDCG@K, MRR; the same on indirect (bridge) gold; EM@k,
    F1@k of the reader on each ranking's top k; training seconds per step."""
    top = max(ks)

    def row(report: Mapping[str, Any], ranking: str, seconds: float | None) -> dict[str, float | None]:
        ranks, indirect = report["rankings"][ranking], report["indirect"].get(ranking, {})
        end = report.get("end_to_end", {}).get(ranking, {})
        values: dict[str, float | None] = {f"R@{c}": ranks.get(f"R@{c}") for c in ks}
        values.update({f"nDCG@{top}": ranks.get(f"nDCG@{top}"), "MRR": ranks.get("MRR")})
        values.update(
            {
                f"ind. R@{top}": indirect.get(f"R@{top}"),
                "ind. MRR": indirect.get("MRR"),
                f"ind. nDCG@{top}": indirect.get(f"nDCG@{top}"),
                f"EM@{k}": end.get(f"EM@{k}"),
                f"F1@{k}": end.get(f"F1@{k}"),
                "sec/step": seconds,
            }
        )
        return values

    table = {INCOMING: row(reports[UNTRAINED], "retriever", None), UNTRAINED: row(reports[UNTRAINED], "reranker", None)}
    for label, folder in folders.items():
        table[label] = row(reports[label], "reranker", seconds_per_step(folder))
    return table


def write_compare(table: Mapping[str, Mapping[str, Any]], out: Path, header: str = "") -> str:
    """``compare.md``, ``compare.json`` and ``compare.png`` (the fraction columns as grouped
    bars) in ``out``; returns the markdown."""
    columns = list(next(iter(table.values())))
    text = "\n\n".join(part for part in (header, markdown_table(table, columns, label="ranking", fmt=_fmt)) if part)
    write_atomic(out / "compare.md", text + "\n")
    write_atomic(out / "compare.json", json.dumps(table, indent=1) + "\n")
    fractions = {label: {c: v for c, v in row.items() if c != "sec/step"} for label, row in table.items()}
    plot_grouped_bars(fractions, out / "compare.png", ylabel="fraction (test questions)")
    return text


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def run_compare(cfg: CompareConfig, header: str = "") -> dict[str, Any]:
    """The whole comparison (module docstring); returns ``{"table", "seconds"}``. ``header``
    goes on top of ``compare.md`` (e.g. the reader's reading check)."""
    started = time.monotonic()
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    folders = train_all(cfg, out)
    reports = evaluate_all(cfg, folders, out)
    table = compare_table(reports, folders, cfg.compare.ks, cfg.eval_k())
    for label, folder in folders.items():  # each model's card gets its test numbers and table row
        write_run_card(folder, test_report=reports[label], compare_row=table[label])
    questions = reports[UNTRAINED]["compare"]["questions"]
    note = (
        f"{questions} questions; the reader reads each ranking's top {cfg.eval_k()}; "
        f"{cfg.optim.max_steps} training steps per objective, seed {cfg.run.seed}; "
        "'ind.' = indirect gold (gold passages without the answer, e.g. bridges)."
    )
    text = write_compare(table, out, "\n\n".join(p for p in ("# gumbel-rerank compare", header, note) if p))
    print(text, flush=True)
    return {"table": table, "seconds": round(time.monotonic() - started, 1)}
