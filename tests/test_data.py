"""Loading and validating question files (gumbel_rerank.data.questions)."""

import json
import logging
import os
import traceback
import tracemalloc

import pyarrow as pa
import pytest

import gumbel_rerank.data.jsonstream as jsonstream
import gumbel_rerank.data.questions as data_mod
from gumbel_rerank.data.questions import (
    DataError,
    Passage,
    Question,
    QuestionSet,
    count_without_gold,
    load_questions,
)


def _rec(**overrides):
    rec = {
        "id": "q",
        "question": "Who discovered polonium?",
        "target": "Marie Curie",
        "answers": ["Marie Curie", "Curie"],
        "ctxs": [
            {"title": "Marie Curie", "text": "Marie Curie discovered polonium in 1898."},
            {"title": "Paris", "text": "Paris is the capital of France."},
        ],
    }
    rec.update(overrides)
    return {k: v for k, v in rec.items() if v is not _DROP}


_DROP = object()


def write_jsonl(path, records, *, blank_after_first=False):
    lines = [json.dumps(r) if not isinstance(r, str) else r for r in records]
    if blank_after_first:
        lines.insert(1, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_json(path, records):
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def load(tmp_path):
    cache = tmp_path / "cache"

    def _load(path, **kwargs):
        kwargs.setdefault("cache_dir", cache)
        return load_questions(path, **kwargs)

    return _load


@pytest.fixture
def load_error(load):
    """Load a file that must fail; check it fails with our error and no library traceback."""

    def _load_error(path, **kwargs) -> DataError:
        with pytest.raises(DataError) as info:
            load(path, **kwargs)
        err = info.value
        shown = "".join(traceback.format_exception(err))
        # The user sees our message only: no chained JSONDecodeError / UnicodeDecodeError /
        # pyarrow / datasets exception ("During handling of the above exception ...").
        assert "During handling" not in shown and "direct cause" not in shown, shown
        assert "JSONDecodeError" not in shown and "UnicodeDecodeError" not in shown, shown
        return err

    return _load_error


# --------------------------------------------------------------------------------------------
# Formats and records

MIXED = [
    _rec(id=7),
    _rec(id=_DROP, target=_DROP, question="Q without id or target"),
    _rec(
        id="x",
        answers=_DROP,
        target="Z\u00fcrich",
        question="Where? \u2014 caf\u00e9 \U0001f600",
        ctxs=[
            {"text": "In Zu\u0308rich.", "id": 12, "score": 3},
            {"title": None, "text": "", "id": "p2", "score": -1.5},
        ],
    ),
]


def test_jsonl_and_json_list_give_identical_question_sets(tmp_path, load):
    qs_lines = load(write_jsonl(tmp_path / "d.jsonl", MIXED, blank_after_first=True))
    qs_list = load(write_json(tmp_path / "d.json", MIXED))
    assert len(qs_lines) == len(qs_list) == 3
    assert list(qs_lines) == list(qs_list)

    first, second, third = qs_lines
    assert first.id == "7"  # int ids become strings
    # Missing id -> the record's 0-based position, the same in both formats.
    assert second.id == "1"
    assert second.target == "Marie Curie"  # missing target -> first answer
    assert third.answers == ("Z\u00fcrich",)  # missing answers -> [target]
    assert third.question == "Where? \u2014 caf\u00e9 \U0001f600"
    assert third.passages == (
        Passage(title="", text="In Zu\u0308rich.", gold=True, id="12", score=3.0),
        Passage(title="", text="", gold=False, id="p2", score=-1.5),
    )
    assert isinstance(third.passages[0].score, float)


def test_json_list_records_spanning_many_small_chunks(tmp_path, load, monkeypatch):
    # A 5-byte read size puts chunk boundaries inside strings, numbers, literals, escapes and
    # multi-byte UTF-8 characters; the rolling-buffer decoder must give the same records as JSONL.
    flagged = [
        {"text": "x", "gold": True, "score": -1.25e-5, "id": None},
        {"text": "y", "gold": False, "score": 123456789012, "title": None},
    ]
    records = [
        *MIXED,
        _rec(id="big", ctxs=[{"text": '\u00e9\u4e2d\U0001f600 \\ " ' * 50}]),
        _rec(id="flags", ctxs=flagged),
    ]
    expected = list(load(write_jsonl(tmp_path / "d.jsonl", records)))
    monkeypatch.setattr(jsonstream, "_CHUNK_BYTES", 5)
    for ensure_ascii in (False, True):  # raw UTF-8, then \uXXXX escapes (surrogate pairs)
        path = tmp_path / f"d{ensure_ascii}.json"
        path.write_text(json.dumps(records, ensure_ascii=ensure_ascii), encoding="utf-8")
        assert list(load(path)) == expected


def test_utf8_bom_is_accepted(tmp_path, load):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_rec()).encode() + b"\n")
    assert load(path)[0].id == "q"


