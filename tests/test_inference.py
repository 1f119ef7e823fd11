"""Tests for gumbel_rerank.inference.streaming (streaming, resumable reranking) and gumbel_rerank.data.trec.

A tiny random BERT cross-encoder is saved to disk and loaded back by the code under test; scores
are compared with Reranker.score on the same passages (nothing is mocked).
"""

from __future__ import annotations

import json
from pathlib import Path

import ir_measures
import pytest
import torch
from ir_measures import RR, Qrel, nDCG
from tiny_encoders import CORPUS, tiny_bert_config

from gumbel_rerank.cli.rerank import cli_main
from gumbel_rerank.data.questions import DataError
from gumbel_rerank.data.trec import Collection, format_trec_lines, iter_trec_run, load_queries
from gumbel_rerank.demo.wordlevel import train_bert_tokenizer
from gumbel_rerank.inference.streaming import rerank
from gumbel_rerank.rerankers.model import Reranker, RerankerConfig, build_reranker_from_config

QUESTIONS = [CORPUS[0], CORPUS[5], "where is the eiffel tower ?", "what is natural selection ?"]


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reranker")
    tok = train_bert_tokenizer(CORPUS + QUESTIONS + ['" quoted " darwin'], root / "tok")
    torch.manual_seed(0)
    model = build_reranker_from_config(
        tiny_bert_config(len(tok)), tok, RerankerConfig(max_length=48)
    )
    return model.save_pretrained(root / "model")


@pytest.fixture(scope="module")
def reference(reranker_dir) -> Reranker:
    return Reranker.from_pretrained(reranker_dir).eval()


def make_records(n: int = 11) -> list[dict]:
    """Records with varied passage counts (one empty), ids on some passages, extra fields."""
    records = []
    for i in range(n):
        ctxs = []
        for j in range((i * 3) % 6):
            p = {"title": f"t{j}" if j % 2 else "", "text": CORPUS[(i + j) % len(CORPUS)]}
            if i % 2:
                p["id"] = f"doc{i}-{j}"
            p["score"] = float(10 - j)
            p["has_answer"] = j == 1
            ctxs.append(p)
        records.append(
            {
                "id": f"q{i}",
                "question": QUESTIONS[i % len(QUESTIONS)],
                "answers": ["paris"],
                "extra": {"nested": [i, None]},
                "ctxs": ctxs,
            }
        )
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def strip_score(p: dict) -> dict:
    return {k: v for k, v in p.items() if k != "rerank_score"}


# ---------------------------------------------------------------------- our format


def test_ours_output_sorted_scores_match_reranker(tmp_path, reranker_dir, reference):
    records = make_records()
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    report = rerank(src, out, reranker_dir, batch_size=4, progress=False, device="cpu")
    assert report.records == len(records) and report.resumed == 0
    assert report.batches == 3 and report.passages == sum(len(r["ctxs"]) for r in records)
    assert not out.with_name("out.jsonl.partial").exists()
    assert not out.with_name("out.jsonl.progress.json").exists()

    got = read_jsonl(out)
    assert [r["id"] for r in got] == [r["id"] for r in records]
    for rec, new in zip(records, got, strict=True):
        assert {k: v for k, v in new.items() if k != "ctxs"} == {
            k: v for k, v in rec.items() if k != "ctxs"
        }
        scores = [p["rerank_score"] for p in new["ctxs"]]
        assert scores == sorted(scores, reverse=True)
        # Same passages, each unchanged apart from the added score.
        assert sorted(map(json.dumps, map(strip_score, new["ctxs"]))) == sorted(
            map(json.dumps, rec["ctxs"])
        )
        if not rec["ctxs"]:
            continue
        with torch.no_grad():
            expected, _ = reference.score([rec["question"]], [rec["ctxs"]])
        by_passage = {json.dumps(strip_score(p)): p["rerank_score"] for p in new["ctxs"]}
        for p, s in zip(rec["ctxs"], expected[0].tolist(), strict=True):
            assert by_passage[json.dumps(p)] == pytest.approx(s, abs=1e-5)


