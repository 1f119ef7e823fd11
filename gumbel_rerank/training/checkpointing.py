"""Run checkpoints: written atomically, the last K kept, the latest found for ``--resume``.

Layout of ``<output_dir>/checkpoints``::

    step-0000200/
        model/               the trained module as a plain HF directory (users load this)
        state/               engine state: weights, optimizer, scheduler (ZeRO partitions)
        rng-rank{r}.pt       each rank's torch / python RNG state
        trainer_state.json   step, consumed examples, config fingerprint
    latest                   name of the newest complete checkpoint

A checkpoint is assembled under ``.tmp-step-...`` and renamed into place only when every rank
has written its part, then ``latest`` is replaced; a crash at any point leaves the previous
checkpoint and ``latest`` intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import torch

from gumbel_rerank.durable import write_atomic

LATEST = "latest"
STATE_FILE = "trainer_state.json"


def checkpoint_name(step: int) -> str:
    """The folder name of step ``step``'s checkpoint (zero-padded, so names sort by step)."""
    return f"step-{step:07d}"


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (the ``checkpoints`` folder), or None."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is incomplete or missing")
    return path


def rng_state() -> dict:
    """This process's torch, python (and current CUDA device's) RNG states."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():  # this process's device only: layouts may change on resume
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class CheckpointStateError(RuntimeError):
    """A checkpoint file that cannot be read safely or completely; the message names it."""


def load_tensors(path: Path) -> object:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code.
    A file holding anything else (a pickle payload) or a truncated/corrupt one raises
    :class:`CheckpointStateError` naming the file and why."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointStateError(
            f"{path}: refused: the file holds more than tensors and plain containers (loading it "
            f"could run code): {err}"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointStateError(f"{path}: cannot be read (truncated or corrupt?): {err}") from err


def save_rng(directory: Path, rank: int) -> None:
    """Write rank ``rank``'s RNG states into a checkpoint folder."""
    torch.save(rng_state(), directory / f"rng-rank{rank}.pt")


def load_rng(directory: Path, rank: int) -> None:
    """Restore rank ``rank``'s RNG states from a checkpoint folder, if it has them."""
    path = directory / f"rng-rank{rank}.pt"
    if path.is_file():  # resuming on a different number of ranks: fresh RNG for the new ones
        # python's random state is a tuple of ints, which weights_only loading accepts
        restore_rng(load_tensors(path))


def finalize(tmp: Path, root: Path, step: int, keep_last: int) -> Path:
    """Rename a fully written ``tmp`` checkpoint into place, point ``latest`` at it, prune."""
    final = root / checkpoint_name(step)
    if final.exists():  # a re-run of the same step replaces the old copy only now
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_atomic(root / LATEST, final.name)
    # Only checkpoints older than the new one count against keep_last: a stale newer folder
    # (a crash after the rename, a hand-edited `latest`) must never push the new one out.
    older = sorted(p for p in root.glob("step-*") if p.name < final.name and (p / STATE_FILE).is_file())
    for old in older[: max(0, len(older) - (keep_last - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_trainer_state(path: Path) -> dict:
    """The ``trainer_state.json`` of checkpoint ``path`` (step, examples seen, world size, seed)."""
    return json.loads((path / STATE_FILE).read_text())


def publish_directory(source: Path, final: Path) -> None:
    """Copy ``source`` to ``final`` (a run's user-facing ``model/``) through a temporary
    sibling, so a crash never leaves a half-copied ``final``."""
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


LOCK = ".lock"


class RunFolderBusy(RuntimeError):
    """Another live run holds the run folder's lock; the message names its pid and host."""


def acquire_lock(out: Path) -> Path:
    """Create ``out/.lock`` holding this process's pid and host, atomically (O_EXCL).

    A lock left by a run that died on this host (its pid no longer exists) is taken over; a
    live one, or one from another host (whose pid cannot be checked from here), raises
    :class:`RunFolderBusy` naming the pid and host. Returns the lock's path (release it with
    :func:`release_lock`)."""
    import socket

    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}
            if holder.get("host") == me["host"] and not _pid_alive(int(holder.get("pid", -1))):
                path.unlink(missing_ok=True)  # its run died without releasing it: take over
                continue
            raise RunFolderBusy(
                f"{out} is in use by pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
                f"(lock file {path}); wait for that run, or remove the lock if it is gone"
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        return path
    raise RunFolderBusy(f"{path}: could not take the lock")


def release_lock(path: Path) -> None:
    """Remove a lock this process holds (a lock another process took over is left alone)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, json.JSONDecodeError):
        pass


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def resume_candidates(root: Path) -> tuple[list[Path], list[str]]:
    """Checkpoints to resume from, best first, and what is wrong with the folder.

    First the one ``latest`` names, if it is complete; then every other complete ``step-*``
    folder not newer than it, newest first (``latest`` is the commit point of a save, so a
    folder newer than it is the leftover of an interrupted save). Without a usable ``latest``
    pointer, every complete folder, newest first. The notes say what was found wrong (a
    pointer to a missing or incomplete folder, leftovers), for the run to print."""
    notes: list[str] = []
    complete = sorted((p for p in root.glob("step-*") if (p / STATE_FILE).is_file()), reverse=True)
    pointer = root / LATEST
    named = root / pointer.read_text().strip() if pointer.is_file() else None
    if named is not None and named not in complete:
        notes.append(f"{pointer} names {named.name}, which is missing or incomplete")
        named = None
    if named is not None:
        newer = [p for p in complete if p.name > named.name]
        notes += [f"{p.name} is newer than {pointer} (an interrupted save)" for p in newer]
        complete = [named] + [p for p in complete if p.name < named.name]
    return complete, notes


def last_good_checkpoint(root: Path) -> Path | None:
    """The checkpoint a resume would start from (:func:`resume_candidates`' first), or None;
    never raises, so error messages can name it whatever state the folder is in."""
    candidates, _ = resume_candidates(root)
    return candidates[0] if candidates else None


def remove_leftovers(root: Path, keep: Path) -> list[str]:
    """Delete ``.tmp-step-*`` folders (saves that never finished) and ``step-*`` folders newer
    than ``keep`` (the checkpoint a resume starts from, whose steps will be redone); returns
    the names removed. Only called by the run that holds the folder's lock."""
    removed = []
    for path in sorted(root.glob(".tmp-step-*")) + sorted(p for p in root.glob("step-*") if p.name > keep.name):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed
