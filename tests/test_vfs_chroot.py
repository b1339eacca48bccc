"""The chroot file system: passthrough to real host files, compared with the host itself."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from pathlib import Path

import pytest

from vfs.chroot import TRUSTED_CHUNK, ChrootFs
from vfs.tmpfs import TmpFs
from vfs.vfs import VFS, Context

RW = os.O_RDWR
CREAT = os.O_CREAT | os.O_RDWR


def make_vfs(host: Path, **kwargs) -> tuple[VFS, Context, ChrootFs]:
    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    vfs.mkdir(vfs.context(), "/host")
    fs = ChrootFs(str(host), **kwargs)
    vfs.mounts.mount("/host", fs)
    return vfs, vfs.context(), fs


@pytest.fixture
def host(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    d.mkdir()
    return d


def read_all(vfs: VFS, ctx: Context, path: str) -> bytes:
    f = vfs.open(ctx, path, os.O_RDONLY)
    try:
        return f.read(1 << 20)
    finally:
        f.decref()


def test_write_through_vfs_read_on_host_and_back(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    f = vfs.open(ctx, "/host/a.txt", CREAT, 0o640)
    assert f.write(b"hello world") == 11
    f.pwrite(b"W", 6)
    f.decref()
    assert (host / "a.txt").read_bytes() == b"hello World"
    assert stat.S_IMODE(os.stat(host / "a.txt").st_mode) == 0o640 & ~ctx.umask
    (host / "b.txt").write_bytes(b"from the host")
    assert read_all(vfs, ctx, "/host/b.txt") == b"from the host"
    f = vfs.open(ctx, "/host/b.txt", RW | os.O_APPEND)
    f.write(b"!")
    f.decref()
    assert (host / "b.txt").read_bytes() == b"from the host!"
    f = vfs.open(ctx, "/host/b.txt", RW | os.O_TRUNC)
    assert f.size() == 0
    f.decref()
    assert (host / "b.txt").read_bytes() == b""


def test_stat_fields_equal_the_hosts(host: Path) -> None:
    vfs, ctx, fs = make_vfs(host)
    (host / "f").write_bytes(b"x" * 5000)
    os.link(host / "f", host / "g")
    (host / "d").mkdir()
    for name in ("f", "d"):
        mine = vfs.stat(ctx, "/host/" + name)
        theirs = os.lstat(host / name)
        assert mine.st_ino == theirs.st_ino
        assert mine.st_dev == fs.dev
        assert (mine.st_mode, mine.st_nlink, mine.st_size, mine.st_uid, mine.st_gid) == \
            (theirs.st_mode, theirs.st_nlink, theirs.st_size, theirs.st_uid, theirs.st_gid)
        assert (mine.st_mtime_ns, mine.st_ctime_ns, mine.st_blocks) == \
            (theirs.st_mtime_ns, theirs.st_ctime_ns, theirs.st_blocks)
    assert vfs.stat(ctx, "/host/f").st_nlink == 2
    # one inode object per host object, whatever the name
    assert vfs.lookup(ctx, "/host/f").inode is vfs.lookup(ctx, "/host/g").inode
    # a change made on the host shows at once
    os.chmod(host / "f", 0o600)
    with open(host / "f", "ab") as out:
        out.write(b"more")
    assert stat.S_IMODE(vfs.stat(ctx, "/host/f").st_mode) == 0o600
    assert vfs.stat(ctx, "/host/g").st_size == 5004


def test_chmod_utimens_truncate_pass_through(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    (host / "f").write_bytes(b"abcdef")
    vfs.chmod(ctx, "/host/f", 0o604)
    assert stat.S_IMODE(os.stat(host / "f").st_mode) == 0o604
    vfs.utimens(ctx, "/host/f", 1_000_000_000_123, None)
    s = os.stat(host / "f")
    assert s.st_atime_ns == 1_000_000_000_123
    assert vfs.stat(ctx, "/host/f").st_atime_ns == s.st_atime_ns
    vfs.utimens(ctx, "/host/f", None, 2_000_000_000_000)
    assert os.stat(host / "f").st_atime_ns == 1_000_000_000_123
    assert os.stat(host / "f").st_mtime_ns == 2_000_000_000_000
    vfs.truncate(ctx, "/host/f", 2)
    assert (host / "f").read_bytes() == b"ab"
    vfs.truncate(ctx, "/host/f", 4)
    assert (host / "f").read_bytes() == b"ab\0\0"


def test_unlinked_open_file_keeps_working(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    f = vfs.open(ctx, "/host/tmp", CREAT)
    f.write(b"before")
    vfs.unlink(ctx, "/host/tmp")
    assert not (host / "tmp").exists()
    with pytest.raises(FileNotFoundError):
        vfs.stat(ctx, "/host/tmp")
    f.write(b" after")
    f.lseek(0, os.SEEK_SET)
    assert f.read(100) == b"before after"
    s = f.stat()
    assert s.st_nlink == 0 and s.st_size == 12
    f.decref()


def test_rename_over_existing_file(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    (host / "a").write_bytes(b"A")
    (host / "b").write_bytes(b"B")
    old_b = vfs.open(ctx, "/host/b", os.O_RDONLY)
    a_inode = vfs.lookup(ctx, "/host/a").inode
    vfs.rename(ctx, "/host/a", "/host/b")
    assert not (host / "a").exists()
    assert (host / "b").read_bytes() == b"A"
    assert vfs.lookup(ctx, "/host/b").inode is a_inode
    assert vfs.stat(ctx, "/host/b").st_ino == os.stat(host / "b").st_ino
    assert old_b.read(10) == b"B"  # the replaced file lives on through its descriptor
    assert old_b.stat().st_nlink == 0
    old_b.decref()
    with pytest.raises(FileNotFoundError):
        vfs.stat(ctx, "/host/a")


def test_directory_rename_keeps_inodes_consistent(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    vfs.mkdir(ctx, "/host/d")
    vfs.mkdir(ctx, "/host/d/sub")
    f = vfs.open(ctx, "/host/d/sub/x", CREAT)
    f.write(b"x1")
    x_inode = f.inode
    d_inode = vfs.lookup(ctx, "/host/d").inode  # held without a descriptor: only its path finds it
    vfs.mkdir(ctx, "/host/d/sub/y")
    y_inode = vfs.lookup(ctx, "/host/d/sub/y").inode
    vfs.rename(ctx, "/host/d", "/host/e")
    assert d_inode.stat().st_nlink == 3 and y_inode.stat().st_nlink == 2
    assert d_inode.stat().st_ino == os.stat(host / "e").st_ino
    assert (host / "e" / "sub" / "x").read_bytes() == b"x1"
    assert x_inode.path == str(host / "e" / "sub" / "x")  # type: ignore[attr-defined]
    f.write(b"x2")
    assert f.stat().st_size == 4 and f.stat().st_nlink == 1
    f.decref()
    assert read_all(vfs, ctx, "/host/e/sub/x") == b"x1x2"
    assert [n for n, _, _ in vfs.listdir(ctx, "/host")] == [".", "..", "e"]
    vfs.rmdir(ctx, "/host/e/sub/y")
    vfs.truncate(ctx, "/host/e/sub/x", 1)
    assert (host / "e" / "sub" / "x").read_bytes() == b"x"
    with pytest.raises(OSError) as exc:
        vfs.rmdir(ctx, "/host/e")
    assert exc.value.errno == errno.ENOTEMPTY


def test_namespace_operations_match_the_host(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    vfs.mkdir(ctx, "/host/d", 0o750)
    assert stat.S_IMODE(os.stat(host / "d").st_mode) == 0o750 & ~ctx.umask
    vfs.symlink(ctx, "../target", "/host/d/link")
    assert os.readlink(host / "d" / "link") == "../target"
    assert vfs.readlink(ctx, "/host/d/link") == "../target"
    vfs.mkfifo(ctx, "/host/d/fifo")
    assert stat.S_ISFIFO(os.lstat(host / "d" / "fifo").st_mode)
    assert stat.S_ISFIFO(vfs.stat(ctx, "/host/d/fifo").st_mode)
    (host / "target").write_bytes(b"t")
    vfs.link(ctx, "/host/target", "/host/d/hard")
    assert os.stat(host / "d" / "hard").st_ino == os.stat(host / "target").st_ino
    assert read_all(vfs, ctx, "/host/d/link") == b"t"
    names = sorted(n for n, _, _ in vfs.listdir(ctx, "/host/d"))
    assert names == sorted([".", "..", "link", "fifo", "hard"])
    for name in ("link", "fifo", "hard"):
        vfs.unlink(ctx, "/host/d/" + name)
    vfs.rmdir(ctx, "/host/d")
    assert sorted(os.listdir(host)) == ["target"]
    with pytest.raises(OSError) as exc:
        vfs.open(ctx, "/host/target", CREAT | os.O_EXCL)
    assert exc.value.errno == errno.EEXIST


def test_single_host_file_mount(tmp_path: Path) -> None:
    (tmp_path / "one").write_bytes(b"single")
    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    ctx = vfs.context()
    vfs.open(ctx, "/one", CREAT).decref()
    vfs.mounts.mount("/one", ChrootFs(str(tmp_path / "one")))
    assert read_all(vfs, ctx, "/one") == b"single"
    assert vfs.stat(ctx, "/one").st_ino == os.stat(tmp_path / "one").st_ino


def test_readonly_mount(host: Path) -> None:
    (host / "f").write_bytes(b"ro")
    vfs, ctx, fs = make_vfs(host, readonly=True)
    assert fs.readonly
    assert read_all(vfs, ctx, "/host/f") == b"ro"
    for call in (lambda: vfs.open(ctx, "/host/f", RW),
                 lambda: vfs.open(ctx, "/host/new", CREAT),
                 lambda: vfs.mkdir(ctx, "/host/d"),
                 lambda: vfs.unlink(ctx, "/host/f"),
                 lambda: vfs.rename(ctx, "/host/f", "/host/g"),
                 lambda: vfs.truncate(ctx, "/host/f", 0),
                 lambda: vfs.chmod(ctx, "/host/f", 0o600)):
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == errno.EROFS
    assert sorted(os.listdir(host)) == ["f"]
    assert (host / "f").read_bytes() == b"ro"


def test_host_errors_keep_their_errno(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    (host / "d").mkdir()
    (host / "d" / "x").write_bytes(b"")
    # removed behind the VFS's back between its checks and the host call
    inode = vfs.lookup(ctx, "/host/d").inode
    os.unlink(host / "d" / "x")
    with pytest.raises(FileNotFoundError):
        inode.unlink("x")


# ---------------------------------------------------------------------- trusted and allowed files


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_trusted_file_with_the_right_hash_reads(host: Path) -> None:
    data = os.urandom(3 * TRUSTED_CHUNK + 123)
    (host / "lib.so").write_bytes(data)
    vfs, ctx, _ = make_vfs(host, trusted={str(host / "lib.so"): sha(data)}, policy="strict")
    f = vfs.open(ctx, "/host/lib.so", os.O_RDONLY)
    assert f.read(len(data) + 10) == data
    assert f.pread(10, TRUSTED_CHUNK - 5) == data[TRUSTED_CHUNK - 5:TRUSTED_CHUNK + 5]
    f.decref()


def test_trusted_file_with_a_wrong_hash_is_refused(host: Path, caplog: pytest.LogCaptureFixture) -> None:
    (host / "lib.so").write_bytes(b"evil")
    expected = sha(b"good")
    vfs, ctx, _ = make_vfs(host, trusted={"file:" + str(host / "lib.so"): expected}, policy="strict")
    with caplog.at_level(logging.WARNING, logger="vfs.chroot"), pytest.raises(OSError) as exc:
        vfs.open(ctx, "/host/lib.so", os.O_RDONLY)
    assert exc.value.errno == errno.EACCES
    lines = [r.getMessage() for r in caplog.records if r.name == "vfs.chroot"]
    assert len(lines) == 1
    assert str(host / "lib.so") in lines[0] and expected.hex() in lines[0] and sha(b"evil").hex() in lines[0]


def test_trusted_file_changed_after_open_is_refused(host: Path) -> None:
    data = b"a" * (2 * TRUSTED_CHUNK)
    (host / "t").write_bytes(data)
    vfs, ctx, _ = make_vfs(host, trusted={str(host / "t"): sha(data)}, policy="strict")
    f = vfs.open(ctx, "/host/t", os.O_RDONLY)
    assert f.pread(4, 0) == b"aaaa"
    with open(host / "t", "r+b") as out:
        out.seek(TRUSTED_CHUNK + 7)
        out.write(b"X")
    with pytest.raises(OSError) as exc:
        f.pread(4, TRUSTED_CHUNK)
    assert exc.value.errno == errno.EACCES
    f.decref()
    # and a new open re-hashes the changed file and refuses it
    with pytest.raises(OSError) as exc:
        vfs.open(ctx, "/host/t", os.O_RDONLY)
    assert exc.value.errno == errno.EACCES


def test_trusted_file_changed_after_open_is_refused_by_preadinto(host: Path) -> None:
    """The zero-copy read (the FUSE bridge's) checks every byte too."""
    data = b"a" * (2 * TRUSTED_CHUNK)
    (host / "t").write_bytes(data)
    vfs, ctx, _ = make_vfs(host, trusted={str(host / "t"): sha(data)}, policy="strict")
    f = vfs.open(ctx, "/host/t", os.O_RDONLY)
    buf = bytearray(8)
    assert f.preadinto(memoryview(buf), 4) == 8 and buf == b"a" * 8
    with open(host / "t", "r+b") as out:
        out.seek(TRUSTED_CHUNK + 7)
        out.write(b"X")
    buf = bytearray(TRUSTED_CHUNK)
    with pytest.raises(OSError) as exc:
        f.preadinto(memoryview(buf), TRUSTED_CHUNK)
    assert exc.value.errno == errno.EACCES
    assert b"X" not in buf
    f.decref()


def test_preadinto_matches_pread_on_host_files(host: Path) -> None:
    data = os.urandom(3 * TRUSTED_CHUNK + 5)
    (host / "f").write_bytes(data)
    vfs, ctx, _ = make_vfs(host)
    f = vfs.open(ctx, "/host/f", os.O_RDONLY)
    for offset, size in ((0, 10), (TRUSTED_CHUNK - 3, 7), (len(data) - 4, 100), (len(data) + 9, 3)):
        buf = bytearray(size)
        n = f.preadinto(memoryview(buf), offset)
        assert bytes(buf[:n]) == f.pread(size, offset) == data[offset:offset + size]
    f.decref()


def test_trusted_file_is_read_only(host: Path, caplog: pytest.LogCaptureFixture) -> None:
    (host / "t").write_bytes(b"data")
    vfs, ctx, _ = make_vfs(host, trusted={str(host / "t"): sha(b"data")}, policy="strict")
    for flags in (os.O_WRONLY, RW, os.O_RDONLY | os.O_TRUNC, RW | os.O_APPEND):
        with pytest.raises(OSError) as exc:
            vfs.open(ctx, "/host/t", flags)
        assert exc.value.errno == errno.EACCES
    with pytest.raises(OSError) as exc:
        vfs.truncate(ctx, "/host/t", 0)
    assert exc.value.errno == errno.EACCES
    assert (host / "t").read_bytes() == b"data"


def test_trusted_without_hash_is_accepted_and_logged(host: Path, caplog: pytest.LogCaptureFixture) -> None:
    (host / "t").write_bytes(b"data")
    vfs, ctx, _ = make_vfs(host, trusted={str(host / "t"): None}, policy="strict")
    with caplog.at_level(logging.WARNING, logger="vfs.chroot"):
        assert read_all(vfs, ctx, "/host/t") == b"data"
    assert any(sha(b"data").hex() in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("entry", ["t", ""])
def test_trusted_without_hash_keeps_the_first_hash(host: Path, entry: str) -> None:
    # a file (or a file under a trusted folder) not hashed at boot: pinned at its first open
    (host / "t").write_bytes(b"data")
    vfs, ctx, _ = make_vfs(host, trusted={str(host / entry) if entry else f"{host}/": None}, policy="strict")
    assert read_all(vfs, ctx, "/host/t") == b"data"
    (host / "t").write_bytes(b"DATA")
    with pytest.raises(OSError) as info:
        read_all(vfs, ctx, "/host/t")
    assert info.value.errno == errno.EACCES


def test_trusted_files_without_hash_are_hashed_at_boot(host: Path) -> None:
    from vfs.chroot import hash_trusted_files

    (host / "t").write_bytes(b"data")
    trusted = hash_trusted_files({str(host / "t"): None, str(host / "missing"): None, str(host) + "/": None,
                                  "file:" + str(host / "given"): sha(b"x")})
    assert trusted == {str(host / "t"): sha(b"data"), str(host / "missing"): None, str(host) + "/": None,
                       "file:" + str(host / "given"): sha(b"x")}
    (host / "t").write_bytes(b"DATA")  # changed before the first open: refused
    vfs, ctx, _ = make_vfs(host, trusted=trusted, policy="strict")
    with pytest.raises(OSError) as info:
        read_all(vfs, ctx, "/host/t")
    assert info.value.errno == errno.EACCES


def test_strict_policy_refuses_files_neither_trusted_nor_allowed(host: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    (host / "secret").write_bytes(b"s")
    (host / "ok").write_bytes(b"ok")
    vfs, ctx, _ = make_vfs(host, trusted={}, allowed=[str(host / "ok")], policy="strict")
    assert read_all(vfs, ctx, "/host/ok") == b"ok"
    with caplog.at_level(logging.WARNING, logger="vfs.chroot"), pytest.raises(OSError) as exc:
        vfs.open(ctx, "/host/secret", os.O_RDONLY)
    assert exc.value.errno == errno.EACCES
    assert any(str(host / "secret") in r.getMessage() for r in caplog.records)
    with pytest.raises(OSError) as exc:
        vfs.open(ctx, "/host/new", CREAT)
    assert exc.value.errno == errno.EACCES
    assert not (host / "new").exists()
    # metadata stays visible, as in Gramine
    assert vfs.stat(ctx, "/host/secret").st_size == 1


def test_allowed_folder_prefix(host: Path) -> None:
    (host / "logs").mkdir()
    (host / "logs" / "deep").mkdir()
    (host / "other").write_bytes(b"o")
    vfs, ctx, _ = make_vfs(host, allowed=["file:" + str(host / "logs") + "/"], policy="strict")
    f = vfs.open(ctx, "/host/logs/deep/out.log", CREAT)
    f.write(b"line\n")
    f.decref()
    assert (host / "logs" / "deep" / "out.log").read_bytes() == b"line\n"
    with pytest.raises(OSError) as exc:
        vfs.open(ctx, "/host/other", os.O_RDONLY)
    assert exc.value.errno == errno.EACCES
    # a prefix means a folder, not any name that starts with the same letters
    (host / "logsX").write_bytes(b"no")
    with pytest.raises(OSError):
        vfs.open(ctx, "/host/logsX", os.O_RDONLY)


def test_allow_all_but_log(host: Path, caplog: pytest.LogCaptureFixture) -> None:
    (host / "any").write_bytes(b"a")
    vfs, ctx, _ = make_vfs(host, policy="allow_all_but_log")
    with caplog.at_level(logging.WARNING, logger="vfs.chroot"):
        assert read_all(vfs, ctx, "/host/any") == b"a"
    lines = [r.getMessage() for r in caplog.records if r.name == "vfs.chroot"]
    assert len(lines) == 1 and str(host / "any") in lines[0]


def test_no_policy_is_plain_passthrough(host: Path, caplog: pytest.LogCaptureFixture) -> None:
    (host / "any").write_bytes(b"a")
    vfs, ctx, _ = make_vfs(host)
    with caplog.at_level(logging.DEBUG, logger="vfs.chroot"):
        assert read_all(vfs, ctx, "/host/any") == b"a"
    assert not [r for r in caplog.records if r.name == "vfs.chroot"]


def test_unknown_policy_is_rejected(host: Path) -> None:
    with pytest.raises(ValueError):
        ChrootFs(str(host), policy="lenient")


def test_listed_trusted_files_are_verified_whatever_the_policy(host: Path) -> None:
    (host / "t").write_bytes(b"changed")
    vfs, ctx, _ = make_vfs(host, trusted={str(host / "t"): sha(b"original")})
    with pytest.raises(OSError) as exc:
        vfs.open(ctx, "/host/t", os.O_RDONLY)
    assert exc.value.errno == errno.EACCES
    (host / "other").write_bytes(b"o")
    assert read_all(vfs, ctx, "/host/other") == b"o"  # no policy: unlisted files pass


def test_statfs_is_the_hosts(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    info = vfs.statfs(ctx, "/host")
    v = os.statvfs(host)
    assert (info["f_bsize"], info["f_blocks"], info["f_files"]) == (v.f_bsize, v.f_blocks, v.f_files)


def test_attribute_changes_on_an_unlinked_or_replaced_open_file_stay_on_it(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    (host / "a").write_bytes(b"a")
    (host / "b").write_bytes(b"b")
    os.chmod(host / "a", 0o644)
    f = vfs.open(ctx, "/host/b", os.O_RDWR)
    vfs.rename(ctx, "/host/a", "/host/b")
    f.inode.chmod(0o600)
    f.inode.utimens(None, 10**18)
    assert f.stat().st_mode & 0o777 == 0o600 and f.stat().st_mtime_ns == 10**18
    assert os.stat(host / "b").st_mode & 0o777 == 0o644 and os.stat(host / "b").st_mtime_ns != 10**18
    vfs.unlink(ctx, "/host/b")
    f.inode.chmod(0o640)
    assert f.stat().st_mode & 0o777 == 0o640
    f.decref()
    g = vfs.open(ctx, "/host/c", os.O_RDWR | os.O_CREAT, 0o644)
    inode = g.inode
    g.decref()
    os.unlink(host / "c")
    with pytest.raises(FileNotFoundError):
        inode.chmod(0o600)  # gone, and no descriptor left to reach it by


def test_reopen_of_an_unlinked_or_replaced_file_opens_the_same_object(host: Path) -> None:
    """What opening /proc/self/fd/N does on Linux: the object the descriptor is open on."""
    vfs, ctx, _ = make_vfs(host)
    (host / "f").write_bytes(b"old")
    f = vfs.open(ctx, "/host/f", os.O_RDWR)
    (host / "g").write_bytes(b"new")
    vfs.rename(ctx, "/host/g", "/host/f")  # f now names another file
    again = vfs.reopen(ctx, f, os.O_RDWR)
    assert again.pread(10, 0) == b"old"
    again.pwrite(b"OLD", 0)
    assert f.pread(10, 0) == b"OLD" and (host / "f").read_bytes() == b"new"
    vfs.unlink(ctx, "/host/f")
    third = vfs.reopen(ctx, again, os.O_RDONLY)
    assert third.pread(10, 0) == b"OLD"
    for g in (f, again, third):
        g.decref()
    assert os.listdir(host) == []


def test_reopen_checks_permissions_and_opens_fifos_as_fifos(host: Path) -> None:
    vfs, ctx, _ = make_vfs(host)
    (host / "ro").write_bytes(b"r")
    os.chmod(host / "ro", 0o444)
    user = vfs.context(uid=1000, gid=1000)
    f = vfs.open(user, "/host/ro", os.O_RDONLY)
    vfs.unlink(ctx, "/host/ro")
    with pytest.raises(PermissionError):
        vfs.reopen(user, f, os.O_RDWR)
    assert vfs.reopen(user, f, os.O_RDONLY).pread(5, 0) == b"r"
    f.decref()
    vfs.mknod(ctx, "/host/fifo", 0o10644)
    reader = vfs.open(ctx, "/host/fifo", os.O_RDONLY | os.O_NONBLOCK)
    writer = vfs.reopen(ctx, reader, os.O_WRONLY | os.O_NONBLOCK)  # a FIFO's open rules apply
    assert writer.write(b"through") == 7
    assert reader.read(100) == b"through"
    writer.decref()
    reader.decref()
