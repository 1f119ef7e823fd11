"""A trained reranker is a shareable model: its folder has a model card whose YAML header
parses and whose loading snippets (sentence-transformers, transformers, gumbel_rerank) run and
return our scores, and sentence-transformers' files so ``CrossEncoder(path).predict`` needs no
extra argument; a run's card carries its report's numbers; ``gumbel-rerank card`` rewrites it."""

from __future__ import annotations

import json
import re

import pytest
import torch
from tiny_world import build_world

from gumbel_rerank.cli import main
from gumbel_rerank.rerankers import Reranker
from gumbel_rerank.rerankers.card import MODEL_PATH, read_card_header
from gumbel_rerank.rerankers.config import format_passage


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", *world.overrides(out, **{"optim.max_steps": 3, "run.eval_every": 3})]) == 0
    return out


def snippets(directory) -> dict[str, str]:
    """The card's python code blocks by their heading, the model path filled in."""
    text = (directory / "README.md").read_text()
    blocks = re.findall(r"### (.+?)\n\n```python\n(.*?)```", text, flags=re.S)
    return {title: code.replace(MODEL_PATH, str(directory)) for title, code in blocks}


def test_every_snippet_of_the_card_returns_our_scores(trained):
    model = trained / "model"
    reranker = Reranker.from_pretrained(model).eval()
    found = snippets(model)
    assert set(found) == {"sentence-transformers", "transformers", "gumbel_rerank"}
    expected = None
    for title, code in found.items():
        scope: dict = {}
        exec(compile(code, f"<card snippet {title}>", "exec"), scope)  # noqa: S102 - the card's own code
        if expected is None:
            pairs = [(scope["question"], format_passage(p, reranker.config.template)) for p in scope["passages"]]
            expected = reranker.predict(pairs)
        assert scope["scores"] == pytest.approx(expected, abs=1e-5), title


def test_crossencoder_needs_no_argument_and_the_header_parses(trained):
    from sentence_transformers import CrossEncoder

    model = trained / "model"
    ours = Reranker.from_pretrained(model).eval()
    pairs = [("which value", "a passage of some words"), ("another question here", "x")]
    assert CrossEncoder(str(model)).predict(pairs).tolist() == pytest.approx(ours.predict(pairs), abs=1e-5)
    meta = read_card_header(model)
    assert meta["library_name"] == "sentence-transformers" and "gumbel-rerank" in meta["tags"]
    assert "objective:gumbel" in meta["tags"]
    assert json.loads((model / "config_sentence_transformers.json").read_text())["activation_fn"].endswith("Identity")


def test_the_card_carries_the_runs_report_and_card_rewrites_it(trained):
    model = trained / "model"
    report = json.loads((trained / "report" / "report.json").read_text())
    text = (model / "README.md").read_text()
    for key, value in report["rankings"]["reranker"].items():
        if key in ("R@1", "MRR"):
            assert f"| {key} | {value:.4f} |" in text
    assert "| steps | 3 |" in text and "{title}: {text}" in text and "objective name | gumbel" in text
    (model / "README.md").write_text("stale")
    test_report = dict(report, questions=7)
    path = trained / "test_report.json"
    path.write_text(json.dumps(test_report))
    assert main(["card", str(trained), "--test-report", str(path)]) == 0
    assert "## Test metrics (7 questions)" in (model / "README.md").read_text()
    assert main(["card", str(trained / "nowhere")]) == 1


def test_a_rankt5_folder_says_how_to_score_it_and_its_snippet_runs(tmp_path):
    from tiny_encoders import tiny_t5_config, train_t5_tokenizer

    from gumbel_rerank.rerankers.model import RerankerConfig, build_reranker_from_config

    tok = train_t5_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    reranker = build_reranker_from_config(tiny_t5_config(len(tok)), tok, RerankerConfig(kind="rankt5", max_length=32)).eval()
    model = tmp_path / "rankt5"
    reranker.save_pretrained(model)
    assert not (model / "config_sentence_transformers.json").exists()
    assert read_card_header(model)["library_name"] == "transformers"
    found = snippets(model)
    code = next(code for title, code in found.items() if title.startswith("transformers"))
    scope: dict = {}
    exec(compile(code, "<rankt5 snippet>", "exec"), scope)  # noqa: S102
    pairs = [(scope["question"], format_passage(p, reranker.config.template)) for p in scope["passages"]]
    assert scope["scores"] == pytest.approx(reranker.predict(pairs), abs=1e-5)
