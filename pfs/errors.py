"""Typed errors of the protected-file library.

Every error is an :class:`OSError` with an errno, and its message names the file (and the
node, for corruption). Messages never contain key material.
"""

from __future__ import annotations

import errno as _errno


class PfsError(OSError):
    """Base class: an ``OSError`` whose ``str()`` is a one-line message naming the file."""

    default_errno = _errno.EIO

    def __init__(self, message: str, *, path: str | None = None, errno: int | None = None):
        super().__init__(errno if errno is not None else self.default_errno, message)
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


class NotEncryptedError(PfsError):
    """The file is not a protected file (bad size or file id): Gramine's "invalid header"."""

    default_errno = _errno.EINVAL


class PartialNodeError(NotEncryptedError):
    """The file starts with an encrypted file's header but its size is not a whole number of
    nodes: it was cut (or extended) in the middle of a node. Gramine calls this an invalid
    header (``EINVAL``), so it stays a :class:`NotEncryptedError`; the message says what happened."""


class InputChangedError(PfsError):
    """The input changed size (or was rewritten) while it was being read, so the output would not
    be a copy of any one version of it."""

    default_errno = _errno.EIO


class UnsupportedVersionError(PfsError):
    """The header carries a format major version this library cannot read."""

    default_errno = _errno.EPROTONOSUPPORT


class WrongKeyError(PfsError):
    """The metadata tag does not verify: wrong key, or the metadata node was modified."""

    default_errno = _errno.EACCES


class PathMismatchError(PfsError):
    """The path bound into the file differs from the path the reader expects."""

    default_errno = _errno.EACCES

    def __init__(self, message: str, *, path: str | None, expected: str, found: str):
        super().__init__(message, path=path)
        self.expected = expected
        self.found = found


class CorruptedNodeError(PfsError):
    """An MHT or data node failed authentication (or is missing)."""

    default_errno = _errno.EIO

    def __init__(self, message: str, *, path: str | None, node: int, plaintext_range: tuple[int, int]):
        super().__init__(message, path=path)
        self.node = node
        self.plaintext_range = plaintext_range


class TruncatedFileError(PfsError):
    """The file on disk has fewer nodes than its recorded plaintext size needs."""

    default_errno = _errno.EIO


class RecoveryNeededError(PfsError):
    """An interrupted flush left the file marked "update pending"; open it with recovery."""

    default_errno = _errno.EIO


class RecoveryFailedError(PfsError):
    """The recovery journal is missing or invalid, so the interrupted flush can't be undone."""

    default_errno = _errno.EIO


class KeyFormatError(PfsError):
    """A key file or key value is not 16 raw bytes or 32 hex characters."""

    default_errno = _errno.EINVAL


class PathTooLongError(PfsError):
    """The path to bind does not fit the 772-byte path field."""

    default_errno = _errno.ENAMETOOLONG


class FileClosedError(PfsError):
    """An operation on a protected file that was already closed (or failed hard)."""

    default_errno = _errno.EBADF


class ReadOnlyError(PfsError):
    """A write to a protected file opened read-only."""

    default_errno = _errno.EBADF


class FileTooLargeError(PfsError):
    """A size past the largest protected file (``pfs.MAX_FILE_SIZE``)."""

    default_errno = _errno.EFBIG


class NoSpaceError(PfsError):
    """The storage can't hold the nodes a growth needs (checked before any node is written)."""

    default_errno = _errno.ENOSPC
