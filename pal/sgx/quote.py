"""A simulated DCAP quote, version 3 (sgx-sim.md (d)), and its verification.

Made as the DCAP stack makes one: the application enclave's REPORT targeted at the (simulated)
Quoting Enclave, checked by the QE with its report key, then the header and report body signed
with the platform's ECDSA P-256 *attestation key*; the QE's own report body binds that key
(REPORTDATA = sha256(attestation key ‖ QE auth data)) and is signed by the platform's *PCK*
key, whose certificate chain (leaf, platform CA, root CA; PEM, certification data type 5) is
carried in the quote. Every key is derived from the platform's root key, so a platform file
is one machine; the chain's names all say "pfskit simulated", and a verifier that checks
Intel's root rightly refuses it. :func:`verify_quote` checks it against the simulated root of
the given platform and refuses a changed byte anywhere, naming the field that failed.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import hmac
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any

from .identity import EnclaveIdentity
from .platform import Platform
from .report import REPORT_BODY_SIZE, ReportBody, ereport, target_info, verify_report

__all__ = ["CERT_TYPE_PCK_CHAIN", "INTEL_QE_VENDOR_ID", "QE_IDENTITY", "QuoteError", "QuoteInfo", "make_quote",
           "parse_quote", "verify_quote"]

QUOTE_VERSION = 3
ATT_KEY_TYPE_ECDSA_P256 = 2
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
CERT_TYPE_PCK_CHAIN = 5
QE_SVN, PCE_SVN = 8, 13  # simulated TCB levels of the QE and the PCE
QE_AUTH_DATA = bytes(range(32))  # Intel's QE3 sends 32 bytes of authentication data
HEADER_SIZE = 48
_HEADER = struct.Struct("<HHIHH16s20s")
#: the simulated Quoting Enclave (its identity is public, as Intel's QE identity is)
QE_IDENTITY = EnclaveIdentity(mrenclave=hashlib.sha256(b"pfskit simulated quoting enclave").digest(),
                              mrsigner=hashlib.sha256(b"pfskit simulated quoting enclave signer").digest(),
                              isvprodid=1, isvsvn=QE_SVN, flags=0x15, xfrm=0x3)
_NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(2099, 12, 31, tzinfo=datetime.UTC)
_NAMES = ("pfskit simulated SGX Root CA", "pfskit simulated SGX PCK Platform CA",
          "pfskit simulated SGX PCK Certificate")


class QuoteError(OSError):
    """A quote is malformed, its signature chain does not verify, or a field is not what was
    expected; ``field`` names it (e.g. ``"mrenclave"``, ``"isv_report_signature"``). errno
    EINVAL (malformed) or EACCES (refused)."""

    def __init__(self, field_name: str, message: str, *, errno: int = errno.EACCES):
        super().__init__(errno, f"quote: {field_name}: {message}")
        self.field = field_name

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class QuoteInfo:
    """What a quote says: the header, the application's report body, the QE's, the keys."""

    version: int
    att_key_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    qe_id: bytes
    body: ReportBody
    attestation_key: bytes
    qe_body: ReportBody
    qe_auth_data: bytes
    cert_type: int
    certs: list[str] = field(default_factory=list)  # subjects, leaf first
    verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view (hex for bytes)."""
        def body(b: ReportBody) -> dict[str, Any]:
            return {"cpusvn": b.cpusvn.hex(), "miscselect": f"{b.miscselect:#x}", "attributes.flags": f"{b.flags:#x}",
                    "attributes.xfrm": f"{b.xfrm:#x}", "mr_enclave": b.mrenclave.hex(), "mr_signer": b.mrsigner.hex(),
                    "isv_prod_id": b.isvprodid, "isv_svn": b.isvsvn, "config_svn": b.configsvn,
                    "report_data": b.report_data.hex()}
        return {"version": self.version, "att_key_type": self.att_key_type, "qe_svn": self.qe_svn,
                "pce_svn": self.pce_svn, "qe_vendor_id": self.qe_vendor_id.hex(), "qe_id": self.qe_id.hex(),
                "report_body": body(self.body), "attestation_key": self.attestation_key.hex(),
                "qe_report_body": body(self.qe_body), "qe_auth_data": self.qe_auth_data.hex(),
                "certification_data_type": self.cert_type, "certificates": self.certs, "verified": self.verified}


# ---------------------------------------------------------------------------------------------- keys


def _derive(platform: Platform, label: str) -> bytes:
    return hmac.new(platform.root_key, b"pfskit simulated SGX: " + label.encode(), hashlib.sha256).digest()


def _ec_key(platform: Platform, label: str):
    from cryptography.hazmat.primitives.asymmetric import ec

    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = int.from_bytes(_derive(platform, label) + _derive(platform, label + " 2"), "big") % (order - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


_CHAINS: dict[bytes, tuple[Any, bytes, list[Any]]] = {}


def _chain(platform: Platform) -> tuple[Any, bytes, list[Any]]:
    """(PCK private key, the PEM chain leaf first, the certificates) of ``platform``."""
    tag = hashlib.sha256(platform.root_key).digest()
    cached = _CHAINS.get(tag)
    if cached is not None:
        return cached
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    keys = [_ec_key(platform, "root CA"), _ec_key(platform, "platform CA"), _ec_key(platform, "PCK")]
    names = [x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pfskit (simulated, not Intel)"),
                        x509.NameAttribute(NameOID.COMMON_NAME, n)]) for n in _NAMES]
    certs = []
    for i, key in enumerate(keys):
        issuer = max(i - 1, 0)
        serial = int.from_bytes(_derive(platform, f"serial {i}")[:16], "big") >> 1
        builder = (x509.CertificateBuilder().subject_name(names[i]).issuer_name(names[issuer])
                   .public_key(key.public_key()).serial_number(serial or 1)
                   .not_valid_before(_NOT_BEFORE).not_valid_after(_NOT_AFTER)
                   .add_extension(x509.BasicConstraints(ca=i < 2, path_length=None), critical=True))
        certs.append(builder.sign(keys[issuer], hashes.SHA256()))
    certs.reverse()
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    _CHAINS[tag] = cached = (keys[2], pem, certs)
    return cached


def _sign(key, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _verify(public_key, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def _point(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return raw[1:]


# ---------------------------------------------------------------------------------------------- quote


def make_quote(platform: Platform, identity: EnclaveIdentity, report_data: bytes) -> bytes:
    """The DCAP v3 quote of enclave ``identity`` on ``platform`` over ``report_data`` (64 bytes)."""
    report = ereport(platform, identity, target_info(QE_IDENTITY), report_data)
    body = verify_report(platform, QE_IDENTITY, report)  # what the QE does before it signs
    qe_id = _derive(platform, "QE ID")[:16]
    header = _HEADER.pack(QUOTE_VERSION, ATT_KEY_TYPE_ECDSA_P256, 0, QE_SVN, PCE_SVN, INTEL_QE_VENDOR_ID,
                          qe_id + bytes(4))
    signed = header + body.to_bytes()
    att_key = _ec_key(platform, "attestation key")
    att_pub = _point(att_key)
    qe_body = ereport(platform, QE_IDENTITY, bytes(512),
                      hashlib.sha256(att_pub + QE_AUTH_DATA).digest() + bytes(32))[:REPORT_BODY_SIZE]
    pck_key, pem, _ = _chain(platform)
    sig_data = b"".join((_sign(att_key, signed), att_pub, qe_body, _sign(pck_key, qe_body),
                         struct.pack("<H", len(QE_AUTH_DATA)), QE_AUTH_DATA,
                         struct.pack("<HI", CERT_TYPE_PCK_CHAIN, len(pem)), pem))
    return signed + struct.pack("<I", len(sig_data)) + sig_data


def _malformed(name: str, message: str) -> QuoteError:
    return QuoteError(name, message, errno=errno.EINVAL)


def _parse(quote: bytes) -> tuple[QuoteInfo, dict[str, bytes]]:
    quote = bytes(quote)
    if len(quote) < HEADER_SIZE + REPORT_BODY_SIZE + 4:
        raise _malformed("length", f"{len(quote)} bytes is too short for a DCAP quote (at least 436)")
    version, key_type, data0, qe_svn, pce_svn, vendor, user_data = _HEADER.unpack_from(quote)
    if version != QUOTE_VERSION:
        raise _malformed("version", f"{version} (expected 3: DCAP quote version 3)")
    if key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise _malformed("att_key_type", f"{key_type} (expected 2: ECDSA-256-with-P-256)")
    if data0 != 0:
        raise _malformed("att_key_data_0", f"{data0:#x} (reserved, expected 0)")
    body_raw = quote[HEADER_SIZE:HEADER_SIZE + REPORT_BODY_SIZE]
    (sig_len,) = struct.unpack_from("<I", quote, 0x1B0)
    sig = quote[0x1B4:]
    if sig_len != len(sig):
        raise _malformed("signature_data_len", f"{sig_len}, but {len(sig)} bytes follow")
    if len(sig) < 578:
        raise _malformed("signature_data", f"{len(sig)} bytes is too short (at least 578)")
    (auth_len,) = struct.unpack_from("<H", sig, 576)
    if 578 + auth_len + 6 > len(sig):
        raise _malformed("qe_auth_data_size", f"{auth_len} runs past the end of the quote")
    auth = sig[578:578 + auth_len]
    cert_type, cert_len = struct.unpack_from("<HI", sig, 578 + auth_len)
    cert = sig[584 + auth_len:]
    if cert_len != len(cert):
        raise _malformed("certification_data_size", f"{cert_len}, but {len(cert)} bytes follow")
    parts = {"signed": quote[:0x1B0], "isv_sig": sig[0:64], "att_pub": sig[64:128], "qe_body": sig[128:512],
             "qe_sig": sig[512:576], "auth": auth, "cert": cert, "body": body_raw}
    info = QuoteInfo(version, key_type, qe_svn, pce_svn, vendor, user_data[:16], ReportBody.from_bytes(body_raw),
                     sig[64:128], ReportBody.from_bytes(sig[128:512]), auth, cert_type)
    return info, parts


def _certs(cert: bytes) -> list[Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a certificate cryptography only warns about is a changed one
            certs = x509.load_pem_x509_certificates(cert)
    except (ValueError, Warning):
        raise QuoteError("certification_data", "not a PEM certificate chain") from None
    if len(certs) != 3:
        raise QuoteError("certification_data", f"{len(certs)} certificates (expected PCK, platform CA, root CA)")
    if b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs) != cert:
        raise QuoteError("certification_data", "not exactly the PEM of its certificates (bytes changed)")
    return certs


def parse_quote(quote: bytes) -> QuoteInfo:
    """The fields of ``quote`` (nothing is verified: see :func:`verify_quote`). Raises
    :class:`QuoteError` (EINVAL) for a quote whose structure is broken."""
    info, parts = _parse(quote)
    subjects: list[str] = []
    if info.cert_type == CERT_TYPE_PCK_CHAIN:
        try:
            subjects = [c.subject.rfc4514_string() for c in _certs(parts["cert"])]
        except QuoteError:
            subjects = []
    return QuoteInfo(**{**info.__dict__, "certs": subjects})


def _expect_hex(name: str, got: bytes, want: bytes | None) -> None:
    if want is not None and not hmac.compare_digest(got, bytes(want)):
        raise QuoteError(name, f"is {got.hex()}, expected {bytes(want).hex()}")


def _check_chain(cert: bytes, platform: Platform) -> tuple[list[str], Any]:
    """The subjects (leaf first) and the PCK public key of a chain that ends at ``platform``'s
    simulated root; :class:`QuoteError` otherwise."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    leaf, inter, root = _certs(cert)
    _, _, mine = _chain(platform)
    try:
        if root.public_key() != mine[2].public_key() or root.subject != mine[2].subject:
            raise QuoteError("certification_data", "the root CA is not the simulated root of this platform "
                             f"({platform.path or 'in memory'}): another machine's quote, or not pfskit's")
        for c, issuer, name in ((root, root, "root CA"), (inter, root, "platform CA"), (leaf, inter, "PCK")):
            try:
                c.verify_directly_issued_by(issuer)
            except (TypeError, InvalidSignature):
                raise QuoteError("certification_data", f"the {name} certificate is not signed by its issuer") from None
        return [c.subject.rfc4514_string() for c in (leaf, inter, root)], leaf.public_key()
    except (ValueError, UnsupportedAlgorithm):  # cryptography parses some fields only when they are used
        raise QuoteError("certification_data", "a certificate of the chain is malformed") from None


def verify_quote(quote: bytes, *, platform: Platform, mrenclave: bytes | None = None, mrsigner: bytes | None = None,
                 isv_prod_id: int | None = None, min_isv_svn: int | None = None,
                 report_data: bytes | None = None) -> QuoteInfo:
    """Check ``quote``: its structure, the PCK chain up to ``platform``'s simulated root CA, the
    QE report signature, the binding of the attestation key, the report signature, then each
    expectation given (``report_data`` may be shorter than 64 bytes: then the rest must be
    zero). Returns its :class:`QuoteInfo` (``verified=True``); raises :class:`QuoteError`
    naming the first field that fails."""
    from cryptography.hazmat.primitives.asymmetric import ec

    info, parts = _parse(quote)
    if info.cert_type != CERT_TYPE_PCK_CHAIN:
        raise QuoteError("certification_data_type", f"{info.cert_type} (expected 5: PCK certificate chain)")
    leaf = _check_chain(parts["cert"], platform)
    if not _verify(leaf[1], parts["qe_sig"], parts["qe_body"]):
        raise QuoteError("qe_report_signature",
                         "does not verify with the PCK key (QE report body or signature changed)")
    if info.qe_body.identity() != QE_IDENTITY or ReportBody.reserved_set(parts["qe_body"]):
        raise QuoteError("qe_report_body", "is not the simulated quoting enclave's")
    bound = hashlib.sha256(parts["att_pub"] + parts["auth"]).digest() + bytes(32)
    if not hmac.compare_digest(info.qe_body.report_data, bound):
        raise QuoteError("attestation_key",
                         "is not the key the QE report binds (attestation key or QE auth data changed)")
    try:
        att_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + parts["att_pub"])
    except ValueError:
        raise QuoteError("attestation_key", "is not a point of P-256") from None
    if not _verify(att_pub, parts["isv_sig"], parts["signed"]):
        raise QuoteError("isv_report_signature", "does not verify (quote header or report body changed)")
    if ReportBody.reserved_set(parts["body"]):
        raise QuoteError("report_body", f"reserved fields are set: {', '.join(ReportBody.reserved_set(parts['body']))}")
    body = info.body
    _expect_hex("mrenclave", body.mrenclave, mrenclave)
    _expect_hex("mrsigner", body.mrsigner, mrsigner)
    if isv_prod_id is not None and body.isvprodid != isv_prod_id:
        raise QuoteError("isv_prod_id", f"is {body.isvprodid}, expected {isv_prod_id}")
    if min_isv_svn is not None and body.isvsvn < min_isv_svn:
        raise QuoteError("isv_svn", f"is {body.isvsvn}, expected at least {min_isv_svn}")
    if report_data is not None:
        if len(report_data) > 64:
            raise QuoteError("report_data", f"the expected value is {len(report_data)} bytes (at most 64)",
                             errno=errno.EINVAL)
        _expect_hex("report_data", body.report_data, bytes(report_data).ljust(64, b"\0"))
    return QuoteInfo(**{**info.__dict__, "certs": leaf[0], "verified": True})
