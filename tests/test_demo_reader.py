"""The demo reader's remake command and the reading check (gumbel_rerank.demo.reader_recipe,
gumbel_rerank.demo.reading_check), on CPU with a few hundred training questions."""

from __future__ import annotations

import json

import pytest

from gumbel_rerank.cli.demo_reader import cli_main
from gumbel_rerank.demo.dataset import DemoSpec, generate_split
from gumbel_rerank.demo.reader_recipe import recipe_config
from gumbel_rerank.demo.reading_check import (
    CONTEXTS,
    SUBSETS,
    context_passages,
    format_reading_check,
    read_demo_records,
    uses_bridge,
)


def test_contexts_keep_the_roles_they_name():
    record = generate_split(DemoSpec(n_train=0, n_dev=3, n_test=0), "dev")[0]
    by_text = {c["text"]: c["role"] for c in record["ctxs"]}

    def roles(context):
        return [by_text[p["text"]] for p in context_passages(record, context)]

    assert len(roles("all")) == len(record["ctxs"])
    assert "bridge" not in roles("all_but_bridge") and len(roles("all_but_bridge")) == len(record["ctxs"]) - 1
    assert sorted(roles("gold")) == ["answer", "bridge"]
    assert roles("answer") == ["answer"] and roles("bridge") == ["bridge"]
    # candidate order is kept
    order = [c["role"] for c in record["ctxs"] if c["role"] in ("bridge", "answer")]
    assert roles("gold") == order


def test_non_demo_records_are_refused_with_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    good = generate_split(DemoSpec(n_train=0, n_dev=2, n_test=0), "dev")
    bad = dict(good[1], ctxs=[c for c in good[1]["ctxs"] if c["role"] != "bridge"])
    path.write_text(json.dumps(good[0]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"q\.jsonl:2: ctxs\[\]\.role"):
        read_demo_records(path)
    assert len(read_demo_records(path, limit=1)) == 1


def test_recipe_overrides_and_paths(tmp_path):
    cfg = recipe_config(tmp_path, ["--optim.max_steps=7", "--curriculum=[{steps: 3, contexts: answer}]"])
    assert cfg.optim.max_steps == 7 and cfg.optim.lr == 1e-3  # the recipe's value survives
    assert [c.contexts for c in cfg.curriculum] == ["answer"]
    assert cfg.data.train == str(tmp_path / "data" / "train.jsonl")
    assert cfg.reader.path == str(tmp_path / "init") and cfg.run.output_dir == str(tmp_path / "run")


def test_demo_reader_trains_and_the_check_sees_copying_but_no_bridge_use(tmp_path, capsys):
    """150 steps on the answer passage alone: the reader copies the value when the answer
    passage is given, cannot answer from the bridge alone, and (never having needed it) does not
    use the bridge."""
    out = tmp_path / "dr"
    rc = cli_main(
        [
            "--out", str(out), "--train-questions", "300", "--run.device=cpu",
            "--optim.max_steps=150", "--optim.micro_batch_size=16", "--optim.warmup_steps=20",
            "--curriculum=[{steps: 150, contexts: answer}]",
            "--run.eval_every=0", "--run.save_every=150", "--run.final_report=false",
        ]
    )  # fmt: skip
    assert rc == 0
    assert len((out / "data" / "train.jsonl").read_text().splitlines()) == 300
    result = json.loads((out / "run" / "model" / "reading_check.json").read_text())
    assert set(result) == {"n", *CONTEXTS} and all(set(result[c]) == set(SUBSETS) for c in CONTEXTS)
    assert result["n"] == {"all": 500, "cued": result["n"]["cued"], "uncued": 500 - result["n"]["cued"]}
    assert result["answer"]["all"] >= 0.9
    assert result["bridge"]["all"] <= 0.4
    assert not uses_bridge(result)
    printed = capsys.readouterr().out
    assert format_reading_check(result) in printed
