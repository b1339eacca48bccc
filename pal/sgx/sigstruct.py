"""SIGSTRUCT: the 1808-byte signed enclave identity of SGX, as Gramine's ``gramine-sgx-sign`` writes it.

:class:`Sigstruct` holds every field of Intel's layout (SDM Vol. 3D, "Enclave Signature
Structure"; Gramine's ``sgx_sigstruct_t``): :meth:`Sigstruct.from_bytes` checks a ``.sig`` file
and names the field that is wrong, :meth:`Sigstruct.to_bytes` writes it back byte for byte,
:meth:`Sigstruct.sign` signs it with an RSA-3072 key of exponent 3 (RSASSA-PKCS1-v1_5 with
SHA-256, plus the Q1/Q2 values EINIT needs) and :meth:`Sigstruct.verify` checks the signature
the way EINIT does (``s^3 mod n`` against the padded digest). MRSIGNER is SHA-256 of the
modulus bytes as stored. :func:`enclave_attributes` computes the attribute fields from a
manifest's ``[sgx]`` table. docs/signing.md says what is byte-compatible and how it is checked.
"""

from __future__ import annotations

import dataclasses
import errno as _errno
import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HEADER", "HEADER2", "SIGSTRUCT_SIZE", "Sigstruct", "SigstructError", "SignatureError", "SigningKeyError",
    "enclave_attributes", "check_private_key", "load_private_key",
]

SIGSTRUCT_SIZE = 1808
HEADER = bytes.fromhex("06000000e10000000000010000000000")
HEADER2 = bytes.fromhex("01010000600000006000000001000000")
RSA_KEY_BITS = 3072
RSA_EXPONENT = 3
RSA_BYTES = RSA_KEY_BITS // 8

FLAGS_DEBUG = 0x2
FLAGS_MODE64BIT = 0x4
MISCSELECT_EXINFO = 0x1
FLAGS_MASK = 0xFFFFFFFFFFFFFFFF
MISC_MASK = 0xFFFFFFFF
XFRM_LEGACY = 0x3
XFRM_MASK = 0xFFFFFFFFFFF9FF1B
# sgx.cpu_features: "unspecified" allowed / not allowed (Gramine's "security hardening" set)
XFRM_FEATURES = {"avx": 0x4, "avx512": 0xE4, "amx": 0x60000}
XFRM_SECURE_FEATURES = {"mpx": 0x18, "pkru": 0x200}

# PKCS#1 v1.5 DigestInfo prefix of SHA-256 (RFC 8017, section 9.2, note 1)
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class SigstructError(OSError):
    """A SIGSTRUCT (or its key) is malformed or does not verify; ``str()`` is one line naming
    the field. ``errno`` EINVAL."""

    default_errno = _errno.EINVAL

    def __init__(self, message: str, *, errno: int | None = None, field: str = ""):
        super().__init__(self.default_errno if errno is None else errno, message)
        self.field = field

    def __str__(self) -> str:
        return str(self.strerror)


class SignatureError(SigstructError):
    """The signature does not verify against the SIGSTRUCT's modulus (EINIT would refuse it);
    ``errno`` EACCES."""

    default_errno = _errno.EACCES


class SigningKeyError(SigstructError):
    """A signing key SGX can't use (not RSA, not 3072 bits, exponent not 3, unreadable PEM)."""


