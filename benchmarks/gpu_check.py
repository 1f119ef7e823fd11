"""The parts of the prepared GPU check (``benchmarks/gpu_check.sh`` runs them in order, each
under its own timeout; ``--mode tiny`` is its CPU rehearsal in the test suite).

    python benchmarks/gpu_check.py env     --mode full|tiny --out OUT
    python benchmarks/gpu_check.py build   --mode full|tiny --work WORK
    python benchmarks/gpu_check.py train   --mode full|tiny --work WORK --out OUT --run base:20:ds
    python benchmarks/gpu_check.py predict --mode full|tiny --work WORK --out OUT
    python benchmarks/gpu_check.py report  --mode full|tiny --out OUT [--results benchmarks/results/gpu_check.md]
    python benchmarks/gpu_check.py pack-minilm --carry carry/minilm_int8.pt   (here, before a device call)

``build`` writes random-init models of the shipped configs' sizes (T5-base and T5-large FiD
readers from ``gumbel_rerank/reader/configs``, an XLM-R-base-size cross-encoder of
bge-reranker-base's shape) with tokenizers trained on the spot (no downloads), and synthetic
questions of 100 passages in the seed format. ``train`` runs the user's command,
``bash run.sh configs/hotpotqa_fid_<size>.yaml`` with its DeepSpeed ZeRO-2 bf16 file (or the
plain torch engine), pointed at those with overrides, and records seconds per step, peak GPU
memory, tokens per second, model FLOPs per step and utilisation against the H200's dense bf16
peak (989 TFLOP/s). Each part appends one JSON line to ``OUT/results.jsonl``; ``report``
turns them into markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The dense bf16 peak of an H200 (gpu.md): the denominator of model FLOP utilisation.
PEAK_FLOPS = 989e12
#: run name -> (config, reader size, n passages, engine); "tiny" mode shrinks every model.
RUNS = {
    "base:20:ds": ("hotpotqa_fid_base", "base", 20, "ds"),
    "base:20:torch": ("hotpotqa_fid_base", "base", 20, "torch"),
    "base:100:ds": ("hotpotqa_fid_base", "base", 100, "ds"),
    "large:20:ds": ("hotpotqa_fid_large", "large", 20, "ds"),
    "large:100:ds": ("hotpotqa_fid_large", "large", 100, "ds"),
}
STEPS = {"full": 30, "tiny": 2}
TEXT_LENGTH = {"full": 200, "tiny": 16}  # reader tokens per passage (the configs' text_maxlength)
RERANK_LENGTH = {"full": 256, "tiny": 24}


def record(out: Path, part: str, **values: object) -> None:
    """Append ``{"part": part, **values}`` to ``OUT/results.jsonl`` and print it."""
    out.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"part": part, **values}, default=str)
    with open(out / "results.jsonl", "a") as handle:
        handle.write(line + "\n")
    print(line, flush=True)


# -- env --------------------------------------------------------------------------------------
def part_env(args: argparse.Namespace) -> None:
    """GPU, versions, and that every package a training run imports is importable."""
    import importlib

    import torch

    imports = {}
    for name in ("transformers", "deepspeed", "datasets", "ir_measures", "sentence_transformers", "gumbel_rerank"):
        try:
            module = importlib.import_module(name)
            imports[name] = getattr(module, "__version__", "ok")
        except Exception as err:  # a missing carried wheel is what this part is for
            imports[name] = f"FAILED: {type(err).__name__}: {err}"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    record(
        args.out,
        "env",
        python=platform.python_version(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        gpu=gpu,
        gpu_count=torch.cuda.device_count(),
        bf16=torch.cuda.is_bf16_supported() if torch.cuda.is_available() else False,
        imports=imports,
        date=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    failed = [n for n, v in imports.items() if str(v).startswith("FAILED") and n != "sentence_transformers"]
    if failed:
        sys.exit(f"packages a training run needs do not import: {failed}")


# -- build ------------------------------------------------------------------------------------
def words(count: int, seed: int) -> list[str]:
    """``count`` pronounceable pseudo-words (synthetic text without any corpus)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "pe", "du", "ga", "zo", "be", "fi", "ho", "ju"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(count)]