def test_json_list_input_same_output_and_cuts(tmp_path, reranker_dir):
    records = make_records()
    jsonl = write_jsonl(tmp_path / "in.jsonl", records)
    as_list = tmp_path / "in.json"
    as_list.write_text(json.dumps(records, indent=2), encoding="utf-8")
    rerank(jsonl, tmp_path / "a.jsonl", reranker_dir, batch_size=3, progress=False)
    rerank(as_list, tmp_path / "b.jsonl", reranker_dir, batch_size=3, progress=False)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()

    full = read_jsonl(tmp_path / "a.jsonl")
    rerank(jsonl, tmp_path / "c.jsonl", reranker_dir, max_passages=3, top_k=2, progress=False)
    for rec, cut in zip(records, read_jsonl(tmp_path / "c.jsonl"), strict=True):
        first3 = [json.dumps(p) for p in rec["ctxs"][:3]]
        best = [p for p in full[records.index(rec)]["ctxs"] if json.dumps(strip_score(p)) in first3]
        assert [strip_score(p) for p in cut["ctxs"]] == [strip_score(p) for p in best[:2]]


def test_ours_to_trec_output(tmp_path, reranker_dir):
    records = make_records()
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.trec"
    rerank(src, out, reranker_dir, output_format="trec", run_tag="tiny", progress=False)
    run = list(ir_measures.read_trec_run(str(out)))
    expected = {(r["id"], p.get("id", str(j))) for r in records for j, p in enumerate(r["ctxs"])}
    assert {(d.query_id, d.doc_id) for d in run} == expected
    assert len(run) == len(expected)
    assert all(line.split()[5] == "tiny" for line in out.read_text().splitlines())


# ---------------------------------------------------------------------- TREC input


def write_trec_inputs(tmp_path: Path) -> tuple[Path, Path, Path, dict]:
    """A run (3 queries x 4 candidates), a DPR-style TSV collection and a TSV query file."""
    coll = tmp_path / "psgs.tsv"
    lines = ["id\ttext\ttitle"]
    for i, text in enumerate(CORPUS):
        lines.append(f"d{i}\t{text}\ttitle {i}")
    lines.append('dq\t"""quoted"" darwin"\tq')  # DPR quotes texts CSV-style
    coll.write_text("\n".join(lines) + "\n", encoding="utf-8")
    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"{q}\t{QUESTIONS[q]}\n" for q in range(3)), encoding="utf-8")
    run_lines = []
    cands = {0: ["d1", "d0", "dq", "d7"], 1: ["d4", "d2", "d5", "d3"], 2: ["d6", "d8", "d1", "d3"]}
    for q, docs in cands.items():
        for rank, d in enumerate(docs, start=1):
            run_lines.append(f"{q} Q0 {d} {rank} {10.0 - rank} bm25")
    run = tmp_path / "run.trec"
    run.write_text("\n".join(run_lines) + "\n", encoding="utf-8")
    return run, coll, queries, cands


