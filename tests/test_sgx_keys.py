"""The simulated platform file, KEYREQUEST and EGETKEY (sgx-sim.md (c): its known answers and checks)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
import subprocess
import sys

import pytest

from pal.sgx import keys
from pal.sgx.identity import EnclaveIdentity
from pal.sgx.platform import Platform, PlatformError, default_path, load_platform

# the spec's known-answer case
ROOT = bytes.fromhex("00112233445566778899aabbccddeeff")
CPUSVN = bytes.fromhex("0f0f0202ff0100000000000000000000")
KAT_PLATFORM = Platform(root_key=ROOT, cpusvn=CPUSVN, report_keyid=bytes(32))
KAT_ENCLAVE = EnclaveIdentity(mrenclave=b"\x11" * 32, mrsigner=b"\x22" * 32, isvprodid=7, isvsvn=3, flags=0x7,
                              xfrm=0x3, miscselect=0)


def test_seal_keys_known_answers():
    assert keys.seal_key(KAT_PLATFORM, KAT_ENCLAVE, keys.POLICY_MRENCLAVE).hex() == "37734c3a7ec86a3d6ccc00a08f5fcc14"
    assert keys.seal_key(KAT_PLATFORM, KAT_ENCLAVE, keys.POLICY_MRSIGNER).hex() == "700bec0a3a32ee42b95ef08249bbe1ed"


def test_keyrequest_bytes_as_gramine_builds_them():
    raw = keys.seal_key_request(KAT_ENCLAVE, KAT_PLATFORM, keys.POLICY_MRENCLAVE).to_bytes()
    assert len(raw) == 512
    want = bytes.fromhex("0400 0100 0300 0000" "0f0f0202ff0100000000000000000000" "ffffffffffffffff"
                         "1bfff9ffffffffff" + "00" * 32 + "ffffffff 0000".replace(" ", "").replace(" ", ""))
    assert raw[:len(want)] == want
    assert raw[len(want):] == bytes(512 - len(want))
    assert keys.KeyRequest.from_bytes(raw) == keys.seal_key_request(KAT_ENCLAVE, KAT_PLATFORM, 1)


def test_what_changes_the_seal_keys():
    mre = keys.seal_key(KAT_PLATFORM, KAT_ENCLAVE, 1)
    mrs = keys.seal_key(KAT_PLATFORM, KAT_ENCLAVE, 2)
    other_enclave = dataclasses.replace(KAT_ENCLAVE, mrenclave=b"\x33" * 32)
    assert keys.seal_key(KAT_PLATFORM, other_enclave, 1) != mre
    assert keys.seal_key(KAT_PLATFORM, other_enclave, 2) == mrs  # the upgrade path
    for change in ({"mrsigner": b"\x44" * 32}, {"isvprodid": 8}, {"isvsvn": 4}, {"flags": 0x5}):
        other = dataclasses.replace(KAT_ENCLAVE, **change)
        assert keys.seal_key(KAT_PLATFORM, other, 2) != mrs, change
    other_platform = dataclasses.replace(KAT_PLATFORM, root_key=bytes(16))
    assert keys.seal_key(other_platform, KAT_ENCLAVE, 1) != mre
    new_tcb = dataclasses.replace(KAT_PLATFORM, cpusvn=bytes.fromhex("10") + CPUSVN[1:])
    assert keys.seal_key(new_tcb, KAT_ENCLAVE, 1) != mre
    # masks: a flags mask without DEBUG still separates debug and production (INIT|DEBUG forced in)
    masks = keys.SealKeyMasks(flags=0)
    assert keys.seal_key(KAT_PLATFORM, KAT_ENCLAVE, 2, masks) != keys.seal_key(
        KAT_PLATFORM, dataclasses.replace(KAT_ENCLAVE, flags=0x5), 2, masks)
    assert keys.seal_key(KAT_PLATFORM, dataclasses.replace(KAT_ENCLAVE, xfrm=0x7), 2,
                         keys.SealKeyMasks(xfrm=0x3)) != keys.seal_key(KAT_PLATFORM, KAT_ENCLAVE, 2)


def test_egetkey_checks_and_status_codes():
    base = keys.seal_key_request(KAT_ENCLAVE, KAT_PLATFORM, 1)
    cases = [
        (dataclasses.replace(base, isvsvn=4), keys.SGX_INVALID_ISVSVN),
        (dataclasses.replace(base, cpusvn=b"\x99" * 16), keys.SGX_INVALID_CPUSVN),
        (dataclasses.replace(base, keyname=9), keys.SGX_INVALID_KEYNAME),
        (dataclasses.replace(base, keyname=keys.KEYNAME_PROVISION), keys.SGX_INVALID_ATTRIBUTE),
    ]
    for request, status in cases:
        with pytest.raises(keys.EgetkeyError) as info:
            keys.egetkey(KAT_PLATFORM, KAT_ENCLAVE, request)
        assert info.value.status == status and info.value.errno == errno.EACCES
    # an older SVN than the enclave's own is allowed (and gives another key); zero CPUSVN = current
    assert keys.egetkey(KAT_PLATFORM, KAT_ENCLAVE, dataclasses.replace(base, isvsvn=2)) != keys.egetkey(
        KAT_PLATFORM, KAT_ENCLAVE, base)
    assert keys.egetkey(KAT_PLATFORM, KAT_ENCLAVE, dataclasses.replace(base, cpusvn=bytes(16))) == keys.egetkey(
        KAT_PLATFORM, KAT_ENCLAVE, base)
    with pytest.raises(keys.KeyRequestError):
        keys.egetkey(KAT_PLATFORM, KAT_ENCLAVE, dataclasses.replace(base, keypolicy=0x40))
    raw = bytearray(base.to_bytes())
    raw[0x100] = 1
    with pytest.raises(keys.KeyRequestError, match="reserved"):
        keys.egetkey(KAT_PLATFORM, KAT_ENCLAVE, bytes(raw))


def test_seal_key_masks_parsed_by_gramines_rules():
    assert keys.parse_seal_key_masks({}) == keys.SealKeyMasks()
    got = keys.parse_seal_key_masks({"seal_key": {"flags_mask": "0xfffffffffffffffd", "xfrm_mask": "0X0000000000000003",
                                                  "misc_mask": "0x0000ffff"}})
    assert got == keys.SealKeyMasks(flags=0xFFFFFFFFFFFFFFFD, xfrm=0x3, misc=0xFFFF)
    for name, bad in (("flags_mask", "0xffff"), ("xfrm_mask", "ffffffffffffffff00"), ("misc_mask", "0x0000fffg"),
                      ("misc_mask", 255), ("flags_mask", "0xffffffffffffffffff")):
        with pytest.raises(keys.KeyRequestError, match=f"sgx.seal_key.{name}"):
            keys.parse_seal_key_masks({"seal_key": {name: bad}})


# ---------------------------------------------------------------------------------------------- platform file


def test_platform_file_made_once_0600_and_reused(tmp_path):
    path = tmp_path / "sub" / "plat"
    first = load_platform(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_platform(path)
    assert (again.root_key, again.cpusvn, again.owner_epoch) == (first.root_key, first.cpusvn, first.owner_epoch)
    assert [p.name for p in path.parent.iterdir()] == ["plat"]  # no temporary left
    assert first.root_key.hex() not in repr(first) and "plat" in repr(first)
    other = load_platform(tmp_path / "other")
    assert other.root_key != first.root_key  # two files, two machines
    assert keys.seal_key(other, KAT_ENCLAVE, 1) != keys.seal_key(first, KAT_ENCLAVE, 1)


def test_platform_file_made_by_concurrent_processes_is_one(tmp_path):
    path = tmp_path / "plat"
    code = ("import sys; from pal.sgx.platform import load_platform; "
            "sys.stdout.write(load_platform(sys.argv[1]).root_key.hex())")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(__file__))) for _ in range(6)]
    outs = {p.communicate()[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outs) == 1 and outs == {load_platform(path).root_key.hex()}


def test_default_place_and_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("PFSKIT_SGX_PLATFORM", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_path() == tmp_path / "xdg" / "pfskit" / "sgx-platform"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "share" / "pfskit" / "sgx-platform"
    monkeypatch.setenv("PFSKIT_SGX_PLATFORM", str(tmp_path / "env-plat"))
    load_platform()
    assert (tmp_path / "env-plat").exists()


def test_corrupt_or_open_platform_file_refused(tmp_path):
    path = tmp_path / "plat"
    platform = load_platform(path)
    os.chmod(path, 0o644)
    with pytest.raises(PlatformError, match=r"mode 0644.*chmod 600") as info:
        load_platform(path)
    assert info.value.errno == errno.EACCES
    os.chmod(path, 0o600)
    data = json.loads(path.read_text())
    for bad in ("not json", json.dumps({**data, "format": "x"}), json.dumps({**data, "root_key": "abcd"}),
                json.dumps({**data, "cpusvn": "zz" * 16})):
        path.write_text(bad)
        with pytest.raises(PlatformError) as info:
            load_platform(path)
        assert platform.root_key.hex() not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(PlatformError, match="does not exist"):
        load_platform(tmp_path / "missing", create=False)
