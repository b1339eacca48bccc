"""Decryption never leaves unauthenticated plaintext behind (issue 8, item 12).

AES-GCM's ``decrypt_into`` (cryptography >= 44) writes the plaintext into the caller's buffer
before it checks the tag. Every decryption goes through :func:`pfs.crypto.decrypt_into`, which
zeroes the buffer when the tag fails; these tests look at the very bytes of the buffers passed in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import pfs.stream as stream
from pfs import CorruptedNodeError, MemoryStorage, ProtectedFile
from pfs.crypto import InvalidTag, decrypt_into, open_node, open_sealed, seal
from pfs.layout import DATA_ENTRIES_PER_MHT, IV, NODE_SIZE, data_physical
from pfs.nodebuf import SEALED_SIZE, NodeBuffer

KEY = bytes(range(100, 116))
MARKER = b"PLAINTEXT-MARKER"
ROOT = Path(__file__).resolve().parents[1]


def _sealed_with_bad_tag(plain: bytes, key: bytes = KEY) -> bytes:
    """``plain`` sealed under ``key``, with its tag changed: the ciphertext itself is intact, so
    decrypting it yields exactly ``plain``, and only the tag check fails."""
    ciphertext, tag = seal(key, plain)
    return ciphertext + bytes([tag[0] ^ 1]) + tag[1:]


def test_raw_decrypt_into_leaks_which_is_why_the_helper_exists() -> None:
    """The premise: the primitive itself leaves plaintext in its output on a bad tag."""
    plain = MARKER * (NODE_SIZE // len(MARKER))
    out = bytearray(NODE_SIZE)
    with pytest.raises(InvalidTag):
        AESGCM(KEY).decrypt_into(IV, _sealed_with_bad_tag(plain), None, out)
    assert MARKER in out


@pytest.mark.parametrize("kind", ["bytearray", "memoryview_slice"])
def test_decrypt_into_zeroes_its_output_on_a_bad_tag(kind: str) -> None:
    plain = MARKER * (NODE_SIZE // len(MARKER))
    backing = bytearray(b"\xaa" * (NODE_SIZE + 64))
    out = bytearray(NODE_SIZE) if kind == "bytearray" else memoryview(backing)[32:32 + NODE_SIZE]
    with pytest.raises(InvalidTag):
        decrypt_into(KEY, _sealed_with_bad_tag(plain), out)
    assert bytes(out) == bytes(NODE_SIZE)
    if kind == "memoryview_slice":  # only the output region is touched
        assert backing[:32] == b"\xaa" * 32 and backing[-32:] == b"\xaa" * 32
    # and a good tag still decrypts into the same buffer
    ciphertext, tag = seal(KEY, plain)
    decrypt_into(KEY, ciphertext + tag, out)
    assert bytes(out) == plain


def test_open_node_and_open_sealed_raise_on_a_bad_tag() -> None:
    plain = MARKER * 4
    sealed = _sealed_with_bad_tag(plain)
    with pytest.raises(InvalidTag):
        open_node(KEY, sealed[:-16], sealed[-16:])
    with pytest.raises(InvalidTag):
        open_sealed(KEY, sealed[:-16], sealed[-16:])
    ciphertext, tag = seal(KEY, plain)
    assert open_sealed(KEY, ciphertext, tag) == plain


def test_stream_group_buffer_holds_no_unauthenticated_plaintext() -> None:
    """decrypt_stream's group decryption: the reused plaintext buffer it hands back after a bad
    node holds none of that node's plaintext (before, it kept it until the buffer's next use)."""
    count = 3
    plain = [bytes([65 + i]) * 16 + MARKER * ((NODE_SIZE - 16) // len(MARKER)) for i in range(count)]
    sealed = NodeBuffer(SEALED_SIZE)
    entries = bytearray(DATA_ENTRIES_PER_MHT * 32)
    keys = [bytes([i + 1]) * 16 for i in range(count)]
    for i in range(count):
        ciphertext, tag = seal(keys[i], plain[i])
        sealed.nodes[i][:NODE_SIZE] = ciphertext
        entries[32 * i:32 * i + 16] = keys[i]
        entries[32 * i + 16:32 * i + 32] = tag
    entries[32 * 2 + 16] ^= 1  # the third node's tag is wrong; its ciphertext decrypts fine
    writer = stream._Writer(None, NODE_SIZE, background=False)
    cipher = stream._GroupCipher(writer)
    size = 3072 + count * NODE_SIZE
    result = cipher.decrypt_group(sealed, count * NODE_SIZE, 0, size, entries)
    assert result == -(data_physical(2) + 1)
    buf = writer.free.get()
    assert bytes(buf.nodes[2]) == bytes(NODE_SIZE)
    assert MARKER not in bytes(buf.nodes[2])


@pytest.mark.parametrize("how", ["whole_nodes", "partial_node"])
def test_protected_file_read_leaves_no_plaintext_of_a_bad_node(how: str) -> None:
    """A read through the scatter path (whole nodes decrypted straight into the caller's buffer,
    partial ones through a scratch buffer): the caller's buffer holds no plaintext of the bad node."""
    storage = MemoryStorage(name="mem")
    data = b"".join(bytes([i]) * 8 + MARKER * ((NODE_SIZE - 8) // len(MARKER)) for i in range(6))
    with ProtectedFile.create(storage, KEY, "p") as pf:
        pf.write(0, bytes(3072) + data)
    bad = data_physical(3)
    storage.data[bad * NODE_SIZE + 100] ^= 1
    with ProtectedFile.open(storage, KEY, "p") as pf:
        start = 3072 + 3 * NODE_SIZE + (0 if how == "whole_nodes" else 500)
        buf = bytearray(2 * NODE_SIZE)
        with pytest.raises(CorruptedNodeError) as info:
            pf.readinto(start, buf)
        assert info.value.node == bad
        assert MARKER not in buf


def test_every_decryption_goes_through_the_helper() -> None:
    """No module of the project calls AES-GCM's decryption itself (the one exception is
    pfs/crypto.py's helper); the independent test reader and the benchmarks are not library code."""
    offenders = []
    for folder in ("pfs", "vfs", "libos", "pal", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in ("decrypt", "decrypt_into"):
                    rel = path.relative_to(ROOT).as_posix()
                    if rel != "pfs/crypto.py":
                        offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
