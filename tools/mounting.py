"""Running a FUSE mount from a command line: checks, daemonizing, unmounting."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from .cli_support import CliError

READY_TIMEOUT = 20.0


def check_mountpoint(mountpoint: str) -> None:
    """Refuse a mount point that is missing, not a folder, already mounted, or not empty."""
    if not os.path.exists(mountpoint):
        raise CliError(f"mount point '{mountpoint}' does not exist; create it with 'mkdir {mountpoint}'")
    if not os.path.isdir(mountpoint):
        raise CliError(f"mount point '{mountpoint}' is not a folder")
    if os.path.ismount(mountpoint):
        raise CliError(f"'{mountpoint}' is already a mount point; unmount it first ('pfs umount {mountpoint}')")
    if os.listdir(mountpoint):
        raise CliError(f"mount point '{mountpoint}' is not empty; use an empty folder")


def run_mount(serve: Callable[[], None], mountpoint: str, *, foreground: bool, log_file: str | None = None) -> int:
    """Run ``serve`` (which blocks until unmounted) here, or in a detached child process.

    In the background case the parent returns 0 once the mount is visible, or 1 (with the
    child's error) if the child ended first.
    """
    if foreground:
        serve()
        return 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the daemon
        os.close(read_end)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        if log_file:
            # errors before the mount is up still reach the parent; later messages go to the log
            os.dup2(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), 2)
        else:
            os.dup2(write_end, 2)
        code = 0
        try:
            serve()
        except BaseException as exc:  # reported to the parent through stderr
            print(f"pfs: error: {exc}", file=sys.stderr, flush=True)
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
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
            raise CliError(message[-1].removeprefix("pfs: error: ") if message else
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


def unmount(mountpoint: str) -> None:
    """Unmount a FUSE mount point (the daemon then flushes and exits)."""
    if not os.path.ismount(mountpoint):
        raise CliError(f"'{mountpoint}' is not mounted")
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    cmd = [tool, "-u", mountpoint] if tool else ["umount", mountpoint]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise CliError(f"can't unmount '{mountpoint}': {detail} (is a program still using it?)")
