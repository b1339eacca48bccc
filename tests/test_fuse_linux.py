"""The FUSE bridge against Linux: what programs do through a real ``libos mount`` (chroot, tmpfs
and encrypted mounts of one manifest) compared with the real kernel on a scratch folder.

Each test runs the same operations on a folder of the mount and on a plain host folder (the
"scratch" side), and compares results (values or errno). What is done as another user runs in a
real subprocess under ``setpriv --reuid 65534 --regid 65534 --clear-groups``; the mount is made
with ``--allow-other`` so that user reaches it, below a folder everyone may traverse.
"""

from __future__ import annotations

import json
import mmap
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

NOBODY = 65534
SETPRIV = shutil.which("setpriv")
KINDS = {"chroot": "h", "tmpfs": "t", "encrypted": "data"}  # mount type -> folder in the view
PAGE = mmap.PAGESIZE


class View:
    """A ``libos mount`` of a manifest with a chroot mount at /h, a tmpfs at /t and an encrypted
    mount at /data, plus a scratch host folder on the real kernel, all below ``base`` (mode 0755)."""

    def __init__(self, base: Path, mounter: Mounter, key: Path):
        self.base, self.key = base, key
        self.host, self.enc, self.mnt, self.scratch = (base / n for n in ("host", "enc", "mnt", "scratch"))
        for d in (self.host, self.enc, self.mnt, self.scratch):
            d.mkdir()
        for d in (self.host, self.scratch):
            d.chmod(0o1777)
        (base / "m.toml").write_text(f'''
libos.entrypoint = "/h/none"
fs.mounts = [
  {{ type = "chroot", path = "/h", uri = "file:host/" }},
  {{ type = "tmpfs", path = "/t" }},
  {{ type = "encrypted", path = "/data", uri = "file:enc/", key_name = "default" }},
]
fs.insecure__keys.default = "{key.read_bytes().hex()}"
''')
        self.mount = mounter.foreground([LIBOS, "mount", "--allow-other", "m.toml", "mnt"], "mnt", cwd=base)
        os.chmod(self.mnt / "t", 0o1777)
        os.chmod(self.mnt / "data", 0o1777)

    def dir(self, kind: str) -> Path:
        return self.mnt / KINDS[kind]

    def unmount(self) -> None:
        self.mount.unmount()

    def decrypt(self, rel: str) -> bytes:
        """The plaintext of ``/data/REL`` from its host file (after :meth:`unmount`)."""
        out = self.base / "plain.out"
        proc = run([PFS, "decrypt", "-q", "-w", self.key, "-i", self.enc / rel, "-o", out,
                    "--expect-path", f"enc/{rel}"], cwd=self.base)
        assert proc.returncode == 0, proc.stderr
        data = out.read_bytes()
        out.unlink()
        return data


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "wrap.key"
    run([PFS, "gen-key", "-w", path], check=True)
    return path


@pytest.fixture
def view(key: Path, tmp_path: Path):
    base = Path(tempfile.mkdtemp(prefix="pfskit-fuse-linux-", dir="/tmp"))
    base.chmod(0o755)
    mounter = Mounter(tmp_path)
    try:
        yield View(base, mounter, key)
    finally:
        mounter.cleanup()
        for m in mounter.mounts:
            assert not mounted(m.mountpoint)
        shutil.rmtree(base, ignore_errors=True)


def read_direct(path: Path) -> bytes:
    """The file's bytes as the daemon has them: an O_DIRECT read bypasses the page cache."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, 1 << 20)  # page-aligned
        n = os.readv(fd, [buf])
        return bytes(buf[:n])
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- 1. mmap


@pytest.mark.parametrize("kind", list(KINDS))
def test_mmap_private_and_shared(view: View, kind: str) -> None:
    """Private and shared mappings work and a shared mapping's writes reach the file (on the host,
    through the daemon, or in the ciphertext), as on the kernel's own file systems."""
    data = os.urandom(3 * PAGE + 100)
    results = {}
    for side, folder in (("mount", view.dir(kind)), ("kernel", view.scratch)):
        path = folder / "mapped.bin"
        path.write_bytes(data)
        with open(path, "r+b") as f:
            with mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE) as m:
                assert m[:] == data, side
                m[0:4] = b"PRIV"  # copy on write: never reaches the file
            with mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED) as m:
                m[PAGE + 5:PAGE + 11] = b"SHARED"
                m.flush()
        expected = data[:PAGE + 5] + b"SHARED" + data[PAGE + 11:]
        results[side] = path.read_bytes()
        assert results[side] == expected, side
    assert results["mount"] == results["kernel"]
    mounted_path = view.dir(kind) / "mapped.bin"
    assert read_direct(mounted_path) == results["kernel"]
    if kind == "chroot":
        assert (view.host / "mapped.bin").read_bytes() == results["kernel"]
    # Python's mmap of a file that is then written through the mapping only (sqlite's -shm way)
    shm = view.dir(kind) / "grown.bin"
    fd = os.open(shm, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 2 * PAGE)
        with mmap.mmap(fd, 2 * PAGE) as m:
            m[PAGE:PAGE + 4] = b"WAL!"
    finally:
        os.close(fd)
    assert read_direct(shm) == bytes(PAGE) + b"WAL!" + bytes(PAGE - 4)
    if kind == "encrypted":
        view.unmount()
        assert view.decrypt("mapped.bin") == results["kernel"]
        assert view.decrypt("grown.bin") == bytes(PAGE) + b"WAL!" + bytes(PAGE - 4)


