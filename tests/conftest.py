"""Shared fixtures: the Gramine reference vectors and the tampered variants made from them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import gramine_vectors
import pytest
from helpers import SLOW, require, vectors_path
from hypothesis import HealthCheck, settings

# Hypothesis profiles: CI is the default; PFSKIT_SLOW=1 raises example counts.
settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "slow", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("slow" if SLOW else "ci")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "require(condition, reason): skip when condition is false, fail under CI=true (helpers.require)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("require"):
        require(*mark.args, **mark.kwargs)


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """Gramine's reference vectors (tests/gramine_vectors.py says which set), every plaintext the
    manifest lists present."""
    path = vectors_path()
    require((path / "MANIFEST.json").is_file(), f"reference vectors not found at {path} (check PFSKIT_VECTORS)")
    gramine_vectors.complete_plaintexts(path)
    return path


@pytest.fixture(scope="session")
def wrap_key(vectors_dir: Path) -> bytes:
    key = (vectors_dir / "wrap_key.bin").read_bytes()
    assert len(key) == 16
    return key


@pytest.fixture(scope="session")
def manifest(vectors_dir: Path) -> dict:
    return gramine_vectors.load_manifest(vectors_dir)


@pytest.fixture(scope="session")
def tamper_set(vectors_dir: Path, manifest: dict):
    """(patch applier module, patches document, base ciphertext, {name: manifest entry}); the
    module's ``materialize(base, variant)`` gives one variant's bytes."""
    require(any((vectors_dir / "tamper").glob("*.patches.json")), f"no tamper patches in {vectors_dir}")
    doc, base = gramine_vectors.load_tamper(vectors_dir)
    entries = {v["name"]: v for v in manifest["tampered"]["variants"]}
    return gramine_vectors, doc, base, entries


@pytest.fixture
def tampered_dir(tmp_path: Path, tamper_set):
    """A function that writes one tampered variant into ``tmp_path`` and returns its path.

    Variants are ~13 MB each, so they are materialized lazily, one per test, and deleted at
    teardown (pytest keeps old tmp_path directories around).
    """
    module, doc, base, entries = tamper_set
    variants = {v["name"]: v for v in doc["variants"]}
    written: list[Path] = []

    def make(name: str, rel_path: str) -> Path:
        data = module.materialize(base, variants[name])
        assert hashlib.sha256(data).hexdigest() == entries[name]["sha256"], name
        path = tmp_path / rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
        return path

    yield make
    for path in written:
        path.unlink(missing_ok=True)


@pytest.fixture
def mounter(tmp_path: Path):
    """A :class:`fuse_helpers.Mounter` for real FUSE mounts under ``tmp_path``; every mount it
    made is gone after the test (a test that leaves one mounted fails)."""
    from fuse_helpers import Mounter, fuse_unavailable, mounted
    from helpers import require

    why = fuse_unavailable()
    require(why is None, f"real FUSE mounts unavailable: {why}")
    m = Mounter(tmp_path)
    try:
        yield m
    finally:
        m.cleanup()
        for mount in m.mounts:
            assert not mounted(mount.mountpoint), f"{mount.mountpoint} still mounted after cleanup"
