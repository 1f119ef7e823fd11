"""The embedded two-hop demo dataset (gumbel_rerank.demo.dataset)."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from gumbel_rerank.data.answers import contains_answer
from gumbel_rerank.data.questions import load_questions
from gumbel_rerank.demo.dataset import (
    ATTRIBUTES,
    DISTRACTOR_KINDS,
    LINKS,
    SPLITS,
    DemoSpec,
    bm25_scores,
    corpus_stats,
    demo_vocabulary,
    distractor_counts,
    entity_pools,
    generate_all,
    generate_split,
    word_tokens,
    write_demo_data,
)
from gumbel_rerank.demo.wordlevel import train_t5_tokenizer
from gumbel_rerank.reader.formatting import format_passage

SMALL = DemoSpec(n_train=120, n_dev=40, n_test=40)


@pytest.fixture(scope="module")
def demo():
    """The default-size data (4000/500/500), generated once; its generation time is checked."""
    spec = DemoSpec()
    assert (spec.n_train, spec.n_dev, spec.n_test, spec.n_passages) == (4000, 500, 500, 10)
    start = time.perf_counter()
    data = generate_all(spec)
    elapsed = time.perf_counter() - start
    return spec, data, elapsed


def _records(data):
    for split in SPLITS:
        yield from data[split]


def _patterns():
    """Template -> regex with named groups, built here from the public tables (not the code
    under test's own parsing), so a passage text that matches no template fails the tests."""
    out = []
    for name, (_, template) in LINKS.items():
        rx = re.escape(template).replace(re.escape("{s}"), r"(?P<s>\w+)")
        out.append((name, re.compile(rx.replace(re.escape("{o}"), r"(?P<o>\w+)"))))
    for name, (_, template, _) in ATTRIBUTES.items():
        rx = re.escape(template).replace(re.escape("{s}"), r"(?P<s>\w+)")
        out.append((name, re.compile(rx.replace(re.escape("{a}"), r"(?P<o>\w+)"))))
    return out


PATTERNS = _patterns()


CUE = re.compile(r"^(?P<s>\w+) , the (?P<noun>\w+) of (?P<e>\w+) , ")


def split_cue(text: str) -> tuple[str, tuple[str, str] | None]:
    """A cued answer text without its apposition, and the cue's (link noun, entity)."""
    m = CUE.match(text)
    if m is None:
        return text, None
    return m["s"] + " " + text[m.end() :], (m["noun"], m["e"])


def parse_fact(text: str) -> tuple[str, str, str]:
    """(subject, relation, object) stated by a passage text; exactly one template must match."""
    text, _ = split_cue(text)
    found = [(m["s"], name, m["o"]) for name, rx in PATTERNS if (m := rx.fullmatch(text))]
    assert len(found) == 1, f"{text!r} matches {len(found)} templates"
    return found[0]


def _by_role(record):
    roles = Counter(p["role"] for p in record["ctxs"])
    assert roles["bridge"] == 1 and roles["answer"] == 1, roles
    bridge = next(p for p in record["ctxs"] if p["role"] == "bridge")
    answer = next(p for p in record["ctxs"] if p["role"] == "answer")
    return bridge, answer


# --------------------------------------------------------------------------------------------
# Determinism and speed


def test_default_sizes_generate_well_under_ten_seconds(demo):
    spec, data, elapsed = demo
    assert [len(data[s]) for s in SPLITS] == [4000, 500, 500]
    assert elapsed < 10.0, f"generation took {elapsed:.1f} s"


def test_same_spec_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    a = write_demo_data(SMALL, tmp_path / "a")
    b = write_demo_data(SMALL, tmp_path / "b")
    c = write_demo_data(DemoSpec(n_train=120, n_dev=40, n_test=40, seed=1), tmp_path / "c")
    assert set(a) == set(SPLITS)
    for split in SPLITS:
        assert a[split].name == f"{split}.jsonl"
        assert a[split].read_bytes() == b[split].read_bytes()
        assert a[split].read_bytes() != c[split].read_bytes()
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        f"{s}.jsonl" for s in SPLITS
    )


def test_questions_do_not_depend_on_split_size():
    small = generate_split(DemoSpec(n_train=30, n_dev=1, n_test=1), "train")
    large = generate_split(DemoSpec(n_train=90, n_dev=1, n_test=1), "train")

    def strip(record):  # BM25 scores use split-wide statistics; everything else must agree
        return {**record, "ctxs": sorted((p["id"], p["text"], p["role"]) for p in record["ctxs"])}

    assert [strip(r) for r in small] == [strip(r) for r in large[:30]]


