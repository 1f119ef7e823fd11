"""Evaluation: ir_measures-backed ranking metrics against hand values, all-gold-in-top-k, the
indirect subset, end-to-end EM/F1 against independent reader calls, reports and the CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import ir_measures
import pytest
import torch
from ir_measures import RR, Qrel, ScoredDoc
from tiny_world import build_world

from gumbel_rerank.cli.evaluate import cli_main
from gumbel_rerank.data.answers import exact_match, f1
from gumbel_rerank.data.questions import Passage, Question, load_questions
from gumbel_rerank.evaluation import (
    RerankerEvaluator,
    all_gold_in_top_k,
    evaluate,
    order_metrics,
    rank_order,
    ranking_metrics,
)
from gumbel_rerank.evaluation.report import markdown_table, render_markdown, write_report
from gumbel_rerank.masks import hard_topk
from gumbel_rerank.reader.fid import FiDReader, FiDReaderConfig
from gumbel_rerank.rerankers.model import Reranker

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAXLEN = 24


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two cores shared with another job: tiny models in several threads spend their time waiting.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"), n_train=4, n_dev=12)


# ------------------------------------------------------------------------- ranking by hand


def ndcg(ranks: list[int], n_gold: int, k: int) -> float:
    """Binary-relevance nDCG@k from the 1-based ranks of the gold passages."""
    dcg = sum(1 / math.log2(r + 1) for r in ranks if r <= k)
    ideal = sum(1 / math.log2(r + 1) for r in range(1, min(n_gold, k) + 1))
    return dcg / ideal


def test_ranking_metrics_match_hand_values_with_ties_and_a_question_without_gold():
    scores = {
        # order 1, 2, 0, 3: gold 2 at rank 2, gold 0 at rank 3
        "q1": [0.2, 0.9, 0.5, 0.1],
        # all tied: ranked by position, so gold 0 is first (trec_eval alone would put it last)
        "q2": [0.5, 0.5, 0.5],
        # no gold: counted, excluded (were it scored 0, every mean below would be lower)
        "q3": [1.0, 2.0],
    }
    gold = {"q1": [0, 2], "q2": [0], "q3": []}
    m = ranking_metrics(scores, gold, ks=(1, 2, 3))
    assert m["questions"] == 2 and m["questions_without_gold"] == 1
    assert m["R@1"] == pytest.approx((0 + 1) / 2)
    assert m["R@2"] == pytest.approx((0.5 + 1) / 2)
    assert m["R@3"] == pytest.approx((1 + 1) / 2)
    assert m["MRR"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["nDCG@2"] == pytest.approx((ndcg([2, 3], 2, 2) + ndcg([1], 1, 2)) / 2)
    assert m["nDCG@3"] == pytest.approx((ndcg([2, 3], 2, 3) + 1.0) / 2)
    assert m["AllGold@1"] == pytest.approx(0.5)  # q2 only
    assert m["AllGold@2"] == pytest.approx(0.5)  # q1 needs its top 3
    assert m["AllGold@3"] == pytest.approx(1.0)
    assert ndcg([2, 3], 2, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_ties_are_broken_by_position_not_by_trec_evals_doc_id_order():
    # The hazard: trec_eval orders equal scores by doc id, descending as strings.
    raw = [ScoredDoc("q", str(i), 0.5) for i in range(3)]
    assert ir_measures.calc_aggregate([RR], [Qrel("q", "0", 1)], raw)[RR] == pytest.approx(1 / 3)
    # Ours: position 0 first among equals, as hard_topk (and so the reader) sees it.
    assert ranking_metrics({"q": [0.5, 0.5, 0.5]}, {"q": [0]})["MRR"] == 1.0
    assert ranking_metrics({"q": [0.5, 0.5, 0.5]}, {"q": [2]})["MRR"] == pytest.approx(1 / 3)
    # 12 tied candidates: "9" > "10" > "1" as strings would scramble positions 1, 9, 10.
    tied = [1.0] * 12
    for position in range(12):
        assert ranking_metrics({"q": tied}, {"q": [position]})["MRR"] == pytest.approx(
            1 / (position + 1)
        )


def test_rank_order_is_the_order_hard_topk_selects():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (50, 7), generator=gen).float()  # many ties
    scores[0, 2] = float("-inf")
    for k in (1, 3, 7):
        indices, _ = hard_topk(scores, None, k)
        for row in range(scores.shape[0]):
            assert rank_order(scores[row].tolist())[:k] == indices[row].tolist()
    assert rank_order([1.0, 3.0, 3.0, 2.0]) == [1, 2, 3, 0]
    with pytest.raises(ValueError, match="NaN"):
        rank_order([1.0, float("nan")])


def test_order_metrics_incoming_order_and_gold_outside_the_candidates():
    orders = {"a": [0, 1, 2], "b": [0, 1]}
    # b's only gold passage is not a candidate: b has no gold here, counted and excluded
    m = order_metrics(orders, {"a": [1], "b": [5]}, ks=(1, 2))
    assert (m["questions"], m["questions_without_gold"]) == (1, 1)
    assert (m["R@1"], m["R@2"], m["MRR"]) == (0.0, 1.0, 0.5)
    assert m["nDCG@2"] == pytest.approx(1 / math.log2(3))
    assert order_metrics(orders, {}, ks=(1,)) == {"questions": 0.0, "questions_without_gold": 2.0}
    with pytest.raises(ValueError, match="permutation"):
        order_metrics({"a": [0, 0, 1]}, {"a": [0]})


def test_all_gold_in_top_k_by_hand():
    order = [3, 0, 2, 1]
    assert not all_gold_in_top_k(order, [0, 2], 1)
    assert not all_gold_in_top_k(order, [0, 2], 2)  # 2 is third
    assert all_gold_in_top_k(order, [0, 2], 3)
    assert all_gold_in_top_k(order, [3], 1)
    assert not all_gold_in_top_k(order, [0, 2, 1], 2)  # more gold than k
    assert not all_gold_in_top_k(order, [7], 4)  # not a candidate
    with pytest.raises(ValueError, match="no gold"):
        all_gold_in_top_k(order, [], 2)


# ------------------------------------------------------------------------- indirect subset


def question(qid: str, passages: list[tuple[str, bool]], answer: str = "Polonium") -> Question:
    return Question(
        id=qid,
        question=f"question {qid}",
        target=answer,
        answers=(answer,),
        passages=tuple(Passage(title=f"t{i}", text=t, gold=g) for i, (t, g) in enumerate(passages)),
        gold_source="flag",
    )


HAND_QUESTIONS = [
    # gold 0 contains the answer (excluded from the indirect set), gold 2 does not (included)
    question(
        "bridge",
        [
            ("Curie discovered Polonium.", True),
            ("Paris is a city.", False),
            ("Marie Curie was born in Warsaw.", True),
            ("Polonium is radioactive.", False),  # has the answer, not gold
        ],
    ),
    question("direct", [("nothing here", False), ("It was Polonium.", True)]),  # no indirect
    question("nogold", [("nothing", False), ("Polonium!", False)]),
]


def test_indirect_subset_selection_and_retriever_only_report():
    assert HAND_QUESTIONS[0].indirect_gold_indices == (2,)
    report = evaluate(HAND_QUESTIONS, ks=(1, 2, 3), progress=False)
    assert report["questions"] == 3
    assert report["questions_with_gold"] == 2 and report["questions_without_gold"] == 1
    assert set(report["rankings"]) == {"retriever"} and "end_to_end" not in report
    direct = report["rankings"]["retriever"]
    # bridge: gold at ranks 1, 3; direct: gold at rank 2
    assert direct["R@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert direct["R@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert direct["MRR"] == pytest.approx((1 + 1 / 2) / 2)
    assert direct["AllGold@2"] == pytest.approx(0.5) and direct["AllGold@3"] == 1.0
    indirect = report["indirect"]
    assert indirect["questions"] == 1  # only "bridge"; its answer-containing gold is excluded
    row = indirect["retriever"]
    assert (row["R@1"], row["R@2"], row["R@3"]) == (0.0, 0.0, 1.0)
    assert row["MRR"] == pytest.approx(1 / 3)
    assert row["nDCG@3"] == pytest.approx(1 / math.log2(4))
    # The direct subset: answer-containing gold ("bridge": position 0, "direct": position 1).
    assert HAND_QUESTIONS[0].direct_gold_indices == (0,)
    assert HAND_QUESTIONS[1].direct_gold_indices == (1,)
    assert HAND_QUESTIONS[2].direct_gold_indices == ()  # "Polonium!" has the answer, not gold
    answer = report["direct"]
    assert answer["questions"] == 2
    row = answer["retriever"]
    assert (row["R@1"], row["R@2"]) == (0.5, 1.0)
    assert row["MRR"] == pytest.approx((1 + 1 / 2) / 2)
    json.dumps(report, allow_nan=False)  # JSON-able as is


# ------------------------------------------------------------------------- end to end


def noisy_reader(world) -> FiDReader:
    """The world's reader with larger random weights: its answers then depend on the passages
    (the default init answers "" to everything, which would make EM checks vacuous)."""
    reader = FiDReader.from_pretrained(world.reader, config=FiDReaderConfig(text_maxlength=MAXLEN))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in reader.model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return reader


def answer_from(reader, q: Question, chosen: list[int], max_new_tokens: int) -> str:
    """The reader's greedy answer reading only the ``chosen`` passages (encoded on their own)."""
    passages = [{"title": q.passages[i].title, "text": q.passages[i].text} for i in chosen]
    states = reader.encode(reader.tokenize_passages([q.question], [passages]))
    return reader.generate(states, max_new_tokens=max_new_tokens)[0]


