"""Unit behaviours of ProtectedFile on real host files (and MemoryStorage)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from helpers import decode

from pfs import (
    FileClosedError,
    HostFile,
    MemoryStorage,
    PathMismatchError,
    PfsError,
    ProtectedFile,
    ReadOnlyError,
)

KEY = bytes(range(16, 32))


def new_file(path: Path, bound: str = "bound", data: bytes = b"", **kw) -> ProtectedFile:
    pf = ProtectedFile.create(HostFile(path, writable=True, create=True), KEY, bound, **kw)
    if data:
        pf.write(0, data)
    return pf


def reopen(path: Path, bound: str = "bound", *, writable: bool = False, **kw) -> ProtectedFile:
    return ProtectedFile.open(HostFile(path, writable=writable), KEY, bound, writable=writable, **kw)


def test_empty_file_roundtrip(tmp_path: Path):
    path = tmp_path / "e"
    new_file(path).close()
    assert path.stat().st_size == 4096
    with reopen(path) as pf:
        assert pf.size == 0
        assert pf.read(0, 100) == b""
        assert pf.tree_depth is None


@pytest.mark.parametrize("size", [10, 3072, 3073, 10_000, 400_000])
def test_read_past_eof(tmp_path: Path, size: int):
    data = random.Random(size).randbytes(size)
    path = tmp_path / "f"
    new_file(path, data=data).close()
    with reopen(path) as pf:
        assert pf.read(size - 5, 100) == data[-5:]
        assert pf.read(size, 100) == b""
        assert pf.read(size + 5000, 100) == b""
        assert pf.read(0, 0) == b""
        buf = bytearray(b"\xaa" * 50)
        assert pf.readinto(size - 10, buf) == 10
        assert buf[:10] == data[-10:] and buf[10:] == b"\xaa" * 40
        assert pf.readinto(size + 1, bytearray(5)) == 0
        with pytest.raises(ValueError):
            pf.read(-1, 5)


@pytest.mark.parametrize(("first", "gap_to"), [(0, 100), (10, 3000), (100, 5000), (3000, 400_000),
                                               (5000, 9000), (4000, 1_300_000)])
def test_write_past_end_zero_fills(tmp_path: Path, first: int, gap_to: int):
    path = tmp_path / "g"
    head = b"\x11" * first
    with new_file(path, data=head) as pf:
        pf.write(gap_to, b"tail")
        assert pf.size == gap_to + 4
        assert pf.read(0, gap_to + 4) == head + bytes(gap_to - first) + b"tail"
    with reopen(path) as pf:
        assert pf.read(0, gap_to + 4) == head + bytes(gap_to - first) + b"tail"
    assert decode(path.read_bytes(), KEY).plaintext == head + bytes(gap_to - first) + b"tail"


@pytest.mark.parametrize("grow_to", [3072, 3500, 20_000])
@pytest.mark.parametrize("cut", [0, 1, 1000, 3071, 3072, 3073, 5000, 7167, 7168, 9999])
def test_truncate_grow_reads_zeros_after_shrink(tmp_path: Path, cut: int, grow_to: int):
    """Stale bytes left by a shrink (Gramine doesn't zero them) must read back as zeros."""
    if grow_to <= cut:
        grow_to = cut + 4096
    path = tmp_path / "z"
    pattern = bytes((i * 7 + 1) % 251 or 1 for i in range(12_000))
    with new_file(path, data=pattern) as pf:
        pf.truncate(cut)
        assert pf.size == cut
        assert pf.read(0, 20_000) == pattern[:cut]
        pf.truncate(grow_to)
        assert pf.size == grow_to
        expect = pattern[:cut] + bytes(grow_to - cut)
        assert pf.read(0, grow_to + 10) == expect
    with reopen(path) as pf:
        assert pf.read(0, grow_to + 10) == expect


@pytest.mark.parametrize("cut", [100, 3071, 5000])
def test_write_past_end_after_shrink_reads_zeros(tmp_path: Path, cut: int):
    path = tmp_path / "w"
    pattern = b"\xee" * 10_000
    with new_file(path, data=pattern) as pf:
        pf.truncate(cut)
        pf.write(9000, b"X")
        expect = pattern[:cut] + bytes(9000 - cut) + b"X"
        assert pf.read(0, 10_000) == expect
    with reopen(path) as pf:
        assert pf.read(0, 10_000) == expect


def test_shrink_without_reopen_keeps_stale_free_across_cache_eviction(tmp_path: Path):
    path = tmp_path / "c"
    pattern = b"\x5a" * 30_000
    with new_file(path, data=pattern, cache_size=1) as pf:
        pf.truncate(5000)
        pf.read(20_000, 1)  # nothing there: must not resurrect anything
        pf.truncate(30_000)
        assert pf.read(0, 30_000) == pattern[:5000] + bytes(25_000)


def test_truncate_same_size_and_errors(tmp_path: Path):
    path = tmp_path / "s"
    with new_file(path, data=b"abc") as pf:
        pf.truncate(3)
        assert pf.read(0, 10) == b"abc"
        with pytest.raises(ValueError):
            pf.truncate(-1)
        with pytest.raises(ValueError):
            pf.write(-1, b"x")
        assert pf.write(10, b"") == 0
        assert pf.size == 3  # an empty write doesn't extend


def test_read_only_rejects_changes(tmp_path: Path):
    path = tmp_path / "r"
    new_file(path, data=b"hello").close()
    before = path.read_bytes()
    with reopen(path) as pf:
        assert not pf.writable
        for op in (lambda: pf.write(0, b"x"), lambda: pf.truncate(0), lambda: pf.rename("other")):
            with pytest.raises(ReadOnlyError) as info:
                op()
            assert str(path) in str(info.value)
        pf.flush()  # a no-op, not an error
        assert pf.read(0, 5) == b"hello"
    assert path.read_bytes() == before


def test_closed_file_raises(tmp_path: Path):
    path = tmp_path / "c"
    pf = new_file(path, data=b"data")
    pf.close()
    assert pf.closed
    pf.close()  # twice is fine
    for op in (lambda: pf.read(0, 1), lambda: pf.write(0, b"x"), lambda: pf.truncate(0),
               lambda: pf.flush(), lambda: pf.rename("x"), lambda: pf.readinto(0, bytearray(1))):
        with pytest.raises(FileClosedError):
            op()
    with reopen(path) as again:
        assert again.read(0, 10) == b"data"


def test_close_flushes_and_context_manager(tmp_path: Path):
    path = tmp_path / "cm"
    with new_file(path) as pf:
        pf.write(0, b"x" * 5000)
    assert pf.closed
    with reopen(path) as pf:
        assert pf.size == 5000


def test_rename_changes_binding(tmp_path: Path):
    path = tmp_path / "n"
    data = random.Random(1).randbytes(10_000)
    with new_file(path, "old/name", data) as pf:
        pf.rename("new/name")
        assert pf.bound_path == "new/name"
        # rename flushes: the binding on disk changed already
        assert decode(path.read_bytes(), KEY).path == b"new/name"
        pf.write(0, b"Z")
    with pytest.raises(PathMismatchError) as info:
        reopen(path, "old/name")
    assert info.value.found == "new/name" and info.value.expected == "old/name"
    with reopen(path, "new/name") as pf:
        assert pf.read(0, 10_000) == b"Z" + data[1:]
        assert pf.bound_path == "new/name"


def test_flush_then_more_writes(tmp_path: Path):
    path = tmp_path / "fl"
    model = bytearray()
    rng = random.Random(5)
    with new_file(path, cache_size=2) as pf:
        for _ in range(10):
            off = rng.randrange(0, 500_000)
            chunk = rng.randbytes(rng.randrange(1, 10_000))
            pf.write(off, chunk)
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off:off + len(chunk)] = chunk
            pf.flush()
            assert decode(path.read_bytes(), KEY).plaintext == model
    with reopen(path) as pf:
        assert pf.read(0, len(model) + 1) == model


