"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


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


def config_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser for a config-driven job: ``--config FILE``, ``--resume``, then any
    ``--section.key=value`` override (left for :func:`check_overrides`)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Any config key can be overridden: --optim.lr=1e-4 --run.output_dir=runs/x",
    )
    parser.add_argument("--config", help="YAML file with defaults (configs/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in run.output_dir")
    return parser


def parse_help_or_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit status argparse chose (0 for --help, 2 for a
    usage error, message already printed) so a ``cli_main`` can return instead of exiting."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2


def run_config_job(prog: str, description: str, argv: list[str], load_and_run: Callable[[str | None, list[str]], object]) -> int:
    """The whole of a config-driven subcommand: parse ``--config``/``--resume`` and the
    overrides, then ``load_and_run(config path, overrides)``; a ConfigError prints
    ``gumbel-rerank: config error: ...`` and returns 2."""
    parser = config_parser(prog, description)
    args, rest = parser.parse_known_args(argv)
    check_overrides(parser, rest)
    from gumbel_rerank.config import ConfigError
    from gumbel_rerank.training.checkpointing import CheckpointStateError, RunFolderBusy
    from gumbel_rerank.training.distributed import cleanup

    try:
        load_and_run(args.config, rest + (["--run.resume=true"] if args.resume else []))
    except ConfigError as err:
        print(f"gumbel-rerank: config error: {err}", file=sys.stderr)
        return 2
    except (RunFolderBusy, CheckpointStateError, OSError) as err:  # the message says what and where
        print(f"gumbel-rerank: {err}", file=sys.stderr)
        return 1
    finally:
        # the process group (DeepSpeed, several processes) is left at the end of every job, on
        # errors too: NCCL warns about and may hang on a group never destroyed
        cleanup()
    return 0
