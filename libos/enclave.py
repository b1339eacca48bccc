"""Starting a signed manifest "as the enclave": what EINIT checks, and the identity it gives.

``libos run app.manifest.sgx`` and ``LibOS.boot("app.manifest.sgx")`` find ``app.sig`` beside the
manifest (Gramine's naming: the name minus ``.manifest.sgx``, plus ``.sig``), then, before
anything runs: the SIGSTRUCT must parse and its signature verify, and MRENCLAVE recomputed from
the manifest's bytes (with pfskit's stand-in PAL, as ``libos sign`` measures by default, or the
PAL named) must equal the one signed. The enclave's identity (MRENCLAVE, MRSIGNER, ISVPRODID,
ISVSVN, attributes) then comes from the ``.sig``, on the simulated platform chosen
(:mod:`pal.sgx.platform`).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from .errors import LibosError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SIGNED_SUFFIX", "EnclaveStartError", "is_signed", "load_enclave", "sig_path", "unsigned_special_key"]

SIGNED_SUFFIX = ".manifest.sgx"


class EnclaveStartError(LibosError):
    """A signed manifest can't start as an enclave (EINIT would fail); one line saying why.
    errno EACCES for a signature or measurement that does not match, else the cause's."""

    default_errno = errno.EACCES


def is_signed(path: str | os.PathLike[str] | None) -> bool:
    """Whether ``path`` names a signed manifest (``*.manifest.sgx``), which runs as an enclave."""
    return path is not None and os.fspath(path).endswith(SIGNED_SUFFIX)


def sig_path(manifest_path: str | os.PathLike[str]) -> Path:
    """Where the loader looks for the SIGSTRUCT of ``manifest_path``: ``app.manifest.sgx`` -> ``app.sig``."""
    from pathlib import Path  # (not at import: every libos run boots through this module)

    path = Path(manifest_path)
    return path.with_name(path.name.removesuffix(SIGNED_SUFFIX) + ".sig")


def unsigned_special_key(raw: dict[str, Any], mounts: list[Any]) -> str | None:
    """The message for an unsigned manifest whose encrypted mounts use the enclave's own keys, or None."""
    for spec in mounts:
        if spec.type == "encrypted" and (spec.key_name or "").startswith("_sgx_"):
            return (f'{spec.key or "fs.mounts"}.key_name: "{spec.key_name}" is derived from an enclave\'s '
                    "identity, which only a signed manifest has: sign it (libos sign -k KEY.pem -m app.manifest "
                    "-o app.manifest.sgx) and run app.manifest.sgx")
    return None


def load_enclave(manifest_path: str | os.PathLike[str], raw: dict[str, Any], *, platform: Any = None,
                 pal: str | os.PathLike[str] | None = None):
    """The :class:`pal.sgx.enclave.Enclave` of the signed manifest at ``manifest_path`` (its parsed
    TOML ``raw``), after EINIT's checks; ``platform``: a ``Platform``, a platform file's path, or
    None (the default platform). Raises :class:`EnclaveStartError`."""
    from pathlib import Path

    from pal.sgx.enclave import ATTESTATION_TYPES, Enclave
    from pal.sgx.identity import EnclaveIdentity
    from pal.sgx.keys import KeyRequestError, parse_seal_key_masks
    from pal.sgx.layout import EnclaveError
    from pal.sgx.measure import mrenclave
    from pal.sgx.pal_image import PalImage
    from pal.sgx.platform import Platform, PlatformError, load_platform
    from pal.sgx.sigstruct import Sigstruct, SigstructError

    manifest_path = Path(manifest_path)
    sig_file = sig_path(manifest_path)
    try:
        sig_bytes = sig_file.read_bytes()
    except FileNotFoundError:
        raise EnclaveStartError(f"{sig_file}: not found (a signed manifest {manifest_path.name} needs the .sig "
                                "beside it: sign with libos sign)", errno=errno.ENOENT) from None
    except OSError as exc:
        raise EnclaveStartError(f"{sig_file}: {exc.strerror}", errno=exc.errno) from None
    try:
        sig = Sigstruct.from_bytes(sig_bytes)
        sig.verify()
    except SigstructError as exc:
        raise EnclaveStartError(f"{sig_file}: {exc} (EINIT refuses it: sign the manifest again)") from None
    try:
        image = PalImage.from_elf(pal) if pal is not None else PalImage.standin()
        measured = mrenclave(manifest_path.read_bytes(), image)
    except (EnclaveError, OSError, ValueError) as exc:
        raise EnclaveStartError(f"{manifest_path}: can't measure the enclave: {exc}",
                                errno=getattr(exc, "errno", None) or errno.EINVAL) from None
    if measured != sig.mrenclave:
        raise EnclaveStartError(
            f"{manifest_path}: MRENCLAVE {measured.hex()} is not the one {sig_file.name} signed "
            f"({sig.mrenclave.hex()}): the manifest (or the PAL) changed after signing; sign it again")
    sgx = raw.get("sgx") if isinstance(raw.get("sgx"), dict) else {}
    kind = sgx.get("remote_attestation", "none")
    if kind not in ATTESTATION_TYPES:
        raise EnclaveStartError(f'sgx.remote_attestation: "{kind}" is not supported (expected "none" or "dcap")',
                                errno=errno.EINVAL)
    try:
        masks = parse_seal_key_masks(sgx)
        if not isinstance(platform, Platform):
            platform = load_platform(platform)
    except (KeyRequestError, PlatformError) as exc:
        raise EnclaveStartError(str(exc), errno=exc.errno) from None
    return Enclave(platform, EnclaveIdentity.from_sigstruct(sig), attestation_type=kind, masks=masks)
