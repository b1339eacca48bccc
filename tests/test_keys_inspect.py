"""pfs.keys (key files) and pfs.inspect (header and full info)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from pal import HostFile
from pfs import KeyFormatError, MemoryStorage, NotEncryptedError, PathMismatchError, ProtectedFile, WrongKeyError
from pfs.inspect import implied_plaintext_range, read_full_info, read_header_info
from pfs.keys import KeyFileError, KeyFileExistsError, generate_key_file, load_key, parse_key_hex
from pfs.layout import FLAG_UPDATE_PENDING, NODE_SIZE, OFF_FLAGS, node_count

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


# ---------------------------------------------------------------------- keys

@pytest.mark.parametrize("content", [
    KEY,
    KEY.hex().encode(),
    KEY.hex().encode() + b"\n",
    KEY.hex().upper().encode() + b"\r\n",
    KEY.hex().encode() + b"  \n",
])
def test_load_key_accepts(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k"
    path.write_bytes(content)
    assert load_key(path) == KEY


@pytest.mark.parametrize(("content", "found"), [
    (b"", "holds 0 bytes"),
    (KEY[:15], "holds 15 bytes"),
    (KEY + b"\n", "holds 17 bytes"),
    (KEY.hex()[:31].encode() + b"\n", "holds 32 bytes"),
    (b"g" * 32, "not all hex digits"),
    (b" " + KEY.hex().encode(), "holds 33 bytes"),
    (KEY.hex().encode() + b"\nextra", "holds 38 bytes"),
    (os.urandom(4096), "more than 256 bytes"),
])
def test_load_key_rejects_without_leaking(tmp_path: Path, content: bytes, found: str) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(KeyFormatError) as info:
        load_key(path, what="wrap key")
    message = str(info.value)
    assert f"wrap key file '{path}'" in message and found in message
    assert "expected 16 raw bytes or 32 hex characters" in message
    assert info.value.errno == errno.EINVAL
    assert KEY.hex() not in message.lower()


def test_load_key_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as info:
        load_key(tmp_path / "none")
    assert info.value.errno == errno.ENOENT and "does not exist" in str(info.value)
    assert isinstance(info.value, OSError)
    with pytest.raises(KeyFileError) as info:
        load_key(tmp_path)
    assert info.value.errno == errno.EISDIR and "is a folder" in str(info.value)


def test_parse_key_hex() -> None:
    assert parse_key_hex(" " + KEY.hex() + "\n") == KEY
    for bad in ("", KEY.hex()[:-1], KEY.hex() + "0", "z" * 32):
        with pytest.raises(KeyFormatError) as info:
            parse_key_hex(bad)
        assert bad.strip() == "" or bad not in str(info.value)


def test_generate_key_file(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    old_umask = os.umask(0)  # even a permissive umask gives 0600
    try:
        generate_key_file(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = load_key(path)
    with pytest.raises(KeyFileExistsError) as info:
        generate_key_file(path)
    assert info.value.errno == errno.EEXIST and "--force" in str(info.value)
    assert load_key(path) == first
    generate_key_file(path, force=True)
    assert load_key(path) != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["new.key"]
    with pytest.raises(KeyFileError) as info:
        generate_key_file(tmp_path / "missing" / "k")
    assert info.value.errno == errno.ENOENT


# ---------------------------------------------------------------------- inspect

def _encrypted(size: int, bound: str = "x/y") -> MemoryStorage:
    storage = MemoryStorage(name="mem")
    pf = ProtectedFile.create(storage, KEY, bound)
    pf.write(0, os.urandom(size))
    pf.flush()
    data = bytes(storage.data)
    pf.close()
    return MemoryStorage(data, name="mem")


@pytest.mark.parametrize("size", [0, 3072, 3073, 7169, 96 * 4096 + 3072, 96 * 4096 + 3073, 33 * 96 * 4096])
def test_full_info(size: int) -> None:
    storage = _encrypted(size)
    info = read_full_info(storage, KEY, "x/y")
    assert info["plaintext_size"] == size and info["bound_path"] == "x/y"
    assert info["disk_nodes"] == node_count(size) == info["nodes_needed"]
    assert info["trailing_nodes"] == 0
    lo, hi = info["implied_plaintext_size"]
    assert lo <= size <= hi
    assert info["format_version"] == "2.0" and info["update_pending"] is False
    assert info["data_nodes"] + info["mht_nodes"] + 1 == info["disk_nodes"]
    with pytest.raises(WrongKeyError):
        read_full_info(storage, bytes(16))
    with pytest.raises(PathMismatchError):
        read_full_info(storage, KEY, "other")


def test_header_info_without_key_flags_and_odd_sizes() -> None:
    storage = _encrypted(5000)
    data = bytearray(storage.data)
    data[OFF_FLAGS] |= FLAG_UPDATE_PENDING
    info = read_header_info(MemoryStorage(data, name="m"))
    assert info["update_pending"] is True and info["flags"] == 1
    info = read_header_info(MemoryStorage(bytes(data) + bytes(NODE_SIZE), name="m"))  # 4 nodes
    assert info["disk_nodes"] == 4 and info["implied_plaintext_size"] == [7169, 11264]
    info = read_header_info(MemoryStorage(bytes(data) + b"\0", name="m"))
    assert info["whole_nodes"] is False and "not a multiple" in info["node_count_note"]
    info = read_header_info(MemoryStorage(bytes(data[:2 * NODE_SIZE]), name="m"))
    assert info["implied_plaintext_size"] is None and "truncated" in info["node_count_note"]
    with pytest.raises(NotEncryptedError):
        read_header_info(MemoryStorage(b"hello", name="m"))
    with pytest.raises(NotEncryptedError):
        read_header_info(MemoryStorage(bytes(NODE_SIZE), name="m"))


def test_implied_range_inverts_node_count() -> None:
    seen = 0
    for nodes in range(1, 7000):
        r = implied_plaintext_range(nodes)
        if r is None:
            continue
        seen += 1
        lo, hi = r
        assert node_count(lo) == nodes == node_count(hi)
        assert node_count(hi + 1) != nodes
        assert lo == 0 or node_count(lo - 1) != nodes
    assert seen > 6800


def test_v1_vector_header(vectors_dir: Path) -> None:
    with HostFile(vectors_dir / "enc_v1" / "size_3073") as storage:
        info = read_full_info(storage, load_key(vectors_dir / "wrap_key.bin"), "enc_v1/size_3073")
    assert info["format_version"] == "1.0" and info["plaintext_size"] == 3073
