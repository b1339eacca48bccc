"""A running (simulated) enclave: its identity on a platform, and what it asks the CPU for.

:class:`Enclave` is what the LibOS holds while it runs a signed manifest "as the enclave": the
seal keys of ``_sgx_mrenclave`` / ``_sgx_mrsigner`` (EGETKEY as Gramine issues it), its
TARGETINFO, EREPORT for ``/dev/attestation/report`` and quotes for ``/dev/attestation/quote``
(it is the ``vfs.attestation.AttestationProvider``).
"""

from __future__ import annotations

from .identity import EnclaveIdentity
from .keys import POLICY_MRENCLAVE, POLICY_MRSIGNER, SealKeyMasks, seal_key
from .platform import Platform

__all__ = ["ATTESTATION_TYPES", "SEAL_KEY_NAMES", "Enclave"]

#: ``key_name`` -> the KEYPOLICY of its seal key
SEAL_KEY_NAMES = {"_sgx_mrenclave": POLICY_MRENCLAVE, "_sgx_mrsigner": POLICY_MRSIGNER}
ATTESTATION_TYPES = ("none", "dcap")


class Enclave:
    """Enclave ``identity`` running on ``platform`` (``attestation_type`` is
    ``sgx.remote_attestation``; ``masks`` are ``sgx.seal_key.*``)."""

    def __init__(self, platform: Platform, identity: EnclaveIdentity, *, attestation_type: str = "none",
                 masks: SealKeyMasks | None = None):
        self.platform = platform
        self.identity = identity
        self.attestation_type = attestation_type
        self.masks = masks or SealKeyMasks()

    def __repr__(self) -> str:
        return f"<Enclave mrenclave={self.identity.mrenclave.hex()} on {self.platform!r}>"

    def seal_key(self, name: str) -> bytes:
        """The 16-byte key ``_sgx_mrenclave`` or ``_sgx_mrsigner`` (KeyError for another name)."""
        return seal_key(self.platform, self.identity, SEAL_KEY_NAMES[name], self.masks)

    def my_target_info(self) -> bytes:
        """This enclave's TARGETINFO (512 bytes)."""
        from .report import target_info

        return target_info(self.identity)

    def report(self, target_info: bytes, report_data: bytes) -> bytes:
        """EREPORT (432 bytes) for ``target_info`` over ``report_data``."""
        from .report import ereport

        return ereport(self.platform, self.identity, target_info, report_data)

    def quote(self, report_data: bytes) -> bytes:
        """A simulated DCAP v3 quote over ``report_data``."""
        from .quote import make_quote

        return make_quote(self.platform, self.identity, report_data)
