"""Open file descriptions: what ``open()`` creates and file descriptors point to.

Descriptors made by ``dup``/``fork`` share one :class:`OpenFile` (offset and status flags
included), as on Linux. The description holds the inode, so an unlinked file stays usable
through it.
"""

from __future__ import annotations

import errno
import os
import stat as st
import threading
from typing import TYPE_CHECKING

from .node import Handle, Inode, Stat, err

if TYPE_CHECKING:
    from .vfs import Location

# status flags that F_SETFL may change (Linux: O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME, O_NONBLOCK)
SETFL_MASK = os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_ASYNC", 0o20000) | getattr(os, "O_DIRECT", 0) | \
    getattr(os, "O_NOATIME", 0)
O_PATH = getattr(os, "O_PATH", 0o10000000)
O_ACCMODE = 3

DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12


def dirent_type(mode: int) -> int:
    """The ``d_type`` of a directory entry for ``mode``."""
    fmt = st.S_IFMT(mode)
    return {st.S_IFIFO: DT_FIFO, st.S_IFCHR: DT_CHR, st.S_IFDIR: DT_DIR, st.S_IFBLK: DT_BLK,
            st.S_IFREG: DT_REG, st.S_IFLNK: DT_LNK, st.S_IFSOCK: DT_SOCK}.get(fmt, DT_UNKNOWN)


def kill_setid(inode: Inode) -> None:
    """Clear the set-id bits a write, truncate or chown removes: S_ISUID, and S_ISGID when the
    file is group-executable (Linux's ``should_remove_suid``)."""
    mode = inode.mode
    kill = mode & st.S_ISUID
    if mode & (st.S_ISGID | st.S_IXGRP) == st.S_ISGID | st.S_IXGRP:
        kill |= st.S_ISGID
    if kill:
        inode.chmod(mode & 0o7777 & ~kill)


