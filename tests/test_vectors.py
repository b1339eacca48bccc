"""Gramine's reference vectors: every file decrypts byte-exactly, with the right metadata."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import gramine_vectors
import pytest
from helpers import decode, examples, require, vectors_path
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
    # every layout boundary and the second-level MHT case, in the carried subset too
    sizes = {v["plaintext_size"] for v in manifest["vectors"]}
    assert sizes >= {0, 1, 100, 3071, 3072, 3073, 4096, 7167, 7168, 7169, 396288, 396289, 400384, 12979205}
    assert len(manifest["v1_vectors"]) >= 4


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
def _slices_vector(d: Path) -> tuple[bytes, bytes, bytes]:
    """(key, ciphertext, plaintext) of the 400 KB vector: two MHT nodes, in every set."""
    return ((d / "wrap_key.bin").read_bytes(), (d / "enc/size_400384").read_bytes(),
            (d / "plain/size_400384").read_bytes())


@settings(max_examples=examples(60))
@given(data=st.data())
def test_hypothesis_slices(vectors_dir: Path, data):
    from pfs import MemoryStorage

    key, ciphertext, plain = _slices_vector(vectors_dir)
    pf = ProtectedFile.open(MemoryStorage(ciphertext), key, "enc/size_400384",
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


# ---------------------------------------------------------------- the set carried in the repository

def test_carried_subset_is_gramines_data():
    """tests/vectors/gramine-1.9 holds Gramine's files unchanged: MANIFEST.json is the full
    manifest with the vector list cut to what is carried, and every carried file has its sha256."""
    carried = gramine_vectors.CARRIED_VECTORS
    full = json.loads((carried / "MANIFEST.gramine.json").read_text())
    subset = json.loads((carried / "MANIFEST.json").read_text())
    on_disk = {f"enc/{p.name}" for p in (carried / "enc").iterdir()}
    assert subset == {**full, "vectors": [v for v in full["vectors"] if v["encrypted_file"] in on_disk]}
    assert (carried / "wrap_key.bin").read_bytes().hex() == full["wrap_key_hex"]
    for entry in subset["vectors"] + subset["v1_vectors"]:
        raw = (carried / entry["encrypted_file"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == entry["ciphertext_sha256"], entry["encrypted_file"]
        plain = carried / entry["plaintext_file"]
        if entry["plaintext_size"] < 1 << 20:  # all but the 13 MB one, rebuilt on demand
            assert hashlib.sha256(plain.read_bytes()).hexdigest() == entry["plaintext_sha256"], plain


def _small_set(tmp_path: Path, vectors_dir: Path, manifest: dict, name: str) -> Path:
    """A set of one vector whose plaintext is missing."""
    entry = next(v for v in manifest["vectors"] if v["name"] == name)
    (tmp_path / "enc").mkdir()
    (tmp_path / "plain").mkdir()
    shutil.copyfile(vectors_dir / entry["encrypted_file"], tmp_path / entry["encrypted_file"])
    shutil.copyfile(vectors_dir / "wrap_key.bin", tmp_path / "wrap_key.bin")
    doc = {**manifest, "vectors": [entry], "v1_vectors": []}
    (tmp_path / "MANIFEST.json").write_text(json.dumps(doc))
    return tmp_path


def test_missing_plaintext_is_rebuilt_from_gramines_sha256(tmp_path: Path, vectors_dir: Path, manifest: dict):
    set_dir = _small_set(tmp_path, vectors_dir, manifest, "size_7169")
    gramine_vectors.complete_plaintexts(set_dir)
    assert (set_dir / "plain/size_7169").read_bytes() == (vectors_dir / "plain/size_7169").read_bytes()


def test_missing_plaintext_with_another_sha256_is_not_written(tmp_path: Path, vectors_dir: Path, manifest: dict):
    set_dir = _small_set(tmp_path, vectors_dir, manifest, "size_7169")
    doc = json.loads((set_dir / "MANIFEST.json").read_text())
    doc["vectors"][0]["plaintext_sha256"] = hashlib.sha256(b"something else").hexdigest()
    (set_dir / "MANIFEST.json").write_text(json.dumps(doc))
    with pytest.raises(AssertionError, match="does not decrypt to the manifest's plaintext"):
        gramine_vectors.complete_plaintexts(set_dir)
    assert os.listdir(set_dir / "plain") == []


def test_tamper_patches_reproduce_every_variant(tamper_set):
    """Our reader of the patches JSON gives exactly the bytes pf_tamper wrote (its sha256)."""
    module, doc, base, entries = tamper_set
    assert len(doc["variants"]) == len(entries) == 72
    for variant in doc["variants"]:
        data = module.materialize(base, variant)
        assert len(data) == entries[variant["name"]]["size"]
        assert hashlib.sha256(data).hexdigest() == entries[variant["name"]]["sha256"], variant["name"]


# ---------------------------------------------------------------- a fresh clone, without ../shared

FRESH_CLONE_SELECTION = [  # the manifest, both format versions, the second-level MHT, a tamper variant
    "tests/test_vectors.py::test_manifest_covers_every_file",
    "tests/test_vectors.py::test_vector_decrypts[enc/size_3073]",
    "tests/test_vectors.py::test_vector_decrypts[enc/size_12979205]",
    "tests/test_vectors.py::test_vector_decrypts[enc_v1/size_3073]",
    "tests/test_tamper.py::test_variant_rejected[size_12979205.data_0]",
]


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files (as they are in the work tree) in a folder with no
    ``../shared`` beside it: what ``git clone`` gives, uncommitted edits included."""
    repo = gramine_vectors.REPO
    require(shutil.which("git") and (repo / ".git").exists(), f"{repo} is not a git checkout (or git is missing)")
    files = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True).stdout
    dest = tmp_path_factory.mktemp("fresh") / "pfskit"
    for name in filter(None, files.decode().split("\0")):
        if (repo / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, dest / name)
    assert not (dest.parent / "shared").exists()
    return dest