@torch.no_grad()
def test_end_to_end_em_f1_equal_independent_reader_calls(world):
    reader = noisy_reader(world)
    reranker = Reranker.from_pretrained(world.reranker).eval()
    tokens = 3
    # Answers = what the reader says from the retriever's first passage alone: the retriever's
    # EM@1 must then be exactly 1, and the other rows are not all zero by construction.
    questions = []
    for q in load_questions(world.dev):
        answer = answer_from(reader, q, [0], tokens)
        questions.append(dataclasses.replace(q, target=answer, answers=(answer,)))
    assert len({q.target for q in questions}) > 3, "reader answers do not vary; test is vacuous"

    em_ks = (1, 2, 5)
    report = evaluate(
        questions,
        reader=reader,
        reranker=reranker,
        ks=(1, 2),
        em_ks=em_ks,
        batch_size=5,  # batches of 5, 5, 2: padding rows and a short last batch
        progress=False,
        max_new_tokens=tokens,
    )
    e2e = report["end_to_end"]
    assert set(e2e) == {"reranker", "retriever"}
    assert e2e["retriever"]["EM@1"] == 1.0
    for k in em_ks:
        expected: dict[str, dict[str, list[float]]] = {}
        for q in questions:
            candidates = [{"title": p.title, "text": p.text} for p in q.passages]
            scores = reranker.score([q.question], [candidates]).scores[0].tolist()
            by_score = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
            for name, chosen in (("reranker", by_score[:k]), ("retriever", list(range(k)))):
                chosen = chosen[: len(q.passages)]
                answer = answer_from(reader, q, chosen, tokens)
                row = expected.setdefault(name, {"EM": [], "F1": []})
                row["EM"].append(exact_match(answer, q.answers))
                row["F1"].append(f1(answer, q.answers))
        for name, row in expected.items():
            assert e2e[name][f"EM@{k}"] == pytest.approx(sum(row["EM"]) / len(questions))
            assert e2e[name][f"F1@{k}"] == pytest.approx(sum(row["F1"]) / len(questions))
    # not everything is 1: the reranker's picks differ from passage 0 for some questions
    assert e2e["reranker"]["EM@1"] < 1.0 or e2e["retriever"]["F1@5"] < 1.0

    # The reranker ranking rows agree with the reranker's scores computed independently.
    orders = {}
    for i, q in enumerate(questions):
        candidates = [{"title": p.title, "text": p.text} for p in q.passages]
        orders[str(i)] = reranker.score([q.question], [candidates]).scores[0].tolist()
    gold = {str(i): list(q.gold_indices) for i, q in enumerate(questions)}
    for key, value in ranking_metrics(orders, gold, ks=(1, 2)).items():
        if key not in ("questions", "questions_without_gold"):
            assert report["rankings"]["reranker"][key] == pytest.approx(value), key

    # The in-loop evaluator reports the same ranking numbers.
    in_loop = RerankerEvaluator(reader, questions, k=2, ks=(1, 2), batch_size=4)(reranker, 0)
    for key in ("R@1", "R@2", "MRR", "nDCG@2", "AllGold@2"):
        assert in_loop[key] == pytest.approx(report["rankings"]["reranker"][key]), key
    assert math.isfinite(in_loop["loss_hard_topk"])


