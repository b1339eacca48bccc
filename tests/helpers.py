"""Test helpers: example counts, the vectors location, and an independent reader of the format.

The reader below decodes a protected file with nothing from ``pfs``: it follows
docs/format.md directly (offsets and formulas written out here), with its own metadata-key
derivation (``spec_metadata_key``), using ``cryptography``'s AESGCM and CMAC primitives.
Tests check it against Gramine's own vectors, then use it to check the files that ``pfs`` writes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC

SLOW = os.environ.get("PFSKIT_SLOW", "") not in ("", "0")
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def vectors_path() -> Path:
    """The Gramine vectors set the tests use (chosen in tests/gramine_vectors.py)."""
    import gramine_vectors  # it imports this module's reader

    return gramine_vectors.vectors_path()


def require(condition: object, reason: str) -> None:
    """Skip the test (or module) when ``condition`` is false; under CI=true, fail it instead.

    For what a test needs to prove its claim (the vectors, /dev/fuse, a program or module the
    tests use): a CI run must not pass by skipping what it was meant to check.
    """
    import pytest

    if condition:
        return
    if CI:
        pytest.fail(f"{reason} (CI=true: a missing requirement fails the run)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def examples(ci: int, slow: int | None = None) -> int:
    """A hypothesis example count: ``ci`` normally, more with PFSKIT_SLOW=1."""
    return (slow if slow is not None else ci * 10) if SLOW else ci


# ---------------------------------------------------------------- independent reader

N = 4096
ZERO_IV = bytes(12)


def spec_counts(size: int) -> tuple[int, int, int]:
    """(data nodes, MHT nodes, total nodes) for a plaintext size, per the spec's formulas."""
    if size <= 3072:
        return 0, 0, 1
    ndata = -(-(size - 3072) // 4096)
    nmht = (ndata - 1) // 96 + 1
    return ndata, nmht, 1 + nmht + ndata


def spec_metadata_key(kdk: bytes, nonce: bytes) -> bytes:
    """The metadata key, as the spec's "Cryptography" section defines it: AES-128-CMAC under the
    KDK of the 104-byte KDF input (u32 counter 1, the 64-byte NUL-padded label, the 32-byte
    nonce, u32 output length 128 bits)."""
    assert len(kdk) == 16 and len(nonce) == 32
    label = b"SGX-PROTECTED-FS-METADATA-KEY"
    kdf_input = (1).to_bytes(4, "little") + label + bytes(64 - len(label)) + nonce + (128).to_bytes(4, "little")
    assert len(kdf_input) == 104
    mac = CMAC(algorithms.AES(kdk))
    mac.update(kdf_input)
    return mac.finalize()


def gcm_open(key: bytes, ciphertext: bytes, tag: bytes) -> bytes:
    return AESGCM(key).decrypt(ZERO_IV, ciphertext + tag, None)


@dataclass
class Decoded:
    file_id: bytes
    major: int
    minor: int
    nonce: bytes
    meta_tag: bytes
    flags: int
    path: bytes
    path_field: bytes
    size: int
    root_key: bytes
    root_tag: bytes
    plaintext: bytes
    # physical node -> (key, tag) as stored in its parent (root MHT: in the metadata)
    node_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    mht_plain: dict[int, bytes] = field(default_factory=dict)  # MHT index -> plaintext


def decode(raw: bytes, kdk: bytes) -> Decoded:
    """Decode and fully verify a protected file (v2 or v1) held in ``raw``."""
    assert len(raw) % N == 0 and raw, "size must be a positive multiple of 4096"
    file_id = raw[0:8]
    major, minor = raw[8], raw[9]
    nonce = raw[10:42]
    tag = raw[42:58]
    if major == 2:
        flags, enc = raw[58], raw[59:59 + 3884]
    elif major == 1:
        flags, enc = 0, raw[58:58 + 3884]
    else:
        raise AssertionError(f"unexpected major version {major}")
    meta = gcm_open(spec_metadata_key(kdk, nonce), enc, tag)
    path_field = meta[0:772]
    (size,) = struct.unpack("<Q", meta[772:780])
    root_key, root_tag = meta[780:796], meta[796:812]
    data0 = meta[812:812 + 3072]
    ndata, nmht, _ = spec_counts(size)
    out = Decoded(file_id, major, minor, nonce, tag, flags, path_field.split(b"\0")[0], path_field,
                  size, root_key, root_tag, b"")
    for m in range(nmht):  # breadth-first: a parent always comes before its children
        phys = 1 + 97 * m
        if m == 0:
            key, ntag = root_key, root_tag
        else:
            parent = out.mht_plain[(m - 1) // 32]
            off = 3072 + 32 * ((m - 1) % 32)
            key, ntag = parent[off:off + 16], parent[off + 16:off + 32]
        out.node_keys[phys] = (key, ntag)
        out.mht_plain[m] = gcm_open(key, raw[phys * N:(phys + 1) * N], ntag)
    chunks = [data0]
    for d in range(ndata):
        m = d // 96
        phys = d + 2 + m
        off = 32 * (d % 96)
        key, ntag = out.mht_plain[m][off:off + 16], out.mht_plain[m][off + 16:off + 32]
        out.node_keys[phys] = (key, ntag)
        chunks.append(gcm_open(key, raw[phys * N:(phys + 1) * N], ntag))
    out.plaintext = b"".join(chunks)[:size]
    return out


def nodes_of(raw: bytes) -> list[bytes]:
    return [raw[i:i + N] for i in range(0, len(raw), N)]
