"""``libos sign``, ``libos gen-private-key`` and ``libos sigstruct-view`` as real processes, against
the outputs of Gramine's own gramine-sgx-sign (tests/vectors/gramine-sign)."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pal.sgx.measure import PalImage, mrenclave
from pal.sgx.sigstruct import Sigstruct

VECTORS = Path(__file__).resolve().parent / "vectors" / "gramine-sign"
LIBOS = str(Path(sys.executable).parent / "libos")
KEY = VECTORS / "test-signing-key.pem"
PAL = VECTORS / "libpal-standin.so"
CASES = ["case1", "case2"]


def libos(*args: str, cwd: Path | None = None, env: dict | None = None,
          umask: int | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([LIBOS, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120,
                          preexec_fn=preexec)


def sign(tmp: Path, manifest: Path, *extra: str, key: Path | None = KEY, pal: Path | None = PAL,
         chroot: Path | None = VECTORS / "root", date: str | None = "2026-01-02", name: str = "out",
         **kw) -> subprocess.CompletedProcess:
    args = ["sign", "-m", str(manifest), "-o", str(tmp / f"{name}.manifest.sgx"), "-s", str(tmp / f"{name}.sig"), "-q"]
    for option, value in (("--key", key), ("--pal", pal), ("--chroot", chroot), ("--date", date)):
        if value is not None:
            args += [option, str(value)]
    return libos(*args, *extra, **kw)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("libos: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def written(tmp: Path, name: str = "out") -> tuple[bytes, Sigstruct]:
    sig = Sigstruct.from_bytes((tmp / f"{name}.sig").read_bytes())
    sig.verify()
    return (tmp / f"{name}.manifest.sgx").read_bytes(), sig


# ---------------------------------------------------------------------- Gramine's outputs

@pytest.mark.parametrize("case", CASES)
def test_sign_writes_gramines_bytes(tmp_path: Path, case: str) -> None:
    proc = ok(sign(tmp_path, VECTORS / f"{case}.manifest"))
    assert proc.stdout == proc.stderr == ""  # --quiet
    assert (tmp_path / "out.manifest.sgx").read_bytes() == (VECTORS / f"{case}.manifest.sgx").read_bytes()
    assert (tmp_path / "out.sig").read_bytes() == (VECTORS / f"{case}.sig").read_bytes()


def test_verbose_output_shows_the_layout_and_measurement(tmp_path: Path) -> None:
    proc = ok(libos("sign", "-m", str(VECTORS / "case1.manifest"), "-o", str(tmp_path / "a.manifest.sgx"),
                    "-s", str(tmp_path / "a.sig"), "-k", str(KEY), "-l", str(PAL), "--chroot", str(VECTORS / "root")))
    lines = proc.stdout.splitlines()
    mrenclave_hex = (VECTORS / "case1.mrenclave.txt").read_text().strip()
    assert lines[-2:] == ["Measurement:", f"    {mrenclave_hex}"]
    assert lines[4:6] == ["SGX remote attestation:", "    None"]
    assert "    0000000003fff000-0000000004000000 [REG:R--] (manifest) measured" in lines
    assert "    0000000003f47000-0000000003f48000 [REG:R-X] (code) measured" in lines
    assert "    0000000000010000-0000000003f46000 [REG:RWX] (free)" in lines
    assert mrenclave_hex in proc.stderr  # the summary line


def test_gramines_option_names_and_default_sigfile(tmp_path: Path) -> None:
    """--manifest/--output/--libpal/--key/--date and the .sig named after the manifest; the
    default key is $XDG_CONFIG_HOME/gramine/enclave-key.pem."""
    shutil.copy(VECTORS / "case1.manifest", tmp_path / "app.manifest")
    config = tmp_path / "config"
    (config / "gramine").mkdir(parents=True)
    shutil.copy(KEY, config / "gramine" / "enclave-key.pem")
    ok(libos("sign", "--manifest", "app.manifest", "--output", "app.manifest.sgx", "--libpal", str(PAL),
             "--chroot", str(VECTORS / "root"), "--date", "2026-01-02", cwd=tmp_path,
             env={"XDG_CONFIG_HOME": str(config)}))
    assert (tmp_path / "app.sig").read_bytes() == (VECTORS / "case1.sig").read_bytes()
    assert (tmp_path / "app.manifest.sgx").read_bytes() == (VECTORS / "case1.manifest.sgx").read_bytes()


def test_missing_default_key_says_how_to_make_one(tmp_path: Path) -> None:
    line = error_line(sign(tmp_path, VECTORS / "case1.manifest", key=None,
                           env={"XDG_CONFIG_HOME": str(tmp_path / "none")}), code=2)
    assert f"{tmp_path}/none/gramine/enclave-key.pem' does not exist" in line
    assert "libos gen-private-key" in line
    assert sorted(os.listdir(tmp_path)) == []


def test_date_defaults_to_today(tmp_path: Path) -> None:
    ok(sign(tmp_path, VECTORS / "case1.manifest", date=None))
    before = datetime.date.today().isoformat()
    assert written(tmp_path)[1].date in (before, (datetime.date.today() - datetime.timedelta(days=1)).isoformat())


# ---------------------------------------------------------------------- what changes MRENCLAVE

def unhashed(manifest_text: str) -> str:
    """The manifest with the trusted files' hashes removed (sign must hash them again)."""
    return re.sub(r'(\[\[sgx\.trusted_files\]\]\nuri = "[^"]*"\n)sha256 = "[0-9a-f]{64}"\n', r"\1", manifest_text)