def test_max_passages_keeps_the_first_n_and_ignores_the_rest(tmp_path, load):
    ctxs = [
        {"text": "nothing"},
        {"text": "Marie Curie again"},
        {"text": None},  # invalid, but past the cut: never looked at
    ]
    path = write_jsonl(tmp_path / "d.jsonl", [_rec(ctxs=ctxs)])
    q = load(path, max_passages=2)[0]
    assert [p.text for p in q.passages] == ["nothing", "Marie Curie again"]
    assert q.gold_indices == (1,)
    with pytest.raises(DataError, match=r"ctxs\[2\]\.text: expected a string, got null"):
        load(path)
    with pytest.raises(ValueError, match="max_passages"):
        load(path, max_passages=0)


# --------------------------------------------------------------------------------------------
# Validation: every kind of invalid record, with its exact message

RECORD_CASES = [
    (_rec(question=_DROP), "question: missing field"),
    (_rec(question=3), "question: expected a string, got an integer"),
    (_rec(question=""), "question: empty string"),
    (_rec(question="  \t"), "question: empty string"),
    (_rec(ctxs=_DROP), "ctxs: missing field"),
    (_rec(ctxs={"text": "x"}), "ctxs: expected a list of passages, got an object"),
    (_rec(ctxs=[]), "ctxs: empty list, expected at least one passage"),
    (_rec(answers=_DROP, target=_DROP), "answers: missing field (and no target)"),
    (_rec(answers=[], target=_DROP), "answers: empty list (and no target)"),
    (_rec(answers="Curie"), "answers: expected a list of strings, got a string"),
    (_rec(answers=["Curie", None]), "answers[1]: expected a string, got null"),
    (_rec(answers=["Curie", ""]), "answers[1]: empty string"),
    (_rec(target=5), "target: expected a string, got an integer"),
    (_rec(id=1.5), "id: expected a string or an integer, got a number"),
    (_rec(id=True), "id: expected a string or an integer, got a bool"),
    (_rec(id=""), "id: empty string"),
    (_rec(ctxs=["just text"]), "ctxs[0]: expected an object, got a string"),
    (
        _rec(ctxs=[{"text": "a"}, {"text": "b"}, {"text": "c"}, {"text": None}]),
        "ctxs[3].text: expected a string, got null",
    ),
    (_rec(ctxs=[{"title": "t"}]), "ctxs[0].text: missing field"),
    (_rec(ctxs=[{"text": ["x"]}]), "ctxs[0].text: expected a string, got a list"),
    (_rec(ctxs=[{"title": 2, "text": "x"}]), "ctxs[0].title: expected a string, got an integer"),
    (_rec(ctxs=[{"text": "x", "score": "high"}]), "ctxs[0].score: expected a number, got a string"),
    (_rec(ctxs=[{"text": "x", "score": True}]), "ctxs[0].score: expected a number, got a bool"),
    (
        _rec(ctxs=[{"text": "x", "id": [1]}]),
        "ctxs[0].id: expected a string or an integer, got a list",
    ),
    (
        _rec(ctxs=[{"text": "x", "is_supporting": 1}, {"text": "y", "is_supporting": 2}]),
        "ctxs[1].is_supporting: expected a bool or 0/1, got 2",
    ),
    (
        _rec(ctxs=[{"text": "x", "gold": "yes"}]),
        "ctxs[0].gold: expected a bool or 0/1, got a string",
    ),
    (
        _rec(supporting_facts=[["Marie Curie", 0], "Paris"]),
        "supporting_facts[1]: expected a [title, sentence_id] pair, got a string",
    ),
    (
        _rec(supporting_titles="Marie Curie"),
        "supporting_titles: expected a list of strings, got a string",
    ),
    ([_rec()], "<record>: expected a JSON object, got a list"),
    (
        '{"question": "Q", "answers": ["\\ud800"], "ctxs": [{"text": "x"}]}',
        "answers[0]: invalid unicode: lone surrogate from a \\uXXXX escape",
    ),
]


