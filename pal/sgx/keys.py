"""EGETKEY in simulation: KEYREQUEST as Gramine builds it, seal and report keys (sgx-sim.md (c)).

The derivation is pfskit's convention (the SDM does not publish the hardware's), fixed by the
spec's known answers: ``key = AES-128-CMAC(platform.root_key, DD)`` over 192 bytes that hold
what the SDM's key-derivation table mixes in for that key (the seal key: the masked attributes
and the masks, OWNEREPOCH, CPUSVN and ISVSVN of the request, ISVPRODID, MRENCLAVE and/or
MRSIGNER by policy, KEYID; the report key: the target's attributes and MRENCLAVE, OWNEREPOCH,
the platform's CPUSVN, KEYID). The checks are the hardware's, with its status codes.
"""

from __future__ import annotations

import errno
import re
import struct
from dataclasses import dataclass
from typing import Any

from .identity import EnclaveIdentity
from .platform import Platform

__all__ = [
    "DEFAULT_FLAGS_MASK", "DEFAULT_MISC_MASK", "DEFAULT_XFRM_MASK", "KEYNAME_REPORT", "KEYNAME_SEAL",
    "KEYREQUEST_SIZE", "POLICY_MRENCLAVE", "POLICY_MRSIGNER", "SGX_INVALID_ATTRIBUTE", "SGX_INVALID_CPUSVN",
    "SGX_INVALID_ISVSVN", "SGX_INVALID_KEYNAME", "EgetkeyError", "KeyRequest", "KeyRequestError", "SealKeyMasks",
    "egetkey", "parse_seal_key_masks", "report_key", "seal_key", "seal_key_request",
]

KEYREQUEST_SIZE = 512
KEYNAME_EINITTOKEN, KEYNAME_PROVISION, KEYNAME_PROVISION_SEAL, KEYNAME_REPORT, KEYNAME_SEAL = 0, 1, 2, 3, 4
POLICY_MRENCLAVE = 0x1
POLICY_MRSIGNER = 0x2
_POLICY_BITS = 0x3F  # MRENCLAVE, MRSIGNER, NOISVPRODID, CONFIGID, ISVFAMILYID, ISVEXTPRODID
DEFAULT_FLAGS_MASK = 0xFFFFFFFFFFFFFFFF
DEFAULT_XFRM_MASK = 0xFFFFFFFFFFF9FF1B
DEFAULT_MISC_MASK = 0xFFFFFFFF
# EGETKEY status codes (Intel SDK egetkey_status_t)
SGX_INVALID_ATTRIBUTE = 2
SGX_INVALID_CPUSVN = 32
SGX_INVALID_ISVSVN = 64
SGX_INVALID_KEYNAME = 256
_STATUS_TEXT = {SGX_INVALID_ATTRIBUTE: "SGX_INVALID_ATTRIBUTE", SGX_INVALID_CPUSVN: "SGX_INVALID_CPUSVN",
                SGX_INVALID_ISVSVN: "SGX_INVALID_ISVSVN", SGX_INVALID_KEYNAME: "SGX_INVALID_KEYNAME"}

# KEYREQUEST (sgx_key_request_t): keyname, policy, isvsvn, reserved, cpusvn, flags mask, xfrm mask,
# keyid, miscmask, configsvn, 434 reserved bytes
_KEYREQUEST = struct.Struct("<HHH2s16sQQ32sIH434s")
_DD_SEAL = struct.Struct("<HHHH16sQQQQII16s32s32s32sH14s")
_DD_REPORT = struct.Struct("<HHQQ16s32s16s32s76s")


class EgetkeyError(OSError):
    """EGETKEY refused the request: ``status`` is the hardware's code (e.g. 64
    SGX_INVALID_ISVSVN); errno EACCES (Gramine's PAL_ERROR_DENIED)."""

    def __init__(self, status: int, message: str):
        super().__init__(errno.EACCES, f"EGETKEY: {_STATUS_TEXT.get(status, status)} ({status}): {message}")
        self.status = status

    def __str__(self) -> str:
        return str(self.strerror)


class KeyRequestError(OSError):
    """A KEYREQUEST or seal-key mask that the hardware faults on (#GP) or Gramine refuses at
    start-up (errno EINVAL)."""

    def __init__(self, message: str):
        super().__init__(errno.EINVAL, message)

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class SealKeyMasks:
    """``sgx.seal_key.{flags_mask, xfrm_mask, misc_mask}`` (Gramine's defaults)."""

    flags: int = DEFAULT_FLAGS_MASK
    xfrm: int = DEFAULT_XFRM_MASK
    misc: int = DEFAULT_MISC_MASK


@dataclass(frozen=True)
class KeyRequest:
    """A KEYREQUEST (512 bytes; see :meth:`to_bytes`)."""

    keyname: int
    keypolicy: int = 0
    isvsvn: int = 0
    cpusvn: bytes = bytes(16)
    flags_mask: int = 0
    xfrm_mask: int = 0
    keyid: bytes = bytes(32)
    misc_mask: int = 0
    configsvn: int = 0

    def to_bytes(self) -> bytes:
        """The 512 bytes of ``sgx_key_request_t``."""
        return _KEYREQUEST.pack(self.keyname, self.keypolicy, self.isvsvn, bytes(2), self.cpusvn, self.flags_mask,
                                self.xfrm_mask, self.keyid, self.misc_mask, self.configsvn, bytes(434))

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyRequest:
        """Parse 512 bytes; reserved bytes that are not zero fault (:class:`KeyRequestError`)."""
        if len(raw) != KEYREQUEST_SIZE:
            raise KeyRequestError(f"a KEYREQUEST is {KEYREQUEST_SIZE} bytes, not {len(raw)}")
        name, policy, svn, res1, cpusvn, fmask, xmask, keyid, mmask, csvn, res2 = _KEYREQUEST.unpack(raw)
        if any(res1) or any(res2):
            raise KeyRequestError("KEYREQUEST: reserved bytes are not zero (#GP)")
        return cls(name, policy, svn, cpusvn, fmask, xmask, keyid, mmask, csvn)


