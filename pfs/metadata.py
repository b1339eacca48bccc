"""The metadata node (physical node 0): plaintext header and the encrypted part.

Parsing here does only what needs no key: file id, version, nonce, tag, flags, and where the
encrypted part sits (v2: offset 59; v1: offset 58, migrated to the v2 layout in memory).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import NotEncryptedError, PathTooLongError, UnsupportedVersionError
from .layout import (
    ENCRYPTED_PART_SIZE,
    EP_OFF_DATA,
    EP_OFF_PATH,
    EP_OFF_ROOT_KEY,
    EP_OFF_ROOT_MAC,
    EP_OFF_SIZE,
    FILE_ID,
    HEADER_SIZE,
    HEADER_SIZE_V1,
    KEY_SIZE,
    MAC_SIZE,
    MAJOR_VERSION,
    MD_USER_DATA_SIZE,
    MINOR_VERSION,
    NODE_SIZE,
    NONCE_SIZE,
    OFF_FLAGS,
    OFF_MAJOR,
    OFF_META_MAC,
    OFF_MINOR,
    OFF_NONCE,
    PATH_FIELD_SIZE,
    V1_MAJOR_VERSION,
)


@dataclass
class Header:
    """The unauthenticated header of node 0, with the encrypted part it precedes."""

    major: int
    minor: int
    nonce: bytes
    mac: bytes
    flags: int
    ciphertext: bytes  # the 3884-byte encrypted part

    def to_node(self) -> bytes:
        """Serialize as a v2 metadata node (always v2: v1 is only ever read)."""
        head = (
            FILE_ID
            + bytes((MAJOR_VERSION, MINOR_VERSION))
            + self.nonce
            + self.mac
            + bytes((self.flags,))
        )
        node = head + self.ciphertext
        return node + bytes(NODE_SIZE - len(node))


def parse_header(node0: bytes, name: str) -> Header:
    """Parse node 0; raise NotEncryptedError or UnsupportedVersionError with ``name`` in the text."""
    if len(node0) < NODE_SIZE:
        raise NotEncryptedError(f"{name}: not an encrypted file (invalid header: shorter than one node)", path=name)
    if node0[:8] != FILE_ID:
        raise NotEncryptedError(f"{name}: not an encrypted file (invalid header: no GRAFS_PF file id)", path=name)
    major, minor = node0[OFF_MAJOR], node0[OFF_MINOR]
    nonce = bytes(node0[OFF_NONCE:OFF_NONCE + NONCE_SIZE])
    mac = bytes(node0[OFF_META_MAC:OFF_META_MAC + MAC_SIZE])
    if major == MAJOR_VERSION:
        flags = node0[OFF_FLAGS]
        start = HEADER_SIZE
    elif major == V1_MAJOR_VERSION:
        flags = 0
        start = HEADER_SIZE_V1
    else:
        raise UnsupportedVersionError(
            f"{name}: unsupported format version {major}.{minor} (this tool reads 1.x and 2.x)", path=name)
    return Header(major, minor, nonce, mac, flags, bytes(node0[start:start + ENCRYPTED_PART_SIZE]))


@dataclass
class Metadata:
    """The decrypted part of node 0: bound path, plaintext size, root MHT key/tag, first 3072 bytes.

    Its ``repr`` shows the path and the size only: never the root MHT key or the plaintext.
    """

    path: bytes = b""
    size: int = 0
    root_key: bytes = field(default=bytes(KEY_SIZE), repr=False)
    root_mac: bytes = bytes(MAC_SIZE)
    data: bytearray = field(default_factory=lambda: bytearray(MD_USER_DATA_SIZE), repr=False)

    def __repr__(self) -> str:
        return f"Metadata(path={self.path!r}, size={self.size})"

    @classmethod
    def from_plaintext(cls, plain: bytes) -> Metadata:
        raw_path = plain[EP_OFF_PATH:EP_OFF_PATH + PATH_FIELD_SIZE]
        nul = raw_path.find(b"\0")
        path = raw_path if nul < 0 else raw_path[:nul]
        (size,) = struct.unpack_from("<Q", plain, EP_OFF_SIZE)
        return cls(
            path=bytes(path),
            size=size,
            root_key=bytes(plain[EP_OFF_ROOT_KEY:EP_OFF_ROOT_KEY + KEY_SIZE]),
            root_mac=bytes(plain[EP_OFF_ROOT_MAC:EP_OFF_ROOT_MAC + MAC_SIZE]),
            data=bytearray(plain[EP_OFF_DATA:EP_OFF_DATA + MD_USER_DATA_SIZE]),
        )

    def to_plaintext(self) -> bytes:
        return (
            self.path.ljust(PATH_FIELD_SIZE, b"\0")
            + struct.pack("<Q", self.size)
            + self.root_key
            + self.root_mac
            + bytes(self.data)
        )


def encode_path(path: str | bytes, name: str) -> bytes:
    """The bytes stored in the path field for ``path``; raise PathTooLongError if it can't fit."""
    # a file name that is not UTF-8 (os.fsdecode gives surrogates) is bound by its raw bytes
    raw = path.encode("utf-8", "surrogateescape") if isinstance(path, str) else bytes(path)
    if len(raw) >= PATH_FIELD_SIZE:
        raise PathTooLongError(
            f"{name}: path to bind is {len(raw)} bytes, the format allows at most {PATH_FIELD_SIZE - 1}",
            path=name)
    if b"\0" in raw:
        raise PathTooLongError(f"{name}: path to bind contains a NUL byte", path=name)
    return raw
