"""Plumbing for the command lines: errors and inputs (cheap to import: every command needs it).

Nothing here parses arguments; the command modules (:mod:`tools.pfs_commands`) do that and
call in. Per-file runs are in :mod:`tools.file_jobs`, outputs in :mod:`tools.outputs`, tree
walks in :mod:`tools.tree_walk`.

- :func:`describe_error`: one line that says what is wrong and what to do, for any exception.
"""

from __future__ import annotations

import os

import click

from pfs.errors import (
    CorruptedNodeError,
    KeyFormatError,
    NotEncryptedError,
    PartialNodeError,
    PathMismatchError,
    PfsError,
    RecoveryNeededError,
    TruncatedFileError,
    UnsupportedVersionError,
    WrongKeyError,
)
from pfs.layout import RECOVERY_SUFFIX


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
    if isinstance(exc, PartialNodeError):
        return "the file was cut short (or had bytes appended); restore it from a backup"
    if isinstance(exc, NotEncryptedError):
        return "is it a plaintext file? 'pfs encrypt' makes encrypted files"
    if isinstance(exc, RecoveryNeededError):
        journal = f"{exc.path}{RECOVERY_SUFFIX}"
        if exc.path is not None and not os.path.exists(journal):
            return (f"its recovery journal '{journal}' is missing, so the interrupted write can't be rolled "
                    "back; restore the file from a backup")
        return (f"its journal '{journal}' can roll it back: open it once with recovery, e.g. through "
                "'pfs mount --rw --recovery'")
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

STDIO = "-"  # as an input or output path: standard input or output

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


def is_inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies under it (real paths)."""
    p, r = os.path.realpath(path), os.path.realpath(root)
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)
