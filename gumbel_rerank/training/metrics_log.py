"""Metric logging: a JSONL file always, Weights & Biases when enabled (offline without network)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from gumbel_rerank.config import to_dict
from gumbel_rerank.durable import write_atomic
from gumbel_rerank.training.config import RunConfig


class MetricsLog:
    """Appends ``{"step": s, ...}`` lines to ``metrics.jsonl`` (main rank only).

    On resume from step s, lines logged after s by the interrupted run are dropped first, so the
    log never holds two different values for one step.
    """

    def __init__(self, path: Path, enabled: bool, truncate_after: int = 0):
        self.path = path
        self.enabled = enabled
        if enabled and path.is_file():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= truncate_after:
                        kept.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by a crash mid-write
            write_atomic(path, "".join(f"{line}\n" for line in kept))

    def write(self, step: int, values: dict[str, float], wandb_run: Any = None) -> None:
        """Append one line for ``step`` (and log it to wandb when a run is given)."""
        if not self.enabled:
            return
        line = (json.dumps({"step": step, **values}) + "\n").encode("utf-8")
        # unbuffered: a failed write must not be retried by close() after the cut below
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            written = 0
            try:
                while written < len(line):  # a short write is followed by the error, if any
                    written += os.write(fd, line[written:])
            except OSError as err:
                # a full disk can keep part of the line: cut it off, so the log ends with the
                # last whole record (resume drops cut lines anyway; readers should not meet one)
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise OSError(
                    err.errno,
                    f"{err.strerror} while appending step {step} to {self.path}; the log keeps "
                    "every record before it",
                    str(self.path),
                ) from err
        finally:
            os.close(fd)
        if wandb_run is not None:
            # logged as a metric, not wandb's own step: after a resume wandb would drop every
            # step up to where the interrupted run got
            wandb_run.log({"trainer/step": step, **values})


def network_reachable(host: str = "api.wandb.ai", port: int = 443, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_mode(requested: str) -> str:
    """"auto" -> "online" when wandb's API answers, else "offline" (clusters without internet)."""
    if requested != "auto":
        return requested
    return "online" if network_reachable() else "offline"


def open_wandb(run: RunConfig, out: Path, config: Any) -> Any:
    """A wandb run in ``out`` (id kept in ``out/wandb_id`` so resumes continue it), or None."""
    mode = wandb_mode(run.wandb)
    if mode == "disabled":
        return None
    import wandb

    id_file = out / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
    id_file.write_text(run_id)
    os.environ.setdefault("WANDB_SILENT", "true")
    wandb_run = wandb.init(
        project=run.wandb_project,
        dir=str(out),
        id=run_id,
        resume="allow",
        mode=mode,
        config=to_dict(config) if config is not None else None,
    )
    wandb_run.define_metric("trainer/step")
    wandb_run.define_metric("*", step_metric="trainer/step")
    return wandb_run