# name -> (offset, struct format); every byte of the 1808 is one of these or reserved
_FIELDS: dict[str, tuple[int, str]] = {
    "header": (0x000, "16s"),
    "vendor": (0x010, "<I"),
    "date": (0x014, "<I"),  # BCD yyyymmdd, decoded into date_year/month/day
    "header2": (0x018, "16s"),
    "swdefined": (0x028, "<I"),
    "modulus": (0x080, "384s"),
    "exponent": (0x200, "<I"),
    "signature": (0x204, "384s"),
    "misc_select": (0x384, "<I"),
    "misc_mask": (0x388, "<I"),
    "cet_attributes": (0x38C, "<B"),
    "cet_attributes_mask": (0x38D, "<B"),
    "isv_family_id": (0x390, "16s"),
    "attribute_flags": (0x3A0, "<Q"),
    "attribute_xfrms": (0x3A8, "<Q"),
    "attribute_flags_mask": (0x3B0, "<Q"),
    "attribute_xfrm_mask": (0x3B8, "<Q"),
    "enclave_hash": (0x3C0, "32s"),
    "isv_ext_prod_id": (0x3F0, "16s"),
    "isv_prod_id": (0x400, "<H"),
    "isv_svn": (0x402, "<H"),
    "q1": (0x410, "384s"),
    "q2": (0x590, "384s"),
}
# (offset, size) of the reserved ranges: zero in every SIGSTRUCT Gramine writes
_RESERVED = ((0x02C, 84), (0x38E, 2), (0x3E0, 16), (0x404, 12))
_SIGNED_RANGES = ((0x000, 0x080), (0x384, 0x404))


def _bcd(value: int, digits: int, what: str) -> int:
    """The decimal number the ``digits`` hex digits of ``value`` spell (BCD)."""
    text = f"{value:0{digits}x}"
    if not text.isdigit():
        raise SigstructError(f"SIGSTRUCT DATE field: {what} 0x{text} is not binary-coded decimal", field="date")
    return int(text)


def _to_bcd(value: int, digits: int, what: str) -> int:
    if not 0 <= value < 10 ** digits:
        raise SigstructError(f"SIGSTRUCT DATE: {what} {value} does not fit {digits} decimal digits", field="date")
    return int(str(value), 16)