def test_trec_input_to_trec_output_validates(tmp_path, reranker_dir, reference):
    run, coll, queries, cands = write_trec_inputs(tmp_path)
    out = tmp_path / "reranked.trec"
    report = rerank(
        run,
        out,
        reranker_dir,
        collection=coll,
        queries=queries,
        output_format="trec",
        batch_size=2,
        index_dir=tmp_path / "idx",
        progress=False,
    )
    assert report.records == 3 and report.passages == 12
    scored = list(ir_measures.read_trec_run(str(out)))
    assert sorted((d.query_id, d.doc_id) for d in scored) == sorted(
        (str(q), d) for q, docs in cands.items() for d in docs
    )
    # Ranks from 1 in score order.
    for q in cands:
        rows = [line.split() for line in out.read_text().splitlines() if line.split()[0] == str(q)]
        assert [int(r[3]) for r in rows] == [1, 2, 3, 4]
        assert [float(r[4]) for r in rows] == sorted((float(r[4]) for r in rows), reverse=True)
    qrels = [Qrel("0", "d1", 1), Qrel("1", "d4", 1), Qrel("2", "d8", 2)]
    result = ir_measures.calc_aggregate([nDCG @ 10, RR], qrels, ir_measures.read_trec_run(str(out)))
    assert 0 < result[RR] <= 1 and 0 < result[nDCG @ 10] <= 1

    # Scores are the reranker's on the collection texts (quoted DPR text unquoted).
    with Collection.open(coll, index_dir=tmp_path / "idx") as c:
        assert c["dq"] == ("q", '"quoted" darwin')
        passages = [{"title": t, "text": x} for t, x in c.get_many(cands[0])]
    with torch.no_grad():
        expected = reference.score([QUESTIONS[0]], [passages]).scores[0].tolist()
    got = {d.doc_id: d.score for d in scored if d.query_id == "0"}
    for docid, s in zip(cands[0], expected, strict=True):
        assert got[docid] == pytest.approx(s, abs=1e-5)


def test_trec_input_to_ours_output(tmp_path, reranker_dir):
    run, coll, queries, cands = write_trec_inputs(tmp_path)
    out = tmp_path / "out.jsonl"
    rerank(
        run,
        out,
        reranker_dir,
        collection=coll,
        queries=queries,
        progress=False,
        index_dir=tmp_path / "idx",
        top_k=3,
    )
    got = read_jsonl(out)
    assert [r["id"] for r in got] == ["0", "1", "2"]
    assert got[1]["question"] == QUESTIONS[1]
    for rec in got:
        assert len(rec["ctxs"]) == 3
        assert {p["id"] for p in rec["ctxs"]} <= set(cands[int(rec["id"])])
        assert all(set(p) == {"id", "title", "text", "score", "rerank_score"} for p in rec["ctxs"])


def test_collection_formats_and_index_reuse(tmp_path):
    idx = tmp_path / "idx"
    marco = tmp_path / "collection.tsv"
    marco.write_text('0\tplain "text" here\n1\tsecond\n', encoding="utf-8")
    with Collection.open(marco, index_dir=idx) as c:
        assert len(c) == 2 and c["0"] == ("", 'plain "text" here') and "2" not in c
        first_index = c.index_path
    mtime = first_index.stat().st_mtime_ns
    with Collection.open(marco, index_dir=idx) as c:  # reused, not rebuilt
        assert c.index_path == first_index
    assert first_index.stat().st_mtime_ns == mtime
    marco.write_text("0\tchanged\n", encoding="utf-8")
    with Collection.open(marco, index_dir=idx) as c:  # a changed file gets a new index
        assert c.index_path != first_index and c["0"] == ("", "changed")

    three = tmp_path / "titled.tsv"
    three.write_text("a\tTitle A\tText A\n", encoding="utf-8")
    with Collection.open(three, index_dir=idx) as c:
        assert c["a"] == ("Title A", "Text A")

    beir = tmp_path / "corpus.jsonl"
    beir.write_text(
        json.dumps({"_id": "x", "title": "T", "text": "body"})
        + "\n"
        + json.dumps({"id": 7, "contents": "pyserini"})
        + "\n",
        encoding="utf-8",
    )
    with Collection.open(beir, index_dir=idx) as c:
        assert c.get_many(["7", "x", "nope"]) == [("", "pyserini"), ("T", "body"), None]

    dup = tmp_path / "dup.tsv"
    dup.write_text("a\tx\nb\ty\na\tz\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dup.tsv:3: docid: duplicate id 'a' \(first on line 1\)"):
        Collection.open(dup, index_dir=idx)


