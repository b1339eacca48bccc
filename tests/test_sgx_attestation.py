"""/dev/attestation of a LibOS booted from a signed manifest, through the LibOS API (real files
and real system calls of the VFS), and the checks of a signed boot."""

from __future__ import annotations

import errno
import os
import stat

import pytest
from sgx_helpers import other_key, sign

from libos import LibOS
from libos.enclave import EnclaveStartError
from pal.sgx import keys as sgx_keys
from pal.sgx.identity import EnclaveIdentity
from pal.sgx.platform import load_platform
from pal.sgx.quote import verify_quote
from pal.sgx.report import verify_report
from pal.sgx.sigstruct import Sigstruct


def manifest(tmp_path, **sgx):
    (tmp_path / "sealed").mkdir(exist_ok=True)
    return {
        "libos": {"entrypoint": "/usr/bin/python3"},
        "fs": {"mounts": [{"type": "encrypted", "path": "/sealed", "uri": f"file:{tmp_path}/sealed/",
                           "key_name": "_sgx_mrenclave"},
                          {"type": "encrypted", "path": "/shared", "uri": f"file:{tmp_path}/shared/",
                           "key_name": "_sgx_mrsigner"}]},
        "sgx": {"isvprodid": 7, "isvsvn": 3, "debug": True, "enclave_size": "64M", **sgx},
    }


@pytest.fixture
def booted(tmp_path):
    (tmp_path / "shared").mkdir()
    path = sign(manifest(tmp_path, remote_attestation="dcap"), tmp_path)
    platform = load_platform(tmp_path / "plat")
    lo = LibOS.boot(path, platform=platform)
    return lo, lo.process(), platform, tmp_path


def read(proc, path: str, size: int = 1 << 16) -> bytes:
    fd = proc.open(path, os.O_RDONLY)
    try:
        return proc.read(fd, size)
    finally:
        proc.close(fd)


def test_files_modes_and_listing(booted):
    _, proc, _, _ = booted
    names = sorted(proc.listdir("/dev/attestation"))
    assert names == sorted(["attestation_type", "user_report_data", "target_info", "my_target_info", "report",
                            "quote", "keys"])
    modes = {n: stat.S_IMODE(proc.stat(f"/dev/attestation/{n}").st_mode) for n in names}
    assert modes == {"attestation_type": 0o444, "user_report_data": 0o666, "target_info": 0o666,
                     "my_target_info": 0o444, "report": 0o444, "quote": 0o444, "keys": 0o755}
    assert stat.S_IMODE(proc.stat("/dev/attestation").st_mode) == 0o555
    assert all(proc.stat(f"/dev/attestation/{n}").st_size == 0 for n in names if n != "keys")
    assert {"_sgx_mrenclave", "_sgx_mrsigner"} <= set(proc.listdir("/dev/attestation/keys"))
    assert stat.S_IMODE(proc.stat("/dev/attestation/keys/_sgx_mrenclave").st_mode) == 0o444
    assert read(proc, "/dev/attestation/attestation_type") == b"dcap"


def test_read_only_files_refuse_writes_with_eacces(booted):
    _, proc, _, _ = booted
    for name in ("attestation_type", "my_target_info", "report", "quote", "keys/_sgx_mrenclave",
                 "keys/_sgx_mrsigner"):
        for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
            with pytest.raises(OSError) as info:
                proc.open(f"/dev/attestation/{name}", flags)
            assert info.value.errno == errno.EACCES, (name, flags)


def test_seal_keys_are_the_enclaves(booted):
    _, proc, platform, tmp_path = booted
    sig = Sigstruct.from_bytes((tmp_path / "app.sig").read_bytes())
    identity = EnclaveIdentity.from_sigstruct(sig)
    assert identity.isvprodid == 7 and identity.isvsvn == 3 and identity.flags == 0x7
    mre = read(proc, "/dev/attestation/keys/_sgx_mrenclave")
    mrs = read(proc, "/dev/attestation/keys/_sgx_mrsigner")
    assert mre == sgx_keys.seal_key(platform, identity, sgx_keys.POLICY_MRENCLAVE)
    assert mrs == sgx_keys.seal_key(platform, identity, sgx_keys.POLICY_MRSIGNER)
    assert len(mre) == len(mrs) == 16 and mre != mrs


def test_user_report_data_write_rules(booted):
    _, proc, _, _ = booted
    fd = proc.open("/dev/attestation/user_report_data", os.O_RDWR)
    assert proc.read(fd, 100) == b""  # a fresh open is empty
    assert proc.write(fd, b"a" * 32) == 32
    assert proc.write(fd, b"b" * 32) == 32  # replaces: second chunk + 32 zeros
    proc.lseek(fd, 0, os.SEEK_SET)
    assert proc.read(fd, 100) == b"b" * 32  # the descriptor reads back what it last wrote
    proc.close(fd)
    report = read(proc, "/dev/attestation/report")
    assert report[0x140:0x180] == b"b" * 32 + bytes(32)
    fd = proc.open("/dev/attestation/user_report_data", os.O_WRONLY)
    proc.write(fd, b"x" * 100)  # longer: cut to 64
    proc.close(fd)
    assert read(proc, "/dev/attestation/report")[0x140:0x180] == b"x" * 64


