"""What parallel reading with a decoder-only reader costs, part by part (issue 21).

Per part of one G-Rerank step on one batch: (a) the reranker's forward and backward over the
n candidates, (b) encoding the passages as blocks (no gradient), (c) the reading pass forward
and backward through the mask; and peak memory (CUDA) where the device has it.

    python benchmarks/decoder_reader_cost.py --threads 1 --decoder-reader DIR   # the recorded CPU run
    python benchmarks/decoder_reader_cost.py --sizes 25m --ns 10 20 50    # one model size

Runs:
* ``demo``: the demo's shapes (8 questions x 10 passages, the demo recipe's lengths): the
  shipped FiD chain reader against a decoder reader of the demo recipe's architecture
  (``--decoder-reader``: a `demo-reader --recipe decoder` model or checkpoint), with all-MiniLM-L6-v2 as the
  reranker, so the two reader kinds are compared on the same step;
* ``25m``: a random Llama of about 25 M parameters (d 512, 6 layers, 8 heads) reading one
  question's n = 10, 20, 50 passages of 64 tokens, with a tiny random BERT reranker (the
  reader's cost is what is measured);
* ``qwen05`` (for the GPU check): a random Qwen2-0.5B-shaped decoder in bf16 reading n = 20
  and 50 passages of 256 tokens, with a base-size cross-encoder; ``tiny``: the same code at
  toy sizes (the GPU check's CPU rehearsal).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _results import publish

RESULTS = Path(__file__).resolve().parent / "results" / "decoder_reader_cost.md"


def seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def step_parts(reader, reranker, questions, passages, answers, k: int, repeats: int) -> dict[str, float]:
    """Seconds of (a), (b), (c) and the whole step for one batch, and peak CUDA MiB."""
    from gumbel_rerank.masks import MaskConfig, noise_generator, relaxed_topk_log_mask

    device = reader.device
    n = max(len(p) for p in passages)
    tokens = reader.tokenize_passages(questions, passages, n_passages=n)
    labels = reader.tokenize_targets(answers)
    cfg = MaskConfig(k=k, kappa=1.0, tau=0.5)

    def rerank() -> None:
        scores, _ = reranker.score(questions, passages)
        scores.sum().backward()

    def encode() -> object:
        with torch.no_grad():
            return reader.encode(tokens)

    states = encode()

    def read() -> None:
        log_mask = torch.zeros(len(questions), n, device=device, requires_grad=True)
        reader.lm_loss(states, labels, log_mask).mean().backward()

    def step() -> None:
        scores, valid = reranker.score(questions, passages)
        log_mask = relaxed_topk_log_mask(scores, valid, cfg, noise_generator(0, 0, 0, 0))
        reader.lm_loss(encode(), labels, log_mask.to(device)).mean().backward()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = {
        "(a) reranker fwd+bwd": seconds(rerank, repeats, device),
        "(b) passage encoding": seconds(encode, repeats, device),
        "(c) reading fwd+bwd": seconds(read, repeats, device),
        "step": seconds(step, repeats, device),
    }
    if device.type == "cuda":
        out["peak MiB"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def demo_rows(repeats: int, decoder_reader: str = "") -> dict[str, dict[str, float]]:
    """The demo's step with the FiD chain reader and, given ``decoder_reader`` (a directory of the
    decoder recipe's architecture, e.g. a checkpoint of `demo-reader --recipe decoder`), with it."""
    from gumbel_rerank.demo.command import demo_spec, minilm_directory
    from gumbel_rerank.demo.dataset import generate_split
    from gumbel_rerank.demo.reader_recipe import SHIPPED_READER, recipe_config
    from gumbel_rerank.reader.fid import FiDReaderConfig
    from gumbel_rerank.reader.loading import load_reader_from
    from gumbel_rerank.rerankers import Reranker

    records = generate_split(demo_spec(8), "train")[:8]
    questions = [r["question"] for r in records]
    passages = [[{"title": c["title"], "text": c["text"]} for c in r["ctxs"]] for r in records]
    answers = [r["target"] for r in records]
    reranker = Reranker.from_pretrained(minilm_directory(), seed=0, max_length=64, autocast="auto").train()
    rows = {}
    fid = load_reader_from("fid", SHIPPED_READER, settings=FiDReaderConfig(text_maxlength=32, answer_maxlength=6))
    rows["FiD chain reader (3.1 M)"] = step_parts(fid, reranker, questions, passages, answers, 3, repeats)
    if decoder_reader:  # the step's cost depends on the shapes, not the weights
        # read it as it is trained: the decoder recipe's reader section (templates, lengths)
        section = recipe_config(Path(decoder_reader), recipe="decoder").reader
        dec = load_reader_from("parallel_lm", Path(decoder_reader), settings=section.settings, parallel_lm=section.parallel_lm)
        rows["decoder reader (parallel Llama)"] = step_parts(dec, reranker, questions, passages, answers, 3, repeats)
    return rows


