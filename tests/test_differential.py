"""Differential tests: the LibOS system-call API against the real Linux kernel.

Hypothesis draws a program (a list of system calls over a small namespace: ``a``, ``b``, ``c``,
``d/``, ``d/e``... with symlinks among them, dangling ones and loops, random open flags, fds,
offsets and modes). The program runs

* on the kernel, in a forked child ``chroot``-ed into a fresh host temporary folder that holds an
  empty folder ``m``; the child closes every inherited descriptor, so its fd numbers start at 0
  like a new LibOS process's, and absolute paths mean the same on both sides;
* on a LibOS whose root is a tmpfs with the file system under test mounted at ``/m``: a tmpfs, a
  ``ChrootFs`` over another host temporary folder, or an ``EncryptedFs`` over a third one.

Both start in ``/m``. Every call must give the same result: the same value (fd numbers
included, bytes read, offsets, stat fields) or the same errno. At the end, the whole tree under
``/m`` (types, modes, sizes, link counts, contents, symlink targets) and the st_ino equality
relation between every entry and every open descriptor must agree too.

Stat fields compared: file type, permission bits, st_nlink, st_uid/st_gid, st_size of regular
files and symlinks (not of folders: that is file-system specific). Never st_ino/st_dev values,
times or blocks.

Calls are run as root on both sides. A few situations the kernel can't take part in are
steered around (each is explained where it is done): paths that would climb above ``/m``, reads
that would block on a FIFO, lseek on a folder descriptor (its result is specific to the host
file system).

``PFSKIT_SLOW=1`` runs ten times as many programs.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import pickle
import resource
import shutil
import stat as st
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import examples, require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_

from libos.libos import LibOS
from vfs.mount import MountTable
from vfs.tmpfs import TmpFs
from vfs.vfs import VFS

O_PATH = getattr(os, "O_PATH", 0o10000000)
AT_SYMLINK_NOFOLLOW = 0x100
RESULT_FD = 1000  # where the kernel child writes its results (above every fd a program uses)
MOUNT = "/m"
KEY = bytes(range(16))

LONG255 = "L" * 255  # the longest valid name
TOO_LONG = "x" * 256  # ENAMETOOLONG

# ----------------------------------------------------------------------------- bugs
# Library bugs found by this file that the generator steers around until they are fixed, so the
# random search keeps finding new ones: kind -> {name: predicate} (an open bug of every mount type
# goes under each). Each has a minimal regression test below (test_fixed_bug), a strict xfail on
# the kinds listed here; when the bug is fixed that test XPASSes (and fails): then remove it here.
# (Each predicate runs in the kernel child, before the call: it may look at the kernel's state.)
KIND_BUGS: dict[str, dict[str, Callable[[tuple], bool]]] = {
    "tmpfs": {},
    "chroot": {},
    "encrypted": {},
}


# What is wrong, for the bugs of one mount type.
KIND_REASONS: dict[tuple[str, str], str] = {
}


def known_bug(op: tuple, kind: str) -> bool:
    """Does ``op`` (given the kernel's current state: this runs in the kernel child) trigger a
    known bug on mounts of type ``kind``?"""
    return any(pred(op) for pred in KIND_BUGS[kind].values())


# ----------------------------------------------------------------------------- programs

BASES = ["a", "a", "b", "c", "d", "d", "d/a", "d/e", "d/e/a", "e", LONG255]
SPECIAL_PATHS = [".", "..", TOO_LONG, "d/" + TOO_LONG, ""]
PREFIXES = ["./", "/m/", "d/../", "../", "../../"]
SUFFIXES = ["/", "/.", "/..", "//"]
# symlink targets: never "..", ".", "/" or "/m", so no path climbs above /m through a symlink
TARGETS = ["a", "b", "c", "d", "e", "d/e", "d/a", "x", "d/x", "/m/a", "/m/d", "/m/d/e", "a/", "d/"]

FLAG_NAMES = [(os.O_CREAT, "O_CREAT"), (os.O_EXCL, "O_EXCL"), (os.O_TRUNC, "O_TRUNC"),
              (os.O_APPEND, "O_APPEND"), (os.O_DIRECTORY, "O_DIRECTORY"), (os.O_NOFOLLOW, "O_NOFOLLOW"),
              (os.O_NONBLOCK, "O_NONBLOCK"), (os.O_CLOEXEC, "O_CLOEXEC"), (O_PATH, "O_PATH")]
EXTRA_FLAGS = [os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_DIRECTORY, os.O_NOFOLLOW, os.O_NONBLOCK, os.O_CLOEXEC]


@st_.composite
def paths(draw, *, allow_dotdot_prefix: bool = True) -> str:
    if draw(st_.integers(0, 11)) == 0:
        return draw(st_.sampled_from(SPECIAL_PATHS if allow_dotdot_prefix else [p for p in SPECIAL_PATHS if p != ".."]))
    path = draw(st_.sampled_from(BASES))
    if draw(st_.integers(0, 7)) == 0:
        prefixes = PREFIXES if allow_dotdot_prefix else PREFIXES[:3]
        path = draw(st_.sampled_from(prefixes)) + path
    if draw(st_.integers(0, 7)) == 0:
        path += draw(st_.sampled_from(SUFFIXES))
    return path


@st_.composite
def open_flags(draw) -> int:
    acc = draw(st_.sampled_from([os.O_RDONLY, os.O_WRONLY, os.O_RDWR] * 4 + [3]))
    flags = acc
    if draw(st_.integers(0, 2)):
        flags |= os.O_CREAT
    for f in draw(st_.lists(st_.sampled_from(EXTRA_FLAGS), max_size=3, unique=True)):
        flags |= f
    if draw(st_.integers(0, 24)) == 0:
        flags = O_PATH | (flags & (os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC))
    return flags


# mostly descriptors that are likely open (the lowest numbers), some that are not
fds = st_.one_of(st_.integers(0, 1), st_.integers(0, 2), st_.integers(0, 4), st_.sampled_from([-1, 7, 100]))
small_fds = st_.integers(0, 5)
data = st_.one_of(st_.binary(min_size=1, max_size=12), st_.sampled_from([b"", b"hello world", bytes(range(64))]))
sizes = st_.one_of(st_.integers(0, 40), st_.sampled_from([1 << 16]))
offsets = st_.one_of(st_.integers(0, 40), st_.sampled_from([-1, 4095, 4097, 10_000]))
lengths = st_.one_of(st_.integers(0, 40), st_.sampled_from([-1, 4097]))
file_modes = st_.sampled_from([0o644, 0o600, 0o000, 0o777, 0o4755, 0o2755, 0o1644, 0o7777])
dir_modes = st_.sampled_from([0o755, 0o755, 0o700, 0o000, 0o777, 0o1777, 0o2755, 0o4755])
FCNTL = st_.one_of(
    st_.tuples(st_.just(fcntl.F_GETFL), st_.just(0)),
    st_.tuples(st_.just(fcntl.F_SETFL), st_.sampled_from([0, os.O_APPEND, os.O_NONBLOCK, os.O_APPEND | os.O_RDWR,
                                                         os.O_APPEND | os.O_NONBLOCK, os.O_TRUNC | os.O_CREAT])),
    st_.tuples(st_.just(fcntl.F_GETFD), st_.just(0)),
    st_.tuples(st_.just(fcntl.F_SETFD), st_.sampled_from([0, fcntl.FD_CLOEXEC, 3])),
    st_.tuples(st_.just(fcntl.F_DUPFD), st_.sampled_from([0, 3, 7, 1024, -1])),
    st_.tuples(st_.just(getattr(fcntl, "F_DUPFD_CLOEXEC", 1030)), st_.sampled_from([0, 4])),
)


def _op(name: str, *args) -> st_.SearchStrategy:
    return st_.tuples(st_.just(name), *args)


def operations(*, links: bool = True, fifos: bool = True) -> st_.SearchStrategy:
    """One system call: ``(name, *args)``."""
    p = paths()
    ops = [
        _op("open", p, open_flags(), file_modes),
        _op("open", p, open_flags(), file_modes),
        _op("open", p, open_flags(), file_modes),
        _op("open", p, open_flags(), file_modes),
        _op("openat", small_fds, paths(allow_dotdot_prefix=False), open_flags(), file_modes),
        _op("close", fds),
        _op("read", fds, sizes),
        _op("read", fds, sizes),
        _op("readv", fds, st_.lists(st_.integers(0, 6), min_size=1, max_size=3)),
        _op("write", fds, data),
        _op("write", fds, data),
        _op("writev", fds, st_.lists(data, min_size=1, max_size=3)),
        _op("pread", fds, sizes, offsets),
        _op("pwrite", fds, data, offsets),
        _op("lseek", fds, offsets, st_.sampled_from([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, 7])),
        _op("lseek", fds, st_.integers(-8, 8), st_.sampled_from([os.SEEK_CUR, os.SEEK_END])),
        _op("dup", fds),
        _op("dup2", fds, fds),
        _op("dup3", fds, fds),
        _op("fcntl", fds, FCNTL),
        _op("ftruncate", fds, lengths),
        _op("truncate", p, lengths),
        _op("fsync", fds),
        _op("stat", p),
        _op("lstat", p),
        _op("fstat", fds),
        _op("fstatat", small_fds, paths(allow_dotdot_prefix=False), st_.booleans()),
        _op("mkdir", p, dir_modes),
        _op("mkdir", p, dir_modes),
        _op("rmdir", p),
        _op("unlink", p),
        _op("rename", p, p),
        _op("rename", p, p),
        _op("access", p, st_.sampled_from([os.F_OK, os.R_OK, os.W_OK, os.X_OK, os.R_OK | os.W_OK, 8])),
        _op("listdir", p),
        _op("chdir", p),
        _op("fchdir", fds),
        _op("getcwd"),
        _op("umask", st_.sampled_from([0o022, 0o077, 0o000, 0o777, 0o002, 0o7777])),
        _op("chmod", p, file_modes),
        _op("fchmod", fds, file_modes),
    ]
    if links:
        ops += [
            _op("symlink", st_.sampled_from(TARGETS), p),
            _op("symlink", st_.sampled_from(TARGETS), p),
            _op("link", p, p),
            _op("readlink", p),
        ]
    if fifos:
        ops += [_op("mkfifo", p, st_.sampled_from([0o644, 0o600]))]
    return st_.one_of(ops)


def setup_program(*, links: bool) -> list[tuple]:
    """What every program starts with (run and compared like the rest, never shrunk away)."""
    prog: list[tuple] = [
        ("mkdir", "d", 0o755),
        ("open", "a", os.O_CREAT | os.O_WRONLY, 0o644),
        ("write", 0, b"hello"),
        ("close", 0),
        ("open", "d/e", os.O_CREAT | os.O_RDWR, 0o600),
        ("close", 0),
        ("open", "b", os.O_CREAT | os.O_RDWR, 0o644),
        ("pwrite", 0, b"0123456789", 0),
        ("close", 0),
        # descriptors the program starts with: 0 = a (O_RDWR), 1 = ".", 2 = b (O_WRONLY|O_APPEND)
        ("open", "a", os.O_RDWR, 0),
        ("open", ".", os.O_RDONLY | os.O_DIRECTORY, 0),
        ("open", "b", os.O_WRONLY | os.O_APPEND, 0),
    ]
    if links:
        prog += [("symlink", "a", "c")]
    return prog


def describe_flags(flags: int) -> str:
    acc = flags & 3
    names = [{os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR", 3: "3"}[acc]]
    for bit, name in FLAG_NAMES:
        if flags & bit:
            names.append(name)
    return "|".join(names)


def describe(op: tuple) -> str:
    name, *args = op
    shown = []
    for i, a in enumerate(args):
        if name in ("open", "openat") and i == len(args) - 2:
            shown.append(describe_flags(a))
        elif isinstance(a, str) and len(a) > 20:
            shown.append(f"{a[0]!r}*{len(a)}" if len(set(a)) == 1 else repr(a[:20] + "..."))
        elif isinstance(a, int) and (name == "umask" or (
                name in ("mkdir", "chmod", "fchmod", "mkfifo", "open", "openat") and i == len(args) - 1)):
            shown.append(oct(a))
        else:
            shown.append(repr(a))
    return f"{name}({', '.join(shown)})"


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StatResult:
    kind: str
    perm: str
    size: int | None  # regular files and symlinks only
    nlink: int
    uid: int
    gid: int

    def __repr__(self) -> str:
        size = "" if self.size is None else f" size={self.size}"
        return f"<{self.kind} {self.perm}{size} nlink={self.nlink} uid={self.uid} gid={self.gid}>"


KINDS = {st.S_IFREG: "reg", st.S_IFDIR: "dir", st.S_IFLNK: "lnk", st.S_IFIFO: "fifo", st.S_IFCHR: "chr"}


def stat_result(s: Any) -> StatResult:
    fmt = st.S_IFMT(s.st_mode)
    kind = KINDS.get(fmt, oct(fmt))
    size = s.st_size if fmt in (st.S_IFREG, st.S_IFLNK) else None
    return StatResult(kind, oct(st.S_IMODE(s.st_mode)), size, s.st_nlink, s.st_uid, s.st_gid)


def outcome(fn: Callable[[], Any]) -> tuple:
    """("ok", value) or ("err", errno name) or ("exc", exception) — what one call gave."""
    try:
        return ("ok", fn())
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, str(e.errno)) if e.errno is not None else repr(e))
    except Exception as e:
        return ("exc", f"{type(e).__name__}: {e}", traceback.format_exc(limit=-3))


# ----------------------------------------------------------------------------- the two sides


class KernelSide:
    """System calls on the real kernel (in the chroot-ed child)."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)

    def sys(self, fn: str, *args) -> int:
        """A libc call, for what Python's wrappers refuse (negative fds) or hide (access's errno)."""
        ret = getattr(self.libc, fn)(*args)
        if ret < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return ret

    def access(self, path: str, mode: int) -> None:
        self.sys("access", path.encode(), mode)

    def call(self, op: tuple) -> Any:
        name, *a = op
        if name in ("open", "openat"):
            if name == "open":
                path, flags, mode = a
                fd = os.open(path, flags, mode)
            else:
                dfd, path, flags, mode = a
                fd = os.open(path, flags, mode, dir_fd=dfd)
            if not flags & os.O_CLOEXEC:  # Python's os.open always sets O_CLOEXEC
                os.set_inheritable(fd, True)
            return fd
        if name == "readv":
            fd, lens = a
            bufs = [bytearray(n) for n in lens]
            n = os.readv(fd, bufs)
            return n, [bytes(b) for b in bufs]
        if name == "dup":
            return self.sys("fcntl", a[0], fcntl.F_DUPFD, 0)  # os.dup would set FD_CLOEXEC
        if name == "dup2":
            return os.dup2(a[0], a[1])
        if name == "dup3":
            return os.dup2(a[0], a[1], inheritable=False)
        if name == "fcntl":
            fd, (cmd, arg) = a
            return self.sys("fcntl", fd, cmd, arg)  # fcntl.fcntl refuses negative fds
        if name in ("stat", "lstat", "fstat"):
            return stat_result(getattr(os, name)(a[0]))
        if name == "fstatat":
            dfd, path, nofollow = a
            return stat_result(os.stat(path, dir_fd=dfd, follow_symlinks=not nofollow))
        if name == "link":
            return os.link(a[0], a[1], follow_symlinks=False)
        if name == "listdir":
            return sorted(os.listdir(a[0]))
        if name == "access":
            return self.access(*a)
        if name in ("fsync", "fchdir") and a[0] < 0:  # Python refuses negative fds here
            self.sys(name, a[0])
            return None
        return getattr(os, name)(*a)


class LibosSide:
    """The same calls on a LibOS process."""

    def __init__(self, proc) -> None:
        self.p = proc

    def call(self, op: tuple) -> Any:
        p = self.p
        name, *a = op
        if name == "readv":
            fd, lens = a
            bufs = [bytearray(n) for n in lens]
            n = p.readv(fd, bufs)
            return n, [bytes(b) for b in bufs]
        if name == "dup3":
            return p.dup3(a[0], a[1], os.O_CLOEXEC)
        if name == "fcntl":
            fd, (cmd, arg) = a
            return p.fcntl(fd, cmd, arg)
        if name in ("stat", "lstat", "fstat"):
            return stat_result(getattr(p, name)(a[0]))
        if name == "fstatat":
            dfd, path, nofollow = a
            return stat_result(p.fstatat(dfd, path, AT_SYMLINK_NOFOLLOW if nofollow else 0))
        if name == "listdir":
            return sorted(p.listdir(a[0]))
        result = getattr(p, name)(*a)
        return None if name in ("close", "fsync", "ftruncate", "truncate", "mkdir", "rmdir", "unlink", "rename",
                                "link", "symlink", "access", "chdir", "fchdir", "chmod", "fchmod",
                                "mkfifo") else result


# ----------------------------------------------------------------------------- steering


def _climbs_out(path: str, cwd_depth: int | None) -> bool:
    """Could ``path`` reach above /m? Conservative: a named component is at depth >= 2 (it is
    inside /m, and symlink targets never name /m itself), ``..`` goes up one."""
    if path.startswith("/"):
        comps = [c for c in path.split("/") if c]
        if not comps or comps[0] != "m":
            return True
        depth, comps = 1, comps[1:]
    else:
        if cwd_depth is None:  # the cwd was removed: only ".." could lead anywhere
            return ".." in path.split("/")
        depth, comps = cwd_depth, [c for c in path.split("/") if c]
    for c in comps:
        if c == "..":
            depth -= 1
            if depth < 1:
                return True
        elif c != ".":
            depth = 2
    return False


PATH_ARGS = {"open": (0,), "truncate": (0,), "stat": (0,), "lstat": (0,), "mkdir": (0,), "rmdir": (0,),
             "unlink": (0,), "rename": (0, 1), "access": (0,), "listdir": (0,), "chdir": (0,), "chmod": (0,),
             "symlink": (1,), "link": (0, 1), "readlink": (0,), "mkfifo": (0,)}


def _fd_info(fd: int) -> tuple[int, int] | None:
    try:
        return os.fstat(fd).st_mode, fcntl.fcntl(fd, fcntl.F_GETFL)
    except (OSError, ValueError):
        return None


def steer(op: tuple, kind: str) -> tuple | None:
    """Run in the kernel child before each call: the call both sides will make (``op``, or a
    variant of it), or None to skip it on both sides."""
    if known_bug(op, kind):
        return None
    name, *a = op
    try:
        cwd = os.getcwd()
        cwd_depth: int | None = len([c for c in cwd.split("/") if c])
    except OSError:
        cwd_depth = None
    for i in PATH_ARGS.get(name, ()):
        if _climbs_out(a[i], cwd_depth):
            return None  # above /m the two sides differ by construction (what is mounted where)
    if name in ("open", "openat"):
        path, flags = (a[0], a[1]) if name == "open" else (a[1], a[2])
        try:
            kw = {"dir_fd": a[0]} if name == "openat" else {}
            mode = os.stat(path, follow_symlinks=not flags & os.O_NOFOLLOW, **kw).st_mode
        except (OSError, ValueError):
            mode = 0
        if st.S_ISFIFO(mode) and not flags & (os.O_NONBLOCK | O_PATH):
            # opening a FIFO blocks until the other end opens: make it non-blocking
            a = list(a)
            a[-2] = flags | os.O_NONBLOCK
            return (name, *a)
    if name in ("read", "readv"):
        info = _fd_info(a[0])
        if info and st.S_ISFIFO(info[0]) and not info[1] & os.O_NONBLOCK:
            return None  # would block (an empty FIFO with a writer)
    if name == "lseek":
        info = _fd_info(a[0])
        if info and st.S_ISDIR(info[0]):
            return None  # folder offsets are specific to each host file system
    return op


# ----------------------------------------------------------------------------- final state


def snapshot(side_call: Callable[[tuple], Any], read_file: Callable[[str], bytes], extra_fds=range(8)) -> dict:
    """The tree under /m (lstat of everything, contents, symlink targets), the cwd, and the
    st_ino equality relation between every entry and every open descriptor."""
    tree: dict[str, Any] = {}
    inos: list[tuple[str, int]] = []

    def walk(path: str, depth: int) -> None:
        names = side_call(("listdir", path))
        for name in names:
            child = f"{path}/{name}"
            s = side_call(("lstat_raw", child))
            entry: dict[str, Any] = {"stat": stat_result(s)}
            inos.append((child, s.st_ino))
            if st.S_ISLNK(s.st_mode):
                entry["target"] = side_call(("readlink", child))
            elif st.S_ISREG(s.st_mode):
                content = read_file(child)
                entry["content"] = (len(content), hashlib.sha256(content).hexdigest()[:16])
            elif st.S_ISDIR(s.st_mode) and depth < 8:
                walk(child, depth + 1)
            tree[child] = entry

    walk(MOUNT, 0)
    for fd in [*list(extra_fds), 100]:
        r = outcome(lambda fd=fd: side_call(("fstat_raw", fd)))
        if r[0] == "ok":
            inos.append((f"fd {fd}", r[1].st_ino))
    same = sorted((x, y) for i, (x, ix) in enumerate(inos) for (y, iy) in inos[i + 1:] if ix == iy)
    cwd = outcome(lambda: side_call(("getcwd",)))
    return {"tree": tree, "same_inode": same, "cwd": cwd}


def _kernel_read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _libos_read_file(p, path: str) -> bytes:
    fd = p.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        chunks = []
        while chunk := p.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        p.close(fd)


# ----------------------------------------------------------------------------- running


def run_on_kernel(program: list[tuple], root_mode: int, *, steering: bool = True, kind: str = "tmpfs",
                  ) -> tuple[list[tuple[tuple | None, tuple]], dict]:
    """Run ``program`` in a forked child chroot-ed into a fresh folder; return the calls it made
    (after steering, unless ``steering`` is off), their outcomes, and the final snapshot."""
    jail = tempfile.mkdtemp(prefix="pfskit-diff-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.chmod(jail, 0o1777)  # as the LibOS's tmpfs root
    os.mkdir(os.path.join(jail, "m"))
    os.chmod(os.path.join(jail, "m"), root_mode)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 0
        try:
            os.dup2(w, RESULT_FD)
            os.closerange(0, RESULT_FD)
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            side = KernelSide()
            os.chroot(jail)
            os.chdir(MOUNT)
            os.umask(0o022)
            results = []
            for op in program:
                eff = steer(op, kind) if steering else op
                results.append((eff, outcome(lambda eff=eff: side.call(eff)) if eff else None))

            def snap_call(op: tuple) -> Any:
                if op[0] == "lstat_raw":
                    return os.lstat(op[1])
                if op[0] == "fstat_raw":
                    return os.fstat(op[1])
                if op[0] == "getcwd":
                    return os.getcwd()
                return side.call(op)

            snap = outcome(lambda: snapshot(snap_call, _kernel_read_file))
            payload = pickle.dumps(("done", results, snap))
        except BaseException as e:
            payload = pickle.dumps(("crash", f"{type(e).__name__}: {e}\n{traceback.format_exc()}", None))
            status = 1
        view = memoryview(payload)
        while view:
            view = view[os.write(RESULT_FD, view):]
        os._exit(status)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
        shutil.rmtree(jail, ignore_errors=True)
    kind, results, snap = pickle.loads(b"".join(chunks))
    if kind != "done":
        raise RuntimeError(f"kernel child failed: {results}")
    return results, snap


def make_libos(kind: str, host_dir: Path | None):
    """A LibOS with a tmpfs root, a folder /m in it, and the file system under test mounted there."""
    vfs = VFS(MountTable())
    vfs.mounts.mount("/", TmpFs())
    libos = LibOS(vfs)
    boot = libos.process()
    boot.mkdir(MOUNT, 0o755)
    boot.exit(0)
    if kind == "tmpfs":
        fs = TmpFs()
    elif kind == "chroot":
        from vfs.chroot import ChrootFs

        fs = ChrootFs(str(host_dir))
    else:
        from vfs.encrypted import EncryptedFs, KeyStore

        keys = KeyStore()
        keys.set("default", KEY)
        fs = EncryptedFs(str(host_dir), key_name="default", keys=keys, bind_prefix=MOUNT)
    vfs.mounts.mount(MOUNT, fs)
    proc = libos.process(cwd=MOUNT, umask=0o022)
    return libos, proc


def run_on_libos(proc, calls: list[tuple | None]) -> tuple[list[tuple | None], dict]:
    side = LibosSide(proc)
    results = [outcome(lambda op=op: side.call(op)) if op else None for op in calls]

    def snap_call(op: tuple) -> Any:
        if op[0] == "lstat_raw":
            return proc.lstat(op[1])
        if op[0] == "fstat_raw":
            return proc.fstat(op[1])
        return side.call(op)

    snap = outcome(lambda: snapshot(snap_call, lambda path: _libos_read_file(proc, path)))
    return results, snap


def _short(result: tuple | None) -> str:
    if result is None:
        return "(skipped)"
    if result[0] == "ok":
        value = result[1]
        text = repr(value)
        return "-> " + (text if len(text) < 90 else text[:87] + "...")
    if result[0] == "err":
        return f"!! {result[1]}"
    return f"!! {result[1]}"


def report(kind: str, calls, kres, lres, first_bad: int | None, ksnap=None, lsnap=None) -> str:
    lines = [f"differential mismatch on the {kind} mount; the program (run in /m as root):"]
    for i, (op, k, lo) in enumerate(zip(calls, kres, lres, strict=True)):
        if op is None:
            continue
        mark = ">>" if i == first_bad else "  "
        if k == lo:
            lines.append(f"{mark} {i:2} {describe(op)}  {_short(k)}")
        else:
            lines.append(f"{mark} {i:2} {describe(op)}\n         kernel: {_short(k)}\n         libos:  {_short(lo)}")
            if lo and lo[0] == "exc":
                lines.append("         " + lo[2].replace("\n", "\n         "))
        if first_bad is not None and i == first_bad:
            break
    if first_bad is None:
        lines.append("final state differs:")
        lines.append(f"  kernel: {ksnap!r}")
        lines.append(f"  libos:  {lsnap!r}")
        if ksnap and lsnap and ksnap[0] == lsnap[0] == "ok":
            kt, lt = ksnap[1], lsnap[1]
            for key in sorted(set(kt["tree"]) | set(lt["tree"])):
                if kt["tree"].get(key) != lt["tree"].get(key):
                    lines.append(f"  {key}: kernel {kt['tree'].get(key)!r} / libos {lt['tree'].get(key)!r}")
            for key in ("same_inode", "cwd"):
                if kt[key] != lt[key]:
                    lines.append(f"  {key}: kernel {kt[key]!r} / libos {lt[key]!r}")
    return "\n".join(lines)


def check_program(kind: str, program: list[tuple], host_dir: Path | None, *, steering: bool = True) -> None:
    libos, proc = make_libos(kind, host_dir)
    try:
        root_mode = st.S_IMODE(proc.stat(MOUNT).st_mode)
        calls_results, ksnap = run_on_kernel(program, root_mode, steering=steering, kind=kind)
        calls = [c for c, _ in calls_results]
        kres = [r for _, r in calls_results]
        lres, lsnap = run_on_libos(proc, calls)
        for i, (k, lo) in enumerate(zip(kres, lres, strict=True)):
            if k != lo:
                raise AssertionError(report(kind, calls, kres, lres, i))
        if ksnap != lsnap:
            raise AssertionError(report(kind, calls, kres, lres, None, ksnap, lsnap))
    finally:
        libos.shutdown()


# ----------------------------------------------------------------------------- the tests


def _fresh_dir(base: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="host-", dir=base))


def _require_chroot() -> None:
    require(os.geteuid() == 0, "the kernel side runs in a chroot: needs root")


VARIANTS = {
    # kind: (examples, steps, symlinks/hard links/FIFOs)
    "tmpfs": (400, 25, True),
    "chroot": (200, 25, True),
    "encrypted": (120, 20, False),  # encrypted mounts have no symlinks, hard links or FIFOs (EPERM)
}


def _make_test(kind: str):
    n_examples, steps, links = VARIANTS[kind]
    setup = setup_program(links=links)

    @settings(max_examples=examples(n_examples), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(program=st_.lists(operations(links=links, fifos=links), min_size=1, max_size=steps))
    def test(program, tmp_path):
        _require_chroot()
        check_program(kind, setup + program, _fresh_dir(tmp_path) if kind != "tmpfs" else None)

    test.__name__ = f"test_differential_{kind}"
    return test


test_differential_tmpfs = _make_test("tmpfs")
test_differential_chroot = _make_test("chroot")
test_differential_encrypted = _make_test("encrypted")


def test_kernel_side_is_sane(tmp_path):
    """The harness itself: a known program gives the known Linux results on the kernel side."""
    _require_chroot()
    program = [("open", "a", os.O_CREAT | os.O_RDWR, 0o644), ("write", 0, b"abc"), ("lseek", 0, -1, os.SEEK_SET),
               ("pread", 0, 10, 1), ("mkdir", "d", 0o755), ("rename", "d", "d/x"), ("getcwd",),
               ("open", "..", os.O_RDONLY, 0)]
    calls_results, snap = run_on_kernel(program, 0o1777)
    assert [r for _, r in calls_results] == [("ok", 0), ("ok", 3), ("err", "EINVAL"), ("ok", b"bc"), ("ok", None),
                                             ("err", "EINVAL"), ("ok", "/m"), None]
    assert snap[0] == "ok" and set(snap[1]["tree"]) == {"/m/a", "/m/d"}


# ----------------------------------------------------------------------------- bugs found

W, RW, RO = os.O_WRONLY, os.O_RDWR, os.O_RDONLY
CREATE_A = [("open", "a", os.O_CREAT | RW, 0o644), ("write", 0, b"hello"), ("close", 0)]

# Every library bug this file found: name -> (what was wrong, a minimal program that shows it).
# Those still open are in KIND_BUGS (strict xfail below); the fixed ones stay as regression tests.
BUG_REPROS: dict[str, tuple[str, list[tuple]]] = {
    "access-mode-checked-after-lookup": (
        "VFS.access: the mode is checked after the path walk; access('missing', 8) gives ENOENT, Linux EINVAL",
        [("access", "missing", 8)]),
    "mkdir-setgid": (
        "VFS.mkdir keeps S_ISUID/S_ISGID of the mode argument (Linux keeps 0777|S_ISVTX only) and a folder made "
        "in a set-group-ID folder doesn't inherit S_ISGID: mkdir('d', 0o2755) gives 0o2755 (Linux 0o755); "
        "mkdir in a 0o2755 folder gives 0o755 (Linux 0o2755)",
        [("mkdir", "d", 0o2755), ("stat", "d"), ("chmod", "d", 0o2755), ("mkdir", "d/x", 0o755), ("stat", "d/x")]),
    "open-accmode-3": (
        "VFS.open: access mode 3 (O_WRONLY|O_RDWR) gives EINVAL; Linux opens it (read and write permission "
        "checked, the descriptor can neither read nor write: EBADF)",
        [*CREATE_A, ("open", "a", 3, 0), ("read", 0, 1), ("write", 0, b"x"), ("fstat", 0)]),
    "rdonly-trunc": (
        "VFS.open: O_RDONLY|O_TRUNC doesn't truncate (Linux truncates a regular file whatever the access mode)",
        [*CREATE_A, ("open", "a", RO | os.O_TRUNC, 0), ("stat", "a")]),
    "creat-directory": (
        "VFS.open: O_CREAT|O_DIRECTORY creates a regular file (or gives EISDIR); Linux >= 6.4 always EINVAL",
        [("open", "x", os.O_CREAT | os.O_DIRECTORY | RO, 0o644), ("open", ".", os.O_CREAT | os.O_DIRECTORY | RO, 0)]),
    "creat-trailing-slash": (
        "VFS.open: O_CREAT on 'a/' where a is a regular file opens a (Linux: EISDIR for any O_CREAT path ending "
        "in '/')",
        [*CREATE_A, ("open", "a/", os.O_CREAT | RO, 0o644)]),
    "fsync-fifo": (
        "OpenFile.fsync on a FIFO (or pipe) succeeds; Linux gives EINVAL",
        [("mkfifo", "f", 0o644), ("open", "f", RW, 0), ("fsync", 0)]),
    "rename-name-too-long": (
        "VFS.rename (lookup_parent) checks both last names' length first: rename('b', 'x'*256) with no b gives "
        "ENAMETOOLONG, Linux ENOENT (the source is looked up first)",
        [("rename", "b", TOO_LONG)]),
    "negative-offset-bad-fd": (
        "Process.pread/pwrite/ftruncate check the descriptor before a negative offset/length: EBADF (or EISDIR); "
        "Linux checks the number first: EINVAL",
        [("pread", 5, 1, -1), ("pwrite", 5, b"x", -1), ("ftruncate", 5, -1)]),
    "tmpfs-empty-write-extends": (
        "TmpHandle.write: a write of 0 bytes past the end zero-fills up to the offset (Linux: nothing happens)",
        [("open", "a", os.O_CREAT | RW, 0o644), ("pwrite", 0, b"", 10), ("lseek", 0, 5, os.SEEK_SET),
         ("write", 0, b""), ("fstat", 0)]),
    "stale-location-after-rename": (
        "vfs.Location keeps the path and parent it was resolved with (Process.ctx.cwd, OpenFile.location): after "
        "the cwd's folder is renamed, getcwd() returns the old path, '..' goes to the old parent, and rename() "
        "can move a folder into itself (the folder and everything under it disappear from the tree)",
        [("mkdir", "d", 0o755), ("mkdir", "d/e", 0o755), ("chdir", "d/e"), ("rename", "/m/d/e", "/m/e"),
         ("getcwd",), ("listdir", ".."), ("rename", "/m/e", "x"), ("listdir", "/m")]),
    "trunc-dir": (
        "VFS.open(folder, O_RDONLY|O_TRUNC) opens the folder; Linux: EISDIR (O_TRUNC needs write access)",
        [("open", ".", RO | os.O_TRUNC, 0), ("open", ".", RO | os.O_TRUNC | os.O_EXCL, 0)]),
    "openat-flags-after-dirfd": (
        "Process.openat resolves dirfd before checking the flags: openat(<fd of a file>, '.', "
        "O_CREAT|O_DIRECTORY) gives ENOTDIR, Linux EINVAL",
        [*CREATE_A, ("open", "a", RO, 0), ("openat", 0, ".", os.O_CREAT | os.O_DIRECTORY | RO, 0o644),
         ("openat", 9, "x", os.O_CREAT | os.O_DIRECTORY | RO, 0o644)]),
    "creat-excl-trailing-slash": (
        "VFS.open('a/', O_CREAT|O_EXCL) with a an existing file gives EEXIST; Linux EISDIR (the trailing slash "
        "is checked first)",
        [*CREATE_A, ("open", "a/", os.O_CREAT | os.O_EXCL | RO, 0o644)]),
    "rename-trailing-slash-before-target": (
        "VFS.rename checks 'source is not a folder but a path has a trailing slash' (ENOTDIR) before looking up "
        "the target; Linux looks the target up first: rename('a/', 'x'*256) gives ENAMETOOLONG",
        [*CREATE_A, ("rename", "a/", TOO_LONG)]),
    "append-empty-write-moves-offset": (
        "OpenFile.write with O_APPEND moves the offset to the end even for 0 bytes; Linux leaves it (an empty "
        "write returns before the append positioning)",
        [*CREATE_A, ("open", "a", W | os.O_APPEND, 0), ("write", 0, b""), ("lseek", 0, 0, os.SEEK_CUR),
         ("writev", 0, [b""]), ("lseek", 0, 0, os.SEEK_CUR)]),
    "ftruncate-not-writable": (
        "OpenFile.truncate on a descriptor not open for writing gives EBADF; Linux EINVAL",
        [*CREATE_A, ("open", "a", RO, 0), ("ftruncate", 0, 0)]),
    "creat-through-symlink-with-slash": (
        "VFS.open(O_CREAT) of a symlink whose target is 'a/' (a an existing file) gives ENOTDIR; Linux EISDIR",
        [*CREATE_A, ("symlink", "a/", "e"), ("open", "e", RO | os.O_CREAT, 0o644)]),
    "removed-cwd": (
        "after the cwd is removed, getcwd() still succeeded (Linux ENOENT) and files could be created in it "
        "(Linux ENOENT)",
        [("mkdir", "f", 0o755), ("chdir", "f"), ("rmdir", "/m/f"), ("getcwd",), ("open", "y", os.O_CREAT | W, 0o644),
         ("mkdir", "z", 0o755), ("stat", "."), ("listdir", ".")]),
    "write-dir-fd": (
        "OpenFile._check_io tests 'is a folder' before the access mode: write() on a read-only folder descriptor "
        "gives EISDIR, Linux EBADF",
        [("open", ".", RO, 0), ("write", 0, b"x"), ("pwrite", 0, b"x", 0), ("writev", 0, [b"x"])]),
    "readv-zero-dir": (
        "Process.readv of 0 bytes on a folder gives EISDIR; Linux returns 0 (a zero-length vector never reaches "
        "the read op)",
        [("open", ".", RO, 0), ("readv", 0, [0])]),
    "fchmod-o-path": (
        "Process.fchmod on an O_PATH descriptor changes the mode; Linux gives EBADF",
        [*CREATE_A, ("open", "a", O_PATH, 0), ("fchmod", 0, 0o600), ("stat", "a")]),
    "rename-over-ancestor": (
        "VFS.rename of an entry over one of its ancestors gives EISDIR/ENOTDIR; Linux ENOTEMPTY",
        [("mkdir", "d", 0o755), ("open", "d/e", os.O_CREAT | W, 0o644), ("rename", "d/e", "d")]),
    "nofollow-directory-symlink": (
        "VFS.open(symlink, O_NOFOLLOW|O_DIRECTORY) gives ELOOP; Linux ENOTDIR (checked before the symlink one)",
        [*CREATE_A, ("symlink", "a", "c"), ("open", "c", RO | os.O_NOFOLLOW | os.O_DIRECTORY, 0)]),
    "getfl-o-path-largefile": (
        "Process.fcntl(F_GETFL) on an O_PATH descriptor adds O_LARGEFILE; Linux doesn't (O_PATH opens drop it)",
        [("open", ".", O_PATH, 0), ("fcntl", 0, (fcntl.F_GETFL, 0))]),
}


def test_known_bugs_have_repros():
    for kind, bugs in KIND_BUGS.items():
        assert set(bugs) <= set(BUG_REPROS)
        assert {(kind, name) for name in bugs} <= set(KIND_REASONS)


def _uses_links(program: list[tuple]) -> bool:
    return any(op[0] in ("symlink", "link", "mkfifo") for op in program)


@pytest.mark.parametrize(("name", "kind"), [
    pytest.param(name, kind, marks=[pytest.mark.xfail(strict=True, reason=KIND_REASONS[kind, name])]
                 if name in KIND_BUGS[kind] else [])
    for name in BUG_REPROS for kind in ("tmpfs", "chroot", "encrypted")
    # encrypted mounts have no symlinks, hard links or FIFOs: those programs don't apply there
    if not (kind == "encrypted" and _uses_links(BUG_REPROS[name][1]))])
def test_fixed_bug(name, kind, tmp_path):
    """Each bug found here, its minimal program on every mount type it applies to (no steering);
    a strict xfail where a mount type still has it (KIND_BUGS)."""
    _require_chroot()
    program = BUG_REPROS[name][1]
    check_program(kind, program, _fresh_dir(tmp_path) if kind != "tmpfs" else None, steering=False)
