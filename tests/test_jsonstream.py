"""The one streaming JSON / JSONL record reader (gumbel_rerank.data.jsonstream) on its own."""

import json

import pytest

import gumbel_rerank.data.jsonstream as jsonstream
from gumbel_rerank.data.jsonstream import (
    BOM,
    DataError,
    Layout,
    UnreadableFile,
    Wording,
    id_problem,
    iter_values,
    read_records,
    sniff,
    string_problem,
)

RECORDS = [
    {"id": "a", "text": "plain"},
    {"id": 2, "text": 'caf\u00e9 \u4e2d\u6587 \U0001f98e \\ " end', "n": [1.5, None, True]},
    {"id": "c", "text": "x" * 300, "deep": {"k": [{"v": "\U0001f600"}]}},
    {"id": "d", "text": ""},
]


def write_list(path, records=RECORDS, *, bom=False, indent=None):
    data = json.dumps(records, ensure_ascii=False, indent=indent).encode()
    path.write_bytes((BOM if bom else b"") + data)
    return path


def write_lines(path, records=RECORDS, *, bom=False):
    # Blank lines in between: they are skipped but still counted in line numbers.
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in records]
    path.write_bytes((BOM if bom else b"") + b"\n\n".join(lines) + b"\n")
    return path


def check_offsets(path, records):
    """Each record's bytes, cut out of the file by its offsets, are its JSON text."""
    data = path.read_bytes()
    for rec in records:
        assert json.loads(data[rec.start : rec.end].decode("utf-8")) == rec.obj


# --------------------------------------------------------------------------------------------
# Sniffing


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[1]", Layout("list", 0)),
        (b' \n\t{"a": 1}\n', Layout("lines", 3)),
        (BOM + b"\n[]", Layout("list", 4)),
    ],
)
def test_sniff_tells_list_from_lines(tmp_path, content, expected):
    path = tmp_path / "f"
    path.write_bytes(content)
    assert sniff(path, "f") == expected
    kind, offset = sniff(path, "f")  # a plain pair, too
    assert (kind, offset) == expected


def test_sniff_file_level_problems(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(BOM + b" \n ")
    with pytest.raises(UnreadableFile, match="^f: empty file, expected a JSON list or JSON lines$"):
        sniff(path, "f")
    path.write_bytes(b"  qid Q0 d1 1 2.0 run\n")
    with pytest.raises(UnreadableFile) as err:
        sniff(path, "f")
    assert str(err.value) == (
        "f: not a JSON list or JSON lines file: first non-whitespace character is 'q' at byte "
        "offset 2, expected '[' or '{'"
    )
    assert sniff(path, "f", other_ok=True) == Layout("other", 2)
    with pytest.raises(DataError, match="^nowhere: no such file$"):
        sniff(tmp_path / "nowhere", "nowhere")


# --------------------------------------------------------------------------------------------
# Records, numbers, offsets


def test_json_list_records_numbers_and_offsets(tmp_path):
    path = write_list(tmp_path / "d.json", indent=2)
    records = list(read_records(path, "d.json"))
    assert [r.obj for r in records] == RECORDS
    assert [(r.number, r.ordinal) for r in records] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert all(r.problem is None for r in records)
    check_offsets(path, records)


def test_jsonl_records_numbers_and_offsets(tmp_path):
    path = write_lines(tmp_path / "d.jsonl")
    records = list(read_records(path, "d.jsonl"))
    assert [r.obj for r in records] == RECORDS
    # 1-based line numbers, blank lines counted; ordinals count records only.
    assert [(r.number, r.ordinal) for r in records] == [(1, 0), (3, 1), (5, 2), (7, 3)]
    check_offsets(path, records)
    assert list(iter_values(path, "d.jsonl")) == [(r.number, r.obj) for r in records]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_records_spanning_chunks_and_utf8_cut_between_chunks(tmp_path, monkeypatch, chunk):
    # Tiny reads put chunk borders inside strings, numbers, literals, escapes and every byte of
    # the multi-byte characters (2, 3 and 4 bytes long).
    path = write_list(tmp_path / "d.json", [*RECORDS, 123456789012, "s", [1, [2]]])
    expected = list(read_records(path, "d.json"))
    monkeypatch.setattr(jsonstream, "_CHUNK_BYTES", chunk)
    records = list(read_records(path, "d.json"))
    assert [(r.number, r.obj, r.start, r.end) for r in records] == [
        (r.number, r.obj, r.start, r.end) for r in expected
    ]
    assert records[4].obj == 123456789012  # a number cut by a chunk border is not cut short
    check_offsets(path, records)


@pytest.mark.parametrize("writer", [write_list, write_lines])
def test_bom_is_skipped_and_offsets_count_it(tmp_path, monkeypatch, writer):
    monkeypatch.setattr(jsonstream, "_CHUNK_BYTES", 4)
    path = writer(tmp_path / "d", bom=True)
    records = list(read_records(path, "d", sniff(path, "d").offset))
    assert [r.obj for r in records] == RECORDS
    assert records[0].start == len(BOM) + (1 if writer is write_list else 0)
    check_offsets(path, records)


def test_surrogate_escapes_are_flagged(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": "\\ud800"}\n{"a": "\\u00e9"}\n', encoding="utf-8")
    assert [r.maybe_surrogates for r in read_records(path, "d")] == [True, False]


# --------------------------------------------------------------------------------------------
# Problems


def test_jsonl_problems_are_per_record(tmp_path):
    good = json.dumps(RECORDS[0]).encode()
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        good + b"\n" + good.replace(b"plain", b"pl\xffin") + b"\n\n" + good[:20] + b"\n"
    )
    records = list(read_records(path, "d.jsonl"))
    assert [(r.number, r.ordinal) for r in records] == [(1, 0), (2, 1), (4, 2)]
    assert records[0].problem is None
    bad_byte = path.read_bytes().index(b"\xff")
    assert records[1].problem == f"<record>: invalid UTF-8 byte 0xff at byte offset {bad_byte}"
    assert records[2].problem == (
        "<record>: invalid JSON: Expecting value at column 20 (the record ends early: a truncated "
        "line, or an object spread over several lines, which JSON lines does not allow)"
    )
    # The raising variant stops at the first problem, naming file and line.
    with pytest.raises(DataError, match=r"^d.jsonl:2: <record>: invalid UTF-8 byte 0xff"):
        list(iter_values(path, "d.jsonl"))


def test_bad_utf8_in_a_json_list_names_the_record_holding_it(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "_CHUNK_BYTES", 1 << 20)  # the whole file in one read
    body = json.dumps(RECORDS, ensure_ascii=False).encode().replace(b'"d"', b'"\xff"')
    path = tmp_path / "d.json"
    path.write_bytes(body)
    # Records before the bad byte still come out; the error names record 3, where it is.
    got = []
    with pytest.raises(UnreadableFile) as err:
        for rec in read_records(path, "d.json"):
            got.append(rec.number)
    assert got == [0, 1, 2]
    offset = body.index(b"\xff")
    assert err.value.problems == [
        f"d.json:3: <record>: invalid UTF-8 byte 0xff at byte offset {offset}"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"a": 1},\n {"a" 2}]', "1: <record>: invalid JSON: Expecting ':' delimiter at line 2 column 7"),
        ('\n\n  [{"a": 1}, {"a": "x', "1: <record>: unexpected end of file inside the record (truncated file?): Unterminated string starting at line 3 column 20"),
        ('[{"a": 1}', "0: <record>: unexpected end of file: the list is never closed with ']'"),
        ('[{"a": 1},', "0: <record>: unexpected end of file after ',' (truncated file?)"),
        ('[{"a": 1}, ]', "0: <record>: invalid JSON: trailing comma before ']' at line 1 column 12"),
        ('[{"a": 1}]]', "0: <record>: unexpected data after the closing ']' at line 1 column 11"),
    ],
)  # fmt: skip
def test_broken_json_list_is_unreadable(tmp_path, text, message):
    path = tmp_path / "d.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UnreadableFile) as err:
        list(read_records(path, "d.json"))
    assert err.value.problems == [f"d.json:{message}"]


