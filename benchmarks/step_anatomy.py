"""Anatomy of a G-Rerank training step at the demo's shapes, through the real ``Trainer``.

Parts, each timed on the same micro-batch (8 questions x 10 passages of the demo data, the
shipped chain reader, all-MiniLM-L6-v2 with a fresh head), median of ``--repeats``:

  (a) reranker forward + backward (``Reranker.score``, backward of the scores' sum);
  (b) reader encoding without gradients (tokenisation + ``FiDReader.encode``), and the same
      served by the frozen reader's encoder cache (``reader.encoder_cache_mib``, a later epoch);
  (c) decoder forward + backward through the relaxed mask (``FiDReader.lm_loss``, the
      gradient reaching log M only);
  (d) the full trainer step: ``Trainer.fit`` of the demo recipe (collation, the objective with
      its ``mask_samples`` masks, backward, optimizer and scheduler, the logging steps'
      diagnostics), the mean step time between two logged steps, checkpoints excluded.

Also, on the same batch: a naive step (the reader's encoder inside the autograd graph with
its weights not frozen, fp32, no chunking: what a first implementation does) and a supervised
LCE step (no reader at all): the price of end-to-end training as ratios. Peak RSS is the
process's maximum resident set size after each part.

    python benchmarks/step_anatomy.py --threads 1 --steps 40
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _results import publish

RESULTS = Path(__file__).resolve().parent / "results" / "step_anatomy.md"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """Maximum resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def demo_train_config(out: Path, steps: int, autocast: str | None, compile_train: bool = False):
    """The demo's G-Rerank run (demo_recipe.yaml's data, reader, reranker, objective, optim)
    for ``steps`` steps, logging every 10, one checkpoint at the end, no dev evaluation; the
    reranker's ``autocast`` as given (the recipe's default is "auto")."""
    import dataclasses

    from gumbel_rerank.demo.command import demo_config
    from gumbel_rerank.training.compare import objective_run_config

    overrides = [f"--reranker.settings.autocast={autocast or 'null'}"]
    if compile_train:
        overrides.append("--reranker.settings.compile_train=true")
    cfg = demo_config(out, overrides=overrides)
    gumbel = next(o for o in cfg.compare.objectives if o.name == "gumbel")
    run_cfg = objective_run_config(cfg, gumbel, out / "run")
    run_cfg.optim = dataclasses.replace(run_cfg.optim, max_steps=steps)
    run_cfg.run = dataclasses.replace(run_cfg.run, save_every=steps, eval_every=0, log_every=10, resume=False)
    run_cfg.data = dataclasses.replace(run_cfg.data, dev=None)
    return run_cfg


def part_timings(trainer, reader, repeats: int) -> dict[str, float]:
    """(a), (b), (c), the naive step and the LCE step on the trainer's first micro-batch."""
    from gumbel_rerank.masks import relaxed_topk_log_mask
    from gumbel_rerank.objectives.base import StepContext
    from gumbel_rerank.objectives.registry import build_objective
    from gumbel_rerank.reader.encoder_cache import EncoderCache

    reranker = trainer.module
    reranker.train()
    batch = trainer.collate([(i, i) for i in range(trainer.optim.micro_batch_size)])
    mask_cfg = trainer.objective.mask
    out: dict[str, float] = {}

    def reranker_step() -> None:
        reranker.zero_grad(set_to_none=True)
        scores, _ = reranker.score(batch.questions, batch.passages)
        scores.sum().backward()

    out["(a) reranker forward+backward"] = median_seconds(reranker_step, repeats)
    n = len(batch.passages[0])

    def encode() -> object:
        return reader.encode(reader.tokenize_passages(batch.questions, batch.passages, n_passages=n))

    out["(b) reader encoding, no grad"] = median_seconds(encode, repeats)
    reader.use_encoder_cache(EncoderCache(budget_mib=1024))

    def encode_cached() -> object:  # the batch's questions are cached after the warm-up call
        return reader.encode(reader.tokenize_passages(batch.questions, batch.passages, n_passages=n), cached=True)

    out["(b') reader encoding served by reader.encoder_cache_mib (a later epoch)"] = median_seconds(encode_cached, repeats)
    reader.use_encoder_cache(None)
    states = encode()
    labels = reader.tokenize_targets(batch.targets)
    scores = torch.randn(len(batch.questions), n)
    valid = torch.ones_like(scores, dtype=torch.bool)
    samples = trainer.objective.mask_samples

    def decoder_step() -> None:
        leaf = scores.clone().requires_grad_(True)
        log_mask = relaxed_topk_log_mask(leaf, valid, mask_cfg)
        masks = log_mask.repeat(samples, 1)
        reader.lm_loss(states.repeat(samples), labels.repeat(samples, 1), masks).mean().backward()

    out[f"(c) decoder forward+backward through the mask ({samples} masks)"] = median_seconds(decoder_step, repeats)
    out["peak RSS after (a)-(c), MiB"] = peak_rss_mib()

    ctx = StepContext(step=0, seed=0, log=False)

    def naive_step() -> None:
        # the encoder inside the graph and not frozen: autograd keeps its activations and
        # backward computes the reader's weight gradients too
        for param in reader.model.parameters():
            param.requires_grad_(True)
        reranker.zero_grad(set_to_none=True)
        reader.model.zero_grad(set_to_none=True)
        scores, valid = reranker.score(batch.questions, batch.passages)
        log_mask = relaxed_topk_log_mask(scores, valid, mask_cfg)
        naive_states = reader.encode(reader.tokenize_passages(batch.questions, batch.passages, n_passages=n), with_grad=True)
        reader.lm_loss(naive_states, labels, log_mask).mean().backward()
        for param in reader.model.parameters():
            param.requires_grad_(False)

    out["naive step (encoder in the graph, reader not frozen)"] = median_seconds(naive_step, repeats)
    lce = build_objective("lce", {}, reader=None)

    def lce_step() -> None:
        reranker.zero_grad(set_to_none=True)
        loss, _ = lce.loss(reranker, batch, ctx)
        loss.backward()

    out["supervised LCE step (reranker only)"] = median_seconds(lce_step, repeats)
    out["peak RSS after all parts, MiB"] = peak_rss_mib()
    return out


