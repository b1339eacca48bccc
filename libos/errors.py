"""Typed errors of the LibOS: ``OSError`` subclasses with an errno whose ``str()`` is one line."""

from __future__ import annotations

import errno as _errno


class LibosError(OSError):
    """Base class: an ``OSError`` (``errno`` set) whose ``str()`` is its one-line message."""

    default_errno = _errno.EINVAL

    def __init__(self, message: str, *, errno: int | None = None):
        super().__init__(self.default_errno if errno is None else errno, message)

    def __str__(self) -> str:
        return str(self.strerror)


class MountError(LibosError):
    """A mount of the manifest can't be made (its host path is missing or unusable); the
    message names the mount (its manifest key and path) and the host path. ``errno`` is the
    host's (ENOENT for a missing path)."""

    default_errno = _errno.ENOENT

    def __init__(self, message: str, *, errno: int | None = None, key: str = "", host_path: str = ""):
        super().__init__(message, errno=errno)
        self.key = key
        self.host_path = host_path


class BindingError(LibosError):
    """No encrypted mount of the manifest covers a host path (so no binding can be derived), or
    the manifest can't be used; ``errno`` EINVAL."""


class SgxManifestError(LibosError):
    """A manifest can't be rendered, checked or finalized for signing (Gramine's ``ManifestError``
    and schema errors); ``key`` is the dotted path of the offending key when there is one."""

    def __init__(self, message: str, *, errno: int | None = None, key: str | None = None):
        super().__init__(message, errno=errno)
        self.key = key


class SigningError(LibosError):
    """An enclave can't be signed (its key, an output, the PAL, the layout) or a signature file
    can't be used; the message names the file or the manifest key. ``errno`` EINVAL unless a
    file's own."""
