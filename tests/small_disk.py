"""A full disk for one subprocess: RLIMIT_FSIZE makes any write past ``limit`` bytes of a file
fail with EFBIG, as ENOSPC would, without a loop-mounted filesystem or root."""

from __future__ import annotations

import resource
import signal
import subprocess


def run_on_a_small_disk(cmd: list[str], limit: int, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, **kwargs)`` with every file the
    child writes limited to ``limit`` bytes (SIGXFSZ ignored, so the write raises instead)."""

    def small_disk() -> None:  # runs in the child, before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(cmd, capture_output=True, text=True, preexec_fn=small_disk, **kwargs)
