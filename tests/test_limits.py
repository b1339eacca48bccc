"""A size the host can't hold fails at once, before any node is written (issue 8, item 7).

The format has no sparse files: growing a protected file writes every zero node. A size past
``pfs.MAX_FILE_SIZE`` gives EFBIG, one the storage's free space can't hold gives ENOSPC, and
the file is left exactly as it was (size, content, host bytes) and stays usable. A tmpfs holds
its files in memory: EFBIG past its size limit, ENOSPC when it is full, ENOMEM past the host's
available memory. Checked on ProtectedFile, and through the LibOS API on encrypted and tmpfs
mounts. (Real FUSE mounts: tests/test_fuse_limits.py.)
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from helpers import decode
from host_limits import free_bytes, small_host_fs

import pal
from libos import LibOS
from pfs import MAX_FILE_SIZE, FileTooLargeError, HostFile, MemoryStorage, NoSpaceError, ProtectedFile
from pfs.layout import NODE_SIZE, node_count
from vfs.tmpfs import TmpFs

KEY = bytes(range(32, 48))
HUGE = 999_999_999_999_999  # pjdfstest truncate/12.t
CONTENT = bytes(range(256)) * 2000  # 512000 bytes: two MHT nodes


@pytest.fixture
def small(tmp_path: Path):
    with small_host_fs(tmp_path / "small", "8m") as path:
        yield path


def _host_file(folder: Path) -> tuple[Path, ProtectedFile]:
    path = folder / "f"
    pf = ProtectedFile.create(HostFile(path, writable=True, create=True), KEY, "f")
    pf.write(0, CONTENT)
    pf.flush()
    return path, pf


def _unchanged(path: Path, pf: ProtectedFile, raw: bytes) -> None:
    """Nothing changed: the size, the content, the host bytes; and the file still works."""
    assert pf.size == len(CONTENT)
    assert pf.read(0, len(CONTENT) + 10) == CONTENT
    pf.flush()
    assert path.read_bytes() == raw
    pf.write(len(CONTENT), b"more")
    pf.close()
    assert decode(path.read_bytes(), KEY).plaintext == CONTENT + b"more"


@pytest.mark.parametrize("how", ["truncate", "write_far", "write_big"])
def test_past_the_maximum_is_efbig_and_changes_nothing(small: Path, how: str) -> None:
    path, pf = _host_file(small)
    raw = path.read_bytes()
    free = free_bytes(small)
    with pytest.raises(FileTooLargeError) as info:
        if how == "truncate":
            pf.truncate(HUGE)
        elif how == "write_far":
            pf.write(10**15, b"x")
        else:
            pf.write(MAX_FILE_SIZE - 10, b"y" * 11)  # ends one byte past the maximum
    assert info.value.errno == errno.EFBIG
    assert str(MAX_FILE_SIZE) in str(info.value) and "f" in str(info.value)
    assert free_bytes(small) >= free - NODE_SIZE  # no zero nodes went to the disk
    _unchanged(path, pf, raw)


@pytest.mark.parametrize("how", ["truncate", "write_far"])
def test_past_the_free_space_is_enospc_and_changes_nothing(small: Path, how: str) -> None:
    path, pf = _host_file(small)
    raw = path.read_bytes()
    free = free_bytes(small)
    target = free + (1 << 20)  # a MiB more than the disk holds
    assert target < MAX_FILE_SIZE
    with pytest.raises(NoSpaceError) as info:
        if how == "truncate":
            pf.truncate(target)
        else:
            pf.write(target, b"x")
    assert info.value.errno == errno.ENOSPC
    assert "no space" in str(info.value)
    assert free_bytes(small) >= free - NODE_SIZE
    _unchanged(path, pf, raw)


def test_growth_that_fits_still_works(small: Path) -> None:
    path, pf = _host_file(small)
    target = len(CONTENT) + (free_bytes(small) // 2)
    pf.truncate(target)
    pf.flush()
    with pytest.raises(NoSpaceError):  # asked again: the first check is no licence for more
        pf.truncate(target + free_bytes(small) + (1 << 20))
    assert pf.size == target
    pf.close()
    assert path.stat().st_size == node_count(target) * NODE_SIZE
    with ProtectedFile.open(HostFile(path), KEY, "f") as again:
        assert again.size == target and again.read(0, len(CONTENT)) == CONTENT
        assert again.read(target - 5, 10) == bytes(5)


def test_memory_storage_capacity_and_host_memory() -> None:
    storage = MemoryStorage(name="mem", capacity=64 * NODE_SIZE)
    pf = ProtectedFile.create(storage, KEY, "m")
    pf.write(0, b"abc")
    pf.flush()
    before = bytes(storage.data)
    with pytest.raises(NoSpaceError):
        pf.truncate(100 * NODE_SIZE)
    with pytest.raises(NoSpaceError):  # past the host's memory, whatever the capacity
        ProtectedFile.create(MemoryStorage(name="big"), KEY, "m").truncate(pal.host_memory()[0] * 2)
    assert bytes(storage.data) == before and pf.size == 3
    pf.truncate(50 * NODE_SIZE)  # fits
    pf.close()
    assert decode(bytes(storage.data), KEY).plaintext == b"abc" + bytes(50 * NODE_SIZE - 3)


def test_unknown_free_space_is_not_checked() -> None:
    """A storage without ``free_space`` (or that can't tell) is only held to the maximum."""

    class Plain(MemoryStorage):
        def free_space(self) -> None:
            return None

    pf = ProtectedFile.create(Plain(name="p"), KEY, "p")
    pf.truncate(40 * NODE_SIZE)
    with pytest.raises(FileTooLargeError):
        pf.truncate(HUGE)
    assert pf.size == 40 * NODE_SIZE
    pf.close()


# ---------------------------------------------------------------------- through the LibOS


@pytest.fixture
def libos(small: Path):
    manifest = small.parent / "m.toml"
    (small / "enc").mkdir()
    manifest.write_text(f'''
fs.mounts = [
  {{ type = "encrypted", path = "/enc", uri = "file:{small}/enc/", key_name = "default" }},
  {{ type = "tmpfs", path = "/tmp" }},
]
fs.insecure__keys.default = "{KEY.hex()}"
''')
    lo = LibOS.boot(manifest)
    yield lo, small
    lo.shutdown()


def _errno(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    raise AssertionError(f"{fn.__name__}{args[1:]} succeeded")


@pytest.mark.parametrize("mount", ["/enc", "/tmp"])
def test_libos_huge_truncate_and_far_write(libos, mount: str) -> None:
    lo, small = libos
    p = lo.process()
    path = f"{mount}/f"
    fd = p.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    p.write(fd, CONTENT)
    p.fsync(fd)
    free = free_bytes(small)
    assert _errno(p.truncate, path, HUGE) == errno.EFBIG
    assert _errno(p.ftruncate, fd, HUGE) == errno.EFBIG
    assert _errno(p.pwrite, fd, b"x", 10**15) == errno.EFBIG
    assert p.fstat(fd).st_size == len(CONTENT)
    assert p.pread(fd, len(CONTENT) + 1, 0) == CONTENT
    assert free_bytes(small) >= free - NODE_SIZE
    p.write(fd, b"still works")
    p.close(fd)
    assert p.stat(path).st_size == len(CONTENT) + 11


def test_libos_encrypted_mount_full_disk_is_enospc(libos) -> None:
    lo, small = libos
    p = lo.process()
    fd = p.open("/enc/f", os.O_CREAT | os.O_RDWR, 0o600)
    p.write(fd, CONTENT)
    p.close(fd)
    host = small / "enc" / "f"
    raw = host.read_bytes()
    target = free_bytes(small) + (1 << 20)
    assert _errno(p.truncate, "/enc/f", target) == errno.ENOSPC
    fd = p.open("/enc/f", os.O_RDWR)
    assert _errno(p.pwrite, fd, b"x", target) == errno.ENOSPC
    assert p.fstat(fd).st_size == len(CONTENT)
    p.close(fd)
    assert host.read_bytes() == raw


def test_tmpfs_limit_enospc_enomem_and_statfs() -> None:
    """A tmpfs of 1 MiB: EFBIG for a file larger than all of it, ENOSPC once the other files
    fill it, room given back by unlink; with a huge limit, ENOMEM past the host's memory."""
    lo = LibOS.empty()
    lo.vfs.mounts.mount("/small", TmpFs(size_limit=1 << 20))
    p = lo.process()
    assert p.statfs("/small")["f_blocks"] == 256
    a = p.open("/small/a", os.O_CREAT | os.O_RDWR, 0o600)
    p.write(a, b"a" * 600_000)
    assert _errno(p.ftruncate, a, (1 << 20) + 1) == errno.EFBIG
    b = p.open("/small/b", os.O_CREAT | os.O_RDWR, 0o600)
    assert _errno(p.ftruncate, b, 500_000) == errno.ENOSPC
    assert _errno(p.pwrite, b, b"b" * 500_000, 0) == errno.ENOSPC
    assert p.fstat(b).st_size == 0 and p.fstat(a).st_size == 600_000
    assert p.statfs("/small")["f_bfree"] == ((1 << 20) - 600_000) // 4096
    p.close(a)
    p.unlink("/small/a")  # gone (no name, no descriptor): its memory is free again
    p.ftruncate(b, 900_000)
    assert p.fstat(b).st_size == 900_000
    p.close(b)
    total = pal.host_memory()[0]
    lo.vfs.mounts.mount("/big", TmpFs(size_limit=1 << 50))
    c = p.open("/big/c", os.O_CREAT | os.O_RDWR, 0o600)
    assert _errno(p.ftruncate, c, 2 * total) == errno.ENOMEM
    assert p.fstat(c).st_size == 0
    p.close(c)
