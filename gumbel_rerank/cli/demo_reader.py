"""`gumbel-rerank demo-reader --out DIR [--resume] [--section.key=value ...]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gumbel_rerank.cli.args import check_overrides, positive_int
from gumbel_rerank.config import ConfigError
from gumbel_rerank.demo.reader_recipe import (
    READER_TRAIN_QUESTIONS,
    RECIPES,
    check_reader,
    prepare,
    recipe_config,
)


def cli_main(argv: list[str]) -> int:
    """``gumbel-rerank demo-reader``: prepare and train the demo reader."""
    from gumbel_rerank.training.train_reader import run_train_reader

    parser = argparse.ArgumentParser(
        prog="gumbel-rerank demo-reader",
        description="Remake the demo's reader: demo data, tokenizer, random T5, then train-reader "
        "with demo/assets/reader_recipe.yaml. Any recipe key can be overridden: --optim.max_steps=500",
    )
    parser.add_argument("--out", type=Path, required=True, help="work folder (data, init, run)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default="answer",
        help="answer: the shipped answer-only reader; chain: a reader of '<intermediate> <answer>' "
        "targets on a shared name pool (demo/assets/reader_chain_recipe.yaml); redundant: the chain reader "
        "fine-tuned on facts stated twice (reader_redundant_recipe.yaml); decoder: a tiny Llama reading "
        "passages in parallel, trained from scratch on chain targets (reader_decoder_recipe.yaml)",
    )
    parser.add_argument(
        "--train-questions",
        type=positive_int,
        default=READER_TRAIN_QUESTIONS,
        help="training questions to generate (only when --out has no data yet)",
    )
    args, rest = parser.parse_known_args(argv)
    check_overrides(parser, rest)
    try:
        cfg = recipe_config(args.out, rest + (["--run.resume=true"] if args.resume else []), args.recipe)
        prepare(args.out, seed=cfg.run.seed, n_train=args.train_questions, recipe=args.recipe)
        run_train_reader(cfg)
    except ConfigError as err:
        print(f"gumbel-rerank demo-reader: config error: {err}", file=sys.stderr)
        return 2
    model = args.out / "run" / "model"
    if not model.is_dir():  # stopped early (SIGUSR1): the checkpoint is saved, nothing to check
        print(f"demo-reader: stopped before the end; continue with --resume (run in {args.out / 'run'})")
        return 0
    print(f"demo-reader: the trained reader is in {model}; reading check on dev:")
    dev = args.out / "data" / "dev.jsonl"
    print(check_reader(model, dev, cfg.reader.settings, cfg.run.device, args.recipe, cfg.reader.kind, cfg.reader.parallel_lm))
    return 0
