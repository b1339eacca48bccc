"""The kernel's read-ahead of a FUSE mount, found through the mount table (never the mount point
itself, which would ask the daemon)."""

from __future__ import annotations

import contextlib
import os
import re

READ_AHEAD_KB = 4096  # the kernel's read-ahead for the mount: bigger requests, fewer round trips


def fuse_device(mountpoint: str, mountinfo: str = "/proc/self/mountinfo", *, resolve: bool = True) -> str | None:
    """``major:minor`` of the FUSE file system mounted at ``mountpoint``, or None when the top
    mount there is not FUSE (or nothing is mounted there). ``resolve=False``: ``mountpoint`` is
    already a real path, and nothing on it is touched (no path lookup that could hold the mount
    busy while someone unmounts it)."""
    target = os.path.realpath(mountpoint) if resolve else mountpoint
    found = None
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 7 or "-" not in fields[6:]:
                    continue
                if _unescape_mount_field(fields[4]) == target:  # a later line is a mount on top
                    fstype = fields[fields.index("-", 6) + 1]
                    found = fields[2] if fstype == "fuse" or fstype.startswith("fuse.") else None
    except OSError:
        return None
    return found


def _unescape_mount_field(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def raise_read_ahead(mountpoint: str, kb: int = READ_AHEAD_KB, *, resolve: bool = True) -> None:
    """Set the kernel's read-ahead of the FUSE file system mounted at ``mountpoint``. The kernel
    gives FUSE mounts 128 KiB, which makes a sequential read one small request after another
    (4 MiB measured 2.2x faster on cold reads here). Needs root; otherwise the default stays.
    Only a FUSE mount's setting is touched, never the disk's under a folder that isn't (or is no
    longer) mounted."""
    dev = fuse_device(mountpoint, resolve=resolve)
    if dev is None:
        return
    with contextlib.suppress(OSError), open(f"/sys/class/bdi/{dev}/read_ahead_kb", "w") as f:
        f.write(str(kb))


def raise_read_ahead_when_mounted(real_mountpoint: str, timeout: float = 10.0) -> None:
    """Watch the mount table (never the mount point itself: a stat of it while the user unmounts
    would make the unmount fail with EBUSY) and raise the read-ahead once the mount is there."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fuse_device(real_mountpoint, resolve=False) is not None:
            raise_read_ahead(real_mountpoint, resolve=False)
            return
        time.sleep(0.02)
