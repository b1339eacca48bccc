"""A small host file system for the tests of size limits: a Linux tmpfs of a few MiB mounted
below the test's folder (we run as root), so that "the disk is full" is real and quick."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from helpers import require


@contextlib.contextmanager
def small_host_fs(path: Path, size: str = "8m") -> Iterator[Path]:
    """Mount a ``size`` tmpfs at ``path`` for the duration; skip (fail under CI) when mounting
    isn't possible here."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True)
    require(proc.returncode == 0, f"can't mount a small tmpfs at {path}: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def free_bytes(path: Path) -> int:
    s = os.statvfs(path)
    return s.f_bavail * s.f_frsize
