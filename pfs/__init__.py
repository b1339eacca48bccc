"""Gramine-compatible protected (encrypted) files.

Format v2.0 (reads v1.0), byte-compatible with Gramine's ``pf_crypt``. See docs/format.md.

The errors are imported with the package; everything else (the file, stream and storage
classes, which pull in ``cryptography``) on first use, so that ``import pfs.errors`` or
``pfs.paths`` stays cheap for command lines that only need those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    CorruptedNodeError,
    FileClosedError,
    FileTooLargeError,
    KeyFormatError,
    NoSpaceError,
    NotEncryptedError,
    PartialNodeError,
    PathMismatchError,
    PathTooLongError,
    PfsError,
    ReadOnlyError,
    RecoveryFailedError,
    RecoveryNeededError,
    TruncatedFileError,
    UnsupportedVersionError,
    WrongKeyError,
)
from .lazy_names import lazy_names

if TYPE_CHECKING:
    from .fileio import PfsRawIO, open
    from .protected_file import DEFAULT_CACHE_SIZE, MAX_FILE_SIZE, ProtectedFile
    from .storage import HostFile, MemoryStorage, Storage
    from .stream import decrypt_stream, encrypt_stream

# name -> the submodule that defines it, imported on first access
_LAZY = {
    "PfsRawIO": "fileio",
    "open": "fileio",
    "DEFAULT_CACHE_SIZE": "protected_file",
    "MAX_FILE_SIZE": "protected_file",
    "ProtectedFile": "protected_file",
    "HostFile": "storage",
    "MemoryStorage": "storage",
    "Storage": "storage",
    "decrypt_stream": "stream",
    "encrypt_stream": "stream",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = [
    "CorruptedNodeError",
    "decrypt_stream",
    "encrypt_stream",
    "open",
    "DEFAULT_CACHE_SIZE",
    "FileClosedError",
    "FileTooLargeError",
    "HostFile",
    "KeyFormatError",
    "MAX_FILE_SIZE",
    "MemoryStorage",
    "NoSpaceError",
    "NotEncryptedError",
    "PartialNodeError",
    "PathMismatchError",
    "PathTooLongError",
    "PfsRawIO",
    "PfsError",
    "ProtectedFile",
    "ReadOnlyError",
    "RecoveryFailedError",
    "RecoveryNeededError",
    "Storage",
    "TruncatedFileError",
    "UnsupportedVersionError",
    "WrongKeyError",
]
