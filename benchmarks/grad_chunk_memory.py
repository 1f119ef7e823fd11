"""Memory of scoring n passages with gradients: every activation kept vs ``grad_chunk_size``.

One question with ``--passages`` passages of about ``--words`` words, all-MiniLM-L6-v2 with a
fresh head at ``--max-length`` tokens, train mode, float32: forward + backward of the scores'
weighted sum, once plain and once per ``--chunks`` value (``reranker.settings.grad_chunk_size``:
each chunk's activations are recomputed in backward instead of kept). Each setting runs in its
own subprocess so its peak RSS is its own. Reported: the bytes autograd keeps for backward
(saved-tensor hooks, outside the recomputed regions), the process's peak RSS, and the seconds of
one forward+backward (median of ``--repeats`` after a warm-up). That the gradients equal plain
chunked scoring's is a test (``tests/test_rerankers.py``), not measured here.

    python benchmarks/grad_chunk_memory.py --passages 100 --chunks 10 25
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _results import publish

RESULTS = Path(__file__).resolve().parent / "results" / "grad_chunk_memory.md"
WORDS = ["the", "river", "city", "north", "old", "king", "wrote", "song", "first", "year", "people", "war", "long", "house", "small"]


def passages(n: int, words: int) -> list[str]:
    """``n`` deterministic passages of ``words`` words each (enough to fill max_length)."""
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(words)) for i in range(n)]


def child(args: argparse.Namespace, chunk: int | None) -> dict[str, float]:
    """Run in the subprocess: one setting's numbers."""
    import torch

    from gumbel_rerank.demo.command import minilm_directory
    from gumbel_rerank.rerankers import Reranker

    torch.set_num_threads(args.threads)
    reranker = Reranker.from_pretrained(
        minilm_directory(), seed=0, max_length=args.max_length, grad_chunk_size=chunk
    ).train()
    question = ["which king wrote the first song of the river city"]
    plist = [passages(args.passages, args.words)]
    weights = torch.linspace(-1.0, 1.0, args.passages)
    kept = 0

    weights_storage = {p.untyped_storage().data_ptr() for p in reranker.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal kept
        if tensor.untyped_storage().data_ptr() not in weights_storage:  # weights cost nothing extra
            kept += tensor.numel() * tensor.element_size()
        return tensor

    def step() -> None:
        reranker.zero_grad(set_to_none=True)
        scores, _ = reranker.score(question, plist, chunk_size=chunk)
        (scores[0] * weights).sum().backward()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return {
        "kept_mib": kept / 2**20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": statistics.median(times),
        "tokens": int(reranker.tokenize(question, plist).features["attention_mask"].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=100)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--chunks", type=int, nargs="+", default=[10, 25])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write ('' = print only)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # 0 = plain
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child is not None:
        print(json.dumps(child(args, args.child or None)))
        return
    rows = {}
    for chunk in [0, *args.chunks]:
        argv = [*sys.argv[1:], "--child", str(chunk)]
        done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
        rows[chunk] = json.loads(done.stdout.strip().splitlines()[-1])
    from gumbel_rerank.envinfo import package_version

    plain = rows[0]
    lines = [
        "# Scoring n passages with gradients: memory with and without grad_chunk_size",
        "",
        f"Command: `python benchmarks/grad_chunk_memory.py --passages {args.passages} --words {args.words} "
        f"--max-length {args.max_length} --chunks {' '.join(map(str, args.chunks))} --threads {args.threads} "
        f"--repeats {args.repeats}`",
        f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} CPUs, {args.threads} torch thread(s), "
        f"torch {package_version('torch')}, transformers {package_version('transformers')}; nothing else running.",
        f"Shapes: 1 question x {args.passages} passages, {plain['tokens']} tokens in all (max_length "
        f"{args.max_length}), all-MiniLM-L6-v2 with a fresh head, train mode (dropout on), float32.",
        "",
        "| setting | kept for backward (MiB) | peak RSS (MiB) | forward+backward (s) |",
        "|---|---:|---:|---:|",
    ]
    for chunk, row in rows.items():
        name = "every activation kept" if chunk == 0 else f"grad_chunk_size = {chunk}"
        lines.append(f"| {name} | {row['kept_mib']:.1f} | {row['peak_rss_mib']:.0f} | {row['seconds']:.2f} |")
    base = rows[0]
    for chunk in args.chunks:
        row = rows[chunk]
        lines.append(
            f"- grad_chunk_size = {chunk}: {base['kept_mib'] / max(row['kept_mib'], 1e-9):.0f}x less kept for "
            f"backward, peak RSS {row['peak_rss_mib'] / base['peak_rss_mib']:.2f}x, time {row['seconds'] / base['seconds']:.2f}x."
        )
    publish(lines, args.results)


if __name__ == "__main__":
    main()