@pytest.mark.parametrize(("record", "message"), RECORD_CASES)
def test_invalid_record_jsonl_message(tmp_path, load_error, record, message):
    # Valid line 1, blank line 2, the bad record on line 3: the message names line 3.
    path = write_jsonl(tmp_path / "dev.jsonl", [_rec(id="ok"), record], blank_after_first=True)
    err = load_error(path)
    assert err.problems == [f"{path}:3: {message}"]
    assert str(err) == f"{path}:3: {message}"


@pytest.mark.parametrize(("record", "message"), RECORD_CASES)
def test_invalid_record_json_list_message(tmp_path, load_error, record, message):
    if isinstance(record, str):
        record = json.loads(record)  # the lone-surrogate escape survives the round trip
    path = tmp_path / "dev.json"
    path.write_text(json.dumps([_rec(id="ok"), record], indent=1), encoding="utf-8")
    err = load_error(path)
    assert err.problems == [f"{path}:1: {message}"]  # 0-based list index


def test_several_problems_are_all_reported(tmp_path, load_error):
    records = [
        _rec(question=None, ctxs=[{"text": 1}]),
        _rec(id="fine"),
        _rec(id="fine"),
        _rec(answers=_DROP, target=_DROP),
    ]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    err = load_error(path)
    assert err.problems == [
        f"{path}:1: question: expected a string, got null",
        f"{path}:1: ctxs[0].text: expected a string, got an integer",
        f"{path}:3: id: duplicate id 'fine' (first used by record 2)",
        f"{path}:4: answers: missing field (and no target)",
    ]
    assert str(err).splitlines() == err.problems


def test_duplicate_ids_compare_after_normalising_to_strings(tmp_path, load_error):
    path = write_jsonl(tmp_path / "d.jsonl", [_rec(id=7), _rec(id="7")])
    assert load_error(path).problems == [f"{path}:2: id: duplicate id '7' (first used by record 1)"]


def test_problem_collection_stops_at_the_limit(tmp_path, load_error):
    path = write_jsonl(tmp_path / "d.jsonl", [_rec(id=str(i), question="") for i in range(150)])
    err = load_error(path)
    assert len(err.problems) == data_mod.MAX_PROBLEMS + 1
    assert err.problems[-1] == f"{path}: stopped after {data_mod.MAX_PROBLEMS} problems"
    assert len(str(err).splitlines()) == 21  # 20 shown, then "... and N more problems"
    assert str(err).splitlines()[-1] == f"... and {len(err.problems) - 20} more problems"


def test_truncated_jsonl_line(tmp_path, load_error):
    good = json.dumps(_rec())
    path = tmp_path / "d.jsonl"
    path.write_text(good + "\n" + good[:40] + "\n", encoding="utf-8")
    err = load_error(path)
    assert len(err.problems) == 1
    assert err.problems[0].startswith(f"{path}:2: <record>: invalid JSON: ")
    assert err.problems[0].endswith(
        "(the record ends early: a truncated line, or an object spread over several lines, "
        "which JSON lines does not allow)"
    )


def test_invalid_json_in_the_middle_of_a_jsonl_line(tmp_path, load_error):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "Q" "answers": ["a"], "ctxs": [{"text": "a"}]}\n')
    assert load_error(path).problems == [
        f"{path}:1: <record>: invalid JSON: Expecting ',' delimiter at column 18"
    ]


def test_non_utf8_jsonl_names_record_and_byte_offset(tmp_path, load_error):
    first = json.dumps(_rec(id="a")).encode() + b"\n"
    second = json.dumps(_rec(id="b", question="Caf\u00e9 X")).encode()
    second = second.replace(b"X", b"\xff")
    path = tmp_path / "d.jsonl"
    path.write_bytes(first + second + b"\n")
    offset = (first + second).index(b"\xff")
    assert load_error(path).problems == [
        f"{path}:2: <record>: invalid UTF-8 byte 0xff at byte offset {offset}"
    ]


