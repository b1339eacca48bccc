"""Plumbing for the ``pfs`` command: safe outputs, trees of files, errors, progress, parallel runs.

Nothing here parses arguments; :mod:`tools.pfs_cli` does that and calls in.

- :class:`AtomicOutput`: every output goes to ``.NAME.pfs-tmp-XXXX`` in the destination folder
  and is renamed into place only on success (never over an existing file without ``force``);
  on failure the temporary file is deleted.
- :func:`describe_error`: one line that says what is wrong and what to do, for any exception.
- :func:`run_file_jobs`: runs a per-file operation over many files, in worker processes when
  asked, going on past failures.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click

from pal import HostFile
from pfs.errors import (
    CorruptedNodeError,
    KeyFormatError,
    NotEncryptedError,
    PathMismatchError,
    PfsError,
    TruncatedFileError,
    UnsupportedVersionError,
    WrongKeyError,
)

TMP_MARKER = ".pfs-tmp-"


class CliError(Exception):
    """An error the command reports as one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class UsageProblem(CliError):
    """Arguments that don't make sense together (exit status 2)."""

    def __init__(self, message: str):
        super().__init__(message, code=2)


# ---------------------------------------------------------------------- messages

def one_line(text: str) -> str:
    """``text`` folded onto one line."""
    return " ".join(text.split())


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, WrongKeyError):
        return "check that the key file is the one this file was encrypted with"
    if isinstance(exc, PathMismatchError):
        return (f"if the file was moved on purpose, check it with --expect-path '{exc.found}' "
                "(or decrypt without -V)")
    if isinstance(exc, NotEncryptedError):
        return "is it a plaintext file? 'pfs encrypt' makes encrypted files"
    if isinstance(exc, CorruptedNodeError | TruncatedFileError):
        return "the file is damaged or was tampered with; restore it from a backup"
    if isinstance(exc, UnsupportedVersionError):
        return "it was written by a newer or unknown tool"
    if isinstance(exc, KeyFormatError):
        return "make a new key with 'pfs gen-key -w FILE'"
    return None


def describe_error(exc: BaseException) -> str:
    """A one-line message for ``exc``: what is wrong (naming the file) and what to do."""
    if isinstance(exc, CliError):
        return one_line(str(exc))
    if isinstance(exc, PfsError):
        message = str(exc)
        hint = _hint(exc)
        return one_line(f"{message}; {hint}" if hint else message)
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        where = exc.filename if exc.filename is not None else None
        return one_line(f"{where}: {what}" if where else what)
    return one_line(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)")


def echo_error(message: str) -> None:
    """Print ``pfs: error: MESSAGE`` on stderr."""
    click.echo(f"pfs: error: {one_line(message)}", err=True)


# ---------------------------------------------------------------------- inputs

def require_file(path: str, role: str, *, folder_hint: str = "") -> None:
    """Fail unless ``path`` names an existing file (not a folder)."""
    if os.path.isdir(path):
        raise CliError(f"{role} '{path}' is a folder, not a file{folder_hint}", code=2)
    if not os.path.lexists(path):
        raise CliError(f"{role} '{path}' does not exist", code=2)
    if not os.path.exists(path):
        raise CliError(f"{role} '{path}' is a dangling symbolic link", code=2)


def require_existing(path: str, role: str) -> None:
    """Fail unless ``path`` exists (file or folder)."""
    if not os.path.exists(path):
        raise CliError(f"{role} '{path}' does not exist", code=2)


def walk_files(root: str, *, skip: str | None = None) -> list[str]:
    """Paths (relative to ``root``, sorted) of the regular files under ``root``.

    Symbolic links to files count as files; links to folders are not followed. Our own
    leftover temporary files and the subtree at ``skip`` (a real path) are left out.
    """
    out: list[str] = []
    skip_real = os.path.realpath(skip) if skip else None
    for folder, dirs, files in os.walk(root, followlinks=False):
        if skip_real is not None:
            dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(folder, d)) != skip_real]
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            if TMP_MARKER in name or not os.path.isfile(full):
                continue
            out.append(os.path.relpath(full, root))
    return out


def is_inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies under it (real paths)."""
    p, r = os.path.realpath(path), os.path.realpath(root)
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)


# ---------------------------------------------------------------------- outputs

_UMASK: int | None = None


def default_mode() -> int:
    """0666 minus the process umask: the mode a new file gets from ``open``."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def check_output_target(path: str, *, force: bool) -> None:
    """Fail early when ``path`` can't be an output: a folder, or an existing file without force."""
    if os.path.isdir(path):
        raise CliError(f"output '{path}' is a folder; give the path of the output file", code=2)
    if os.path.lexists(path) and not force:
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


