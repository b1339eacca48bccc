"""``libos quote verify|view`` as a verifier uses them: real files, a real process, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pal.sgx.identity import EnclaveIdentity
from pal.sgx.platform import load_platform
from pal.sgx.quote import make_quote

ROOT = Path(__file__).resolve().parent.parent
ME = EnclaveIdentity(mrenclave=b"\x11" * 32, mrsigner=b"\x22" * 32, isvprodid=7, isvsvn=3)


def libos(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from tools.libos_cli import main; main()", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env)


@pytest.fixture
def made(tmp_path):
    plat = tmp_path / "plat"
    quote = tmp_path / "quote.bin"
    quote.write_bytes(make_quote(load_platform(plat), ME, b"nonce-123".ljust(64, b"\0")))
    return tmp_path, plat, quote


def test_verify_accepts_the_expected_values(made):
    _, plat, quote = made
    r = libos("quote", "verify", str(quote), "--platform", str(plat), "--mrenclave", "11" * 32, "--mrsigner", "22" * 32,
              "--isv-prod-id", "7", "--min-isv-svn", "3", "--report-data", b"nonce-123".hex())
    assert r.returncode == 0, r.stderr
    assert "quote verified" in r.stdout and "11" * 32 in r.stdout


@pytest.mark.parametrize(("args", "field"), [
    (("--mrenclave", "12" * 32), "mrenclave"), (("--mrsigner", "23" * 32), "mrsigner"),
    (("--isv-prod-id", "8"), "isv_prod_id"), (("--min-isv-svn", "4"), "isv_svn"),
    (("--report-data", b"nonce-124".hex()), "report_data"),
])
def test_verify_refuses_other_values_naming_the_field(made, args, field):
    _, plat, quote = made
    r = libos("quote", "verify", str(quote), "--platform", str(plat), *args)
    assert r.returncode == 1
    assert r.stderr.startswith(f"libos: error: {quote}: quote: {field}: ") and r.stderr.count("\n") == 1


def test_verify_refuses_a_changed_quote_and_another_platform(made):
    tmp, plat, quote = made
    data = bytearray(quote.read_bytes())
    data[0x40] ^= 1  # a byte of MRENCLAVE
    bad = tmp / "bad.bin"
    bad.write_bytes(bytes(data))
    r = libos("quote", "verify", str(bad), "--platform", str(plat))
    assert r.returncode == 1 and "isv_report_signature" in r.stderr
    r = libos("quote", "verify", str(quote), "--platform", str(tmp / "other-plat"))
    assert r.returncode == 1 and "does not exist" in r.stderr  # a verifier never makes a platform
    load_platform(tmp / "other-plat")
    r = libos("quote", "verify", str(quote), "--platform", str(tmp / "other-plat"))
    assert r.returncode == 1 and "root CA" in r.stderr and "Traceback" not in r.stderr


def test_verify_bad_input(made):
    tmp, plat, quote = made
    for args in (("--mrenclave", "zz"), ("--mrenclave", "11" * 31), ("--report-data", "00" * 65),
                 ("--isv-prod-id", "70000")):
        r = libos("quote", "verify", str(quote), "--platform", str(plat), *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, args
    r = libos("quote", "verify", str(tmp / "missing.bin"), "--platform", str(plat))
    assert r.returncode == 2 and "missing.bin" in r.stderr
    (tmp / "short.bin").write_bytes(b"not a quote")
    r = libos("quote", "verify", str(tmp / "short.bin"), "--platform", str(plat))
    assert r.returncode == 1 and "quote: length" in r.stderr
    plat.chmod(0o644)
    r = libos("quote", "verify", str(quote), "--platform", str(plat))
    assert r.returncode == 1 and "chmod 600" in r.stderr


def test_view_prints_every_field(made):
    _, _, quote = made
    r = libos("quote", "view", str(quote), "--json")
    assert r.returncode == 0, r.stderr
    fields = json.loads(r.stdout)
    assert fields["version"] == 3 and fields["certification_data_type"] == 5
    assert fields["report_body"]["mr_enclave"] == "11" * 32 and fields["report_body"]["isv_prod_id"] == 7
    assert fields["report_body"]["report_data"].startswith(b"nonce-123".hex())
    assert all("pfskit simulated" in c for c in fields["certificates"])
    r = libos("quote", "view", str(quote))
    assert r.returncode == 0 and "mr_enclave: " + "11" * 32 in r.stdout and "not verified" in r.stdout


def test_unreadable_quote_file_is_one_line(tmp_path):
    """A missing or oversized quote file: one line naming it, exit 2, no usage text."""
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(1 << 20))
    for path, why in ((tmp_path / "nope.bin", "No such file or directory"), (big, "larger than 1 MiB")):
        for sub in ("verify", "view"):
            r = libos("quote", sub, str(path))
            assert r.returncode == 2, r.stderr
            assert r.stderr.count("\n") == 1 and why in r.stderr and str(path) in r.stderr, r.stderr
            assert r.stderr.startswith("libos: error: quote file"), r.stderr
