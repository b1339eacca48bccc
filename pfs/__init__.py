"""Gramine-compatible protected (encrypted) files.

Format v2.0 (reads v1.0), byte-compatible with Gramine's ``pf_crypt``. See docs/format.md.
"""

from .errors import (
    CorruptedNodeError,
    FileClosedError,
    KeyFormatError,
    NotEncryptedError,
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
from .fileio import PfsRawIO, open
from .protected_file import DEFAULT_CACHE_SIZE, ProtectedFile
from .storage import HostFile, MemoryStorage, Storage
from .stream import decrypt_stream, encrypt_stream

__all__ = [
    "CorruptedNodeError",
    "decrypt_stream",
    "encrypt_stream",
    "open",
    "DEFAULT_CACHE_SIZE",
    "FileClosedError",
    "HostFile",
    "KeyFormatError",
    "MemoryStorage",
    "NotEncryptedError",
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
