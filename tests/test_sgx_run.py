"""Sealed-data workflows end to end (issue 10, section 5): python3 under ``libos run`` of a signed
manifest, real FUSE view, namespaces and processes; ``libos quote verify`` outside."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import require
from run_helpers import ENV, LIBOS, PYTHON, host_mounts, runner_state
from sgx_helpers import other_key, sign

require(os.path.exists("/dev/fuse") and os.path.exists(PYTHON), "needs /dev/fuse and /usr/bin/python3")
require(runner_state() is None, f"libos run unusable: {runner_state()}")

APP = r'''
import errno, json, os, sys
mode, arg = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
def attempt(fn):
    try:
        return fn()
    except OSError as exc:
        print(json.dumps({"errno": exc.errno}))
        sys.exit(3)
if mode == "seal":
    attempt(lambda: open(arg, "w").write(sys.argv[3]))
elif mode == "unseal":
    print(json.dumps({"data": attempt(lambda: open(arg).read())}))
elif mode == "attest":
    with open("/dev/attestation/user_report_data", "wb", buffering=0) as f:
        f.write(bytes.fromhex(arg))
    with open("/dev/attestation/quote", "rb") as f:
        print(f.read().hex())
elif mode == "files":
    out = {"modes": {}}
    for name in sorted(os.listdir("/dev/attestation")):
        out["modes"][name] = oct(os.stat("/dev/attestation/" + name).st_mode & 0o777)
    with open("/dev/attestation/attestation_type", "rb") as f:
        out["type"] = f.read().decode()
    with open("/dev/attestation/my_target_info", "rb") as f:
        out["my_target_info"] = len(f.read())
    for name in ("report", "quote", "attestation_type", "keys/_sgx_mrenclave"):
        try:
            open("/dev/attestation/" + name, "wb")
            out["write " + name] = "opened"
        except OSError as exc:
            out["write " + name] = errno.errorcode[exc.errno]
    for name in ("_sgx_mrenclave", "_sgx_mrsigner"):
        with open("/dev/attestation/keys/" + name, "rb") as f:
            out[name] = f.read().hex()
    fd = os.open("/dev/attestation/user_report_data", os.O_RDWR)
    os.write(fd, b"a" * 32); os.write(fd, b"b" * 32)
    os.lseek(fd, 0, 0)
    out["read back"] = os.read(fd, 100).decode()
    os.close(fd)
    with open("/dev/attestation/report", "rb") as f:
        r = f.read()
    out["report"] = len(r)
    out["report_data"] = r[0x140:0x180].hex()
    print(json.dumps(out))
'''


class SignedApp:
    """A signed python3 app: ``app/app.py`` trusted, ``/sealed`` (_sgx_mrenclave) and ``/shared``
    (_sgx_mrsigner) encrypted folders, the host's system folders allowed."""

    def __init__(self, root: Path, platform: Path):
        self.root = root
        self.platform = platform
        for name in ("app", "sealed", "shared"):
            (root / name).mkdir(exist_ok=True)
        (root / "app" / "app.py").write_text(APP)

    def data(self, isvprodid: int = 7, version: str = "1") -> dict:
        parts = host_mounts()
        return {
            "libos": {"entrypoint": PYTHON},
            "loader": {"insecure__use_cmdline_argv": True, "env": {**ENV, "APP_VERSION": version}},
            "fs": {"mounts": [*parts,
                              {"type": "chroot", "path": "/app", "uri": f"file:{self.root}/app/"},
                              {"type": "encrypted", "path": "/sealed", "uri": f"file:{self.root}/sealed/",
                               "key_name": "_sgx_mrenclave"},
                              {"type": "encrypted", "path": "/shared", "uri": f"file:{self.root}/shared/",
                               "key_name": "_sgx_mrsigner"},
                              {"type": "tmpfs", "path": "/tmp"}]},
            "sgx": {"debug": True, "isvprodid": isvprodid, "isvsvn": 1, "remote_attestation": "dcap",
                    "enclave_size": "64M", "trusted_files": [{"uri": f"file:{self.root}/app/app.py"}],
                    "allowed_files": [m["uri"] + "/" for m in parts]},
        }

    def sign(self, name: str = "app", key=None, **kw) -> Path:
        return sign(self.data(**kw), self.root, name=name, key=key)

    def run(self, manifest: Path, *args: str, platform: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [LIBOS, "run", "--platform", str(platform or self.platform), str(manifest), "--",
               "/app/app.py", *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, timeout=300)


def out(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture
def app(tmp_path):
    return SignedApp(tmp_path, tmp_path / "platform")


def test_sealed_with_mrenclave(app):
    v1 = app.sign()
    r = app.run(v1, "seal", "/sealed/result", "42 apples")
    assert r.returncode == 0, r.stderr
    assert b"42 apples" not in (app.root / "sealed" / "result").read_bytes()
    assert out(app.run(v1, "unseal", "/sealed/result")) == {"data": "42 apples"}  # a second run reads it
    # another platform file: another machine
    r = app.run(v1, "unseal", "/sealed/result", platform=app.root / "platform2")
    assert r.returncode == 3 and out(r) == {"errno": 13}
    # one trusted file changed and signed again: another MRENCLAVE, EACCES
    (app.root / "app" / "app.py").write_text(APP + "\n# v2\n")
    v2 = app.sign(name="v2")
    r = app.run(v2, "unseal", "/sealed/result")
    assert r.returncode == 3 and out(r) == {"errno": 13}


def test_trusted_file_changed_after_signing_is_eacces_at_open(app):
    v1 = app.sign()
    assert app.run(v1, "files").returncode == 0
    (app.root / "app" / "app.py").write_text(APP + "\n# changed\n")
    r = app.run(v1, "files")
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_mrsigner_upgrade_path(app):
    v1 = app.sign()
    r = app.run(v1, "seal", "/shared/result", "for v2")
    assert r.returncode == 0, r.stderr
    v2 = app.sign(name="v2", version="2")  # another MRENCLAVE, same key and product
    assert out(app.run(v2, "unseal", "/shared/result")) == {"data": "for v2"}
    for manifest in (app.sign(name="otherkey", key=other_key()), app.sign(name="otherprod", isvprodid=8)):
        r = app.run(manifest, "unseal", "/shared/result")
        assert r.returncode == 3 and out(r) == {"errno": 13}, manifest.name


def test_attestation_files_inside_the_run(app):
    v1 = app.sign()
    r = app.run(v1, "files")
    assert r.returncode == 0, r.stderr
    got = out(r)
    assert got["modes"] == {"attestation_type": "0o444", "user_report_data": "0o666", "target_info": "0o666",
                            "my_target_info": "0o444", "report": "0o444", "quote": "0o444", "keys": "0o755"}
    assert got["type"] == "dcap" and got["report"] == 432 and got["my_target_info"] == 512
    assert {got[f"write {n}"] for n in ("report", "quote", "attestation_type", "keys/_sgx_mrenclave")} == {"EACCES"}
    assert len(bytes.fromhex(got["_sgx_mrenclave"])) == 16 and got["_sgx_mrenclave"] != got["_sgx_mrsigner"]
    assert got["read back"] == "b" * 32 and got["report_data"] == (b"b" * 32).hex() + "00" * 32


def test_quote_verified_outside(app):
    v1 = app.sign()
    nonce = os.urandom(32).hex()
    r = app.run(v1, "attest", nonce)
    assert r.returncode == 0, r.stderr
    quote = app.root / "quote.bin"
    quote.write_bytes(bytes.fromhex(r.stdout.strip()))
    from pal.sgx.sigstruct import Sigstruct

    mrenclave = Sigstruct.from_bytes((app.root / "app.sig").read_bytes()).mrenclave.hex()

    def verify(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([LIBOS, "quote", "verify", str(quote), "--platform", str(app.platform), *args],
                              capture_output=True, text=True, timeout=120)

    ok = verify("--mrenclave", mrenclave, "--report-data", nonce)
    assert ok.returncode == 0, ok.stderr
    for args in (("--mrenclave", "00" * 32, "--report-data", nonce), ("--mrenclave", mrenclave, "--report-data",
                                                                      os.urandom(32).hex())):
        bad = verify(*args)
        assert bad.returncode == 1 and bad.stderr.startswith("libos: error:")
    os.makedirs(app.root / "p2", exist_ok=True)
    subprocess.run([LIBOS, "run", "--platform", str(app.root / "p2" / "plat"), str(v1), "--", "/app/app.py", "files"],
                   capture_output=True, timeout=300)
    other = subprocess.run([LIBOS, "quote", "verify", str(quote), "--platform", str(app.root / "p2" / "plat"),
                            "--mrenclave", mrenclave], capture_output=True, text=True, timeout=120)
    assert other.returncode == 1 and "root CA" in other.stderr


def test_bad_input_is_one_line(app):
    v1 = app.sign()
    sig = app.root / "app.sig"
    good = sig.read_bytes()
    cases = {
        "changed manifest": lambda: v1.write_bytes(v1.read_bytes().replace(b"isvsvn = 1", b"isvsvn = 2")),
        "changed sig": lambda: sig.write_bytes(good[:0x400] + b"\x08" + good[0x401:]),
        "short sig": lambda: sig.write_bytes(good[:1000]),
        "no sig": lambda: sig.unlink(),
    }
    text = v1.read_bytes()
    for what, change in cases.items():
        change()
        r = app.run(v1, "files")
        assert r.returncode == 1, what
        assert r.stderr.startswith("libos: error: ") and r.stderr.count("\n") == 1, (what, r.stderr)
        assert "Traceback" not in r.stderr
        v1.write_bytes(text)
        sig.write_bytes(good)
    # an unsigned manifest that uses the enclave's keys
    unsigned = app.root / "plain.manifest.toml"
    import tomli_w

    unsigned.write_text(tomli_w.dumps(app.data()))
    r = subprocess.run([LIBOS, "run", str(unsigned), "--", "/app/app.py", "files"], capture_output=True, text=True,
                       timeout=300)
    last = r.stderr.splitlines()[-1]
    assert r.returncode == 1 and last.startswith("libos: error: fs.mounts[") and "libos sign" in last
    # --platform is for a signed manifest only
    r = subprocess.run([LIBOS, "run", "--platform", str(app.platform), str(unsigned)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "signed manifest" in r.stderr
    # a platform file others can read
    app.run(v1, "files")
    app.platform.chmod(0o644)
    r = app.run(v1, "files")
    assert r.returncode == 1 and "chmod 600" in r.stderr


def test_readme_workflow_with_the_commands(app):
    """The README's sealed-data example, command by command: gen-private-key, sign, run twice."""
    import tomli_w

    key = app.root / "enclave-key.pem"
    subprocess.run([LIBOS, "gen-private-key", "-o", str(key)], check=True, capture_output=True, timeout=300)
    (app.root / "app.manifest").write_text(tomli_w.dumps(app.data()))
    signed = app.root / "app.manifest.sgx"
    r = subprocess.run([LIBOS, "sign", "-q", "-k", str(key), "-m", str(app.root / "app.manifest"), "-o", str(signed)],
                       capture_output=True, text=True, timeout=300, cwd=app.root)
    assert r.returncode == 0, r.stderr
    assert (app.root / "app.sig").stat().st_size == 1808
    r = app.run(signed, "seal", "/sealed/note", "kept in the enclave")
    assert r.returncode == 0, r.stderr
    assert out(app.run(signed, "unseal", "/sealed/note")) == {"data": "kept in the enclave"}