def test_non_utf8_json_list_names_record_and_byte_offset(tmp_path, load_error, monkeypatch):
    monkeypatch.setattr(jsonstream, "_CHUNK_BYTES", 16)  # the bad byte arrives in a later chunk
    body = json.dumps([_rec(id="a"), _rec(id="b", question="Caf\u00e9 X")]).encode()
    body = body.replace(b"X", b"\xc3(")  # invalid continuation byte
    path = tmp_path / "d.json"
    path.write_bytes(body)
    assert load_error(path).problems == [
        f"{path}:1: <record>: invalid UTF-8 byte 0xc3 at byte offset {body.index(b'(') - 1}"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[" + json.dumps(_rec()) + ",\n" + json.dumps(_rec(id="r"))[:25],
            "1: <record>: unexpected end of file inside the record (truncated file?): "
            # '{"id": "r", "question": "' -- the cut string's opening quote is column 25.
            "Unterminated string starting at line 2 column 25",
        ),
        (
            "[" + json.dumps(_rec()) + "\n",
            "0: <record>: unexpected end of file: the list is never closed with ']'",
        ),
        (
            '[\n{"id": "a",\n "question" "Q"}]',
            "0: <record>: invalid JSON: Expecting ':' delimiter at line 3 column 13",
        ),
        (
            "[" + json.dumps(_rec()) + ",\n]",
            "0: <record>: invalid JSON: trailing comma before ']' at line 2 column 1",
        ),
        (
            "[" + json.dumps(_rec()) + " " + json.dumps(_rec(id="r")) + "]",
            "0: <record>: invalid JSON: expected ',' or ']' after the record at line 1 column "
            f"{len(json.dumps(_rec())) + 3}, found '{{'",
        ),
        (
            "[" + json.dumps(_rec()) + "]\nx",
            "0: <record>: unexpected data after the closing ']' at line 2 column 1",
        ),
    ],
)
def test_broken_json_list(tmp_path, load_error, text, message):
    path = tmp_path / "d.json"
    path.write_text(text, encoding="utf-8")
    assert load_error(path).problems == [f"{path}:{message}"]
    # Structure errors cannot be skipped: the list cannot be resynchronised after them.
    load_error(path, skip_invalid=True)


def test_json_list_of_non_objects(tmp_path, load_error, monkeypatch):
    monkeypatch.setattr(jsonstream, "_CHUNK_BYTES", 5)  # the number spans several chunks
    path = tmp_path / "d.json"
    path.write_text('[123456789012, "x"]')
    assert load_error(path).problems == [
        f"{path}:0: <record>: expected a JSON object, got an integer",
        f"{path}:1: <record>: expected a JSON object, got a string",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file, expected a JSON list or JSON lines"),
        (b" \n\t\n", "empty file, expected a JSON list or JSON lines"),
        (b"[]", "no records"),
        (b"\n\n", "empty file, expected a JSON list or JSON lines"),
        (
            b"id,question\n1,Q\n",
            "not a JSON list or JSON lines file: first non-whitespace character is 'i' at byte "
            "offset 0, expected '[' or '{'",
        ),
        (
            b'\n  "just a string"',
            "not a JSON list or JSON lines file: first non-whitespace character is '\"' at byte "
            "offset 3, expected '[' or '{'",
        ),
    ],
)
def test_file_level_problems(tmp_path, load_error, content, message):
    path = tmp_path / "d.data"
    path.write_bytes(content)
    assert load_error(path).problems == [f"{path}: {message}"]


def test_missing_file_names_the_path(tmp_path, load_error):
    path = tmp_path / "nowhere" / "dev.jsonl"
    assert str(load_error(path)) == f"{path}: no such file"
    assert str(load_error(tmp_path)) == f"{tmp_path}: is a directory, expected a JSON or JSONL file"


def test_message_uses_the_path_as_given(tmp_path, load_error, monkeypatch):
    write_jsonl(tmp_path / "dev.jsonl", [_rec(question=None)])
    monkeypatch.chdir(tmp_path)
    assert str(load_error("dev.jsonl")) == "dev.jsonl:1: question: expected a string, got null"


# --------------------------------------------------------------------------------------------
# skip_invalid