def prune_dirs(created: list[str]) -> None:
    """Remove the folders in ``created`` that ended up empty (deepest first)."""
    for folder in sorted(created, key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


class AtomicOutput:
    """A temporary file next to ``final`` that replaces it only on :meth:`commit`.

    ``file`` is a writable :class:`pal.HostFile` named after ``final`` (for messages). Leaving
    the ``with`` block without a commit deletes the temporary file.
    """

    def __init__(self, final: str, *, force: bool, mode: int | None = None, sync: bool = True):
        self.final = final
        self.force = force
        self.sync = sync
        self.mode = default_mode() if mode is None else mode
        folder = os.path.dirname(final) or "."
        base = os.path.basename(final)
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{base}{TMP_MARKER}", dir=folder)
        except FileNotFoundError:
            raise CliError(f"output folder '{folder}' does not exist") from None
        except NotADirectoryError:
            raise CliError(f"output folder '{folder}' is not a folder") from None
        except OSError as exc:
            raise CliError(f"can't write in output folder '{folder}': {exc.strerror}; "
                           "choose a folder you can write to") from None
        self.file = HostFile.from_fd(fd, final, writable=True)
        self.committed = False

    def commit(self) -> None:
        """fsync the temporary file (unless ``sync`` is off) and rename it to ``final`` (refusing to
        replace an existing file without force)."""
        if self.file.fd >= 0:
            os.fchmod(self.file.fd, self.mode)
            if self.sync:
                self.file.fsync()
            self.file.close()
        else:
            os.chmod(self.tmp, self.mode)
        if self.force:
            os.replace(self.tmp, self.final)
        else:
            self._rename_no_clobber()
        self.committed = True
        if not self.sync:
            return
        folder = os.path.dirname(self.final) or "."
        with contextlib.suppress(OSError):
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

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

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.discard()


# ---------------------------------------------------------------------- progress

class Progress:
    """A progress bar on stderr, shown only when stderr is a terminal and not quiet."""

    def __init__(self, total: int, label: str, *, enabled: bool):
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            self._bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    @property
    def callback(self) -> Callable[[int], None] | None:
        return self.update if self._bar is not None else None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


# ---------------------------------------------------------------------- running per-file jobs

@dataclass
class FileJob:
    """One file to process: ``src``, ``dst`` (or None) and a path (bound or expected)."""

    src: str
    dst: str | None = None
    path: str | None = None
    weight: int = 0  # bytes, for progress


@dataclass
class FileResult:
    """The outcome of one :class:`FileJob` (picklable: messages only, no exception objects)."""

    job: FileJob
    ok: bool
    value: Any = None
    message: str = ""
    trace: str = ""
    details: dict[str, Any] = field(default_factory=dict)


FileOp = Callable[..., Any]


def _run_one(op: FileOp, job: FileJob, params: dict[str, Any],
             progress: Callable[[int], None] | None) -> FileResult:
    try:
        value = op(job, progress=progress, **params)
    except Exception as exc:
        details = {}
        if isinstance(exc, CorruptedNodeError):
            details = {"node": exc.node, "plaintext_range": list(exc.plaintext_range)}
        return FileResult(job, False, message=describe_error(exc), trace=traceback.format_exc(),
                          details=details)
    return FileResult(job, True, value=value)


def _run_one_in_worker(op: FileOp, job: FileJob, params: dict[str, Any]) -> FileResult:
    return _run_one(op, job, params, None)


def run_file_jobs(op: FileOp, jobs: list[FileJob], params: dict[str, Any], *, workers: int,
                  progress: Progress) -> Iterator[FileResult]:
    """Run ``op(job, progress=..., **params)`` for every job; yield results in job order.

    With ``workers > 1`` and several jobs, files are spread over that many processes and
    ``params`` gets ``jobs=1`` (no nested pools). Otherwise files run one after the other and
    ``params`` is passed as given. Failures are results, not exceptions.
    """
    if workers > 1 and len(jobs) > 1:
        params = {**params, "jobs": 1} if "jobs" in params else params
        from concurrent.futures import ProcessPoolExecutor  # only trees with --jobs pay for it

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = [pool.submit(_run_one_in_worker, op, job, params) for job in jobs]
            try:
                for job, future in zip(jobs, futures, strict=True):
                    result = future.result()
                    progress.update(job.weight)
                    yield result
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return
    for job in jobs:
        counted = 0

        def tick(n: int) -> None:
            nonlocal counted
            counted += n
            progress.update(n)

        result = _run_one(op, job, params, tick if progress.callback else None)
        if job.weight > counted:
            progress.update(job.weight - counted)
        yield result