# --------------------------------------------------------------------------------------------
# Roles, gold flags, the two hops


def test_roles_and_gold_flags(demo):
    spec, data, _ = demo
    counts = distractor_counts(spec)
    for record in _records(data):
        assert len(record["ctxs"]) == spec.n_passages
        _by_role(record)  # exactly one bridge and one answer
        for p in record["ctxs"]:
            assert p["gold"] is (p["role"] in ("bridge", "answer"))
        kinds = Counter(
            p["role"].split(":", 1)[1]
            for p in record["ctxs"]
            if p["role"].startswith("distractor:")
        )
        assert set(kinds) <= set(DISTRACTOR_KINDS)
        # The default mix is always realisable: no fallback to "unrelated".
        assert kinds == Counter({k: n for k, n in counts.items() if n})
        assert len({p["id"] for p in record["ctxs"]}) == spec.n_passages


def test_two_hop_structure(demo):
    _, data, _ = demo
    for record in _records(data):
        bridge, answer = _by_role(record)
        entity, middle, target = (
            record["question_entity"],
            record["bridge_entity"],
            record["target"],
        )
        assert record["answers"] == [target]
        question = set(word_tokens(record["question"]))
        assert entity in question and middle not in question and target not in question
        assert LINKS[record["link"]][0] in question
        bridge_words = set(word_tokens(f"{bridge['title']} {bridge['text']}"))
        answer_words = set(word_tokens(f"{answer['title']} {answer['text']}"))
        assert {entity, middle} <= bridge_words and target not in bridge_words
        assert {middle, target} <= answer_words
        # Cued answer passages name the question's entity through the link; uncued never do.
        _, cue = split_cue(answer["text"])
        assert record["answer_cued"] is (cue is not None)
        if cue is None:
            assert entity not in answer_words
        else:
            assert cue == (LINKS[record["link"]][0], entity)
        assert all(split_cue(p["text"])[1] is None for p in record["ctxs"] if p is not answer)
        assert parse_fact(bridge["text"]) == (entity, record["link"], middle)
        assert parse_fact(answer["text"]) == (middle, record["attribute"], target)
        # The answer passage's visible cue: it shares the question's relation noun ("city").
        noun = word_tokens(record["question"])[1]
        assert noun == record["attribute"] and noun in answer_words and noun not in bridge_words


def check_invariants(record):
    """The distractor invariants of demo_data's docstring, on one record."""
    bridge, answer = _by_role(record)
    entity, middle, target = record["question_entity"], record["bridge_entity"], record["target"]
    facts = [parse_fact(p["text"]) for p in record["ctxs"]]
    # 1. The answer occurs in exactly one passage (title or text): the answer passage.
    holders = [
        p["role"]
        for p in record["ctxs"]
        if target in word_tokens(f"{p['title']} {p['text']}")
        or contains_answer(p["text"], [target])
    ]
    assert holders == ["answer"], (record["id"], holders)
    # 2. The chain is unique and facts are consistent: each (subject, relation) stated once,
    #    so no distractor gives E's asked link or M's asked attribute.
    pairs = Counter((s, r) for s, r, _ in facts)
    assert max(pairs.values()) == 1, (record["id"], pairs)
    assert pairs[(entity, record["link"])] == 1 and pairs[(middle, record["attribute"])] == 1
    # 3. Every passage's title is its subject.
    assert all(p["title"] == s for p, (s, _, _) in zip(record["ctxs"], facts, strict=True))
    return facts


def test_distractor_invariants(demo):
    _, data, _ = demo
    for record in _records(data):
        facts = check_invariants(record)
        # With the default mix, three passages state the asked attribute (answer, trap, wrong
        # chain) and their values are distinct: "the value that occurs once" is no shortcut.
        asked = [o for _, r, o in facts if r == record["attribute"]]
        assert len(asked) == 3 and len(set(asked)) == 3