def build_data(work: Path, mode: str) -> None:
    """Questions in the seed format with 100 passages of about TEXT_LENGTH words each."""
    rng = random.Random(0)
    vocab = words(3000, 1)
    length = TEXT_LENGTH[mode]
    for split, count in (("train", 400), ("dev", 40)):
        with open(work / f"{split}.jsonl", "w") as handle:
            for i in range(count):
                answer = rng.choice(vocab)
                ctxs = [
                    {"title": rng.choice(vocab), "text": " ".join(rng.choices(vocab, k=length)), "gold": j < 2}
                    for j in range(100)
                ]
                ctxs[0]["text"] += f" {answer}"
                question = "what is " + " ".join(rng.choices(vocab, k=8)) + " ?"
                handle.write(json.dumps({"id": f"{split}-{i}", "question": question, "target": answer, "answers": [answer], "ctxs": ctxs}) + "\n")


def build_models(work: Path, mode: str) -> None:
    """Random-init readers of the shipped T5 configs and a cross-encoder of bge-reranker-base's
    shape (XLM-R base: 278 M parameters), tokenizers trained here on the synthetic words."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        T5Config,
        T5ForConditionalGeneration,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    from gumbel_rerank.rerankers.model import Reranker, RerankerConfig
    from gumbel_rerank.training.compute import shipped_t5_config

    text = [" ".join(words(3000, 1))] * 3
    specials = ["<pad>", "</s>", "<unk>"]
    t5_tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    t5_tok.normalizer = normalizers.Lowercase()
    t5_tok.pre_tokenizer = pre_tokenizers.Whitespace()
    t5_tok.train_from_iterator(text, trainers.WordLevelTrainer(special_tokens=specials))
    t5 = PreTrainedTokenizerFast(tokenizer_object=t5_tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    for size in ("base", "large"):
        cfg = shipped_t5_config(f"t5-{size}")
        if mode == "tiny":
            cfg.update(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2)
        cfg.pop("architectures", None)
        model = T5ForConditionalGeneration(T5Config(**cfg))
        model.save_pretrained(work / f"reader-{size}")
        t5.save_pretrained(work / f"reader-{size}")
    be_tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    be_tok.pre_tokenizer = pre_tokenizers.Whitespace()
    be_tok.train_from_iterator(text, trainers.WordLevelTrainer(special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    from tokenizers.processors import TemplateProcessing

    be_tok.post_processor = TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    rerank_tok = PreTrainedTokenizerFast(tokenizer_object=be_tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    if mode == "tiny":
        xlmr = XLMRobertaConfig(vocab_size=len(rerank_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, num_labels=1, pad_token_id=1)
    else:  # bge-reranker-base: XLM-R base, 250,002 tokens, 514 positions, one logit
        xlmr = XLMRobertaConfig(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1, num_labels=1, pad_token_id=1)
    model = XLMRobertaForSequenceClassification(xlmr)
    Reranker(model, rerank_tok, RerankerConfig(max_length=RERANK_LENGTH[mode])).save_pretrained(work / "reranker")


def part_build(args: argparse.Namespace) -> None:
    """Models and data under ``WORK``."""
    started = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    build_data(args.work, args.mode)
    build_models(args.work, args.mode)
    record(args.out, "build", seconds=round(time.monotonic() - started, 1), work=str(args.work))


# -- train ------------------------------------------------------------------------------------
def run_overrides(args: argparse.Namespace, size: str, n: int, engine: str) -> list[str]:
    """Overrides that point the shipped config at the built models and data, for a short run;
    n = 100 turns on the memory options the project has."""
    work, tiny = args.work, args.mode == "tiny"
    out = work / "runs" / args.run.replace(":", "-")
    values = {
        "data.train": work / "train.jsonl",
        "data.dev": work / "dev.jsonl",
        "data.n_passages": n,
        "reader.path": work / f"reader-{size}",
        "reader.tokenizer": work / f"reader-{size}",
        "reader.base_config": "null",
        "reader.settings.text_maxlength": TEXT_LENGTH[args.mode],
        "reader.settings.answer_maxlength": 8,
        "reranker.path": work / "reranker",
        "reranker.settings.max_length": RERANK_LENGTH[args.mode],
        "optim.max_steps": STEPS[args.mode],
        "optim.warmup_steps": 1,
        "optim.micro_batch_size": 1,
        "optim.grad_accum": 1,
        "run.output_dir": out,
        "run.eval_every": 0,
        "run.save_every": 1000,
        "run.log_every": 1,
        "run.wandb": "disabled",
    }
    if n >= 100:  # gradient caching and chunked encoding: what makes n = 100 fit
        values["reranker.settings.grad_chunk_size"] = 20
        values["reader.settings.encode_chunk_size"] = 20
    if engine == "torch":
        values["run.deepspeed"] = "null"
    if tiny:
        values["run.device"] = "cpu"
    return [f"--{k}={v}" for k, v in values.items()]


def step_flops(reader_config: dict, n: int, mode: str, params: int) -> tuple[float, float]:
    """(model FLOPs, tokens) of one G-Rerank step of one question: the reranker's forward and
    backward (6 x parameters x tokens) and the reader's work (encoding n passages, one decoder
    pass forward and backward through the mask) at the run's lengths."""
    from gumbel_rerank.objectives.base import ReaderPasses
    from gumbel_rerank.training.compute import decoder_flops, encoder_flops, t5_shape

    length = TEXT_LENGTH[mode]
    shape = t5_shape(reader_config)
    passes = ReaderPasses(encoded=n, full_forward=1, full_backward=1)
    reader = passes.encoded * encoder_flops(shape, length) + 2 * decoder_flops(shape, n * length, 8)
    rerank_tokens = n * RERANK_LENGTH[mode]
    return 6 * params * rerank_tokens + reader, float(rerank_tokens + n * length)


