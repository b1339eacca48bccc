"""LibOS.boot: the file view a manifest defines, end to end on real host folders."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from libos import LibOS
from libos.manifest import ManifestError
from pal import HostFile
from pfs import ProtectedFile

KEY_HEX = "00112233445566778899aabbccddeeff"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('hello')\n")
    (tmp_path / "app" / "untrusted.txt").write_text("not listed\n")
    (tmp_path / "app" / "logs").mkdir()
    (tmp_path / "enc").mkdir()
    digest = hashlib.sha256((tmp_path / "app" / "main.py").read_bytes()).hexdigest()
    (tmp_path / "app.manifest.toml").write_text(f'''
libos.entrypoint = "/app/main.py"
loader.argv = ["python3", "/app/main.py", "--flag"]
loader.env.MODE = "test"
fs.start_dir = "/app"
fs.mounts = [
  {{ path = "/app", uri = "file:app/" }},
  {{ type = "tmpfs", path = "/tmp" }},
  {{ type = "encrypted", path = "/data", uri = "file:enc/", key_name = "default" }},
]
fs.insecure__keys.default = "{KEY_HEX}"
sgx.file_check_policy = "strict"
sgx.trusted_files = [ {{ uri = "file:app/main.py", sha256 = "{digest}" }} ]
sgx.allowed_files = [ "file:app/logs/" ]
''')
    return tmp_path


def test_boot_builds_the_manifest_view(app: Path) -> None:
    lo = LibOS.boot(app / "app.manifest.toml")
    p = lo.process()
    assert p.getcwd() == "/app"
    assert sorted(p.listdir("/")) == ["app", "data", "dev", "proc", "tmp"]
    # trusted file: hash checked, readable, not writable
    fd = p.open("main.py")
    assert p.read(fd, 100) == b"print('hello')\n"
    p.close(fd)
    with pytest.raises(OSError) as e:
        p.open("main.py", os.O_RDWR)
    assert e.value.errno == errno.EACCES
    # strict policy: neither trusted nor allowed
    with pytest.raises(OSError) as e:
        p.open("/app/untrusted.txt")
    assert e.value.errno == errno.EACCES
    # allowed folder: read-write passthrough
    fd = p.open("/app/logs/run.log", os.O_CREAT | os.O_WRONLY, 0o644)
    p.write(fd, b"started\n")
    p.close(fd)
    assert (app / "app" / "logs" / "run.log").read_bytes() == b"started\n"
    # tmpfs: in memory only
    fd = p.open("/tmp/scratch", os.O_CREAT | os.O_RDWR)
    p.write(fd, b"x" * 5000)
    assert p.fstat(fd).st_size == 5000
    p.close(fd)
    assert not any((app / "app").glob("scratch"))
    # /proc and /dev reflect the manifest
    fd = p.open("/proc/self/cmdline")
    assert p.read(fd, 4096) == b"python3\0/app/main.py\0--flag\0"
    p.close(fd)
    fd = p.open("/proc/self/environ")
    assert b"MODE=test\0" in p.read(fd, 4096)
    p.close(fd)
    fd = p.open("/dev/attestation/keys/default")
    assert p.read(fd, 100) == bytes.fromhex(KEY_HEX)
    p.close(fd)
    lo.shutdown()


def test_encrypted_mount_writes_gramine_files(app: Path) -> None:
    lo = LibOS.boot(app / "app.manifest.toml")
    p = lo.process()
    p.mkdir("/data/out")
    fd = p.open("/data/out/result.txt", os.O_CREAT | os.O_WRONLY, 0o600)
    p.write(fd, b"secret result\n" * 1000)
    p.close(fd)
    p.rename("/data/out", "/data/final")
    lo.shutdown()
    host = app / "enc" / "final" / "result.txt"
    assert b"secret result" not in host.read_bytes()
    # bound to the mount URI as written ("file:enc/") + the path below the mount, as Gramine binds
    bound = "enc/final/result.txt"
    with ProtectedFile.open(HostFile(host), bytes.fromhex(KEY_HEX), bound) as pf:
        assert pf.read(0, pf.size) == b"secret result\n" * 1000


def test_key_written_at_run_time(tmp_path: Path) -> None:
    (tmp_path / "enc").mkdir()
    (tmp_path / "m.toml").write_text('fs.mounts = [ { type = "encrypted", path = "/s", uri = "file:enc/", '
                                     'key_name = "late" } ]\n')
    lo = LibOS.boot(tmp_path / "m.toml")
    p = lo.process()
    with pytest.raises(OSError) as e:
        p.open("/s/f", os.O_CREAT | os.O_WRONLY)
    assert e.value.errno == errno.EACCES and "late" in str(e.value)
    fd = p.open("/dev/attestation/keys/late", os.O_WRONLY)
    p.write(fd, os.urandom(16))
    p.close(fd)
    fd = p.open("/s/f", os.O_CREAT | os.O_WRONLY)
    assert p.write(fd, b"now it works") == 12
    p.close(fd)


@pytest.mark.parametrize("text, key", [
    ('fs.mounts = [ { type = "ramfs", path = "/x" } ]', "fs.mounts[0].type"),
    ('fs.mounts = [ { path = "x", uri = "file:/" } ]', "fs.mounts[0].path"),
    ('fs.insecure__keys.default = "abc"', "fs.insecure__keys.default"),
    ('fs.mounts = [ { type = "encrypted", path = "/a", uri = "file:e/" },'
     ' { type = "encrypted", path = "/a/b", uri = "file:f/" } ]', "fs.mounts[1]"),
    ("loader.argv = 'x'", "loader.argv"),
])
def test_bad_manifest_is_refused_at_boot(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "bad.toml").write_text(text + "\n")
    with pytest.raises(ManifestError) as e:
        LibOS.boot(tmp_path / "bad.toml")
    assert e.value.key is not None and e.value.key.startswith(key)
    assert key in str(e.value)


def test_proc_fd_links_reach_the_open_file_itself(app: Path) -> None:
    """/proc/self/fd/N are magic links, as on Linux: an unlinked or renamed file and a pipe are
    reached through them, while readlink still gives the path text."""
    lo = LibOS.boot(app / "app.manifest.toml")
    p = lo.process()
    for where in ("/app/logs", "/tmp", "/data"):
        fd = p.open(f"{where}/f", os.O_RDWR | os.O_CREAT, 0o644)
        p.write(fd, b"first version")
        p.unlink(f"{where}/f")
        assert p.readlink(f"/proc/self/fd/{fd}") == f"{where}/f"
        assert p.stat(f"/proc/self/fd/{fd}").st_size == 13
        again = p.open(f"/proc/self/fd/{fd}", os.O_RDWR)
        assert p.read(again, 100) == b"first version"
        p.write(again, b"!")
        assert p.fstat(fd).st_size == 14
        p.close(again)
        p.close(fd)
        with pytest.raises(FileNotFoundError):
            p.stat(f"{where}/f")
    assert os.listdir(app / "app" / "logs") == [] and os.listdir(app / "enc") == []
    r, w = p.pipe2()
    w2 = p.open(f"/proc/self/fd/{w}", os.O_WRONLY)
    p.write(w2, b"via the link")
    assert p.read(r, 100) == b"via the link"
    for fd in (r, w, w2):
        p.close(fd)
    lo.shutdown()