def test_distractor_kinds_say_what_they_are(demo):
    _, data, _ = demo
    for record in data["dev"]:
        entity, middle = record["question_entity"], record["bridge_entity"]
        link, attr = record["link"], record["attribute"]
        facts = {p["role"]: [] for p in record["ctxs"]}
        for p in record["ctxs"]:
            facts[p["role"]].append(parse_fact(p["text"]))
        people = {entity, middle}
        link_objects = set()
        for kind_role, stated in facts.items():
            for s, r, o in stated:
                if kind_role == "distractor:entity_trap":
                    assert (s, r) == (entity, attr)
                elif kind_role == "distractor:entity_attribute":
                    assert s == entity and r in ATTRIBUTES and r != attr
                elif kind_role == "distractor:entity_link":
                    assert s == entity and r in LINKS and r != link
                    link_objects.add(o)
                elif kind_role == "distractor:other_bridge":
                    assert r == link and s not in people and o not in people
                    link_objects.add(o)
                elif kind_role == "distractor:intermediate_attribute":
                    assert s == middle and r in ATTRIBUTES and r != attr
                elif kind_role == "distractor:same_attribute":
                    assert r == attr and s not in people
        # The default mix has one linked_attribute: the entity_link's object (built first)
        # gets the asked attribute, one complete wrong chain through E.
        linked = {s for s, r, _ in facts["distractor:linked_attribute"]}
        e_links = {o for s, r, o in facts["distractor:entity_link"]}
        assert linked == e_links and linked <= link_objects and all(
            r == attr for _, r, _ in facts["distractor:linked_attribute"]
        )


def test_invariants_hold_for_other_mixes_and_fallbacks():
    heavy = DemoSpec(
        n_train=60,
        n_dev=20,
        n_test=20,
        n_passages=24,
        n_entities_train=60,
        n_entities_dev=50,
        n_entities_test=50,
        distractor_mix=(
            ("entity_trap", 3),
            ("entity_attribute", 6),
            ("entity_link", 8),
            ("intermediate_attribute", 5),
            ("linked_attribute", 9),
            ("unrelated", 1),
        ),
    )
    counts = distractor_counts(heavy)
    assert sum(counts.values()) == 22
    data = generate_all(heavy)
    for record in _records(data):
        assert len(record["ctxs"]) == 24
        check_invariants(record)
        kinds = Counter(p["role"] for p in record["ctxs"])
        # At most one trap, 4 other attributes of E and of M, 6 other links of E: the rest
        # falls back to "unrelated".
        assert kinds["distractor:entity_trap"] == 1
        assert kinds["distractor:entity_attribute"] == min(counts["entity_attribute"], 4)
        assert kinds["distractor:entity_link"] == min(counts["entity_link"], 6)
        assert kinds["distractor:intermediate_attribute"] == min(
            counts["intermediate_attribute"], 4
        )
        assert kinds["distractor:unrelated"] > counts["unrelated"]


def test_distractor_counts_apportion_the_mix():
    assert distractor_counts(DemoSpec()) == {
        "entity_trap": 1,
        "entity_attribute": 2,
        "entity_link": 1,
        "other_bridge": 1,
        "linked_attribute": 1,
        "intermediate_attribute": 2,
    }
    five = distractor_counts(DemoSpec(n_passages=5))
    assert sum(five.values()) == 3 and five["entity_attribute"] == 1
    assert sum(distractor_counts(DemoSpec(n_passages=2)).values()) == 0
    records = generate_split(DemoSpec(n_train=5, n_passages=2), "train")
    assert all(sorted(p["role"] for p in r["ctxs"]) == ["answer", "bridge"] for r in records)


def test_spec_validation():
    with pytest.raises(ValueError, match="unknown distractor kind"):
        DemoSpec(distractor_mix=(("nonsense", 1),))
    with pytest.raises(ValueError, match="too small"):
        DemoSpec(n_entities_dev=5)
    with pytest.raises(ValueError, match="names"):
        DemoSpec(syllables=2)  # 256 names cannot make pools of 600 + 200 + 200
    with pytest.raises(ValueError, match="idf_scope"):
        DemoSpec(idf_scope="corpus")
    with pytest.raises(ValueError, match="split"):
        generate_split(SMALL, "validation")


# --------------------------------------------------------------------------------------------
# Splits


def test_people_are_disjoint_across_splits_and_answers_are_shared(demo):
    spec, data, _ = demo
    pools = entity_pools(spec)
    values = {v for _, _, vals in ATTRIBUTES.values() for v in vals}
    assert len(values) == 40
    people, answers = {}, {}
    for split in SPLITS:
        records = data[split]
        questions = {r["question_entity"] for r in records}
        middles = {r["bridge_entity"] for r in records}
        titles = {p["title"] for r in records for p in r["ctxs"]}
        assert questions | middles <= titles <= set(pools[split])
        people[split] = titles
        answers[split] = {r["target"] for r in records}
        assert not titles & values
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not people[a] & people[b], (a, b)
            assert not set(pools[a]) & set(pools[b])
    assert answers["train"] == values
    assert answers["dev"] <= answers["train"] and answers["test"] <= answers["train"]
    assert len(answers["dev"]) >= 35 and len(answers["test"]) >= 35
    # Answers are spread over the closed set (no value dominates).
    top = Counter(r["target"] for r in data["train"]).most_common(1)[0][1]
    assert top < 3 * len(data["train"]) / len(values)


