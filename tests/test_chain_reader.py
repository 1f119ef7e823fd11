"""Chain readers (the demo's second attempt): demo data v2 (shared name pool, chain targets),
passage roles and named targets through the loader, curricula that select contexts by role
and mix example kinds, readers whose answer is the chain's last word, the chain reading check."""

from __future__ import annotations

import json

import pytest
from tiny_world import build_world

from gumbel_rerank.config import ConfigError, load_config
from gumbel_rerank.data import load_questions
from gumbel_rerank.demo.dataset import DemoSpec, entity_pools, generate_split
from gumbel_rerank.demo.reading_check import CHAIN_CONTEXTS, context_passages
from gumbel_rerank.objectives.reader_nll import CurriculumStage, ExampleKind, select_examples
from gumbel_rerank.reader.fid import FiDReader, FiDReaderConfig, final_answer
from gumbel_rerank.training.collate import make_collate
from gumbel_rerank.training.config import ReaderTrainConfig

HARD = ["bridge", "answer", "distractor:entity_link", "distractor:linked_attribute", "distractor:entity_trap"]
V2 = DemoSpec(n_train=40, n_dev=10, n_test=10, shared_pool=60, chain_target=True, answer_cue=0.0)


def test_demo_data_v2_shares_one_pool_and_trains_on_the_chain():
    pools = entity_pools(V2)
    assert pools["train"] == pools["dev"] == pools["test"] and len(pools["train"]) == 60
    for record in generate_split(V2, "dev"):
        middle, answer = record["bridge_entity"], record["answers"][0]
        assert record["target"] == f"{middle} {answer}" and record["answers"] == [answer]
        assert record["targets"] == {"answer": answer, "link": middle, "chain": f"{middle} {answer}"}
        assert not record["answer_cued"]
    plain = generate_split(DemoSpec(n_train=4, n_dev=4, n_test=4), "dev")
    assert all(r["target"] == r["answers"][0] for r in plain)  # v1 stays as it was
    with pytest.raises(ValueError, match="shared_pool"):
        DemoSpec(shared_pool=10)


def test_the_loader_keeps_roles_and_named_targets_and_checks_them(tmp_path):
    path = tmp_path / "dev.jsonl"
    records = generate_split(V2, "dev")
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    questions = load_questions(path, cache_dir=tmp_path / "cache")
    q = questions[0]
    assert [p.role for p in q.passages] == [c["role"] for c in records[0]["ctxs"]]
    assert q.named_target("link") == records[0]["bridge_entity"] and q.named_target(None) == q.target
    with pytest.raises(KeyError, match="no target 'nope'"):
        q.named_target("nope")
    bad = dict(records[0], targets={"link": 3})
    bad["ctxs"] = [dict(records[0]["ctxs"][0], role=7), *records[0]["ctxs"][1:]]
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    from gumbel_rerank.data import DataError

    with pytest.raises(DataError) as err:
        load_questions(tmp_path / "bad.jsonl", cache_dir=tmp_path / "cache")
    assert f"{tmp_path / 'bad.jsonl'}:1: ctxs[0].role: expected a string" in str(err.value)
    assert f"{tmp_path / 'bad.jsonl'}:1: targets.link: expected a string" in str(err.value)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2")
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in generate_split(V2, "train")))
    return make_collate(load_questions(path, cache_dir=root / "cache"), None)([(i, i) for i in range(16)])


def test_role_contexts_and_named_targets(batch):
    stage = CurriculumStage(contexts="roles", roles=HARD, target="link")
    passages, targets = select_examples(batch, stage, seed=0, step=0)
    for row, chosen in enumerate(passages):
        roles = [r for r in batch.passage_roles[row] if r in HARD]
        assert len(chosen) == len(roles) == 5
        assert targets[row] == batch.target_sets[row]["link"]
    with pytest.raises(ConfigError, match="needs the passage roles"):
        CurriculumStage(contexts="roles")


def test_a_mixed_stage_draws_kinds_per_example_reproducibly(batch):
    link = ExampleKind(1.0, "roles", ["bridge", "distractor:entity_link", "distractor:other_bridge"], 0, "link")
    chain = ExampleKind(1.0, "roles", HARD)
    stage = CurriculumStage(mix=[link, chain])
    first = select_examples(batch, stage, seed=3, step=7)
    assert first == select_examples(batch, stage, seed=3, step=7)  # resumes draw the same
    kinds = ["link" if t == batch.target_sets[i]["link"] else "chain" for i, t in enumerate(first[1])]
    assert set(kinds) == {"link", "chain"}  # 16 examples, even odds: both kinds occur
    for row, kind in enumerate(kinds):
        assert len(first[0][row]) == (3 if kind == "link" else 5)
    other = select_examples(batch, stage, seed=3, step=8)[1]
    assert other != first[1]  # and they change with the step
    with pytest.raises(ConfigError, match="weight"):
        ExampleKind(weight=0.0)


