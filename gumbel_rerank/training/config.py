"""The job configurations of `gumbel-rerank train` and `train-reader`: one dataclass per section.

A YAML file gives defaults and ``--section.key=value`` overrides win (``gumbel_rerank.config``
does the parsing and names the dotted key of any error). ``objective.settings`` is typed by the
objective that ``objective.name`` picks (``gumbel_rerank.objectives.registry``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gumbel_rerank.config import ConfigError
from gumbel_rerank.masks import MaskConfig
from gumbel_rerank.objectives import registry
from gumbel_rerank.objectives.reader_nll import CurriculumStage
from gumbel_rerank.reader.fid import FiDReaderConfig
from gumbel_rerank.reader.loading import READER_KINDS
from gumbel_rerank.reader.parallel_lm import ParallelLMSettings


@dataclass
class DataConfig:
    """Where questions come from and how they are batched.

    Attributes:
        train / dev: question files (JSON list or JSONL, see ``gumbel_rerank.data.questions``).
        n_passages: candidates per question given to reranker and reader (first N); None = all.
        gold_field: per-passage gold flag name for evaluation (None = auto-detect).
        skip_invalid: skip (and report) invalid records instead of stopping.
        dev_subset: questions of ``dev`` used by in-loop evaluation.
        score_field: the per-passage numeric field loaded as the passage's score (the
            retriever's ``score`` by default; a teacher's scores for ``objective.name: kd``).
        evidence_roles: passage roles that name the pieces of evidence a question needs (e.g.
            ``[bridge, answer]``); a role ``r:x`` counts as ``r``, so a fact stated by several
            passages is found when any of them is. Adds ``Evidence@k`` and ``<role>@k`` to the
            in-loop and final evaluations (evaluation only; no objective reads roles).
    """

    train: str = ""
    dev: str | None = None
    n_passages: int | None = None
    gold_field: str | None = None
    skip_invalid: bool = False
    dev_subset: int = 200
    score_field: str = "score"
    evidence_roles: list[str] = field(default_factory=list)


@dataclass
class ReaderSection:
    """The frozen reader: a checkpoint directory and how to run it.

    Attributes:
        kind: "fid" (a FiD T5, the default) or "parallel_lm" (a local causal LM directory
            reading passages in parallel, ``gumbel_rerank.reader.parallel_lm``).
        settings: lengths, dtype, answer extraction (both kinds; the legacy bias and passage
            padding are FiD's).
        parallel_lm: the decoder-only reader's block and prompt templates.
        encoder_cache_mib: keep the frozen reader's encoder states of each question's full
            candidate set (training batches, dev evaluations) for reuse in later epochs and
            evaluations, up to this many MiB on the reader's device; 0 (default) encodes every
            time. Entries are keyed by the tokenised inputs, so reuse is exact. Questions past
            the budget are encoded every time, and a warning says what all of them would need.
    """

    path: str = ""
    tokenizer: str | None = None
    base_config: str | None = None
    settings: FiDReaderConfig = field(default_factory=FiDReaderConfig)
    encoder_cache_mib: float = 0.0
    kind: str = "fid"
    parallel_lm: ParallelLMSettings = field(default_factory=ParallelLMSettings)

    def __post_init__(self) -> None:
        if self.kind not in READER_KINDS:
            raise ConfigError(f"reader.kind: {self.kind!r} is not one of {READER_KINDS}")
        if not (math.isfinite(self.encoder_cache_mib) and self.encoder_cache_mib >= 0):
            raise ConfigError(f"reader.encoder_cache_mib must be a finite number >= 0, got {self.encoder_cache_mib}")


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
    """Which loss trains the reranker (``name``, one of the registry) and its ``settings``.

    ``settings`` is given as a mapping and becomes the objective's own settings dataclass when
    the config is built, so a wrong key stops the run at start-up naming
    ``objective.settings.<key>``. ``objective.mask`` and ``objective.mask_samples``, the
    pre-registry spelling of G-Rerank's settings, are still read (as
    ``objective.settings.mask`` / ``.mask_samples``), and ``cfg.objective.mask`` still reads.
    """

    CONFIG_ALIASES: ClassVar[dict[str, str]] = {
        "mask": "settings.mask",
        "mask_samples": "settings.mask_samples",
    }

    name: str = "gumbel"
    settings: Any = field(default_factory=dict)

    def __post_init__(self) -> None:
        registry.get(self.name, trains="reranker")
        self.settings = registry.parse_settings(self.name, self.settings, "objective.settings")

    @property
    def spec(self) -> registry.ObjectiveSpec:
        """The registered :class:`~gumbel_rerank.objectives.registry.ObjectiveSpec`."""
        return registry.get(self.name)

    @property
    def mask(self) -> MaskConfig:
        """G-Rerank's mask settings (``settings.mask``), for code written before the registry."""
        try:
            return self.settings.mask
        except AttributeError:
            raise AttributeError(f"objective {self.name!r} has no mask settings") from None


