"""Outputs of the ``pfs`` file commands: written whole or not at all, and cleaned up on any stop.

- :class:`AtomicOutput`: every output goes to ``.NAME.pfs-tmp-XXXX`` in the destination folder
  and is renamed into place only on success (never over an existing file without ``force``,
  never over anything but a regular file); on failure the temporary file is deleted.
- :func:`stop_signals`: SIGTERM and SIGHUP raise :class:`Terminated` (as SIGINT raises
  ``KeyboardInterrupt``), so every ``with``/``finally`` clean-up runs for them too; the
  temporary files still alive when the command stops are removed by :func:`remove_live_temps`.
- :func:`output_mode`: the permission bits an output gets (the input's, as ``cp`` gives them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
from collections.abc import Iterator

from pal import HostFile

from .cli_support import CliError

TMP_MARKER = ".pfs-tmp-"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# Temporary outputs of this process not yet committed or discarded: removed on a stop signal
# even if the signal came between their creation and the ``with`` that owns them.
_LIVE_TEMPS: set[str] = set()


class Terminated(BaseException):
    """The command was stopped by a signal (SIGTERM, SIGHUP); like ``KeyboardInterrupt``, not an
    ``Exception``, so per-file error handling does not swallow it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


def _raise_stop(signum: int, _frame: object) -> None:
    for sig in STOP_SIGNALS:  # one stop is enough: later ones must not interrupt the clean-up
        signal.signal(sig, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """While inside: SIGTERM and SIGHUP raise :class:`Terminated` in the main thread (SIGINT
    ``KeyboardInterrupt``, as always); the first stop signal also holds off later ones."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a signal ignored from the start (nohup, a background job) stays ignored
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def remove_live_temps() -> None:
    """Delete every temporary output of this process that is still in place."""
    for path in list(_LIVE_TEMPS):
        with contextlib.suppress(OSError):
            os.unlink(path)
        _LIVE_TEMPS.discard(path)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold the stop signals back (delivered on exit), so that creating a temporary file and
    recording it are one step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def make_temp(folder: str, prefix: str, *, directory: bool = False) -> tuple[int, str]:
    """A new temporary file (``(fd, path)``) or folder (``(-1, path)``) in ``folder``, recorded
    for :func:`remove_live_temps` until :func:`forget_temp`."""
    import tempfile  # (its imports cost start-up; only commands that write outputs need it)

    with _signals_blocked():
        if directory:
            fd, path = -1, tempfile.mkdtemp(prefix=prefix, dir=folder)
        else:
            fd, path = tempfile.mkstemp(prefix=prefix, dir=folder)
        _LIVE_TEMPS.add(path)
    return fd, path


def forget_temp(path: str) -> None:
    """``path`` is no longer a live temporary (renamed into place, or deleted)."""
    _LIVE_TEMPS.discard(path)


# ---------------------------------------------------------------------- modes

_UMASK: int | None = None


def umask() -> int:
    """The process umask (read once)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def default_mode() -> int:
    """0666 minus the process umask: the mode a new file gets from ``open``."""
    return 0o666 & ~umask()


def output_mode(source_mode: int | None) -> int:
    """The permission bits of an output made from an input of mode ``source_mode`` (``None``: a
    stream): the input's read/write/execute bits, as ``cp`` gives them, minus the umask."""
    if source_mode is None:
        return default_mode()
    return stat.S_IMODE(source_mode) & 0o777 & ~umask()


# ---------------------------------------------------------------------- targets and folders

def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def check_output_target(path: str, *, force: bool) -> None:
    """Fail early when ``path`` can't be an output: a folder, anything but a regular file (even
    with force), or an existing file without force."""
    if os.path.isdir(path):
        raise CliError(f"output '{path}' is a folder; give the path of the output file", code=2)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CliError(f"can't check output '{path}': {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        hint = "; to write to standard output give -o -"
        raise CliError(f"output '{path}' is {_kind(st.st_mode)}; pfs only ever replaces regular files "
                       f"(remove it or choose another output){hint}", code=2)
    if not force:
        raise CliError(f"output '{path}' already exists; not overwriting it (use --force to replace it)")


def make_dirs(folder: str, created: list[str] | None = None) -> None:
    """``mkdir -p folder``, recording the folders it creates (so they can be pruned)."""
    if not folder or os.path.isdir(folder):
        return
    parent = os.path.dirname(folder.rstrip(os.sep))
    if parent and parent != folder:
        make_dirs(parent, created)
    try:
        os.mkdir(folder)
    except FileExistsError:
        if not os.path.isdir(folder):
            raise CliError(f"can't create output folder '{folder}': a file is in the way") from None
        return
    except OSError as exc:
        raise CliError(f"can't create output folder '{folder}': {exc.strerror}; "
                       "choose a folder you can write to") from None
    if created is not None:
        created.append(folder)


def prune_dirs(created: list[str], keep: frozenset[str] = frozenset()) -> None:
    """Remove the folders in ``created`` (but not those in ``keep``) that ended up empty,
    deepest first."""
    for folder in sorted(created, key=len, reverse=True):
        if folder in keep:
            continue
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def fsync_folder(folder: str) -> None:
    """fsync a folder (makes a rename in it durable); errors are ignored."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _temp_error(folder: str, exc: OSError) -> CliError:
    if isinstance(exc, FileNotFoundError):
        return CliError(f"output folder '{folder}' does not exist")
    if isinstance(exc, NotADirectoryError):
        return CliError(f"output folder '{folder}' is not a folder")
    return CliError(f"can't write in output folder '{folder}': {exc.strerror}; choose a folder you can write to")


class AtomicOutput:
    """A temporary file next to ``final`` that replaces it only on :meth:`commit`.

    ``file`` is a writable :class:`pal.HostFile` named after ``final`` (for messages). Leaving
    the ``with`` block without a commit deletes the temporary file. ``mode`` defaults to
    :func:`default_mode`.
    """

    def __init__(self, final: str, *, force: bool, mode: int | None = None, sync: bool = True):
        self.final = final
        self.force = force
        self.sync = sync
        self.mode = default_mode() if mode is None else mode
        folder = os.path.dirname(final) or "."
        base = os.path.basename(final)
        try:
            fd, self.tmp = make_temp(folder, f".{base}{TMP_MARKER}")
        except OSError as exc:
            raise _temp_error(folder, exc) from None
        self.file = HostFile.from_fd(fd, final, writable=True)
        self.committed = False

    def commit(self) -> None:
        """fsync the temporary file (unless ``sync`` is off) and rename it to ``final`` (refusing to
        replace an existing file without force, or anything but a regular file)."""
        if self.file.fd >= 0:
            os.fchmod(self.file.fd, self.mode)
            if self.sync:
                self.file.fsync()
            self.file.close()
        else:
            os.chmod(self.tmp, self.mode)
        if self.force:
            check_output_target(self.final, force=True)  # again: it may have changed meanwhile
            os.replace(self.tmp, self.final)
        else:
            self._rename_no_clobber()
        forget_temp(self.tmp)
        self.committed = True
        if self.sync:
            fsync_folder(os.path.dirname(self.final))

    def _rename_no_clobber(self) -> None:
        exists = CliError(f"output '{self.final}' already exists; not overwriting it "
                          "(use --force to replace it)")
        try:
            os.link(self.tmp, self.final)
        except FileExistsError:
            raise exists from None
        except OSError:
            # no hard links here (some file systems): check, then rename
            if os.path.lexists(self.final):
                raise exists from None
            os.rename(self.tmp, self.final)
            return
        os.unlink(self.tmp)

    def discard(self) -> None:
        """Close and delete the temporary file."""
        self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)
        forget_temp(self.tmp)

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.discard()