def test_report_target_info_and_the_zero_target_subtlety(booted):
    lo, proc, platform, _ = booted
    me = lo.enclave.identity
    mine = read(proc, "/dev/attestation/my_target_info")
    assert len(mine) == 512 and mine[:32] == me.mrenclave
    first = read(proc, "/dev/attestation/report")  # stored target_info is zero: a zero-target report...
    assert len(first) == 432
    with pytest.raises(OSError):
        verify_report(platform, me, first)
    second = read(proc, "/dev/attestation/report")  # ...and the stored target_info became our own
    assert verify_report(platform, me, second).mrenclave == me.mrenclave
    other = EnclaveIdentity(mrenclave=b"\x42" * 32, mrsigner=bytes(32), flags=0x5)
    from pal.sgx.report import target_info

    fd = proc.open("/dev/attestation/target_info", os.O_WRONLY)
    proc.write(fd, target_info(other))
    proc.close(fd)
    third = read(proc, "/dev/attestation/report")
    assert verify_report(platform, other, third).mrenclave == me.mrenclave


def test_quote_over_user_report_data(booted):
    lo, proc, platform, _ = booted
    fd = proc.open("/dev/attestation/user_report_data", os.O_WRONLY)
    proc.write(fd, b"nonce")
    proc.close(fd)
    quote = read(proc, "/dev/attestation/quote")
    info = verify_quote(quote, platform=platform, mrenclave=lo.enclave.identity.mrenclave, report_data=b"nonce")
    assert info.body.mrsigner == lo.enclave.identity.mrsigner


def test_no_quote_without_dcap_and_no_sgx_files_unsigned(tmp_path):
    (tmp_path / "shared").mkdir()
    lo = LibOS.boot(sign(manifest(tmp_path), tmp_path), platform=load_platform(tmp_path / "plat"))
    proc = lo.process()
    assert "quote" not in proc.listdir("/dev/attestation")
    assert read(proc, "/dev/attestation/attestation_type") == b"none"
    plain = LibOS.empty().process()
    assert plain.listdir("/dev/attestation") == ["keys"]


def test_sealed_files_follow_the_identity(tmp_path):
    """An encrypted _sgx_mrenclave mount: the same signed enclave reads back, another enclave,
    another platform cannot; _sgx_mrsigner: the same signer and product can."""
    (tmp_path / "shared").mkdir()
    data = manifest(tmp_path)
    platform = load_platform(tmp_path / "plat")

    def write(path, lo, where, content):
        proc = lo.process()
        fd = proc.open(where, os.O_WRONLY | os.O_CREAT, 0o600)
        proc.write(fd, content)
        proc.close(fd)
        lo.shutdown()

    def try_read(lo, where):
        proc = lo.process()
        try:
            return read(proc, where)
        except OSError as exc:
            return exc.errno

    v1 = sign(data, tmp_path)
    write(v1, LibOS.boot(v1, platform=platform), "/sealed/s", b"secret")
    write(v1, LibOS.boot(v1, platform=platform), "/shared/s", b"shared")
    assert try_read(LibOS.boot(v1, platform=platform), "/sealed/s") == b"secret"
    other_platform = load_platform(tmp_path / "plat2")
    assert try_read(LibOS.boot(v1, platform=other_platform), "/sealed/s") == errno.EACCES
    v2 = sign({**data, "loader": {"env": {"VERSION": "2"}}}, tmp_path, name="v2")
    assert try_read(LibOS.boot(v2, platform=platform), "/sealed/s") == errno.EACCES
    assert try_read(LibOS.boot(v2, platform=platform), "/shared/s") == b"shared"
    other_signer = sign(data, tmp_path, name="other", key=other_key())
    assert try_read(LibOS.boot(other_signer, platform=platform), "/shared/s") == errno.EACCES
    other_product = sign({**data, "sgx": {**data["sgx"], "isvprodid": 8}}, tmp_path, name="prod8")
    assert try_read(LibOS.boot(other_product, platform=platform), "/shared/s") == errno.EACCES


def test_changed_manifest_or_sig_refuses_to_boot(tmp_path):
    (tmp_path / "shared").mkdir()
    path = sign(manifest(tmp_path), tmp_path)
    platform = load_platform(tmp_path / "plat")
    LibOS.boot(path, platform=platform)
    text = path.read_bytes()
    path.write_bytes(text.replace(b"isvsvn = 3", b"isvsvn = 4"))
    with pytest.raises(EnclaveStartError, match=r"MRENCLAVE .* not the one app\.sig signed"):
        LibOS.boot(path, platform=platform)
    path.write_bytes(text)
    sig = bytearray((tmp_path / "app.sig").read_bytes())
    sig[0x402] ^= 1  # ISVSVN: signed
    (tmp_path / "app.sig").write_bytes(bytes(sig))
    with pytest.raises(EnclaveStartError, match=r"app\.sig: .*signature does not verify"):
        LibOS.boot(path, platform=platform)
    (tmp_path / "app.sig").write_bytes(bytes(sig[:100]))
    with pytest.raises(EnclaveStartError, match=r"app\.sig"):
        LibOS.boot(path, platform=platform)
    (tmp_path / "app.sig").unlink()
    with pytest.raises(EnclaveStartError, match=r"app\.sig: not found"):
        LibOS.boot(path, platform=platform)


