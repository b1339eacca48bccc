"""SIGSTRUCT against Gramine's own .sig files (tests/vectors/gramine-sign): parsing, every field,
byte-identical re-serialisation and re-signing, verification, and refusal of bad input."""

from __future__ import annotations

import hashlib
import json
import struct
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pal.sgx.sigstruct import (
    SIGSTRUCT_SIZE,
    SignatureError,
    SigningKeyError,
    Sigstruct,
    SigstructError,
    enclave_attributes,
    load_private_key,
)

VECTORS = Path(__file__).resolve().parent / "vectors" / "gramine-sign"
CASES = ["case1", "case2"]


def sig_bytes(case: str) -> bytes:
    return (VECTORS / f"{case}.sig").read_bytes()


def expected(case: str) -> dict:
    return json.loads((VECTORS / f"{case}.sig.json").read_text())


def signing_key() -> object:
    return load_private_key((VECTORS / "test-signing-key.pem").read_bytes())


@pytest.mark.parametrize("case", CASES)
def test_gramine_sig_parses_to_its_decoded_fields(case: str) -> None:
    sig = Sigstruct.from_bytes(sig_bytes(case))
    want = expected(case)
    assert sig.enclave_hash.hex() == want["mr_enclave"]
    assert sig.mrsigner.hex() == want["mr_signer"]
    assert sig.isv_prod_id == want["isv_prod_id"]
    assert sig.isv_svn == want["isv_svn"]
    assert hex(sig.attribute_flags) == want["attribute_flags"]
    assert hex(sig.attribute_xfrms) == want["attribute_xfrms"]
    assert hex(sig.attribute_flags_mask) == want["attribute_flags_mask"]
    assert hex(sig.attribute_xfrm_mask) == want["attribute_xfrm_mask"]
    assert hex(sig.misc_select) == want["misc_select"]
    assert hex(sig.misc_mask) == want["misc_mask"]
    assert sig.date == want["date"]
    assert hex(struct.unpack_from("<I", sig_bytes(case), 0x14)[0]) == want["date_field_raw"]
    assert hex(sig.vendor) == want["vendor"]
    assert hex(sig.swdefined) == want["swdefined"]
    assert sig.exponent == want["exponent"]
    assert sig.debug == want["debug_enclave"]
    assert hashlib.sha256(sig.signing_data()).hexdigest() == want["signed_data_sha256"]


@pytest.mark.parametrize("case", CASES)
def test_gramine_sig_verifies_and_reserialises_identically(case: str) -> None:
    data = sig_bytes(case)
    sig = Sigstruct.from_bytes(data)
    sig.verify()
    assert sig.to_bytes() == data


@pytest.mark.parametrize("case", CASES)
def test_signing_gramines_inputs_gives_gramines_sig(case: str) -> None:
    """The to-be-signed SIGSTRUCT made from the manifest's [sgx] table, MRENCLAVE and the date,
    signed with the test key, is Gramine's .sig byte for byte (signing is deterministic)."""
    sgx = tomllib.loads((VECTORS / f"{case}.manifest.sgx").read_text())["sgx"]
    mrenclave = bytes.fromhex((VECTORS / f"{case}.mrenclave.txt").read_text().strip())
    sig = Sigstruct.for_enclave(mrenclave, sgx, date=(2026, 1, 2))
    sig.sign(signing_key())
    assert sig.to_bytes() == sig_bytes(case)


def test_every_changed_byte_is_refused() -> None:
    """A flipped bit in any of the 1808 bytes is refused: by from_bytes (constant fields,
    reserved bytes, BCD date, exponent) or by verify (every other byte is signed or is part of
    the signature's values)."""
    data = sig_bytes("case1")
    for off in range(SIGSTRUCT_SIZE):
        changed = bytearray(data)
        changed[off] ^= 0x01
        with pytest.raises(SigstructError):
            Sigstruct.from_bytes(bytes(changed)).verify()


@pytest.mark.parametrize("field,value", [
    ("isv_prod_id", 8), ("isv_svn", 4), ("attribute_flags", 0x4), ("attribute_xfrms", 0x7),
    ("misc_select", 1), ("misc_mask", 0xFFFFFFFE), ("attribute_xfrm_mask", 0xFFFFFFFFFFF9FF1F),
    ("date_day", 3), ("vendor", 0x8086), ("enclave_hash", bytes(32)), ("cet_attributes", 1),
    ("isv_family_id", b"\x01" * 16), ("isv_ext_prod_id", b"\x02" * 16),
])
def test_a_changed_signed_field_fails_verification(field: str, value: object) -> None:
    sig = Sigstruct.from_bytes(sig_bytes("case1"))
    setattr(sig, field, value)
    with pytest.raises(SignatureError, match="does not verify") as info:
        Sigstruct.from_bytes(sig.to_bytes()).verify()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mutate,field", [
    (lambda b: b[:-1], "1808 bytes"),
    (lambda b: b + b"\0", "1808 bytes"),
    (lambda b: b"\x07" + b[1:], "HEADER is"),
    (lambda b: b[:0x18] + b"\x02" + b[0x19:], "HEADER2"),
    (lambda b: b[:0x200] + (65537).to_bytes(4, "little") + b[0x204:], "EXPONENT is 65537"),
    (lambda b: b[:0x14] + b"\x1a" + b[0x15:], "DATE field: day 0x1a"),
    (lambda b: b[:0x40] + b"\x01" + b[0x41:], "reserved bytes 0x02c"),
    (lambda b: b[:0x405] + b"\x01" + b[0x406:], "reserved bytes 0x404"),
])
def test_from_bytes_names_what_is_wrong(mutate, field: str) -> None:
    with pytest.raises(SigstructError, match=field) as info:
        Sigstruct.from_bytes(mutate(sig_bytes("case1")))
    assert info.value.errno == 22


