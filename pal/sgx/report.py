"""REPORT, TARGETINFO and EREPORT in simulation, and report verification (sgx-sim.md (d)).

``REPORT`` (432 bytes) = BODY (384) + KEYID (32) + MAC (16); the MAC is AES-128-CMAC over the
body with the *target* enclave's report key (:func:`pal.sgx.keys.report_key`), so only the
target (on the same platform) can check it: :func:`verify_report`.
"""

from __future__ import annotations

import errno
import hmac
import struct
from dataclasses import dataclass

from .identity import EnclaveIdentity
from .keys import _cmac, report_key
from .platform import Platform

__all__ = [
    "REPORT_BODY_SIZE", "REPORT_DATA_SIZE", "REPORT_SIZE", "TARGET_INFO_SIZE", "ReportBody", "ReportError",
    "ereport", "report_body", "target_info", "verify_report",
]

REPORT_BODY_SIZE = 384
REPORT_SIZE = 432
TARGET_INFO_SIZE = 512
REPORT_DATA_SIZE = 64
_BODY = struct.Struct("<16sIB11s16sQQ32s32s32s32s64sHHH42s16s64s")
_TARGET = struct.Struct("<32sQQBBHI8s64s384s")


class ReportError(OSError):
    """A REPORT or TARGETINFO is malformed, or a REPORT's MAC does not verify (errno EINVAL /
    EACCES); ``str()`` is one line."""

    def __init__(self, message: str, *, errno: int = errno.EINVAL):
        super().__init__(errno, message)

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class ReportBody:
    """The fields of a REPORT.BODY (also the report body of a quote)."""

    cpusvn: bytes
    miscselect: int
    flags: int
    xfrm: int
    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    configsvn: int
    report_data: bytes
    cet_attributes: int = 0
    isvextprodid: bytes = bytes(16)
    configid: bytes = bytes(64)
    isvfamilyid: bytes = bytes(16)

    def to_bytes(self) -> bytes:
        """The 384 bytes of ``sgx_report_body_t``."""
        return _BODY.pack(self.cpusvn, self.miscselect, self.cet_attributes, bytes(11), self.isvextprodid,
                          self.flags, self.xfrm, self.mrenclave, bytes(32), self.mrsigner, bytes(32), self.configid,
                          self.isvprodid, self.isvsvn, self.configsvn, bytes(42), self.isvfamilyid,
                          self.report_data)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ReportBody:
        """Parse 384 bytes; ``reserved`` (the names of reserved fields that are not zero) is
        checked by :meth:`reserved_set`."""
        if len(raw) != REPORT_BODY_SIZE:
            raise ReportError(f"a report body is {REPORT_BODY_SIZE} bytes, not {len(raw)}")
        (cpusvn, misc, cet, _r1, extprod, flags, xfrm, mre, _r2, mrs, _r3, configid, prod, svn, csvn, _r4, family,
         data) = _BODY.unpack(raw)
        return cls(cpusvn, misc, flags, xfrm, mre, mrs, prod, svn, csvn, data, cet, extprod, configid, family)

    @staticmethod
    def reserved_set(raw: bytes) -> list[str]:
        """The reserved fields of a 384-byte body that are not zero (offsets as names)."""
        spans = ((0x15, 11), (0x60, 32), (0xA0, 32), (0x106, 42))
        return [f"reserved@{off:#x}" for off, size in spans if any(raw[off:off + size])]

    def identity(self) -> EnclaveIdentity:
        """The enclave identity this body states."""
        return EnclaveIdentity(self.mrenclave, self.mrsigner, self.isvprodid, self.isvsvn, self.flags, self.xfrm,
                               self.miscselect, self.configsvn)


def report_body(platform: Platform, identity: EnclaveIdentity, report_data: bytes) -> ReportBody:
    """The REPORT.BODY the enclave ``identity`` gets on ``platform`` for ``report_data``."""
    if len(report_data) != REPORT_DATA_SIZE:
        raise ReportError(f"report data is {REPORT_DATA_SIZE} bytes, not {len(report_data)}")
    return ReportBody(platform.cpusvn, identity.miscselect, identity.flags, identity.xfrm, identity.mrenclave,
                      identity.mrsigner, identity.isvprodid, identity.isvsvn, identity.configsvn, bytes(report_data))


def target_info(identity: EnclaveIdentity) -> bytes:
    """The 512-byte TARGETINFO of ``identity`` (``sgx_report_body_to_target_info``)."""
    return _TARGET.pack(identity.mrenclave, identity.flags, identity.xfrm, 0, 0, identity.configsvn,
                        identity.miscselect, bytes(8), bytes(64), bytes(384))


def _target(raw: bytes) -> EnclaveIdentity:
    if len(raw) != TARGET_INFO_SIZE:
        raise ReportError(f"a TARGETINFO is {TARGET_INFO_SIZE} bytes, not {len(raw)}")
    mrenclave, flags, xfrm, _cet, _res, configsvn, misc, *_ = _TARGET.unpack(raw)
    # only MRENCLAVE and the attributes go into a report key: MRSIGNER is not part of a TARGETINFO
    return EnclaveIdentity(mrenclave, bytes(32), 0, 0, flags, xfrm, misc, configsvn)


def ereport(platform: Platform, identity: EnclaveIdentity, target: bytes, report_data: bytes) -> bytes:
    """EREPORT: the 432-byte REPORT of enclave ``identity`` for the TARGETINFO ``target`` (512
    bytes; all zero is allowed: a report nobody but a zero target can check), with
    ``report_data`` (64 bytes); KEYID = the platform's report KEYID."""
    body = report_body(platform, identity, report_data).to_bytes()
    key = report_key(platform, _target(bytes(target)), platform.report_keyid)
    return body + platform.report_keyid + _cmac(key, body)


def verify_report(platform: Platform, me: EnclaveIdentity, report: bytes) -> ReportBody:
    """Check ``report`` as the target enclave ``me`` does (Gramine's ``sgx_verify_report``:
    EGETKEY(REPORT, the report's KEYID), CMAC over the body, constant-time compare); the body.
    Raises :class:`ReportError` (EACCES) if the MAC does not verify."""
    if len(report) != REPORT_SIZE:
        raise ReportError(f"a REPORT is {REPORT_SIZE} bytes, not {len(report)}")
    body, keyid, mac = report[:REPORT_BODY_SIZE], report[REPORT_BODY_SIZE:0x1A0], report[0x1A0:]
    key = report_key(platform, me, bytes(keyid))
    if not hmac.compare_digest(_cmac(key, bytes(body)), bytes(mac)):
        raise ReportError("REPORT MAC does not verify (not made for this enclave on this platform, or changed)",
                          errno=errno.EACCES)
    return ReportBody.from_bytes(bytes(body))