class OpenFile:
    """One open file description."""

    def __init__(self, location: Location, flags: int, handle: Handle | None = None, *, pipe=None,
                 pipe_end: str | None = None):
        self.location = location
        self.inode: Inode = location.inode
        # creation flags act once, at open; Linux doesn't keep them in the description
        self.flags = flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC)
        self.handle = handle
        self.pipe = pipe
        self.pipe_end = pipe_end  # "r" or "w" for pipes and FIFOs
        self.offset = 0
        self.lock = threading.RLock()
        self.refs = 1
        self.closed = False
        self._dir_snapshot: list[tuple[str, int, int]] | None = None
        # opened by a user without CAP_FSETID (not root): its writes clear the set-id bits (the
        # opener's identity stands for the writer's, which the description doesn't know)
        self.kills_setid = False
        self.inode.open_count += 1

    # ------------------------------------------------------------------ bookkeeping

    @property
    def path(self) -> str:
        """The path this description was opened with (what /proc/PID/fd/N shows)."""
        return self.location.path

    @property
    def readable(self) -> bool:
        return not self.flags & O_PATH and (self.flags & O_ACCMODE) in (os.O_RDONLY, os.O_RDWR)

    @property
    def writable(self) -> bool:
        return not self.flags & O_PATH and (self.flags & O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & os.O_NONBLOCK)

    def incref(self) -> OpenFile:
        with self.lock:
            self.refs += 1
        return self

    def decref(self) -> None:
        """Drop one descriptor's reference; the last one closes the description."""
        with self.lock:
            self.refs -= 1
            if self.refs > 0 or self.closed:
                return
            self.closed = True
        self.inode.open_count -= 1
        if self.pipe is not None:
            if "r" in self.pipe_end:
                self.pipe.close_reader()
            if "w" in self.pipe_end:
                self.pipe.close_writer()
        if self.handle is not None:
            self.handle.close()

    # ------------------------------------------------------------------ I/O

    def _check_io(self, want_write: bool) -> None:
        if self.flags & O_PATH:
            raise err(errno.EBADF)
        if (want_write and not self.writable) or (not want_write and not self.readable):
            raise err(errno.EBADF)
        if self.inode.is_dir:
            raise err(errno.EISDIR)

    def read(self, size: int) -> bytes:
        """``read(2)``: at the current offset, advancing it."""
        self._check_io(False)
        if size < 0:
            raise err(errno.EINVAL)
        if self.pipe is not None:
            return self.pipe.read(size, nonblock=self.nonblocking)
        assert self.handle is not None
        if not getattr(self.handle, "seekable", True):
            return self.handle.read(0, size)
        with self.lock:
            data = self.handle.read(self.offset, size)
            self.offset += len(data)
        self._accessed()
        return data

    def pread(self, size: int, offset: int) -> bytes:
        self._check_io(False)
        if offset < 0 or size < 0:
            raise err(errno.EINVAL)
        if self.pipe is not None:
            raise err(errno.ESPIPE)
        assert self.handle is not None
        data = self.handle.read(offset, size)
        self._accessed()
        return data

    def preadinto(self, buf: memoryview, offset: int) -> int:
        """``pread(2)`` into a caller's buffer (the FUSE bridge reads into libfuse's)."""
        self._check_io(False)
        if offset < 0:
            raise err(errno.EINVAL)
        if self.pipe is not None:
            raise err(errno.ESPIPE)
        assert self.handle is not None
        n = self.handle.readinto(offset, buf)
        self._accessed()
        return n

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """``write(2)``: at the current offset (at the end with O_APPEND, atomically)."""
        self._check_io(True)
        if self.pipe is not None:
            return self.pipe.write(data, nonblock=self.nonblocking)
        assert self.handle is not None
        if not getattr(self.handle, "seekable", True):
            return self.handle.write(0, data)
        if not len(data):
            return 0  # before any O_APPEND positioning, as Linux
        self._kill_setid()
        with self.inode.lock, self.lock:
            if self.flags & os.O_APPEND:
                self.offset = self.handle.size()
            n = self.handle.write(self.offset, data)
            self.offset += n
        self._modified(n)
        return n

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> int:
        self._check_io(True)
        if offset < 0:
            raise err(errno.EINVAL)
        if self.pipe is not None:
            raise err(errno.ESPIPE)
        assert self.handle is not None
        if len(data):
            self._kill_setid()
        with self.inode.lock:
            # Linux quirk kept: with O_APPEND, pwrite appends whatever the offset
            where = self.handle.size() if self.flags & os.O_APPEND else offset
            n = self.handle.write(where, data)
        self._modified(n)
        return n

    def lseek(self, offset: int, whence: int) -> int:
        if self.flags & O_PATH:
            raise err(errno.EBADF)
        if self.pipe is not None:
            raise err(errno.ESPIPE)
        if self.handle is not None and not getattr(self.handle, "seekable", True):
            return 0
        with self.lock:
            if whence == os.SEEK_SET:
                new = offset
            elif whence == os.SEEK_CUR:
                new = self.offset + offset
            elif whence == os.SEEK_END:
                new = self.size() + offset
            elif whence in (getattr(os, "SEEK_DATA", 3), getattr(os, "SEEK_HOLE", 4)):
                size = self.size()
                if offset < 0 or offset >= size:
                    raise err(errno.ENXIO)
                new = offset if whence == getattr(os, "SEEK_DATA", 3) else size
            else:
                raise err(errno.EINVAL)
            if new < 0:
                raise err(errno.EINVAL)
            self.offset = new
            if self.inode.is_dir and new == 0:
                self._dir_snapshot = None
            return new

    def size(self) -> int:
        if self.handle is not None:
            return self.handle.size()
        return self.inode.stat().st_size

    def truncate(self, size: int) -> None:
        """``ftruncate(2)``."""
        if self.flags & O_PATH:
            raise err(errno.EBADF)
        if not self.writable or self.pipe is not None:
            raise err(errno.EINVAL)  # Linux: not open for writing, a pipe or a folder
        if size < 0:
            raise err(errno.EINVAL)
        assert self.handle is not None
        self._kill_setid()
        with self.inode.lock:
            self.handle.truncate(size)
        self.inode.touch(mtime=True, ctime=True)

    def _kill_setid(self) -> None:
        """Before a write or truncate by an unprivileged opener: clear S_ISUID, and S_ISGID when
        group-executable (without it the bit means mandatory locking), as Linux does."""
        if self.kills_setid and self.inode.is_reg:
            kill_setid(self.inode)

    def fsync(self) -> None:
        if self.flags & O_PATH:
            raise err(errno.EBADF)
        if self.pipe is not None:
            raise err(errno.EINVAL)
        if self.handle is not None:
            self.handle.fsync()

    def stat(self) -> Stat:
        return self.location.stat()

    def _accessed(self) -> None:
        inode = self.inode
        if inode.atime_ns <= max(inode.mtime_ns, inode.ctime_ns):  # relatime
            inode.touch(atime=True)

    def _modified(self, n: int) -> None:
        if n:
            self.inode.touch(mtime=True, ctime=True)

    # ------------------------------------------------------------------ directories

    def getdents(self, listing) -> list[tuple[str, int, int, int]]:
        """Entries from the current position on: ``(name, ino, d_type, next offset)``.

        ``listing`` produces the full ``[(name, ino, d_type), ...]`` (with ``.`` and ``..``); it
        is taken once per pass over the directory, as a snapshot.
        """
        if self.flags & O_PATH:
            raise err(errno.EBADF)
        if not self.inode.is_dir:
            raise err(errno.ENOTDIR)
        with self.lock:
            if self._dir_snapshot is None or self.offset == 0:
                self._dir_snapshot = listing()
            entries = self._dir_snapshot[self.offset:]
            out = [(name, ino, dtype, self.offset + i + 1) for i, (name, ino, dtype) in enumerate(entries)]
            self.offset += len(out)
        self._accessed()
        return out
