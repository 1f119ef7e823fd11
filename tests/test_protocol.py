"""`gumbel-rerank compare --tune`: trials drawn from declared search spaces, equal for every
objective, chosen on dev only, final seeds evaluated once on test; resumable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from tiny_world import build_world

from gumbel_rerank.cli import main
from gumbel_rerank.config import ConfigError, load_config
from gumbel_rerank.envinfo import code_commit, package_commit_at, package_version
from gumbel_rerank.training.config import CompareConfig
from gumbel_rerank.training.protocol import draw_trials, provenance_note, run_labels
from gumbel_rerank.training.records import made_by


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def protocol_config(world, path, test):
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"train": str(world.train), "dev": str(world.dev), "dev_subset": 10},
                "reader": {"path": str(world.reader), "settings": {"text_maxlength": 24}},
                "reranker": {"path": str(world.reranker)},
                "eval": {"k": 2},
                "compare": {
                    "objectives": [
                        {"name": "gumbel", "settings": {"mask": {"k": 2}}},
                        {"name": "loop", "settings": {"cache_targets": True}},
                        {"name": "lce"},
                    ],
                    "test": str(test),
                    "test_questions": 10,
                    "ks": [1, 2],
                },
                "tune": {"trials": 2, "seeds": [1, 2], "patience": 1,
                         "grids": {"lce": {"optim.lr": [1e-3, 3e-3]}}},
                "optim": {"lr": 1e-3, "max_steps": 4, "micro_batch_size": 4},
                "run": {"eval_every": 2, "save_every": 100, "log_every": 1},
            }  # fmt: skip
        )
    )
    return path


def test_trials_are_seeded_distinct_draws_of_equal_number_for_every_objective(world, tmp_path):
    cfg = load_config(CompareConfig, protocol_config(world, tmp_path / "c.yaml", world.dev))
    labels = run_labels(cfg.compare.objectives)
    draws = {label: draw_trials(cfg, label, o) for label, o in zip(labels, cfg.compare.objectives, strict=True)}
    assert {len(d) for d in draws.values()} == {2}
    assert draws["lce"] in ([{"optim.lr": 1e-3}, {"optim.lr": 3e-3}], [{"optim.lr": 3e-3}, {"optim.lr": 1e-3}])
    assert all(len({json.dumps(t, sort_keys=True) for t in d}) == 2 for d in draws.values())
    assert set(draws["gumbel"][0]) == {"optim.lr", "objective.settings.mask.kappa", "objective.settings.standardize", "objective.settings.mask.mode"}
    assert draws == {label: draw_trials(cfg, label, o) for label, o in zip(labels, cfg.compare.objectives, strict=True)}
    with pytest.raises(ConfigError, match="fewer than tune.trials"):
        too_many = load_config(CompareConfig, tmp_path / "c.yaml", ["--tune.trials=3"])
        draw_trials(too_many, "lce", too_many.compare.objectives[2])


def test_tuning_never_reads_the_test_questions_and_the_test_is_read_once(world, tmp_path, monkeypatch):
    """The test file is absent while every trial trains: the protocol chooses every setting,
    gets to the final runs and stops there naming the file. Restored, the rerun trains no
    trial again, trains the final runs, and reads the test questions once per final run."""
    test = tmp_path / "test.jsonl"
    shutil.copy(world.dev, test)
    cfg = protocol_config(world, tmp_path / "c.yaml", test)
    hidden = tmp_path / "elsewhere.jsonl"
    test.rename(hidden)
    out = tmp_path / "out"
    assert main(["compare", "--tune", "--config", str(cfg), "--out", str(out)]) == 1
    state = json.loads((out / "protocol.json").read_text())
    assert "test" not in state
    records = state["objectives"]
    assert {label: len(r["trials"]) for label, r in records.items()} == {"gumbel": 2, "loop": 2, "lce": 2}
    for label, record in records.items():
        assert record["finals"] == {}
        best = max(t["best_dev"] for t in record["trials"])
        assert record["trials"][record["chosen"]]["best_dev"] == best
        for index, trial in enumerate(record["trials"]):
            saved = yaml.safe_load((out / "tune" / label / f"trial-{index}" / "config.yaml").read_text())
            assert saved["run"]["select_metric"] == "AllGold@2" and "compare" not in saved
            assert trial["config"]["run.seed"] == 0 and trial["config"]["objective.name"] == label
            assert trial["recorded_by"]["device"] == "cpu" and trial["recorded_by"]["commit"] == code_commit()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*/model/model.safetensors")}
    assert len(stamps) == 3 * 2

    # a finished trial keeps the code that trained it, not that of the call that finds it
    versions = out / "tune" / "loop" / "trial-0" / "versions.json"
    versions.write_text(json.dumps({**json.loads(versions.read_text()), "git commit": "0123456789ab"}))
    hidden.rename(test)
    assert main(["compare", "--tune", "--config", str(cfg), "--out", str(out)]) == 0
    assert json.loads((out / "protocol.json").read_text())["objectives"]["loop"]["trials"][0]["recorded_by"] == {
        "gumbel_rerank": package_version("gumbel_rerank"), "commit": "0123456789ab", "device": "cpu"
    }  # fmt: skip
    after = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*/model/model.safetensors")}
    assert {p: after[p] for p in stamps} == stamps and len(after) == 3 * 2 + 3 * 2  # no trial retrained
    state = json.loads((out / "protocol.json").read_text())
    assert set(state["objectives"]["lce"]["finals"]) == {"1", "2"}
    assert all("test" in final for r in state["objectives"].values() for final in r["finals"].values())
    text = (out / "protocol.md").read_text()
    assert "| lce |" in text and "±" in text and "of 2 trials" in text and (out / "curves.png").stat().st_size > 0
    compute = text.split("Compute (means over the final runs")[1].split("Every tuning trial")[0]
    for column in ("reader passes / question", "target caching s", "s / step", "best step", "train s to best",
                   "TFLOP FiD-base n=20", "TFLOP FiD-large n=100"):  # fmt: skip
        assert f"| {column} |" in compute, column
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in compute.splitlines() if line.startswith("|")]
    loop = dict(zip(lines[0], next(row for row in lines if row[0] == "loop"), strict=True))
    assert float(loop["TFLOP FiD-large n=100"]) > float(loop["TFLOP FiD-base n=20"]) > 0
    assert 1 <= float(loop["best step"]) <= 4 and float(loop["s / step"]) > 0 and float(loop["target caching s"]) >= 0
    chosen = state["objectives"]["loop"]["chosen"]
    trial_cells = text.split("Every tuning trial")[1].split("| loop |")[1].splitlines()[0].split(" | ")
    assert trial_cells[chosen].strip(" |").startswith("**") and "tau_target=" in trial_cells[0]

    # the README's tables are read from this report: quality and compute, not the trial table
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from protocol_readme import report_tables

    quality, compute = report_tables(out / "protocol.md")
    assert [line.split(" | ")[0] for line in quality[2:]] == ["| incoming order (BM25)", "| untrained reranker", "| G-Rerank", "| LOOP", "| LCE"]
    assert "| reader passes / question |" in compute[0] and len(compute) == 2 + 3
    reports = {p: p.stat().st_mtime_ns for p in out.glob("eval/**/report.json")}
    assert len(reports) == 1 + 3 * 2
    assert main(["compare", "--tune", "--config", str(cfg), "--out", str(out)]) == 0
    assert reports == {p: p.stat().st_mtime_ns for p in out.glob("eval/**/report.json")}  # read once


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--compare.test=null"], "needs compare.test, a question file other than data.dev"),
        (["--run.eval_every=9"], "run.eval_every must be in 1..optim.max_steps"),
        (["--run.seed=2"], "must not contain run.seed = 2"),
        (['--tune.grids={"lce": {"optim.max_steps": [2, 4]}}'], "only .* may differ"),
    ],
)
def test_a_protocol_that_could_not_keep_its_claims_is_refused(world, tmp_path, overrides, message):
    from gumbel_rerank.training.protocol import check_protocol

    test = tmp_path / "test.jsonl"
    shutil.copy(world.dev, test)
    cfg = load_config(CompareConfig, protocol_config(world, tmp_path / "c.yaml", test), overrides)
    with pytest.raises(ConfigError, match=message):
        check_protocol(cfg)
    same = load_config(CompareConfig, tmp_path / "c.yaml", [f"--compare.test={world.dev}"])
    with pytest.raises(ConfigError, match="other than data.dev"):
        check_protocol(same)


def test_a_run_whose_dev_metric_is_always_nan_publishes_its_last_step_and_says_so(world, tmp_path, monkeypatch):
    """No dev point improves: the run stops on patience, model/ is the last step, and
    selection.json says no best point exists (best_step null) instead of the run failing on
    every rerun."""
    from gumbel_rerank.evaluation import in_loop
    from gumbel_rerank.training.stages import stage_finished

    monkeypatch.setattr(in_loop.RerankerEvaluator, "__call__", lambda self, module, step: {"MRR": float("nan")})
    out = tmp_path / "run"
    steps = {"optim.max_steps": 6, "run.eval_every": 2, "run.select_metric": "MRR", "run.patience": 1}
    assert main(["train", *world.overrides(out, **steps)]) == 0
    chosen = json.loads((out / "selection.json").read_text())
    assert chosen["best_step"] is None and chosen["stopped_early"]
    assert (out / "model" / "config.json").is_file() and stage_finished(out, 6)
    (out / "selection.json").unlink()  # killed between publishing and recording: not finished
    assert not stage_finished(out, 6)
    assert main(["train", *world.overrides(out, **steps), "--resume"]) == 0
    assert (out / "selection.json").is_file() and stage_finished(out, 6)


def test_a_finished_run_is_not_reused_for_other_data_under_the_same_path(world, tmp_path):
    from gumbel_rerank.training.compare import check_same_settings
    from gumbel_rerank.training.config import TrainConfig

    train = tmp_path / "train.jsonl"
    shutil.copy(world.train, train)
    out = tmp_path / "run"
    overrides = world.overrides(out, **{"data.train": train, "optim.max_steps": 2})
    assert main(["train", *overrides]) == 0
    cfg = load_config(TrainConfig, None, overrides)
    check_same_settings(out, cfg)  # records the data
    check_same_settings(out, cfg)  # same content: fine
    train.write_text("".join(train.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(RuntimeError, match="content of data.train changed"):
        check_same_settings(out, cfg)


def test_a_run_saved_before_a_config_key_existed_is_reused_and_a_changed_key_is_not(world, tmp_path):
    from gumbel_rerank.training.compare import check_same_settings
    from gumbel_rerank.training.config import TrainConfig

    out = tmp_path / "run"
    overrides = world.overrides(out, **{"optim.max_steps": 2})
    assert main(["train", *overrides]) == 0
    cfg = load_config(TrainConfig, None, overrides)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["reader"]["parallel_lm"]  # as written before the decoder reader existed
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    check_same_settings(out, cfg)  # the absent section reads at its defaults: the same run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)  # a finished run moved to another folder is still the same run
    check_same_settings(moved, load_config(TrainConfig, None, world.overrides(moved, **{"optim.max_steps": 2})))
    saved["optim"]["lr"] = 123.0
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(RuntimeError, match="optim.lr: 123.0"):
        check_same_settings(out, cfg)


def test_the_protocol_table_names_evidence_at_k_where_facts_may_be_restated(tmp_path):
    """With evidence roles the first column is Evidence@k (a fact found through any passage
    stating it), which differs from AllGold@k on the redundant data: the label must say so."""
    from gumbel_rerank.demo.compare import PROTOCOL_RECIPE, compare_config
    from gumbel_rerank.training.protocol import table_columns

    cfg = compare_config(tmp_path, overrides=[], recipe=PROTOCOL_RECIPE)
    columns = table_columns(cfg, ["uncued"])
    assert columns[0] == ("Evidence@3", ("evidence", "{r}", "Evidence@3"))
    assert [c for c, _ in columns[1:]] == ["bridge R@3", "answer R@3", "answer R@3 uncued", "EM@3"]
    cfg.data.evidence_roles = []
    assert table_columns(cfg)[0] == ("AllGold@3", ("rankings", "{r}", "AllGold@3"))


def lce_row(out):
    return (out / "protocol.md").read_text().split("| lce |")[1].splitlines()[0]


def models(out):
    return sorted(out.glob("*/*/*/model/model.safetensors"))


def run_lce_protocol(world, tmp_path, out):
    """The protocol on LCE alone into ``out``; its test file and command (without --out)."""
    test = tmp_path / "test.jsonl"
    shutil.copy(world.dev, test)
    cfg = protocol_config(world, tmp_path / "c.yaml", test)
    command = ["compare", "--tune", "--config", str(cfg), "--objectives", "lce"]
    assert main([*command, "--out", str(out)]) == 0
    return test, cfg, command


def test_finished_runs_outlive_their_folders_as_records_and_only_an_exact_match_is_taken(world, tmp_path):
    """A protocol whose run folders are gone takes its runs from protocol.json (its own, or
    --records of another) instead of training; the table is the same. A run under other
    settings is trained; a final run judged on other test questions is trained again; an
    interrupted call keeps the records it has not reached in the state it writes."""
    first = tmp_path / "first"
    test, _, command = run_lce_protocol(world, tmp_path, first)
    table = lce_row(first)
    for folder in ("tune", "final", "eval"):
        shutil.rmtree(first / folder)
    assert main([*command, "--out", str(first)]) == 0
    assert models(first) == [] and lce_row(first) == table

    second = tmp_path / "second"  # interrupted where the test is read: the finals' records are carried
    test.rename(tmp_path / "hidden.jsonl")
    assert main([*command, "--out", str(second), "--records", str(first / "protocol.json")]) == 1
    state = json.loads((second / "protocol.json").read_text())
    assert len(state["objectives"]["lce"]["trials"]) == 2 and len(state["carried"]) == 2
    (tmp_path / "hidden.jsonl").rename(test)
    assert main([*command, "--out", str(second)]) == 0  # its own state alone is enough
    assert models(second) == [] and lce_row(second) == table

    third = tmp_path / "third"  # another reader setting: every run is trained
    assert main([*command, "--out", str(third), "--records", str(first / "protocol.json"), "--reader.settings.text_maxlength=20"]) == 0
    assert len(models(third)) == 2 + 2

    fourth = tmp_path / "fourth"  # other test questions: the trials are taken, the finals trained and judged on them
    assert main([*command, "--out", str(fourth), "--records", str(first / "protocol.json"), "--compare.test_questions=6"]) == 0
    assert [p.parent.parent.parent.name for p in models(fourth)] == ["lce", "lce"]
    assert all(p.parent.parent.parent.parent.name == "final" for p in models(fourth))
    assert json.loads((fourth / "protocol.json").read_text())["objectives"]["lce"]["finals"]["1"]["test"]["questions"] == 6


def test_a_record_names_what_it_read_by_content(world, tmp_path):
    """The data is recorded by content: a copy elsewhere matches, changed content does not; a
    config key added after a record was made is read at its default."""
    from gumbel_rerank.training.records import record_config, record_differences

    cfg = protocol_config(world, tmp_path / "c.yaml", world.dev)
    run = load_config(CompareConfig, cfg)
    base = record_config(run)
    for key in ("data.train", "data.dev", "reader.path", "reranker.path"):
        assert base[key].startswith(("sha1:", "sha1-dir:")), key
    moved = tmp_path / "moved"
    shutil.copytree(world.reader, moved)
    run.reader.path = str(moved)
    assert record_differences(base, record_config(run)) == []
    weights = next(moved.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert [d.split(":")[0] for d in record_differences(base, record_config(run))] == ["reader.path"]
    run.reader.path = str(world.reader)
    copy = tmp_path / "train.jsonl"
    shutil.copy(world.train, copy)
    run.data.train = str(copy)
    assert record_differences(base, record_config(run)) == []
    copy.write_text("".join(copy.read_text().splitlines(keepends=True)[:-1]))
    assert [d.split(":")[0] for d in record_differences(base, record_config(run))] == ["data.train"]
    run.data.train = str(world.train)
    del base["reader.parallel_lm.block_template"]
    assert record_differences(base, record_config(run)) == []
    base["optim.lr"] = 123.0
    assert [d.split(":")[0] for d in record_differences(base, record_config(run))] == ["optim.lr"]


def test_records_made_before_runs_carried_their_config_are_adopted_only_for_the_same_experiment(world, tmp_path):
    from gumbel_rerank.training.records import load_records

    out = tmp_path / "out"
    test, cfg, command = run_lce_protocol(world, tmp_path, out)
    state = json.loads((out / "protocol.json").read_text())
    # the format of earlier sessions: no config per run, finals' test reports beside them
    state["test"]["lce"] = {}
    for record in state["objectives"].values():
        for trial in record["trials"]:
            del trial["config"]
        for seed, final in record["finals"].items():
            del final["config"]
            state["test"]["lce"][seed] = final.pop("test")
    old = tmp_path / "old.json"
    old.write_text(json.dumps(state))
    assert len(load_records([old]).entries) == 2 + 2

    adopted = tmp_path / "adopted"
    assert main([*command, "--out", str(adopted), "--records", str(old)]) == 0
    assert models(adopted) == [] and lce_row(adopted) == lce_row(out)
    text = (adopted / "protocol.md").read_text()
    assert "4 of the 4 runs were taken from records" in text and "4 of them from states made before" in text
    assert "by unrecorded earlier code" in text
    again = json.loads((adopted / "protocol.json").read_text())
    trials = again["objectives"]["lce"]["trials"]
    assert all("config" not in t and t["adopted"]["context"]["budget"] == state["budget"] for t in trials)
    # adopted again from that state by a later call, with the same checks
    later = tmp_path / "later"
    assert main([*command, "--out", str(later), "--records", str(adopted / "protocol.json")]) == 0
    assert models(later) == []

    other_budget = tmp_path / "other-budget"  # a budget of its own: nothing adopted
    assert main([*command, "--out", str(other_budget), "--records", str(old), "--tune.patience=2"]) == 0
    assert len(models(other_budget)) == 2 + 2
    other_test = tmp_path / "other-test"  # other test content (the other data setting): nothing adopted
    test.write_text("".join(test.read_text().splitlines(keepends=True)[:-1]))
    assert main([*command, "--out", str(other_test), "--records", str(old)]) == 0
    assert len(models(other_test)) == 2 + 2

    with pytest.raises(ValueError, match="not a protocol.json"):
        (tmp_path / "bad.json").write_text('{"objectives": {"lce": {"trials": [{}]}}}')
        load_records([tmp_path / "bad.json"])


def test_records_option_is_refused_without_tune_or_for_a_missing_file(world, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--records", str(world.dev)])
    assert "--records needs --tune" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--tune", "--records", str(tmp_path / "none.json")])
    assert "no such file" in capsys.readouterr().err


def test_the_trial_table_script_prints_every_trial_of_every_setting(tmp_path):
    """benchmarks/protocol_trials.py: rows per objective and setting, the chosen trial in bold,
    an unfinished objective's missing trials as dashes."""
    import subprocess
    import sys
    from pathlib import Path

    def state(values, chosen):
        trials = [{"settings": {"optim.lr": 10.0**-i}, "best_dev": v, "best_step": 50 * (i + 1)} for i, v in enumerate(values)]
        record = {"trials": trials, "finals": {}, **({"chosen": chosen} if chosen is not None else {})}
        return {"metric": "AllGold@2", "budget": {"trials": 3}, "objectives": {"loop": record, "lce": {"trials": trials[:1], "finals": {}}}}

    (tmp_path / "a.json").write_text(json.dumps(state([0.5, 0.25, 0.75], 2)))
    (tmp_path / "b.json").write_text(json.dumps(state([0.5, None, 0.1], 0)))
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "benchmarks/protocol_trials.py", f"a={tmp_path / 'a.json'}", f"b={tmp_path / 'b.json'}"],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| loop, a", "| loop, b", "| lce, a", "| lce, b"]
    assert "**0.750** at step 150 (lr=0.01)" in lines[2] and "**0.500** at step 50 (lr=1.0)" in lines[3]
    assert "NaN at step 100" in lines[3] and lines[4].endswith("| – | – |")

    # --readme: the table between the markers, rows by display name; every other line kept
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nbefore\n<!-- trial-table -->\nold table\n<!-- /trial-table -->\nafter\n")
    command = [sys.executable, "benchmarks/protocol_trials.py", f"a={tmp_path / 'a.json'}", "--readme", str(readme)]
    for _ in range(2):  # a second run rewrites the same
        subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
        text = readme.read_text()
        assert text.startswith("# Title\n\nbefore\n<!-- trial-table -->\n\n| objective |")
        assert text.endswith("|\n\n<!-- /trial-table -->\nafter\n")
        assert "old table" not in text and "| LOOP, a | " in text and "| LCE, a | " in text
    readme.write_text("no markers\n")
    refused = subprocess.run(command, cwd=root, capture_output=True, text=True)
    assert refused.returncode != 0 and str(readme) in refused.stderr and readme.read_text() == "no markers\n"


