"""Gramine's reference vectors: where they are, the plaintext the repository does not carry, and
the tamper patches (see tests/vectors/README.md).

One place decides which set the tests use: ``PFSKIT_VECTORS`` if set, else the full set in
``../shared/vectors/gramine-1.9`` beside the checkout when it is there, else the subset carried in
``tests/vectors/gramine-1.9``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_VECTORS = REPO.parent / "shared" / "vectors" / "gramine-1.9"
CARRIED_VECTORS = REPO / "tests" / "vectors" / "gramine-1.9"


def vectors_path() -> Path:
    """The vectors set the tests use (it may not exist when ``PFSKIT_VECTORS`` names nothing)."""
    chosen = os.environ.get("PFSKIT_VECTORS")
    if chosen:
        return Path(chosen)
    if (SHARED_VECTORS / "MANIFEST.json").is_file():
        return SHARED_VECTORS
    return CARRIED_VECTORS


def load_manifest(set_dir: Path) -> dict:
    return json.loads((set_dir / "MANIFEST.json").read_text())


def complete_plaintexts(set_dir: Path) -> None:
    """Write every plaintext the manifest lists but the set lacks (the carried subset has no
    ``plain/size_12979205``): decrypted by the independent reader in helpers.py, written only if
    its sha256 is the one Gramine's manifest records."""
    from helpers import decode  # helpers imports this module

    manifest = load_manifest(set_dir)
    key = (set_dir / manifest["wrap_key_file"]).read_bytes()
    for entry in manifest["vectors"] + manifest["v1_vectors"]:
        target = set_dir / entry["plaintext_file"]
        if target.is_file() and target.stat().st_size == entry["plaintext_size"]:
            continue
        decoded = decode((set_dir / entry["encrypted_file"]).read_bytes(), key)
        plain = decoded.plaintext
        if hashlib.sha256(plain).hexdigest() != entry["plaintext_sha256"]:
            raise AssertionError(f"{entry['encrypted_file']} does not decrypt to the manifest's plaintext")
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_bytes(plain)
        os.replace(tmp, target)


# ---------------------------------------------------------------- pf_tamper's variants as patches

def load_tamper(set_dir: Path) -> tuple[dict, bytes]:
    """(patches document, base ciphertext) of the set's one ``tamper/*.patches.json``."""
    (patches,) = sorted((set_dir / "tamper").glob("*.patches.json"))
    doc = json.loads(patches.read_text())
    base = (set_dir / doc["base_file"]).read_bytes()
    if hashlib.sha256(base).hexdigest() != doc["base_ciphertext_sha256"]:
        raise AssertionError(f"{doc['base_file']} is not the file the tamper patches were made against")
    return doc, base


def materialize(base: bytes, variant: dict) -> bytes:
    """One variant: the base cut (or zero-extended) to ``size``, then each ``[offset, hex]`` patch
    written over it."""
    size = variant["size"]
    out = bytearray(base[:size])
    out.extend(bytes(size - len(out)))
    for offset, hex_bytes in variant["patches"]:
        patch = bytes.fromhex(hex_bytes)
        if offset + len(patch) > size:
            raise AssertionError(f"{variant['name']}: patch at {offset} runs past the variant's size")
        out[offset:offset + len(patch)] = patch
    return bytes(out)
