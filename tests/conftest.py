"""Shared fixtures: the Gramine reference vectors and the tampered variants made from them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers import SLOW, vectors_path
from hypothesis import HealthCheck, settings

# Hypothesis profiles: CI is the default; PFSKIT_SLOW=1 raises example counts.
settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "slow", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("slow" if SLOW else "ci")


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    path = vectors_path()
    if not (path / "MANIFEST.json").is_file():
        pytest.skip(f"reference vectors not found at {path} (set PFSKIT_VECTORS)")
    return path


@pytest.fixture(scope="session")
def wrap_key(vectors_dir: Path) -> bytes:
    key = (vectors_dir / "wrap_key.bin").read_bytes()
    assert len(key) == 16
    return key


@pytest.fixture(scope="session")
def manifest(vectors_dir: Path) -> dict:
    return json.loads((vectors_dir / "MANIFEST.json").read_text())


def _load_apply_tamper(vectors_dir: Path):
    """Import ``apply_tamper.py``, which sits next to the set directory."""
    script = vectors_dir.parent / "apply_tamper.py"
    if not script.is_file():
        pytest.skip(f"{script} not found")
    spec = importlib.util.spec_from_file_location("apply_tamper", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tamper_set(vectors_dir: Path):
    """(apply_tamper module, patches document, base ciphertext, {name: manifest entry})."""
    module = _load_apply_tamper(vectors_dir)
    doc, base = module.load(str(vectors_dir))
    manifest = json.loads((vectors_dir / "MANIFEST.json").read_text())
    entries = {v["name"]: v for v in manifest["tampered"]["variants"]}
    return module, doc, base, entries


@pytest.fixture
def tampered_dir(tmp_path: Path, tamper_set):
    """A function that writes one tampered variant into ``tmp_path`` and returns its path.

    Variants are ~13 MB each, so they are materialized lazily, one per test, and deleted at
    teardown (pytest keeps old tmp_path directories around).
    """
    import hashlib

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
