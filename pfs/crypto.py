"""Cryptographic primitives of the format: metadata-key derivation and node sealing."""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC

from pal import random_bytes

from .layout import IV, KEY_SIZE, MAC_SIZE, NONCE_SIZE

METADATA_KEY_LABEL = b"SGX-PROTECTED-FS-METADATA-KEY"
_LABEL_FIELD = 64

__all__ = [
    "InvalidTag",
    "decrypt_into",
    "derive_metadata_key",
    "new_key",
    "new_nonce",
    "seal",
    "seal_node",
    "open_node",
    "open_sealed",
]


def derive_metadata_key(kdk: bytes, nonce: bytes) -> bytes:
    """AES-128-CMAC counter-mode KDF (NIST SP 800-108) of the metadata key from the wrap key."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("nonce must be 32 bytes")
    kdf_input = (
        struct.pack("<I", 1)
        + METADATA_KEY_LABEL.ljust(_LABEL_FIELD, b"\0")
        + nonce
        + struct.pack("<I", 128)
    )
    mac = CMAC(algorithms.AES(kdk))
    mac.update(kdf_input)
    return mac.finalize()


def new_key() -> bytes:
    """A fresh random 16-byte node key (never reused: the GCM IV is always zero)."""
    return random_bytes(KEY_SIZE)


def new_nonce() -> bytes:
    """A fresh random 32-byte metadata-key nonce."""
    return random_bytes(NONCE_SIZE)


def seal(key: bytes, plaintext: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
    """Encrypt ``plaintext`` under ``key`` with the zero IV; return (ciphertext, tag)."""
    sealed = AESGCM(key).encrypt(IV, plaintext, None)
    return sealed[:-MAC_SIZE], sealed[-MAC_SIZE:]


def seal_node(key: bytes, plaintext: bytes | bytearray | memoryview) -> tuple[memoryview, bytes]:
    """Encrypt one node into a fresh buffer: (ciphertext view, tag) without extra copies."""
    out = bytearray(len(plaintext) + MAC_SIZE)
    AESGCM(key).encrypt_into(IV, plaintext, None, out)
    view = memoryview(out)
    return view[:-MAC_SIZE], bytes(view[-MAC_SIZE:])


def decrypt_into(key: bytes | bytearray | memoryview, sealed: bytes | bytearray | memoryview,
                 out: bytearray | memoryview) -> None:
    """Decrypt and authenticate ``sealed`` (ciphertext followed by its 16-byte tag) under ``key``
    into ``out`` (exactly the ciphertext's length); raise InvalidTag on failure.

    Every decryption of the code base goes through here. AES-GCM's ``decrypt_into`` writes the
    plaintext before it checks the tag, so on failure ``out`` holds unauthenticated plaintext:
    it is zeroed before the error is raised, so no caller can ever see or keep those bytes.
    """
    try:
        AESGCM(bytes(key)).decrypt_into(IV, sealed, None, out)
    except InvalidTag:
        view = memoryview(out).cast("B")
        view[:] = bytes(len(view))
        raise


def open_node(key: bytes | bytearray | memoryview, ciphertext: bytes | memoryview,
              tag: bytes | bytearray | memoryview) -> bytearray:
    """Decrypt and authenticate one node into a new ``bytearray``; raise InvalidTag on failure."""
    out = bytearray(len(ciphertext))
    decrypt_into(key, b"".join((ciphertext, tag)), out)
    return out


def open_sealed(key: bytes | bytearray | memoryview, ciphertext: bytes | memoryview,
                tag: bytes | bytearray | memoryview) -> bytes:
    """Decrypt and authenticate ``ciphertext`` + ``tag``; raise InvalidTag on failure."""
    return bytes(open_node(key, ciphertext, tag))