def test_wording_changes_texts_and_numbering(tmp_path):
    wording = Wording(
        bad_json="bad: {msg}",
        truncated="cut: {msg}",
        near_end_truncated=True,
        comma_starts_record=True,
    )
    path = tmp_path / "d.json"
    path.write_text('[{"a": 1},\n {"a" 2}]', encoding="utf-8")
    with pytest.raises(UnreadableFile, match=r"^d:1: <record>: cut: Expecting ':' delimiter$"):
        list(read_records(path, "d", wording=wording))
    path.write_text('[{"a": 1},', encoding="utf-8")
    with pytest.raises(UnreadableFile, match=r"^d:1: <record>: unexpected end of file after ','"):
        list(read_records(path, "d", wording=wording))


# --------------------------------------------------------------------------------------------
# Resuming from a bookmark


@pytest.mark.parametrize("writer", [write_list, write_lines])
@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_resume_after_each_record_yields_exactly_the_rest(tmp_path, monkeypatch, writer, chunk):
    monkeypatch.setattr(jsonstream, "_CHUNK_BYTES", chunk)
    path = writer(tmp_path / "d", bom=True)
    start = sniff(path, "d").offset
    records = list(read_records(path, "d", start))

    def summary(recs):
        return [(r.number, r.ordinal, r.obj, r.start, r.end) for r in recs]

    for k, rec in enumerate(records):
        rest = list(read_records(path, "d", start, after=rec.bookmark))
        assert summary(rest) == summary(records[k + 1 :])
    # The bookmark is a byte offset plus the numbering: it survives being stored as JSON.
    offset, number, ordinal = json.loads(json.dumps(records[1].bookmark))
    again = read_records(path, "d", start, after=jsonstream.Bookmark(offset, number, ordinal))
    assert summary(again) == summary(records[2:])


def test_errors_after_resuming_give_file_positions(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"a": "\u00e9"},\n {"a": 2},  {"a" 3}]', encoding="utf-8")
    first = next(iter(read_records(path, "d")))
    with pytest.raises(UnreadableFile) as err:
        list(read_records(path, "d", after=first.bookmark))
    assert err.value.problems == [
        "d:2: <record>: invalid JSON: Expecting ':' delimiter at line 2 column 18"
    ]


# --------------------------------------------------------------------------------------------
# Field checks


def test_string_and_id_problems():
    assert string_problem("x") is None
    assert string_problem(3) == "expected a string, got an integer"
    assert string_problem(" ", nonempty=True) == "empty string"
    assert string_problem(" ") is None
    lone = json.loads('"\\ud800"')
    assert string_problem(lone) is None
    assert string_problem(lone, surrogates=True) == (
        "invalid unicode: lone surrogate from a \\uXXXX escape"
    )
    assert id_problem(7) is None and id_problem("q1") is None
    assert id_problem(True) == "expected a string or an integer, got a bool"
    assert id_problem("") == "empty string"