def test_unsigned_manifest_with_enclave_keys_says_to_sign(tmp_path):
    from libos.manifest import loads_manifest

    text = f'''libos.entrypoint = "/x"
fs.mounts = [{{ type = "encrypted", path = "/sealed", uri = "file:{tmp_path}/", key_name = "_sgx_mrsigner" }}]
'''
    (tmp_path / "app.manifest").write_text(text)
    with pytest.raises(EnclaveStartError, match=r'fs.mounts\[0\].key_name: "_sgx_mrsigner" .*libos sign'):
        LibOS.boot(tmp_path / "app.manifest")
    with pytest.raises(EnclaveStartError):
        LibOS.boot(loads_manifest(text))


def test_libos_mount_shows_the_same_files_keys_by_its_rules(tmp_path, mounter):
    """``libos mount`` of a signed manifest: the SGX files as inside; the enclave's keys hidden
    without --expose-keys, and with it read-only for the mount's owner (0400)."""
    import subprocess
    import sys
    from pathlib import Path

    libos_cmd = str(Path(sys.executable).parent / "libos")
    (tmp_path / "shared").mkdir()
    path = sign(manifest(tmp_path, remote_attestation="dcap"), tmp_path)
    platform = load_platform(tmp_path / "plat")
    lo = LibOS.boot(path, platform=platform)
    want = read(lo.process(), "/dev/attestation/keys/_sgx_mrenclave")
    for expose in (False, True):
        mnt = tmp_path / f"mnt{int(expose)}"
        mnt.mkdir()
        argv = [libos_cmd, "mount", "--platform", str(tmp_path / "plat"), str(path), str(mnt),
                *(["--expose-keys"] if expose else [])]
        mounter.foreground(argv, mnt)
        att = mnt / "dev" / "attestation"
        assert {"report", "quote", "my_target_info"} <= set(os.listdir(att))
        assert len((att / "report").read_bytes()) == 432
        with open(att / "user_report_data", "wb", buffering=0) as f:
            f.write(b"from the host")
        quote = (att / "quote").read_bytes()
        assert verify_quote(quote, platform=platform, report_data=b"from the host").body.mrenclave == \
            lo.enclave.identity.mrenclave
        if not expose:
            assert "keys" not in os.listdir(att)
        else:
            key = att / "keys" / "_sgx_mrenclave"
            assert stat.S_IMODE(os.stat(key).st_mode) == 0o400
            assert key.read_bytes() == want
            with pytest.raises(PermissionError):
                os.open(key, os.O_WRONLY)
        subprocess.run([str(Path(sys.executable).parent / "pfs"), "umount", str(mnt)], check=True,
                       capture_output=True, timeout=60)


def test_signed_manifest_warns_only_about_what_is_not_simulated(tmp_path):
    from libos.loader import unsupported_keys
    from libos.manifest import load_manifest

    (tmp_path / "shared").mkdir()
    quiet = load_manifest(sign(manifest(tmp_path), tmp_path))
    assert not [w for w in unsupported_keys(quiet) if w.startswith("sgx.")]
    noisy = load_manifest(sign(manifest(tmp_path, enable_stats=True), tmp_path, name="stats"))
    assert [w for w in unsupported_keys(noisy) if "sgx." in w] == [
        "sgx.enable_stats: not simulated by libos run's SGX platform"]


@pytest.mark.parametrize(("sgx", "needle"), [
    ({"seal_key": {"flags_mask": "0xffff"}}, "sgx.seal_key.flags_mask"),
    ({"remote_attestation": "epid"}, "sgx.remote_attestation"),
])
def test_signed_manifest_with_bad_sgx_settings_refused_at_start(tmp_path, sgx, needle):
    (tmp_path / "shared").mkdir()
    path = sign(manifest(tmp_path, **sgx), tmp_path)
    with pytest.raises(EnclaveStartError, match=needle.replace(".", r"\.")):
        LibOS.boot(path, platform=load_platform(tmp_path / "plat"))


def test_seal_key_masks_of_the_manifest_are_used(tmp_path):
    (tmp_path / "shared").mkdir()
    platform = load_platform(tmp_path / "plat")
    plain = LibOS.boot(sign(manifest(tmp_path), tmp_path), platform=platform)
    masked = LibOS.boot(sign(manifest(tmp_path, seal_key={"misc_mask": "0x0000ffff"}), tmp_path, name="m"),
                        platform=platform)
    want = sgx_keys.seal_key(platform, masked.enclave.identity, sgx_keys.POLICY_MRSIGNER,
                             sgx_keys.SealKeyMasks(misc=0xFFFF))
    assert read(masked.process(), "/dev/attestation/keys/_sgx_mrsigner") == want
    assert want != read(plain.process(), "/dev/attestation/keys/_sgx_mrsigner")
