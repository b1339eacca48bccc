"""Files that pfs writes: exact on-disk layout, checked with the independent reader in helpers.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from helpers import decode, examples, gcm_open, nodes_of, spec_counts, vectors_path
from hypothesis import given, settings
from hypothesis import strategies as st

from pfs import HostFile, MemoryStorage, PathTooLongError, ProtectedFile
from pfs import layout as L

KEY = bytes(range(16))


def _vectors() -> list[dict]:
    path = vectors_path() / "MANIFEST.json"
    return json.loads(path.read_text())["vectors"] if path.is_file() else []


VECTORS = _vectors()


def create(path: Path, bound: str, plain: bytes, *, key: bytes = KEY, chunks: random.Random | None = None,
           cache_size: int = 48) -> None:
    pf = ProtectedFile.create(HostFile(path, writable=True, create=True), key, bound, cache_size=cache_size)
    if chunks is None:
        pf.write(0, plain)
    else:
        pos = 0
        while pos < len(plain):
            n = chunks.choice([1, 100, 3071, 4096, 4097, chunks.randrange(1, 50_000)])
            assert pf.write(pos, plain[pos:pos + n]) == len(plain[pos:pos + n])
            pos += n
    pf.close()


def check_fresh_layout(raw: bytes, key: bytes, bound: str, plain: bytes) -> None:
    """Everything the spec says about a freshly written file."""
    size = len(plain)
    ndata, nmht, total = spec_counts(size)
    assert len(raw) == total * 4096
    dec = decode(raw, key)
    assert dec.file_id == b"GRAFS_PF"
    assert (dec.major, dec.minor, dec.flags) == (2, 0, 0)
    assert raw[3943:4096] == bytes(153)  # padding after the encrypted part
    assert dec.path == bound.encode()
    assert dec.path_field == bound.encode().ljust(772, b"\0")
    assert dec.size == size
    assert dec.plaintext == plain
    if size <= 3072:
        assert dec.root_key == bytes(16) and dec.root_tag == bytes(16)
    else:
        assert dec.root_key != bytes(16) and dec.root_tag != bytes(16)
        # unused entries of the last MHT node are zero
        last = nmht - 1
        used = ndata - 96 * last
        assert dec.mht_plain[last][32 * used:3072] == bytes(3072 - 32 * used)
        for m, mplain in dec.mht_plain.items():
            children = [c for c in range(1, nmht) if (c - 1) // 32 == m]
            first_unused = 3072 + 32 * len(children)
            assert mplain[first_unused:] == bytes(4096 - first_unused), m
        # the tail of the last data node is zero
        d = ndata - 1
        phys = d + 2 + d // 96
        key_d, tag_d = dec.node_keys[phys]
        last_plain = gcm_open(key_d, raw[phys * 4096:(phys + 1) * 4096], tag_d)
        used_bytes = size - (3072 + 4096 * d)
        assert last_plain[used_bytes:] == bytes(4096 - used_bytes)
    # every key is distinct (each key encrypts exactly one node)
    keys = [k for k, _ in dec.node_keys.values()]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
@pytest.mark.parametrize("mode", ["one_write", "random_chunks"])
def test_written_file_matches_reference_layout(tmp_path: Path, vectors_dir: Path, vector: dict, mode: str):
    plain = (vectors_dir / vector["plaintext_file"]).read_bytes()
    path = tmp_path / "out"
    bound = vector["embedded_path"]
    create(path, bound, plain, chunks=None if mode == "one_write" else random.Random(vector["name"]))
    raw = path.read_bytes()
    assert len(raw) == vector["ciphertext_size"]
    check_fresh_layout(raw, KEY, bound, plain)
    path.unlink()


def test_written_with_reference_key_reads_like_reference(tmp_path: Path, vectors_dir: Path, wrap_key: bytes):
    """Same key and path as the reference: only nonces/keys differ, so the same reader accepts both."""
    plain = (vectors_dir / "plain/size_7169").read_bytes()
    path = tmp_path / "x"
    create(path, "enc/size_7169", plain, key=wrap_key)
    ours, ref = decode(path.read_bytes(), wrap_key), decode((vectors_dir / "enc/size_7169").read_bytes(), wrap_key)
    assert (ours.plaintext, ours.path_field, ours.size) == (ref.plaintext, ref.path_field, ref.size)
    assert ours.nonce != ref.nonce


@pytest.mark.parametrize("size", [0, 1, 3071, 3072, 3073, 7168, 7169, 396288, 396289, 400384, 400385])
@pytest.mark.parametrize("cache_size", [1, 48])
def test_sizes_and_cache_sizes(size: int, cache_size: int):
    plain = random.Random(size).randbytes(size)
    storage = MemoryStorage(name="mem")
    pf = ProtectedFile.create(storage, KEY, "some/path", cache_size=cache_size)
    pf.write(0, plain)
    pf.close()
    check_fresh_layout(bytes(storage.data), KEY, "some/path", plain)


def tree_keys(raw: bytes) -> dict[int, bytes]:
    return {phys: key for phys, (key, _tag) in decode(raw, KEY).node_keys.items()}


def test_no_key_or_nonce_reuse_across_flushes():
    rng = random.Random(7)
    storage = MemoryStorage(name="mem")
    pf = ProtectedFile.create(storage, KEY, "k", cache_size=8)
    pf.write(0, rng.randbytes(900_000))
    pf.flush()
    seen_keys = set(tree_keys(bytes(storage.data)).values())
    seen_nonces = {decode(bytes(storage.data), KEY).nonce}
    assert len(seen_keys) == len(tree_keys(bytes(storage.data)))
    before = bytes(storage.data)
    for _round in range(6):
        for _ in range(rng.randrange(1, 6)):
            pf.write(rng.randrange(0, pf.size + 10_000), rng.randbytes(rng.randrange(1, 9000)))
        pf.flush()
        after = bytes(storage.data)
        old_keys, new_keys = tree_keys(before), tree_keys(after)
        old_nodes, new_nodes = nodes_of(before), nodes_of(after)
        nonce = decode(after, KEY).nonce
        assert nonce not in seen_nonces
        seen_nonces.add(nonce)
        for phys, key in new_keys.items():
            rewritten = phys >= len(old_nodes) or old_nodes[phys] != new_nodes[phys]
            if rewritten:
                assert key not in seen_keys, f"node {phys} re-encrypted under a key used before"
                seen_keys.add(key)
            else:
                assert key == old_keys[phys]
        before = after
    pf.close()


def test_flush_rewrites_only_the_changed_path(tmp_path: Path):
    size = 2 * 1024 * 1024
    plain = bytearray(random.Random(2).randbytes(size))
    path = tmp_path / "two_mb"
    create(path, "two_mb", bytes(plain))
    before = nodes_of(path.read_bytes())
    offset = size // 2
    with ProtectedFile.open(HostFile(path, writable=True), KEY, "two_mb", writable=True) as pf:
        pf.write(offset, bytes([plain[offset] ^ 0xFF]))
    plain[offset] ^= 0xFF
    after = nodes_of(path.read_bytes())
    assert len(after) == len(before)
    changed = {i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b}
    d = (offset - 3072) // 4096
    m = d // 96
    chain = {0, d + 2 + m}
    while True:
        chain.add(1 + 97 * m)
        if m == 0:
            break
        m = (m - 1) // 32
    assert changed == chain
    assert decode(b"".join(after), KEY).plaintext == plain


def test_unchanged_flush_writes_nothing(tmp_path: Path):
    path = tmp_path / "f"
    create(path, "f", random.Random(3).randbytes(50_000))
    before = path.read_bytes()
    with ProtectedFile.open(HostFile(path, writable=True), KEY, "f", writable=True) as pf:
        pf.read(0, 50_000)
        pf.flush()
    assert path.read_bytes() == before


def expected_disk_size(size: int) -> int:
    """Spec: 4096 if size <= 3072, else (physical node of byte size-1) + 1 nodes."""
    if size <= 3072:
        return 4096
    d = (size - 1 - 3072) // 4096
    return (d + 2 + d // 96 + 1) * 4096


@pytest.mark.parametrize("start", [400_384, 1_200_000])
@pytest.mark.parametrize("new_size", [0, 1, 3072, 3073, 7168, 7169, 396288, 396289, 399999])
def test_truncate_shrinks_host_file(tmp_path: Path, start: int, new_size: int):
    plain = random.Random(start).randbytes(start)
    path = tmp_path / "t"
    create(path, "t", plain)
    with ProtectedFile.open(HostFile(path, writable=True), KEY, "t", writable=True) as pf:
        pf.truncate(new_size)
        assert path.stat().st_size == expected_disk_size(new_size)
    assert path.stat().st_size == expected_disk_size(new_size) == spec_counts(new_size)[2] * 4096
    dec = decode(path.read_bytes(), KEY)
    assert dec.size == new_size
    assert dec.plaintext == plain[:new_size]
    if new_size <= 3072:
        assert dec.root_key == bytes(16) and dec.root_tag == bytes(16)


def test_path_field_limits(tmp_path: Path):
    ok = "p" * 771
    storage = MemoryStorage(name="mem")
    with ProtectedFile.create(storage, KEY, ok) as pf:
        pf.write(0, b"x")
    assert decode(bytes(storage.data), KEY).path == ok.encode()
    with ProtectedFile.open(storage, KEY, ok) as pf:
        assert pf.bound_path == ok
    with pytest.raises(PathTooLongError):
        ProtectedFile.create(MemoryStorage(), KEY, "p" * 772)
    with pytest.raises(PathTooLongError):
        ProtectedFile.create(MemoryStorage(), KEY, "é" * 386)  # 772 bytes in UTF-8
    with ProtectedFile.open(storage, KEY, ok, writable=True) as pf, pytest.raises(PathTooLongError):
        pf.rename("q" * 800)
    # the failed rename changed nothing
    with ProtectedFile.open(storage, KEY, ok) as pf:
        assert pf.read(0, 10) == b"x"


def test_non_ascii_path_is_stored_as_utf8():
    storage = MemoryStorage(name="mem")
    ProtectedFile.create(storage, KEY, "dir/ünïcode").close()
    assert decode(bytes(storage.data), KEY).path == "dir/ünïcode".encode()


# ---------------------------------------------------------------- pfs.layout against the spec

@settings(max_examples=examples(200, 3000))
@given(st.integers(0, 2**40))
def test_layout_counts_against_spec(size: int):
    ndata, nmht, total = spec_counts(size)
    assert (L.data_node_count(size), L.mht_node_count(size), L.node_count(size)) == (ndata, nmht, total)


@settings(max_examples=examples(200, 3000))
@given(st.integers(0, 10**7))
def test_layout_node_numbers_against_spec(d: int):
    m = d // 96
    assert L.data_physical(d) == d + 2 + m
    assert L.mht_physical(m) == 1 + 97 * m
    assert L.physical_to_logical(d + 2 + m) == ("data", d)
    assert L.physical_to_logical(1 + 97 * m) == ("mht", m)
    assert L.data_entry_offset(d) == 32 * (d % 96)
    start = 3072 + 4096 * d
    assert L.data_node_offset(d) == start
    assert L.data_node_of(start) == L.data_node_of(start + 4095) == d
    assert L.plaintext_range_of_node(d + 2 + m) == (start, start + 4096)
    if m >= 1:
        assert L.mht_parent(m) == (m - 1) // 32
        assert L.mht_entry_offset_in_parent(m) == 3072 + 32 * ((m - 1) % 32)
        assert L.mht_depth(m) == L.mht_depth((m - 1) // 32) + 1
    # physical nodes are a bijection onto 0..: no two logical nodes share a number
    assert L.physical_to_logical(0) == ("meta", 0)


def test_layout_is_a_bijection_for_small_files():
    for size in [3073, 396288, 396289, 2_000_000]:
        ndata, nmht, total = spec_counts(size)
        phys = {L.data_physical(d) for d in range(ndata)} | {L.mht_physical(m) for m in range(nmht)}
        assert phys == set(range(1, total))
