"""pfs.tamper: every variant written is rejected by the reader, and the set is pf_tamper's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pal import HostFile
from pfs import PathMismatchError, PfsError, ProtectedFile
from pfs.stream import encrypt_stream
from pfs.tamper import make_tampered_variants

KEY = bytes(range(16))


def _encrypt(tmp_path: Path, size: int, bound: str) -> tuple[Path, bytes]:
    plain = os.urandom(size)
    src = tmp_path / "plain.bin"
    src.write_bytes(plain)
    out = tmp_path / "enc.bin"
    with HostFile(src) as s, HostFile(out, writable=True, create=True, exclusive=True) as d:
        encrypt_stream(s, d, KEY, bound)
    return out, plain


def _read_all(path: Path, key: bytes, expected: str | None) -> bytes:
    with ProtectedFile.open(HostFile(path), key, expected) as pf:
        return pf.read(0, pf.size)


def _check_all_rejected(out_dir: Path, variants: list[tuple[str, str]], key: bytes, bound: str,
                        plain: bytes) -> dict[str, str]:
    outcome = {}
    for name, description in variants:
        assert description
        path = out_dir / name
        with pytest.raises(PfsError) as info:
            _read_all(path, key, bound)
        outcome[name] = type(info.value).__name__
        if ".meta_enc_filename_" in name:
            # only the path check catches these: without it they decrypt to the original
            assert isinstance(info.value, PathMismatchError)
            assert _read_all(path, key, None) == plain
    return outcome


@pytest.mark.parametrize("size", [0, 1, 3072, 3073, 7169, 96 * 4096 + 3072, 96 * 4096 + 3073, 1 << 20])
def test_generated_variants_all_rejected(tmp_path: Path, size: int) -> None:
    bound = "data/secret.bin"
    src, plain = _encrypt(tmp_path, size, bound)
    out_dir = tmp_path / "variants"
    variants = make_tampered_variants(src, KEY, out_dir)
    names = [n for n, _ in variants]
    assert len(names) == len(set(names))
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(names)  # no temp files left
    outcome = _check_all_rejected(out_dir, variants, KEY, bound, plain)
    assert "enc.bin.extend_0" in outcome and "enc.bin.meta_plain_id_0" in outcome
    if size <= 3072:
        assert not any(".mht_" in n or ".data_" in n or ".trunc_mht_" in n for n in names)
    else:
        assert outcome["enc.bin.data_0"] == "CorruptedNodeError"
        assert outcome["enc.bin.mht_0"] == "CorruptedNodeError"


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    src, _ = _encrypt(tmp_path, 5000, "x")
    out_dir = tmp_path / "v"
    first = make_tampered_variants(src, KEY, out_dir)
    with pytest.raises(PfsError) as info:
        make_tampered_variants(src, KEY, out_dir)
    assert info.value.errno == 17  # EEXIST
    again = make_tampered_variants(src, KEY, out_dir, overwrite=True)
    assert [n for n, _ in again] == [n for n, _ in first]


def test_wrong_key_for_source_is_refused(tmp_path: Path) -> None:
    src, _ = _encrypt(tmp_path, 100, "x")
    with pytest.raises(PfsError):
        make_tampered_variants(src, bytes(16), tmp_path / "v")
    assert not (tmp_path / "v").exists()


@pytest.fixture(scope="module")
def vectors(vectors_dir: Path) -> Path:
    return vectors_dir


def test_vector_variants_cover_pf_tamper(vectors: Path, tmp_path: Path) -> None:
    """For Gramine's own tamper base, we make (at least) every variant that pf_tamper v1.9 made."""
    manifest = json.loads((vectors / "MANIFEST.json").read_text())
    base = manifest["tampered"]["base_file"]
    bound = manifest["tampered"]["base_embedded_path"]
    key = (vectors / "wrap_key.bin").read_bytes()
    out_dir = tmp_path / "out"
    variants = make_tampered_variants(vectors / base, key, out_dir)
    ours = {n for n, _ in variants}
    theirs = {v["name"] for v in manifest["tampered"]["variants"]}
    assert theirs <= ours, sorted(theirs - ours)
    # Same cut points as pf_tamper: the truncated variants have the same sizes.
    sizes = {v["name"]: v["size"] for v in manifest["tampered"]["variants"]}
    for name in theirs:
        if ".trunc_" in name or ".extend_" in name:
            assert (out_dir / name).stat().st_size == sizes[name], name
    plain = (vectors / base.replace("enc/", "plain/")).read_bytes()
    _check_all_rejected(out_dir, variants, key, bound, plain)


def test_v1_source(vectors: Path, tmp_path: Path) -> None:
    key = (vectors / "wrap_key.bin").read_bytes()
    src = vectors / "enc_v1" / "size_400384"
    variants = make_tampered_variants(src, key, tmp_path)
    plain = (vectors / "plain" / "size_400384").read_bytes()
    assert len(variants) > 50
    _check_all_rejected(tmp_path, variants, key, "enc_v1/size_400384", plain)