def test_curricula_with_roles_and_mixes_load_from_yaml():
    cfg = load_config(
        ReaderTrainConfig,
        None,
        ["--curriculum=[{steps: 5, contexts: roles, roles: [bridge, answer]}, "
         "{steps: 5, mix: [{weight: 2, contexts: gold, target: link}, {contexts: all}]}]"],
    )
    assert cfg.curriculum[0].kinds()[0].roles == ["bridge", "answer"]
    assert [k.weight for k in cfg.curriculum[1].kinds()] == [2.0, 1.0]


def test_a_chain_reader_answers_with_the_chains_last_word(tmp_path):
    assert final_answer("bakomu lima", "last_word") == "lima" and final_answer("", "last_word") == ""
    assert final_answer("bakomu lima", "all") == "bakomu lima"
    with pytest.raises(ValueError, match="answer_from"):
        FiDReaderConfig(answer_from="first")
    world = build_world(tmp_path / "world", n_train=4, n_dev=4)
    questions = load_questions(world.dev)
    plain = FiDReader.from_pretrained(world.reader, config=FiDReaderConfig(text_maxlength=24, answer_maxlength=5))
    chain = FiDReader.from_pretrained(
        world.reader, config=FiDReaderConfig(text_maxlength=24, answer_maxlength=5, answer_from="last_word")
    )
    texts = [q.question for q in questions]
    passages = [[{"title": p.title, "text": p.text} for p in q.passages] for q in questions]
    full = plain.generate(plain.encode(plain.tokenize_passages(texts, passages)))
    last = chain.generate(chain.encode(chain.tokenize_passages(texts, passages)))
    assert last == [final_answer(t, "last_word") for t in full]


def test_the_chain_reading_check_builds_hard_and_triple_contexts():
    record = generate_split(V2, "dev")[0]
    roles = lambda context: sorted(c["role"] for c in record["ctxs"] if {"title": c["title"], "text": c["text"]} in context_passages(record, context))  # noqa: E731
    assert roles("hard") == sorted(HARD)
    assert "bridge" not in roles("hard_but_bridge") and len(roles("hard_but_bridge")) == 4
    assert roles("triple") == sorted(["bridge", "answer", "distractor:linked_attribute"])
    assert roles("triple_but_bridge") == sorted(["answer", "distractor:linked_attribute"])
    assert set(CHAIN_CONTEXTS) >= {"all", "all_but_bridge", "hard", "triple"}


def test_the_redundant_reading_check_drops_each_statement_of_the_bridge_and_the_reader_reads_either():
    """The redundant-evidence setting's check (the reader the protocol's redundant rows use):
    its contexts keep or drop the right statements, and the shipped reader answers from either
    statement of the bridge and falls to guessing without both (measured on 500 dev questions:
    hard 0.992, hard with the restatement only 0.998, neither 0.214; assets README)."""
    import dataclasses

    from gumbel_rerank.demo.command import demo_spec
    from gumbel_rerank.demo.reader_recipe import REDUNDANT, REDUNDANT_READER
    from gumbel_rerank.demo.reading_check import REDUNDANT_CONTEXTS, reading_check

    records = generate_split(dataclasses.replace(demo_spec(), redundant=REDUNDANT, n_dev=24), "dev")
    record = records[0]

    def roles(context):
        kept = context_passages(record, context)
        return sorted(c["role"] for c in record["ctxs"] if {"title": c["title"], "text": c["text"]} in kept)

    everything = sorted(c["role"] for c in record["ctxs"])
    assert sorted([*roles("all_but_bridge"), "bridge"]) == everything
    assert sorted([*roles("all_but_restated_bridge"), "bridge:restated"]) == everything
    assert sorted([*roles("all_but_any_bridge"), "bridge", "bridge:restated"]) == everything
    assert roles("hard") == sorted(HARD)
    assert roles("hard_restated") == sorted(r if r != "bridge" else "bridge:restated" for r in HARD)
    assert roles("hard_but_any_bridge") == sorted(r for r in HARD if r != "bridge")
    if not (REDUNDANT_READER / "config.json").is_file():
        pytest.skip("no shipped redundant reader")
    reader = FiDReader.from_pretrained(
        REDUNDANT_READER, config=FiDReaderConfig(text_maxlength=32, answer_maxlength=6, answer_from="last_word")  # the recipes
    )
    check = reading_check(reader, records, contexts=REDUNDANT_CONTEXTS)
    neither = check["hard_but_any_bridge"]["all"]
    assert check["hard"]["all"] >= neither + 0.4 and check["hard_restated"]["all"] >= neither + 0.4, check
    assert check["all_but_bridge"]["all"] >= check["all_but_any_bridge"]["all"] + 0.3, check
