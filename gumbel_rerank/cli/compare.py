"""`gumbel-rerank compare [--config FILE] [--objectives a,b,...] [--out DIR] [--a.b=c ...]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gumbel_rerank.cli.args import check_overrides, positive_int


def build_parser() -> argparse.ArgumentParser:
    """The ``compare`` options."""
    parser = argparse.ArgumentParser(
        prog="gumbel-rerank compare",
        description="Train several objectives on equal terms (same reader, data, reranker start, "
        "steps, seed) and write one table. Without --config: the demo data, the shipped reader "
        "and all-MiniLM-L6-v2 (gumbel_rerank/demo/assets/compare_recipe.yaml). Rerunning the "
        "same command resumes: finished runs are not trained again.",
        epilog="Any config key can be overridden: --optim.max_steps=50 --compare.test_questions=100",
    )
    parser.add_argument("--config", help="a compare config (a train config plus a compare: section)")
    parser.add_argument("--out", type=Path, help="run folder (demo default: runs/compare; else run.output_dir)")
    parser.add_argument("--objectives", help="comma-separated objective names (default: the config's list)")
    parser.add_argument("--train-questions", type=positive_int, help="demo only: training questions (default 3000)")
    parser.add_argument("--check-questions", type=positive_int, default=300, help="demo only: reading-check questions")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="the tuning protocol: each objective's settings chosen on dev with the same number of trials and "
        "budget, then several seeds evaluated once on test (demo: gumbel_rerank/demo/assets/protocol_recipe.yaml)",
    )
    parser.add_argument(
        "--records",
        action="append",
        type=Path,
        default=[],
        metavar="PROTOCOL_JSON",
        help="with --tune: an earlier protocol.json whose finished runs are taken instead of trained again where "
        "they match exactly (config, data, reader); repeatable (sets tune.records)",
    )
    parser.add_argument(
        "--reader",
        default=None,
        help="demo only: chain (default; the redundant setting's own reader with --setting redundant), "
        "or a reader directory (a decoder-only LM reads with the decoder recipe's settings)",
    )
    parser.add_argument(
        "--setting",
        choices=("chain", "redundant"),
        default="chain",
        help="demo only: the demo data (chain), or the redundant-evidence data where the bridge is also stated "
        "by a second passage in other words (with its own reader)",
    )
    return parser


def cli_main(argv: list[str]) -> int:
    """Run the comparison; returns 0, 2 for a config error, 1 for a run that stopped early."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    check_overrides(parser, rest)
    from gumbel_rerank.config import ConfigError

    names = [n.strip() for n in args.objectives.split(",") if n.strip()] if args.objectives else None
    if args.records:
        if not args.tune:
            parser.error("--records needs --tune (records are runs of the tuning protocol)")
        missing = [str(p) for p in args.records if not p.is_file()]
        if missing:
            parser.error(f"--records: no such file: {', '.join(missing)}")
        rest = [*rest, f"--tune.records={json.dumps([str(p.resolve()) for p in args.records])}"]
    try:
        if args.config is None:
            from gumbel_rerank.demo.compare import run_demo_compare

            sizes = {"train_questions": args.train_questions} if args.train_questions else {}
            run_demo_compare(
                args.out or Path("runs/compare"),
                **sizes,
                check_questions=args.check_questions,
                objectives=names,
                overrides=rest,
                tune=args.tune,
                setting=args.setting,
                reader=args.reader,
            )
        else:
            _run_config(args, names, rest)
    except ConfigError as err:
        print(f"gumbel-rerank compare: config error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"gumbel-rerank compare: {err}", file=sys.stderr)
        return 1
    finally:
        from gumbel_rerank.training.distributed import cleanup

        cleanup()  # a DeepSpeed run joins a process group: leave it, on errors too
    return 0


def _run_config(args: argparse.Namespace, names: list[str] | None, rest: list[str]) -> None:
    from gumbel_rerank.config import load_config
    from gumbel_rerank.training.compare import run_compare
    from gumbel_rerank.training.config import CompareConfig, ObjectiveConfig
    from gumbel_rerank.training.protocol import run_protocol

    extra = [f"--run.output_dir={args.out}"] if args.out else []
    cfg = load_config(CompareConfig, args.config, extra + rest)
    if names:
        known = {o.name: o for o in cfg.compare.objectives}
        cfg.compare.objectives = [known.get(n) or ObjectiveConfig(name=n) for n in names]
    if args.tune:
        run_protocol(cfg)
    else:
        run_compare(cfg)