@dataclass
class EvalConfig:
    """In-loop and final evaluation.

    Attributes:
        k: passages the reader reads from the reranker's hard top-k (EM, hard top-k loss);
            None = the objective's own k (G-Rerank: ``objective.settings.mask.k``), else 5.
        ks: ranking cut-offs of the in-loop Recall@k / nDCG@k / AllGold@k; ``k`` is always
            added, so the learning curve of the reported column exists.
        allow_other_k: let a masking objective train with a mask whose k differs from ``k``
            (e.g. a training k above the evaluation k, on purpose); without it the mismatch is a
            config error, since it is usually a forgotten setting (a bare ``gumbel`` entry
            trains for k = 5 and would be judged at k = 3).
    """

    k: int | None = None
    ks: list[int] = field(default_factory=lambda: [1, 2, 5])
    allow_other_k: bool = False

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 1:
            raise ConfigError(f"eval.k must be >= 1, got {self.k}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"eval.ks must be a non-empty list of cut-offs >= 1, got {self.ks}")


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
        select_metric: a key of the in-loop dev evaluation (e.g. "AllGold@3", "R@5"; higher is
            better). When set, every evaluation that improves it saves the model as the run's
            best (``<output_dir>/best``), and ``model/`` is the best dev point, not the last
            step; ``selection.json`` says which step it was. Needs ``data.dev`` and
            ``eval_every``.
        patience: with ``select_metric``: stop after this many evaluations in a row without an
            improvement (0 = train to ``optim.max_steps``).
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
    # steps in a row whose loss or gradient is NaN/inf (each skipped: no update) before the run
    # stops with the step, the batch's question ids and the last good checkpoint
    max_nonfinite_steps: int = 3
    select_metric: str | None = None
    patience: int = 0

    def __post_init__(self) -> None:
        if self.patience < 0:
            raise ConfigError("run.patience must be >= 0 (0 = no early stopping)")
        if self.select_metric is not None and self.eval_every < 1:
            raise ConfigError("run.select_metric needs in-loop evaluation: set run.eval_every >= 1")
        if self.patience and self.select_metric is None:
            raise ConfigError("run.patience needs run.select_metric (the dev metric that must improve)")
        if self.wandb not in ("disabled", "offline", "online", "auto"):
            raise ConfigError(f"run.wandb: {self.wandb!r} is not disabled, offline, online or auto")
        if self.keep_last < 1:
            raise ConfigError("run.keep_last must be >= 1")
        for name in ("save_every", "log_every", "max_nonfinite_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"run.{name} must be >= 1 (run.eval_every=0 disables evaluation)")
        if self.eval_every < 0:
            raise ConfigError("run.eval_every must be >= 0 (0 disables evaluation)")


@dataclass
class StageConfig:
    """One stage of multi-stage training (``stages:`` in a train config).

    Attributes:
        objective: the stage's objective (``name`` and ``settings``, as ``objective:``).
        steps: optimizer steps of the stage (its ``optim.max_steps``).
        lr: the stage's peak learning rate; None = ``optim.lr``.
        warmup_steps: the stage's warmup; None = ``optim.warmup_steps``.
        name: the stage folder's name (default: ``stage-<i>-<objective name>``).
    """

    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    steps: int = 1000
    lr: float | None = None
    warmup_steps: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"stages: steps must be >= 1, got {self.steps}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"stages: lr must be a finite number > 0, got {self.lr}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError("stages: warmup_steps must be >= 0")
        if self.name and ("/" in self.name or self.name.startswith(".")):
            raise ConfigError(f"stages: name {self.name!r} must be a plain folder name")


@dataclass
class TrainConfig:
    """Everything `gumbel-rerank train` needs.

    With ``stages`` the run is multi-stage: stage i trains with its own objective, steps and
    learning rate in ``<output_dir>/<stage name>``, starting from stage i-1's reranker (stage 1
    from ``reranker.path``); ``objective`` and ``optim.max_steps`` are then not used.
    """

    data: DataConfig = field(default_factory=DataConfig)
    reader: ReaderSection = field(default_factory=ReaderSection)
    reranker: RerankerSection = field(default_factory=RerankerSection)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    stages: list[StageConfig] = field(default_factory=list)

    def eval_k(self) -> int:
        """``eval.k``, or the objective's own k when unset."""
        if self.eval.k is not None:
            return self.eval.k
        return self.objective.spec.eval_k(self.objective.settings)

    def trained_objectives(self) -> list[tuple[str, ObjectiveConfig]]:
        """(config key, objective) of every objective this job trains (the stages' or
        ``objective``)."""
        if self.stages:
            return [(f"stages[{i}].objective", stage.objective) for i, stage in enumerate(self.stages)]
        return [("objective", self.objective)]

    def __post_init__(self) -> None:
        """Settings that contradict each other stop here, before any folder is made."""
        n = self.data.n_passages
        if n is not None and self.eval.k is not None and self.eval.k > n:
            raise ConfigError(f"eval.k = {self.eval.k} exceeds data.n_passages = {n}")
        for where, objective in self.trained_objectives():
            mask = getattr(objective.settings, "mask", None)  # objectives that select k
            if not isinstance(mask, MaskConfig):
                continue
            if n is not None and mask.k > n:
                raise ConfigError(
                    f"{where}.settings.mask.k = {mask.k} exceeds data.n_passages = {n}: the top-k "
                    "selection needs at least k candidates"
                )
            if self.eval.k is not None and mask.k != self.eval.k and not self.eval.allow_other_k:
                raise ConfigError(
                    f"{where}.settings.mask.k = {mask.k} but eval.k = {self.eval.k}: the mask would "
                    f"train for another k than the one evaluated; set {where}.settings.mask.k = "
                    f"{self.eval.k}, or eval.allow_other_k = true if that is intended"
                )
        if self.run.deepspeed:
            read_deepspeed_config(self.run.deepspeed)


def read_deepspeed_config(path: str) -> dict[str, Any]:
    """The DeepSpeed JSON of ``run.deepspeed``, checked: ConfigError naming the key and file
    when it is missing, not a JSON object, asks for a ZeRO stage DeepSpeed does not have (0-3),
    or sets what the ``optim`` section owns (batch sizes, optimizer, scheduler). Read at config
    load (so a bad file stops before any folder exists) and by the DeepSpeed engine."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"run.deepspeed: {path}: file not found") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"run.deepspeed: {path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"run.deepspeed: {path}: expected a JSON object")
    stage = data.get("zero_optimization", {}).get("stage", 0)
    if isinstance(stage, bool) or stage not in (0, 1, 2, 3):
        raise ConfigError(f"run.deepspeed: {path}: zero_optimization.stage = {stage!r}; DeepSpeed has stages 0, 1, 2, 3")
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        if key in data and data[key] != "auto":
            raise ConfigError(f"{path}: {key} is set from optim.micro_batch_size/grad_accum; use \"auto\" or remove it")
    if "optimizer" in data or "scheduler" in data:
        raise ConfigError(f"{path}: optimizer and scheduler come from the optim section; remove them")
    return data


@dataclass
class ReaderTrainConfig:
    """Everything `gumbel-rerank train-reader` needs: the reader's T5 is what is trained."""

    data: DataConfig = field(default_factory=DataConfig)
    reader: ReaderSection = field(default_factory=ReaderSection)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4))
    run: RunConfig = field(default_factory=RunConfig)
    eval_answer_maxlength: int = 20
    curriculum: list[CurriculumStage] = field(default_factory=list)


