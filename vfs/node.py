"""The file-system interface of the VFS: inodes, open handles, and stat results.

A file system implements the *mechanics* of its operations on :class:`Inode` subclasses; the
VFS (:mod:`vfs.vfs`) owns the *semantics* shared by all of them (path walk, permission and type
checks, errno choice, timestamps for in-memory file systems), so a behaviour fixed there is
fixed for every mount type.

Errors are ``OSError`` with the errno Linux would give; :func:`err` builds one.
"""

from __future__ import annotations

import errno
import os
import stat as st
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

from pal import time_ns

BLOCK_SIZE = 4096
NAME_MAX = 255
PATH_MAX = 4096


class _Now:
    """The type of :data:`UTIME_NOW`."""

    def __repr__(self) -> str:
        return "UTIME_NOW"


UTIME_NOW: Any = _Now()  # a time argument of utimens: "the current time" (Linux's UTIME_NOW)
TimeArg = Any  # a time argument: ns since the epoch, UTIME_NOW, or None (UTIME_OMIT: unchanged)


def err(code: int, path: str | None = None) -> OSError:
    """An ``OSError`` for ``code`` with the kernel's message (and the path, when given)."""
    if path is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), path)


class Stat(NamedTuple):
    """The fields of ``struct stat`` that the VFS reports (nanosecond times)."""

    st_mode: int
    st_ino: int
    st_dev: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_blksize: int = BLOCK_SIZE
    st_blocks: int = 0
    st_rdev: int = 0

    @property
    def st_atime(self) -> float:
        return self.st_atime_ns / 1e9

    @property
    def st_mtime(self) -> float:
        return self.st_mtime_ns / 1e9

    @property
    def st_ctime(self) -> float:
        return self.st_ctime_ns / 1e9


class Handle:
    """The file-system side of an open regular file (or device): I/O by offset."""

    def read(self, offset: int, size: int) -> bytes:
        raise err(errno.EINVAL)

    def readinto(self, offset: int, buf: memoryview) -> int:
        """Read into ``buf`` from ``offset``; return the number of bytes read (a short count
        only at end of file). Handles that can fill ``buf`` without a copy override this."""
        data = self.read(offset, len(buf))
        buf[:len(data)] = data
        return len(data)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        raise err(errno.EINVAL)

    def truncate(self, size: int) -> None:
        raise err(errno.EINVAL)

    def size(self) -> int:
        return 0

    def fsync(self) -> None:
        pass

    def flush(self) -> None:
        """Push buffered changes to the host (no fsync): called when a descriptor is closed."""

    def close(self) -> None:
        pass

    def host_version(self) -> tuple[int, ...] | None:
        """What identifies this version of a file others may change behind the VFS's back (a host
        file's identity, size and times), or None when only the VFS changes it."""
        return None


class FileSystem:
    """One mounted file-system instance (each gets its own ``st_dev``)."""

    _next_dev = 1
    _dev_lock = threading.Lock()
    type_name = "none"
    readonly = False

    def __init__(self) -> None:
        with FileSystem._dev_lock:
            self.dev = FileSystem._next_dev
            FileSystem._next_dev += 1
        self._next_ino = 1
        self.lock = threading.RLock()

    def new_ino(self) -> int:
        with self.lock:
            ino = self._next_ino
            self._next_ino += 1
            return ino

    def root(self) -> Inode:
        raise NotImplementedError

    def statfs(self) -> dict[str, int]:
        """``statvfs``-like numbers (blocks of 4096 bytes)."""
        return {"f_bsize": BLOCK_SIZE, "f_frsize": BLOCK_SIZE, "f_blocks": 0, "f_bfree": 0, "f_bavail": 0,
                "f_files": 0, "f_ffree": 0, "f_namemax": NAME_MAX}

    def sync(self) -> None:
        """Flush everything this file system holds (called on unmount)."""

    def describe(self) -> str:
        """The source field of /proc/mounts."""
        return self.type_name


