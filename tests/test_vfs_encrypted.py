"""The encrypted file system over real host files, checked with the real ``pfs`` command."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vfs.encrypted import EncryptedFs, KeyStore
from vfs.tmpfs import TmpFs
from vfs.vfs import VFS, Context

PFS = str(Path(sys.executable).with_name("pfs"))
CREAT = os.O_CREAT | os.O_RDWR
NODE = 4096


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder (the cwd, so that relative mount URIs bind as Gramine does) with a key."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "enc").mkdir()
    (tmp_path / "key").write_bytes(os.urandom(16))
    return tmp_path


def key_of(work: Path) -> bytes:
    return (work / "key").read_bytes()


def make_vfs(uri: str = "enc", keys: KeyStore | None = None, **kwargs) -> tuple[VFS, Context, KeyStore]:
    keys = keys if keys is not None else KeyStore({"default": Path("key").read_bytes()})
    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    vfs.mkdir(vfs.context(), "/secret")
    vfs.mounts.mount("/secret", EncryptedFs(uri, keys=keys, **kwargs))
    return vfs, vfs.context(), keys


def put(vfs: VFS, ctx: Context, path: str, data: bytes) -> None:
    f = vfs.open(ctx, path, CREAT | os.O_TRUNC, 0o600)
    try:
        assert f.write(data) == len(data)
    finally:
        f.decref()


def get(vfs: VFS, ctx: Context, path: str) -> bytes:
    f = vfs.open(ctx, path, os.O_RDONLY)
    try:
        return f.read(1 << 24)
    finally:
        f.decref()


def pfs_decrypt(work: Path, host_file: str, bound: str) -> bytes:
    out = work / "plain.out"
    if out.exists():
        out.unlink()
    run = subprocess.run([PFS, "decrypt", "-q", "-w", str(work / "key"), "-i", host_file, "-o", str(out),
                          "--expect-path", bound], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    return out.read_bytes()


def errno_of(call) -> int:
    with pytest.raises(OSError) as exc:
        call()
    return exc.value.errno


def test_files_written_through_the_vfs_decrypt_with_pfs(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    vfs.mkdir(ctx, "/secret/a")
    small, big = b"small file\n", os.urandom(5 * NODE * 100 + 17)
    put(vfs, ctx, "/secret/a/small", small)
    put(vfs, ctx, "/secret/a/big", big)
    assert pfs_decrypt(work, "enc/a/small", "enc/a/small") == small
    assert pfs_decrypt(work, "enc/a/big", "enc/a/big") == big
    assert get(vfs, ctx, "/secret/a/big") == big
    s = vfs.stat(ctx, "/secret/a/big")
    host = os.stat(work / "enc" / "a" / "big")
    assert (s.st_size, s.st_ino, s.st_blocks) == (len(big), host.st_ino, host.st_blocks)
    assert host.st_size > len(big) and host.st_size % NODE == 0
    names = [n for n, _, _ in vfs.listdir(ctx, "/secret/a")]
    assert sorted(names) == [".", "..", "big", "small"]


def test_bound_path_is_the_uri_path_as_given(work: Path) -> None:
    vfs, ctx, _ = make_vfs(uri="./enc/")
    put(vfs, ctx, "/secret/x", b"x")
    assert pfs_decrypt(work, "enc/x", "enc/x") == b"x"
    vfs, ctx, _ = make_vfs(uri=str(work / "enc"))
    put(vfs, ctx, "/secret/y", b"y")
    assert pfs_decrypt(work, "enc/y", str(work / "enc" / "y")) == b"y"


def test_files_from_pfs_encrypt_bind_prefix_open_with_bind_prefix(work: Path) -> None:
    plain = work / "plain"
    (plain / "sub").mkdir(parents=True)
    (plain / "sub" / "f.txt").write_bytes(b"made by pfs encrypt")
    run = subprocess.run([PFS, "encrypt", "-q", "-w", "key", "-i", "plain", "-o", "enc/tree", "--bind-prefix", "/x"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    vfs, ctx, _ = make_vfs(uri="enc/tree", bind_prefix="/x")
    assert get(vfs, ctx, "/secret/sub/f.txt") == b"made by pfs encrypt"
    put(vfs, ctx, "/secret/sub/new", b"new")
    assert pfs_decrypt(work, "enc/tree/sub/new", "/x/sub/new") == b"new"
    # without the prefix the binding doesn't match
    vfs, ctx, _ = make_vfs(uri="enc/tree")
    assert errno_of(lambda: get(vfs, ctx, "/secret/sub/f.txt")) == errno.EACCES


def test_tampered_files_are_refused(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    vfs, ctx, _ = make_vfs()
    data = os.urandom(20000)
    put(vfs, ctx, "/secret/mht", data)
    put(vfs, ctx, "/secret/datanode", data)
    for name, node in (("mht", 1), ("datanode", 3)):
        with open(work / "enc" / name, "r+b") as f:
            f.seek(node * NODE + 100)
            byte = f.read(1)
            f.seek(node * NODE + 100)
            f.write(bytes([byte[0] ^ 1]))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vfs.encrypted"):
        assert errno_of(lambda: vfs.open(ctx, "/secret/mht", os.O_RDONLY)) == errno.EIO
        f = vfs.open(ctx, "/secret/datanode", os.O_RDONLY)  # the bad node is only met on reading
        assert f.pread(100, 0) == data[:100]
        assert errno_of(lambda: f.pread(100, 8000)) == errno.EIO
        f.decref()
    lines = [r.getMessage() for r in caplog.records if r.name == "vfs.encrypted"]
    assert len(lines) == 2
    assert "enc/mht" in lines[0] and "node 1" in lines[0]
    assert "enc/datanode" in lines[1] and "node 3" in lines[1]
    # stat and listing still work
    assert vfs.stat(ctx, "/secret/mht").st_size in (len(data), os.stat(work / "enc" / "mht").st_size)


def test_wrong_key_is_refused_but_stat_works(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    vfs, ctx, _ = make_vfs()
    put(vfs, ctx, "/secret/f", b"secret data")
    other, octx, _ = make_vfs(keys=KeyStore({"default": os.urandom(16)}))
    with caplog.at_level(logging.WARNING, logger="vfs.encrypted"):
        assert errno_of(lambda: other.open(octx, "/secret/f", os.O_RDONLY)) == errno.EACCES
    assert any("enc/f" in r.getMessage() for r in caplog.records)
    assert other.stat(octx, "/secret/f").st_size == os.stat(work / "enc" / "f").st_size
    assert [n for n, _, _ in other.listdir(octx, "/secret")] == [".", "..", "f"]
    assert vfs.stat(ctx, "/secret/f").st_size == len(b"secret data")


def test_missing_key_then_set(work: Path) -> None:
    keys = KeyStore()
    vfs, ctx, _ = make_vfs(keys=keys)
    assert keys.names() == ["default"]
    with pytest.raises(OSError) as exc:
        vfs.open(ctx, "/secret/f", CREAT)
    assert exc.value.errno == errno.EACCES and "key default is not set" in str(exc.value)
    assert os.listdir(work / "enc") == []  # nothing half-made on the host
    with pytest.raises(OSError) as exc:
        keys.get("default")
    assert exc.value.errno == errno.EACCES and str(exc.value.strerror) == "key default is not set"
    keys.set("default", key_of(work))
    put(vfs, ctx, "/secret/f", b"now it works")
    assert get(vfs, ctx, "/secret/f") == b"now it works"
    with pytest.raises(OSError) as exc:
        keys.set("default", b"short")
    assert exc.value.errno == errno.EINVAL


def test_two_descriptions_share_one_file(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    a = vfs.open(ctx, "/secret/shared", CREAT)
    b = vfs.open(ctx, "/secret/shared", os.O_RDONLY)
    c = vfs.open(ctx, "/secret/shared", os.O_RDWR | os.O_APPEND)
    a.write(b"hello ")
    assert b.read(100) == b"hello "
    c.write(b"world")
    assert b.read(100) == b"world"
    a.pwrite(b"H", 0)
    assert b.pread(100, 0) == b"Hello world"
    assert vfs.stat(ctx, "/secret/shared").st_size == 11
    a.fsync()  # durable now, while still open
    assert pfs_decrypt(work, "enc/shared", "enc/shared") == b"Hello world"
    for f in (a, b, c):
        f.decref()
    assert get(vfs, ctx, "/secret/shared") == b"Hello world"


def test_reader_then_writer_upgrade(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    put(vfs, ctx, "/secret/f", b"1234")
    r = vfs.open(ctx, "/secret/f", os.O_RDONLY)
    assert r.read(2) == b"12"
    w = vfs.open(ctx, "/secret/f", os.O_WRONLY)
    w.pwrite(b"ab", 2)
    assert r.read(10) == b"ab"
    w.decref()
    r.decref()
    assert pfs_decrypt(work, "enc/f", "enc/f") == b"12ab"


def test_rename_directory_rebinds_every_file(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    vfs.mkdir(ctx, "/secret/d")
    vfs.mkdir(ctx, "/secret/d/sub")
    put(vfs, ctx, "/secret/d/closed", b"closed file")
    put(vfs, ctx, "/secret/d/sub/deep", os.urandom(10000))
    deep = get(vfs, ctx, "/secret/d/sub/deep")
    held = vfs.open(ctx, "/secret/d/open", CREAT)
    held.write(b"open file, unflushed")
    reader = vfs.open(ctx, "/secret/d/sub/deep", os.O_RDONLY)
    vfs.rename(ctx, "/secret/d", "/secret/moved")
    assert not (work / "enc" / "d").exists()
    held.write(b" and more")
    assert reader.pread(10, 0) == deep[:10]
    held.decref()
    reader.decref()
    assert get(vfs, ctx, "/secret/moved/closed") == b"closed file"
    assert get(vfs, ctx, "/secret/moved/sub/deep") == deep
    assert get(vfs, ctx, "/secret/moved/open") == b"open file, unflushed and more"
    assert pfs_decrypt(work, "enc/moved/closed", "enc/moved/closed") == b"closed file"
    assert pfs_decrypt(work, "enc/moved/sub/deep", "enc/moved/sub/deep") == deep
    assert pfs_decrypt(work, "enc/moved/open", "enc/moved/open") == b"open file, unflushed and more"


def test_rename_file_over_another(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    put(vfs, ctx, "/secret/a", b"A")
    put(vfs, ctx, "/secret/b", b"B")
    old_b = vfs.open(ctx, "/secret/b", os.O_RDONLY)
    vfs.rename(ctx, "/secret/a", "/secret/b")
    assert get(vfs, ctx, "/secret/b") == b"A"
    assert old_b.read(5) == b"B"
    old_b.decref()
    assert pfs_decrypt(work, "enc/b", "enc/b") == b"A"
    assert sorted(os.listdir(work / "enc")) == ["b"]


def test_failed_rebind_leaves_the_tree_as_it_was(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    vfs.mkdir(ctx, "/secret/d")
    put(vfs, ctx, "/secret/d/a_good", b"good")
    # a file bound elsewhere (made for another mount) can't be rebound
    run = subprocess.run([PFS, "encrypt", "-q", "-w", "key", "-i", "key", "-o", "enc/d/z_foreign",
                          "--bind-path", "/elsewhere"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert errno_of(lambda: vfs.rename(ctx, "/secret/d", "/secret/e")) == errno.EACCES
    assert (work / "enc" / "d").is_dir() and not (work / "enc" / "e").exists()
    assert get(vfs, ctx, "/secret/d/a_good") == b"good"
    assert pfs_decrypt(work, "enc/d/a_good", "enc/d/a_good") == b"good"
    # a host file that is no protected file at all just moves along
    os.unlink(work / "enc" / "d" / "z_foreign")
    (work / "enc" / "d" / "z_plain").write_bytes(b"not encrypted")
    vfs.rename(ctx, "/secret/d", "/secret/e")
    assert get(vfs, ctx, "/secret/e/a_good") == b"good"
    assert (work / "enc" / "e" / "z_plain").read_bytes() == b"not encrypted"


def test_truncate_grow_and_shrink(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    data = os.urandom(3 * NODE * 100)
    put(vfs, ctx, "/secret/t", data)
    vfs.truncate(ctx, "/secret/t", 5000)
    assert vfs.stat(ctx, "/secret/t").st_size == 5000
    assert get(vfs, ctx, "/secret/t") == data[:5000]
    vfs.truncate(ctx, "/secret/t", 20000)
    assert get(vfs, ctx, "/secret/t") == data[:5000] + bytes(15000)
    f = vfs.open(ctx, "/secret/t", os.O_RDWR)
    f.truncate(10)
    assert f.size() == 10 and vfs.stat(ctx, "/secret/t").st_size == 10
    f.truncate(12)
    f.decref()
    assert pfs_decrypt(work, "enc/t", "enc/t") == data[:10] + b"\0\0"
    put(vfs, ctx, "/secret/t", b"")  # O_TRUNC
    assert pfs_decrypt(work, "enc/t", "enc/t") == b""
    assert os.stat(work / "enc" / "t").st_size == NODE


def test_unlinked_open_file_keeps_working(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    f = vfs.open(ctx, "/secret/gone", CREAT)
    f.write(b"still here")
    vfs.unlink(ctx, "/secret/gone")
    assert os.listdir(work / "enc") == []
    f.write(b", really")
    assert f.pread(100, 0) == b"still here, really"
    assert f.stat().st_nlink == 0
    f.decref()


def test_only_files_and_folders(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    put(vfs, ctx, "/secret/f", b"f")
    assert errno_of(lambda: vfs.symlink(ctx, "f", "/secret/l")) == errno.EPERM
    assert errno_of(lambda: vfs.link(ctx, "/secret/f", "/secret/h")) == errno.EPERM
    assert errno_of(lambda: vfs.mkfifo(ctx, "/secret/p")) == errno.EPERM
    vfs.mkdir(ctx, "/secret/d")
    vfs.rmdir(ctx, "/secret/d")
    assert sorted(os.listdir(work / "enc")) == ["f"]


def test_recovery_journals_are_hidden(work: Path) -> None:
    vfs, ctx, _ = make_vfs(enable_recovery=True)
    data = os.urandom(50000)
    put(vfs, ctx, "/secret/r", data)
    f = vfs.open(ctx, "/secret/r", os.O_RDWR)
    f.pwrite(b"changed", 10000)
    f.fsync()
    assert (work / "enc" / "r.gramine.recovery").exists()  # the journal of the open file
    assert [n for n, _, _ in vfs.listdir(ctx, "/secret")] == [".", "..", "r"]
    assert errno_of(lambda: vfs.stat(ctx, "/secret/r.gramine.recovery")) == errno.ENOENT
    f.decref()
    assert not (work / "enc" / "r.gramine.recovery").exists()  # removed after a clean close
    (work / "enc" / "stale.gramine.recovery").write_bytes(b"x")
    assert [n for n, _, _ in vfs.listdir(ctx, "/secret")] == [".", "..", "r"]
    assert errno_of(lambda: vfs.open(ctx, "/secret/stale.gramine.recovery", os.O_RDONLY)) == errno.ENOENT
    expected = data[:10000] + b"changed" + data[10007:]
    assert get(vfs, ctx, "/secret/r") == expected
    # without recovery the journals are ordinary host entries
    plain, pctx, _ = make_vfs()
    assert "stale.gramine.recovery" in [n for n, _, _ in plain.listdir(pctx, "/secret")]


def test_single_file_mount(work: Path) -> None:
    run = subprocess.run([PFS, "encrypt", "-q", "-w", "key", "-i", "key", "-o", "enc/one"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    ctx = vfs.context()
    vfs.open(ctx, "/one", CREAT).decref()
    vfs.mounts.mount("/one", EncryptedFs("enc/one", keys=KeyStore({"default": key_of(work)})))
    assert get(vfs, ctx, "/one") == key_of(work)
    assert vfs.stat(ctx, "/one").st_size == 16


def test_concurrent_writers_through_two_descriptions(work: Path) -> None:
    vfs, ctx, _ = make_vfs()
    chunk = 3000
    files = [vfs.open(ctx, "/secret/c", CREAT) for _ in range(2)]

    def writer(k: int) -> None:
        for i in range(k, 40, 2):
            files[k].pwrite(bytes([i]) * chunk, i * chunk)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in files:
        f.decref()
    expected = b"".join(bytes([i]) * chunk for i in range(40))
    assert get(vfs, ctx, "/secret/c") == expected
    assert pfs_decrypt(work, "enc/c", "enc/c") == expected


def test_attribute_changes_on_a_replaced_open_file_stay_on_it(work: Path) -> None:
    """fchmod/futimens on a descriptor whose name now holds another file change the open file
    (through its host descriptor), never the new file by name."""
    vfs, ctx, _ = make_vfs()
    put(vfs, ctx, "/secret/a", b"A")
    put(vfs, ctx, "/secret/b", b"B")
    old_b = vfs.open(ctx, "/secret/b", os.O_RDWR)
    vfs.rename(ctx, "/secret/a", "/secret/b")
    mode_before = os.stat(work / "enc" / "b").st_mode
    old_b.inode.chmod(0o640)
    old_b.inode.utimens(10**18, 10**18)
    assert old_b.stat().st_mode & 0o777 == 0o640
    assert old_b.stat().st_mtime_ns == 10**18
    assert os.stat(work / "enc" / "b").st_mode == mode_before
    assert os.stat(work / "enc" / "b").st_mtime_ns != 10**18
    old_b.decref()
    assert get(vfs, ctx, "/secret/b") == b"A"


def test_prefetch_stats_is_a_harmless_hint(work: Path) -> None:
    """Names that are missing, folders, open files, non-protected files and journals are skipped;
    the stats that follow are the same as without the hint."""
    vfs, ctx, _ = make_vfs()
    put(vfs, ctx, "/secret/a", b"A" * 5000)
    vfs.mkdir(ctx, "/secret/d", 0o755)
    (work / "enc" / "plain.txt").write_bytes(b"not encrypted")
    (work / "enc" / "a.gramine.recovery").write_bytes(b"")  # a journal: hidden by the mount
    f = vfs.open(ctx, "/secret/a", os.O_RDONLY)
    before = {name: vfs.stat(ctx, f"/secret/{name}") for name in ("a", "d", "plain.txt")}
    folder = vfs.lookup(ctx, "/secret").inode
    folder.prefetch_stats(["a", "d", "plain.txt", "missing", "a.gramine.recovery"])
    f.decref()
    folder.prefetch_stats(["a", "d", "plain.txt", "missing"])
    after = {name: vfs.stat(ctx, f"/secret/{name}") for name in ("a", "d", "plain.txt")}
    assert after == before
    assert after["a"].st_size == 5000