@torch.no_grad()
def test_groups_equal_separate_evaluations_of_their_questions(world):
    """Each group's sections are what evaluating its questions alone gives (ranking rows,
    indirect/direct subsets, EM/F1), whatever the batch boundaries; an unknown id is refused."""
    reader = noisy_reader(world)
    reranker = Reranker.from_pretrained(world.reranker).eval()
    questions = list(load_questions(world.dev))
    odd = [q for i, q in enumerate(questions) if i % 2]  # interleaved: groups cut across batches
    even = [q for i, q in enumerate(questions) if not i % 2]
    settings = {"reader": reader, "reranker": reranker, "ks": (1, 2), "em_ks": (1, 2), "progress": False, "max_new_tokens": 3}
    groups = {"odd": [q.id for q in odd], "even": [q.id for q in even], "none": []}
    report = evaluate(questions, batch_size=5, groups=groups, **settings)
    assert set(report["groups"]) == {"odd", "even", "none"}
    for name, subset in (("odd", odd), ("even", even)):
        alone = evaluate(subset, batch_size=3, **settings)
        alone.pop("config")
        assert report["groups"][name] == alone, name
    assert report["groups"]["odd"] != report["groups"]["even"]  # the comparison is not vacuous
    assert report["groups"]["none"]["questions"] == 0
    json.dumps(report, allow_nan=False)
    with pytest.raises(ValueError, match="group 'typo'.*not evaluated"):
        evaluate(questions, groups={"typo": ["no-such-question"]}, **settings)


