"""`gumbel-rerank demo`: the table's plumbing, and a reduced demo run end to end on the shipped
reader (fewer questions and steps) that must improve the reranker, deterministically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gumbel_rerank.cli.demo import cli_main
from gumbel_rerank.demo.command import (
    BM25,
    SHIPPED_READER,
    UNTRAINED,
    demo_table,
    format_table,
    table_columns,
)
from gumbel_rerank.training.compare import UNTRAINED as UNTRAINED_REPORT


def _report(values: dict[str, float]) -> dict:
    """An evaluate()-shaped report (with cued/uncued groups) whose rankings carry the given
    numbers, each section scaled differently so a cell read from the wrong one shows."""

    def rows(scale: float, key: str) -> dict:
        return {name: {key: v * scale, "R@9": 9.0} for name, v in values.items()}

    return {
        "questions": 7,
        "rankings": rows(1.0, "AllGold@3"),
        "indirect": {"questions": 3, **rows(1 / 2, "R@3")},
        "direct": {"questions": 3, **rows(1 / 3, "R@3")},
        "groups": {
            "cued": {"direct": rows(1 / 4, "R@3")},
            "uncued": {"direct": rows(1 / 5, "R@3")},
        },
        "end_to_end": rows(1 / 8, "EM@3"),
    }


def test_demo_table_takes_each_column_from_its_report_section():
    reports = {
        UNTRAINED_REPORT: _report({"retriever": 0.4, "reranker": 0.8}),
        "pdist": _report({"reranker": 0.6}),
        "gumbel": _report({"reranker": 1.0}),
        "gumbel-2": _report({"reranker": 0.2}),
    }
    table = demo_table(reports, k=3)
    assert list(table) == [BM25, UNTRAINED, "PDist", "G-Rerank", "G-Rerank (2)"]
    assert table[BM25] == pytest.approx(
        {"AllGold@3": 0.4, "bridge R@3": 0.2, "answer R@3 cued": 0.1, "answer R@3 uncued": 0.08, "EM@3": 0.05}
    )
    assert table[UNTRAINED]["bridge R@3"] == 0.4
    assert table["PDist"]["answer R@3 uncued"] == pytest.approx(0.12)
    assert table["G-Rerank"]["EM@3"] == 0.125
    assert [c for c, _ in table_columns(5)] == [
        "AllGold@5", "bridge R@5", "answer R@5 cued", "answer R@5 uncued", "EM@5"
    ]
    text = format_table(table)
    assert "| G-Rerank | 1.000 | 0.500 | 0.250 | 0.200 | 0.125 |" in text


def test_demo_refuses_a_missing_reader(tmp_path, capsys):
    code = cli_main(["--out", str(tmp_path / "run"), "--reader", str(tmp_path / "nowhere")])
    assert code == 1
    assert "no demo reader there" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written before the check


def test_a_decoder_only_reader_directory_reads_with_the_decoder_recipe(tmp_path):
    """`--reader DIR` with a causal LM (not T5) gets the decoder recipe's reader section (kind,
    templates, lengths); the shipped T5 chain reader keeps the FiD one; overrides still win."""
    from gumbel_rerank.demo.command import demo_config
    from gumbel_rerank.demo.reader_recipe import recipe_config

    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"model_type": "llama"}))
    decoder = demo_config(tmp_path / "out", lm)
    recipe = recipe_config(tmp_path / "r", recipe="decoder").reader
    assert decoder.reader.kind == "parallel_lm"
    assert decoder.reader.parallel_lm == recipe.parallel_lm and decoder.reader.settings == recipe.settings
    assert demo_config(tmp_path / "out", "chain").reader.kind == "fid"
    overridden = demo_config(tmp_path / "out", lm, ["--reader.settings.text_maxlength=20"])
    assert overridden.reader.settings.text_maxlength == 20


def test_demo_refuses_a_bad_override(tmp_path, capsys):
    assert cli_main(["--out", str(tmp_path), "--optim.no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert "optim" in err and "no_such_key" in err


def _run(out, steps: int, test_questions: int, train_questions: int = 800) -> dict:
    code = cli_main(
        [
            "--out",
            str(out),
            "--train-questions",
            str(train_questions),
            "--test-questions",
            str(test_questions),
            "--check-questions",
            "40",
            f"--optim.max_steps={steps}",
            f"--run.save_every={steps}",
        ]
    )
    assert code == 0
    return json.loads((out / "report" / "demo.json").read_text())


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED_READER / "config.json").is_file(), reason="no shipped reader")
def test_reduced_demo_g_rerank_finds_the_bridge_that_pdist_and_bm25_miss(tmp_path):
    result = _run(tmp_path / "demo", steps=60, test_questions=100)
    table = result["table"]
    grerank = table["G-Rerank"]
    # The claim of the demo at a reduced size (60 steps, 100 test questions): from the
    # reader's loss alone G-Rerank puts both passages of the chain in the top 3 more often than
    # the incoming BM25 order and than PDist, which credits passages one at a time and so never
    # the bridge. (Measured on 2 cores: see README "The demo".)
    for baseline in (BM25, "PDist"):
        assert grerank["AllGold@3"] > table[baseline]["AllGold@3"], table
        assert grerank["bridge R@3"] > table[baseline]["bridge R@3"], table
    check = result["reading_check"]
    # the shipped reader follows the bridge on uncued questions
    assert check["hard"]["uncued"] >= check["hard_but_bridge"]["uncued"] + 0.5, check
    assert set(result["stage_seconds"]) == {"data", "reading check", "training", "evaluation"}
    out = tmp_path / "demo"
    for name in ("report/demo.md", "report/demo.png", "eval/gumbel/training_curves.png", "eval/untrained_reranker/report.json"):
        assert (out / name).is_file(), name
    assert "| G-Rerank |" in (out / "report" / "demo.md").read_text()
    assert "found LOOP best" in (out / "report" / "demo.md").read_text()  # the full comparison's winner
    # the trained rerankers are shareable models: cards with their test numbers, linked
    for label, folder in result["models"].items():
        card = (Path(folder) / "README.md").read_text()
        assert "## Test metrics (100 questions)" in card and "## In its comparison" in card, label
        assert folder in (out / "report" / "demo.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED_READER / "config.json").is_file(), reason="no shipped reader")
def test_demo_is_deterministic_for_a_seed_and_a_rerun_resumes(tmp_path, capsys):
    first = _run(tmp_path / "a", steps=3, test_questions=20, train_questions=100)
    second = _run(tmp_path / "b", steps=3, test_questions=20, train_questions=100)
    assert first["table"] == second["table"]
    assert first["reading_check"] == second["reading_check"]
    capsys.readouterr()
    again = _run(tmp_path / "a", steps=3, test_questions=20, train_questions=100)
    assert again["table"] == first["table"]
    out = capsys.readouterr().out
    assert "finished earlier, not trained again" in out and "[compare] evaluating" not in out


def test_the_compare_recipe_is_the_demo_setting_with_every_contender(tmp_path):
    """`gumbel-rerank compare` (no config) must measure the demo's objectives on the demo's
    terms; the two recipes are separate files, so this catches one drifting from the other."""
    from gumbel_rerank.demo.command import demo_config
    from gumbel_rerank.demo.compare import compare_config
    from gumbel_rerank.objectives.registry import names

    demo, compare = demo_config(tmp_path), compare_config(tmp_path)
    for section in ("data", "reader", "reranker", "eval", "optim", "run"):
        assert getattr(compare, section) == getattr(demo, section), section
    assert compare.compare.test_questions == demo.compare.test_questions
    by_name = {o.name: o for o in compare.compare.objectives}
    for objective in demo.compare.objectives:
        assert by_name[objective.name] == objective, objective.name
    label_free = {"gumbel", "pdist", "loop", "emdr2", "adist"}
    assert label_free <= set(by_name) <= set(names())
    assert not tmp_path.joinpath("data").exists()  # loading a config writes nothing


def test_the_recipes_take_every_setting_the_protocol_chose_on_dev(tmp_path):
    """The demo's and compare's objective settings are the dev-tuned protocol's choices on the
    chain data (the committed states), not hand-picked: every searched objective setting of a
    chosen trial is the recipe's. The learning rate is shared by all objectives in these
    recipes, so it is G-Rerank's chosen one (the others' chosen rates are in the comments)."""
    from gumbel_rerank.config import flatten, to_dict
    from gumbel_rerank.demo.command import demo_config
    from gumbel_rerank.demo.compare import compare_config

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "protocol"
    chosen = {}
    for label, record in json.loads((results / "chain_protocol.json").read_text())["objectives"].items():
        chosen[label] = record["trials"][record["chosen"]]["settings"]
    assert set(chosen) == {"gumbel", "pdist", "loop", "emdr2", "adist", "lce"}, sorted(chosen)
    for cfg in (demo_config(tmp_path), compare_config(tmp_path)):
        assert cfg.optim.lr == chosen["gumbel"]["optim.lr"]
        for objective in cfg.compare.objectives:
            if objective.name not in chosen:  # not tuned yet
                continue
            settings = flatten(to_dict(objective.settings), prefix="objective.settings.")
            for key, value in chosen[objective.name].items():
                if key.startswith("objective.settings."):
                    assert settings[key] == value, (objective.name, key, settings.get(key), value)


def test_the_demo_seeds_markdown_has_each_seed_and_the_mean_over_seeds(monkeypatch):
    """benchmarks/demo_seeds.py's markdown from two demo reports: a time row and a table per
    seed, and per cell the mean ± sample standard deviation over the seeds."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from demo_seeds import results_lines

    def report(allgold: float, seconds: float) -> dict:
        table = {"BM25 (incoming order)": {"AllGold@3": 0.25, "EM@3": 0.5}, "G-Rerank": {"AllGold@3": allgold, "EM@3": 0.5}}
        return {"table": table, "seconds": seconds, "stage_seconds": {"training": seconds - 10, "evaluation": 10.0}}

    text = "\n".join(results_lines({1: report(0.4, 100.0), 2: report(0.2, 120.0)}, "python x", "alone"))
    assert "| 1 | 100 | 90 | 10 |" in text and "| 2 | 120 | 110 | 10 |" in text
    seed1, seed2 = text.split("Seed 1:")[1].split("Seed 2:")
    assert "| G-Rerank | 0.400 | 0.500 |" in seed1 and "| G-Rerank | 0.200 | 0.500 |" in seed2
    mean = text.split("Mean ± standard deviation over seeds 1, 2:")[1]
    assert "| G-Rerank | 0.300 ± 0.141 | 0.500 ± 0.000 |" in mean  # sample std of 0.4 and 0.2
    one = "\n".join(results_lines({0: report(0.4, 100.0)}, "python x", "alone"))
    assert "Mean" not in one and "Seed 0:" in one