def test_names_are_single_pseudo_words():
    pools = entity_pools(SMALL)
    for pool in pools.values():
        assert len(pool) == len(set(pool))
        for name in pool:
            assert re.fullmatch(r"[a-z]{6}", name), name  # 3 two-letter syllables


# --------------------------------------------------------------------------------------------
# BM25 and the incoming order


def test_bm25_matches_a_hand_computed_value():
    docs = [["a", "b"], ["a", "c", "c"], ["b", "d", "d", "d"]]
    # N = 3, avgdl = 3, df(a) = 2, df(c) = 1, k1 = 1.2, b = 0.75
    # idf(a) = ln(1 + 1.5/2.5) = ln 1.6 = 0.470004; idf(c) = ln(1 + 2.5/1.5) = ln(8/3) = 0.980829
    # d1 (|D| = 2): K = 1.2 * (0.25 + 0.75 * 2/3) = 0.9; a: 0.470004 * 2.2 / 1.9 = 0.544215
    # d2 (|D| = 3): K = 1.2; a: 0.470004 * 2.2 / 2.2 = 0.470004;
    #               c: 0.980829 * 2 * 2.2 / 3.2 = 1.348640; total 1.818644
    # d3: no query word, 0.
    scores = bm25_scores(["c", "a", "c"], docs)  # a repeated query word counts once
    assert scores == pytest.approx([0.544215, 1.818644, 0.0], abs=1e-6)
    # Corpus statistics given separately: the same documents scored against a larger corpus.
    stats = corpus_stats([*docs, ["e"], ["e", "e"]])
    assert stats.n_docs == 5 and stats.avgdl == pytest.approx(12 / 5)
    assert bm25_scores(["a"], docs, stats=stats) != bm25_scores(["a"], docs)


def test_ctxs_are_ordered_by_stored_bm25_over_the_split(demo):
    spec, data, _ = demo
    dev = data["dev"]
    all_docs = [word_tokens(f"{p['title']} {p['text']}") for r in dev for p in r["ctxs"]]
    stats = corpus_stats(all_docs)
    for record in dev:
        scores = [p["score"] for p in record["ctxs"]]
        assert scores == sorted(scores, reverse=True)
    for record in dev[:50]:
        docs = [word_tokens(f"{p['title']} {p['text']}") for p in record["ctxs"]]
        expected = bm25_scores(word_tokens(record["question"]), docs, stats=stats)
        assert [p["score"] for p in record["ctxs"]] == pytest.approx(expected, abs=1e-6)
    # The retriever is imperfect but informative: the bridge (it shares the question's entity)
    # is usually near the top; the answer passage is in the top 2 mostly when it is cued (it
    # then repeats "the mentor of nilo"), rarely when it shares only relation words.
    bridge_ranks = [next(i for i, p in enumerate(r["ctxs"]) if p["role"] == "bridge") for r in dev]
    answer_ranks = [next(i for i, p in enumerate(r["ctxs"]) if p["role"] == "answer") for r in dev]
    assert sum(bridge_ranks) < sum(answer_ranks)
    cued = [rank < 2 for rank, r in zip(answer_ranks, dev, strict=True) if r["answer_cued"]]
    uncued = [rank < 2 for rank, r in zip(answer_ranks, dev, strict=True) if not r["answer_cued"]]
    assert sum(cued) > len(cued) / 2 and sum(uncued) < len(uncued) / 4


def test_ties_are_not_broken_by_construction_order(demo):
    _, data, _ = demo
    # Among the equal-scoring "X was born in the city Y" passages the answer passage must not
    # always come first (or last): passages are shuffled before the stable sort.
    first = last = tied = 0
    for record in data["train"]:
        answer = next(p for p in record["ctxs"] if p["role"] == "answer")
        group = [p["role"] for p in record["ctxs"] if p["score"] == answer["score"]]
        if len(group) > 1:
            tied += 1
            first += group[0] == "answer"
            last += group[-1] == "answer"
    assert tied > 1000
    assert 0.1 * tied < first < 0.6 * tied and 0.1 * tied < last < 0.6 * tied


