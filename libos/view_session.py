"""The FUSE session of a run's view, around :func:`vfs.fuse.serve`: the mount's read-ahead, the
session's end with the run, and libfuse's start-up chatter kept off the program's stderr."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

__all__ = ["END_GRACE", "end_session", "libfuse_start_messages", "raise_read_ahead"]

END_GRACE = 10.0  # seconds the view may outlive the run's namespace (a file of it held from outside)


def raise_read_ahead(view: int) -> int:
    """The kernel's read-ahead of the view's mount (128 KiB by default: 4 MiB reads faster); the
    mount's device number."""
    from vfs.fuse_readahead import READ_AHEAD_KB

    dev = os.fstat(view).st_dev
    with contextlib.suppress(OSError), open(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb",
                                            "w") as f:
        f.write(str(READ_AHEAD_KB))
    return dev


def end_session(server: threading.Thread, dev: int | None, on_error: Callable[[str], None] | None) -> bool:
    """Wait for the FUSE session to end with the run's namespace; False if it did not. It can't
    while a process outside the run holds a file of the view (one passed over a socket): after a
    grace period the connection is aborted where fusectl is mounted, else left to end with the
    runner (that file's last writes are then lost: said on stderr)."""
    server.join(timeout=END_GRACE)
    if server.is_alive() and dev is not None:
        with contextlib.suppress(OSError), open(f"/sys/fs/fuse/connections/{os.minor(dev)}/abort", "w") as f:
            f.write("1")
        server.join(timeout=END_GRACE)
    if not server.is_alive():
        return True
    if on_error is not None:
        on_error(f"a process outside the run still holds a file of the view after {END_GRACE:.0f} s; "
                 "the view ends with libos run (writes to files still open there are lost)")
    return False


@contextlib.contextmanager
def libfuse_start_messages():
    """libfuse 3.14 prints "Ignoring invalid max threads value" at every start (its own default):
    keep it off the program's stderr, pass on anything else it says."""
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    saved = os.dup(2)
    os.dup2(w, 2)
    os.close(w)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        with contextlib.suppress(OSError):
            said = os.read(r, 1 << 16).decode(errors="replace")
            for line in said.splitlines(keepends=True):
                if not line.startswith("Ignoring invalid max threads value"):
                    os.write(2, line.encode())
        os.close(r)
