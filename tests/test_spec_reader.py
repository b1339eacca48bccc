"""The independent reader of tests/helpers.py is independent (issue 8, item 26): it imports
nothing from the project, and its own key derivation opens Gramine's files."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import helpers
from helpers import decode, spec_metadata_key

from pfs.crypto import derive_metadata_key

PROJECT_PACKAGES = {"pfs", "vfs", "libos", "pal", "tools"}


def test_reader_imports_nothing_from_the_project() -> None:
    tree = ast.parse(Path(helpers.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & PROJECT_PACKAGES, imported & PROJECT_PACKAGES


def test_spec_kdf_opens_a_gramine_file(vectors_dir: Path, wrap_key: bytes) -> None:
    """Gramine's pf_crypt made this file: only the right metadata key opens its metadata."""
    raw = (vectors_dir / "enc" / "size_7169").read_bytes()
    decoded = decode(raw, wrap_key)
    assert decoded.path == b"enc/size_7169"
    assert decoded.plaintext == (vectors_dir / "plain" / "size_7169").read_bytes()


def test_spec_kdf_agrees_with_the_library() -> None:
    """The two derivations, written separately, agree (each is checked against Gramine's files
    on its own: the library's by tests/test_vectors.py, the reader's above)."""
    for _ in range(50):
        kdk, nonce = os.urandom(16), os.urandom(32)
        assert spec_metadata_key(kdk, nonce) == derive_metadata_key(kdk, nonce)
