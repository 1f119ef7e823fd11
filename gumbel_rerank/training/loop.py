"""The training loop shared by `train` (rerankers) and `train-reader` (FiD readers).

One loop, linear and readable: for each optimizer step, each rank takes its micro-batches of
the global batch, computes the objective's loss, backpropagates through the engine, steps, then
logs, evaluates and checkpoints on schedule. The same code runs as one plain torch process on a
CPU or as N DeepSpeed processes (ZeRO 0-3, bf16) on GPUs or CPUs.

Reproducibility: the data order is a seeded permutation per epoch of a virtual stream, the
examples of step s are its slice [s*G, (s+1)*G) for global batch G, and Gumbel noise is keyed by
(seed, step, position in the global batch). So a resumed run continues exactly, and one process
with gradient accumulation matches several processes on the same global batch.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gumbel_rerank.config import save_config
from gumbel_rerank.durable import write_atomic
from gumbel_rerank.envinfo import code_commit, environment_report, resolve_device
from gumbel_rerank.objectives.base import Batch, Objective, StepContext
from gumbel_rerank.training import checkpointing as ckpt
from gumbel_rerank.training import distributed
from gumbel_rerank.training.config import OptimConfig, RunConfig
from gumbel_rerank.training.engine import DeepSpeedEngine, Engine, SaveFn, TorchEngine
from gumbel_rerank.training.metrics_log import MetricsLog, open_wandb
from gumbel_rerank.training.selection import DevSelection


@dataclass(frozen=True)
class GlobalBatchSampler:
    """Which examples each rank's micro-batches hold at every step.

    The stream is epoch after epoch of seeded permutations of ``range(n_examples)``. Step s
    covers stream positions [s*G, (s+1)*G), G = micro * world * accum. Micro-batch m of rank r
    holds slot ``m * world + r`` of the step: a layout-independent split, so 1 process x 2
    accumulation steps and 2 processes x 1 see the same examples in the same slots.
    """

    n_examples: int
    seed: int
    micro_batch: int
    world_size: int
    grad_accum: int

    @property
    def global_batch(self) -> int:
        """Examples per optimizer step over all ranks and accumulation steps."""
        return self.micro_batch * self.world_size * self.grad_accum

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """(n_examples,) long: the seeded permutation of one epoch (computed once, then cached)."""
        return _epoch_order(self.n_examples, self.seed, epoch)

    def micro_batch_items(self, step: int, rank: int, micro: int) -> list[tuple[int, int]]:
        """[(example index, position in the step's global batch)] for one micro-batch."""
        slot = micro * self.world_size + rank
        first = step * self.global_batch + slot * self.micro_batch
        items = []
        for offset in range(self.micro_batch):
            epoch, index = divmod(first + offset, self.n_examples)
            items.append((int(self.epoch_order(epoch)[index]), slot * self.micro_batch + offset))
        return items


@functools.lru_cache(maxsize=4)
def _epoch_order(n_examples: int, seed: int, epoch: int) -> torch.Tensor:
    # Cached across calls (every micro-batch of an epoch reads the same permutation; computing it
    # per call cost a randperm of the whole training set each time). A tensor, not a list:
    # 8 bytes per example instead of a Python int object each. Two epochs at most are live at
    # once (a step straddling the boundary), so a few entries bound the memory.
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_examples, generator=gen)


def versions_segments(out: Path) -> list[tuple[int, Path]]:
    """(start step, file) of the versions files a run folder holds, by step:
    ``versions.json`` (step 0) and ``versions.resumed-at-N.json`` per resume."""
    found = [(0, out / "versions.json")] if (out / "versions.json").is_file() else []
    for path in out.glob("versions.resumed-at-*.json"):
        step = path.name.removeprefix("versions.resumed-at-").removesuffix(".json")
        if step.isdigit():
            found.append((int(step), path))
    return sorted(found)


class Trainer:
    """Runs an objective over a dataset with an engine; checkpoints, resumes, logs, evaluates.

    Args:
        module: what is trained (a Reranker, or a reader's T5 for train-reader).
        objective: ``loss(module, batch, ctx) -> (loss, metrics)``.
        collate: ``[(example index, position)] -> Batch``.
        n_examples: training set size.
        optim / run: optimisation and run settings.
        save_module: writes the module as a user-facing directory (HF format).
        evaluate: ``(module, step) -> metrics`` on the dev subset, or None.
        config: the resolved configuration, written to the run folder.
        extra_run_files: name -> JSON-able content written into the run folder (e.g. the
            reader's load report).
        step_diagnostics: ``batch -> metrics`` logged with the objective's own on logging
            steps (e.g. how often gold passages were sampled); it may read labels the
            objective itself never sees.
        log_extras: ``() -> metrics`` added once to each logged step's record (running
            counters of the job, e.g. the encoder cache's), not per micro-batch.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        objective: Objective,
        collate: Callable[[list[tuple[int, int]]], Batch],
        n_examples: int,
        optim: OptimConfig,
        run: RunConfig,
        save_module: SaveFn,
        evaluate: Callable[[torch.nn.Module, int], dict[str, float]] | None = None,
        config: Any = None,
        extra_run_files: dict[str, Any] | None = None,
        device: torch.device | None = None,
        step_diagnostics: Callable[[Batch], dict[str, float]] | None = None,
        log_extras: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.module = module
        self.objective = objective
        self.collate = collate
        self.n_examples = n_examples
        self.optim = optim
        self.run = run
        self.save_module = save_module
        self.evaluate = evaluate
        self.config = config
        self.extra_run_files = extra_run_files or {}
        self.step_diagnostics = step_diagnostics
        self.log_extras = log_extras
        self.device = device or resolve_device(run.device)
        self.out = Path(run.output_dir)
        self.ckpt_root = self.out / "checkpoints"
        self._preempted = False
        #: the best dev point and patience (run.select_metric), restored on resume
        self.selection = DevSelection(run.select_metric, run.patience) if run.select_metric else None
        #: seconds spent in training steps (no evaluation, no checkpoints), kept across resumes
        self.train_seconds = 0.0
        #: the step this process started (or resumed) at
        self.start_step = 0
        self.nonfinite_steps = 0  # optimizer steps skipped for a non-finite loss or gradient
        self.nonfinite_in_row = 0

    @property
    def preempted(self) -> bool:
        """True when the last ``fit`` stopped early on SIGUSR1 (checkpoint saved, not finished)."""
        return self._preempted

    # -- set-up -----------------------------------------------------------------------------
    #: Signals that mean "save and stop": SIGUSR1 (run.slurm asks SLURM for it ahead of the time
    #: limit) and SIGTERM (what SLURM sends on scancel, and at the limit when no signal was asked).
    PREEMPTION_SIGNALS = ("SIGUSR1", "SIGTERM")

    def _install_signal_handler(self) -> dict[int, Any]:
        """Make the pre-emption signals set a flag the step loop acts on; returns the previous
        handlers, which :meth:`fit` restores when it returns (so a signal after training,
        e.g. during the final report, keeps its usual effect)."""

        def handler(signum: int, frame: object) -> None:
            self._preempted = True

        previous: dict[int, Any] = {}
        for name in self.PREEMPTION_SIGNALS:
            number = getattr(signal, name, None)
            if number is None:  # not on this platform (Windows has no SIGUSR1)
                continue
            # not the main thread: run without pre-emption handling
            with contextlib.suppress(ValueError):
                previous[number] = signal.signal(number, handler)
        return previous

    def _write_run_folder(self, info: distributed.DistInfo, start: int) -> None:
        if not info.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            # a resume keeps the original config.yaml and records its own beside it
            name = "config.yaml" if start == 0 else f"config.resumed-at-{start}.yaml"
            save_config(self.config, self.out / name)
        versions = environment_report()
        versions["git commit"] = code_commit() or "unknown"
        versions["device"] = str(self.device)
        versions["world size"] = str(info.world_size)
        # like the config: a resume writes its own, so the code of every segment stays known;
        # a later segment's file is stale once training goes back before it (an older checkpoint)
        for step, stale in versions_segments(self.out):
            if step > start:
                stale.unlink()
        name = "versions.json" if start == 0 else f"versions.resumed-at-{start}.json"
        write_atomic(self.out / name, json.dumps(versions, indent=2))
        for name, content in self.extra_run_files.items():
            (self.out / name).write_text(json.dumps(content, indent=2))

    def _build_engine(self, info: distributed.DistInfo) -> Engine:
        if self.run.deepspeed:
            return DeepSpeedEngine(self.module, self.objective, self.optim, self.run.deepspeed, info.world_size)
        if info.world_size > 1:
            raise ValueError("several processes need a DeepSpeed config (run.deepspeed=configs/deepspeed/zero2.json)")
        return TorchEngine(self.module, self.objective, self.optim)

    def _log(self, log: MetricsLog, step: int, record: dict[str, float], wandb_run: Any) -> None:
        """``log.write``; a failed write (a full disk) stops the run with an OSError naming the
        log and the checkpoint the same command resumes from."""
        try:
            log.write(step, record, wandb_run)
        except OSError as err:
            raise OSError(err.errno, f"{err.strerror}; {self._intact_note()}", err.filename) from err

    def _intact_note(self) -> str:
        """What a write failure tells the user: the checkpoint that survived, and what to do."""
        previous = ckpt.last_good_checkpoint(self.ckpt_root)
        return f"the last checkpoint {previous or '(none yet)'} is intact: free space and run the same command with --resume"

    # -- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, engine: Engine, info: distributed.DistInfo, step: int) -> None:
        """Write step ``step``'s checkpoint; a failed write (a full disk) removes the partial
        folder and raises :class:`~gumbel_rerank.training.checkpointing.CheckpointStateError`
        naming it and the previous checkpoint, which stays intact (``latest`` moves only after
        a complete write)."""
        tmp = self.ckpt_root / f".tmp-{ckpt.checkpoint_name(step)}"
        try:
            self._write_checkpoint(engine, info, step, tmp)
        except (OSError, RuntimeError) as err:  # torch.save reports write failures as RuntimeError
            if info.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise ckpt.CheckpointStateError(
                f"saving the step {step} checkpoint into {tmp} failed ({err}); {self._intact_note()}"
            ) from err

    def _write_checkpoint(self, engine: Engine, info: distributed.DistInfo, step: int, tmp: Path) -> None:
        if info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        distributed.barrier()
        engine.save_state(tmp / "state")
        engine.export(self.save_module, tmp / "model", info.is_main)
        ckpt.save_rng(tmp, info.rank)
        distributed.barrier()
        if info.is_main:
            state = {
                "step": step,
                "examples_seen": step * self.optim.micro_batch_size * info.world_size * self.optim.grad_accum,
                "world_size": info.world_size,
                "seed": self.run.seed,
            }
            state["train_seconds"] = round(self.train_seconds, 3)
            if self.selection is not None:
                state["selection"] = self.selection.to_dict()
            (tmp / ckpt.STATE_FILE).write_text(json.dumps(state, indent=2))
            ckpt.finalize(tmp, self.ckpt_root, step, self.run.keep_last)
        distributed.barrier()

    def _resume(self, engine: Engine, info: distributed.DistInfo) -> int:
        candidates, notes = ckpt.resume_candidates(self.ckpt_root)
        if not candidates and not notes:
            return 0
        if not self.run.resume:
            raise FileExistsError(
                f"{self.out} already holds checkpoints ({candidates[0].name if candidates else 'none complete'}); "
                "pass --resume to continue that run, or set run.output_dir to a new folder"
            )
        for note in notes:
            print(f"resume: {note}", flush=True)
        for path in candidates:
            try:
                return self._resume_from(path, engine, info)
            except (ckpt.CheckpointStateError, FileNotFoundError, KeyError, json.JSONDecodeError, RuntimeError) as err:
                # (another run's seed or batch size is a ValueError and propagates: no older
                # checkpoint fixes that)
                print(f"resume: {path.name} cannot be loaded ({err}); trying the previous checkpoint", flush=True)
        raise ckpt.CheckpointStateError(
            f"{self.ckpt_root}: no checkpoint can be resumed from ({'; '.join(notes) or 'all failed to load'}); "
            "nothing was started from scratch"
        )

    def _resume_from(self, path: Path, engine: Engine, info: distributed.DistInfo) -> int:
        """Load checkpoint ``path`` into ``engine`` and this rank's RNG; returns its step."""
        state = ckpt.read_trainer_state(path)
        per_step = self.optim.micro_batch_size * info.world_size * self.optim.grad_accum
        saved_per_step = state["examples_seen"] // max(1, state["step"])
        if state["seed"] != self.run.seed or saved_per_step != per_step:
            raise ValueError(
                f"{path}: saved with run.seed={state['seed']} and {saved_per_step} examples per "
                f"step; this run has run.seed={self.run.seed} and {per_step} (micro_batch_size x "
                "processes x grad_accum). Data order and Gumbel noise would not continue the "
                "run: keep both, or start a new run.output_dir"
            )
        if not (path / "state").is_dir():
            raise FileNotFoundError(f"{path / 'state'} is missing (optimizer and weights)")
        engine.load_state(path / "state")
        ckpt.load_rng(path, info.rank)
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if self.selection is not None:
            self.selection = DevSelection.restore(self.run.select_metric, self.run.patience, state.get("selection"))
        if info.is_main:
            for name in ckpt.remove_leftovers(self.ckpt_root, path):
                print(f"resume: removed {name} (an unfinished or superseded save)", flush=True)
            print(f"resumed from {path} (step {state['step']})", flush=True)
        return int(state["step"])

    # -- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        """Train to ``optim.max_steps`` (or until pre-empted); returns the last logged metrics."""
        info = distributed.setup(self.device, need_group=bool(self.run.deepspeed))
        random.seed(self.run.seed)
        torch.manual_seed(self.run.seed)
        # one run per folder: a second one would interleave checkpoints and logs
        lock = ckpt.acquire_lock(self.out) if info.is_main else None
        previous_handlers = self._install_signal_handler()
        try:
            return self._fit(info)
        finally:
            for number, previous in previous_handlers.items():
                signal.signal(number, previous)
            if lock is not None:
                ckpt.release_lock(lock)

    def _fit(self, info: distributed.DistInfo) -> dict[str, float]:
        """:meth:`fit` with the pre-emption handlers installed."""
        self.module.to(self.device)
        engine = self._build_engine(info)
        start = self._resume(engine, info)
        self.start_step = start
        self._write_run_folder(info, start)
        log = MetricsLog(self.out / "metrics.jsonl", enabled=info.is_main, truncate_after=start)
        wandb_run = open_wandb(self.run, self.out, self.config) if info.is_main else None
        sampler = GlobalBatchSampler(
            self.n_examples, self.run.seed, self.optim.micro_batch_size, info.world_size, self.optim.grad_accum
        )
        progress = tqdm(
            total=self.optim.max_steps, initial=start, disable=not info.is_main, desc="train", dynamic_ncols=True
        )
        last: dict[str, float] = {}
        tic = time.perf_counter()
        # a run that already stopped early on dev is finished: a resume only publishes it
        end = start if self.selection is not None and self.selection.stopped_early else self.optim.max_steps
        for step in range(start, end):
            want_log = step == start or (step + 1) % self.run.log_every == 0
            started = time.perf_counter()
            record = self._train_step(engine, sampler, info.rank, step, want_log)
            self.train_seconds += time.perf_counter() - started
            done = step + 1
            progress.update(1)
            if want_log:
                record = distributed.mean_over_ranks(record, self.device)
                record["sec_per_step"] = (time.perf_counter() - tic) / max(1, done - start)
                if self.device.type == "cuda":  # memory per (n, lengths, model sizes): users ask first
                    record["cuda/max_allocated_mib"] = torch.cuda.max_memory_allocated(self.device) / 2**20
                    record["cuda/max_reserved_mib"] = torch.cuda.max_memory_reserved(self.device) / 2**20
                last = record
                self._log(log, done, record, wandb_run)
                progress.set_postfix(loss=f"{record['loss']:.4f}")
            evaluated = self.evaluate is not None and self.run.eval_every and done % self.run.eval_every == 0
            if evaluated:
                engine.module.eval()
                with torch.no_grad():
                    result = self.evaluate(engine.module, done)
                self._log(log, done, {f"dev/{k}": v for k, v in result.items()}, wandb_run)
                self._select(engine, info, result, done)
            preempted = distributed.any_rank(self._preempted, self.device)
            self._preempted = preempted  # every rank acts on the same decision
            stop = self.selection is not None and self.selection.stopped_early
            # with dev selection every evaluation is checkpointed: its decision is then durable
            tracked = evaluated and self.selection is not None
            if done % self.run.save_every == 0 or done == self.optim.max_steps or preempted or tracked:
                self._save_checkpoint(engine, info, done)
            if preempted:
                if info.is_main:
                    print(f"pre-empted: saved step {done}; the same command resumes", flush=True)
                break
            if stop:
                if info.is_main:
                    s = self.selection
                    print(
                        f"early stop at step {done}: no better {s.metric} for {s.bad_evals} evaluations "
                        f"(best {s.best_value} at step {s.best_step})",
                        flush=True,
                    )
                break
        progress.close()
        if info.is_main and not self._preempted:
            self._publish_model()
        if wandb_run is not None:
            wandb_run.finish()
        distributed.barrier()
        return last

    def _train_step(
        self, engine: Engine, sampler: GlobalBatchSampler, rank: int, step: int, want_log: bool
    ) -> dict[str, float]:
        """One optimizer step over this rank's micro-batches; returns this rank's record (loss,
        lr, grad_norm and the objective's metrics averaged over micro-batches)."""
        engine.module.train()
        ctx = StepContext(step=step, seed=self.run.seed, log=want_log)
        lr_used = engine.lr()  # the scheduler steps inside engine.step()
        losses, step_metrics = [], []
        ids: list[str] = []
        for micro in range(self.optim.grad_accum):
            batch = self.collate(sampler.micro_batch_items(step, rank, micro))
            ids += batch.ids
            loss, metrics = engine.loss(batch, ctx)
            # a non-finite loss is still back-propagated: its gradient is non-finite too, and the
            # engine then skips the whole update (no weight, moment or schedule change)
            engine.backward(loss)
            engine.step()
            losses.append(float(loss.detach()))
            if want_log and self.step_diagnostics is not None:
                metrics = {**metrics, **self.step_diagnostics(batch)}
            step_metrics.append(metrics)
        self._check_finite(engine, step, losses, ids)
        record = {"loss": sum(losses) / len(losses), "lr": lr_used, "grad_norm": engine.last_grad_norm}
        record["nonfinite_steps"] = float(self.nonfinite_steps)
        for key in step_metrics[0]:
            # NaN = "nothing to measure in this micro-batch": left out of the mean
            values = [m[key] for m in step_metrics if not math.isnan(m[key])]
            record[key] = sum(values) / len(values) if values else math.nan
        if want_log and self.log_extras is not None:
            record.update(self.log_extras())
        return record

    def _check_finite(self, engine: Engine, step: int, losses: list[float], ids: list[str]) -> None:
        """Count a step whose loss or gradient was not finite (the engine skipped its update);
        after ``run.max_nonfinite_steps`` such steps in a row, stop naming the step, the batch's
        question ids and the last good checkpoint. Under DeepSpeed the first one stops the run:
        its engine has already applied the update."""
        if all(math.isfinite(x) for x in losses) and math.isfinite(engine.last_grad_norm):
            self.nonfinite_in_row = 0
            return
        self.nonfinite_steps += 1
        self.nonfinite_in_row += 1
        if self.nonfinite_in_row >= self.run.max_nonfinite_steps or self.run.deepspeed:
            latest = ckpt.last_good_checkpoint(self.ckpt_root)
            raise FloatingPointError(
                f"step {step + 1}: {self.nonfinite_in_row} step(s) in a row with a non-finite loss or "
                f"gradient (losses {losses}, gradient norm {engine.last_grad_norm}); question ids of "
                f"this step's batch: {ids[:16]}; last good checkpoint: {latest or 'none yet'}"
            )
        print(f"step {step + 1}: non-finite loss or gradient, update skipped (ids {ids[:4]})", flush=True)

    def _select(self, engine: Engine, info: distributed.DistInfo, result: dict[str, float], step: int) -> None:
        """With dev selection: record ``result``; a new best is exported to ``<output_dir>/best``
        (through a temporary sibling, so a crash never leaves half a model there)."""
        if self.selection is None or not self.selection.update(result, step, self.train_seconds):
            return
        tmp = self.out / ".best.tmp"
        if info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        distributed.barrier()
        engine.export(self.save_module, tmp, info.is_main)
        if info.is_main:
            shutil.rmtree(self.out / "best", ignore_errors=True)
            tmp.rename(self.out / "best")
        distributed.barrier()

    def _publish_model(self) -> None:
        """Copy the run's result to ``<output_dir>/model`` (the user-facing model): the best dev
        point with ``run.select_metric`` (``selection.json`` says which), else the last step."""
        best = self.selection is not None and (self.out / "best").is_dir()
        source = self.out / "best" if best else ckpt.latest_checkpoint(self.ckpt_root)
        if source is None:
            return
        if self.selection is not None:
            # written first, whatever was published: no dev point improved (every evaluation
            # NaN) leaves best_step None and the last step published, which the file says
            write_atomic(self.out / "selection.json", json.dumps(self.selection.to_dict(), indent=1) + "\n")
        ckpt.publish_directory(source if best else source / "model", self.out / "model")
