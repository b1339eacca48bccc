"""An enclave's identity: the SECS values EINIT sets from its SIGSTRUCT (sgx-sim.md (a), (c)).

:class:`EnclaveIdentity` is what EGETKEY and EREPORT mix in: MRENCLAVE, MRSIGNER (sha256 of the
SIGSTRUCT modulus as stored), ISVPRODID, ISVSVN, the attributes (FLAGS with INIT set, XFRM),
MISCSELECT and CONFIGSVN (0: no KSS).
"""

from __future__ import annotations

import errno
import hashlib
import struct
from dataclasses import dataclass

__all__ = ["FLAG_DEBUG", "FLAG_INIT", "FLAG_MODE64BIT", "SIGSTRUCT_SIZE", "EnclaveIdentity", "IdentityError"]

FLAG_INIT = 0x1
FLAG_DEBUG = 0x2
FLAG_MODE64BIT = 0x4
SIGSTRUCT_SIZE = 1808


class IdentityError(OSError):
    """A SIGSTRUCT or identity value is malformed (errno EINVAL); ``str()`` is one line."""

    def __init__(self, message: str):
        super().__init__(errno.EINVAL, message)

    def __str__(self) -> str:
        return str(self.strerror)


def _check(name: str, value: bytes, size: int) -> bytes:
    value = bytes(value)
    if len(value) != size:
        raise IdentityError(f"{name} must be {size} bytes, not {len(value)}")
    return value


@dataclass(frozen=True)
class EnclaveIdentity:
    """The SECS values of a running enclave (``flags`` include INIT once initialised)."""

    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int = 0
    isvsvn: int = 0
    flags: int = FLAG_INIT | FLAG_MODE64BIT
    xfrm: int = 0x3
    miscselect: int = 0
    configsvn: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mrenclave", _check("MRENCLAVE", self.mrenclave, 32))
        object.__setattr__(self, "mrsigner", _check("MRSIGNER", self.mrsigner, 32))
        for name, bits in (("isvprodid", 16), ("isvsvn", 16), ("configsvn", 16), ("flags", 64), ("xfrm", 64),
                           ("miscselect", 32)):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 1 << bits:
                raise IdentityError(f"{name} must be an unsigned {bits}-bit integer, not {value!r}")

    @property
    def debug(self) -> bool:
        """Whether the enclave was signed as a debug enclave (ATTRIBUTES.DEBUG)."""
        return bool(self.flags & FLAG_DEBUG)

    @classmethod
    def from_sigstruct(cls, sig: object) -> EnclaveIdentity:
        """The identity EINIT gives an enclave signed by ``sig``: a SIGSTRUCT object with
        ``to_bytes()`` (``pal.sgx.sigstruct.Sigstruct``) or its 1808 bytes. The signature itself
        is not checked here (``Sigstruct.verify`` does that)."""
        raw = sig.to_bytes() if hasattr(sig, "to_bytes") else sig
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise IdentityError(f"expected a SIGSTRUCT, not {type(sig).__name__}")
        raw = bytes(raw)
        if len(raw) != SIGSTRUCT_SIZE:
            raise IdentityError(f"a SIGSTRUCT is {SIGSTRUCT_SIZE} bytes, not {len(raw)}")
        (miscselect,) = struct.unpack_from("<I", raw, 0x384)
        flags, xfrm = struct.unpack_from("<QQ", raw, 0x3A0)
        isvprodid, isvsvn = struct.unpack_from("<HH", raw, 0x400)
        return cls(mrenclave=raw[0x3C0:0x3E0], mrsigner=hashlib.sha256(raw[0x80:0x200]).digest(),
                   isvprodid=isvprodid, isvsvn=isvsvn, flags=flags | FLAG_INIT, xfrm=xfrm,
                   miscselect=miscselect)
