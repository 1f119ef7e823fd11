"""`gumbel-rerank demo`: the table's plumbing, and a reduced demo run end to end on the shipped
reader (fewer questions and steps) that must improve the reranker, deterministically."""

from __future__ import annotations

import json

import pytest

from gumbel_rerank.cli.demo import cli_main
from gumbel_rerank.demo.command import (
    ROWS,
    SHIPPED_READER,
    demo_table,
    format_table,
    table_columns,
)


def _report(values: dict[str, float]) -> dict:
    """An evaluate()-shaped report whose two rankings carry the given numbers."""
    return {
        "rankings": {name: {"AllGold@2": v, "R@2": 9.0} for name, v in values.items()},
        "indirect": {"questions": 3, **{name: {"R@2": v / 2} for name, v in values.items()}},
        "direct": {"questions": 3, **{name: {"R@2": v / 4} for name, v in values.items()}},
        "end_to_end": {name: {"EM@2": v / 8} for name, v in values.items()},
    }


def test_demo_table_takes_each_column_from_its_report_section():
    reports = {
        "untrained": _report({"retriever": 0.4, "reranker": 0.8}),
        "trained": _report({"reranker": 1.0}),
    }
    table = demo_table(reports, k=2)
    assert list(table) == [label for label, _, _ in ROWS]
    assert table["incoming order (BM25)"] == {
        "AllGold@2": 0.4,
        "bridge R@2": 0.2,
        "answer R@2": 0.1,
        "EM@2": 0.05,
    }
    assert table["untrained reranker"]["bridge R@2"] == 0.4
    assert table["G-Rerank reranker"]["EM@2"] == 0.125
    assert [c for c, _, _ in table_columns(5)] == ["AllGold@5", "bridge R@5", "answer R@5", "EM@5"]
    text = format_table(table)
    assert "| G-Rerank reranker | 1.000 | 0.500 | 0.250 | 0.125 |" in text
    # before training only the first two rows exist
    assert list(demo_table({"untrained": reports["untrained"]}, k=2)) == [label for label, _, _ in ROWS[:2]]


def test_demo_refuses_a_missing_reader(tmp_path, capsys):
    code = cli_main(["--out", str(tmp_path / "run"), "--reader", str(tmp_path / "nowhere")])
    assert code == 1
    assert "no demo reader there" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written before the check


def test_demo_refuses_a_bad_override(tmp_path, capsys):
    assert cli_main(["--out", str(tmp_path), "--optim.no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert "optim" in err and "no_such_key" in err


def _run(out, steps: int, test_questions: int) -> dict:
    code = cli_main(
        [
            "--out",
            str(out),
            "--train-questions",
            "400",
            "--test-questions",
            str(test_questions),
            "--check-questions",
            "40",
            f"--optim.max_steps={steps}",
            "--run.eval_every=0",
            f"--run.save_every={steps}",
        ]
    )
    assert code == 0
    return json.loads((out / "report" / "demo.json").read_text())


@pytest.mark.skipif(not (SHIPPED_READER / "config.json").is_file(), reason="no shipped reader")
def test_reduced_demo_improves_the_reranker_from_the_readers_loss(tmp_path):
    result = _run(tmp_path / "demo", steps=40, test_questions=100)
    table = result["table"]
    before, after = table["untrained reranker"], table["G-Rerank reranker"]
    # The shipped reader reads the answer passage: its loss alone teaches the reranker to put
    # answer passages in the top 2, and the reader then answers more questions.
    # (Measured on 2 cores: answer R@2 0.19 -> 0.29, EM@2 0.20 -> 0.36 after these 40 steps.)
    assert after["answer R@2"] >= before["answer R@2"] + 0.07, table
    assert after["EM@2"] >= before["EM@2"] + 0.1, table
    assert result["reading_check"]["gold"]["all"] >= 0.9  # the shipped reader reads
    report = tmp_path / "demo" / "report"
    for name in ("demo.md", "demo.png", "trained/training_curves.png", "untrained/report.json"):
        assert (report / name).is_file(), name
    assert "| G-Rerank reranker |" in (report / "demo.md").read_text()


@pytest.mark.skipif(not (SHIPPED_READER / "config.json").is_file(), reason="no shipped reader")
def test_demo_is_deterministic_for_a_seed(tmp_path):
    first = _run(tmp_path / "a", steps=3, test_questions=20)
    second = _run(tmp_path / "b", steps=3, test_questions=20)
    assert first["table"] == second["table"]
    assert first["reading_check"] == second["reading_check"]