def _pytest_in(clone: Path, *args: str, ci: bool, vectors: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PFSKIT_VECTORS", "CI", "PFSKIT_SLOW")}
    if ci:
        env["CI"] = "true"
    if vectors is not None:
        env["PFSKIT_VECTORS"] = str(vectors)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *args],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=600)


def test_fresh_clone_runs_the_vector_tests(fresh_clone: Path):
    """Without ../shared and PFSKIT_VECTORS the carried subset is used, and under CI=true the
    vector tests run: none is skipped."""
    proc = _pytest_in(fresh_clone, *FRESH_CLONE_SELECTION, ci=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{len(FRESH_CLONE_SELECTION)} passed") and "skipped" not in summary, proc.stdout


def test_fresh_clone_without_vectors_fails_under_ci(fresh_clone: Path, tmp_path: Path):
    """With no vectors at all, a vector test skips locally, and fails the run under CI=true."""
    local = _pytest_in(fresh_clone, FRESH_CLONE_SELECTION[0], ci=False, vectors=tmp_path)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout + local.stderr
    ci = _pytest_in(fresh_clone, FRESH_CLONE_SELECTION[0], ci=True, vectors=tmp_path)
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "reference vectors not found" in ci.stdout and "CI=true" in ci.stdout, ci.stdout


def test_require_marker_skips_locally_and_fails_under_ci(fresh_clone: Path):
    """``@pytest.mark.require`` (for programs a test runs, root, ...) behaves like require()."""
    probe = fresh_clone / "tests" / "test_require_probe.py"
    probe.write_text('import pytest\n\n\n@pytest.mark.require(None, "the probe tool is not installed")\n'
                     'def test_probe():\n    pass\n')
    try:
        local = _pytest_in(fresh_clone, str(probe.relative_to(fresh_clone)), ci=False)
        assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout + local.stderr
        ci = _pytest_in(fresh_clone, str(probe.relative_to(fresh_clone)), ci=True)
        assert ci.returncode == 1 and "the probe tool is not installed (CI=true" in ci.stdout, ci.stdout
    finally:
        probe.unlink()
