"""Gramine's file-system test plan (LibOS/shim/test/fs) on the LibOS, for every mount type.

Each test runs on a LibOS (``LibOS.empty()``: tmpfs root, /proc, /dev) with the file system under
test mounted at ``/m``: a tmpfs, a ``ChrootFs`` over a host temporary folder, or an
``EncryptedFs`` over another one. The plan: open/close, read/write, seek/tell, truncate, stat,
delete (an unlinked open file stays usable), copy (sequential, reverse, whole, at the sizes
around a 4 KiB node), multiple writers, rename, append from two processes, pipes across threads
and forked processes, and /proc matching the LibOS's state.
"""

from __future__ import annotations

import errno
import os
import random
import stat as st
import threading

import pytest

from libos.libos import LibOS
from vfs.chroot import ChrootFs
from vfs.encrypted import EncryptedFs, KeyStore

M = "/m"
KEY = bytes(range(16, 32))
SIZES = [0, 1, 4095, 4096, 4097, (1 << 20) + 1]
KINDS = ["tmpfs", "chroot", "encrypted"]


def _payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def libos(kind, tmp_path):
    lo = LibOS.empty()
    boot = lo.process()
    boot.mkdir(M, 0o755)
    boot.exit(0)
    if kind == "tmpfs":
        from vfs.tmpfs import TmpFs

        fs = TmpFs()
    elif kind == "chroot":
        fs = ChrootFs(str(tmp_path))
    else:
        keys = KeyStore()
        keys.set("default", KEY)
        fs = EncryptedFs(str(tmp_path), key_name="default", keys=keys, bind_prefix=M)
    lo.vfs.mounts.mount(M, fs)
    yield lo
    lo.shutdown()


@pytest.fixture
def proc(libos):
    return libos.process(["prog", "arg one", ""], cwd=M)


def _errno(fn, *args) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