def test_trusted_files_are_expanded_again_and_bind_mrenclave(tmp_path: Path) -> None:
    text = unhashed((VECTORS / "case1.manifest").read_text())
    assert text.count("sha256") == 1  # only loader.entrypoint's is left
    (tmp_path / "app.manifest").write_text(text)
    root = tmp_path / "root"
    shutil.copytree(VECTORS / "root", root)
    ok(sign(tmp_path, tmp_path / "app.manifest", chroot=root))
    assert written(tmp_path)[0] == (VECTORS / "case1.manifest.sgx").read_bytes()
    assert (tmp_path / "out.sig").read_bytes() == (VECTORS / "case1.sig").read_bytes()

    (root / "app" / "tf" / "a.txt").write_bytes(b"changed\n")
    ok(sign(tmp_path, tmp_path / "app.manifest", chroot=root, name="changed"))
    changed_manifest, changed_sig = written(tmp_path, "changed")
    assert changed_sig.enclave_hash != written(tmp_path)[1].enclave_hash
    diff = [(a, b) for a, b in zip(changed_manifest.decode().splitlines(),
                                   (VECTORS / "case1.manifest.sgx").read_text().splitlines(), strict=True) if a != b]
    assert len(diff) == 1 and diff[0][0].startswith("sha256 = ")  # only that file's hash


@pytest.mark.parametrize("what,old,new", [
    ("the manifest", 'MODE = "vector"', 'MODE = "other"'),
    ("the enclave size", 'enclave_size = "64M"', 'enclave_size = "128M"'),
    ("the thread count", "max_threads = 2", "max_threads = 3"),
])
def test_a_change_changes_mrenclave(tmp_path: Path, what: str, old: str, new: str) -> None:
    text = (VECTORS / "case1.manifest").read_text()
    assert old in text
    (tmp_path / "app.manifest").write_text(text.replace(old, new))
    ok(sign(tmp_path, tmp_path / "app.manifest"))
    _, sig = written(tmp_path)
    assert sig.enclave_hash != Sigstruct.from_bytes((VECTORS / "case1.sig").read_bytes()).enclave_hash, what


def test_nothing_else_changes_the_outputs(tmp_path: Path) -> None:
    """Untrusted files in the tree, the output names, the current folder, and signing the final
    manifest again: the same two files."""
    root = tmp_path / "root"
    shutil.copytree(VECTORS / "root", root)
    (root / "app" / "untrusted.txt").write_text("not in sgx.trusted_files\n")
    (root / "app" / "tf2").mkdir()
    work = tmp_path / "elsewhere"
    work.mkdir()
    ok(sign(work, VECTORS / "case1.manifest", chroot=root, name="other-name", cwd=work))
    assert (work / "other-name.manifest.sgx").read_bytes() == (VECTORS / "case1.manifest.sgx").read_bytes()
    assert (work / "other-name.sig").read_bytes() == (VECTORS / "case1.sig").read_bytes()
    ok(sign(tmp_path, work / "other-name.manifest.sgx", chroot=root, name="again"))
    assert (tmp_path / "again.manifest.sgx").read_bytes() == (VECTORS / "case1.manifest.sgx").read_bytes()
    assert (tmp_path / "again.sig").read_bytes() == (VECTORS / "case1.sig").read_bytes()


def differing_fields(a: bytes, b: bytes) -> set[str]:
    fields = {"date": (0x14, 0x18), "modulus": (0x80, 0x200), "signature": (0x204, 0x384),
              "q1": (0x410, 0x590), "q2": (0x590, 0x710)}
    diff = {i for i in range(len(a)) if a[i] != b[i]}
    named = {name for name, (lo, hi) in fields.items() if any(lo <= i < hi for i in diff)}
    assert all(any(lo <= i < hi for lo, hi in fields.values()) for i in diff), "a byte outside those fields changed"
    return named