class Inode:
    """A file-system object. Directory methods apply to directories only; the VFS checks the
    type before calling them.

    Attributes are kept on the object for in-memory file systems; host-backed ones override
    :meth:`stat` and the setters.
    """

    #: a character or block device of this class opens its device (the VFS's own /dev); device
    #: nodes made in a mount (chroot, tmpfs) are names only, and open gives EACCES
    opens_device = False

    def __init__(self, fs: FileSystem, mode: int, *, uid: int = 0, gid: int = 0, ino: int | None = None,
                 rdev: int = 0):
        now = time_ns()
        self.fs = fs
        self.ino = fs.new_ino() if ino is None else ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.nlink = 2 if st.S_ISDIR(mode) else 1
        self.atime_ns = self.mtime_ns = self.ctime_ns = now
        self.rdev = rdev
        self.lock = threading.RLock()  # serializes appends and size changes across descriptions
        self.open_count = 0

    # ------------------------------------------------------------------ attributes

    @property
    def is_dir(self) -> bool:
        return st.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return st.S_ISLNK(self.mode)

    @property
    def is_reg(self) -> bool:
        return st.S_ISREG(self.mode)

    @property
    def is_fifo(self) -> bool:
        return st.S_ISFIFO(self.mode)

    def size(self) -> int:
        return 0

    def stat(self) -> Stat:
        size = self.size()
        return Stat(self.mode, self.ino, self.fs.dev, self.nlink, self.uid, self.gid, size,
                    self.atime_ns, self.mtime_ns, self.ctime_ns, BLOCK_SIZE, self.blocks(size), self.rdev)

    def blocks(self, size: int) -> int:
        """512-byte blocks allocated (what ``st_blocks`` reports)."""
        return ((size + BLOCK_SIZE - 1) // BLOCK_SIZE) * (BLOCK_SIZE // 512)

    def chmod(self, mode: int) -> None:
        self.mode = (self.mode & ~0o7777) | (mode & 0o7777)
        self.touch(ctime=True)

    def chown(self, uid: int, gid: int) -> None:
        if uid != -1:
            self.uid = uid
        if gid != -1:
            self.gid = gid
        self.touch(ctime=True)

    def utimens(self, atime_ns: int | None, mtime_ns: int | None) -> None:
        if atime_ns is not None:
            self.atime_ns = atime_ns
        if mtime_ns is not None:
            self.mtime_ns = mtime_ns
        self.touch(ctime=True)

    def touch(self, *, atime: bool = False, mtime: bool = False, ctime: bool = False) -> None:
        """Set the chosen timestamps to now (in-memory file systems; host ones do it themselves)."""
        now = time_ns()
        if atime:
            self.atime_ns = now
        if mtime:
            self.mtime_ns = now
        if ctime:
            self.ctime_ns = now

    # ------------------------------------------------------------------ files

    def open(self, flags: int) -> Handle:
        """A handle for I/O on a regular file or device."""
        raise err(errno.EINVAL)

    def truncate(self, size: int) -> None:
        raise err(errno.EINVAL)

    def readlink(self) -> str:
        raise err(errno.EINVAL)

    def magic_target(self) -> Any:
        """For a "magic" link (``/proc/PID/fd/N``): the open file description it stands for,
        which following the link reaches directly, even when unlinked or renamed; else None."""
        return None

    # ------------------------------------------------------------------ directories

    def lookup(self, name: str) -> Inode | None:
        """The child called ``name``, or None."""
        raise err(errno.ENOTDIR)

    def entries(self) -> Iterable[tuple[str, Inode]]:
        """(name, inode) of every child, without ``.`` and ``..``."""
        raise err(errno.ENOTDIR)

    def prefetch_stats(self, names: list[str]) -> None:
        """A hint: the attributes of these entries will be asked for soon (a listing with
        attributes). File systems whose stat needs slow reads may start them now."""

    def create(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        """A new regular file (``mode`` holds permission bits only)."""
        raise err(errno.EPERM)

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        raise err(errno.EPERM)

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Inode:
        raise err(errno.EPERM)

    def mknod(self, name: str, mode: int, uid: int, gid: int, rdev: int = 0) -> Inode:
        """A new special file (``mode`` includes the type bits: FIFOs, sockets' names, device
        nodes numbered ``rdev``)."""
        raise err(errno.EPERM)

    def link(self, name: str, inode: Inode) -> None:
        raise err(errno.EPERM)

    def unlink(self, name: str) -> None:
        """Remove the entry ``name`` (a non-directory)."""
        raise err(errno.EPERM)

    def rmdir(self, name: str) -> None:
        """Remove the entry ``name`` (an empty directory)."""
        raise err(errno.EPERM)

    def rename(self, name: str, new_dir: Inode, new_name: str) -> None:
        """Move entry ``name`` to ``new_dir/new_name``, replacing what is there (already checked)."""
        raise err(errno.EPERM)