def part_train(args: argparse.Namespace) -> None:
    """``bash run.sh`` on the run's config; its speed, memory and utilisation."""
    config, size, n, engine = RUNS[args.run]
    cmd = ["bash", "run.sh", f"configs/{config}.yaml", *run_overrides(args, size, n, engine)]
    env = dict(os.environ, NGPUS="1")
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = round(time.monotonic() - started, 1)
    tail = (done.stdout + done.stderr)[-3000:]
    log = args.work / "runs" / args.run.replace(":", "-") / "metrics.jsonl"
    if done.returncode != 0 or not log.is_file():
        record(args.out, "train", run=args.run, ok=False, seconds=seconds, tail=tail)
        sys.exit(f"{args.run}: run.sh exited {done.returncode}")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    last = rows[-1]
    from safetensors.torch import load_file

    params = sum(t.numel() for t in load_file(str(args.work / "reranker" / "model.safetensors")).values())
    reader_config = json.loads((args.work / f"reader-{size}" / "config.json").read_text())
    flops, tokens = step_flops(reader_config, n, args.mode, params)
    per_step = last["sec_per_step"]
    record(
        args.out,
        "train",
        run=args.run,
        ok=True,
        engine=engine,
        n=n,
        reader=size,
        steps=last["step"],
        seconds=seconds,
        sec_per_step=per_step,
        max_allocated_mib=last.get("cuda/max_allocated_mib"),
        max_reserved_mib=last.get("cuda/max_reserved_mib"),
        tokens_per_second=tokens / per_step,
        tflop_per_step=flops / 1e12,
        mfu=flops / per_step / PEAK_FLOPS,
    )


# -- predict ----------------------------------------------------------------------------------
def part_predict(args: argparse.Namespace) -> None:
    """``Reranker.predict`` against sentence-transformers' ``CrossEncoder.predict`` on the
    built cross-encoder, float32 and bf16, on the check's device."""
    import torch

    from gumbel_rerank.rerankers import Reranker

    device = "cuda" if torch.cuda.is_available() else "cpu"
    pairs = [(f"what is {w} ?", " ".join(words(40, i))) for i, w in enumerate(words(512 if args.mode == "full" else 16, 7))]
    results = {}
    for precision in ("float32", "bf16"):
        autocast = "bf16" if precision == "bf16" else None
        ours = Reranker.from_pretrained(args.work / "reranker", autocast=autocast).to(device).eval()
        ours.predict(pairs[:8], batch_size=32)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        ours.predict(pairs, batch_size=32)
        if device == "cuda":
            torch.cuda.synchronize()
        results[f"ours_{precision}_pairs_per_s"] = len(pairs) / (time.perf_counter() - started)
    try:
        from sentence_transformers import CrossEncoder

        theirs = CrossEncoder(str(args.work / "reranker"), device=device, activation_fn=torch.nn.Identity())
        theirs.predict(pairs[:8], batch_size=32)
        started = time.perf_counter()
        theirs.predict(pairs, batch_size=32)
        if device == "cuda":
            torch.cuda.synchronize()
        results["sentence_transformers_float32_pairs_per_s"] = len(pairs) / (time.perf_counter() - started)
    except ImportError as err:
        results["sentence_transformers"] = f"not installed: {err}"
    record(args.out, "predict", device=device, pairs=len(pairs), **results)


