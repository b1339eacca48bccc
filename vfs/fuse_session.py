"""A FUSE session's life: its errors, the device check before mounting, and stopping on
SIGTERM, SIGINT or SIGHUP without losing what programs wrote.

libfuse's own handlers end the session loop at once. With the writeback cache, data a program
has written (and ``flush()``ed in its own buffers) may still be dirty pages in the kernel: they
would never reach the daemon, and the file would lose them although the program holds it open.
So while a mount is served the stop signals are blocked in every thread (libfuse's handlers then
never run) and one watcher thread takes them with ``sigwait``. On a stop signal it

1. has the kernel write back the mount's dirty pages: ``syncfs`` starts it (since Linux 6.x it
   doesn't wait for FUSE's write-back), then an ``fsync`` of every file open for writing, opened
   again through the mount, waits for it (the still running session loop answers both);
2. ends the session loop (``fuse_exit``, and a signal to the loop's thread that interrupts its
   wait for the next request),

after which libfuse unmounts and calls ``destroy``, where the bridge fsyncs and closes every file
still open.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("vfs.fuse")

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
WAKE_SIGNAL = signal.SIGUSR1  # interrupts the session loop's read of /dev/fuse (EINTR: no SA_RESTART)


class FuseError(OSError):
    """Mounting or serving failed (``strerror`` says what and what to do)."""


class UnmountFlushError(FuseError):
    """The mount ended, but writes were lost where no program was told (at a file's last close,
    or at unmount); ``failures``: one line each."""

    def __init__(self, failures: list[str]):
        super().__init__(errno.EIO, "; ".join(failures))
        self.failures = failures


# what fuse_main_real's non-zero results mean (libfuse 3 helper.c)
FUSE_MAIN_FAILURES = {
    1: "libfuse refused the mount options", 2: "no mount point was given", 3: "libfuse refused the mount options",
    4: "the mount failed", 5: "libfuse could not detach", 6: "libfuse could not set its signal handlers",
    7: "libfuse could not start its threads", 8: "the FUSE session ended with an error",
}


def check_fuse_device(device: str = "/dev/fuse") -> None:
    """Raise :class:`FuseError` (one clear line) when this user can't open the FUSE device:
    libfuse then fails without falling back to ``fusermount3``."""
    try:
        os.close(os.open(device, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            what = f"{device} is missing (load the fuse module: 'modprobe fuse')"
        else:
            what = (f"{device}: {exc.strerror} for uid {os.geteuid()}; mount as root, or ask the "
                    f"administrator to let this user open {device} (it is usually mode 0666)")
        raise FuseError(exc.errno, f"can't use FUSE: {what}") from None


def syncfs(path: str) -> None:
    """``syncfs(2)`` of the file system mounted at ``path`` (OSError on failure)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
    finally:
        os.close(fd)


class SignalStop:
    """Context manager: while it is active, SIGTERM/SIGINT/SIGHUP stop the session cleanly.

    Only for the main thread of a process that is the mount's daemon (the signals of the whole
    process are taken). ``exit_session`` ends the session loop; it is given once the session has
    started (:meth:`started`, called from a request of the loop).
    """

    def __init__(self, mountpoint: str, open_paths: Callable[[], list[str]]):
        self.mountpoint = mountpoint
        self.open_paths = open_paths  # paths (in the mount) of the files open for writing
        self.received: int | None = None
        self._loop_thread = threading.get_ident()
        self._old_wake: object = None
        self._exit_session: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._done = False
        self._thread: threading.Thread | None = None
        self._old_mask: set[int] | None = None

    def __enter__(self) -> SignalStop:
        self._loop_thread = threading.get_ident()
        self._old_wake = signal.signal(WAKE_SIGNAL, lambda *_: None)
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self._thread = threading.Thread(target=self._watch, name="fuse-signals", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pthread_kill(self._thread.ident, signal.SIGTERM)  # type: ignore[arg-type]
            self._thread.join(10)
        # stop signals that came while the mount was going away: it is gone, nothing is left to do
        while signal.sigtimedwait(STOP_SIGNALS, 0) is not None:
            pass
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        signal.signal(WAKE_SIGNAL, self._old_wake)  # type: ignore[arg-type]

    def started(self, exit_session: Callable[[], None]) -> bool:
        """The session loop runs (called from within a request). Returns True when a stop signal
        came before: then the caller ends the session at once (``exit_session()``)."""
        with self._lock:
            self._exit_session = exit_session
            return self.received is not None

    def ended(self) -> None:
        """The session is being destroyed (libfuse frees it next): never end it from now on."""
        with self._lock:
            self._exit_session = None
            self._done = True

    def _watch(self) -> None:
        while True:
            sig = signal.sigwait(STOP_SIGNALS)
            with self._lock:
                if self._done:
                    return
                first = self.received is None
                if first:
                    self.received = sig
                exit_session = self._exit_session
            if not first:
                log.info("%s again: the mount at %s is already being unmounted", signal.Signals(sig).name,
                         self.mountpoint)
                continue
            log.info("%s: flushing and unmounting %s", signal.Signals(sig).name, self.mountpoint)
            if exit_session is None:
                continue  # not mounted yet (started() ends the session as soon as it runs), or gone
            self._stop()

    def _stop(self) -> None:
        try:
            syncfs(self.mountpoint)  # the kernel's dirty pages become WRITE requests now
        except OSError as exc:
            log.error("writing back the kernel's cached writes of %s failed: %s", self.mountpoint,
                      exc.strerror or exc)
        for path in self.open_paths():
            self._fsync(path)
        with self._lock:  # not while (or after) libfuse destroys the session
            if self._exit_session is None:
                return
            self._exit_session()
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pthread_kill(self._loop_thread, WAKE_SIGNAL)

    def _fsync(self, path: str) -> None:
        """fsync the mount's file ``path``: returns once the kernel has written back its pages."""
        full = self.mountpoint.rstrip("/") + path
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:  # renamed or removed meanwhile: syncfs has started its write-back
            log.debug("can't reopen %s to fsync it: %s", full, exc)
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            log.error("writing back the cached writes of %s failed: %s", full, exc.strerror or exc)
        finally:
            os.close(fd)
