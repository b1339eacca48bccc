"""Processes of the LibOS: a descriptor table, a cwd, a umask, and the POSIX file system calls.

Every call mirrors its Linux namesake: same name, same arguments (paths as ``str``), same
results, and failures raise ``OSError`` with the errno Linux would give. The file semantics
themselves live in :mod:`vfs.vfs`; this module owns what is per process.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vfs.file import O_PATH, SETFL_MASK, OpenFile
from vfs.node import Stat, err
from vfs.vfs import AT_EMPTY_PATH, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, Context

if TYPE_CHECKING:
    from .libos import LibOS

AT_FDCWD = -100
FD_CLOEXEC = 1
RLIMIT_NOFILE = 1024
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_DUPFD_CLOEXEC = 1030
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
IOV_MAX = 1024


class FdTable:
    """Descriptor numbers -> open file descriptions (shared after dup/fork), with FD_CLOEXEC."""

    def __init__(self) -> None:
        self._fds: dict[int, tuple[OpenFile, bool]] = {}
        self.lock = threading.RLock()

    def get(self, fd: int) -> OpenFile:
        entry = self._fds.get(fd)
        if entry is None:
            raise err(errno.EBADF)
        return entry[0]

    def install(self, file: OpenFile, *, cloexec: bool = False, lowest: int = 0) -> int:
        """Put ``file`` at the lowest free number >= ``lowest``; EMFILE when the table is full."""
        with self.lock:
            fd = lowest
            while fd in self._fds:
                fd += 1
            if fd >= RLIMIT_NOFILE:
                raise err(errno.EMFILE)
            self._fds[fd] = (file, cloexec)
            return fd

    def replace(self, fd: int, file: OpenFile, *, cloexec: bool) -> OpenFile | None:
        """Put ``file`` at ``fd``; return what was there (the caller drops it)."""
        if not 0 <= fd < RLIMIT_NOFILE:
            raise err(errno.EBADF)
        with self.lock:
            old = self._fds.get(fd)
            self._fds[fd] = (file, cloexec)
            return old[0] if old else None

    def remove(self, fd: int) -> OpenFile:
        with self.lock:
            entry = self._fds.pop(fd, None)
        if entry is None:
            raise err(errno.EBADF)
        return entry[0]

    def cloexec(self, fd: int) -> bool:
        self.get(fd)
        return self._fds[fd][1]

    def set_cloexec(self, fd: int, value: bool) -> None:
        with self.lock:
            file = self.get(fd)
            self._fds[fd] = (file, value)

    def items(self) -> list[tuple[int, OpenFile]]:
        with self.lock:
            return sorted((fd, f) for fd, (f, _) in self._fds.items())

    def copy(self) -> FdTable:
        """A child's table (fork): the same descriptions, one more reference each."""
        table = FdTable()
        with self.lock:
            for fd, (file, cloexec) in self._fds.items():
                table._fds[fd] = (file.incref(), cloexec)
        return table

    def close_all(self) -> None:
        with self.lock:
            files = [f for f, _ in self._fds.values()]
            self._fds.clear()
        for file in files:
            file.decref()


