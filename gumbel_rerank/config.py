"""Typed configuration: dataclasses, a YAML file for defaults, ``--section.key=value`` overrides.

Every section is a dataclass; unknown keys, wrong types and bad values fail at start-up with
the file (or flag) and the dotted key named, never twenty minutes into a run.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gumbel_rerank.masks import MaskConfig
from gumbel_rerank.reader.fid import FiDReaderConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem; the message names the source and the dotted key."""


@dataclass
class DataConfig:
    """Where questions come from and how they are batched.

    Attributes:
        train / dev: question files (JSON list or JSONL, see ``gumbel_rerank.data``).
        n_passages: candidates per question given to reranker and reader (first N); None = all.
        gold_field: per-passage gold flag name for evaluation (None = auto-detect).
        skip_invalid: skip (and report) invalid records instead of stopping.
        dev_subset: questions of ``dev`` used by in-loop evaluation.
    """

    train: str = ""
    dev: str | None = None
    n_passages: int | None = None
    gold_field: str | None = None
    skip_invalid: bool = False
    dev_subset: int = 200


@dataclass
class ReaderSection:
    """The frozen reader: a checkpoint directory and how to run it."""

    path: str = ""
    tokenizer: str | None = None
    base_config: str | None = None
    settings: FiDReaderConfig = field(default_factory=FiDReaderConfig)


@dataclass
class RerankerSection:
    """The reranker to train: a local HF directory and its scoring settings.

    ``settings`` are overrides of ``RerankerConfig`` fields on top of what the directory's
    gumbel_rerank.json says (or the defaults): setting max_length keeps a saved template.
    Unknown fields are refused when the reranker is loaded, before training starts.
    """

    path: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    gradient_checkpointing: bool = False


@dataclass
class ObjectiveConfig:
    """Which loss trains the reranker, with its hyper-parameters."""

    name: str = "gumbel"
    mask: MaskConfig = field(default_factory=MaskConfig)
    # Independent Gumbel masks per question and step, losses averaged (DECIDED, 1 = the paper):
    # lowers the variance of the mask gradient at the cost of that many decoder passes.
    mask_samples: int = 1

    def __post_init__(self) -> None:
        if self.mask_samples < 1:
            raise ConfigError("objective.mask_samples must be >= 1")


@dataclass
class OptimConfig:
    """AdamW with warmup then decay; batch sizes are per process."""

    lr: float = 2e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    scheduler: str = "linear"  # linear | cosine | constant
    max_steps: int = 1000
    micro_batch_size: int = 8
    grad_accum: int = 1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.scheduler not in ("linear", "cosine", "constant"):
            raise ConfigError(f"optim.scheduler: {self.scheduler!r} is not linear, cosine or constant")
        for name in ("max_steps", "micro_batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"optim.{name} must be >= 1, got {getattr(self, name)}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"optim.lr must be a finite number > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.grad_clip < 0:
            raise ConfigError("optim.warmup_steps and optim.grad_clip must be >= 0")


@dataclass
class RunConfig:
    """Where the run writes, how often it evaluates/saves/logs, which engine it uses.

    Attributes:
        output_dir: the run folder (resolved config, versions, metrics.jsonl, checkpoints).
        deepspeed: a DeepSpeed JSON config (``configs/deepspeed/*.json``) or None for plain torch.
        wandb: "disabled", "offline", "online" or "auto" (online if reachable, else offline).
        keep_last: checkpoints kept (oldest deleted after a newer one is complete).
        final_report: after training, evaluate the trained reranker on the dev subset (ranking
            metrics, indirect subset, EM/F1 from its top-k and the retriever's) and write
            report.json / report.md / plots (with the training curves) to ``output_dir/report``.
        resume: continue from the latest checkpoint in ``output_dir``. Without it a folder that
            already holds checkpoints is refused rather than overwritten.
    """

    output_dir: str = "runs/default"
    seed: int = 0
    eval_every: int = 200
    save_every: int = 200
    keep_last: int = 2
    log_every: int = 10
    deepspeed: str | None = None
    wandb: str = "disabled"
    wandb_project: str = "gumbel-rerank"
    resume: bool = False
    device: str = "auto"  # auto | cpu | cuda
    final_report: bool = True  # full dev evaluation + report/plots into <output_dir>/report

    def __post_init__(self) -> None:
        if self.wandb not in ("disabled", "offline", "online", "auto"):
            raise ConfigError(f"run.wandb: {self.wandb!r} is not disabled, offline, online or auto")
        if self.keep_last < 1:
            raise ConfigError("run.keep_last must be >= 1")
        for name in ("save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"run.{name} must be >= 1 (run.eval_every=0 disables evaluation)")
        if self.eval_every < 0:
            raise ConfigError("run.eval_every must be >= 0 (0 disables evaluation)")


@dataclass
class TrainConfig:
    """Everything `gumbel-rerank train` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    reader: ReaderSection = field(default_factory=ReaderSection)
    reranker: RerankerSection = field(default_factory=RerankerSection)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass
class CurriculumStage:
    """Which passages the reader reads for ``steps`` optimizer steps of ``train-reader``.

    Attributes:
        steps: length of the stage; the last stage also runs past its end until max_steps.
        contexts: "answer" (gold passages that contain the answer), "gold" (all gold passages),
            or "all" (every candidate, FiD's own training).
        distractors: random non-gold passages added to "answer"/"gold" contexts, so the reader
            must pick the right passage inside contexts of the size a reranker will select.
    """

    steps: int = 1000
    contexts: str = "all"
    distractors: int = 0

    def __post_init__(self) -> None:
        if self.contexts not in ("answer", "gold", "all"):
            raise ConfigError(f"curriculum.contexts: {self.contexts!r} is not answer, gold or all")
        if self.steps < 1 or self.distractors < 0:
            raise ConfigError("curriculum: steps must be >= 1 and distractors >= 0")


@dataclass
class ReaderTrainConfig:
    """Everything `gumbel-rerank train-reader` needs: the reader's T5 is what is trained."""

    data: DataConfig = field(default_factory=DataConfig)
    reader: ReaderSection = field(default_factory=ReaderSection)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4))
    run: RunConfig = field(default_factory=RunConfig)
    eval_answer_maxlength: int = 20
    curriculum: list[CurriculumStage] = field(default_factory=list)


# -- building dataclasses from plain data ------------------------------------------------------
def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads "3e-3" as a string: it wants "3.0e-3". Accept what users write.
        try:
            return float(value)
        except ValueError:
            pass
    if hint is Any or (isinstance(hint, type) and isinstance(value, hint)):
        if hint is int and isinstance(value, bool):
            raise ConfigError(f"{where}: expected int, got a boolean")
        return value
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from nested plain data, checking every key and type."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from err


def to_dict(config: Any) -> dict:
    """Plain nested data (tuples as lists) for YAML/JSON."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return plain(config)


def parse_overrides(items: list[str]) -> dict:
    """``["optim.lr=1e-4", "run.wandb=offline"]`` -> nested dict; values parsed as YAML."""
    nested: dict = {}
    for item in items:
        text = item.removeprefix("--")
        if "=" not in text:
            raise ConfigError(f"override {item!r}: expected --section.key=value")
        key, raw = text.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: {err}") from err
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is set to a value and a section")
        node[parts[-1]] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """YAML file (defaults for every key it sets) + overrides (win) -> dataclass ``cls``."""
    data: dict = {}
    where = "config"
    if path is not None:
        where = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: config file not found") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded or {}
    extra = parse_overrides(overrides or [])
    if extra:
        where = f"{where} + overrides"
    return from_dict(cls, _merge(data, extra), where)


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
