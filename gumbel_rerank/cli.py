"""The `gumbel-rerank` command line: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import sys


def positive_int(text: str) -> int:
    """argparse type for counts: a clear message instead of a traceback or a silent 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def check_overrides(parser: argparse.ArgumentParser, rest: list[str]) -> list[str]:
    """The leftover arguments of ``parse_known_args``, which must all be config overrides
    ``--section.key=value``; anything else stops with a usage error naming it."""
    bad = [r for r in rest if not (r.startswith("--") and "=" in r)]
    if bad:
        parser.error(f"overrides take the form --section.key=value, got: {' '.join(bad)}")
    return rest


def _env(args: argparse.Namespace) -> int:
    from gumbel_rerank.envinfo import environment_report, format_report

    print(format_report(environment_report()))
    return 0


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    from gumbel_rerank.config import TrainConfig, load_config
    from gumbel_rerank.train_reranker import run_train

    cfg = load_config(TrainConfig, args.config, overrides + (["--run.resume=true"] if args.resume else []))
    run_train(cfg)
    return 0


def _train_reader(args: argparse.Namespace, overrides: list[str]) -> int:
    from gumbel_rerank.config import ReaderTrainConfig, load_config
    from gumbel_rerank.train_reader import run_train_reader

    cfg = load_config(ReaderTrainConfig, args.config, overrides + (["--run.resume=true"] if args.resume else []))
    run_train_reader(cfg)
    return 0


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file with defaults (configs/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in run.output_dir")
    parser.epilog = "Any config key can be overridden: --optim.lr=1e-4 --run.output_dir=runs/x"


# Subcommands whose module owns its whole argument parser (imported only when used, so
# `gumbel-rerank env` stays fast): name -> (module, help).
DELEGATED = {
    "convert": ("gumbel_rerank.converters", "convert a raw dataset (HotpotQA, MuSiQue, 2Wiki, FiD NQ/TQA) to our format"),
    "evaluate": ("gumbel_rerank.evaluation", "Recall/MRR/nDCG, indirect-evidence subset, EM/F1; JSON, markdown, plots"),
    "demo-reader": ("gumbel_rerank.demo_reader", "remake the demo's shipped reader (demo data, tokenizer, train-reader recipe)"),
    "demo": ("gumbel_rerank.demo", "the demo: G-Rerank on the embedded two-hop data, with baselines and a report"),
    "rerank": ("gumbel_rerank.inference", "rerank our JSON/JSONL or a TREC run with a trained reranker (streaming, resumable)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gumbel-rerank",
        description="Train rerankers end to end from a frozen FiD reader's LM loss.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="print versions and CUDA/bf16 support (paste into bug reports)")
    env.set_defaults(func=_env)
    train = sub.add_parser("train", help="train a reranker through a frozen reader (G-Rerank)")
    _add_config_args(train)
    train.set_defaults(func=_train, takes_overrides=True)
    train_reader = sub.add_parser("train-reader", help="fine-tune a FiD reader on our data format")
    _add_config_args(train_reader)
    train_reader.set_defaults(func=_train_reader, takes_overrides=True)
    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gumbel_rerank.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        module = importlib.import_module(DELEGATED[argv[0]][0])
        return module.cli_main(argv[1:])
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if not getattr(args, "takes_overrides", False):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args.func(args)
    check_overrides(parser, rest)
    try:
        return args.func(args, rest)
    except ConfigError as err:
        print(f"gumbel-rerank: config error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
