"""Resumable output of a ``rerank`` job: ``OUTPUT.partial`` and its ``OUTPUT.progress.json``.

After each batch the partial output is flushed and fsync'ed, then the sidecar is replaced
atomically with the number of input records done, the partial file's byte size at that point
and the job's fingerprint (:func:`job_fingerprint`). A crash can therefore only leave *more*
output than the sidecar claims, never less; a resumed run truncates the partial file to the
recorded size and skips that many records. See :mod:`gumbel_rerank.inference.streaming`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

from gumbel_rerank.durable import fsync_dir, write_atomic

__all__ = ["STATE_VERSION", "PartialOutput", "job_fingerprint", "reranker_fingerprint"]

logger = logging.getLogger(__name__)

#: Version of the sidecar and of the fingerprint's contents.
STATE_VERSION = 1


def job_fingerprint(parts: dict[str, Any]) -> str:
    """A key of everything that decides a job's output (input, reranker, options)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def reranker_fingerprint(directory: Path) -> str:
    """Settings files by content, weight files by name, size and mtime (hashing GBs is slow)."""
    h = hashlib.sha256()
    for entry in sorted(directory.iterdir()):
        if entry.name in ("config.json", "gumbel_rerank.json"):
            h.update(entry.name.encode() + entry.read_bytes())
        elif entry.suffix in (".safetensors", ".bin", ".pt") and entry.is_file():
            st = entry.stat()
            h.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


class PartialOutput:
    """The partial output and progress sidecar of the job writing ``output``."""

    def __init__(self, output: Path):
        self.output = output
        self.partial = output.with_name(output.name + ".partial")
        self.state_path = output.with_name(output.name + ".progress.json")
        self.fingerprint = ""

    def resume_point(self, resume: bool) -> tuple[int, int]:
        """(records done, byte size of their output) to continue from; (0, 0) starts over and
        removes what an earlier run left.

        Raises:
            ValueError: the partial output belongs to a job with another fingerprint.
        """
        done, offset = 0, 0
        if resume and self.state_path.is_file():
            done, offset = self._read_state()
        if done == 0:
            self.partial.unlink(missing_ok=True)
            self.state_path.unlink(missing_ok=True)
        return done, offset

    def _read_state(self) -> tuple[int, int]:
        """(records done, byte size of their output) from the sidecar; (0, 0) to start over."""
        state_path, partial = self.state_path, self.partial
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
            done, offset, saved = int(state["records"]), int(state["offset"]), state["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.warning("Unreadable progress file %s (%s); starting over.", state_path, err)
            return 0, 0
        if saved != self.fingerprint:
            raise ValueError(
                f"{state_path} belongs to a run with a different input, reranker or options, so "
                f"its partial output {partial} cannot be continued; pass resume=False "
                "(--no-resume) to discard it and start over"
            )
        size = partial.stat().st_size if partial.is_file() else -1
        if size < offset:
            logger.warning(
                "Partial output %s is shorter than its progress file records (%d < %d bytes); "
                "starting over.",
                partial,
                size,
                offset,
            )
            return 0, 0
        logger.info("Resuming: %d records already done in %s.", done, partial)
        return done, offset

    def open(self, offset: int) -> IO[bytes]:
        """The partial file, positioned at ``offset``; anything past it (a batch half-written
        before a crash) is dropped."""
        out = self.partial.open("r+b" if self.partial.exists() else "wb")
        out.truncate(offset)
        out.seek(offset)
        return out

    def checkpoint(self, out: IO[bytes], done: int) -> None:
        """Make the output durable, then record it: the sidecar never claims unwritten output."""
        out.flush()
        os.fsync(out.fileno())
        state = {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "records": done,
            "offset": out.tell(),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_atomic(self.state_path, json.dumps(state, indent=1))

    def discard_unrecorded(self) -> None:
        """After a failure: a partial file without a sidecar is useless, do not leave it."""
        if not self.state_path.exists():
            self.partial.unlink(missing_ok=True)

    def publish(self) -> None:
        """Rename the complete partial file to the output and drop the sidecar."""
        os.replace(self.partial, self.output)
        self.state_path.unlink(missing_ok=True)
        fsync_dir(self.output.parent)