def test_queries_and_run_readers(tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text('{"_id": "a", "text": "x"}\n{"qid": 2, "query": "y"}\n', encoding="utf-8")
    assert load_queries(q) == {"a": "x", "2": "y"}
    t = tmp_path / "q.tsv"
    t.write_text("qid\tquery\n1\tone\n", encoding="utf-8")
    assert load_queries(t) == {"1": "one"}

    run = tmp_path / "r.trec"
    run.write_text("1 Q0 a 1 1.5 t\n1 Q0 b 2 2.5 t\n2 Q0 a 1 0 t\n1 Q0 c 3 0 t\n")
    it = iter_trec_run(run)
    first = next(it)
    assert first.qid == "1" and [c.docid for c in first.candidates] == ["b", "a"]
    next(it)
    with pytest.raises(DataError, match=r"r.trec:4: qid: query '1' reappears"):
        next(it)
    assert format_trec_lines("q", ["a", "b"], [0.5, 2.0], "t") == "q Q0 b 1 2 t\nq Q0 a 2 0.5 t\n"


# ---------------------------------------------------------------------- resume


class Stop(Exception):
    pass


def stop_after(batches: int):
    calls = []

    def hook(done: int) -> None:
        calls.append(done)
        if len(calls) == batches:
            raise Stop

    return hook


def test_resume_after_interruption_matches_uninterrupted(tmp_path, reranker_dir):
    src = write_jsonl(tmp_path / "in.jsonl", make_records(11))
    ref = tmp_path / "ref.jsonl"
    rerank(src, ref, reranker_dir, batch_size=3, progress=False)

    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    state = tmp_path / "out.jsonl.progress.json"
    with pytest.raises(Stop):
        rerank(src, out, reranker_dir, batch_size=3, progress=False, on_batch=stop_after(2))
    assert not out.exists() and partial.exists()
    saved = json.loads(state.read_text())
    assert saved["records"] == 6 and saved["offset"] == partial.stat().st_size
    # A crash in the middle of the next batch's write leaves bytes the sidecar does not cover.
    with partial.open("ab") as f:
        f.write(b'{"id": "q6", "question": "half a rec')

    report = rerank(src, out, reranker_dir, batch_size=3, progress=False)
    assert report.resumed == 6 and report.records == 11 and report.batches == 2
    assert out.read_bytes() == ref.read_bytes()
    ids = [r["id"] for r in read_jsonl(out)]
    assert ids == [f"q{i}" for i in range(11)]
    assert not partial.exists() and not state.exists()

    # A completed output is not overwritten unless asked.
    with pytest.raises(FileExistsError, match="overwrite"):
        rerank(src, out, reranker_dir, progress=False)
    assert (
        cli_main(
            [
                "--input",
                str(src),
                "--output",
                str(out),
                "--reranker",
                str(reranker_dir),
                "--no-progress",
            ]
        )
        == 2
    )
    rerank(src, out, reranker_dir, batch_size=5, progress=False, overwrite=True)
    assert [r["id"] for r in read_jsonl(out)] == ids


def test_resume_refuses_a_different_job(tmp_path, reranker_dir):
    src = write_jsonl(tmp_path / "in.jsonl", make_records(8))
    out = tmp_path / "out.trec"
    kwargs = dict(output_format="trec", batch_size=2, progress=False)
    with pytest.raises(Stop):
        rerank(src, out, reranker_dir, on_batch=stop_after(1), **kwargs)
    with pytest.raises(ValueError, match="--no-resume"):
        rerank(src, out, reranker_dir, top_k=2, **kwargs)
    report = rerank(src, out, reranker_dir, top_k=2, resume=False, **kwargs)
    assert report.resumed == 0 and report.records == 8
    run = list(ir_measures.read_trec_run(str(out)))
    assert len({(d.query_id, d.doc_id) for d in run}) == len(run)


# ---------------------------------------------------------------------- bad input -> exit 2


def cli(tmp_path, reranker_dir, *args: str) -> list[str]:
    return [
        "--output", str(tmp_path / "out.file"), "--reranker", str(reranker_dir),
        "--no-progress", "--index-dir", str(tmp_path / "idx"), *args,
    ]  # fmt: skip


def test_bad_trec_inputs_exit_2_with_file_and_line(tmp_path, reranker_dir, capsys):
    run, coll, queries, _ = write_trec_inputs(tmp_path)
    trec = ["--collection", str(coll), "--queries", str(queries)]

    bad_run = tmp_path / "bad.trec"
    bad_run.write_text("0 Q0 d1 1 9.0 bm25\n0 Q0 d2 2 bm25\n")
    assert cli_main(["--input", str(bad_run), *cli(tmp_path, reranker_dir), *trec]) == 2
    assert "bad.trec:2: <line>: expected 6 whitespace-separated fields" in capsys.readouterr().err

    unknown = tmp_path / "unknown.trec"
    unknown.write_text("0 Q0 d1 1 9.0 bm25\n0 Q0 nope 2 8.0 bm25\n")
    assert cli_main(["--input", str(unknown), *cli(tmp_path, reranker_dir), *trec]) == 2
    err = capsys.readouterr().err
    assert "unknown.trec:2: docid: 'nope' is not in the collection" in err and str(coll) in err

    assert cli_main(["--input", str(run), *cli(tmp_path, reranker_dir)]) == 2
    assert "needs collection and queries (--collection FILE" in capsys.readouterr().err

    missing = ["--collection", str(tmp_path / "none.tsv"), "--queries", str(queries)]
    assert cli_main(["--input", str(run), *cli(tmp_path, reranker_dir), *missing]) == 2
    assert "none.tsv: no such file" in capsys.readouterr().err

    assert not (tmp_path / "out.file").exists()
    assert not (tmp_path / "out.file.partial").exists()


def test_bad_our_inputs_exit_2_with_file_and_line(tmp_path, reranker_dir, capsys):
    records = make_records(4)
    lines = [json.dumps(r) for r in records]
    lines[2] = lines[2][:-5]  # truncated record on line 3
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines) + "\n")
    assert cli_main(["--input", str(broken), *cli(tmp_path, reranker_dir)]) == 2
    assert "broken.jsonl:3: <record>: invalid JSON" in capsys.readouterr().err

    records[1]["ctxs"][1]["text"] = None
    null_text = write_jsonl(tmp_path / "null.jsonl", records)
    assert cli_main(["--input", str(null_text), *cli(tmp_path, reranker_dir)]) == 2
    assert "null.jsonl:2: ctxs[1].text: expected a string, got null" in capsys.readouterr().err

    as_list = tmp_path / "cut.json"
    as_list.write_text(json.dumps(make_records(3))[:-40])
    assert cli_main(["--input", str(as_list), *cli(tmp_path, reranker_dir)]) == 2
    assert "cut.json:2: <record>: invalid JSON" in capsys.readouterr().err

    assert cli_main(["--input", str(tmp_path / "absent.jsonl"), *cli(tmp_path, reranker_dir)]) == 2
    assert "absent.jsonl: no such file" in capsys.readouterr().err

    bad_dir = ["--input", str(null_text), "--output", str(tmp_path / "o"), "--reranker",
               str(tmp_path / "no_model")]  # fmt: skip
    assert cli_main(bad_dir) == 2
    assert "no_model" in capsys.readouterr().err
    assert not (tmp_path / "out.file").exists()
    assert not (tmp_path / "out.file.partial").exists()