def test_invalid_arguments():
    with pytest.raises(ValueError):
        ProtectedFile.create(MemoryStorage(), b"short", "p")
    with pytest.raises(ValueError):
        ProtectedFile.create(MemoryStorage(), KEY, "p", cache_size=0)


def test_errors_are_oserrors_with_errno(tmp_path: Path):
    path = tmp_path / "o"
    new_file(path, data=b"abc").close()
    with pytest.raises(OSError) as info:
        reopen(path, "wrong")
    assert isinstance(info.value, PfsError)
    assert info.value.errno is not None
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_memory_storage_roundtrip():
    storage = MemoryStorage(name="m")
    with ProtectedFile.create(storage, KEY, "m") as pf:
        pf.write(3000, b"q" * 200)
    with ProtectedFile.open(storage, KEY, "m") as pf:
        assert pf.read(0, 5000) == bytes(3000) + b"q" * 200


@pytest.mark.parametrize("cache_size", [1, 2, 3, 48])
@pytest.mark.parametrize("target", [7168, 396_288, 400_384, 800_000, 3072 + 4096 * 96 * 33 + 10])
@pytest.mark.parametrize("how", ["write", "truncate"])
def test_grow_with_small_cache(cache_size: int, target: int, how: str):
    """Growing evicts and flushes mid-way when the cache is small; nothing may be lost.

    Regression: with cache_size=1, growing an empty file to 400384 bytes (past the root MHT's
    96 data nodes) used to lose MHT node 1's entries at an eviction flush inside _grow, which
    made data node 96 unreadable ("corrupted node 99").
    """
    storage = MemoryStorage(name="m")
    pf = ProtectedFile.create(storage, KEY, "a", cache_size=cache_size)
    pf.flush()
    if how == "write":
        pf.write(target, b"\x01")
        expect = bytes(target) + b"\x01"
    else:
        pf.truncate(target)
        expect = bytes(target)
    pf.close()
    assert decode(bytes(storage.data), KEY).plaintext == expect


