"""The 72 variants that Gramine's pf_tamper makes of enc/size_12979205: all must be rejected.

Each variant is materialized on its own (13 MB) at ``<tmp>/enc/size_12979205`` and opened with
expected path ``enc/size_12979205``; opening and reading it fully must raise the PfsError
subclass that the spec's open checks (docs/format.md, "Opening a file") give.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import vectors_path

from pfs import (
    CorruptedNodeError,
    HostFile,
    NotEncryptedError,
    PartialNodeError,
    PathMismatchError,
    PfsError,
    ProtectedFile,
    TruncatedFileError,
    UnsupportedVersionError,
    WrongKeyError,
)
from pfs.layout import data_node_offset, data_physical, mht_physical

BASE = "enc/size_12979205"
ROOT_MHT_RANGE = (3072, 3072 + 96 * 4096)  # plaintext of the root MHT's own data nodes
DATA0_RANGE = (3072, 3072 + 4096)


def _variant_names() -> list[str]:
    files = sorted((vectors_path() / "tamper").glob("*.patches.json"))
    if not files:
        return []
    return [v["name"] for v in json.loads(files[0].read_text())["variants"]]


NAMES = _variant_names()


def expected_error(suffix: str) -> type[PfsError]:
    """The error the spec's checks give for a pf_tamper variant (by its suffix).

    - Any on-disk size that is not a positive multiple of 4096 fails check 1 ("invalid header")
      before anything else: all trunc_meta_* variants, trunc_mht_1..9, trunc_data_1/3 and
      extend_0 (one byte appended); past one whole node, as a PartialNodeError (a
      NotEncryptedError whose message says the file was cut or extended inside a node).
      Check 2 (file id) covers meta_plain_id_*.
    - meta_plain_version_0/1 set the major version byte to 0x00 / 0xff: neither is 1 (which
      would be migrated) nor 2, so check 3 gives "unsupported version" (Gramine: "Invalid
      version").
    - Nonce, tag and encrypted-part flips fail check 4: the metadata tag (WrongKeyError).
    - meta_enc_filename_* re-encrypt the metadata with a changed path: only check 5 sees them.
    - meta_enc_size_* re-encrypt the metadata with a LARGER recorded size (13119488 ..
      2**64-1), so the file has fewer nodes than the size needs: the stricter on-disk size
      check gives TruncatedFileError at open (Gramine fails later, at the missing node).
    - trunc_mht_0 (node 0 only) and trunc_data_0/2 (2 or 3 nodes) keep a valid node 0 but
      lack nodes the recorded size needs: TruncatedFileError.
    - meta_enc_mht_key/mac_* change the root MHT key/tag, mht_* flip bytes in physical node 1
      (all their offsets are in 4096..8191): the root MHT fails check 6 at open,
      CorruptedNodeError for node 1.
    - data_* flip bytes in physical node 2 (data node 0): CorruptedNodeError for node 2 when
      it is read.
    """
    if suffix.startswith(("trunc_meta_", "trunc_mht_", "trunc_data_", "extend_", "meta_plain_id_")):
        if suffix in ("trunc_mht_0", "trunc_data_0", "trunc_data_2"):
            return TruncatedFileError
        if suffix.startswith(("meta_plain_id_", "trunc_meta_")):
            return NotEncryptedError  # shorter than the header node
        return PartialNodeError  # a whole header node is there: the message says the file was cut
    if suffix.startswith("meta_plain_version_"):
        return UnsupportedVersionError
    if suffix.startswith(("meta_plain_nonce_", "meta_plain_mac_", "meta_plain_encrypted_")):
        return WrongKeyError
    if suffix.startswith("meta_enc_filename_"):
        return PathMismatchError
    if suffix.startswith("meta_enc_size_"):
        return TruncatedFileError
    if suffix.startswith(("meta_enc_mht_", "mht_", "data_")):
        return CorruptedNodeError
    raise AssertionError(f"no expectation for variant {suffix}")


def open_and_read(path: Path, key: bytes, expected: str | None) -> bytes:
    with ProtectedFile.open(HostFile(path), key, expected, cache_size=4) as pf:
        out = bytearray()
        while piece := pf.read(len(out), 1 << 20):
            out += piece
        return bytes(out)


def test_all_72_variants_listed(tamper_set):
    _module, doc, _base, entries = tamper_set
    assert len(NAMES) == len(doc["variants"]) == len(entries) == 72
    assert all(e["expected_with_path_check"] == "fail" for e in entries.values())


def test_sizes_of_on_disk_checks(tamper_set):
    """The size-based expectations above rest on the variant sizes: check them."""
    _module, doc, _base, _entries = tamper_set
    for v in doc["variants"]:
        suffix = v["name"].split(".", 1)[1]
        if issubclass(expected_error(suffix), NotEncryptedError) and not suffix.startswith("meta_plain_id_"):
            assert v["size"] == 0 or v["size"] % 4096, suffix
        if suffix in ("trunc_mht_0", "trunc_data_0", "trunc_data_2"):
            assert v["size"] in (4096, 8192, 12288)


@pytest.mark.parametrize("name", NAMES)
def test_variant_rejected(tampered_dir, wrap_key: bytes, name: str):
    suffix = name.split(".", 1)[1]
    path = tampered_dir(name, BASE)
    want = expected_error(suffix)
    with pytest.raises(PfsError) as info:
        open_and_read(path, wrap_key, BASE)
    err = info.value
    assert type(err) is want, f"{suffix}: got {type(err).__name__}: {err}"
    assert str(path) in str(err)
    assert wrap_key.hex() not in str(err)

    if want is CorruptedNodeError:
        node = 2 if suffix.startswith("data_") else 1
        assert err.node == node
        assert err.plaintext_range == (DATA0_RANGE if node == 2 else ROOT_MHT_RANGE)
        lo, hi = err.plaintext_range
        assert re.search(rf"\bnode {node}\b", str(err)), str(err)
        assert f"{lo}-{hi - 1}" in str(err), str(err)
    if want is PathMismatchError:
        assert err.expected == BASE
        assert err.found != BASE
    if want is TruncatedFileError:
        assert "size" in str(err)


@pytest.mark.parametrize("name", [n for n in NAMES if ".meta_enc_filename_" in n])
def test_filename_variants_decrypt_without_path_check(tampered_dir, wrap_key: bytes, vectors_dir: Path,
                                                      name: str):
    """Only the path check catches these: without it they decrypt to the original plaintext."""
    path = tampered_dir(name, BASE)
    assert open_and_read(path, wrap_key, None) == (vectors_dir / "plain/size_12979205").read_bytes()


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith((".data_0", ".data_1", ".data_2"))])
def test_data_variants_fail_only_at_the_bad_node(tampered_dir, wrap_key: bytes, vectors_dir: Path,
                                                 name: str):
    """Open succeeds; the patched data nodes fail, every other node still reads.

    data_0/1 flip a byte of data node 0; data_2 swaps data nodes 0 and 1 (8192 bytes).
    """
    path = tampered_dir(name, BASE)
    plain = (vectors_dir / "plain/size_12979205").read_bytes()
    swapped = name.endswith(".data_2")
    with ProtectedFile.open(HostFile(path), wrap_key, BASE) as pf:
        assert pf.read(0, 3072) == plain[:3072]
        if swapped:
            with pytest.raises(CorruptedNodeError) as info:
                pf.read(data_node_offset(1), 1)
            assert info.value.node == data_physical(1) == 3
        start = data_node_offset(2 if swapped else 1)
        assert pf.read(start, 100_000) == plain[start:start + 100_000]
        with pytest.raises(CorruptedNodeError) as info:
            pf.read(3072, 1)
        assert info.value.node == data_physical(0) == 2
        # still failing on a second try, and the rest still reads
        with pytest.raises(CorruptedNodeError):
            pf.read(4000, 10)
        tail = len(plain) - 10
        assert pf.read(tail, 10) == plain[tail:]


@pytest.mark.parametrize("start, length", [(3072, 4096), (3072 - 100, 3 * 4096), (3072 + 10, 100), (0, 1 << 20)])
def test_failed_read_leaves_no_plaintext_of_the_bad_node(tampered_dir, wrap_key: bytes, start: int,
                                                         length: int):
    """Whole nodes are decrypted straight into the caller's buffer: a bad one must be wiped."""
    path = tampered_dir(next(n for n in NAMES if n.endswith(".data_0")), BASE)
    with ProtectedFile.open(HostFile(path), wrap_key, BASE) as pf:
        buf = bytearray(b"\xaa" * length)
        with pytest.raises(CorruptedNodeError) as info:
            pf.readinto(start, buf)
        assert info.value.node == data_physical(0)
        lo, hi = max(0, 3072 - start), min(length, 3072 + 4096 - start)
        bad = bytes(buf[lo:hi])
        assert bad in (b"\xaa" * (hi - lo), bytes(hi - lo)), "plaintext of a node that failed authentication"


def test_second_level_mht_corruption(tmp_path: Path, vectors_dir: Path, wrap_key: bytes):
    """Not a pf_tamper variant: flip a byte of MHT node 33 (the first second-level MHT node)."""
    raw = bytearray((vectors_dir / BASE).read_bytes())
    phys = mht_physical(33)
    raw[phys * 4096 + 5] ^= 0x40
    path = tmp_path / "f"
    path.write_bytes(raw)
    plain = (vectors_dir / "plain/size_12979205").read_bytes()
    with ProtectedFile.open(HostFile(path), wrap_key, BASE) as pf:
        assert pf.read(0, 500_000) == plain[:500_000]
        first = data_node_offset(33 * 96)
        with pytest.raises(CorruptedNodeError) as info:
            pf.read(first, 1)
        assert info.value.node == phys
        assert info.value.plaintext_range == (first, first + 96 * 4096)
    path.unlink()