def _write_all(p, fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = p.write(fd, view[:65536])
        assert n > 0
        view = view[n:]


def _read_all(p, fd: int, chunk: int = 65536) -> bytes:
    out = bytearray()
    while data := p.read(fd, chunk):
        out += data
    return bytes(out)


def _file(p, path: str, data: bytes) -> None:
    fd = p.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    _write_all(p, fd, data)
    p.close(fd)


def _content(p, path: str) -> bytes:
    fd = p.open(path, os.O_RDONLY)
    try:
        return _read_all(p, fd)
    finally:
        p.close(fd)


# ----------------------------------------------------------------------------- open / close


def test_open_close(proc):
    assert _errno(proc.open, "f", os.O_RDONLY) == errno.ENOENT
    fd = proc.open("f", os.O_CREAT | os.O_WRONLY, 0o640)
    assert fd == 0  # a new process's table is empty: the lowest free number
    assert st.S_IMODE(proc.fstat(fd).st_mode) == 0o640 & ~0o022
    assert _errno(proc.open, "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST
    fd2 = proc.open(f"{M}/f", os.O_RDONLY)
    assert fd2 == 1
    proc.close(fd)
    assert _errno(proc.close, fd) == errno.EBADF
    assert proc.open("f", os.O_RDWR) == 0  # the freed number is reused
    proc.close(0)
    proc.close(fd2)
    assert _errno(proc.read, fd2, 1) == errno.EBADF
    assert _errno(proc.open, "f/", os.O_RDONLY) == errno.ENOTDIR
    assert _errno(proc.open, ".", os.O_WRONLY) == errno.EISDIR


# ----------------------------------------------------------------------------- read / write


def test_read_write(proc):
    fd = proc.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    assert proc.write(fd, b"hello ") == 6
    assert proc.writev(fd, [b"wor", b"ld"]) == 5
    assert proc.read(fd, 10) == b""  # at the end
    assert proc.lseek(fd, 0, os.SEEK_SET) == 0
    assert proc.read(fd, 5) == b"hello"
    buf1, buf2 = bytearray(3), bytearray(10)
    assert proc.readv(fd, [buf1, buf2]) == 6
    assert bytes(buf1) == b" wo" and bytes(buf2[:3]) == b"rld"
    assert proc.pread(fd, 5, 6) == b"world"
    assert proc.pwrite(fd, b"W", 6) == 1
    assert proc.lseek(fd, 0, os.SEEK_CUR) == 11  # pread/pwrite don't move the offset
    proc.close(fd)
    assert _content(proc, "f") == b"hello World"
    rd = proc.open("f", os.O_RDONLY)
    assert _errno(proc.write, rd, b"x") == errno.EBADF
    wr = proc.open("f", os.O_WRONLY)
    assert _errno(proc.read, wr, 1) == errno.EBADF


# ----------------------------------------------------------------------------- seek / tell


def test_seek_tell(proc):
    fd = proc.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    _write_all(proc, fd, b"0123456789")
    assert proc.lseek(fd, 0, os.SEEK_CUR) == 10
    assert proc.lseek(fd, 3, os.SEEK_SET) == 3
    assert proc.read(fd, 2) == b"34"
    assert proc.lseek(fd, -1, os.SEEK_CUR) == 4
    assert proc.lseek(fd, -2, os.SEEK_END) == 8
    assert proc.read(fd, 5) == b"89"
    assert _errno(proc.lseek, fd, -11, os.SEEK_END) == errno.EINVAL
    assert _errno(proc.lseek, fd, -1, os.SEEK_SET) == errno.EINVAL
    assert proc.lseek(fd, 0, os.SEEK_CUR) == 10  # a failed seek leaves the offset
    assert proc.lseek(fd, 4096 + 5, os.SEEK_SET) == 4101  # past the end: allowed, no size change
    assert proc.fstat(fd).st_size == 10
    assert proc.write(fd, b"!") == 1  # leaves a hole of zeros
    assert proc.fstat(fd).st_size == 4102
    assert proc.pread(fd, 4200, 0) == b"0123456789" + bytes(4091) + b"!"
    # the offset is shared by dup'ed descriptors
    fd2 = proc.dup(fd)
    proc.lseek(fd, 1, os.SEEK_SET)
    assert proc.lseek(fd2, 0, os.SEEK_CUR) == 1


# ----------------------------------------------------------------------------- truncate


@pytest.mark.parametrize("size", [0, 4095, 4097, 70_000])
def test_truncate_grow_shrink(proc, size):
    data = _payload(size, 1)
    _file(proc, "f", data)
    fd = proc.open("f", os.O_RDWR)
    for new in (size + 5000, size // 2, 0, size + 1, 3):
        proc.ftruncate(fd, new)
        assert proc.fstat(fd).st_size == new
        assert proc.stat("f").st_size == new
        expected = (data[:new] + bytes(new))[:new] if new <= size else None
        got = proc.pread(fd, new + 10, 0)
        assert len(got) == new
        if expected is not None:
            data = expected
        else:
            assert got[:len(data)] == data[:new] and got[len(data):] == bytes(new - len(data))
            data = got
    proc.close(fd)
    proc.truncate("f", 10_000)  # by path
    assert _content(proc, "f") == data + bytes(10_000 - len(data))
    proc.truncate(f"{M}/f", 1)
    assert _content(proc, "f") == data[:1]
    assert _errno(proc.truncate, "f", -1) == errno.EINVAL
    assert _errno(proc.truncate, ".", 0) == errno.EISDIR
    rd = proc.open("f", os.O_RDONLY)
    assert _errno(proc.ftruncate, rd, 0) in (errno.EBADF, errno.EINVAL)


# ----------------------------------------------------------------------------- stat


def test_stat(proc):
    _file(proc, "f", b"x" * 5000)
    proc.mkdir("d", 0o750)
    s = proc.stat("f")
    assert st.S_ISREG(s.st_mode) and s.st_size == 5000 and s.st_nlink == 1
    assert st.S_IMODE(s.st_mode) == 0o644
    d = proc.stat("d")
    assert st.S_ISDIR(d.st_mode) and st.S_IMODE(d.st_mode) == 0o750 and d.st_nlink == 2
    before = proc.stat(".").st_nlink
    proc.mkdir("d/sub")
    assert proc.stat("d").st_nlink == 3
    assert proc.stat(".").st_nlink == before
    fd = proc.open("f", os.O_RDONLY)
    f = proc.fstat(fd)
    assert (f.st_ino, f.st_dev, f.st_size, f.st_mode) == (s.st_ino, s.st_dev, s.st_size, s.st_mode)
    assert proc.fstatat(-100, "f").st_ino == s.st_ino
    dfd = proc.open("d", os.O_RDONLY | os.O_DIRECTORY)
    assert proc.fstatat(dfd, "sub").st_ino == proc.stat("d/sub").st_ino
    proc.chmod("f", 0o600)
    assert st.S_IMODE(proc.fstat(fd).st_mode) == 0o600
    assert _errno(proc.stat, "missing") == errno.ENOENT
    assert _errno(proc.stat, "f/x") == errno.ENOTDIR
    assert sorted(proc.listdir(".")) == ["d", "f"]


# ----------------------------------------------------------------------------- delete


def test_delete_open_file_stays_readable(proc):
    data = _payload(10_000, 2)
    _file(proc, "f", data)
    fd = proc.open("f", os.O_RDWR)
    proc.unlink("f")
    assert _errno(proc.stat, "f") == errno.ENOENT
    assert "f" not in proc.listdir(".")
    assert proc.read(fd, 4) == data[:4]
    assert proc.pread(fd, 20_000, 0) == data
    assert proc.fstat(fd).st_nlink == 0
    assert proc.pwrite(fd, b"new", 0) == 3  # still writable
    assert proc.pread(fd, 3, 0) == b"new"
    fd2 = proc.dup(fd)
    proc.close(fd)
    assert proc.pread(fd2, 3, 0) == b"new"  # until the last descriptor closes
    proc.close(fd2)
    # the name is free again, for a new and unrelated file
    _file(proc, "f", b"other")
    assert _content(proc, "f") == b"other"
    assert _errno(proc.unlink, "f/") == errno.ENOTDIR
    assert _errno(proc.unlink, "missing") == errno.ENOENT
    proc.mkdir("d")
    assert _errno(proc.unlink, "d") == errno.EISDIR
    _file(proc, "d/x", b"")
    assert _errno(proc.rmdir, "d") == errno.ENOTEMPTY
    proc.unlink("d/x")
    proc.rmdir("d")
    assert proc.listdir(".") == ["f"]


# ----------------------------------------------------------------------------- copy


def _copy_sequential(p, src: str, dst: str, chunk: int) -> None:
    fi = p.open(src, os.O_RDONLY)
    fo = p.open(dst, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    while data := p.read(fi, chunk):
        _write_all(p, fo, data)
    p.close(fi)
    p.close(fo)


def _copy_reverse(p, src: str, dst: str, chunk: int) -> None:
    """From the last chunk to the first, seeking backwards on both files (Gramine's copy_rev)."""
    fi = p.open(src, os.O_RDONLY)
    fo = p.open(dst, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    size = p.lseek(fi, 0, os.SEEK_END)
    p.ftruncate(fo, size)
    pos = size
    while pos > 0:
        start = max(0, pos - chunk)
        assert p.lseek(fi, start, os.SEEK_SET) == start
        data = p.read(fi, pos - start)
        assert len(data) == pos - start
        assert p.lseek(fo, start, os.SEEK_SET) == start
        _write_all(p, fo, data)
        pos = start
    p.close(fi)
    p.close(fo)


def _copy_whole(p, src: str, dst: str, chunk: int) -> None:
    fi = p.open(src, os.O_RDONLY)
    size = p.fstat(fi).st_size
    data = p.pread(fi, size, 0)
    assert len(data) == size
    fo = p.open(dst, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    assert p.pwrite(fo, data, 0) == size
    p.close(fi)
    p.close(fo)


@pytest.mark.parametrize("how", [_copy_sequential, _copy_reverse, _copy_whole], ids=["seq", "rev", "whole"])
@pytest.mark.parametrize("size", SIZES)
def test_copy(proc, size, how):
    data = _payload(size, 3)
    _file(proc, "in", data)
    chunk = 4096 if size > 5000 else 1000
    how(proc, "in", "out", chunk)
    assert proc.stat("out").st_size == size
    assert _content(proc, "out") == data
    assert _content(proc, "in") == data


# ----------------------------------------------------------------------------- multiple writers


def test_multiple_writers_fork(proc):
    """Two processes (fork), each with its own open() of one file, writing interleaved records at
    distinct offsets from two threads: every record lands."""
    rec, n = 100, 200
    fd = proc.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    child = proc.fork()
    errors: list[BaseException] = []

    def writer(p, which: int) -> None:
        try:
            own = p.open("f", os.O_WRONLY)
            for i in range(which, n, 2):
                assert p.pwrite(own, bytes([i % 251]) * rec, i * rec) == rec
                if i % 20 == which:  # and some through lseek + write on the shared description
                    p.lseek(own, i * rec, os.SEEK_SET)
                    assert p.write(own, bytes([i % 251]) * rec) == rec
            p.close(own)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(proc, 0)), threading.Thread(target=writer, args=(child, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    child.exit(0)
    assert proc.libos.wait(child.pid) == 0
    assert proc.fstat(fd).st_size == rec * n
    got = proc.pread(fd, rec * n + 1, 0)
    assert got == b"".join(bytes([i % 251]) * rec for i in range(n))


def test_fork_shares_offset(proc):
    fd = proc.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    child = proc.fork()
    assert child.write(fd, b"child ") == 6
    assert proc.write(fd, b"parent") == 6  # the same description: continues after the child
    child.exit(0)
    assert proc.pread(fd, 100, 0) == b"child parent"


# ----------------------------------------------------------------------------- rename


def test_rename(proc):
    _file(proc, "a", b"A" * 5000)
    _file(proc, "b", b"B")
    fd_b = proc.open("b", os.O_RDONLY)
    ino_a = proc.stat("a").st_ino
    proc.rename("a", "b")  # file over file
    assert _errno(proc.stat, "a") == errno.ENOENT
    assert proc.stat("b").st_ino == ino_a
    assert _content(proc, "b") == b"A" * 5000
    assert proc.read(fd_b, 10) == b"B"  # the replaced file lives on through its descriptor
    proc.close(fd_b)
    # into a folder, and back
    proc.mkdir("d")
    proc.rename("b", "d/b")
    assert _content(proc, "d/b") == b"A" * 5000
    proc.rename("d/b", "b")
    # folder over an empty folder
    proc.mkdir("e")
    _file(proc, "d/x", b"xx")
    proc.rename("d", "e")
    assert _errno(proc.stat, "d") == errno.ENOENT
    assert proc.listdir("e") == ["x"]
    assert _content(proc, "e/x") == b"xx"
    # and the errors
    proc.mkdir("f")
    _file(proc, "f/y", b"")
    assert _errno(proc.rename, "e", "f") == errno.ENOTEMPTY
    assert _errno(proc.rename, "b", "f") == errno.EISDIR
    assert _errno(proc.rename, "f", "b") == errno.ENOTDIR
    assert _errno(proc.rename, "e", "e/sub") == errno.EINVAL
    assert _errno(proc.rename, "missing", "z") == errno.ENOENT
    proc.rename("b", "b")  # same file: nothing happens
    assert sorted(proc.listdir(".")) == ["b", "e", "f"]


def test_rename_open_file_keeps_writing(proc):
    fd = proc.open("a", os.O_CREAT | os.O_RDWR, 0o644)
    proc.write(fd, b"before ")
    proc.rename("a", "z")
    proc.write(fd, b"after")
    proc.close(fd)
    assert _content(proc, "z") == b"before after"


# ----------------------------------------------------------------------------- append


def test_append_from_two_processes(proc):
    """O_APPEND on separate open() calls in two processes, writing concurrently: every record
    lands whole, none overwrites another."""
    _file(proc, "log", b"")
    child = proc.fork()
    n = 150
    errors: list[BaseException] = []

    def appender(p, tag: bytes) -> None:
        try:
            fd = p.open("log", os.O_WRONLY | os.O_APPEND)
            for i in range(n):
                assert p.write(fd, tag + b"%04d\n" % i) == 6
            p.close(fd)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=appender, args=(proc, b"P")), threading.Thread(target=appender,
                                                                                     args=(child, b"C"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    child.exit(0)
    lines = _content(proc, "log").splitlines()
    assert len(lines) == 2 * n
    assert [x for x in lines if x.startswith(b"P")] == [b"P%04d" % i for i in range(n)]
    assert [x for x in lines if x.startswith(b"C")] == [b"C%04d" % i for i in range(n)]


def test_append_ignores_seek(proc):
    _file(proc, "f", b"abc")
    fd = proc.open("f", os.O_RDWR | os.O_APPEND)
    proc.lseek(fd, 0, os.SEEK_SET)
    proc.write(fd, b"d")
    assert proc.lseek(fd, 0, os.SEEK_CUR) == 4
    assert proc.pread(fd, 10, 0) == b"abcd"


# ----------------------------------------------------------------------------- pipes


def _reader(p, fd: int, out: list, chunk: int = 1000) -> None:
    while data := p.read(fd, chunk):
        out.append(data)


def test_pipe_between_threads(proc):
    r, w = proc.pipe2()
    data = _payload(300_000, 4)  # several times the pipe's capacity
    got: list[bytes] = []
    t = threading.Thread(target=_reader, args=(proc, r, got))
    t.start()
    _write_all(proc, w, data)
    proc.close(w)
    t.join(10)
    assert not t.is_alive()
    assert b"".join(got) == data


def test_pipe_eof_only_after_every_writer_closes(proc):
    r, w = proc.pipe2()
    w2 = proc.dup(w)
    child = proc.fork()  # the child holds both write ends too
    proc.write(w, b"x")
    proc.close(w)
    proc.close(w2)
    assert proc.read(r, 10) == b"x"
    flags = proc.fcntl(r, 3)
    proc.fcntl(r, 4, flags | os.O_NONBLOCK)
    assert _errno(proc.read, r, 10) == errno.EAGAIN  # the child still has writers: no EOF yet
    child.close(w)
    assert _errno(proc.read, r, 10) == errno.EAGAIN
    child.write(w2, b"from child")
    child.exit(0)  # closes its last write end
    assert proc.read(r, 100) == b"from child"
    assert proc.read(r, 100) == b""  # EOF


def test_pipe_between_forked_processes(proc):
    r, w = proc.pipe2()
    child = proc.fork()
    data = _payload(100_000, 5)

    def child_main() -> None:
        child.close(r)
        _write_all(child, w, data)
        child.exit(0)

    t = threading.Thread(target=child_main)
    t.start()
    proc.close(w)
    got: list[bytes] = []
    _reader(proc, r, got)
    t.join(10)
    assert b"".join(got) == data
    assert proc.libos.wait(child.pid) == 0


def test_pipe_epipe(proc):
    r, w = proc.pipe2()
    r2 = proc.dup(r)
    proc.close(r)
    assert proc.write(w, b"still a reader") == 14
    proc.close(r2)
    assert _errno(proc.write, w, b"x") == errno.EPIPE
    assert _errno(proc.lseek, w, 0, os.SEEK_SET) == errno.ESPIPE


def test_fifo(proc, kind):
    if kind == "encrypted":
        with pytest.raises(OSError) as info:
            proc.mkfifo("fifo")
        assert info.value.errno == errno.EPERM  # encrypted mounts have no FIFOs
        return
    proc.mkfifo("fifo", 0o600)
    assert st.S_ISFIFO(proc.stat("fifo").st_mode)
    got: list[bytes] = []
    child = proc.fork()

    def child_main() -> None:
        fd = child.open("fifo", os.O_RDONLY)  # blocks until the writer opens
        _reader(child, fd, got)
        child.exit(0)

    t = threading.Thread(target=child_main)
    t.start()
    w = proc.open("fifo", os.O_WRONLY)
    _write_all(proc, w, b"through the fifo")
    proc.close(w)
    t.join(10)
    assert not t.is_alive()
    assert b"".join(got) == b"through the fifo"


# ----------------------------------------------------------------------------- /proc


@pytest.fixture
def procfs(libos):
    assert libos.vfs.mounts.at("/proc") is not None, "LibOS.empty() mounts /proc"


def test_proc_cwd(proc, procfs):
    assert proc.readlink("/proc/self/cwd") == M
    proc.mkdir("sub")
    proc.chdir("sub")
    assert proc.readlink("/proc/self/cwd") == f"{M}/sub"
    assert proc.readlink(f"/proc/{proc.pid}/cwd") == proc.getcwd()
    assert proc.stat("/proc/self/cwd").st_ino == proc.stat(".").st_ino


def test_proc_fd_lists_open_fds(proc, procfs):
    _file(proc, "f", b"data")
    fd = proc.open("f", os.O_RDONLY)
    r, w = proc.pipe2()
    fds = sorted(proc.listdir(f"/proc/{proc.pid}/fd"), key=int)
    assert fds == [str(n) for n in sorted([fd, r, w])]
    assert proc.readlink(f"/proc/{proc.pid}/fd/{fd}") == f"{M}/f"
    assert proc.readlink(f"/proc/self/fd/{r}").startswith("pipe:[")
    assert proc.readlink(f"/proc/self/fd/{r}") == proc.readlink(f"/proc/self/fd/{w}")
    proc.close(w)
    assert str(w) not in proc.listdir("/proc/self/fd")
    # another process's table
    other = proc.libos.process(cwd=M)
    ofd = other.open("f", os.O_RDONLY)
    assert proc.listdir(f"/proc/{other.pid}/fd") == [str(ofd)]
    other.exit(0)
    assert _errno(proc.listdir, f"/proc/{other.pid}/fd") == errno.ENOENT


def test_proc_cmdline(proc, procfs):
    assert _content(proc, "/proc/self/cmdline") == b"prog\0arg one\0\0"
    child = proc.fork()
    assert _content(child, "/proc/self/cmdline") == b"prog\0arg one\0\0"
    assert _content(proc, f"/proc/{child.pid}/cmdline") == b"prog\0arg one\0\0"


def test_proc_mounts(proc, kind, procfs):
    lines = [line.split() for line in _content(proc, "/proc/mounts").decode().splitlines()]
    by_path = {fields[1]: fields for fields in lines}
    assert {"/", "/proc", M} <= set(by_path)
    fstype = proc.libos.vfs.mounts.at(M).fs.type_name
    assert by_path[M][2] == fstype
    assert by_path["/"][2] == "tmpfs"
    assert by_path[M][3].split(",")[0] == "rw"
    assert all(len(fields) == 6 for fields in lines)