# ------------------------------------------------------------------------- reports


def make_report() -> dict:
    return {
        "questions": 10,
        "questions_with_gold": 8,
        "questions_without_gold": 2,
        "rankings": {
            "reranker": {
                "R@1": 0.123,
                "R@2": 0.5,
                "MRR": 0.25,
                "nDCG@1": 0.123,
                "AllGold@2": 0.375,
            },
            "retriever": {
                "R@1": 0.0625,
                "R@2": 0.4,
                "MRR": 0.2,
                "nDCG@1": 0.0625,
                "AllGold@2": 0.3,
            },
        },
        "indirect": {
            "questions": 4,
            "reranker": {"R@1": 0.75, "R@2": 0.875, "MRR": 0.8, "nDCG@1": 0.75, "AllGold@2": 0.5},
            "retriever": {"R@1": 0.25, "R@2": 0.5, "MRR": 0.4, "nDCG@1": 0.25, "AllGold@2": 0.25},
        },
        "end_to_end": {
            "reranker": {"EM@1": 0.612, "F1@1": 0.7777},
            "retriever": {"EM@1": 0.5, "F1@1": float("nan")},
        },
        "config": {"ks": [1, 2], "tie_breaking": "by position"},
    }


def test_markdown_table():
    table = markdown_table(
        {"a|b": {"x": 0.5, "y": None}, "c": {"x": float("nan"), "y": 3}}, ["x", "y"], label="row"
    )
    assert table.splitlines() == [
        "| row | x | y |",
        "|---|---:|---:|",
        "| a\\|b | 0.5000 | – |",
        "| c | – | 3 |",
    ]