def test_date_is_bcd() -> None:
    sig = Sigstruct(date_year=2024, date_month=5, date_day=17)
    assert sig.to_bytes()[0x14:0x18] == bytes.fromhex("17052420")
    assert Sigstruct(date_year=0, date_month=0, date_day=0).to_bytes()[0x14:0x18] == bytes(4)
    with pytest.raises(SigstructError, match="DATE"):
        Sigstruct(date_year=10000).to_bytes()


@pytest.mark.parametrize("make,message", [
    (lambda: rsa.generate_private_key(public_exponent=3, key_size=2048), "expected key size 3072, got 2048"),
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072), "expected exponent 3, got 65537"),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "expected an RSA private key"),
])
def test_bad_keys_are_refused(make, message: str) -> None:
    sig = Sigstruct.from_bytes(sig_bytes("case1"))
    with pytest.raises(SigningKeyError, match=message):
        sig.sign(make())
    assert sig.to_bytes() == sig_bytes("case1")  # nothing changed


def test_load_private_key_errors_name_the_file_not_the_key() -> None:
    with pytest.raises(SigningKeyError, match=r"'k\.pem' is not a PEM private key") as info:
        load_private_key(b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", name="k.pem")
    assert "AAAA" not in str(info.value)


def test_another_key_gives_another_mrsigner_and_the_same_enclave() -> None:
    other = rsa.generate_private_key(public_exponent=3, key_size=3072)
    sig = Sigstruct.from_bytes(sig_bytes("case1"))
    sig.sign(other)
    sig.verify()
    assert sig.mrsigner != Sigstruct.from_bytes(sig_bytes("case1")).mrsigner
    assert sig.enclave_hash == Sigstruct.from_bytes(sig_bytes("case1")).enclave_hash


def test_cpu_features_as_gramine() -> None:
    assert enclave_attributes({}) == (0x4, 0, 0x3, 0xFFFFFFFFFFF9FF1B)
    assert enclave_attributes({"debug": True, "use_exinfo": True}) == (0x6, 1, 0x3, 0xFFFFFFFFFFF9FF1B)
    _, _, xfrm, mask = enclave_attributes({"cpu_features": {"avx": "required", "mpx": "disabled"}})
    assert (xfrm, mask) == (0x7, 0xFFFFFFFFFFF9FF1F)
    _, _, xfrm, mask = enclave_attributes({"cpu_features": {"avx512": "disabled", "pkru": "required"}})
    assert (xfrm, mask) == (0x203, 0xFFFFFFFFFFF9FFFF)
    with pytest.raises(SigstructError, match=r"sgx\.cpu_features\.mpx = 'unspecified'"):
        enclave_attributes({"cpu_features": {"mpx": "unspecified"}})
    with pytest.raises(SigstructError, match=r"sgx\.cpu_features\.avx = 'yes'"):
        enclave_attributes({"cpu_features": {"avx": "yes"}})


def test_isvprodid_must_fit_u16() -> None:
    with pytest.raises(SigstructError, match=r"sgx\.isvprodid must be an integer from 0 to 65535"):
        Sigstruct.for_enclave(bytes(32), {"isvprodid": 65536}, date=(2026, 1, 2))


def test_a_key_with_inconsistent_numbers_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization

    good = signing_key().private_numbers()
    bad = rsa.RSAPrivateNumbers(good.p, good.q, good.d, good.dmp1, good.dmq1, (good.iqmp + 1) % good.p,
                                good.public_numbers).private_key(unsafe_skip_rsa_key_validation=True)
    pem = bad.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    with pytest.raises(SigningKeyError, match="private numbers are inconsistent"):
        load_private_key(pem, name="bad.pem")
    # signed with directly (no load_private_key), a key whose d and d mod (p-1) are wrong makes a
    # bad signature (OpenSSL falls back from CRT to d): sign() checks what it made
    worse = rsa.RSAPrivateNumbers(good.p, good.q, good.d + 2, good.dmp1 + 2, good.dmq1, good.iqmp,
                                  good.public_numbers).private_key(unsafe_skip_rsa_key_validation=True)
    sig = Sigstruct.from_bytes(sig_bytes("case1"))
    with pytest.raises(SigningKeyError, match="does not verify"):
        sig.sign(worse)