def test_the_top_k_anatomy_benchmark_counts_roles_in_each_top_k(tmp_path, monkeypatch):
    """benchmarks/top_k_anatomy.py: each column's share on all / cued / uncued questions from
    the roles in each top k (hand-made top sets), and end to end on two demo-shaped records
    with the MiniLM reranker: a top k of k distinct passages of the question, one row per model."""
    import subprocess
    import sys

    from gumbel_rerank.demo.command import minilm_directory

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from top_k_anatomy import shares

    records = [{"answer_cued": True}, {"answer_cued": False}]
    tops = [{"bridge", "bridge:restated", "answer"}, {"bridge:restated", "distractor:linked_attribute", "distractor:entity_trap"}]
    row = shares(tops, records)
    assert row["Evidence"] == "0.500 / 1.000 / 0.000" and row["bridge (either)"] == "1.000 / 1.000 / 1.000"
    assert row["both bridge statements"] == "0.500 / 1.000 / 0.000" and row["wrong chain"] == "0.500 / 0.000 / 1.000"

    roles = ["bridge", "bridge:restated", "answer", "distractor:linked_attribute", "distractor:entity_trap"]
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(
        json.dumps({"id": f"q{i}", "question": "which color does the coach of ruloni like best ?", "answer_cued": bool(i),
                    "ctxs": [{"title": "", "text": f"passage {role} {i}", "role": role} for role in roles]}) + "\n"
        for i in range(2)
    ))  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "benchmarks/top_k_anatomy.py", "--dev", str(dev), f"MiniLM={minilm_directory()}", "--results", str(tmp_path / "a.md")],
        cwd=root, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "a.md").read_text()
    assert "2 dev questions (1 cued, 1 uncued)" in table
    cells = next(line for line in table.splitlines() if line.startswith("| MiniLM |")).strip("|").split("|")[1:]
    assert len(cells) == 6 and all(len(c.split(" / ")) == 3 for c in cells)