def random_lm_rows(size: str, ns: list[int], repeats: int, device: torch.device) -> dict[str, dict[str, float]]:
    """A random decoder of ``size`` ("25m" Llama, "qwen05" Qwen2-0.5B shape in bf16) reading
    one question's n passages; a tiny or base-size random cross-encoder scores them."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        BertConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from gumbel_rerank.reader.fid import FiDReaderConfig
    from gumbel_rerank.reader.parallel_lm import ParallelLMReader
    from gumbel_rerank.rerankers.model import RerankerConfig, build_reranker_from_config

    words = [f"w{i}" for i in range(2000)]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([" ".join(words)], trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>", "[CLS]", "[SEP]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    if size == "tiny":  # the GPU check's rehearsal: the same code at toy sizes
        length, dtype = 16, torch.float32
        lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256))
        bert = BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=1)
    elif size == "qwen05":
        length, dtype = 256, torch.bfloat16
        lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                          num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True))
        bert = BertConfig(vocab_size=30522, num_labels=1)  # base size: 110 M
    else:
        length, dtype = 64, torch.float32
        lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), hidden_size=512, intermediate_size=1536, num_hidden_layers=6,
                                          num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024))
        bert = BertConfig(vocab_size=len(fast), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, num_labels=1)
    params = sum(p.numel() for p in lm.parameters()) / 1e6
    reader = ParallelLMReader(lm.to(dtype), fast, FiDReaderConfig(text_maxlength=length, answer_maxlength=8, dtype="bfloat16" if dtype == torch.bfloat16 else "float32")).to(device)
    reranker = build_reranker_from_config(bert, fast, RerankerConfig(max_length=min(length, 512), autocast="bf16" if dtype == torch.bfloat16 else None)).to(device).train()
    rows = {}
    for n in ns:
        passages = [[{"title": "", "text": " ".join(words[(i * 7 + j) % 2000] for j in range(length))} for i in range(n)]]
        rows[f"{size} ({params:.0f} M), n = {n}, {length} tokens"] = step_parts(reader, reranker, ["w1 w2 w3 w4 ?"], passages, ["w5 w6"], 5, repeats)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", nargs="+", default=["demo", "25m"], choices=["demo", "25m", "qwen05", "tiny"])
    parser.add_argument("--ns", nargs="+", type=int, default=[10, 20, 50])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decoder-reader", default="", help="the demo row's decoder reader (a `demo-reader --recipe decoder` model or checkpoint; none is shipped)")
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write ('' = print only)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: dict[str, dict[str, float]] = {}
    for size in args.sizes:
        rows.update(demo_rows(args.repeats, args.decoder_reader) if size == "demo" else random_lm_rows(size, args.ns, args.repeats, device))
    from gumbel_rerank.envinfo import package_version

    columns = list(next(iter(rows.values())))
    lines = [
        "# Decoder-only reader: the cost of parallel reading, part by part",
        "",
        f"Command: `python benchmarks/decoder_reader_cost.py --threads {args.threads} --repeats {args.repeats} "
        f"--sizes {' '.join(args.sizes)}{' --decoder-reader ' + args.decoder_reader if args.decoder_reader else ''} --ns {' '.join(map(str, args.ns))} --device {args.device}`",
        f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} CPUs, {args.threads} torch thread(s), "
        f"torch {package_version('torch')}, transformers {package_version('transformers')}. Median seconds of "
        f"{args.repeats} calls after a warm-up.",
        "",
        "| setting | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if c != "peak MiB" else f"{row[c]:.0f}" for c in columns) + " |")
    publish(lines, args.results)


if __name__ == "__main__":
    main()
