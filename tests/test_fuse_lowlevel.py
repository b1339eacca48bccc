"""The inode-based FUSE bridge (``vfs.fuse_lowlevel``, ``libos mount --fuse-api=lowlevel``) on
real mounts: one kernel node per VFS inode with the kernel's lookup counts kept, hard links
current under every name, removed open files without hidden names, ``renameat2`` flags; and
what both bridges must do alike, against the real kernel on a scratch folder.

The whole FUSE suite also runs against it: ``make test`` runs tests/test_fuse*.py a second time
with ``PFSKIT_FUSE_API=lowlevel``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fuse_helpers import LIBOS, PFS, Mounter, fuse_unavailable, mounted, run
from helpers import require

_why = fuse_unavailable()
require(_why is None, f"real FUSE mounts unavailable: {_why}")

APIS = ("mfusepy", "lowlevel")
KINDS = {"chroot": "h", "tmpfs": "t", "encrypted": "data"}
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "wrap.key"
    run([PFS, "gen-key", "-w", path], check=True)
    return path


class View:
    """``libos mount --fuse-api=API`` of a chroot mount at /h, a tmpfs at /t and an encrypted
    mount at /data, and a scratch folder on the real kernel."""

    def __init__(self, base: Path, mounter: Mounter, key: Path, api: str):
        self.api = api
        self.host, self.enc, self.mnt, self.scratch = (base / n for n in ("host", "enc", "mnt", "scratch"))
        for d in (self.host, self.enc, self.mnt, self.scratch):
            d.mkdir()
        (base / "m.toml").write_text(f'''
libos.entrypoint = "/h/none"
fs.mounts = [
  {{ type = "chroot", path = "/h", uri = "file:host/" }},
  {{ type = "tmpfs", path = "/t" }},
  {{ type = "encrypted", path = "/data", uri = "file:enc/", key_name = "default" }},
]
fs.insecure__keys.default = "{key.read_bytes().hex()}"
''')
        self.mount = mounter.foreground([LIBOS, "mount", f"--fuse-api={api}", "m.toml", "mnt"], "mnt", cwd=base)

    def dir(self, kind: str) -> Path:
        return self.mnt / KINDS[kind]


@pytest.fixture(params=APIS)
def view(request: pytest.FixtureRequest, key: Path, tmp_path: Path):
    base = Path(tempfile.mkdtemp(prefix="pfskit-fuse-ll-", dir="/tmp"))
    mounter = Mounter(tmp_path)
    try:
        yield View(base, mounter, key, request.param)
    finally:
        mounter.cleanup()
        for m in mounter.mounts:
            assert not mounted(m.mountpoint)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def lowlevel_view(key: Path, tmp_path: Path):
    base = Path(tempfile.mkdtemp(prefix="pfskit-fuse-ll-", dir="/tmp"))
    mounter = Mounter(tmp_path)
    try:
        yield View(base, mounter, key, "lowlevel")
    finally:
        mounter.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def _hard_links(folder: Path) -> list[object]:
    """``ln a b``, then changes through ``a`` (a descriptor of it and its name), each seen at
    once through ``b``: ``stat b`` and ``fstat`` of a descriptor opened by ``b``."""
    a, b = folder / "a", folder / "b"
    a.write_bytes(b"1" * 100)
    os.link(a, b)
    fd_b = os.open(b, os.O_RDONLY)
    seen: list[object] = [os.stat(b).st_nlink, os.stat(a).st_nlink]
    try:
        fd_a = os.open(a, os.O_WRONLY)
        os.pwrite(fd_a, b"2" * 5000, 100)
        seen.append([os.stat(b).st_size, os.fstat(fd_b).st_size])
        os.close(fd_a)
        os.truncate(a, 7)
        seen.append([os.stat(b).st_size, os.fstat(fd_b).st_size, os.pread(fd_b, 100, 0)])
        os.chmod(a, 0o640)
        seen.append(oct(os.stat(b).st_mode))
        os.unlink(a)
        seen.append([os.stat(b).st_nlink, os.fstat(fd_b).st_nlink])
    finally:
        os.close(fd_b)
    return seen


@pytest.mark.parametrize("kind", ["chroot", "tmpfs"])
def test_hard_link_changes_seen_through_the_other_name(lowlevel_view: View, kind: str) -> None:
    mount, kernel = _hard_links(lowlevel_view.dir(kind)), _hard_links(lowlevel_view.scratch)
    assert kernel[2] == [5100, 5100]
    assert mount == kernel


@pytest.mark.parametrize("kind", list(KINDS))
def test_removed_open_file_keeps_its_data_and_leaves_nothing(view: View, kind: str) -> None:
    """Unlink and rename-over of open files: the descriptor keeps data and attributes, no
    name is left in the mount nor on the host, now or after the last close."""
    folder = view.dir(kind)
    (folder / "x").write_bytes(b"X" * 3000)
    (folder / "y").write_bytes(b"Y" * 10)
    fx, fy = os.open(folder / "x", os.O_RDWR), os.open(folder / "y", os.O_RDONLY)
    try:
        os.unlink(folder / "x")
        os.rename(folder / "y", folder / "z")
        (folder / "w").write_bytes(b"W")
        os.rename(folder / "w", folder / "z")  # replaces the open file (y renamed to z)
        os.ftruncate(fx, 1000)
        os.fchmod(fx, 0o600)
        assert [os.fstat(fx).st_size, os.fstat(fx).st_mode & 0o777, os.pread(fx, 5, 995)] == [1000, 0o600, b"XXXXX"]
        assert os.pread(fy, 20, 0) == b"Y" * 10
        assert sorted(os.listdir(folder)) == ["z"]
        if kind != "tmpfs":
            host = view.host if kind == "chroot" else view.enc
            assert sorted(os.listdir(host)) == ["z"]
    finally:
        os.close(fx)
        os.close(fy)
    assert sorted(os.listdir(folder)) == ["z"] and (folder / "z").read_bytes() == b"W"


def stale_sizes(folder: Path, rounds: int) -> int:
    """``ln a b``; ``rounds`` times: append through a descriptor of ``a`` kept open, then
    ``stat b`` and ``fstat`` of a descriptor opened by ``b`` at once: how many showed an old size."""
    a, b = folder / "a", folder / "b"
    a.write_bytes(b"")
    os.link(a, b)
    fd_a, fd_b = os.open(a, os.O_WRONLY), os.open(b, os.O_RDONLY)
    stale = 0
    try:
        for i in range(1, rounds + 1):
            os.pwrite(fd_a, b"w" * 100, (i - 1) * 100)
            stale += (os.stat(b).st_size != i * 100) + (os.fstat(fd_b).st_size != i * 100)
    finally:
        os.close(fd_a)
        os.close(fd_b)
    return stale


@pytest.mark.parametrize("kind", ["chroot", "tmpfs"])
def test_hard_link_sizes_current_while_the_writer_is_open(lowlevel_view: View, kind: str) -> None:
    """One node per inode: a write through ``a`` is in the attributes of ``b`` before the
    writer closes (the path bridge invalidates ``b`` from a thread and waits for it only at
    the writer's flush, so it is stale now and then: bench/bench_fuse_api.py counts it)."""
    assert stale_sizes(lowlevel_view.scratch, 50) == 0
    assert stale_sizes(lowlevel_view.dir(kind), 50) == 0


def _renameat2(old: Path, new: Path, flags: int) -> int:
    """``renameat2(old, new, flags)``: 0 or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    res = libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags)
    return 0 if res == 0 else ctypes.get_errno()


@pytest.mark.parametrize("kind", list(KINDS))
def test_rename_flags(view: View, kind: str) -> None:
    """``renameat2`` flags: RENAME_NOREPLACE over an existing name is EEXIST (the kernel checks
    names it knows; the bridge checks again); RENAME_EXCHANGE, which the VFS lacks, is EINVAL
    with both files intact (as a Linux file system without it answers) under the low-level
    bridge and the mfusepy one (mfusepy drops the flags: the bridge takes them from libfuse itself)."""
    folder = view.dir(kind)
    (folder / "x").write_bytes(b"x")
    (folder / "y").write_bytes(b"y")
    assert _renameat2(folder / "x", folder / "y", RENAME_NOREPLACE) == errno.EEXIST
    assert _renameat2(folder / "x", folder / "z", RENAME_NOREPLACE) == 0
    assert sorted(os.listdir(folder)) == ["y", "z"]
    assert _renameat2(folder / "z", folder / "y", RENAME_EXCHANGE) == errno.EINVAL
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == [("y", b"y"), ("z", b"x")]


def test_fuse_api_choice_errors(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "m.toml").write_text('libos.entrypoint = "/bin/true"\n')
    proc = run([LIBOS, "mount", "--fuse-api=nope", "m.toml", "mnt"], cwd=tmp_path)
    assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr
    proc = run([LIBOS, "mount", "m.toml", "mnt"], cwd=tmp_path, env={**os.environ, "PFSKIT_FUSE_API": "nope"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "libos: error: unknown FUSE API 'nope' (PFSKIT_FUSE_API or --fuse-api): use mfusepy or lowlevel"]
    assert not mounted(tmp_path / "mnt")


# ---------------------------------------------------------------------- the node table, in process


def test_nodes_follow_lookups_and_forgets(tmp_path: Path) -> None:
    """A node per inode (two names of one file: one node), named by every name the kernel
    looked up; forgotten once the kernel forgets it (after its names are gone and the kernel's
    caches are dropped) and never before: the table neither leaks nor loses nodes in use.
    Served in-process by tests/fuse_ll_nodes.py, in a fresh interpreter (this one has mfusepy
    loaded on libfuse2: fuse_helpers), which looks at the table itself."""
    require(os.geteuid() == 0, "dropping the kernel's dentry cache needs root")
    (tmp_path / "mnt").mkdir()
    script = Path(__file__).with_name("fuse_ll_nodes.py")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "mnt")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
    assert not mounted(tmp_path / "mnt")
