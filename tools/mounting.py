"""Running a FUSE mount from a command line: checks, daemonizing, logging, unmounting.

A daemon's messages go to ``--log FILE``, or for a background mount without it to the default
log (:func:`tools.mount_state.default_log_path`); a foreground mount prints them. The daemon
records its pid and, when it ends, its result in a status file (:mod:`tools.mount_state`):
``pfs umount`` waits for it and fails when files could not be flushed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from .cli_support import CliError, describe_error
from .mount_state import (
    daemon_alive,
    default_log_path,
    open_log,
    process_start,
    read_status,
    remove_status,
    status_path,
    write_status,
)

READY_TIMEOUT = 20.0
EXIT_TIMEOUT = 300.0  # how long `pfs umount` waits for the daemon to flush and exit

# a FUSE mount whose daemon is gone: stat gives ENOTCONN, statfs ECONNABORTED (Linux 6.x)
DEAD_MOUNT_ERRNOS = (errno.ENOTCONN, errno.ECONNABORTED)

Serve = Callable[[Callable[[], None]], None]  # serve(ready): blocks until unmounted, calls ready() once up


def _stale_message(mountpoint: str) -> str:
    return (f"the daemon of the mount at '{mountpoint}' has died (killed or crashed: the mount answers "
            "'Transport endpoint is not connected')")


def is_stale(mountpoint: str) -> bool:
    """Whether ``mountpoint`` is a FUSE mount whose daemon is gone (ENOTCONN). Asked with
    statvfs: the kernel answers a stat from its attribute cache for a while."""
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        return exc.errno in DEAD_MOUNT_ERRNOS
    return False


def check_mountpoint(mountpoint: str) -> None:
    """Refuse a mount point that is missing, not a folder, already mounted, or not empty."""
    try:
        os.statvfs(mountpoint)
    except FileNotFoundError:
        raise CliError(f"mount point '{mountpoint}' does not exist; create it with 'mkdir {mountpoint}'") from None
    except OSError as exc:
        if exc.errno in DEAD_MOUNT_ERRNOS:
            raise CliError(f"{_stale_message(mountpoint)}; clean it up with 'pfs umount {mountpoint}', "
                           "then mount again") from None
        raise CliError(f"can't use mount point '{mountpoint}': {exc.strerror}") from None
    if not os.path.isdir(mountpoint):
        raise CliError(f"mount point '{mountpoint}' is not a folder")
    if os.path.ismount(mountpoint):
        raise CliError(f"'{mountpoint}' is already a mount point; unmount it first ('pfs umount {mountpoint}')")
    if os.listdir(mountpoint):
        raise CliError(f"mount point '{mountpoint}' is not empty; use an empty folder")


def mount_log_path(log_file: str | None, *, foreground: bool) -> str | None:
    """Where the daemon's messages go: ``--log``, else the default log for a background mount
    (None: a foreground mount prints them)."""
    return log_file or (None if foreground else default_log_path())


# ---------------------------------------------------------------------- the daemon


def _log_handler(stream, mountpoint: str, prog: str) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s {prog} mount {mountpoint} [%(process)d] %(levelname)s: %(message)s"))
    return handler


class _Daemon:
    """What a running mount records: its status file, and the result at the end."""

    def __init__(self, mountpoint: str, log_path: str | None, prog: str):
        self.mountpoint = mountpoint
        self.real_mountpoint = os.path.realpath(mountpoint)  # resolved now: later it would ask the daemon
        self.status_path = status_path(mountpoint)
        self.log_path = log_path
        self.prog = prog
        self.mounted = False
        self.on_ready: Callable[[], None] | None = None

    def _write(self, **fields: object) -> None:
        write_status(self.status_path, self.real_mountpoint, pid=os.getpid(), start=process_start(os.getpid()),
                     log=self.log_path, **fields)

    def ready(self) -> None:
        """The mount is up (called from within the session: must not touch the mount)."""
        self.mounted = True
        try:
            self._write(state="mounted")
        except OSError as exc:
            logging.getLogger(self.prog).warning("can't write the status file (pfs umount won't report this "
                                                 "mount's result): %s", exc.strerror or exc)
        if self.on_ready is not None:
            self.on_ready()

    def finished(self, exc: BaseException | None) -> None:
        """The mount has ended, cleanly or with ``exc``."""
        if not self.mounted:
            return
        errors = list(getattr(exc, "failures", [])) or ([describe_error(exc)] if exc is not None else [])
        with contextlib.suppress(OSError):  # the errors are in the log too
            self._write(state="exited", errors=errors)

    def serve(self, serve: Serve) -> None:
        try:
            serve(self.ready)
        except BaseException as exc:
            self.finished(exc)
            raise
        self.finished(None)


def run_mount(serve: Serve, mountpoint: str, *, foreground: bool, log_file: str | None = None,
              prog: str = "pfs") -> int:
    """Run ``serve`` (which blocks until unmounted) here, or in a detached child process.

    In the background case the parent returns 0 once the mount is visible, or raises CliError
    (with the child's error) if the child ended first.
    """
    from vfs.fuse import check_fuse_device

    check_fuse_device()
    log_path = mount_log_path(log_file, foreground=foreground)
    log_fd = open_log(log_path, default=log_file is None) if log_path else None
    daemon = _Daemon(os.path.abspath(mountpoint), log_path, prog)
    if foreground:
        if log_fd is not None:
            root = logging.getLogger()
            if not root.handlers:  # keep printing what the terminal got before
                root.addHandler(logging.StreamHandler(sys.stderr))
            root.addHandler(_log_handler(os.fdopen(log_fd, "a", buffering=1), daemon.mountpoint, prog))
        daemon.serve(serve)
        return 0
    assert log_fd is not None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        _daemon_child(daemon, serve, log_fd, read_end, write_end)
    os.close(write_end)
    os.close(log_fd)
    return _wait_until_mounted(pid, mountpoint, read_end)


def _daemon_child(daemon: _Daemon, serve: Serve, log_fd: int, read_end: int, write_end: int) -> None:
    """The background daemon: its messages go to the log; an error before the mount is up also
    to the parent (through ``write_end``)."""
    os.close(read_end)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(log_fd, 2)  # libfuse's own messages too
    os.close(log_fd)
    root = logging.getLogger()
    level = logging.DEBUG if root.level == logging.DEBUG else logging.INFO
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_log_handler(sys.stderr, daemon.mountpoint, daemon.prog))
    root.setLevel(level)
    report = [write_end]

    def ready() -> None:
        os.close(report.pop())  # from now on only the log hears from us

    daemon.on_ready = ready
    code = 0
    try:
        daemon.serve(serve)
    except BaseException as exc:
        message = describe_error(exc)
        logging.getLogger(daemon.prog).error("%s", message)
        if report:
            with contextlib.suppress(OSError):
                os.write(report[0], f"{daemon.prog}: error: {message}\n".encode())
        code = 1
    finally:
        os._exit(code)


def _wait_until_mounted(pid: int, mountpoint: str, read_end: int) -> int:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if os.path.ismount(mountpoint):
            os.close(read_end)
            from vfs.fuse import raise_read_ahead

            raise_read_ahead(mountpoint)  # the daemon does it too; here it's done before we return
            return 0
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            message = _drain(read_end).strip().splitlines()
            raise CliError(message[-1].split(": error: ", 1)[-1] if message else
                           f"the FUSE daemon ended (status {status}) before the mount was ready")
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    raise CliError(f"the mount at '{mountpoint}' did not come up within {READY_TIMEOUT:.0f} s")


def _drain(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


# ---------------------------------------------------------------------- unmounting


def _fusermount(mountpoint: str, *, lazy: bool = False) -> subprocess.CompletedProcess:
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool:
        cmd = [tool, "-u", *(["-z"] if lazy else []), mountpoint]
    else:
        cmd = ["umount", *(["-l"] if lazy else []), mountpoint]
    return subprocess.run(cmd, capture_output=True, text=True)


def _detail(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"


def unmount(mountpoint: str, *, timeout: float = EXIT_TIMEOUT) -> None:
    """Unmount a FUSE mount point and wait for its daemon to flush and exit; CliError if files
    could not be flushed, or if the daemon had died (its stale mount is removed then)."""
    if is_stale(mountpoint):
        _remove_stale(mountpoint)
    if not os.path.ismount(mountpoint):  # (this waits for the daemon's start: its status is written then)
        raise CliError(f"'{mountpoint}' is not mounted")
    status = read_status(mountpoint)
    waiting = status is not None and daemon_alive(status)
    proc = _fusermount(mountpoint)
    if proc.returncode:
        raise CliError(f"can't unmount '{mountpoint}': {_detail(proc)} (is a program still using it?)")
    if not waiting:
        return
    assert status is not None
    log_hint = f"; see {status['log']}" if status.get("log") else ""
    deadline = time.monotonic() + timeout
    while daemon_alive(status):
        if time.monotonic() > deadline:
            raise CliError(f"unmounted '{mountpoint}', but its daemon (pid {status['pid']}) is still flushing "
                           f"after {timeout:.0f} s{log_hint}")
        time.sleep(0.05)
    result = read_status(mountpoint)
    remove_status(mountpoint)
    if result is None or result.get("state") != "exited" or result.get("pid") != status["pid"]:
        raise CliError(f"unmounted '{mountpoint}', but its daemon (pid {status['pid']}) ended without a result "
                       f"(killed?): changes it had not yet written may be lost{log_hint}")
    errors = [str(e) for e in result.get("errors") or []]
    if errors:
        raise CliError(f"unmounted '{mountpoint}', but {'; '.join(errors)}{log_hint}")


def _remove_stale(mountpoint: str) -> None:
    """Remove the mount of a dead daemon, then say what happened (CliError: data may be lost)."""
    proc = _fusermount(mountpoint)
    if proc.returncode:
        proc = _fusermount(mountpoint, lazy=True)
    if proc.returncode:
        raise CliError(f"{_stale_message(mountpoint)}; removing its stale mount failed: {_detail(proc)}")
    remove_status(mountpoint)
    raise CliError(f"{_stale_message(mountpoint)}; removed its stale mount. Changes it had not yet written are "
                   "lost: check the files with 'pfs verify'")