# -- report -----------------------------------------------------------------------------------
def part_report(args: argparse.Namespace) -> None:
    """``OUT/gpu_check.md`` (and ``--results`` when given) from ``OUT/results.jsonl``."""
    rows = [json.loads(line) for line in (args.out / "results.jsonl").read_text().splitlines()]
    env = next((r for r in rows if r["part"] == "env"), {})
    lines = [
        "# GPU check (benchmarks/gpu_check.sh)",
        "",
        f"Machine: {env.get('gpu')}, torch {env.get('torch')}, CUDA {env.get('cuda')}, Python {env.get('python')}; {env.get('date')}.",
        f"Command: `OUT=... bash benchmarks/gpu_check.sh{' --tiny' if args.mode == 'tiny' else ''}` (mode {args.mode}).",
        "",
        "| run | engine | n | s / step | peak allocated MiB | peak reserved MiB | tokens / s | TFLOP / step | MFU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in (r for r in rows if r["part"] == "train"):
        if not r.get("ok"):
            lines.append(f"| {r['run']} | failed | | | | | | | |")
            continue
        alloc = r.get("max_allocated_mib")
        reserved = r.get("max_reserved_mib")
        lines.append(
            f"| {r['run']} | {r['engine']} | {r['n']} | {r['sec_per_step']:.3f} | "
            f"{'–' if alloc is None else f'{alloc:.0f}'} | {'–' if reserved is None else f'{reserved:.0f}'} | "
            f"{r['tokens_per_second']:.0f} | {r['tflop_per_step']:.2f} | {r['mfu']:.1%} |"
        )
    for r in (r for r in rows if r["part"] == "predict"):
        lines += ["", f"predict on {r['device']}, {r['pairs']} pairs: " + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items() if k not in ("part", "device", "pairs"))]
    text = "\n".join(lines) + "\n"
    (args.out / "gpu_check.md").write_text(text)
    if args.results:
        Path(args.results).write_text(text)
    print(text)


# -- MiniLM for the device: the weights do not fit the carry as float32 (gpu.md) ---------------
def part_pack_minilm(args: argparse.Namespace) -> None:
    """all-MiniLM-L6-v2 as int8 with one float scale per row, tokenizer files included (about
    23 MB), for the device's demo; every weight is within 0.4% of its row's largest."""
    import torch
    from safetensors.torch import load_file

    from gumbel_rerank.demo.command import minilm_directory

    source = minilm_directory()
    packed = {}
    for name, tensor in load_file(str(source / "model.safetensors")).items():
        if tensor.dim() == 2 and tensor.dtype == torch.float32:
            scale = tensor.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
            packed[name] = {"q": torch.round(tensor / scale).to(torch.int8), "scale": scale}
        else:
            packed[name] = tensor
    files = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file() and p.suffix != ".safetensors"}
    args.carry.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weights": packed, "files": files}, args.carry)
    print(f"{args.carry}: {args.carry.stat().st_size / 2**20:.1f} MiB")


def part_unpack_minilm(args: argparse.Namespace) -> None:
    """Restore a packed MiniLM (float32 weights from int8 x scale) into ``WORK/minilm``: the
    demo's reranker start on the device, slightly off the original (say so beside any
    number measured with it)."""
    import torch
    from safetensors.torch import save_file

    packed = torch.load(args.carry, weights_only=True)
    target = args.work / "minilm"
    target.mkdir(parents=True, exist_ok=True)
    weights = {name: (v["q"].float() * v["scale"] if isinstance(v, dict) else v) for name, v in packed["weights"].items()}
    save_file({k: v.contiguous() for k, v in weights.items()}, str(target / "model.safetensors"))
    for name, data in packed["files"].items():
        (target / name).write_bytes(data)
    record(args.out, "unpack-minilm", directory=str(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("env", "build", "train", "predict", "report", "pack-minilm", "unpack-minilm"))
    parser.add_argument("--mode", choices=("full", "tiny"), default="full")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_check_work"))
    parser.add_argument("--run", choices=sorted(RUNS), default="base:20:ds")
    parser.add_argument("--results", default="", help="report: also write the markdown here")
    parser.add_argument("--carry", type=Path, default=Path("carry/minilm_int8.pt"))
    args = parser.parse_args()
    {
        "env": part_env,
        "build": part_build,
        "train": part_train,
        "predict": part_predict,
        "report": part_report,
        "pack-minilm": part_pack_minilm,
        "unpack-minilm": part_unpack_minilm,
    }[args.part](args)


if __name__ == "__main__":
    main()
