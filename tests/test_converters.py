"""Dataset converters (gumbel_rerank.data.converters) and the data/get_data.sh fetch script.

Inputs are small records in each dataset's published format (field names and nesting as
released; texts shortened). Outputs are checked through the real loader, load_questions."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

import pytest

import gumbel_rerank.data.converters as conv
import gumbel_rerank.data.jsonstream as jsonstream
from gumbel_rerank.cli.convert import cli_main
from gumbel_rerank.data.converters import KINDS, ConversionReport, convert
from gumbel_rerank.data.questions import DataError, load_questions

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data" / "get_data.sh"

# HotpotQA (hotpot_dev_distractor_v1.json): a JSON list; sentences after the first carry their
# own leading space. The third record is shaped like the unlabelled test split.
HOTPOT = [
    {
        "_id": "5a8b57f25542995d1e6f1371",
        "answer": "yes",
        "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
        "supporting_facts": [["Scott Derrickson", 0], ["Ed Wood", 0]],
        "context": [
            [
                "Ed Wood (film)",
                [
                    "Ed Wood is a 1994 American biographical period comedy-drama film directed "
                    "and produced by Tim Burton.",
                    " The film concerns the period in Wood's life when he made his best-known "
                    "films.",
                ],
            ],
            [
                "Scott Derrickson",
                [
                    "Scott Derrickson (born July 16, 1966) is an American director, screenwriter "
                    "and producer.",
                    " He lives in Los Angeles, California.",
                ],
            ],
            [
                "Ed Wood",
                [
                    "Edward Davis Wood Jr. (October 10, 1924 – December 10, 1978) was an "
                    "American filmmaker, actor, writer, producer, and director."
                ],
            ],
        ],
        "type": "comparison",
        "level": "hard",
    },
    {
        "_id": "5a8c7595554299585d9e36b6",
        "answer": "Chief of Protocol",
        "question": "What government position was held by the woman who portrayed Corliss "
        "Archer in the film Kiss and Tell?",
        "supporting_facts": [
            ["Kiss and Tell (1945 film)", 0],
            ["Shirley Temple", 0],
            ["Shirley Temple", 1],
        ],
        "context": [
            [
                "Kiss and Tell (1945 film)",
                [
                    "Kiss and Tell is a 1945 American comedy film starring then 17-year-old "
                    "Shirley Temple as Corliss Archer."
                ],
            ],
            ["Meet Corliss Archer", ["Meet Corliss Archer is an American radio sitcom."]],
            [
                "Shirley Temple",
                [
                    "Shirley Temple Black (April 23, 1928 – February 10, 2014) was an American "
                    "actress and diplomat.",
                    " As an adult, she served as Chief of Protocol of the United States.",
                ],
            ],
        ],
        "type": "bridge",
        "level": "medium",
    },
    {
        "_id": "5ae6f5b45542991bbc9761ec",
        "question": "Which band was formed first, Gorky's Zygotic Mynci or Nightwish?",
        "context": [["Nightwish", ["Nightwish is a symphonic metal band from Finland."]]],
    },
]

# 2WikiMultihopQA (data/dev.json): HotpotQA's layout, sentences without leading spaces. The
# supporting-fact title of the first record is in decomposed Unicode (NFD): it must still match.
TWOWIKI = [
    {
        "_id": "8813f87c0bdd11eba7f7acde48001122",
        "type": "compositional",
        "question": "Who is the mother of the director of film Polish-Russian War (Film)?",
        "context": [
            [
                "Maheen Khan",
                [
                    "Maheen Khan is a Pakistani fashion and costume designer.",
                    "She has done many national and international fashion shows.",
                ],
            ],
            [
                "Polish-Russian War (film)",
                [
                    "Polish-Russian War",
                    "(Wojna polsko-ruska) is a 2009 Polish film directed by Xawery Żuławski.",
                ],
            ],
            [
                "Xawery Żuławski",
                [
                    "Xawery Żuławski (born 22 December 1971 in Warsaw) is a Polish film director.",
                    "He is the son of actress Małgorzata Braunek and director Andrzej Żuławski.",
                ],
            ],
        ],
        "supporting_facts": [
            ["Polish-Russian War (film)", 1],
            [unicodedata.normalize("NFD", "Xawery Żuławski"), 1],
        ],
        "evidences": [
            ["Polish-Russian War", "director", "Xawery Żuławski"],
            ["Xawery Żuławski", "mother", "Małgorzata Braunek"],
        ],
        "answer": "Małgorzata Braunek",
        "entity_ids": "Q7208523_Q8042617",
    },
    {
        "_id": "028eaef60bdb11eba7f7acde48001122",
        "type": "comparison",
        "question": "Which film came out first, Blind Shaft or The Mask Of Fu Manchu?",
        "context": [
            ["Blind Shaft", ["Blind Shaft is a 2003 film about a pair of brutal con artists."]],
            ["Zhu Ziqing", ["Zhu Ziqing was a Chinese poet and essayist."]],
        ],
        # Not among the context titles (as in retrieval settings): a question without gold.
        "supporting_facts": [["The Mask of Fu Manchu", 0], ["Blind Shaft (film)", 0]],
        "evidences": [
            ["Blind Shaft", "publication date", "2003"],
            ["The Mask of Fu Manchu", "publication date", "1932"],
        ],
        "answer": "The Mask Of Fu Manchu",
        "entity_ids": "Q4927132_Q7739479",
    },
]

# MuSiQue (musique_full_v1.0_dev.jsonl): JSON lines. The third record is the unanswerable twin
# of the first: same id, answerable false, the supporting paragraph of one hop removed.
_COLLEGIAN = {
    "idx": 1,
    "title": "The Collegian (Houston Baptist University)",
    "paragraph_text": "The Collegian is the bi-weekly official student publication of Houston "
    "Baptist University in Houston, Texas.",
    "is_supporting": True,
}
MUSIQUE = [
    {
        "id": "2hop__482757_12019",
        "paragraphs": [
            {
                "idx": 0,
                "title": "Pakistan Super League",
                "paragraph_text": "Pakistan Super League is a Twenty20 cricket league.",
                "is_supporting": False,
            },
            _COLLEGIAN,
            {
                "idx": 2,
                "title": "Houston Baptist University",
                "paragraph_text": "Houston Baptist University was founded in 1960.",
                "is_supporting": True,
            },
        ],
        "question": "When was the institute that owned The Collegian founded?",
        "question_decomposition": [
            {
                "id": 482757,
                "question": "The Collegian >> owned by",
                "answer": "Houston Baptist University",
                "paragraph_support_idx": 1,
            },
            {
                "id": 12019,
                "question": "When was #1 founded?",
                "answer": "1960",
                "paragraph_support_idx": 2,
            },
        ],
        "answer": "1960",
        "answer_aliases": ["1960", "nineteen sixty", ""],
        "answerable": True,
    },
    {
        "id": "2hop__711946_269414",
        "paragraphs": [
            {
                "idx": 0,
                "title": "KISS (Kansas City)",
                "paragraph_text": "KISS is a radio station licensed to Kansas City, Missouri.",
                "is_supporting": True,
            },
            {
                "idx": 1,
                "title": "Kansas City, Missouri",
                "paragraph_text": "Kansas City is the largest city in Missouri.",
                "is_supporting": True,
            },
        ],
        "question": "What state is the city where KISS is licensed to broadcast located in?",
        "question_decomposition": [],
        "answer": "Missouri",
        "answer_aliases": ["MO"],
        "answerable": True,
    },
    {
        "id": "2hop__482757_12019",
        "paragraphs": [
            {
                "idx": 0,
                "title": "Pakistan Super League",
                "paragraph_text": "Pakistan Super League is a Twenty20 cricket league.",
                "is_supporting": False,
            },
            _COLLEGIAN,
        ],
        "question": "When was the institute that owned The Collegian founded?",
        "question_decomposition": [],
        "answer": "1960",
        "answer_aliases": [],
        "answerable": False,
    },
]

# FiD's NQ (open_domain_data/NQ/dev.json: no question id, no target, no has_answer) and a
# DPR-style TQA record (target, string scores, has_answer). The has_answer values of the second
# record contradict answer matching on purpose: the dataset's flag must win.
FID = [
    {
        "question": "who got the first nobel prize in physics",
        "answers": ["Wilhelm Conrad Röntgen"],
        "ctxs": [
            {
                "id": "628725",
                "title": "Nobel Prize in Physics",
                "text": "The first Nobel Prize in Physics was awarded to physicist Wilhelm "
                "Conrad Röntgen in recognition of the extraordinary services he rendered.",
            },
            {
                "id": "284495",
                "title": "Nobel Prize",
                "text": "The Nobel Prizes are five separate prizes awarded since 1901.",
            },
        ],
    },
    {
        "id": "tc_33",
        "question": "What element did Marie Curie name after her native land?",
        "target": "Polonium",
        "answers": ["Polonium", "Po (chemical element)", "Po"],
        "ctxs": [
            {
                "id": "wiki:1",
                "title": "Marie Curie",
                "text": "She named the first chemical element that she discovered polonium.",
                "score": "81.25",
                "has_answer": False,
            },
            {
                "id": 2,
                "title": "Poland",
                "text": "Poland is a country in Central Europe.",
                "score": 70,
                "has_answer": True,
            },
        ],
    },
]

# syhuang/gumbel-reranking-data: already our format, gold flags under their own names.
GUMBEL = [
    {
        "id": "h1",
        "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
        "target": "yes",
        "answers": ["yes"],
        "ctxs": [
            {"title": "Ed Wood", "text": "Ed Wood was an American filmmaker.", "is_gold": True},
            {"title": "Ed Wood (film)", "text": "Ed Wood is a 1994 film.", "is_gold": False},
            {"title": "Scott Derrickson", "text": "An American director.", "is_gold": 1},
        ],
    },
    {
        "question": "who got the first nobel prize in physics",
        "answers": ["Wilhelm Conrad Röntgen"],
        "ctxs": [
            {"title": "Nobel Prize", "text": "Awarded since 1901.", "has_answer": False},
            {"title": "Röntgen", "text": "Wilhelm Conrad Röntgen won it.", "has_answer": True},
        ],
    },
]


def write_json(path: Path, records) -> Path:
    path.write_text(json.dumps(records, indent=4, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def raw_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def load(tmp_path):
    def _load(path):
        return load_questions(path, cache_dir=tmp_path / "cache")

    return _load


def gold_titles(q) -> list[str]:
    return [q.passages[i].title for i in q.gold_indices]


# --------------------------------------------------------------------------------------------
# Converters


def test_hotpotqa(tmp_path, load):
    src = write_json(tmp_path / "hotpot_dev_distractor_v1.json", HOTPOT)
    report = convert("hotpotqa", src, tmp_path / "out" / "dev.jsonl")
    assert isinstance(report, ConversionReport)
    assert (report.records, report.questions, report.passages) == (3, 2, 6)
    assert report.skipped == {conv.NO_ANSWER: 1}
    assert (report.gold_passages, report.without_gold) == (4, 0)
    assert report.gold_sources == {"supporting_facts": 2}

    qs = load(tmp_path / "out" / "dev.jsonl")
    assert qs.ids == ["5a8b57f25542995d1e6f1371", "5a8c7595554299585d9e36b6"]
    q0, q1 = qs[0], qs[1]
    assert q0.question == HOTPOT[0]["question"]
    assert (q0.target, q0.answers) == ("yes", ("yes",))
    assert q0.gold_source == "flag"
    # Supporting facts name two titles: both passages are gold, "Ed Wood (film)" is not.
    assert gold_titles(q0) == ["Scott Derrickson", "Ed Wood"]
    assert gold_titles(q1) == ["Kiss and Tell (1945 film)", "Shirley Temple"]
    # "".join keeps HotpotQA's own inter-sentence spaces: exactly one space, none doubled.
    assert q0.passages[1].text == (
        "Scott Derrickson (born July 16, 1966) is an American director, screenwriter and "
        "producer. He lives in Los Angeles, California."
    )
    assert q1.target == "Chief of Protocol"
    # "yes" is in no passage: the question's gold passages are all indirect evidence.
    assert q0.indirect_gold_indices == q0.gold_indices
    written = raw_lines(tmp_path / "out" / "dev.jsonl")
    assert (written[0]["type"], written[0]["level"]) == ("comparison", "hard")


def test_hotpotqa_max_passages_and_limit(tmp_path, load):
    src = write_json(tmp_path / "hotpot.json", HOTPOT)
    report = convert("hotpotqa", src, tmp_path / "cut.jsonl", max_passages=2)
    assert report.passages == 4
    q0, q1 = load(tmp_path / "cut.jsonl")
    assert [p.title for p in q0.passages] == ["Ed Wood (film)", "Scott Derrickson"]
    assert gold_titles(q0) == ["Scott Derrickson"]
    assert gold_titles(q1) == ["Kiss and Tell (1945 film)"]

    report = convert("hotpotqa", src, tmp_path / "one.jsonl", limit=1)
    assert (report.records, report.questions) == (1, 1)  # stops reading after the limit
    assert load(tmp_path / "one.jsonl").ids == ["5a8b57f25542995d1e6f1371"]


def test_2wiki(tmp_path, load):
    src = write_json(tmp_path / "dev.json", TWOWIKI)
    report = convert("2wiki", src, tmp_path / "dev.jsonl")
    assert (report.questions, report.without_gold, report.gold_passages) == (2, 1, 2)
    qs = load(tmp_path / "dev.jsonl")
    q0, q1 = qs
    assert q0.id == "8813f87c0bdd11eba7f7acde48001122"
    assert q0.target == "Małgorzata Braunek"
    # NFD title in supporting_facts matches the NFC context title.
    assert gold_titles(q0) == ["Polish-Russian War (film)", "Xawery Żuławski"]
    # 2Wiki sentences have no leading spaces: joined with one.
    assert q0.passages[1].text == (
        "Polish-Russian War (Wojna polsko-ruska) is a 2009 Polish film directed by Xawery Żuławski."
    )
    assert q1.gold_indices == () and q1.gold_source == "flag"
    assert qs.num_without_gold == 1
    assert raw_lines(tmp_path / "dev.jsonl")[1]["type"] == "comparison"


def test_musique_skips_unanswerable_by_default(tmp_path, load):
    src = write_jsonl(tmp_path / "musique_full_v1.0_dev.jsonl", MUSIQUE)
    report = convert("musique", src, tmp_path / "dev.jsonl")
    assert (report.records, report.questions) == (3, 2)
    assert report.skipped == {conv.UNANSWERABLE: 1}
    qs = load(tmp_path / "dev.jsonl")
    assert qs.ids == ["2hop__482757_12019", "2hop__711946_269414"]
    q0, q1 = qs
    # answer first, then aliases; duplicates and blank aliases dropped.
    assert (q0.target, q0.answers) == ("1960", ("1960", "nineteen sixty"))
    assert q1.answers == ("Missouri", "MO")
    assert gold_titles(q0) == [
        "The Collegian (Houston Baptist University)",
        "Houston Baptist University",
    ]
    assert q0.passages[2].text == "Houston Baptist University was founded in 1960."
    # The Collegian paragraph is gold without containing the answer: indirect evidence.
    assert q0.indirect_gold_indices == (1,)
    assert [p["idx"] for p in raw_lines(tmp_path / "dev.jsonl")[0]["ctxs"]] == [0, 1, 2]


def test_musique_keep_unanswerable_max_passages_limit(tmp_path, load):
    src = write_jsonl(tmp_path / "musique.jsonl", MUSIQUE)
    report = convert("musique", src, tmp_path / "all.jsonl", keep_unanswerable=True)
    assert (report.questions, report.skipped) == (3, {})
    qs = load(tmp_path / "all.jsonl")
    # The twin shares its answerable question's id in MuSiQue-Full: renamed, not a duplicate.
    assert qs.ids[2] == "2hop__482757_12019__unanswerable"
    assert raw_lines(tmp_path / "all.jsonl")[2]["answerable"] is False

    report = convert("musique", src, tmp_path / "cut.jsonl", max_passages=1, limit=1)
    assert (report.questions, report.passages, report.without_gold) == (1, 1, 1)
    (q,) = load(tmp_path / "cut.jsonl")
    assert [p.title for p in q.passages] == ["Pakistan Super League"] and not q.has_gold


def test_fid(tmp_path, load):
    src = write_json(tmp_path / "NQ_dev.json", FID)
    report = convert("fid", src, tmp_path / "dev.jsonl")
    assert report.questions == 2
    assert report.gold_sources == {"answer match": 1, "has_answer": 1}
    q0, q1 = load(tmp_path / "dev.jsonl")
    # No id in FiD's files: the 0-based position, as the loader would give.
    assert (q0.id, q1.id) == ("0", "tc_33")
    assert (q0.target, q0.answers) == ("Wilhelm Conrad Röntgen", ("Wilhelm Conrad Röntgen",))
    assert (q1.target, q1.answers) == ("Polonium", ("Polonium", "Po (chemical element)", "Po"))
    assert q0.gold_indices == (0,)  # computed: the first passage contains the answer
    assert q1.gold_indices == (1,)  # has_answer, even where answer matching disagrees
    assert [(p.id, p.score) for p in q0.passages] == [("628725", None), ("284495", None)]
    assert [(p.id, p.score) for p in q1.passages] == [("wiki:1", 81.25), ("2", 70.0)]
    assert [p.get("has_answer") for p in raw_lines(tmp_path / "dev.jsonl")[1]["ctxs"]] == [
        False,
        True,
    ]


def test_fid_streams_a_json_list_in_small_chunks(tmp_path, monkeypatch):
    src = write_json(tmp_path / "nq.json", FID * 3)  # ids "0", "tc_33" repeat: make them unique
    records = json.loads(src.read_text(encoding="utf-8"))
    for i, r in enumerate(records):
        r["id"] = f"q{i}"
    write_json(src, records)
    convert("fid", src, tmp_path / "whole.jsonl")
    # Chunks of 5 bytes: every record, string and multi-byte character spans chunk borders.
    monkeypatch.setattr(jsonstream, "_CHUNK_BYTES", 5)
    convert("fid", src, tmp_path / "chunked.jsonl")
    assert (tmp_path / "chunked.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert len(raw_lines(tmp_path / "chunked.jsonl")) == 6


def test_gumbel_data_passthrough(tmp_path, load):
    src = write_json(tmp_path / "hotpotqa_dev.json", GUMBEL)
    report = convert("gumbel-data", src, tmp_path / "dev.jsonl", max_passages=2)
    assert (report.questions, report.passages) == (2, 4)
    assert (report.gold_passages, report.without_gold) == (2, 0)
    written = raw_lines(tmp_path / "dev.jsonl")
    # Unchanged but for the passage cut: flags keep their own names and values.
    assert written[0] == {**GUMBEL[0], "ctxs": GUMBEL[0]["ctxs"][:2]}
    assert written[1] == GUMBEL[1]
    q0, q1 = load(tmp_path / "dev.jsonl")
    assert q0.gold_indices == (0,) and q1.gold_indices == (1,)
    assert q1.id == "1"


def test_gumbel_data_errors_name_the_input_file_and_record(tmp_path):
    bad = [GUMBEL[0], {**GUMBEL[1], "answers": [""]}, {"question": "q?", "answers": ["a"]}]
    src = write_jsonl(tmp_path / "train.jsonl", bad)
    dst = tmp_path / "train_out.jsonl"
    with pytest.raises(DataError) as err:
        convert("gumbel-data", src, dst)
    assert f"{src}:2: answers[0]: empty string" in err.value.problems
    assert f"{src}:3: ctxs: missing field" in err.value.problems
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]  # no temp files left


def _list(*records):
    return json.dumps(list(records), indent=2)


def _lines(*records):
    return "".join(json.dumps(r) + "\n" for r in records)


_H0, _H1 = HOTPOT[0], HOTPOT[1]
_no_context = {k: v for k, v in _H1.items() if k != "context"}
_bad_sentences = {**_H1, "context": [["Kiss and Tell (1945 film)", "Kiss and Tell is a film."]]}
_bad_support = {
    **MUSIQUE[1],
    "paragraphs": [{**MUSIQUE[1]["paragraphs"][0], "is_supporting": "yes"}],
}
_fid_answers = {**FID[0], "answers": "Wilhelm Conrad Röntgen"}
_fid_score = {**FID[1], "ctxs": [{**FID[1]["ctxs"][0], "score": "high"}]}

BAD_INPUTS = [
    ("hotpotqa", _list(_H0, _no_context), "{src}:1: context: missing field"),
    (
        "hotpotqa",
        _list(_H0, _bad_sentences),
        "{src}:1: context[0][1]: expected a list of sentences, got a string",
    ),
    (
        "hotpotqa",
        _list(_H0, {**_H1, "answer": 1960}),
        "{src}:1: answer: expected a string, got an integer",
    ),
    ("hotpotqa", _list(_H0, _H0), "{src}:1: _id: duplicate id '5a8b57f25542995d1e6f1371'"),
    (
        "2wiki",
        _list(TWOWIKI[0], {**TWOWIKI[1], "supporting_facts": [["Blind Shaft"]]}),
        "{src}:1: supporting_facts[0]: expected a [title, sentence_id] pair, got a list of 1 items",
    ),
    (
        "musique",
        _lines(MUSIQUE[0], _bad_support),
        "{src}:2: paragraphs[0].is_supporting: expected a bool or 0/1, got a string",
    ),
    (
        "musique",
        _lines(MUSIQUE[0], [1, 2]),
        "{src}:2: <record>: expected a JSON object, got a list",
    ),
    ("musique", _lines(MUSIQUE[0]) + _lines(MUSIQUE[1])[:40], "{src}:2: <record>: invalid JSON"),
    (
        "fid",
        _list(FID[1], _fid_answers),
        "{src}:1: answers: expected a list of strings, got a string",
    ),
    (
        "fid",
        _list(FID[1], _fid_score),
        "{src}:1: ctxs[0].score: expected a number, got the string 'high'",
    ),
    ("fid", _list(*FID)[:-200], "{src}:1: <record>: unexpected end of file inside the record"),
    (
        "fid",
        _list(*FID)[:-1],
        "{src}:1: <record>: unexpected end of file: the list is never closed",
    ),
    ("fid", "", "{src}: empty file"),
    ("fid", "question,answers\n", "{src}: not a JSON list or JSON lines file"),
    ("hotpotqa", _list(HOTPOT[2]), "{src}: no questions to write (1 records skipped: 1 no answer"),
]


@pytest.mark.parametrize(("kind", "content", "expected"), BAD_INPUTS)
def test_bad_input_raises_data_error_and_keeps_the_old_output(tmp_path, kind, content, expected):
    src = tmp_path / "in.json"
    src.write_text(content, encoding="utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "dev.jsonl"
    dst.write_bytes(b'{"previous": "conversion"}\n')
    before = dst.read_bytes()
    with pytest.raises(DataError) as err:
        convert(kind, src, dst)
    assert expected.format(src=src) in str(err.value)
    assert dst.read_bytes() == before
    assert os.listdir(out_dir) == ["dev.jsonl"]  # the temporary file is gone too


def test_missing_input_and_bad_options(tmp_path):
    assert KINDS == ("hotpotqa", "musique", "2wiki", "fid", "gumbel-data")
    with pytest.raises(DataError, match="no such file"):
        convert("hotpotqa", tmp_path / "nope.json", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
    src = write_json(tmp_path / "h.json", HOTPOT)
    with pytest.raises(ValueError, match="unknown dataset kind"):
        convert("squad", src, tmp_path / "out.jsonl")
    with pytest.raises(ValueError, match="max_passages"):
        convert("hotpotqa", src, tmp_path / "out.jsonl", max_passages=0)
    with pytest.raises(ValueError, match="only applies to musique"):
        convert("hotpotqa", src, tmp_path / "out.jsonl", keep_unanswerable=True)
    with pytest.raises(DataError, match="overwrite the input"):
        convert("hotpotqa", src, src)
    assert json.loads(src.read_text(encoding="utf-8")) == HOTPOT


# --------------------------------------------------------------------------------------------
# Command line


def test_cli_main_converts_and_prints_the_report(tmp_path, capsys):
    src = write_jsonl(tmp_path / "musique.jsonl", MUSIQUE)
    dst = tmp_path / "sub" / "dev.jsonl"
    assert cli_main(["musique", str(src), str(dst), "--max-passages", "2", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert f"converted musique: {src} -> {dst}" in out
    assert "questions written:  2 (4 passages" in out
    assert f"1  {conv.UNANSWERABLE}" in out
    assert len(raw_lines(dst)) == 2

    assert cli_main(["musique", str(src), str(dst), "--keep-unanswerable"]) == 0
    assert len(raw_lines(dst)) == 3


def test_cli_main_bad_input_and_usage(tmp_path, capsys):
    src = tmp_path / "in.json"
    src.write_text(_list(_H0, _no_context), encoding="utf-8")
    dst = tmp_path / "out.jsonl"
    assert cli_main(["hotpotqa", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert f"gumbel-rerank convert: error: {src}:1: context: missing field" in err
    assert "Traceback" not in err and not dst.exists()

    assert cli_main(["squad", str(src), str(dst)]) == 2
    assert "invalid choice: 'squad'" in capsys.readouterr().err
    assert cli_main(["hotpotqa", str(src), str(dst), "--limit", "0"]) == 2
    assert "expected a positive integer" in capsys.readouterr().err
    assert cli_main(["hotpotqa", str(src), str(dst), "--keep-unanswerable"]) == 2
    assert "only applies to musique" in capsys.readouterr().err
    assert cli_main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert "KIND SRC DST" in usage and "--max-passages N" in usage and "--limit N" in usage


def test_module_runs_as_a_script(tmp_path):
    src = write_json(tmp_path / "h.json", HOTPOT)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gumbel_rerank.cli.convert",
            "hotpotqa",
            str(src),
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "questions written:  2" in result.stdout


# --------------------------------------------------------------------------------------------
# data/get_data.sh


def run_script(*args, cwd, env=None):
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_get_data_dry_run_lists_every_dataset_and_writes_nothing(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    dest = tmp_path / "data"
    result = run_script("--dry-run", "--dest", str(dest), "all", cwd=cwd)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("nq", "tqa", "hotpotqa", "musique", "2wiki", "gumbel-data"):
        assert f"{name} -> {dest}/{name}" in out
        assert f"+ mv {dest}/.tmp-{name} {dest}/{name}" in out
    convert_cmd = "+ python -m gumbel_rerank convert"
    for kind, name, split, raw in [
        ("fid", "nq", "test", "raw/fid/open_domain_data/NQ/test.json"),
        ("fid", "tqa", "train", "raw/fid/open_domain_data/TQA/train.json"),
        ("hotpotqa", "hotpotqa", "train", "raw/hotpotqa/hotpot_train_v1.1.json"),
        ("hotpotqa", "hotpotqa", "dev", "raw/hotpotqa/hotpot_dev_distractor_v1.json"),
        ("musique", "musique", "dev", "raw/musique/data/musique_ans_v1.0_dev.jsonl"),
        ("2wiki", "2wiki", "train", "raw/2wiki/data/train.json"),
    ]:
        assert f"{convert_cmd} {kind} {dest}/{raw} {dest}/.tmp-{name}/{split}.jsonl" in out
    assert f"{convert_cmd} gumbel-data {dest}/raw/gumbel-data/" in out
    for source in (
        "https://github.com/facebookresearch/FiD",
        "http://curtis.ml.cmu.edu/datasets/hotpot/hotpot_train_v1.1.json",
        "http://curtis.ml.cmu.edu/datasets/hotpot/hotpot_dev_distractor_v1.json",
        "1tGdADlNjWFaHLeZZGShh2IRcpO6Lv24h",
        "https://www.dropbox.com/s/npidmtadreo6df2/data.zip",
        "download syhuang/gumbel-reranking-data --repo-type dataset",
    ):
        assert source in out
    assert out.count("git clone") == 1  # nq and tqa share FiD's download
    assert not dest.exists() and os.listdir(cwd) == []


def test_get_data_refuses_unknown_names_before_running_anything(tmp_path):
    dest = tmp_path / "data"
    bad = run_script("--dest", str(dest), "hotpotqa", "squad", cwd=tmp_path)
    assert bad.returncode == 2
    assert "unknown dataset 'squad'" in bad.stderr
    assert bad.stdout == "" and not dest.exists()
    bad = run_script("--dest", str(dest), "--fast", "hotpotqa", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown option --fast" in bad.stderr and not dest.exists()
    assert run_script(cwd=tmp_path).returncode == 2


def test_get_data_skips_completed_datasets(tmp_path):
    (tmp_path / "hotpotqa").mkdir()
    (tmp_path / "hotpotqa" / ".complete").touch()
    result = run_script("--dry-run", "--dest", str(tmp_path), "hotpotqa", cwd=tmp_path)
    assert result.returncode == 0
    assert "hotpotqa: already in" in result.stdout and "curl" not in result.stdout


def test_get_data_passes_shellcheck():
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _python_for_script(tmp_path: Path) -> str:
    """The interpreter get_data.sh runs as ``$PYTHON -m gumbel_rerank convert ...``. Until the
    ``convert`` subcommand is wired into cli.py, a wrapper sends that to the converters module."""
    from gumbel_rerank.cli import build_parser

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["convert", "--help"])
    except SystemExit as e:
        if e.code == 0:
            return sys.executable
    wrapper = tmp_path / "python"
    wrapper.write_text(
        "#!/usr/bin/env bash\n"
        'if [[ "$1 $2 $3" == "-m gumbel_rerank convert" ]]; then shift 3; '
        f'exec "{sys.executable}" -m gumbel_rerank.cli.convert "$@"; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def test_get_data_converts_downloads_already_in_place(tmp_path):
    """A real run without network: HotpotQA's files already downloaded, MuSiQue's zip saved by
    hand where the script says; the script unpacks, converts and renames into place."""
    dest = tmp_path / "data"
    raw = dest / "raw" / "hotpotqa"
    raw.mkdir(parents=True)
    write_json(raw / "hotpot_train_v1.1.json", HOTPOT[:2])
    write_json(raw / "hotpot_dev_distractor_v1.json", HOTPOT[1:2])
    (raw / ".complete").touch()
    with zipfile.ZipFile(dest / "raw" / "musique_v1.0.zip", "w") as z:
        z.writestr("data/musique_ans_v1.0_train.jsonl", _lines(*MUSIQUE[:2]))
        z.writestr("data/musique_ans_v1.0_dev.jsonl", _lines(MUSIQUE[1]))
    env = {**os.environ, "PYTHON": _python_for_script(tmp_path)}
    result = run_script("--dest", str(dest), "hotpotqa", "musique", cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(raw_lines(dest / "hotpotqa" / "train.jsonl")) == 2
    assert len(raw_lines(dest / "musique" / "dev.jsonl")) == 1
    assert (dest / "hotpotqa" / ".complete").exists() and (dest / "musique" / ".complete").exists()
    assert sorted(os.listdir(dest)) == ["hotpotqa", "musique", "raw"]
    assert os.listdir(dest / "raw") == ["musique_v1.0.zip"]  # converted downloads removed
    again = run_script("--dest", str(dest), "hotpotqa", "musique", cwd=ROOT, env=env)
    assert again.returncode == 0 and again.stdout.count("already in") == 2


def test_get_data_explains_a_download_by_hand(tmp_path):
    """MuSiQue is on Google Drive: without gdown and without a saved zip, the script says where
    to get the zip and where to put it, leaves nothing behind, and exits 1."""
    path = "/usr/bin:/bin"
    if shutil.which("gdown", path=path):
        pytest.skip("gdown is installed: the script would download")
    dest = tmp_path / "data"
    result = run_script(
        "--dest", str(dest), "musique", cwd=tmp_path, env={**os.environ, "PATH": path}
    )
    assert result.returncode == 1
    assert "https://drive.google.com/file/d/1tGdADlNjWFaHLeZZGShh2IRcpO6Lv24h/view" in result.stdout
    assert f"Save it as {dest}/raw/musique_v1.0.zip" in result.stdout
    assert "waiting for files downloaded by hand (see above): musique" in result.stderr
    assert [p.name for p in dest.rglob("*")] == ["raw"]