def test_key_and_date_change_only_the_sigstructs_other_fields(tmp_path: Path) -> None:
    other_key = tmp_path / "other.pem"
    other_key.write_bytes(rsa.generate_private_key(public_exponent=3, key_size=3072).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    ok(sign(tmp_path, VECTORS / "case1.manifest", key=other_key, name="key"))
    ok(sign(tmp_path, VECTORS / "case1.manifest", date="2027-12-31", name="date"))
    gramine_sig = (VECTORS / "case1.sig").read_bytes()
    for name, expect in (("key", {"modulus", "signature", "q1", "q2"}), ("date", {"date", "signature", "q1", "q2"})):
        manifest_sgx, sig = written(tmp_path, name)
        assert manifest_sgx == (VECTORS / "case1.manifest.sgx").read_bytes()
        assert sig.enclave_hash == Sigstruct.from_bytes(gramine_sig).enclave_hash
        assert differing_fields((tmp_path / f"{name}.sig").read_bytes(), gramine_sig) == expect
    assert written(tmp_path, "date")[1].date == "2027-12-31"


def test_without_pal_the_standin_is_measured(tmp_path: Path) -> None:
    ok(sign(tmp_path, VECTORS / "case1.manifest", pal=None))
    manifest_sgx, sig = written(tmp_path)
    assert manifest_sgx == (VECTORS / "case1.manifest.sgx").read_bytes()
    assert sig.enclave_hash == mrenclave(manifest_sgx, PalImage.standin())
    assert sig.enclave_hash != Sigstruct.from_bytes((VECTORS / "case1.sig").read_bytes()).enclave_hash


# ---------------------------------------------------------------------- errors and outputs

@pytest.mark.parametrize("size,message", [
    ('"100M"', "Enclave size not a power of two (an SGX-imposed requirement)"),
    ('"512K"', "Enclave size is not large enough"),
])
def test_bad_enclave_size_is_refused_and_nothing_written(tmp_path: Path, size: str, message: str) -> None:
    (tmp_path / "in").mkdir()
    text = (VECTORS / "case1.manifest").read_text().replace('enclave_size = "64M"', f"enclave_size = {size}")
    (tmp_path / "in" / "app.manifest").write_text(text)
    assert message in error_line(sign(tmp_path, tmp_path / "in" / "app.manifest"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def write_key(path: Path, exponent: int, bits: int) -> Path:
    path.write_bytes(rsa.generate_private_key(public_exponent=exponent, key_size=bits).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    return path


@pytest.mark.parametrize("exponent,bits,message", [
    (3, 2048, "expected key size 3072, got 2048"),
    (65537, 3072, "expected exponent 3, got 65537"),
    (None, None, "is not a PEM private key"),
])
def test_bad_key_is_refused_and_nothing_written(tmp_path: Path, exponent, bits, message: str) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    if exponent is None:
        key = keys / "bad.pem"
        key.write_text("-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n")
    else:
        key = write_key(keys / "bad.pem", exponent, bits)
    line = error_line(sign(tmp_path, VECTORS / "case1.manifest", key=key))
    assert message in line and str(key) in line and "c2VjcmV0" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys"]


def test_usage_errors(tmp_path: Path) -> None:
    assert "does not exist" in error_line(sign(tmp_path, tmp_path / "missing.manifest"), code=2)
    assert "--date" in error_line(sign(tmp_path, VECTORS / "case1.manifest", date="2026-1-2"), code=2)
    assert "PAL '/nonexistent.so' does not exist" in error_line(
        sign(tmp_path, VECTORS / "case1.manifest", pal=Path("/nonexistent.so")), code=2)
    assert "signing key '/nonexistent.pem' does not exist" in error_line(
        sign(tmp_path, VECTORS / "case1.manifest", key=Path("/nonexistent.pem")), code=2)
    assert "is not an ELF file" in error_line(sign(tmp_path, VECTORS / "case1.manifest", pal=KEY))
    assert sorted(os.listdir(tmp_path)) == []
    line = error_line(libos("sign", "-m", str(VECTORS / "case1.manifest"), "-o", str(VECTORS / "case1.manifest"),
                            "-k", str(KEY)))
    assert "is the input manifest; not overwriting it" in line


def test_outputs_replace_old_ones_atomically_and_keep_the_manifests_readability(tmp_path: Path) -> None:
    manifest = tmp_path / "app.manifest"
    shutil.copy(VECTORS / "case1.manifest", manifest)
    (tmp_path / "out.sig").write_bytes(b"old")
    manifest.chmod(0o644)
    ok(sign(tmp_path, manifest, umask=0o022))
    assert stat.S_IMODE((tmp_path / "out.sig").stat().st_mode) == 0o644
    assert (tmp_path / "out.sig").read_bytes() == (VECTORS / "case1.sig").read_bytes()
    manifest.chmod(0o600)
    ok(sign(tmp_path, manifest, umask=0o022))
    for name in ("out.sig", "out.manifest.sgx"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    manifest.chmod(0o644)
    ok(sign(tmp_path, manifest, umask=0o077))
    assert stat.S_IMODE((tmp_path / "out.manifest.sgx").stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["app.manifest", "out.manifest.sgx", "out.sig"]  # no temporary files


# ---------------------------------------------------------------------- gen-private-key

def test_gen_private_key_as_gramine(tmp_path: Path) -> None:
    config = tmp_path / "config"
    proc = ok(libos("gen-private-key", env={"XDG_CONFIG_HOME": str(config)}))
    path = config / "gramine" / "enclave-key.pem"
    assert proc.stdout.strip() == f"wrote RSA 3072 private key to {path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")  # TraditionalOpenSSL
    key = serialization.load_pem_private_key(pem, password=None)
    assert key.key_size == 3072 and key.public_key().public_numbers().e == 3
    assert pem.decode() not in proc.stdout + proc.stderr

    line = error_line(libos("gen-private-key", "-o", str(path)))
    assert "refusing to overwrite" in line and "--force" in line
    assert path.read_bytes() == pem
    ok(libos("gen-private-key", "-o", str(path), "--force", "-q"))
    assert path.read_bytes() != pem and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["enclave-key.pem"]

    ok(sign(tmp_path, VECTORS / "case1.manifest", key=path))  # a key sign accepts
    assert "is a folder" in error_line(libos("gen-private-key", str(tmp_path)))


# ---------------------------------------------------------------------- sigstruct-view

def test_sigstruct_view_prints_gramines_fields() -> None:
    proc = ok(libos("sigstruct-view", str(VECTORS / "case1.sig")))
    want = json.loads((VECTORS / "case1.sig.json").read_text())
    lines = proc.stdout.splitlines()
    assert lines[0] == "Attributes:"
    keys = ["mr_signer", "mr_enclave", "isv_prod_id", "isv_svn", "attribute_flags", "attribute_xfrms", "misc_select",
            "attribute_flags_mask", "attribute_xfrm_mask", "misc_mask", "date", "debug_enclave"]
    assert lines[1:] == [f"    {k}: {want[k]}" for k in keys]


@pytest.mark.parametrize("case", CASES)
def test_sigstruct_view_json(case: str) -> None:
    want = json.loads((VECTORS / f"{case}.sig.json").read_text())
    view = json.loads(ok(libos("sigstruct-view", "--json", str(VECTORS / f"{case}.sig"))).stdout)
    assert view == {k: want[k] for k in view} and len(view) == 12
    short = json.loads(ok(libos("sigstruct-view", "--quiet", "--output-format", "json",
                                str(VECTORS / f"{case}.sig"))).stdout)
    assert list(short) == ["mr_signer", "mr_enclave", "isv_prod_id", "isv_svn", "debug_enclave"]


def test_sigstruct_view_refuses_bad_files(tmp_path: Path) -> None:
    data = bytearray((VECTORS / "case1.sig").read_bytes())
    data[0x400] ^= 1  # ISVPRODID, signed
    (tmp_path / "tampered.sig").write_bytes(bytes(data))
    assert "signature does not verify" in error_line(libos("sigstruct-view", str(tmp_path / "tampered.sig")))
    (tmp_path / "short.sig").write_bytes(bytes(data[:100]))
    assert "1808 bytes" in error_line(libos("sigstruct-view", str(tmp_path / "short.sig")))
    (tmp_path / "long.sig").write_bytes(bytes(data) * 3)
    assert "this file has 5424" in error_line(libos("sigstruct-view", str(tmp_path / "long.sig")))
    assert "No such file" in error_line(libos("sigstruct-view", str(tmp_path / "none.sig")))


def test_no_repr_or_error_shows_the_private_key(tmp_path: Path) -> None:
    from libos.errors import SigningError
    from libos.signing import sign_manifest
    from pal.sgx.sigstruct import load_private_key

    pem = KEY.read_bytes()
    numbers = load_private_key(pem).private_numbers()
    secrets = [str(numbers.d), f"{numbers.d:x}", f"{numbers.p:x}", f"{numbers.q:x}",
               pem.decode().splitlines()[1]]
    result = sign_manifest(VECTORS / "case1.manifest", KEY, tmp_path / "a.manifest.sgx", sigfile=tmp_path / "a.sig",
                           date="2026-01-02", pal=PAL, chroot=VECTORS / "root")
    shown = [repr(result), str(result), repr(result.sigstruct), repr(result.areas)]
    bad = tmp_path / "bad.pem"
    bad.write_bytes(pem.replace(b"MII", b"XYZ", 1))  # a damaged key
    with pytest.raises(SigningError) as info:
        sign_manifest(VECTORS / "case1.manifest", bad, tmp_path / "b.manifest.sgx")
    shown.append(str(info.value))
    for text in shown:
        assert not any(secret in text for secret in secrets)
