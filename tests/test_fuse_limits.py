"""Real FUSE mounts refuse a size the host can't hold at once (issue 8, item 7).

pjdfstest's truncate/12.t truncates to 999,999,999,999,999 bytes: on `pfs mount --rw` and on
`libos mount` (encrypted and tmpfs mounts) coreutils' ``truncate`` gets EFBIG ("File too
large"), a size past the host's free space gets ENOSPC, and the file is left as it was: same
size and content through the mount, same bytes in ENCDIR, no space used. ENCDIR lives on a
small tmpfs of its own, so that a fill-the-disk failure would be quick and harmless.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import pytest
from fuse_helpers import LIBOS, PFS, Mounter, fuse_unavailable, run
from helpers import require
from host_limits import free_bytes, small_host_fs

_why = fuse_unavailable()
require(not _why, f"real FUSE mounts unavailable: {_why}")

HUGE = "999999999999999"
CONTENT = os.urandom(300_000)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "wrap.key"
    run([PFS, "gen-key", "-w", path], check=True)
    return path


@pytest.fixture
def small(tmp_path: Path):
    with small_host_fs(tmp_path / "small", "8m") as path:
        yield path


def _truncate_fails(path: Path, size: str | int, message: str) -> None:
    proc = run(["truncate", "-s", str(size), path])
    assert proc.returncode != 0, f"truncate -s {size} {path} succeeded"
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def _check_refusals(view_file: Path, host_folder: Path | None, host_file: Path | None) -> None:
    """HUGE gives EFBIG, free space + 1 MiB gives ENOSPC (when there is a host folder), and
    nothing changes."""
    raw = host_file.read_bytes() if host_file is not None else None
    free = free_bytes(host_folder) if host_folder is not None else None
    _truncate_fails(view_file, HUGE, "File too large")
    if host_folder is not None:
        _truncate_fails(view_file, free + (1 << 20), "No space left on device")
    assert view_file.stat().st_size == len(CONTENT)
    assert view_file.read_bytes() == CONTENT
    if host_folder is not None:
        assert free_bytes(host_folder) >= free - 4096
    if host_file is not None:
        assert host_file.read_bytes() == raw
    # the file still takes ordinary changes
    run(["truncate", "-s", str(len(CONTENT) + 5), view_file], check=True)
    assert view_file.read_bytes() == CONTENT + bytes(5)


def test_pfs_mount_huge_truncate(tmp_path: Path, key: Path, small: Path, mounter: Mounter) -> None:
    enc, mnt = small / "enc", tmp_path / "mnt"
    enc.mkdir()
    mnt.mkdir()
    m = mounter.pfs(key, enc, mnt, "--rw", background=True)
    (mnt / "f").write_bytes(CONTENT)
    with open(mnt / "f", "rb+") as f:
        os.fsync(f.fileno())
    _check_refusals(mnt / "f", small, enc / "f")
    m.unmount()
    out = tmp_path / "out"
    proc = run([PFS, "decrypt", "-q", "-w", key, "-i", enc / "f", "-o", out])
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == CONTENT + bytes(5)


def test_pfs_mount_far_write_is_refused_at_writeback(tmp_path: Path, key: Path, small: Path,
                                                     mounter: Mounter) -> None:
    """``pfs mount --rw`` runs with the kernel's writeback cache, so a write goes to the page
    cache and reaches the daemon only when written back: the daemon refuses it then (EFBIG,
    reported by fsync), writes no node, and the file on the host is unchanged. (The kernel keeps
    the size it extended the file to while it caches the inode: see docs/decisions.md.)"""
    enc, mnt = small / "enc", tmp_path / "mnt"
    enc.mkdir()
    mnt.mkdir()
    m = mounter.pfs(key, enc, mnt, "--rw", background=True)
    (mnt / "f").write_bytes(CONTENT)
    with open(mnt / "f", "rb+") as f:
        os.fsync(f.fileno())
    raw = (enc / "f").read_bytes()
    free = free_bytes(small)
    fd = os.open(mnt / "f", os.O_WRONLY)
    try:
        os.pwrite(fd, b"x", 10**15)
        with pytest.raises(OSError) as info:
            os.fsync(fd)
        assert info.value.errno == errno.EFBIG
    finally:
        with contextlib.suppress(OSError):  # close may report the same writeback error
            os.close(fd)
    assert free_bytes(small) >= free - 4096
    assert (enc / "f").read_bytes() == raw
    m.unmount()  # never read the file through the mount here: the kernel thinks it is 1e15 bytes
    out = tmp_path / "out"
    proc = run([PFS, "decrypt", "-q", "-w", key, "-i", enc / "f", "-o", out])
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == CONTENT


def test_libos_mount_huge_truncate(tmp_path: Path, key: Path, small: Path, mounter: Mounter) -> None:
    enc, mnt = small / "enc", tmp_path / "mnt"
    enc.mkdir()
    mnt.mkdir()
    (tmp_path / "m.toml").write_text(f'''
fs.mounts = [
  {{ type = "encrypted", path = "/data", uri = "file:{enc}/", key_name = "default" }},
  {{ type = "tmpfs", path = "/scratch" }},
]
fs.insecure__keys.default = "{key.read_bytes().hex()}"
''')
    m = mounter.foreground([LIBOS, "mount", "m.toml", "mnt"], "mnt", cwd=tmp_path)
    (mnt / "data" / "f").write_bytes(CONTENT)
    with open(mnt / "data" / "f", "rb+") as f:
        os.fsync(f.fileno())
    _check_refusals(mnt / "data" / "f", small, enc / "f")
    # libos mount does direct I/O: a write far past the end is refused at once too
    for name in ("data", "scratch"):
        (mnt / name / "far").write_bytes(b"abc")
        fd = os.open(mnt / name / "far", os.O_WRONLY)
        try:
            with pytest.raises(OSError) as info:
                os.pwrite(fd, b"x", 10**15)
            assert info.value.errno == errno.EFBIG
        finally:
            os.close(fd)
        assert (mnt / name / "far").read_bytes() == b"abc"
    (mnt / "scratch" / "f").write_bytes(CONTENT)
    _check_refusals(mnt / "scratch" / "f", None, None)
    assert m.alive(), m.log()
    assert "MemoryError" not in m.log() and "Traceback" not in m.log(), m.log()
    m.unmount()
