"""The whole-file fast paths (``pfs.stream``): same format as the random-access path, every job count."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from helpers import decode

import pfs.stream as stream
from pal import HostFile
from pfs import CorruptedNodeError, PathMismatchError, ProtectedFile, TruncatedFileError, WrongKeyError
from pfs.layout import NODE_SIZE, data_physical, mht_physical, node_count, plaintext_range_of_node

KEY = bytes(range(16))
# 0 and 1 node groups, a full root MHT, depth 2 (MHT 33 is a child of MHT 1), and 67 MHT nodes (children of MHT 2)
SIZES = [0, 1, 3072, 3073, 7169, 396288, 396289, 400384, 33 * 96 * 4096 + 3072 + 5, 66 * 96 * 4096 + 3072 + 1]


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 5 groups, so that files of a few MB cross many batch and map-half boundaries."""
    monkeypatch.setattr(stream, "BATCH_GROUPS", 5)
    monkeypatch.setattr(stream, "MIN_PARALLEL_GROUPS", 1)


def _plaintext(size: int) -> bytes:
    rnd = random.Random(size)
    return rnd.randbytes(size)


def _encrypt(tmp_path: Path, data: bytes, jobs: int, bound: str = "/data/f") -> Path:
    src, dst = tmp_path / "plain", tmp_path / f"enc{jobs}"
    src.write_bytes(data)
    with HostFile(src) as s, HostFile(dst, writable=True, create=True) as d:
        assert stream.encrypt_stream(s, d, KEY, bound, jobs=jobs) == len(data)
    return dst


@pytest.mark.parametrize("jobs", [1, 3])
@pytest.mark.parametrize("size", SIZES[:-1])
def test_encrypt_matches_format_and_decrypts(tmp_path: Path, size: int, jobs: int) -> None:
    data = _plaintext(size)
    enc = _encrypt(tmp_path, data, jobs)
    raw = enc.read_bytes()
    assert len(raw) == node_count(size) * NODE_SIZE
    decoded = decode(raw, KEY)  # independent reader from the spec
    assert decoded.plaintext == data and decoded.path == b"/data/f" and decoded.flags == 0
    keys = [k for k, _ in decoded.node_keys.values()]
    assert len(set(keys)) == len(keys), "a node key was used twice"
    with ProtectedFile.open(HostFile(enc), KEY, "/data/f") as pf:
        assert pf.read(0, size + 1) == data
    for djobs in (1, 2):
        out = tmp_path / f"out{djobs}"
        with HostFile(enc) as s, HostFile(out, writable=True, create=True) as d:
            assert stream.decrypt_stream(s, d, KEY, "/data/f", jobs=djobs) == size
        assert out.read_bytes() == data


@pytest.mark.parametrize("jobs", [1, 2])
def test_depth_two_tree(tmp_path: Path, jobs: int) -> None:
    size = SIZES[-1]
    data = _plaintext(size)
    enc = _encrypt(tmp_path, data, jobs)
    assert decode(enc.read_bytes(), KEY).plaintext == data
    with HostFile(enc) as s:
        assert stream.decrypt_stream(s, None, KEY, "/data/f", jobs=3 - jobs) == size


class RecordingFile(HostFile):
    """A real host file that also keeps a copy of every write made to it in this process."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.writes: list[tuple[int, bytes]] = []

    def write_at(self, offset, data) -> None:
        self.writes.append((offset, bytes(data)))
        super().write_at(offset, data)

    def writev_at(self, offset, buffers) -> None:
        self.writes.append((offset, b"".join(bytes(b) for b in buffers)))
        super().writev_at(offset, buffers)


CORRUPT_SIZE = 40 * 96 * 4096 + 3072 + 100  # 41 MHT nodes: children of the root and of MHT 1
CORRUPT_NODES = {"data_first": data_physical(0), "data_late": data_physical(37 * 96 + 5),
                 "mht_child": mht_physical(34), "mht_root": mht_physical(0)}


def _corrupt(tmp_path: Path, node: str) -> tuple[Path, int]:
    enc = _encrypt(tmp_path, _plaintext(CORRUPT_SIZE), 1)
    physical = CORRUPT_NODES[node]
    raw = bytearray(enc.read_bytes())
    raw[physical * NODE_SIZE + 7] ^= 1
    enc.write_bytes(raw)
    return enc, physical


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("node", list(CORRUPT_NODES))
def test_corruption_is_reported_with_its_node_and_no_plaintext(tmp_path: Path, jobs: int, node: str) -> None:
    """A real destination: after the error it is empty (it held authenticated plaintext of the
    groups before the bad node, which decrypt_stream removes), for every job count; untouched
    when the error comes from the checks made before any output."""
    enc, physical = _corrupt(tmp_path, node)
    out = tmp_path / "out"
    old = b"old content of the destination"
    out.write_bytes(old)
    with HostFile(enc) as s, HostFile(out, writable=True) as d, pytest.raises(CorruptedNodeError) as err:
        stream.decrypt_stream(s, d, KEY, "/data/f", jobs=jobs)
    assert err.value.node == physical
    assert f"node {physical}" in str(err.value)
    # the root MHT node is checked when the file is opened, before any output
    assert out.read_bytes() == (old if node == "mht_root" else b"")
    with HostFile(enc) as s, pytest.raises(CorruptedNodeError):  # verify only: same error
        stream.decrypt_stream(s, None, KEY, "/data/f", jobs=jobs)


@pytest.mark.parametrize("node", ["data_late", "mht_child"])
def test_only_authenticated_plaintext_is_ever_written(tmp_path: Path, node: str) -> None:
    """Every byte written to the destination, while it ran, was authenticated plaintext: equal
    to the file's real plaintext at its offset (the bad node decrypts to something else: a
    flipped ciphertext bit flips a plaintext bit), and the bad node's bytes were never written."""
    enc, physical = _corrupt(tmp_path, node)
    plain = _plaintext(CORRUPT_SIZE)
    out = tmp_path / "out"
    with HostFile(enc) as s, RecordingFile(out, writable=True, create=True) as d:
        with pytest.raises(CorruptedNodeError):
            stream.decrypt_stream(s, d, KEY, "/data/f", jobs=1)
        writes = d.writes
    assert writes, "nothing was written before the bad node: the test would prove nothing"
    lo, hi = plaintext_range_of_node(physical)
    for offset, data in writes:
        assert data == plain[offset:offset + len(data)], f"write at {offset} is not the real plaintext"
        assert offset + len(data) <= lo or offset >= hi, f"write at {offset} covers the bad node"
    assert out.stat().st_size == 0


def test_checks_before_any_output(tmp_path: Path) -> None:
    enc = _encrypt(tmp_path, _plaintext(500_000), 1)
    out = tmp_path / "out"
    out.write_bytes(b"keep me")  # checks that fail leave the destination untouched
    with HostFile(enc) as s, HostFile(out, writable=True) as d:
        with pytest.raises(PathMismatchError):
            stream.decrypt_stream(s, d, KEY, "/elsewhere", jobs=1)
        with pytest.raises(WrongKeyError):
            stream.decrypt_stream(s, d, bytes(16), None, jobs=2)
    assert out.read_bytes() == b"keep me"
    with open(enc, "r+b") as f:
        f.truncate(os.path.getsize(enc) - NODE_SIZE)
    with HostFile(enc) as s, pytest.raises(TruncatedFileError):
        stream.decrypt_stream(s, None, KEY, "/data/f")