def test_proc_files_still_read_whole(view: View) -> None:
    """Generated files (size 0 in stat) keep their direct I/O: a read gets all they hold."""
    assert os.stat(view.mnt / "proc" / "self" / "mounts").st_size == 0
    mounts = (view.mnt / "proc" / "self" / "mounts").read_text()
    assert " /data " in mounts and " /t " in mounts


# ---------------------------------------------------------------------- 2. the caller's credentials

AS_NOBODY = r'''
import errno, json, os, sys
os.umask(0o022)
root, symlinks = sys.argv[1], sys.argv[2] == "1"
os.chdir(root)
out = {}

def do(name, fn, *args):
    try:
        r = fn(*args)
        out[name] = "ok" if r is None else r
    except OSError as exc:
        out[name] = errno.errorcode[exc.errno]

def stat(path):
    s = os.lstat(path)
    return [oct(s.st_mode), s.st_uid, s.st_gid]

def open_close(path, flags):
    os.close(os.open(path, flags))

do("create", open_close, "mine", os.O_CREAT | os.O_WRONLY)
do("stat mine", stat, "mine")
do("chmod mine", os.chmod, "mine", 0o600)
do("stat mine 2", stat, "mine")
do("open mine", open_close, "mine", os.O_RDWR)
do("touch mine", os.utime, "mine", None)
do("utime mine", os.utime, "mine", (1, 2))
do("chown mine to root", os.chown, "mine", 0, -1)
do("chgrp mine to root", os.chown, "mine", -1, 0)
do("chgrp mine to own", os.chown, "mine", -1, 65534)
do("mkdir", os.mkdir, "mydir", 0o777)
do("stat mydir", stat, "mydir")
do("create in mydir", open_close, "mydir/f", os.O_CREAT | os.O_WRONLY)
do("stat mydir/f", stat, "mydir/f")
if symlinks:
    do("symlink", os.symlink, "mine", "mylink")
    do("stat mylink", lambda: stat("mylink")[1:])
do("chmod root's", os.chmod, "roots", 0o777)
do("open root's rw", open_close, "roots", os.O_RDWR)
do("open root's ro", open_close, "roots", os.O_RDONLY)
do("touch root's", os.utime, "roots", None)
do("utime root's", os.utime, "roots", (1, 2))
do("touch root's writable", os.utime, "shared", None)
do("utime root's writable", os.utime, "shared", (1, 2))
do("open root's private", open_close, "private", os.O_RDONLY)
do("unlink root's", os.unlink, "roots")
do("rename root's", os.rename, "roots", "taken")
do("create in root's folder", open_close, "rootdir/f", os.O_CREAT | os.O_WRONLY)
do("unlink mine", os.unlink, "mine")
print(json.dumps(out))
'''


def as_nobody(folder: Path, symlinks: bool) -> dict[str, object]:
    """Run :data:`AS_NOBODY` in ``folder`` as uid/gid 65534 with no supplementary groups."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    proc = subprocess.run([SETPRIV, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                           python, "-I", "-c", AS_NOBODY, str(folder), "1" if symlinks else "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def root_files(folder: Path) -> None:
    """Files of root's that the other user finds in the 1777 folder."""
    for name, mode in (("roots", 0o644), ("shared", 0o666), ("private", 0o600)):
        (folder / name).write_bytes(b"root's\n")
        os.chmod(folder / name, mode)
    (folder / "rootdir").mkdir()
    os.chmod(folder / "rootdir", 0o755)