def test_minor_version_and_unknown_header_bytes_are_not_checked():
    """Spec: the minor version is never checked (and the header is not authenticated)."""
    storage = MemoryStorage(name="m")
    with ProtectedFile.create(storage, KEY, "a") as pf:
        pf.write(0, b"hello")
    storage.data[9] = 7
    storage.data[4000] ^= 0xFF  # padding after the encrypted part
    with ProtectedFile.open(storage, KEY, "a") as pf:
        assert pf.version == (2, 7)
        assert pf.read(0, 10) == b"hello"


def test_readinto_rejects_negative_offset():
    storage = MemoryStorage(name="m")
    with ProtectedFile.create(storage, KEY, "a") as pf:
        pf.write(0, b"hello")
        with pytest.raises(ValueError):
            pf.readinto(-2, bytearray(4))


@pytest.mark.parametrize("size", [100, 5000, 400_000])
def test_trailing_extra_nodes_are_ignored(tmp_path: Path, size: int):
    """Spec: Gramine ignores trailing extra nodes (its tool doesn't truncate an old output)."""
    data = random.Random(size).randbytes(size)
    path = tmp_path / "t"
    new_file(path, data=data).close()
    with path.open("ab") as f:
        f.write(random.Random(0).randbytes(3 * 4096))
    with reopen(path, writable=True) as pf:
        assert pf.read(0, size + 1) == data
        pf.write(size, b"end")
    with reopen(path) as pf:
        assert pf.read(0, size + 10) == data + b"end"


class PrefetchLog(HostFile):
    """A real host file that also records the read-ahead hints it is given."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.hints: list[tuple[int, int]] = []

    def prefetch(self, offset: int, length: int) -> None:
        self.hints.append((offset, length))
        super().prefetch(offset, length)


def test_sequential_reads_prefetch_ahead_and_random_reads_do_not(tmp_path: Path):
    from pfs.protected_file import PREFETCH_AFTER, PREFETCH_BYTES

    data = random.Random(7).randbytes(24 << 20)
    path = tmp_path / "f"
    new_file(path, data=data).close()
    host = PrefetchLog(path)
    with ProtectedFile.open(host, KEY, "bound") as pf:
        rnd = random.Random(1)
        for _ in range(200):
            off = rnd.randrange(len(data) // 4096) * 4096
            assert pf.read(off, 4096) == data[off:off + 4096]
        assert host.hints == []
        step = 1 << 20
        for off in range(0, len(data), step):
            assert pf.read(off, step) == data[off:off + step]
            covered = max((o + n for o, n in host.hints), default=0)
            ahead = covered - (off + step)  # host bytes asked for beyond what was read (roughly)
            if off + step > PREFETCH_AFTER + step and off + step + PREFETCH_BYTES < path.stat().st_size:
                assert ahead >= PREFETCH_BYTES // 2 - step, (off, host.hints)
        # the hints never overlap: each host byte is asked for once
        spans = sorted(host.hints)
        assert all(a + n <= b for (a, n), (b, _) in itertools.pairwise(spans))
        assert len(host.hints) <= (len(data) // PREFETCH_BYTES + 1) * 2 + 1