def test_skip_invalid_skips_and_reports(tmp_path, load, caplog):
    records = [
        _rec(id="a"),
        _rec(id="b", question=""),
        '{"id": "c", "question": ',
        _rec(id="d"),
        _rec(id="a"),  # duplicate of a kept record
    ]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    with caplog.at_level(logging.WARNING, logger="gumbel_rerank.data.questions"):
        qs = load(path, skip_invalid=True)
    assert [q.id for q in qs] == ["a", "d"]
    assert qs.num_skipped == 3 and qs.num_records == 5
    assert qs.skipped[0] == f"{path}:2: question: empty string"
    assert qs.skipped[1].startswith(f"{path}:3: <record>: invalid JSON: ")
    assert qs.skipped[2] == f"{path}:5: id: duplicate id 'a' (first used by record 1)"
    summary = [r.getMessage() for r in caplog.records]
    assert summary == [
        f"skipped 3 invalid records of 5 in {path} (first: {path}:2: question: empty string)"
    ]

    # A second load is served from the cache and still reports what was skipped.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gumbel_rerank.data.questions"):
        again = load(path, skip_invalid=True)
    assert again.dataset.cache_files == qs.dataset.cache_files
    assert (again.skipped, again.num_skipped, again.num_records) == (qs.skipped, 3, 5)
    assert len(caplog.records) == 1

    # Without skip_invalid the same file is an error (a separate cache entry).
    with pytest.raises(DataError):
        load(path)


def test_skip_invalid_with_nothing_valid_is_an_error(tmp_path, load_error):
    path = write_jsonl(tmp_path / "d.jsonl", [_rec(question=""), _rec(ctxs=[])])
    err = load_error(path, skip_invalid=True)
    assert err.problems == [
        f"{path}: no valid records (2 skipped)",
        f"{path}:1: question: empty string",
        f"{path}:2: ctxs: empty list, expected at least one passage",
    ]


def test_valid_file_reports_nothing_skipped(tmp_path, load, caplog):
    with caplog.at_level(logging.WARNING, logger="gumbel_rerank.data.questions"):
        qs = load(write_jsonl(tmp_path / "d.jsonl", [_rec()]), skip_invalid=True)
    assert (qs.skipped, qs.num_skipped, qs.num_records) == ([], 0, 1)
    assert caplog.records == []


# --------------------------------------------------------------------------------------------
# Gold passages

CTXS = [
    {"title": "Marie Curie", "text": "Marie Curie discovered polonium."},  # contains the answer
    {"title": "Polonium", "text": "Polonium is element 84."},  # supporting title, no answer
    {"title": "Paris", "text": "Paris is a city."},  # flagged, no answer
]


def _with_flags(name, values):
    return [{**c, name: v} for c, v in zip(CTXS, values, strict=True)]


def test_flag_beats_titles_beats_answer(tmp_path, load):
    records = [
        _rec(
            id="flag",
            ctxs=_with_flags("gold", [False, False, True]),
            supporting_titles=["Polonium"],
        ),
        _rec(id="titles", ctxs=CTXS, supporting_titles=["Polonium"]),
        _rec(id="answer", ctxs=CTXS),
    ]
    qs = load(write_jsonl(tmp_path / "d.jsonl", records))
    flag, titles, answer = qs
    assert (flag.gold_source, flag.gold_indices) == ("flag", (2,))
    assert (titles.gold_source, titles.gold_indices) == ("titles", (1,))
    assert (answer.gold_source, answer.gold_indices) == ("answer", (0,))
    # answer_passages does not depend on the gold source.
    assert flag.answer_passages == titles.answer_passages == answer.answer_passages == (0,)
    # Indirectly relevant = gold and not containing the answer.
    assert flag.indirect_gold_indices == (2,)
    assert titles.indirect_gold_indices == (1,)
    assert answer.indirect_gold_indices == ()
    assert [p.gold for p in titles.passages] == [False, True, False]


