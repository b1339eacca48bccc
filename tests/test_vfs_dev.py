"""DevFs through the VFS, compared with the host's real devices."""

from __future__ import annotations

import errno
import os
import stat as st
import time

import pytest

from vfs.dev import DEVICES, DevFs
from vfs.encrypted import KeyStore
from vfs.proc import ProcessInfo, ProcFs
from vfs.tmpfs import TmpFs
from vfs.vfs import VFS


class OneProcess:
    """A ProcProvider with one process (test data)."""

    def __init__(self, fds: dict[int, str]):
        self.info = ProcessInfo(pid=5, ppid=1, comm="t", cmdline=["t"], cwd="/", exe="/t", root="/", fds=fds, uid=0,
                                gid=0, umask=0o022, state="R", threads=1, start_time_ns=time.time_ns(), environ={})

    def current_pid(self) -> int:
        return 5

    def pids(self) -> list[int]:
        return [5]

    def process(self, pid: int) -> ProcessInfo | None:
        return self.info if pid == 5 else None

    def mount_lines(self) -> list[tuple[str, str, str, str]]:
        return [("tmpfs", "/", "tmpfs", "rw")]


@pytest.fixture
def env():
    keys = KeyStore()
    keys.set("default", bytes(range(16)))
    keys.declare("later")
    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    vfs.mounts.mount("/proc", ProcFs(OneProcess({0: "/dev/null", 1: "/dev/zero", 2: "/dev/full", 7: "pipe:[3]"})))
    vfs.mounts.mount("/dev", DevFs(keys))
    return vfs, vfs.context(), keys


def oserror(fn) -> int:
    with pytest.raises(OSError) as info:
        fn()
    return info.value.errno


def both(vfs, ctx, path: str, flags: int):
    """(our OpenFile, host fd) of ``path`` opened with ``flags``."""
    return vfs.open(ctx, path, flags), os.open(path, flags)


@pytest.mark.parametrize("name", ["null", "zero", "full"])
def test_simple_devices_behave_like_the_host(env, name):
    vfs, ctx, _ = env
    ours, fd = both(vfs, ctx, f"/dev/{name}", os.O_RDWR)
    try:
        for size in (0, 1, 100, 65536):
            assert ours.read(size) == os.read(fd, size)
            assert ours.pread(size, 12345) == os.pread(fd, size, 12345)
        for data in (b"", b"x", b"y" * 5000):
            try:
                expect: int | str = os.write(fd, data)
            except OSError as e:
                expect = errno.errorcode[e.errno]
            try:
                got: int | str = ours.write(data)
            except OSError as e:
                got = errno.errorcode[e.errno]
            assert got == expect, (name, len(data))
        for offset, whence in ((100, os.SEEK_SET), (5, os.SEEK_CUR), (0, os.SEEK_END), (-3, os.SEEK_END)):
            assert ours.lseek(offset, whence) == os.lseek(fd, offset, whence)
    finally:
        ours.decref()
        os.close(fd)


def test_full_write_is_enospc(env):
    vfs, ctx, _ = env
    f = vfs.open(ctx, "/dev/full", os.O_WRONLY)
    try:
        assert oserror(lambda: f.write(b"data")) == errno.ENOSPC
        assert oserror(lambda: f.pwrite(b"data", 0)) == errno.ENOSPC
    finally:
        f.decref()


@pytest.mark.parametrize("name", ["random", "urandom"])
def test_random_returns_requested_sizes(env, name):
    vfs, ctx, _ = env
    f = vfs.open(ctx, f"/dev/{name}", os.O_RDWR)
    try:
        for size in (0, 1, 16, 4097, 1 << 20):
            assert len(f.read(size)) == size
        assert f.read(32) != f.read(32)
        assert f.write(b"entropy") == 7
        assert f.lseek(10, os.SEEK_SET) == 0
    finally:
        f.decref()


@pytest.mark.parametrize("name", [name for name, _, _ in DEVICES])
def test_device_mode_and_rdev_equal_the_host(env, name):
    vfs, ctx, _ = env
    ours = vfs.stat(ctx, f"/dev/{name}")
    real = os.stat(f"/dev/{name}")
    assert ours.st_mode == real.st_mode
    assert ours.st_rdev == real.st_rdev
    assert st.S_ISCHR(ours.st_mode) and ours.st_size == 0
    assert dict((n, t) for n, _, t in vfs.listdir(ctx, "/dev"))[name] == 2  # DT_CHR


def test_tty_passes_through_to_the_host(env):
    vfs, ctx, _ = env
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        assert oserror(lambda: vfs.open(ctx, "/dev/tty", os.O_RDWR)) == e.errno  # ENXIO without a terminal
        return
    os.close(fd)
    f = vfs.open(ctx, "/dev/tty", os.O_WRONLY)
    try:
        assert f.write(b"") == 0
    finally:
        f.decref()