_MASK = {"flags_mask": 16, "xfrm_mask": 16, "misc_mask": 8}


def parse_seal_key_masks(sgx: dict[str, Any] | None) -> SealKeyMasks:
    """The masks of a manifest's ``[sgx]`` table by Gramine's rules (``update_seal_key_mask``):
    absent = default; present = ``"0x"`` + exactly 16 hex digits (8 for ``misc_mask``), a
    big-endian number. Anything else: :class:`KeyRequestError` naming the key."""
    table = (sgx or {}).get("seal_key") or {}
    if not isinstance(table, dict):
        raise KeyRequestError("sgx.seal_key: expected a table of flags_mask, xfrm_mask, misc_mask")
    values = {}
    for name, digits in _MASK.items():
        value = table.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not re.fullmatch(rf"0[xX][0-9a-fA-F]{{{digits}}}", value):
            raise KeyRequestError(f'sgx.seal_key.{name}: expected "0x" and exactly {digits} hex digits, '
                                  f"not {value!r}")
        values[name.removesuffix("_mask")] = int(value, 16)
    return SealKeyMasks(**values)


def seal_key_request(identity: EnclaveIdentity, platform: Platform, policy: int,
                     masks: SealKeyMasks | None = None) -> KeyRequest:
    """The KEYREQUEST Gramine's ``sgx_get_seal_key`` issues: SEAL_KEY, ``policy``, the enclave's
    own ISVSVN and CONFIGSVN, the current CPUSVN, the masks, KEYID 0."""
    masks = masks or SealKeyMasks()
    return KeyRequest(KEYNAME_SEAL, policy, identity.isvsvn, platform.cpusvn, masks.flags, masks.xfrm,
                      bytes(32), masks.misc, identity.configsvn)


def _cmac(key: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import algorithms
    from cryptography.hazmat.primitives.cmac import CMAC

    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def egetkey(platform: Platform, identity: EnclaveIdentity, request: KeyRequest | bytes) -> bytes:
    """The 16-byte key ``request`` gives inside the enclave ``identity`` on ``platform``.
    Raises :class:`EgetkeyError` (the hardware's status) or :class:`KeyRequestError` (a fault)."""
    req = KeyRequest.from_bytes(request) if isinstance(request, bytes | bytearray) else request
    if req.keypolicy & ~_POLICY_BITS:
        raise KeyRequestError(f"KEYREQUEST: reserved KEYPOLICY bits set ({req.keypolicy:#x}) (#GP)")
    if req.keyname not in (KEYNAME_REPORT, KEYNAME_SEAL):
        if req.keyname in (KEYNAME_EINITTOKEN, KEYNAME_PROVISION, KEYNAME_PROVISION_SEAL):
            raise EgetkeyError(SGX_INVALID_ATTRIBUTE, f"key {req.keyname} is not permitted to this enclave")
        raise EgetkeyError(SGX_INVALID_KEYNAME, f"unknown KEYNAME {req.keyname}")
    if req.isvsvn > identity.isvsvn:
        raise EgetkeyError(SGX_INVALID_ISVSVN, f"ISVSVN {req.isvsvn} is above the enclave's own ({identity.isvsvn})")
    if req.cpusvn not in (platform.cpusvn, bytes(16)):
        raise EgetkeyError(SGX_INVALID_CPUSVN, "CPUSVN is not this platform's")
    if req.configsvn > identity.configsvn:
        raise EgetkeyError(SGX_INVALID_ISVSVN, f"CONFIGSVN {req.configsvn} is above the enclave's own")
    if req.keyname == KEYNAME_REPORT:
        dd = _DD_REPORT.pack(KEYNAME_REPORT, 0, identity.flags, identity.xfrm, platform.owner_epoch,
                             identity.mrenclave, platform.cpusvn, req.keyid, bytes(76))
    else:
        cpusvn = req.cpusvn if any(req.cpusvn) else platform.cpusvn
        dd = _DD_SEAL.pack(
            KEYNAME_SEAL, req.keypolicy, req.isvsvn, identity.isvprodid, cpusvn,
            identity.flags & (req.flags_mask | 0x3), identity.xfrm & req.xfrm_mask, req.flags_mask, req.xfrm_mask,
            identity.miscselect & req.misc_mask, req.misc_mask, platform.owner_epoch,
            identity.mrenclave if req.keypolicy & POLICY_MRENCLAVE else bytes(32),
            identity.mrsigner if req.keypolicy & POLICY_MRSIGNER else bytes(32),
            req.keyid, req.configsvn, bytes(14))
    return _cmac(platform.root_key, dd)


def seal_key(platform: Platform, identity: EnclaveIdentity, policy: int, masks: SealKeyMasks | None = None) -> bytes:
    """The seal key Gramine gives as ``_sgx_mrenclave`` (``POLICY_MRENCLAVE``) or
    ``_sgx_mrsigner`` (``POLICY_MRSIGNER``)."""
    return egetkey(platform, identity, seal_key_request(identity, platform, policy, masks))


def report_key(platform: Platform, target: EnclaveIdentity, keyid: bytes) -> bytes:
    """The report key of ``target`` for ``keyid`` (what the target's EGETKEY(REPORT) returns)."""
    return egetkey(platform, target, KeyRequest(KEYNAME_REPORT, keyid=keyid))