@pytest.mark.parametrize("kind", list(KINDS))
def test_requests_are_served_as_the_caller(view: View, kind: str) -> None:
    """A process of uid 65534 gets what it gets on the kernel: it owns what it creates, may chmod,
    open and touch it, and is refused (EPERM/EACCES) on root's files."""
    require(SETPRIV is not None, "setpriv (util-linux) is not installed")
    symlinks = kind != "encrypted"  # encrypted mounts have files and folders only
    sides = {}
    for side, folder in (("mount", view.dir(kind)), ("kernel", view.scratch)):
        root_files(folder)
        sides[side] = as_nobody(folder, symlinks)
    assert sides["mount"]["stat mine"] == [oct(0o100755), NOBODY, NOBODY]
    assert sides["mount"] == sides["kernel"]
    if kind == "chroot":  # the host file belongs to that user too
        s = os.lstat(view.host / "mydir" / "f")
        assert (s.st_uid, s.st_gid) == (NOBODY, NOBODY)


def test_supplementary_groups_are_the_callers(view: View) -> None:
    """A group-writable file of a group the caller has only as a supplementary group: writable
    through the mount as on the kernel; without that group, refused."""
    require(SETPRIV is not None, "setpriv (util-linux) is not installed")
    results = {}
    for side, folder in (("mount", view.dir("tmpfs")), ("kernel", view.scratch)):
        path = folder / "group-file"
        path.write_bytes(b"")
        os.chown(path, 0, 4242)
        os.chmod(path, 0o660)
        got = []
        for groups in ("4242", "4243"):
            code = ("import os, sys\ntry:\n    os.close(os.open(sys.argv[1], os.O_WRONLY)); print('ok')\n"
                    "except OSError as e:\n    print(e.errno)")
            proc = subprocess.run([SETPRIV, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--groups", groups,
                                   "/usr/bin/python3", "-I", "-c", code, str(path)],
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            got.append(proc.stdout.strip())
        results[side] = got
    assert results["kernel"] == ["ok", "13"]
    assert results["mount"] == results["kernel"]


# ---------------------------------------------------------------------- 3. FIFOs, sockets, devices


def _special_files(folder: Path) -> dict[str, object]:
    """Make a FIFO and bind an AF_UNIX socket in ``folder``; talk through both; try a device."""
    import socket
    import stat as st
    import threading

    out: dict[str, object] = {}
    fifo = folder / "fifo"
    os.mkfifo(fifo, 0o640)
    out["fifo mode"] = oct(os.lstat(fifo).st_mode)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    fifo.write_bytes(b"through the fifo")
    reader.join(10)
    out["fifo data"] = got[0].decode()
    sock_path = str(folder / "sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    out["socket mode"] = st.S_IFMT(os.lstat(sock_path).st_mode) == st.S_IFSOCK
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(sock_path)
    conn, _ = server.accept()
    client.sendall(b"through the socket")
    out["socket data"] = conn.recv(100).decode()
    for s in (conn, client, server):
        s.close()
    try:
        os.open(sock_path, os.O_RDONLY)
        out["open socket"] = "ok"
    except OSError as exc:
        out["open socket"] = exc.errno
    os.unlink(sock_path)
    out["after unlink"] = sorted(os.listdir(folder))
    return out


@pytest.mark.parametrize("kind", ["chroot", "tmpfs"])
def test_fifos_and_unix_sockets(view: View, kind: str) -> None:
    """mkfifo and bind() of an AF_UNIX socket work in the view as on the kernel (both ends talk)."""
    mount, kernel = _special_files(view.dir(kind)), _special_files(view.scratch)
    assert kernel["socket data"] == "through the socket"
    assert mount == kernel
    if kind == "chroot":
        assert os.path.exists(view.host / "fifo")


def test_encrypted_mount_refuses_fifos_and_sockets(view: View) -> None:
    """Encrypted mounts hold files and folders only (device nodes: tests/test_device_nodes.py)."""
    import socket

    with pytest.raises(PermissionError):
        os.mkfifo(view.dir("encrypted") / "fifo")
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(PermissionError):
        s.bind(str(view.dir("encrypted") / "sock"))


# ---------------------------------------------------------------------- 4. operations on a symlink itself


def _symlink_ops(folder: Path) -> dict[str, object]:
    target, link, dangling = folder / "target", folder / "link", folder / "dangling"
    target.write_bytes(b"t")
    os.utime(target, ns=(10**18, 10**18))
    link.symlink_to("target")
    dangling.symlink_to("nowhere")
    out: dict[str, object] = {}
    for name in ("link", "dangling"):
        try:
            os.chown(folder / name, NOBODY, NOBODY, follow_symlinks=False)  # chown -h
            out[f"lchown {name}"] = "ok"
        except OSError as exc:
            out[f"lchown {name}"] = exc.errno
        try:
            os.utime(folder / name, ns=(5 * 10**17, 6 * 10**17), follow_symlinks=False)
            out[f"lutimes {name}"] = "ok"
        except OSError as exc:
            out[f"lutimes {name}"] = exc.errno
        s = os.lstat(folder / name)
        out[f"{name} ids and times"] = [s.st_uid, s.st_gid, s.st_atime_ns, s.st_mtime_ns]
    s = os.stat(target)
    out["target ids and times"] = [s.st_uid, s.st_gid, s.st_atime_ns, s.st_mtime_ns]
    return out


@pytest.mark.parametrize("kind", ["chroot", "tmpfs"])
def test_lchown_and_lutimes_act_on_the_link(view: View, kind: str) -> None:
    """``chown -h`` and ``utimensat(AT_SYMLINK_NOFOLLOW)`` change the link, never its target, and
    work on a dangling link, as on the kernel."""
    mount, kernel = _symlink_ops(view.dir(kind)), _symlink_ops(view.scratch)
    assert kernel["target ids and times"] == [0, 0, 10**18, 10**18]
    assert kernel["lchown dangling"] == "ok"
    assert mount == kernel


# ---------------------------------------------------------------------- 5. times

OLD_A, OLD_M = 10**18, 11 * 10**17  # 2001 and 2004: far from "now"


def _touch_one_time(folder: Path) -> dict[str, list[bool]]:
    """``touch -m`` and ``touch -a`` (utimensat with one UTIME_NOW and one UTIME_OMIT)."""
    out = {}
    for flag in ("-m", "-a"):
        path = folder / f"touched{flag}"
        path.write_bytes(b"x")
        os.utime(path, ns=(OLD_A, OLD_M))
        before = time_now_ns()
        run(["touch", flag, path], check=True)
        s = os.stat(path)
        out[flag] = [s.st_atime_ns == OLD_A, s.st_atime_ns >= before, s.st_mtime_ns == OLD_M,
                     s.st_mtime_ns >= before]
    return out


def time_now_ns() -> int:
    import time

    return time.time_ns() - 10**9  # host clocks of the kernel's timestamps are coarse


@pytest.mark.parametrize("kind", list(KINDS))
def test_touch_m_and_a_leave_the_other_time(view: View, kind: str) -> None:
    """UTIME_OMIT keeps a time and UTIME_NOW is now (they were taken as times: 1970)."""
    mount, kernel = _touch_one_time(view.dir(kind)), _touch_one_time(view.scratch)
    assert kernel == {"-m": [True, False, False, True], "-a": [False, True, True, False]}
    assert mount == kernel


@pytest.mark.parametrize("kind", ["chroot", "encrypted"])
def test_opening_a_file_keeps_its_set_atime(view: View, kind: str) -> None:
    """An atime set with utimensat stays when the file is opened and closed (the daemon reads an
    encrypted file's header at open: it reads with O_NOATIME, as it does every host file)."""
    host_folder = view.host if kind == "chroot" else view.enc
    results = {}
    for side, folder in (("mount", view.dir(kind)), ("kernel", view.scratch)):
        path = folder / "kept.bin"
        path.write_bytes(os.urandom(10000))
        os.utime(path, ns=(OLD_A, OLD_M))
        os.close(os.open(path, os.O_RDONLY))
        results[side] = os.stat(path).st_atime_ns
    assert results == {"mount": OLD_A, "kernel": OLD_A}
    assert os.stat(host_folder / "kept.bin").st_atime_ns == OLD_A


@pytest.mark.parametrize("kind", list(KINDS))
def test_ftruncate_of_an_open_file_sets_mtime_at_once(view: View, kind: str) -> None:
    """ftruncate (here growing the file: shrinking flushed already) changes mtime and ctime
    before the file is closed (on the host too)."""
    for side, folder in (("mount", view.dir(kind)), ("kernel", view.scratch)):
        fd = os.open(folder / "cut.bin", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"y" * 10000)
            os.fsync(fd)
            os.utime(fd, ns=(OLD_A, OLD_M))
            before = time_now_ns()
            os.ftruncate(fd, 50000)
            s = os.fstat(fd)
            assert (s.st_size, s.st_atime_ns) == (50000, OLD_A), side
            assert s.st_mtime_ns >= before and s.st_ctime_ns >= before, side
            if side == "mount" and kind != "tmpfs":
                host = os.stat((view.host if kind == "chroot" else view.enc) / "cut.bin")
                assert host.st_mtime_ns >= before, "the host file's mtime waits for a flush"
        finally:
            os.close(fd)


def test_ftruncate_of_an_open_encrypted_file_in_the_vfs(tmp_path: Path) -> None:
    """The same in the VFS itself (what the LibOS and the runner use): the host file's mtime and
    ctime, which are the file's, change at ftruncate, not at the next flush."""
    from vfs.encrypted import EncryptedFs, KeyStore
    from vfs.tmpfs import TmpFs
    from vfs.vfs import VFS

    (tmp_path / "enc").mkdir()
    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    vfs.mkdir(vfs.context("/"), "/secret")
    vfs.mounts.mount("/secret", EncryptedFs(str(tmp_path / "enc"), keys=KeyStore({"default": bytes(16)})))
    ctx = vfs.context("/")
    file = vfs.open(ctx, "/secret/f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        file.write(b"z" * 10000)
        file.fsync()
        vfs.utimens(ctx, "/secret/f", OLD_A, OLD_M)
        before = time_now_ns()
        file.truncate(50000)  # growing: the protected file keeps it in memory until a flush
        s = file.stat()
        assert s.st_size == 50000 and s.st_mtime_ns >= before and s.st_ctime_ns >= before
    finally:
        file.decref()


# ---------------------------------------------------------------------- 6. set-id bits and writes

WRITE_AS_NOBODY = r'''
import os, sys
for path in sys.argv[1:]:
    fd = os.open(path, os.O_WRONLY)
    os.write(fd, b"written by another user")
    os.close(fd)
'''


def _setid_after_writes(folder: Path) -> dict[str, str]:
    """Modes after writes: by uid 65534 to root's 6777 file and to its own 6755 file (both lose
    the bits: it lacks CAP_FSETID), and by root (keeps them)."""
    others, own, roots = folder / "others", folder / "own", folder / "roots-own"
    for path in (others, own, roots):
        path.write_bytes(b"")
    os.chmod(others, 0o6777)
    os.chown(own, NOBODY, NOBODY)
    os.chmod(own, 0o6755)
    os.chmod(roots, 0o6755)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    proc = subprocess.run([SETPRIV, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                           python, "-I", "-c", WRITE_AS_NOBODY, str(others), str(own)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with open(roots, "r+b") as f:
        f.write(b"written by root")
    return {p.name: oct(os.stat(p).st_mode & 0o7777) for p in (others, own, roots)}


@pytest.mark.parametrize("kind", list(KINDS))
def test_write_without_fsetid_clears_setid_bits(view: View, kind: str) -> None:
    """A write by a process without CAP_FSETID clears S_ISUID and S_ISGID, as on Linux."""
    require(SETPRIV is not None, "setpriv (util-linux) is not installed")
    mount, kernel = _setid_after_writes(view.dir(kind)), _setid_after_writes(view.scratch)
    assert kernel == {"others": "0o777", "own": "0o755", "roots-own": "0o6755"}
    assert mount == kernel


def test_write_clears_setid_bits_in_the_vfs(tmp_path: Path) -> None:
    """The VFS itself (the LibOS, the runner): a write through a description opened by an
    unprivileged user clears the set-id bits; root's keeps them."""
    from vfs.tmpfs import TmpFs
    from vfs.vfs import VFS

    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    root = vfs.context("/")
    user = vfs.context("/", uid=1000, gid=1000)
    for name, ctx, want in (("a", user, 0o777), ("b", root, 0o6777)):
        vfs.open(root, f"/{name}", os.O_WRONLY | os.O_CREAT, 0o777).decref()
        vfs.chmod(root, f"/{name}", 0o6777)
        file = vfs.open(ctx, f"/{name}", os.O_WRONLY)
        file.write(b"x")
        file.decref()
        assert vfs.stat(root, f"/{name}").st_mode & 0o7777 == want, name


# ---------------------------------------------------------------------- 7. PATH_MAX

LONG_PATHS = r'''
import errno, json, os
names = ["d" * 200 + str(i) for i in range(19)]  # 19 folders of 201 bytes: 3,838 bytes with slashes
out = {}

def do(what, fn, *args):
    try:
        r = fn(*args)
        out[what] = "ok" if r is None else r
    except OSError as exc:
        out[what] = errno.errorcode[exc.errno]

folder = "/".join(names)
do("makedirs", os.makedirs, folder)
tail = 4095 - len(folder) - 1
path = folder + "/" + "f" * tail  # 4,095 bytes, relative to the cwd
do("length", len, path.encode())
do("create", lambda: os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)))
do("write", lambda: open(path, "w").write("long"))
do("stat", lambda: os.stat(path).st_size)
do("rename", os.rename, path, path[:-1] + "g")
do("read", lambda: open(path[:-1] + "g").read())
do("listdir", lambda: os.listdir(folder))
do("one byte more", lambda: os.close(os.open(path + "h", os.O_CREAT | os.O_WRONLY, 0o644)))
do("unlink", os.unlink, path[:-1] + "g")
os.chdir(folder)  # and from deep inside: a short relative path, a long path from the mount's root
do("deep create", lambda: os.close(os.open("x", os.O_CREAT | os.O_WRONLY, 0o644)))
do("deep stat", lambda: os.stat("x").st_size)
print(json.dumps(out))
'''


@pytest.mark.parametrize("kind", ["chroot", "tmpfs"])
def test_paths_near_path_max_relative_to_the_cwd(view: View, kind: str) -> None:
    """A 4,095-byte path relative to the caller's cwd works in the view as on the kernel (Linux
    limits the path a program passes, not the path joined with the mount point): 4,096 bytes
    gives ENAMETOOLONG on both."""
    results = {}
    for side, folder in (("mount", view.dir(kind)), ("kernel", view.scratch)):
        proc = subprocess.run([sys.executable, "-I", "-c", LONG_PATHS], cwd=folder, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        results[side] = json.loads(proc.stdout)
    assert results["kernel"]["create"] == "ok" and results["kernel"]["one byte more"] == "ENAMETOOLONG"
    assert results["mount"] == results["kernel"]


# ---------------------------------------------------------------------- 8. hard links


def _hard_link_views(folder: Path) -> list[object]:
    """What the other name of a hard-linked file shows after changes made through the first."""
    a, b = folder / "a", folder / "b"
    a.write_bytes(b"1" * 100)
    os.link(a, b)
    seen: list[object] = []
    fd_b = os.open(b, os.O_RDONLY)
    try:
        seen.append([os.stat(b).st_size, os.fstat(fd_b).st_size, os.stat(b).st_nlink])  # cached now
        with open(a, "ab") as f:
            f.write(b"2" * 5000)
        seen.append([os.stat(b).st_size, os.fstat(fd_b).st_size, os.pread(fd_b, 10, 5090)])
        os.truncate(a, 50)
        seen.append([os.stat(b).st_size, os.fstat(fd_b).st_size])
        os.chmod(a, 0o600)
        seen.append(oct(os.stat(b).st_mode))
        os.link(a, folder / "c")
        seen.append(os.stat(b).st_nlink)
        os.unlink(a)
        seen.append([os.stat(b).st_nlink, os.fstat(fd_b).st_nlink])
    finally:
        os.close(fd_b)
    return seen


@pytest.mark.parametrize("kind", ["chroot", "tmpfs"])
def test_hard_links_other_names_are_current(view: View, kind: str) -> None:
    """After a write, truncate, chmod, link or unlink through one name, ``stat`` of the other name
    and ``fstat`` of a descriptor opened by it show the change at once (they showed the old size
    for the attribute timeout)."""
    mount, kernel = _hard_link_views(view.dir(kind)), _hard_link_views(view.scratch)
    assert kernel[1] == [5100, 5100, b"2" * 10]
    assert mount == kernel


@pytest.mark.parametrize("kind", ["chroot", "tmpfs"])
def test_link_count_of_the_source_name_is_current(view: View, kind: str) -> None:
    """After ``ln a b``, ``stat a`` shows two links at once (the kernel takes b for another
    file: libfuse's nodes are paths)."""
    results = {}
    for side, folder in (("mount", view.dir(kind)), ("kernel", view.scratch)):
        (folder / "src").write_bytes(b"s")
        first = os.stat(folder / "src").st_nlink  # cached by the kernel now
        os.link(folder / "src", folder / "dst")
        results[side] = [first, os.stat(folder / "src").st_nlink, os.stat(folder / "dst").st_nlink]
    assert results == {"mount": [1, 2, 2], "kernel": [1, 2, 2]}
