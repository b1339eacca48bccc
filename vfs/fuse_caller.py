"""Who a FUSE request comes from, and what it asks, in the VFS's terms: the caller's
supplementary groups, the set-id clearing the kernel asks for, and utimensat's time markers."""

from __future__ import annotations

import stat
from typing import Any

from .node import UTIME_NOW, TimeArg

UTIME_NOW_NSEC, UTIME_OMIT_NSEC = (1 << 30) - 1, (1 << 30) - 2  # utimensat's markers in tv_nsec


def caller_groups(pid: int) -> tuple[int, ...]:
    """The supplementary groups of process ``pid`` (its ``/proc/PID/status``), or none when it
    can't be read (it exited): fewer groups never grant more."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Groups:"):
                    return tuple(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return ()


def only_clears_setid(old: int, new: int) -> bool:
    """Whether mode ``new`` is ``old`` with some of its S_ISUID/S_ISGID bits cleared (and
    nothing else changed): what the kernel asks after a write or chown kills the set-id bits."""
    setid = stat.S_ISUID | stat.S_ISGID
    old, new = old & 0o7777, new & 0o7777
    return old != new and new & ~old == 0 and (old & ~new) & ~setid == 0


def time_arg(ts: Any) -> TimeArg:
    """A ``struct timespec`` of utimensat as a VFS time argument."""
    if ts.tv_nsec == UTIME_NOW_NSEC:
        return UTIME_NOW
    if ts.tv_nsec == UTIME_OMIT_NSEC:
        return None
    return ts.tv_sec * 10**9 + ts.tv_nsec