def test_write_report_writes_json_markdown_and_plots(tmp_path):
    log = tmp_path / "metrics.jsonl"
    lines = [
        {"step": 10, "loss": 2.0, "loss_hard": 2.5, "lr": 1e-4},
        {"step": 20, "loss": 1.5, "loss_hard": 2.0, "dev/R@1": 0.3, "dev/MRR": 0.4,
         "dev/loss_hard_topk": 3.0, "dev/questions": 20.0},
        {"step": 30, "loss": 1.0, "loss_hard": 1.2, "dev/R@1": 0.6, "dev/MRR": 0.7},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 40, "lo')  # cut line
    out = tmp_path / "report"
    paths = write_report(make_report(), out, metrics_log=log)
    names = ["report.json", "report.md", "recall_at_k.png", "training_curves.png"]
    assert paths == [out / name for name in names]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temp files left
    for path in paths[2:]:
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 5000

    data = json.loads((out / "report.json").read_text())
    assert data["rankings"]["reranker"]["R@1"] == 0.123
    assert data["end_to_end"]["retriever"]["F1@1"] is None  # NaN is not JSON

    md = (out / "report.md").read_text()
    assert md == render_markdown(make_report())
    assert "| reranker | 12.3 | 50.0 | 25.0 |" in md  # R@1, R@2, MRR in percent
    assert "| retriever | 6.2 | 40.0 | 20.0 |" in md
    assert "| reranker | 37.5 |" in md  # AllGold@2
    assert "| reranker | 75.0 | 87.5 | 80.0 |" in md  # indirect subset
    assert "| reranker | 61.2 | 77.8 |" in md and "| retriever | 50.0 | – |" in md  # EM, F1
    assert "4 questions have a gold passage that does not contain the answer" in md
    assert "10 questions; 8 with at least one gold passage" in md

    # Without a metrics log: no training curves; a missing log is an error before writing.
    other = tmp_path / "other"
    assert [p.name for p in write_report(make_report(), other)] == names[:3]
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        write_report(make_report(), tmp_path / "third", metrics_log=tmp_path / "missing.jsonl")
    assert not (tmp_path / "third").exists()


def test_report_of_a_set_without_indirect_or_gold_passages(tmp_path):
    report = evaluate(HAND_QUESTIONS[2:], ks=(1,), progress=False)
    assert report["rankings"]["retriever"] == {} and report["questions_without_gold"] == 1
    paths = write_report(report, tmp_path)
    md = paths[1].read_text()
    assert "No question has a gold passage." in md
    assert "No question has a gold passage that does not contain the answer." in md
    assert "No question has a gold passage that contains the answer." in md
    assert paths[2].read_bytes().startswith(PNG_SIGNATURE)


# ------------------------------------------------------------------------- CLI


def test_cli_end_to_end_on_the_tiny_world(world, tmp_path, capsys):
    out = tmp_path / "eval"
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 3.0, "dev/R@1": 0.2}\n{"step": 2, "loss": 2.0}\n')
    code = cli_main(
        [
            "--data", str(world.dev), "--reranker", str(world.reranker),
            "--reader", str(world.reader), "--text-maxlength", str(MAXLEN),
            "--k", "1", "2", "5", "--em-k", "1", "2", "--max-new-tokens", "3",
            "--batch-size", "8", "--out", str(out), "--metrics-log", str(log),
            "--device", "cpu", "--no-progress", "--compile",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "## Ranking: gold passages" in printed and "| reranker |" in printed
    names = {"report.json", "report.md", "recall_at_k.png", "training_curves.png"}
    assert {p.name for p in out.iterdir()} == names
    report = json.loads((out / "report.json").read_text())
    assert report["questions"] == 12 and report["questions_without_gold"] == 0
    assert set(report["rankings"]) == {"reranker", "retriever"}
    assert set(report["end_to_end"]["reranker"]) == {"EM@1", "F1@1", "EM@2", "F1@2"}
    # retriever row of the tiny world: the gold passage sits anywhere; R@5 covers all 5
    assert report["rankings"]["retriever"]["R@5"] == 1.0
    assert report["config"]["reader_path"] == str(world.reader)
    assert report["config"]["reranker_compiled"] is True  # --compile: the compiled model scored


def test_cli_bad_paths_exit_2_naming_the_path(world, tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert cli_main(["--data", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err

    no_reranker = tmp_path / "no_reranker"
    assert cli_main(["--data", str(world.dev), "--reranker", str(no_reranker)]) == 2
    assert str(no_reranker) in capsys.readouterr().err

    no_reader = tmp_path / "no_reader"
    assert cli_main(["--data", str(world.dev), "--reader", str(no_reader)]) == 2
    assert str(no_reader) in capsys.readouterr().err

    no_log = tmp_path / "no_log.jsonl"
    args = ["--data", str(world.dev), "--out", str(tmp_path / "o"), "--metrics-log", str(no_log)]
    assert cli_main(args) == 2
    assert str(no_log) in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

    assert cli_main(["--data", str(world.dev), "--k", "0"]) == 2  # argparse error


def test_a_full_disk_while_writing_a_report_keeps_the_previous_report_whole(world, tmp_path):
    """A write error while writing the report (RLIMIT_FSIZE in the child standing in for a full
    disk, set below the figure's size): exit status 2 naming the file; the previous report's
    four files are all byte-identical (none replaced, so no new JSON beside an old figure) and
    no temporary file is left; the same command writes the new report once space is back."""
    import subprocess
    import sys

    from small_disk import run_on_a_small_disk

    out, log = tmp_path / "eval", tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.0}\n')
    base = ["--data", str(world.dev), "--out", str(out), "--metrics-log", str(log), "--no-progress"]
    assert cli_main([*base, "--k", "1", "2"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    limit = min(len(data) for name, data in before.items() if name.endswith(".png")) // 2
    assert max(len(before["report.json"]), len(before["report.md"])) < limit  # the text files fit
    cmd = [sys.executable, "-m", "gumbel_rerank", "evaluate", *base, "--k", "1", "2", "3"]
    failed = run_on_a_small_disk(cmd, limit)
    assert failed.returncode == 2, failed.stderr[-2000:]
    assert f"while writing {out / 'recall_at_k.png'}" in failed.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "R@3" in json.loads((out / "report.json").read_text())["rankings"]["retriever"]
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


def test_evidence_metrics_count_a_fact_as_found_when_any_of_its_passages_is():
    from gumbel_rerank.evaluation.metrics import evidence_metrics

    roles = {
        "a": ["distractor:x", "bridge", "answer", "bridge:restated", "answer:restated"],
        "b": ["bridge:restated", "distractor:x", "answer", "bridge"],
        "c": ["bridge", "distractor:x"],  # no answer passage: left out
    }
    orders = {"a": [3, 0, 4, 1, 2], "b": [1, 2, 3, 0], "c": [0, 1]}
    got = evidence_metrics(orders, roles, ("bridge", "answer"), ks=(1, 2, 3))
    assert (got["questions"], got["questions_without_evidence"]) == (2, 1)
    # a: the restated bridge at 1, the restated answer at 3; b: the answer at 2, a bridge at 3
    assert (got["bridge@1"], got["answer@1"], got["Evidence@1"]) == (0.5, 0.0, 0.0)
    assert (got["bridge@2"], got["answer@2"], got["Evidence@2"]) == (0.5, 0.5, 0.0)
    assert (got["bridge@3"], got["answer@3"], got["Evidence@3"]) == (1.0, 1.0, 1.0)
    # one passage per fact: Evidence@k is AllGold@k of those passages
    single = {"a": ["bridge", "answer", "distractor:x"]}
    from gumbel_rerank.evaluation.metrics import order_metrics

    for order in ([0, 2, 1], [2, 1, 0], [1, 0, 2]):
        mine = evidence_metrics({"a": order}, single, ("bridge", "answer"), ks=(2,))
        assert mine["Evidence@2"] == order_metrics({"a": order}, {"a": [0, 1]}, ks=(2,))["AllGold@2"]