def test_the_readme_tables_script_puts_each_setting_and_one_compute_table_between_markers(tmp_path):
    """benchmarks/protocol_readme.py on the committed finished reports: each setting's quality
    table and one compute table with a setting column go between the README's markers, rows by
    display name, every other line kept; a missing marker or a report without tables is refused
    naming the file, and the README is left as it was."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    results = root / "benchmarks" / "results" / "protocol"
    readme = tmp_path / "README.md"
    marked = "".join(f"<!-- {m} -->\nold\n<!-- /{m} -->\ntext {m}\n" for m in ("protocol-results:chain", "protocol-results:redundant", "protocol-compute"))
    readme.write_text(marked)
    command = [sys.executable, "benchmarks/protocol_readme.py", f"chain={results / 'chain_protocol.md'}",
               f"redundant={results / 'redundant_protocol.md'}", "--readme", str(readme)]  # fmt: skip
    subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    text = readme.read_text()
    assert "old" not in text and all(f"text {m}" in text for m in ("protocol-results:chain", "protocol-compute"))
    chain = text.split("<!-- protocol-results:chain -->")[1].split("<!-- /protocol-results:chain -->")[0]
    assert "| incoming order (BM25) | 0.184 |" in chain and "| LOOP | 0.996 ± 0.000 |" in chain and "| loop |" not in chain
    compute = text.split("<!-- protocol-compute -->")[1].split("<!-- /protocol-compute -->")[0].strip().splitlines()
    assert compute[0].startswith("| objective | setting | reader passes / question |")
    names = ["| G-Rerank", "| PDist", "| LOOP", "| EMDR2", "| ADist", "| LCE"]
    assert [line.split(" | ")[:2] for line in compute[2:]] == [[n, s] for s in ("chain", "redundant") for n in names]

    readme.write_text("no markers\n")
    refused = subprocess.run(command, cwd=root, capture_output=True, text=True)
    assert refused.returncode != 0 and "needs one <!-- protocol-results:chain --> line" in refused.stderr
    assert readme.read_text() == "no markers\n"
    (tmp_path / "empty.md").write_text("# nothing\n")
    refused = subprocess.run([*command[:2], f"chain={tmp_path / 'empty.md'}"], cwd=root, capture_output=True, text=True)
    assert refused.returncode != 0 and "empty.md: no '| ranking |' quality table" in refused.stderr


def test_the_repro_script_takes_a_trial_or_a_final_run_and_reads_every_dev_point(tmp_path, monkeypatch):
    """benchmarks/protocol_repro.py: a tuning trial (0-based) trains with the tuning seed and its
    own settings; a final run with its seed and the chosen trial's settings; a state without
    that final run is refused naming it; the dev curve is read from metrics.jsonl in order."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from protocol_repro import dev_curve, recorded_run

    trials = [{"settings": {"optim.lr": 0.1}, "curve": [[50, 0.1]]}, {"settings": {"optim.lr": 0.2}, "curve": [[50, 0.2]]}]
    state = {"budget": {"tuning_seed": 0}, "objectives": {"loop": {"trials": trials, "chosen": 1, "finals": {"3": {"curve": [[50, 0.3], [100, 0.4]]}}}}}
    assert recorded_run(state, "loop", 0, None) == ("trial 1", {"optim.lr": 0.1}, 0, [[50, 0.1]])
    assert recorded_run(state, "loop", None, 3) == ("final seed 3", {"optim.lr": 0.2}, 3, [[50, 0.3], [100, 0.4]])
    with pytest.raises(KeyError, match="no final run with seed 2"):
        recorded_run(state, "loop", None, 2)
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in ({"step": 10, "loss": 1.0}, {"step": 50, "dev/M": 0.5}, {"step": 100, "dev/M": 0.25})))
    assert dev_curve(log, "M") == [(50, 0.5), (100, 0.25)] and dev_curve(tmp_path / "none.jsonl", "M") == []


