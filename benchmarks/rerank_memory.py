"""Memory and throughput of streaming reranking (`gumbel_rerank.inference`) on a large input.

Generates a synthetic JSONL question file (written streaming, so generation itself stays small),
reranks it with a tiny random BERT cross-encoder built in-process (CPU), and samples the
process's resident set size (RSS) in a background thread. At checkpoints (5%, 25%, 50% and 100%
of the questions: 1k, 5k, 10k and 20k for the default 20k) it records the current RSS, the peak
RSS so far and the throughput. Flat RSS across checkpoints while the output grows shows that
memory does not depend on the input size.

The model is deliberately tiny (hidden 32, 2 layers), so the numbers measure the pipeline
(JSON parsing, tokenisation, batching, writing, fsync per batch) rather than a real model's
forward pass; a real cross-encoder is much slower per passage and its memory is the model's
weights plus one batch of activations.

Run from the repository root::

    .venv/bin/python benchmarks/rerank_memory.py --questions 20000   # full run, writes results
    .venv/bin/python benchmarks/rerank_memory.py --questions 2000    # quick check

Results go to ``benchmarks/results/rerank_memory.md`` (``--results`` to change, ``--results ''``
to skip writing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "rerank_memory.md"
MIB = 1 << 20


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.02):
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def current(self) -> int:
        return self.process.memory_info().rss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.current())

    def reset_peak(self) -> None:
        self.peak = self.current()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_vocabulary(rng: random.Random, size: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(size * 2)}
    return sorted(words)[:size]


def write_questions(
    path: Path, n_questions: int, n_passages: int, words: int, vocab: list[str], seed: int
) -> int:
    """Write ``n_questions`` records of method.md section 7 as JSONL, one at a time."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_questions):
            ctxs = [
                {
                    "id": f"{i}-{j}",
                    "title": " ".join(rng.choices(vocab, k=rng.randint(1, 4))),
                    "text": " ".join(rng.choices(vocab, k=rng.randint(words // 2, words * 3 // 2))),
                    "score": round(100 - j * rng.random(), 3),
                    "has_answer": j == 0,
                }
                for j in range(n_passages)
            ]
            record = {
                "id": str(i),
                "question": " ".join(rng.choices(vocab, k=rng.randint(6, 14))) + " ?",
                "answers": [rng.choice(vocab)],
                "ctxs": ctxs,
            }
            f.write(json.dumps(record) + "\n")
    return path.stat().st_size


def build_reranker(directory: Path, vocab: list[str], max_length: int) -> Path:
    import torch
    from transformers import BertConfig

    from gumbel_rerank.demo.wordlevel import train_bert_tokenizer
    from gumbel_rerank.rerankers import RerankerConfig, build_reranker_from_config

    tok = train_bert_tokenizer([" ".join(vocab), "?"], directory / "tokenizer")
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max(128, max_length),
        num_labels=1,
    )
    torch.manual_seed(0)
    reranker = build_reranker_from_config(config, tok, RerankerConfig(max_length=max_length))
    return reranker.save_pretrained(directory / "reranker")


def machine_info(threads: int) -> list[tuple[str, str]]:
    import torch
    import transformers

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return [
        ("date", dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("CPU", f"{cpu}, {os.cpu_count()} cores ({usable} usable), torch threads {threads}"),
        ("memory", f"{psutil.virtual_memory().total / (1 << 30):.0f} GiB"),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("transformers", transformers.__version__),
        ("platform", platform.platform()),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=20000)
    parser.add_argument("--passages", type=int, default=20, help="passages per question")
    parser.add_argument("--words", type=int, default=100, help="mean words per passage (DPR: 100)")
    parser.add_argument("--max-length", type=int, default=128, help="reranker max tokens per pair")
    parser.add_argument("--batch-size", type=int, default=16, help="questions per batch")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--workdir", help="where to write the data (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--results", default=str(DEFAULT_RESULTS), help="markdown output ('' = none)"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from gumbel_rerank.inference import rerank

    torch.set_num_threads(args.threads)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="rerank_mem_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rng = random.Random(0)
        vocab = make_vocabulary(rng, 5000)
        questions = work / "questions.jsonl"
        t = time.perf_counter()
        input_bytes = write_questions(
            questions, args.questions, args.passages, args.words, vocab, seed=1
        )
        print(
            f"generated {args.questions} questions x {args.passages} passages: "
            f"{input_bytes / MIB:.0f} MiB in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        model_dir = build_reranker(work, vocab, args.max_length)
        output = work / "reranked.jsonl"
        output.unlink(missing_ok=True)

        marks = sorted({max(1, round(args.questions * f)) for f in (0.05, 0.25, 0.5, 1.0)})
        rows: list[dict] = []
        with RssSampler() as sampler:
            baseline = sampler.current()
            sampler.reset_peak()
            start = time.perf_counter()
            pending = list(marks)

            def on_batch(done: int) -> None:
                # Checkpoints fall on batch boundaries: report the first batch at or past each.
                while pending and done >= pending[0]:
                    pending.pop(0)
                    elapsed = time.perf_counter() - start
                    rows.append(
                        {
                            "questions": done,
                            "rss": sampler.current(),
                            "peak": sampler.peak,
                            "output": output.with_name(output.name + ".partial").stat().st_size,
                            "elapsed": elapsed,
                            "qps": done / elapsed,
                        }
                    )
                    print(
                        f"  {done} questions: RSS {rows[-1]['rss'] / MIB:.0f} MiB, peak "
                        f"{rows[-1]['peak'] / MIB:.0f} MiB, {rows[-1]['qps']:.1f} q/s",
                        file=sys.stderr,
                    )

            report = rerank(
                questions,
                output,
                model_dir,
                batch_size=args.batch_size,
                device="cpu",
                progress=False,
                on_batch=on_batch,
            )
            total = time.perf_counter() - start
            peak = sampler.peak

        header = (
            "| questions done | RSS (MiB) | peak RSS so far (MiB) | output so far (MiB) "
            "| elapsed (s) | questions/s |\n|---:|---:|---:|---:|---:|---:|\n"
        )
        table = header + "".join(
            f"| {r['questions']:,} | {r['rss'] / MIB:.0f} | {r['peak'] / MIB:.0f} "
            f"| {r['output'] / MIB:.0f} | {r['elapsed']:.1f} | {r['qps']:.1f} |\n"
            for r in rows
        )
        passages_per_s = report.passages / total
        summary = (
            f"Input: {args.questions:,} questions x {args.passages} passages "
            f"(~{args.words} words each), {input_bytes / MIB:.0f} MiB JSONL; output "
            f"{output.stat().st_size / MIB:.0f} MiB. Reranker: random BERT cross-encoder, hidden "
            f"32, 2 layers, max_length {args.max_length}; batch_size {args.batch_size} questions, "
            f"CPU.\n\nRSS before reranking (Python, torch, transformers loaded): "
            f"{baseline / MIB:.0f} MiB; peak during the run: {peak / MIB:.0f} MiB. "
            f"Throughput: {args.questions / total:.1f} questions/s, {passages_per_s:.0f} "
            f"passages/s ({total:.1f} s in all).\n"
        )
        print()
        print(table)
        print(summary)
        if args.results:
            results = Path(args.results)
            results.parent.mkdir(parents=True, exist_ok=True)
            info = "".join(f"- {k}: {v}\n" for k, v in machine_info(args.threads))
            command = "python benchmarks/rerank_memory.py " + " ".join(
                sys.argv[1:] if argv is None else argv
            )
            results.write_text(
                "# Streaming rerank: memory and throughput\n\n"
                f"Command: `{command.strip()}`\n\n"
                f"{summary}\n{table}\n"
                "RSS is sampled every 20 ms in a background thread (psutil); each row is taken "
                "after the first batch that reaches the checkpoint. The model is tiny on "
                "purpose: the numbers measure the pipeline (JSON parsing, tokenisation, "
                "batching, writing with an fsync per batch), not a real model's forward pass.\n\n"
                f"Machine:\n\n{info}",
                encoding="utf-8",
            )
            print(f"wrote {results}", file=sys.stderr)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