def test_yes_no_questions_count_every_gold_passage_as_indirect(tmp_path, load):
    """The indirect rule is literal: gold and no answer string. A yes/no answer is in no
    passage, so both supporting passages of a comparison question are indirect evidence; a
    passage that says "yes" is direct."""
    ctxs = [
        {"title": "Polonium", "text": "Polonium is element 84.", "gold": True},
        {"title": "Radium", "text": "Radium is element 88.", "gold": True},
        {"title": "Paris", "text": "Paris is a city.", "gold": False},
    ]
    said = [*ctxs[:1], {"title": "Radium", "text": "Yes, radium is an element.", "gold": True}, ctxs[2]]
    records = [
        _rec(id="yesno", question="Are polonium and radium both elements?", target="yes", answers=["yes"], ctxs=ctxs),
        _rec(id="said", question="Are polonium and radium both elements?", target="yes", answers=["yes"], ctxs=said),
    ]
    yesno, with_yes = load(write_jsonl(tmp_path / "d.jsonl", records))
    assert yesno.answer_passages == () and yesno.indirect_gold_indices == (0, 1) and yesno.direct_gold_indices == ()
    assert with_yes.indirect_gold_indices == (0,) and with_yes.direct_gold_indices == (1,)


@pytest.mark.parametrize("name", ["gold", "is_gold", "is_supporting", "has_answer"])
def test_each_flag_name_is_recognised_with_bools_or_01(tmp_path, load, name):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            _rec(id="b", ctxs=_with_flags(name, [False, True, True])),
            _rec(id="i", ctxs=_with_flags(name, [0, 1, 0])),
        ],
    )
    b, i = load(path)
    assert (b.gold_source, b.gold_indices) == ("flag", (1, 2))
    assert (i.gold_source, i.gold_indices) == ("flag", (1,))


def test_flag_order_and_explicit_gold_field(tmp_path, load):
    ctxs = [
        {**CTXS[0], "is_supporting": False, "has_answer": True},
        {**CTXS[1], "is_supporting": True, "has_answer": False},
        {**CTXS[2]},  # flag missing on this passage: not gold
    ]
    path = write_jsonl(tmp_path / "d.jsonl", [_rec(ctxs=ctxs)])
    assert load(path)[0].gold_indices == (1,)  # is_supporting comes before has_answer
    assert load(path, gold_field="has_answer")[0].gold_indices == (0,)


def test_gold_field_absent_from_every_passage_is_an_error(tmp_path, load_error):
    path = write_jsonl(tmp_path / "d.jsonl", [_rec(ctxs=_with_flags("gold", [1, 0, 0]))])
    assert load_error(path, gold_field="sup").problems == [
        f"{path}:1: ctxs: gold field 'sup' is not present on any passage"
    ]


def test_null_flags_count_as_absent(tmp_path, load):
    path = write_jsonl(tmp_path / "d.jsonl", [_rec(ctxs=_with_flags("gold", [None] * 3))])
    assert load(path)[0].gold_source == "answer"


def test_supporting_facts_hotpotqa_style(tmp_path, load):
    ctxs = [*CTXS, {"title": "Zu\u0308rich", "text": "A city."}]
    facts = [["Polonium", 0], ["Polonium", 2], ["Z\u00fcrich ", 1]]  # NFC + whitespace squashed
    q = load(write_jsonl(tmp_path / "d.jsonl", [_rec(ctxs=ctxs, supporting_facts=facts)]))[0]
    assert (q.gold_source, q.gold_indices) == ("titles", (1, 3))


def test_empty_supporting_titles_fall_through_to_answers(tmp_path, load):
    q = load(write_jsonl(tmp_path / "d.jsonl", [_rec(ctxs=CTXS, supporting_titles=[])]))[0]
    assert (q.gold_source, q.gold_indices) == ("answer", (0,))


def test_questions_without_gold_are_counted_not_scored(tmp_path, load):
    records = [
        _rec(id="has", ctxs=CTXS),
        _rec(id="answer-not-found", ctxs=CTXS[1:]),
        _rec(id="titles-not-found", ctxs=CTXS, supporting_titles=["Nowhere"]),
        # Every answer normalises to nothing: gold cannot be decided at all.
        _rec(id="undecidable", target="The", answers=["the", "!"], ctxs=CTXS),
    ]
    qs = load(write_jsonl(tmp_path / "d.jsonl", records))
    sources = {q.id: (q.gold_source, q.gold_indices, q.has_gold) for q in qs}
    assert sources == {
        "has": ("answer", (0,), True),
        "answer-not-found": ("answer", (), False),
        "titles-not-found": ("titles", (), False),
        "undecidable": ("none", (), False),
    }
    assert [p.gold for p in qs[3].passages] == [None, None, None]
    assert qs.without_gold_indices() == [1, 2, 3]
    assert count_without_gold(qs) == qs.num_without_gold == 3
    assert [q.id for q in qs.with_gold()] == ["has"]
    assert count_without_gold(qs.select([0, 2])) == 1


