"""Gramine-compatible protected (encrypted) files.

Format v2.0 (reads v1.0), byte-compatible with Gramine's ``pf_crypt``. See docs/format.md.
"""

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
from .fileio import PfsRawIO, open
from .protected_file import DEFAULT_CACHE_SIZE, MAX_FILE_SIZE, ProtectedFile
from .storage import HostFile, MemoryStorage, Storage
from .stream import decrypt_stream, encrypt_stream

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