class Process:
    """One LibOS process. Create with :meth:`LibOS.process` or :meth:`fork`."""

    def __init__(self, libos: LibOS, pid: int, ppid: int, ctx: Context, fds: FdTable, *,
                 argv: Sequence[str] = (), env: dict[str, str] | None = None, exe: str = ""):
        self.libos = libos
        self.vfs = libos.vfs
        self.pid = pid
        self.ppid = ppid
        self.ctx = ctx
        self.fds = fds
        self.argv = list(argv)
        self.env = dict(env or {})
        self.exe = exe
        self.exit_status: int | None = None
        self.start_time_ns = libos.clock()

    def __repr__(self) -> str:
        return f"<Process pid={self.pid} cwd={self.ctx.cwd.path!r}>"

    # ------------------------------------------------------------------ helpers

    def _enter(self) -> None:
        if self.exit_status is not None:
            raise err(errno.ESRCH)
        self.libos.set_current(self.pid)

    def _at(self, dirfd: int, path: str, flags: int = 0) -> Context:
        """The context for resolving ``path`` relative to ``dirfd`` (``openat`` and friends)."""
        if path.startswith("/") or dirfd == AT_FDCWD:
            return self.ctx
        if path == "" and not flags & AT_EMPTY_PATH:
            raise err(errno.ENOENT)
        file = self.fds.get(dirfd)
        if not file.inode.is_dir and not (path == "" and flags & AT_EMPTY_PATH):
            raise err(errno.ENOTDIR)
        ctx = Context(root=self.ctx.root, cwd=file.location, uid=self.ctx.uid, gid=self.ctx.gid,
                      groups=self.ctx.groups, umask=self.ctx.umask)
        return ctx

    # ------------------------------------------------------------------ open / close

    def open(self, path: str, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
        return self.openat(AT_FDCWD, path, flags, mode)

    def openat(self, dirfd: int, path: str, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
        self._enter()
        if flags & os.O_CREAT and flags & os.O_DIRECTORY and not flags & O_PATH:
            raise err(errno.EINVAL)  # the flags are checked before anything is looked up
        file = self.vfs.open(self._at(dirfd, path), path, flags, mode)
        try:
            return self.fds.install(file, cloexec=bool(flags & os.O_CLOEXEC))
        except OSError:
            file.decref()
            raise

    def creat(self, path: str, mode: int = 0o666) -> int:
        return self.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)

    def close(self, fd: int) -> None:
        self._enter()
        self.fds.remove(fd).decref()

    def dup(self, fd: int) -> int:
        self._enter()
        file = self.fds.get(fd)
        return self.fds.install(file.incref())

    def dup2(self, fd: int, fd2: int) -> int:
        self._enter()
        file = self.fds.get(fd)
        if fd == fd2:
            return fd2
        return self._dup_to(file, fd2, cloexec=False)

    def dup3(self, fd: int, fd2: int, flags: int = 0) -> int:
        self._enter()
        if fd == fd2 or flags & ~os.O_CLOEXEC:
            raise err(errno.EINVAL)
        file = self.fds.get(fd)
        return self._dup_to(file, fd2, cloexec=bool(flags & os.O_CLOEXEC))

    def _dup_to(self, file: OpenFile, fd2: int, *, cloexec: bool) -> int:
        old = self.fds.replace(fd2, file.incref(), cloexec=cloexec)
        if old is not None:
            old.decref()
        return fd2

    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        self._enter()
        file = self.fds.get(fd)
        if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
            if not 0 <= arg < RLIMIT_NOFILE:
                raise err(errno.EINVAL)
            return self.fds.install(file.incref(), cloexec=cmd == F_DUPFD_CLOEXEC, lowest=arg)
        if cmd == F_GETFD:
            return FD_CLOEXEC if self.fds.cloexec(fd) else 0
        if cmd == F_SETFD:
            self.fds.set_cloexec(fd, bool(arg & FD_CLOEXEC))
            return 0
        if cmd == F_GETFL:
            # Linux reports O_LARGEFILE for descriptors opened by open(2), not for O_PATH ones
            return (file.flags & ~os.O_CLOEXEC) | (0 if file.flags & O_PATH else 0o100000)
        if cmd == F_SETFL:
            with file.lock:
                file.flags = (file.flags & ~SETFL_MASK) | (arg & SETFL_MASK)
            return 0
        if cmd == F_GETPIPE_SZ:
            if file.pipe is None:
                raise err(errno.EBADF)
            return file.pipe.capacity
        if cmd == F_SETPIPE_SZ:
            if file.pipe is None:
                raise err(errno.EBADF)
            file.pipe.set_capacity(arg)
            return file.pipe.capacity
        raise err(errno.EINVAL)

    # ------------------------------------------------------------------ I/O

    def read(self, fd: int, size: int) -> bytes:
        self._enter()
        return self.fds.get(fd).read(size)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._enter()
        if offset < 0:
            raise err(errno.EINVAL)  # checked before the descriptor, as Linux does
        return self.fds.get(fd).pread(size, offset)

    def readv(self, fd: int, buffers: Sequence[bytearray | memoryview]) -> int:
        """Fill ``buffers`` in order from one read; return the bytes read."""
        self._enter()
        if len(buffers) > IOV_MAX:
            raise err(errno.EINVAL)
        file = self.fds.get(fd)
        total = sum(len(b) for b in buffers)
        if total == 0 and file.readable:
            return 0  # Linux returns before the file's read operation (so even for a folder)
        data = file.read(total)
        pos = 0
        for buf in buffers:
            chunk = data[pos:pos + len(buf)]
            memoryview(buf)[:len(chunk)] = chunk
            pos += len(chunk)
        return len(data)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        self._enter()
        return self.fds.get(fd).write(data)

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
        self._enter()
        if offset < 0:
            raise err(errno.EINVAL)
        return self.fds.get(fd).pwrite(data, offset)

    def writev(self, fd: int, buffers: Sequence[bytes | bytearray | memoryview]) -> int:
        """One write of the concatenated ``buffers`` (atomic as a single write)."""
        self._enter()
        if len(buffers) > IOV_MAX:
            raise err(errno.EINVAL)
        return self.fds.get(fd).write(b"".join(bytes(b) for b in buffers))

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        self._enter()
        return self.fds.get(fd).lseek(offset, whence)

    def fsync(self, fd: int) -> None:
        self._enter()
        self.fds.get(fd).fsync()

    fdatasync = fsync

    def ftruncate(self, fd: int, length: int) -> None:
        self._enter()
        if length < 0:
            raise err(errno.EINVAL)
        self.fds.get(fd).truncate(length)

    # ------------------------------------------------------------------ metadata

    def stat(self, path: str) -> Stat:
        self._enter()
        return self.vfs.stat(self.ctx, path)

    def lstat(self, path: str) -> Stat:
        self._enter()
        return self.vfs.stat(self.ctx, path, follow=False)

    def fstat(self, fd: int) -> Stat:
        self._enter()
        return self.fds.get(fd).stat()

    def fstatat(self, dirfd: int, path: str, flags: int = 0) -> Stat:
        self._enter()
        if path == "" and flags & AT_EMPTY_PATH:
            return self.fstat(dirfd) if dirfd != AT_FDCWD else self.ctx.cwd.stat()
        return self.vfs.stat(self._at(dirfd, path, flags), path, follow=not flags & AT_SYMLINK_NOFOLLOW)

    def access(self, path: str, mode: int) -> None:
        self._enter()
        self.vfs.access(self.ctx, path, mode)

    def chmod(self, path: str, mode: int) -> None:
        self._enter()
        self.vfs.chmod(self.ctx, path, mode)

    def fchmod(self, fd: int, mode: int) -> None:
        self._enter()
        file = self.fds.get(fd)
        if file.flags & O_PATH:
            raise err(errno.EBADF)
        file.inode.chmod(mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self._enter()
        self.vfs.chown(self.ctx, path, uid, gid)

    def utimens(self, path: str, times_ns: tuple[int, int] | None = None, *, follow: bool = True) -> None:
        """``utimensat``: set (atime, mtime) in ns, or both to now when ``times_ns`` is None."""
        self._enter()
        if times_ns is None:
            now = self.libos.clock()
            times_ns = (now, now)
        self.vfs.utimens(self.ctx, path, times_ns[0], times_ns[1], follow=follow)

    def readlink(self, path: str) -> str:
        self._enter()
        return self.vfs.readlink(self.ctx, path)

    def truncate(self, path: str, length: int) -> None:
        self._enter()
        self.vfs.truncate(self.ctx, path, length)

    def statfs(self, path: str) -> dict[str, int]:
        self._enter()
        return self.vfs.statfs(self.ctx, path)

    # ------------------------------------------------------------------ directories and names

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self._enter()
        self.vfs.mkdir(self.ctx, path, mode)

    def mkdirat(self, dirfd: int, path: str, mode: int = 0o777) -> None:
        self._enter()
        self.vfs.mkdir(self._at(dirfd, path), path, mode)

    def rmdir(self, path: str) -> None:
        self._enter()
        self.vfs.rmdir(self.ctx, path)

    def unlink(self, path: str) -> None:
        self._enter()
        self.vfs.unlink(self.ctx, path)

    def unlinkat(self, dirfd: int, path: str, flags: int = 0) -> None:
        self._enter()
        if flags & ~AT_REMOVEDIR:
            raise err(errno.EINVAL)
        ctx = self._at(dirfd, path)
        if flags & AT_REMOVEDIR:
            self.vfs.rmdir(ctx, path)
        else:
            self.vfs.unlink(ctx, path)

    def rename(self, old: str, new: str) -> None:
        self._enter()
        self.vfs.rename(self.ctx, old, new)

    def link(self, old: str, new: str) -> None:
        self._enter()
        self.vfs.link(self.ctx, old, new)

    def symlink(self, target: str, path: str) -> None:
        self._enter()
        self.vfs.symlink(self.ctx, target, path)

    def mkfifo(self, path: str, mode: int = 0o666) -> None:
        self._enter()
        self.vfs.mkfifo(self.ctx, path, mode)

    def mknod(self, path: str, mode: int = 0o600, device: int = 0) -> None:
        """``mknod(2)``: ``device`` is a device node's ``os.makedev`` number (root only; the
        node is kept, never opened: EACCES)."""
        self._enter()
        self.vfs.mknod(self.ctx, path, mode, device)

    def getdents64(self, fd: int, count: int = 32768) -> list[tuple[str, int, int]]:
        """Entries (name, ino, d_type) from the descriptor's position; [] at the end.

        ``count`` bounds the result like the buffer size of the real call (24 bytes + name,
        8-byte aligned, per entry); EINVAL when not even one entry fits.
        """
        self._enter()
        file = self.fds.get(fd)
        out: list[tuple[str, int, int]] = []
        used = 0
        with file.lock:
            start = file.offset
            entries = file.getdents(lambda: self.vfs.dir_listing(file.location))
            for name, ino, dtype, _ in entries:
                size = (19 + len(name.encode(errors="surrogateescape")) + 1 + 7) & ~7
                if used + size > count:
                    break
                out.append((name, ino, dtype))
                used += size
            if entries and not out:
                file.offset = start
                raise err(errno.EINVAL)
            file.offset = start + len(out)
        return out

    def listdir(self, path: str = ".") -> list[str]:
        """Like ``os.listdir``: every name but ``.`` and ``..``."""
        self._enter()
        return [n for n, _, _ in self.vfs.listdir(self.ctx, path) if n not in (".", "..")]

    def chdir(self, path: str) -> None:
        self._enter()
        self.ctx.cwd = self.vfs.chdir_target(self.ctx, path)

    def fchdir(self, fd: int) -> None:
        self._enter()
        file = self.fds.get(fd)
        if not file.inode.is_dir:
            raise err(errno.ENOTDIR)
        self.ctx.cwd = self.vfs.pin(file.location)

    def getcwd(self) -> str:
        self._enter()
        if self.ctx.cwd.inode.stat().st_nlink == 0:
            raise err(errno.ENOENT)  # the cwd was removed
        return self.ctx.cwd.path

    def umask(self, mask: int) -> int:
        self._enter()
        old, self.ctx.umask = self.ctx.umask, mask & 0o777
        return old

    # ------------------------------------------------------------------ pipes and processes

    def pipe2(self, flags: int = 0) -> tuple[int, int]:
        """A new pipe: (read end, write end); flags O_NONBLOCK and O_CLOEXEC."""
        self._enter()
        if flags & ~(os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_DIRECT", 0)):
            raise err(errno.EINVAL)
        reader, writer = self.libos.new_pipe(flags & os.O_NONBLOCK)
        cloexec = bool(flags & os.O_CLOEXEC)
        try:
            rfd = self.fds.install(reader, cloexec=cloexec)
        except OSError:
            reader.decref()
            writer.decref()
            raise
        try:
            wfd = self.fds.install(writer, cloexec=cloexec)
        except OSError:
            self.fds.remove(rfd).decref()
            writer.decref()
            raise
        return rfd, wfd

    def pipe(self) -> tuple[int, int]:
        return self.pipe2(0)

    def fork(self) -> Process:
        """A child process: a copy of the descriptor table sharing the open file descriptions."""
        self._enter()
        return self.libos.fork(self)

    def exit(self, status: int = 0) -> None:
        """End the process: close every descriptor; the status is kept for :meth:`LibOS.wait`."""
        if self.exit_status is not None:
            return
        self.fds.close_all()
        self.exit_status = status & 0xFF
        self.libos.reap(self)

    def getpid(self) -> int:
        return self.pid

    def getppid(self) -> int:
        return self.ppid