#: The objectives `gumbel-rerank compare` runs when none are given: G-Rerank, the four reader
#: distillation baselines of the paper, and the supervised LCE reference.
DEFAULT_COMPARE = ("gumbel", "pdist", "loop", "emdr2", "adist", "lce")


@dataclass
class CompareSection:
    """What `gumbel-rerank compare` runs and where it evaluates.

    Attributes:
        objectives: one training run per entry (``name`` and ``settings``, as ``objective:``),
            all with the same reader, data, reranker start, step budget and seed.
        test: the question file every ranking is evaluated on; None = ``data.dev``.
        test_questions: evaluate the first N questions; None = all.
        ks: ranking cut-offs of the table (Recall@k, nDCG@k); ``eval.k`` is the reader's k.
    """

    objectives: list[ObjectiveConfig] = field(
        default_factory=lambda: [ObjectiveConfig(name=name) for name in DEFAULT_COMPARE]
    )
    test: str | None = None
    test_questions: int | None = None
    ks: list[int] = field(default_factory=lambda: [1, 3, 5])

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ConfigError("compare.objectives: give at least one objective")
        if self.test_questions is not None and self.test_questions < 1:
            raise ConfigError("compare.test_questions must be >= 1")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError("compare.ks must be a non-empty list of cut-offs >= 1")