def test_question_scope_idf_gives_another_order():
    split_scope = generate_split(SMALL, "dev")
    question_scope = generate_split(
        DemoSpec(n_train=120, n_dev=40, n_test=40, idf_scope="question"), "dev"
    )
    record = question_scope[0]
    docs = [word_tokens(f"{p['title']} {p['text']}") for p in record["ctxs"]]
    expected = bm25_scores(word_tokens(record["question"]), docs)
    assert [p["score"] for p in record["ctxs"]] == pytest.approx(expected, abs=1e-6)
    assert [p["score"] for p in split_scope[0]["ctxs"]] != [p["score"] for p in record["ctxs"]]


# --------------------------------------------------------------------------------------------
# The format: loader and tokenizer


def test_output_loads_and_gold_indices_match_roles(tmp_path):
    paths = write_demo_data(SMALL, tmp_path / "data")
    for split in ("dev", "test"):
        raw = generate_split(SMALL, split)
        questions = load_questions(paths[split], cache_dir=tmp_path / "cache")
        assert len(questions) == len(raw)
        for q, r in zip(questions, raw, strict=True):
            roles = [p["role"] for p in r["ctxs"]]
            assert q.id == r["id"] and q.target == r["target"]
            assert q.gold_source == "flag"
            assert set(q.gold_indices) == {roles.index("bridge"), roles.index("answer")}
            # The answer invariant, as the evaluation sees it: the bridge is indirect evidence.
            assert q.answer_passages == (roles.index("answer"),)
            assert q.indirect_gold_indices == (roles.index("bridge"),)
            assert [p.score for p in q.passages] == [p["score"] for p in r["ctxs"]]


def test_vocabulary_covers_every_token(demo, tmp_path):
    spec, data, _ = demo
    vocab = demo_vocabulary(spec)
    assert vocab == sorted(set(vocab))
    assert {"question", "title", "context", ":", "?", "."} <= set(vocab)
    used = set()
    for record in _records(data):
        text = " ".join([record["question"], *record["answers"]])
        text += " ".join(f" {p['title']} {p['text']}" for p in record["ctxs"])
        used.update(re.findall(r"\w+|[^\w\s]+", text.lower()))
    assert used <= set(vocab), sorted(used - set(vocab))[:10]

    tok = train_t5_tokenizer(vocab, tmp_path / "tok")
    unk = tok.unk_token_id
    assert unk in tok("zzqx", add_special_tokens=False)["input_ids"]  # an <unk> can be seen
    # Every word used anywhere is one known token; whole FiD inputs of dev and test as well.
    words = sorted(used)
    ids = tok(words, add_special_tokens=False)["input_ids"]
    assert all(len(row) == 1 and row[0] != unk for row in ids), [
        w for w, row in zip(words, ids, strict=True) if row != [row[0]] or unk in row
    ][:10]
    texts = [
        format_passage(r["question"], p["title"], p["text"])
        for split in ("dev", "test")
        for r in data[split]
        for p in r["ctxs"]
    ]
    rows = tok(texts, add_special_tokens=False)["input_ids"]
    assert not [t for t, row in zip(texts, rows, strict=True) if unk in row]


def test_a_restated_bridge_states_the_same_link_in_other_words_and_is_gold():
    """DemoSpec(redundant=("bridge",)): one more gold passage per question, role
    bridge:restated, naming the question's entity and the intermediate through the question's
    noun; it never contains the answer; the distractors give up one slot; every word is in the
    demo vocabulary (the shipped readers' tokenizer)."""
    spec = DemoSpec(n_train=40, n_dev=0, n_test=0, shared_pool=60, chain_target=True, redundant=("bridge",))
    vocabulary = set(demo_vocabulary(spec))
    for record in generate_split(spec, "train"):
        roles = [c["role"] for c in record["ctxs"]]
        assert len(roles) == 10 and roles.count("bridge") == 1 and roles.count("bridge:restated") == 1
        restated = next(c for c in record["ctxs"] if c["role"] == "bridge:restated")
        original = next(c for c in record["ctxs"] if c["role"] == "bridge")
        noun = record["question"].split(" the ", 1)[1].split(" of ")[0]
        assert restated["gold"] and restated["text"] == f"the {noun} of {record['question_entity']} is {record['bridge_entity']} ."
        assert record["question_entity"] in original["text"] and record["bridge_entity"] in original["text"]
        assert not contains_answer(restated["text"], record["answers"])
        assert sum(r.startswith("distractor:") for r in roles) == 7
        assert all(w in vocabulary for c in record["ctxs"] for w in re.findall(r"\w+|[^\w\s]+", c["text"]))
    with pytest.raises(ValueError, match="redundant"):
        DemoSpec(redundant=("bridge", "bridge"))