def test_stdio_links_like_the_host(env):
    vfs, ctx, _ = env
    for name in ("stdin", "stdout", "stderr", "fd"):
        ours = vfs.readlink(ctx, f"/dev/{name}")
        if os.path.islink(f"/dev/{name}"):
            assert ours == os.readlink(f"/dev/{name}")
        assert ours.startswith("/proc/self/fd")
    # through /proc: the current process's descriptors
    assert [n for n, _, _ in vfs.listdir(ctx, "/dev/fd")][2:] == ["0", "1", "2", "7"]
    assert vfs.lookup(ctx, "/dev/stdout").path == "/dev/zero"
    f = vfs.open(ctx, "/dev/stderr", os.O_WRONLY)
    try:
        assert oserror(lambda: f.write(b"x")) == errno.ENOSPC  # it is /dev/full
    finally:
        f.decref()


def test_dev_top_is_fixed_but_shm_is_writable(env):
    vfs, ctx, _ = env
    assert oserror(lambda: vfs.open(ctx, "/dev/newfile", os.O_WRONLY | os.O_CREAT)) == errno.EPERM
    assert oserror(lambda: vfs.unlink(ctx, "/dev/null")) == errno.EPERM
    assert st.S_IMODE(vfs.stat(ctx, "/dev/shm").st_mode) == 0o1777
    f = vfs.open(ctx, "/dev/shm/seg", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        f.write(b"shared")
        assert f.pread(6, 0) == b"shared"
    finally:
        f.decref()
    vfs.mkfifo(ctx, "/dev/shm/fifo")
    assert st.S_ISFIFO(vfs.stat(ctx, "/dev/shm/fifo").st_mode)
    assert oserror(lambda: vfs.rename(ctx, "/dev/shm/seg", "/dev/seg")) == errno.EXDEV
    vfs.rename(ctx, "/dev/shm/seg", "/dev/shm/seg2")
    assert [n for n, _, _ in vfs.listdir(ctx, "/dev/shm")][2:] == ["fifo", "seg2"]


# ---------------------------------------------------------------------------------------------- keys


def read_key(vfs, ctx, name: str) -> bytes:
    f = vfs.open(ctx, f"/dev/attestation/keys/{name}", os.O_RDONLY)
    try:
        return f.read(100)
    finally:
        f.decref()


def test_key_reads_exactly_16_bytes(env):
    vfs, ctx, _ = env
    assert read_key(vfs, ctx, "default") == bytes(range(16))
    assert read_key(vfs, ctx, "later") == b""  # known, not set: empty, as Gramine


def test_key_write_sets_the_store(env):
    vfs, ctx, keys = env
    new = bytes(range(100, 116))
    f = vfs.open(ctx, "/dev/attestation/keys/later", os.O_WRONLY)
    try:
        assert f.write(new) == 16
    finally:
        f.decref()
    assert keys.get("later") == new
    assert read_key(vfs, ctx, "later") == new


@pytest.mark.parametrize("data, offset", [(b"k" * 15, 0), (b"k" * 17, 0), (b"", 0), (b"k" * 16, 1)])
def test_key_write_of_wrong_length_is_eacces(env, data, offset):
    """Gramine's errno for a key write that is not exactly 16 bytes: EACCES."""
    vfs, ctx, keys = env
    f = vfs.open(ctx, "/dev/attestation/keys/default", os.O_WRONLY)
    try:
        assert oserror(lambda: f.pwrite(data, offset)) == errno.EACCES
    finally:
        f.decref()
    assert keys.get("default") == bytes(range(16))


def test_keys_listed_and_unknown_names(env):
    vfs, ctx, keys = env
    assert [n for n, _, _ in vfs.listdir(ctx, "/dev/attestation/keys")][2:] == ["default", "later"]
    assert oserror(lambda: vfs.open(ctx, "/dev/attestation/keys/nope", os.O_RDONLY)) == errno.ENOENT
    assert oserror(lambda: vfs.stat(ctx, "/dev/attestation/keys/nope")) == errno.ENOENT
    # a new name can't be made (Gramine: EACCES); an existing one opens with O_CREAT|O_TRUNC, as
    # `cat key > /dev/attestation/keys/default` does, and a write sets it
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    assert oserror(lambda: vfs.open(ctx, "/dev/attestation/keys/made", flags, 0o600)) == errno.EACCES
    assert [n for n, _, _ in vfs.listdir(ctx, "/dev/attestation/keys")][2:] == ["default", "later"]
    f = vfs.open(ctx, "/dev/attestation/keys/default", flags, 0o600)
    try:
        assert f.write(b"m" * 16) == 16
    finally:
        f.decref()
    assert keys.get("default") == b"m" * 16


def test_no_attestation_dir_without_a_key_store():
    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    vfs.mounts.mount("/dev", DevFs(None, stdio=False))
    ctx = vfs.context()
    names = [n for n, _, _ in vfs.listdir(ctx, "/dev")][2:]
    assert names == ["null", "zero", "full", "random", "urandom", "tty", "shm"]