# --------------------------------------------------------------------------------------------
# QuestionSet, Question


def test_question_set_indexing_iteration_and_select(tmp_path, load):
    records = [_rec(id=str(i), question=f"Q{i}") for i in range(5)]
    qs = load(write_jsonl(tmp_path / "d.jsonl", records))
    assert isinstance(qs, QuestionSet) and len(qs) == 5
    assert [q.question for q in qs] == [f"Q{i}" for i in range(5)]
    assert [qs[i] for i in range(5)] == list(qs)
    assert qs[-1].id == "4"
    with pytest.raises(IndexError):
        qs[5]
    sub = qs.select([3, 1])
    assert isinstance(sub, QuestionSet) and [q.id for q in sub] == ["3", "1"]
    assert [q.id for q in qs[1:4:2]] == ["1", "3"]
    assert qs.ids == ["0", "1", "2", "3", "4"]
    assert isinstance(qs[0], Question) and isinstance(qs[0].passages[0], Passage)


def test_question_computes_answer_passages_when_built_directly():
    q = Question(
        id="1",
        question="Q",
        target="cat",
        answers=("cat",),
        passages=(Passage("t", "a cat"), Passage("t", "concatenate"), Passage("t", "Cat!")),
        gold_source="answer",
    )
    assert q.answer_passages == (0, 2)
    with pytest.raises(ValueError, match="gold_source"):
        Question("1", "Q", "a", ("a",), (), gold_source="guess")


# --------------------------------------------------------------------------------------------
# Storage: memory-mapped, bounded memory, cache invalidation


def test_dataset_is_memory_mapped_from_cache_files(tmp_path, load):
    qs = load(write_jsonl(tmp_path / "d.jsonl", MIXED))
    files = qs.dataset.cache_files
    assert files and all(os.path.isfile(f["filename"]) for f in files)
    assert all(f["filename"].startswith(str(tmp_path / "cache")) for f in files)


def test_loading_a_large_file_keeps_memory_bounded(tmp_path, load):
    # ~10k records, ~30 MB. tracemalloc sees Python allocations (records are never all held as
    # objects); pyarrow's own pool must not hold the table either (it is memory-mapped).
    # Kept at 10k records because tracemalloc slows the loader ~7x.
    path = tmp_path / "big.jsonl"
    filler = "lorem ipsum dolor sit amet " * 110
    with path.open("w", encoding="utf-8") as f:
        for i in range(10_000):
            rec = {
                "id": i,
                "question": f"question {i}?",
                "answers": [f"answer{i}"],
                "ctxs": [{"title": f"t{i}", "text": f"{filler} answer{i}"}],
            }
            f.write(json.dumps(rec) + "\n")
    size = path.stat().st_size
    assert size > 25e6
    import datasets  # noqa: F401 - imported before measuring: import cost is not load cost

    arrow_before = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        qs = load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(qs) == 10_000
    assert peak < size / 4, (peak, size)
    assert pa.total_allocated_bytes() - arrow_before < size / 10
    assert qs[9_999].gold_indices == (0,)


def test_reload_after_the_file_changes_returns_new_content(tmp_path, load):
    path = write_jsonl(tmp_path / "d.jsonl", [_rec(question="Old question?")])
    first = load(path)
    assert first[0].question == "Old question?"
    again = load(path)
    assert again.dataset.cache_files == first.dataset.cache_files  # unchanged: cache reused

    stat = path.stat()
    write_jsonl(path, [_rec(question="New question?")])  # same size
    assert path.stat().st_size == stat.st_size
    # Even with the old modification time restored, the content hash changes the key.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load(path)[0].question == "New question?"

    write_jsonl(path, [_rec(question="A longer new question?"), _rec(id="second")])
    qs = load(path)
    assert [q.question for q in qs] == ["A longer new question?", "Who discovered polonium?"]
    # Loading options are part of the key too.
    assert len(load(path, max_passages=1)[0].passages) == 1
    assert len(load(path)[0].passages) == 2
