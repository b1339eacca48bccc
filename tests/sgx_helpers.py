"""Signing a manifest in tests, with pfskit's pieces (libos.sgx_manifest, pal.sgx.measure and
pal.sgx.sigstruct): the final manifest ``NAME.manifest.sgx`` and ``NAME.sig`` beside it, as
``libos sign`` writes them with the stand-in PAL."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors" / "gramine-sign"


def test_key():
    """The RSA-3072 e=3 key of Gramine's vectors."""
    from pal.sgx.sigstruct import load_private_key

    return load_private_key((VECTORS / "test-signing-key.pem").read_bytes())


@functools.cache
def other_key():
    """Another RSA-3072 e=3 key (made once per test session)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=3, key_size=3072)


def sign(data: dict[str, Any], folder: Path, name: str = "app", key: Any = None) -> Path:
    """Finalize ``data`` (a manifest's TOML data), write ``folder/NAME.manifest.sgx`` and
    ``folder/NAME.sig`` signed with ``key`` (default :func:`test_key`); the manifest's path."""
    import copy

    from libos import sgx_manifest
    from pal.sgx.measure import mrenclave
    from pal.sgx.sigstruct import Sigstruct

    final = sgx_manifest.finalize(copy.deepcopy(data), check=False)  # as libos sign: no schema check
    text = sgx_manifest.dumps(final).encode()
    manifest = folder / f"{name}.manifest.sgx"
    manifest.write_bytes(text)
    sig = Sigstruct.for_enclave(mrenclave(text), final["sgx"], date=(2026, 1, 2))
    sig.sign(key or test_key())
    (folder / f"{name}.sig").write_bytes(sig.to_bytes())
    return manifest