#: ``tune.metric: auto``: the dev metric the protocol selects by (see :class:`TuneSection`).
AUTO_METRIC = "auto"


@dataclass
class TuneSection:
    """`gumbel-rerank compare --tune`: the tuning protocol (``gumbel_rerank.training.protocol``).

    Every objective of ``compare.objectives`` gets ``trials`` settings drawn (seeded by
    ``sample_seed``) from its search space (``ObjectiveSpec.search_space``, or ``grids[name]``),
    each trained with seed ``run.seed`` under the same budget: at most ``optim.max_steps``,
    a dev evaluation every ``run.eval_every`` steps, stopped after ``patience`` evaluations
    without improvement, the best dev point kept. The trial with the best dev ``metric`` is
    then trained with each of ``seeds`` and only those runs are evaluated on the test questions.

    Attributes:
        trials: settings tried per objective (the same for every objective).
        seeds: seeds of the final runs at the chosen setting (fresh: the tuning seed's run is
            not reused, so its selection on dev does not bias the test numbers).
        metric: the dev metric maximised; "auto" = ``Evidence@k`` with ``data.evidence_roles``,
            else ``AllGold@k`` (k = ``eval.k``).
        patience: evaluations without improvement before a run stops.
        sample_seed: seeds the draw of each objective's trials.
        grids: objective name -> {dotted run-config key: values}, replacing that objective's
            declared search space.
        records: ``protocol.json`` files of earlier protocols whose finished runs are taken
            instead of trained again when they match a run exactly (config, data and reader
            content: ``gumbel_rerank.training.records``); e.g. a committed state whose run
            folders are gone, or objectives run on another machine.
    """

    trials: int = 4
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    metric: str = AUTO_METRIC
    patience: int = 3
    sample_seed: int = 0
    grids: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    records: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"tune.trials must be >= 1, got {self.trials}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"tune.seeds must be distinct seeds, at least one: {self.seeds}")
        if self.patience < 1:
            raise ConfigError("tune.patience must be >= 1 (evaluations without improvement before a run stops)")
        for name, grid in self.grids.items():
            registry.get(name, trains="reranker", where=f"tune.grids.{name}")
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ConfigError(f"tune.grids.{name}.{key}: give a non-empty list of values")


@dataclass
class CompareConfig(TrainConfig):
    """`gumbel-rerank compare`: a train config (data, reader, reranker, optim, run) shared by
    every objective of ``compare.objectives``; ``objective`` and ``stages`` are not used;
    ``tune`` is read by ``compare --tune``."""

    compare: CompareSection = field(default_factory=CompareSection)
    tune: TuneSection = field(default_factory=TuneSection)

    def tune_metric(self) -> str:
        """The dev metric of the protocol (``tune.metric``, "auto" resolved)."""
        if self.tune.metric != AUTO_METRIC:
            return self.tune.metric
        k = self.eval_k()
        return f"Evidence@{k}" if self.data.evidence_roles else f"AllGold@{k}"

    def eval_k(self) -> int:
        """``eval.k``, default 5 (the paper's k): one k for every compared objective."""
        return self.eval.k if self.eval.k is not None else 5

    def trained_objectives(self) -> list[tuple[str, ObjectiveConfig]]:
        """(config key, objective) of every compared objective (``objective`` is not used)."""
        return [(f"compare.objectives[{i}]", o) for i, o in enumerate(self.compare.objectives)]

    def __post_init__(self) -> None:
        # compare judges every objective at eval_k() (5 when eval.k is unset)
        if self.eval.k is None:
            self.eval.k = self.eval_k()
        super().__post_init__()
