"""Durable file-system steps shared by everything that must not leave half-written outputs."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename into it) to disk; a no-op where directories cannot be
    opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_sibling(path: Path) -> Path:
    """A unique hidden temporary name beside ``path`` (two writers never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def _write_synced(tmp: Path, raw: bytes, path: Path) -> None:
    """Write ``raw`` to ``tmp`` and fsync it; a write error (a full disk, a file-size limit)
    is re-raised naming ``path``, the file it was meant for, which is left as it was."""
    try:
        with tmp.open("wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        raise OSError(
            err.errno, f"{err.strerror} while writing {path}; {path} was left as it was", str(path)
        ) from err


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new one, never a
    half-written one: unique temporary sibling, fsync, rename, fsync of the directory entry.

    Raises:
        OSError: the write failed (its message names ``path``); ``path`` is unchanged.
    """
    write_atomic_group({Path(path): data})


def write_atomic_group(files: Mapping[Path, bytes | str]) -> None:
    """Replace several files as one output: every file is staged in full (written and synced
    beside its target) before any target is replaced, so a write failure leaves all of the
    old files in place, never a mix of new and old ones. Renames cannot run out of space.

    Raises:
        OSError: a write failed (its message names the file); no target was replaced and no
            temporary file is left behind.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            tmp = _temporary_sibling(path)
            staged.append((tmp, path))
            _write_synced(tmp, data.encode("utf-8") if isinstance(data, str) else data, path)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    for directory in {path.parent for _, path in staged}:
        fsync_dir(directory)