def test_json_list_reader_across_small_chunks(tmp_path, monkeypatch):
    """Records spanning many reads, multi-byte characters cut between reads, a BOM."""
    import gumbel_rerank.data.jsonstream as inf

    records = make_records(5)
    records[2]["question"] = "qui a écrit « l'origine des espèces » ? 🦎"
    path = tmp_path / "list.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(records, ensure_ascii=False).encode())
    monkeypatch.setattr(inf, "_CHUNK_BYTES", 7)
    kind, start = inf.sniff(path, "list.json")
    assert kind == "list"
    assert [obj for _, obj in inf.iter_values(path, "list.json", start)] == records

    jsonl = tmp_path / "lines.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + b"\n\n".join(json.dumps(r).encode() for r in records))
    got = list(inf.iter_values(jsonl, "lines.jsonl"))
    assert [line for line, _ in got] == [1, 3, 5, 7, 9] and [o for _, o in got] == records


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path, reranker_dir):
    """`gumbel-rerank rerank` killed with SIGKILL at random moments, ten times, then run to the
    end: the output is byte-identical to an uninterrupted run (no duplicate, no missing record)."""
    import random
    import subprocess
    import sys
    import time

    src = write_jsonl(tmp_path / "in.jsonl", make_records(1500))
    ref = tmp_path / "ref.jsonl"
    rerank(src, ref, reranker_dir, batch_size=2, progress=False)
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    cmd = [sys.executable, "-m", "gumbel_rerank", "rerank", "--input", str(src), "--output", str(out),
           "--reranker", str(reranker_dir), "--batch-size", "2", "--device", "cpu", "--no-progress"]
    rng = random.Random(0)
    kills = 0
    for _ in range(10):
        before = partial.stat().st_size if partial.exists() else 0
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        # kill at a random moment after this run has written something of its own
        while time.time() < deadline and proc.poll() is None and (partial.stat().st_size if partial.exists() else 0) <= before:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:  # finished before the kill
            break
        proc.kill()
        proc.wait()
        kills += 1
    assert kills >= 5, f"only {kills} kills landed; the run is too short to test this"
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == ref.read_bytes()
    assert not partial.exists()


def test_a_full_disk_names_the_file_keeps_what_was_recorded_and_the_rerun_resumes(tmp_path, reranker_dir):
    """A write error mid-run (a file-size limit, RLIMIT_FSIZE, standing in for a full disk):
    the error names the file, the records recorded before it are kept, and the same command
    resumes once space is back, to the output of an uninterrupted run."""
    import subprocess
    import sys

    from small_disk import run_on_a_small_disk

    src = write_jsonl(tmp_path / "in.jsonl", make_records(300))
    ref = tmp_path / "ref.jsonl"
    rerank(src, ref, reranker_dir, batch_size=4, progress=False)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "gumbel_rerank", "rerank", "--input", str(src), "--output", str(out),
           "--reranker", str(reranker_dir), "--batch-size", "4", "--device", "cpu", "--no-progress"]
    limit = ref.stat().st_size // 3
    failed = run_on_a_small_disk(cmd, limit)
    assert failed.returncode == 1, failed.stderr
    partial = tmp_path / "out.jsonl.partial"
    assert f"while writing {partial}" in failed.stderr and "run the same command to resume" in failed.stderr
    assert not out.exists() and 0 < partial.stat().st_size <= limit
    assert ref.read_bytes().startswith(partial.read_bytes())  # only whole, recorded batches kept
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == ref.read_bytes()


def test_rerank_compile_writes_the_uncompiled_ranking(tmp_path, reranker_dir, capsys):
    """`rerank --compile` (the reranker through torch.compile with frozen weights): the same
    records and order as the eager run, scores equal to float rounding."""
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("inductor needs a C++ compiler (g++)")
    src = write_jsonl(tmp_path / "in.jsonl", make_records(7))
    ref = tmp_path / "ref.jsonl"
    rerank(src, ref, reranker_dir, batch_size=3, progress=False)
    out = tmp_path / "out.jsonl"
    assert cli_main(["--input", str(src), *cli(tmp_path, reranker_dir, "--compile")[2:], "--output", str(out)]) == 0
    assert "on cpu (compiled)" in capsys.readouterr().err  # the compiled model served it
    for a, b in zip(read_jsonl(ref), read_jsonl(out), strict=True):
        assert [p["text"] for p in a["ctxs"]] == [p["text"] for p in b["ctxs"]]
        got = [p["rerank_score"] for p in b["ctxs"]]
        assert got == pytest.approx([p["rerank_score"] for p in a["ctxs"]], abs=1e-5)