@dataclass
class Sigstruct:
    """Every field of a SIGSTRUCT (Gramine's names; integers as numbers, byte strings as stored,
    the 384-byte RSA values little-endian). The defaults are the constants Gramine writes."""

    header: bytes = HEADER
    vendor: int = 0
    date_year: int = 0
    date_month: int = 0
    date_day: int = 0
    header2: bytes = HEADER2
    swdefined: int = 0
    modulus: bytes = bytes(RSA_BYTES)
    exponent: int = 0
    signature: bytes = bytes(RSA_BYTES)
    misc_select: int = 0
    misc_mask: int = MISC_MASK
    cet_attributes: int = 0
    cet_attributes_mask: int = 0
    isv_family_id: bytes = bytes(16)
    attribute_flags: int = 0
    attribute_xfrms: int = 0
    attribute_flags_mask: int = FLAGS_MASK
    attribute_xfrm_mask: int = XFRM_MASK
    enclave_hash: bytes = bytes(32)
    isv_ext_prod_id: bytes = bytes(16)
    isv_prod_id: int = 0
    isv_svn: int = 0
    q1: bytes = bytes(RSA_BYTES)
    q2: bytes = bytes(RSA_BYTES)

    def __repr__(self) -> str:  # the 384-byte values would fill a screen
        return (f"Sigstruct(mrenclave={self.enclave_hash.hex()}, mrsigner={self.mrsigner.hex()}, "
                f"isv_prod_id={self.isv_prod_id}, isv_svn={self.isv_svn}, flags={self.attribute_flags:#x}, "
                f"date={self.date})")

    # ------------------------------------------------------------------ bytes

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Sigstruct:
        """Parse a ``.sig`` file's bytes; :class:`SigstructError` names what is wrong (size,
        HEADER, HEADER2, DATE, EXPONENT, a reserved range). The signature is not checked here
        (:meth:`verify` does)."""
        data = bytes(data)
        if len(data) != SIGSTRUCT_SIZE:
            raise SigstructError(f"a SIGSTRUCT is {SIGSTRUCT_SIZE} bytes, this one has {len(data)}", field="size")
        raw = {name: struct.unpack_from(fmt, data, off)[0] for name, (off, fmt) in _FIELDS.items()}
        if raw["header"] != HEADER:
            raise SigstructError(f"SIGSTRUCT HEADER is {raw['header'].hex()}, expected {HEADER.hex()}", field="header")
        if raw["header2"] != HEADER2:
            raise SigstructError(f"SIGSTRUCT HEADER2 is {raw['header2'].hex()}, expected {HEADER2.hex()}",
                                 field="header2")
        if raw["exponent"] != RSA_EXPONENT:
            raise SigstructError(f"SIGSTRUCT EXPONENT is {raw['exponent']}, SGX requires {RSA_EXPONENT}",
                                 field="exponent")
        for off, size in _RESERVED:
            if any(data[off:off + size]):
                raise SigstructError(f"SIGSTRUCT reserved bytes 0x{off:03x}..0x{off + size - 1:03x} are not zero",
                                     field="reserved")
        date = raw.pop("date")
        return cls(**raw, date_year=_bcd(date >> 16, 4, "year"), date_month=_bcd((date >> 8) & 0xFF, 2, "month"),
                   date_day=_bcd(date & 0xFF, 2, "day"))

    def to_bytes(self) -> bytes:
        """The 1808 bytes (reserved ranges zero)."""
        buf = bytearray(SIGSTRUCT_SIZE)
        values = dataclasses.asdict(self)
        values["date"] = ((_to_bcd(self.date_year, 4, "year") << 16) | (_to_bcd(self.date_month, 2, "month") << 8)
                          | _to_bcd(self.date_day, 2, "day"))
        for name, (off, fmt) in _FIELDS.items():
            value = values[name]
            if fmt.endswith("s") and len(value) != struct.calcsize(fmt):
                raise SigstructError(f"SIGSTRUCT {name.upper()} must be {struct.calcsize(fmt)} bytes, "
                                     f"not {len(value)}", field=name)
            try:
                struct.pack_into(fmt, buf, off, value)
            except struct.error:
                raise SigstructError(f"SIGSTRUCT {name.upper()} value {value!r} does not fit its field",
                                     field=name) from None
        return bytes(buf)

    def signing_data(self) -> bytes:
        """The 256 signed bytes: SIGSTRUCT[0x000:0x080] and SIGSTRUCT[0x384:0x404]."""
        data = self.to_bytes()
        return b"".join(data[start:end] for start, end in _SIGNED_RANGES)

    # ------------------------------------------------------------------ identity

    @property
    def date(self) -> str:
        """The DATE field as ``YYYY-MM-DD`` (as gramine-sgx-sigstruct-view prints it)."""
        return f"{self.date_year:04}-{self.date_month:02}-{self.date_day:02}"

    @property
    def mrenclave(self) -> bytes:
        """ENCLAVEHASH: the enclave's MRENCLAVE."""
        return self.enclave_hash

    @property
    def mrsigner(self) -> bytes:
        """MRSIGNER: SHA-256 of the 384 MODULUS bytes as stored (little-endian)."""
        return hashlib.sha256(self.modulus).digest()

    @property
    def debug(self) -> bool:
        """Whether ATTRIBUTES.FLAGS has DEBUG."""
        return bool(self.attribute_flags & FLAGS_DEBUG)

    # ------------------------------------------------------------------ signature

    def sign(self, private_key: Any) -> None:
        """Sign in place with ``private_key`` (a ``cryptography`` RSA private key of 3072 bits
        and exponent 3, else :class:`SigningKeyError`): sets MODULUS, EXPONENT, SIGNATURE, Q1, Q2."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        check_private_key(private_key)
        numbers = private_key.public_key().public_numbers()
        s = int.from_bytes(private_key.sign(self.signing_data(), padding.PKCS1v15(), hashes.SHA256()), "big")
        n = numbers.n
        q1, rest = divmod(s * s, n)
        q2 = rest * s // n
        self.modulus = n.to_bytes(RSA_BYTES, "little")
        self.exponent = numbers.e
        self.signature = s.to_bytes(RSA_BYTES, "little")
        self.q1 = q1.to_bytes(RSA_BYTES, "little")
        self.q2 = q2.to_bytes(RSA_BYTES, "little")
        try:
            self.verify()  # a key whose numbers are wrong must not produce a .sig
        except SignatureError:
            self.signature = self.q1 = self.q2 = bytes(RSA_BYTES)
            raise SigningKeyError("invalid RSA key: it made a signature that does not verify (its private "
                                  "numbers are inconsistent)") from None

    def verify(self) -> None:
        """Check the signature as EINIT does: a 3072-bit modulus, exponent 3, ``s < n``,
        ``s^3 mod n`` equal to the PKCS#1 v1.5 encoding of SHA-256 of :meth:`signing_data`, and
        Q1/Q2 consistent with ``s``. Raises :class:`SignatureError` naming the failed check."""
        n = int.from_bytes(self.modulus, "little")
        s = int.from_bytes(self.signature, "little")
        if n.bit_length() != RSA_KEY_BITS:
            raise SignatureError(f"SIGSTRUCT MODULUS is a {n.bit_length()}-bit number, SGX requires {RSA_KEY_BITS}",
                                 field="modulus")
        if self.exponent != RSA_EXPONENT:
            raise SignatureError(f"SIGSTRUCT EXPONENT is {self.exponent}, SGX requires {RSA_EXPONENT}",
                                 field="exponent")
        if s >= n:
            raise SignatureError("SIGSTRUCT SIGNATURE is not below the modulus", field="signature")
        digest = hashlib.sha256(self.signing_data()).digest()
        padded = _SHA256_DIGEST_INFO + digest
        em = b"\x00\x01" + b"\xff" * (RSA_BYTES - 3 - len(padded)) + b"\x00" + padded
        if pow(s, RSA_EXPONENT, n) != int.from_bytes(em, "big"):
            raise SignatureError("SIGSTRUCT signature does not verify: the signed fields or the signature were "
                                 "changed after signing, or another key signed it", field="signature")
        q1, rest = divmod(s * s, n)
        if self.q1 != q1.to_bytes(RSA_BYTES, "little"):
            raise SignatureError("SIGSTRUCT Q1 does not match the signature", field="q1")
        if self.q2 != (rest * s // n).to_bytes(RSA_BYTES, "little"):
            raise SignatureError("SIGSTRUCT Q2 does not match the signature", field="q2")

    def verifies(self) -> bool:
        """Whether :meth:`verify` passes."""
        try:
            self.verify()
        except SignatureError:
            return False
        return True

    # ------------------------------------------------------------------ making one

    @classmethod
    def for_enclave(cls, mrenclave: bytes, sgx: Mapping[str, Any], *, date: tuple[int, int, int]) -> Sigstruct:
        """The to-be-signed SIGSTRUCT of an enclave (Gramine's ``get_tbssigstruct``): MRENCLAVE,
        ``date`` as (year, month, day), ISVPRODID/ISVSVN and attributes from the final manifest's
        ``[sgx]`` table."""
        if len(mrenclave) != 32:
            raise SigstructError(f"MRENCLAVE must be 32 bytes, not {len(mrenclave)}", field="enclave_hash")
        flags, misc, xfrm, xfrm_mask = enclave_attributes(sgx)
        year, month, day = date
        sig = cls(date_year=year, date_month=month, date_day=day, enclave_hash=bytes(mrenclave),
                  isv_prod_id=_u16(sgx, "isvprodid"), isv_svn=_u16(sgx, "isvsvn"), attribute_flags=flags,
                  misc_select=misc, attribute_xfrms=xfrm, attribute_xfrm_mask=xfrm_mask)
        sig.to_bytes()  # every field fits (the date's digits too)
        return sig


def _u16(sgx: Mapping[str, Any], key: str) -> int:
    value = sgx.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise SigstructError(f"sgx.{key} must be an integer from 0 to 65535, not {value!r}", field=key)
    return value


def enclave_attributes(sgx: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """``(flags, misc_select, xfrm, xfrm_mask)`` of a final manifest's ``[sgx]`` table, as
    Gramine's ``get_enclave_attributes``: MODE64BIT, DEBUG if ``sgx.debug``; EXINFO if
    ``sgx.use_exinfo``; XFRM x87+SSE adjusted by ``sgx.cpu_features`` ("required" sets the
    feature's bits in XFRM and mask, "disabled" clears them in XFRM and sets them in the mask;
    "unspecified" is allowed for avx, avx512, amx only)."""
    flags = FLAGS_MODE64BIT | (FLAGS_DEBUG if sgx.get("debug") is True else 0)
    misc = MISCSELECT_EXINFO if sgx.get("use_exinfo") is True else 0
    xfrm, mask = XFRM_LEGACY, XFRM_MASK
    features = sgx.get("cpu_features", {})
    if not isinstance(features, Mapping):
        raise SigstructError("sgx.cpu_features must be a table", field="cpu_features")
    for table, unspecified_ok in ((XFRM_FEATURES, True), (XFRM_SECURE_FEATURES, False)):
        for name, bits in table.items():
            if name not in features:
                continue
            value = features[name]
            if value == "required":
                xfrm, mask = xfrm | bits, mask | bits
            elif value == "disabled":
                xfrm, mask = xfrm & ~bits, mask | bits
            elif not (unspecified_ok and value == "unspecified"):
                allowed = '"required", "disabled"' + (' or "unspecified"' if unspecified_ok else "")
                raise SigstructError(f"sgx.cpu_features.{name} = {value!r} is not allowed (use {allowed})",
                                     field=f"cpu_features.{name}")
    return flags, misc, xfrm, mask


# ---------------------------------------------------------------------- keys

def check_private_key(private_key: Any) -> None:
    """Refuse (:class:`SigningKeyError`) a key that is not RSA-3072 with exponent 3."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise SigningKeyError(f"invalid key: expected an RSA private key, found {type(private_key).__name__}")
    if private_key.key_size != RSA_KEY_BITS:
        raise SigningKeyError(f"invalid RSA key: expected key size {RSA_KEY_BITS}, got {private_key.key_size}")
    exponent = private_key.public_key().public_numbers().e
    if exponent != RSA_EXPONENT:
        raise SigningKeyError(f"invalid RSA key: expected exponent {RSA_EXPONENT}, got {exponent}")


def load_private_key(pem: bytes, *, name: str = "key") -> Any:
    """The RSA private key in the PEM bytes ``pem`` (unencrypted), checked with
    :func:`check_private_key`; ``name`` (the file) is used in messages, never the key."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        # OpenSSL's key check (primality of p and q) costs ~0.4 s for RSA-3072; _check_numbers
        # checks what the signature depends on, and sign() verifies what it made
        key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        raise SigningKeyError(f"signing key '{name}' is encrypted with a passphrase; pfskit reads only "
                              "unencrypted keys (decrypt it with 'openssl rsa')") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        kind = type(exc).__name__
        raise SigningKeyError(f"signing key '{name}' is not a PEM private key ({kind}); make one with "
                              "'libos gen-private-key'") from None
    try:
        check_private_key(key)
        _check_numbers(key)
    except SigningKeyError as exc:
        raise SigningKeyError(f"signing key '{name}': {exc}") from None
    return key


def _check_numbers(private_key: Any) -> None:
    """The RSA key's numbers are consistent (n = p·q, d an inverse of e, the CRT values derived
    from them), so its CRT signatures are correct and reveal nothing."""
    numbers = private_key.private_numbers()
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    p, q, d = numbers.p, numbers.q, numbers.d
    lam = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    if (p * q != n or p < 3 or q < 3 or (e * d) % lam != 1 or numbers.dmp1 != d % (p - 1)
            or numbers.dmq1 != d % (q - 1) or (numbers.iqmp * q) % p != 1):
        raise SigningKeyError("invalid RSA key: its private numbers are inconsistent (a damaged key file?)")
