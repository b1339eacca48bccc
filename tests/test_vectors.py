"""Gramine's reference vectors: every file decrypts byte-exactly, with the right metadata."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from functools import lru_cache
from pathlib import Path

import pytest
from helpers import decode, examples, vectors_path
from hypothesis import given, settings
from hypothesis import strategies as st

from pfs import HostFile, PathMismatchError, ProtectedFile, WrongKeyError
from pfs.layout import data_node_count, mht_node_count, node_count


def _entries(kind: str) -> list[dict]:
    path = vectors_path() / "MANIFEST.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text())[kind]


V2 = _entries("vectors")
V1 = _entries("v1_vectors")
ALL = [pytest.param(v, 2, id="enc/" + v["name"]) for v in V2] + [
    pytest.param(v, 1, id="enc_v1/" + v["name"]) for v in V1]


def read_all(pf: ProtectedFile, chunk: int = 65536) -> bytes:
    out = bytearray()
    while True:
        piece = pf.read(len(out), chunk)
        if not piece:
            return bytes(out)
        out += piece


def test_manifest_covers_every_file(vectors_dir: Path, manifest: dict):
    on_disk = {f"enc/{p.name}" for p in (vectors_dir / "enc").iterdir()}
    on_disk |= {f"enc_v1/{p.name}" for p in (vectors_dir / "enc_v1").iterdir()}
    listed = {v["encrypted_file"] for v in manifest["vectors"] + manifest["v1_vectors"]}
    assert on_disk == listed
    assert len(manifest["vectors"]) >= 16 and len(manifest["v1_vectors"]) >= 4


@pytest.mark.parametrize(("vector", "major"), ALL)
def test_vector_decrypts(vectors_dir: Path, wrap_key: bytes, vector: dict, major: int):
    path = vectors_dir / vector["encrypted_file"]
    plain = (vectors_dir / vector["plaintext_file"]).read_bytes()
    assert hashlib.sha256(plain).hexdigest() == vector["plaintext_sha256"]
    assert path.stat().st_size == vector["ciphertext_size"]
    with ProtectedFile.open(HostFile(path), wrap_key, vector["embedded_path"]) as pf:
        assert pf.version == (major, 0)
        assert pf.size == vector["plaintext_size"] == len(plain)
        assert pf.bound_path == vector["embedded_path"]
        assert not pf.writable
        data = read_all(pf)
        assert hashlib.sha256(data).hexdigest() == vector["plaintext_sha256"]
        assert data == plain
        # one read of everything, and reads past the end, too
        assert pf.read(0, len(plain) + 10) == plain
        assert pf.read(len(plain), 10) == b""


@pytest.mark.parametrize("vector", V2, ids=[v["name"] for v in V2])
def test_layout_counts_match_manifest(vector: dict):
    size = vector["plaintext_size"]
    assert data_node_count(size) == vector["num_data_nodes"]
    assert mht_node_count(size) == vector["num_mht_nodes"]
    assert node_count(size) == vector["num_nodes"]
    assert node_count(size) * 4096 == vector["ciphertext_size"]


@pytest.mark.parametrize("vector", V2, ids=[v["name"] for v in V2])
def test_tree_depth_matches_manifest(vectors_dir: Path, wrap_key: bytes, vector: dict):
    with ProtectedFile.open(HostFile(vectors_dir / vector["encrypted_file"]), wrap_key) as pf:
        assert pf.tree_depth == vector["max_mht_depth"]


@pytest.mark.parametrize("vector", V2 + V1, ids=[v["encrypted_file"] for v in V2 + V1])
def test_random_slices(vectors_dir: Path, wrap_key: bytes, vector: dict):
    """Seeded random reads, including ones that straddle node boundaries and the end."""
    plain = (vectors_dir / vector["plaintext_file"]).read_bytes()
    rng = random.Random(vector["name"])
    size = len(plain)
    with ProtectedFile.open(HostFile(vectors_dir / vector["encrypted_file"]), wrap_key,
                            vector["embedded_path"], cache_size=3) as pf:
        for _ in range(40):
            kind = rng.random()
            if kind < 0.3 and size > 3072:  # around a node boundary
                boundary = 3072 + 4096 * rng.randrange(0, (size - 3072) // 4096 + 1)
                offset = max(0, boundary - rng.randrange(0, 100))
            else:
                offset = rng.randrange(0, size + 200)
            length = rng.choice([0, 1, 7, 4096, 5000, rng.randrange(0, 20000)])
            assert pf.read(offset, length) == plain[offset:offset + length], (offset, length)


@lru_cache(maxsize=1)
def _random_1mib() -> tuple[bytes, bytes, bytes]:
    d = vectors_path()
    return ((d / "wrap_key.bin").read_bytes(), (d / "enc/random_1MiB").read_bytes(),
            (d / "plain/random_1MiB").read_bytes())


@settings(max_examples=examples(60))
@given(data=st.data())
def test_hypothesis_slices(data):
    if not (vectors_path() / "enc/random_1MiB").is_file():
        pytest.skip("vectors not present")
    from pfs import MemoryStorage

    key, ciphertext, plain = _random_1mib()
    pf = ProtectedFile.open(MemoryStorage(ciphertext), key, "enc/random_1MiB",
                            cache_size=data.draw(st.sampled_from([1, 2, 48])))
    for _ in range(data.draw(st.integers(1, 5))):
        offset = data.draw(st.integers(0, len(plain) + 5000))
        length = data.draw(st.integers(0, 3 * 4096 + 10))
        assert pf.read(offset, length) == plain[offset:offset + length]


@pytest.mark.parametrize("vector", V1, ids=[v["name"] for v in V1])
def test_v1_rewritten_as_v2(tmp_path: Path, vectors_dir: Path, wrap_key: bytes, vector: dict):
    plain = (vectors_dir / vector["plaintext_file"]).read_bytes()
    path = tmp_path / vector["name"]
    shutil.copyfile(vectors_dir / vector["encrypted_file"], path)
    path.chmod(0o644)
    assert path.read_bytes()[8] == 1
    pf = ProtectedFile.open(HostFile(path, writable=True), wrap_key, vector["embedded_path"], writable=True)
    assert pf.version == (1, 0)
    pf.close()
    raw = path.read_bytes()
    assert len(raw) == vector["ciphertext_size"]
    dec = decode(raw, wrap_key)  # the independent reader
    assert (dec.file_id, dec.major, dec.minor, dec.flags) == (b"GRAFS_PF", 2, 0, 0)
    assert dec.plaintext == plain
    assert dec.path.decode() == vector["embedded_path"]
    with ProtectedFile.open(HostFile(path), wrap_key, vector["embedded_path"]) as again:
        assert again.version == (2, 0)
        assert read_all(again) == plain


def test_v1_read_only_open_leaves_file_alone(tmp_path: Path, vectors_dir: Path, wrap_key: bytes):
    src = vectors_dir / "enc_v1/size_3073"
    path = tmp_path / "f"
    shutil.copyfile(src, path)
    ProtectedFile.open(HostFile(path), wrap_key, "enc_v1/size_3073").close()
    assert path.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("name", ["enc/size_0", "enc/size_3073", "enc/size_400384", "enc_v1/size_3071"])
def test_wrong_key(vectors_dir: Path, wrap_key: bytes, name: str):
    bad = bytes([wrap_key[0] ^ 1]) + wrap_key[1:]
    with pytest.raises(WrongKeyError) as info:
        ProtectedFile.open(HostFile(vectors_dir / name), bad, name)
    assert str(vectors_dir / name) in str(info.value)
    assert wrap_key.hex() not in str(info.value) and bad.hex() not in str(info.value)


@pytest.mark.parametrize("name", ["enc/size_0", "enc/size_400384", "enc_v1/size_3073"])
@pytest.mark.parametrize("wrong", ["enc/size_1", "./enc/size_0x", "/abs/enc/size_0", ""])
def test_wrong_expected_path(vectors_dir: Path, wrap_key: bytes, name: str, wrong: str):
    with pytest.raises(PathMismatchError) as info:
        ProtectedFile.open(HostFile(vectors_dir / name), wrap_key, wrong)
    assert info.value.expected == wrong
    assert info.value.found == name
    # and the right path is accepted
    ProtectedFile.open(HostFile(vectors_dir / name), wrap_key, name).close()
    # None skips the check
    ProtectedFile.open(HostFile(vectors_dir / name), wrap_key, None).close()


def test_expected_path_as_bytes(vectors_dir: Path, wrap_key: bytes):
    ProtectedFile.open(HostFile(vectors_dir / "enc/size_1"), wrap_key, b"enc/size_1").close()
    with pytest.raises(PathMismatchError):
        ProtectedFile.open(HostFile(vectors_dir / "enc/size_1"), wrap_key, b"enc/size_1\xff")