def trainer_step_seconds(trainer, steps: int) -> float:
    """(d): mean step time between the first logged step after 10 and the last one, from the
    metrics log the trainer writes (its ``sec_per_step`` is cumulative since the start)."""
    import json

    trainer.fit()
    records = [json.loads(line) for line in (trainer.out / "metrics.jsonl").read_text().splitlines()]
    timed = {r["step"]: r["sec_per_step"] for r in records if "sec_per_step" in r}
    first, last = 10, steps
    return (timed[last] * last - timed[first] * first) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40, help="trainer steps for (d); a multiple of 10, > 10")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--autocast", choices=["none", "bf16", "auto"], default="none", help="reranker.settings.autocast")
    parser.add_argument("--compile-train", action="store_true", help="reranker.settings.compile_train: the compiled training step")
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write ('' = print only)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from gumbel_rerank.demo.command import prepare_data
    from gumbel_rerank.envinfo import package_version
    from gumbel_rerank.training.train_reranker import build_trainer

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        prepare_data(out, 3000)
        cfg = demo_train_config(out, args.steps, None if args.autocast == "none" else args.autocast, args.compile_train)
        trainer, reader, _ = build_trainer(cfg)
        parts = part_timings(trainer, reader, args.repeats)
        full = trainer_step_seconds(trainer, args.steps)
    a, b, c = (parts[key] for key in list(parts) if key[:3] in ("(a)", "(b)", "(c)"))
    naive = parts["naive step (encoder in the graph, reader not frozen)"]
    lce = parts["supervised LCE step (reranker only)"]
    lines = [
        "# Step anatomy: G-Rerank at the demo's shapes",
        "",
        f"Command: `python benchmarks/step_anatomy.py --threads {args.threads} --steps {args.steps} "
        f"--repeats {args.repeats} --autocast {args.autocast}{' --compile-train' if args.compile_train else ''}`",
        f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} CPUs, {args.threads} torch thread(s), "
        f"torch {package_version('torch')}, transformers {package_version('transformers')}; nothing else running.",
        "Shapes: 8 questions x 10 passages (demo data), chain reader (3.1 M), all-MiniLM-L6-v2 "
        f"reranker (max_length 64), k = {trainer.objective.mask.k}, {trainer.objective.mask_samples} mask(s) per question.",
        "",
        "| part | seconds |",
        "|---|---:|",
    ]
    for key, value in parts.items():
        lines.append(f"| {key} | {value:.3f} |" if "MiB" not in key else f"| {key} | {value:.0f} |")
    lines.append(f"| (d) full trainer step | {full:.3f} |")
    lines += [
        "",
        f"- (d) / ((a)+(b)+(c)) = {full:.3f} / {a + b + c:.3f} = **{full / (a + b + c):.2f}x** (target <= 1.10x).",
        f"- naive step / (a)+(b)+(c) = {naive / (a + b + c):.2f}x; G-Rerank trainer step / LCE step = "
        f"{full / lce:.2f}x (the price of end-to-end training over supervised LCE on this batch).",
    ]
    publish(lines, args.results)


if __name__ == "__main__":
    main()
