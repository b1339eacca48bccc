"""Where a mount daemon's messages and result go: its log file and its status file.

Both live in the user's state folder, ``$XDG_STATE_HOME/pfskit`` (``~/.local/state/pfskit``):

- ``mount.log``: the messages of background daemons started without ``--log``;
- ``mounts/<hash of the mount point>.json``: written by the daemon when the mount is up (its
  pid) and again when it ends (its result), read by ``pfs umount`` to wait for the daemon and
  report failures at unmount in its exit status.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from typing import Any

from .cli_support import CliError


def state_dir() -> str:
    """``$XDG_STATE_HOME/pfskit``, or ``~/.local/state/pfskit``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "pfskit")


def default_log_path() -> str:
    """The log of background mounts started without ``--log``."""
    return os.path.join(state_dir(), "mount.log")


def open_log(path: str, *, default: bool = False) -> int:
    """Open the log file ``path`` for appending (made with mode 0600; the default one's folder
    with 0700). Never follows a symbolic link and takes only a regular file."""
    if default:
        with contextlib.suppress(FileExistsError):
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        # O_NONBLOCK: a FIFO at the path is refused below instead of blocking here
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CliError(f"log file '{path}' is a symbolic link; refusing to follow it: give the path of "
                           "the file itself") from None
        hint = "; give another with --log FILE" if default else ""
        raise CliError(f"can't open the log file '{path}': {exc.strerror}{hint}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CliError(f"log file '{path}' is not a regular file; give the path of a file")
    os.set_blocking(fd, True)
    return fd


def status_path(mountpoint: str) -> str:
    """The status file of the mount at ``mountpoint`` (any spelling of the same folder; never
    called by the daemon once it serves: resolving the path would ask the daemon itself)."""
    real = os.path.realpath(mountpoint)
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:24]
    return os.path.join(state_dir(), "mounts", f"{digest}.json")


def write_status(path: str, real_mountpoint: str, **fields: Any) -> None:
    """Replace the status file ``path`` (:func:`status_path`) of the mount at ``real_mountpoint``
    (resolved already) with ``fields``; raises OSError if it can't be written."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"mountpoint": real_mountpoint, **fields}, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_status(mountpoint: str) -> dict[str, Any] | None:
    """The status file of ``mountpoint``, or None (missing, unreadable, another mount point's)."""
    try:
        fd = os.open(status_path(mountpoint), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as f:
            status = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict) or status.get("mountpoint") != os.path.realpath(mountpoint):
        return None
    return status


def remove_status(mountpoint: str) -> None:
    """Forget the status of ``mountpoint`` (read by ``pfs umount``)."""
    with contextlib.suppress(OSError):
        os.unlink(status_path(mountpoint))


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), or None if it is gone or a zombie:
    with the pid it names one process, even if the pid is used again later."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def daemon_alive(status: dict[str, Any]) -> bool:
    """Whether the daemon a status file names is still running."""
    pid, start = status.get("pid"), status.get("start")
    return isinstance(pid, int) and start is not None and process_start(pid) == start