def test_the_code_commit_names_the_last_change_to_the_package():
    """Results committed while a protocol runs move HEAD, not the code: the commit recorded
    is the package's last change, so such commits do not read as a change of code."""
    import re
    import subprocess
    from pathlib import Path

    import gumbel_rerank

    package = Path(gumbel_rerank.__file__).parent
    commit = code_commit()
    if not (package.parent / ".git").exists():  # an installed copy records no commit
        assert commit is None
        return
    last = subprocess.run(["git", "-C", str(package), "log", "-1", "--format=%H", "--", "."], capture_output=True, text=True)
    assert commit is not None and re.fullmatch(r"[0-9a-f]{12}(\+dirty)?", commit)
    assert commit.removesuffix("+dirty") == last.stdout.strip()[:12]
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert package_commit_at(head.stdout.strip()) == last.stdout.strip()[:12]
    assert package_commit_at("f" * 40) == "f" * 12  # unknown here: kept, shortened


def test_made_by_reads_what_trained_each_segment_of_a_run(tmp_path):
    base = {"gumbel_rerank": "0.1.0", "cuda available": "False"}
    (tmp_path / "versions.resumed-at-3.json").write_text(json.dumps({**base, "git commit": "b" * 12}))
    # resumed from a copied checkpoint: what made steps 0-2 is not known, and says so
    assert made_by(tmp_path)["commit"] == f"unknown; from step 3: {'b' * 12}"
    (tmp_path / "versions.resumed-at-3.json").unlink()
    (tmp_path / "versions.json").write_text(json.dumps({**base, "git commit": "a" * 12, "device": "cuda:0"}))
    assert made_by(tmp_path) == {"gumbel_rerank": "0.1.0", "commit": "a" * 12, "device": "cuda:0"}
    (tmp_path / "versions.resumed-at-219.json").write_text(json.dumps({**base, "git commit": "a" * 12}))
    (tmp_path / "versions.resumed-at-1000.json").write_text(json.dumps({**base, "git commit": "b" * 12 + "+dirty"}))
    assert made_by(tmp_path)["commit"] == f"{'a' * 12}; from step 1000: {'b' * 12}+dirty"  # by step, not by name
    # written before the device and the package commit were recorded: HEAD, and no CUDA means cpu
    (tmp_path / "versions.json").write_text(json.dumps({**base, "git commit": "f" * 40}))
    assert made_by(tmp_path)["device"] == "cpu" and made_by(tmp_path)["commit"].startswith("f" * 12 + "; from step 219: ")
    for path in tmp_path.glob("versions.resumed-at-*.json"):
        path.unlink()
    (tmp_path / "versions.json").write_text(json.dumps({**base, "git commit": "unknown", "cuda available": "True"}))
    assert made_by(tmp_path) == {"gumbel_rerank": "0.1.0", "commit": "unknown", "device": "unknown"}
    for bad, message in (("{", "not JSON"), ("[]", "not a JSON object")):
        (tmp_path / "versions.json").write_text(bad)
        with pytest.raises(ValueError, match=f"versions.json: {message}.*which code trained the run"):
            made_by(tmp_path)


def test_the_report_names_one_code_once_whatever_older_records_say():
    """Records written before the package commit was recorded name a HEAD (40 or 12 digits)
    and may say None: one code still reads as one commit, and an unknown device as such."""
    import subprocess
    from pathlib import Path

    import gumbel_rerank

    package_dir = str(Path(gumbel_rerank.__file__).parent)
    head = subprocess.run(["git", "-C", package_dir, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    package = package_commit_at(head)
    runs = [
        {"recorded_by": {"commit": head, "device": None}},
        {"recorded_by": {"commit": head[:12], "device": "cpu"}},
        {"recorded_by": {"commit": package, "device": "cpu"}},
    ]
    note = provenance_note({"objectives": {"loop": {"trials": runs, "finals": {}}}})
    assert "made on cpu, unknown" in note and "commits" not in note
    runs.append({"recorded_by": {"commit": "0123456789ab", "device": "cpu"}})
    note = provenance_note({"objectives": {"loop": {"trials": runs, "finals": {}}}})
    assert f"code at commits 0123456789ab, {package} (" in note
