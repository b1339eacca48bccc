"""tmpfs: an in-memory file system with full semantics (files, folders, symlinks, hard links,
FIFOs, sockets' names), shared by every process of one LibOS.

**Size limit.** File contents are real memory (no sparse files), so a tmpfs holds at most
``size_limit`` bytes of file data: by default half of the host's memory, as Linux's tmpfs. A
growth is refused before anything changes: EFBIG for a file larger than the whole limit, ENOSPC
when the other files leave no room, ENOMEM when the host hasn't the memory available right now
(or the allocation fails). ``statfs`` reports the limit and what is left of it.
"""

from __future__ import annotations

import errno
import stat as st
import threading
import weakref
from collections.abc import Callable, Iterable

import pal

from .node import BLOCK_SIZE, FileSystem, Handle, Inode, err

FALLBACK_SIZE_LIMIT = 4 << 30  # when the host's memory size is unknown
# growths from this size on are checked against the host's available memory first (smaller ones
# just try: a failed allocation is ENOMEM too)
CHECK_MEMORY_FROM = 16 << 20


def default_size_limit() -> int:
    """Half of the host's memory (Linux tmpfs's default), or 4 GiB when it is unknown."""
    memory = pal.host_memory()
    return memory[0] // 2 if memory is not None else FALLBACK_SIZE_LIMIT


class MemoryQuota:
    """The bytes of file data one tmpfs may hold, and how many it holds."""

    def __init__(self, limit: int | None = None):
        self.limit = limit if limit is not None else default_size_limit()
        self.used = 0
        self._lock = threading.Lock()

    def grow(self, old: int, new: int) -> None:
        """Account a file growing from ``old`` to ``new`` bytes, or raise (nothing accounted)."""
        more = new - old
        if more <= 0:
            return
        if new > self.limit:
            raise OSError(errno.EFBIG, f"{new} bytes is past the tmpfs size limit ({self.limit} bytes)")
        with self._lock:
            if self.used + more > self.limit:
                raise OSError(errno.ENOSPC, f"no space left on the tmpfs ({self.limit - self.used} of "
                                            f"{self.limit} bytes free, {more} needed)")
            memory = pal.host_memory() if more >= CHECK_MEMORY_FROM else None
            if memory is not None and more > memory[1]:
                raise OSError(errno.ENOMEM, f"the host has {memory[1]} bytes of memory available, "
                                            f"{more} needed")
            self.used += more

    def release(self, n: int) -> None:
        with self._lock:
            self.used -= n


_shared_quota: MemoryQuota | None = None


def _quota_of(fs: FileSystem) -> MemoryQuota:
    """The quota of ``fs`` (a TmpFs), or one shared by tmpfs folders inside other file systems."""
    quota = getattr(fs, "quota", None)
    if isinstance(quota, MemoryQuota):
        return quota
    global _shared_quota
    if _shared_quota is None:
        _shared_quota = MemoryQuota()
    return _shared_quota


class TmpFs(FileSystem):
    """An in-memory file system of at most ``size_limit`` bytes of file data (default: half
    of the host's memory)."""

    type_name = "tmpfs"

    def __init__(self, size_limit: int | None = None) -> None:
        super().__init__()
        self.quota = MemoryQuota(size_limit)
        self._root = TmpDir(self, st.S_IFDIR | 0o1777)

    @property
    def size_limit(self) -> int:
        return self.quota.limit

    def root(self) -> Inode:
        return self._root

    def statfs(self) -> dict[str, int]:
        info = super().statfs()
        blocks = self.quota.limit // BLOCK_SIZE
        free = max(0, self.quota.limit - self.quota.used) // BLOCK_SIZE
        info.update(f_blocks=blocks, f_bfree=free, f_bavail=free, f_files=1 << 20, f_ffree=1 << 20)
        return info


def _release(quota: MemoryQuota, held: list[int]) -> None:
    quota.release(held[0])
    held[0] = 0


class TmpFile(Inode):
    """A regular file held in a ``bytearray`` (its length counted in its tmpfs's quota)."""

    def __init__(self, fs: FileSystem, mode: int, uid: int = 0, gid: int = 0):
        super().__init__(fs, mode, uid=uid, gid=gid)
        self.data = bytearray()
        self._quota = _quota_of(fs)
        self._held = [0]  # bytes accounted in the quota; given back when the file is gone
        weakref.finalize(self, _release, self._quota, self._held)

    def size(self) -> int:
        return len(self.data)

    def open(self, flags: int) -> Handle:
        return TmpHandle(self)

    def grow(self, end: int, fill: Callable[[], None]) -> None:
        """Grow the data to ``end`` bytes by calling ``fill`` (which extends ``self.data``), within
        the quota; a growth that is refused or can't be allocated leaves the file as it was.
        Call with the lock held."""
        old = len(self.data)
        self._quota.grow(old, end)
        try:
            fill()
        except MemoryError:
            del self.data[old:]
            self._quota.release(end - old)
            raise OSError(errno.ENOMEM, f"can't allocate {end - old} bytes of memory") from None
        except BaseException:
            del self.data[old:]
            self._quota.release(end - old)
            raise
        self._held[0] += end - old

    def resize(self, size: int) -> None:
        """Make the data ``size`` bytes long (zeros when it grows); see :meth:`grow`."""
        old = len(self.data)
        if size > old:
            self.grow(size, lambda: self.data.extend(bytes(size - old)))
        elif size < old:
            del self.data[size:]
            self._quota.release(old - size)
            self._held[0] -= old - size

    def truncate(self, size: int) -> None:
        with self.lock:
            self.resize(size)
            self.touch(mtime=True, ctime=True)


class TmpHandle(Handle):
    def __init__(self, inode: TmpFile):
        self.inode = inode

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.inode.data[offset:offset + size])

    def readinto(self, offset: int, buf: memoryview) -> int:
        """One copy, straight from the file's bytes (``read`` makes two, and allocates them:
        a 1 MiB FUSE read took 0.96 ms that way, 8x eight 128 KiB ones)."""
        inode = self.inode
        with inode.lock:  # a write may resize the bytes: not while they are exported
            n = max(0, min(len(buf), len(inode.data) - offset))
            if n:
                with memoryview(inode.data) as data:
                    buf[:n] = data[offset:offset + n]
        return n

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        if not len(data):
            return 0  # an empty write never extends the file
        inode = self.inode
        buf = inode.data
        end = offset + len(data)
        with inode.lock:
            if end <= len(buf):
                buf[offset:end] = data
                return len(data)

            def fill() -> None:
                if offset > len(buf):
                    buf.extend(bytes(offset - len(buf)))
                buf[offset:end] = data

            inode.grow(end, fill)
        return len(data)

    def truncate(self, size: int) -> None:
        self.inode.truncate(size)

    def size(self) -> int:
        return len(self.inode.data)


class TmpSymlink(Inode):
    def __init__(self, fs: FileSystem, target: str, uid: int = 0, gid: int = 0):
        super().__init__(fs, st.S_IFLNK | 0o777, uid=uid, gid=gid)
        self.target = target

    def size(self) -> int:
        return len(self.target.encode())

    def readlink(self) -> str:
        return self.target


class TmpSpecial(Inode):
    """A FIFO, a socket's name or a device node (its ``rdev`` kept, never opened): the VFS (and,
    through FUSE, the kernel) gives it its behaviour."""

    def blocks(self, size: int) -> int:
        return 0


class TmpDir(Inode):
    """A directory: a dict of names to inodes (insertion order = readdir order)."""

    def __init__(self, fs: FileSystem, mode: int, uid: int = 0, gid: int = 0):
        super().__init__(fs, mode, uid=uid, gid=gid)
        self.children: dict[str, Inode] = {}

    def size(self) -> int:
        return BLOCK_DIR_SIZE

    def lookup(self, name: str) -> Inode | None:
        return self.children.get(name)

    def entries(self) -> Iterable[tuple[str, Inode]]:
        return list(self.children.items())

    def _add(self, name: str, inode: Inode) -> Inode:
        if name in self.children:
            raise err(errno.EEXIST)
        self.children[name] = inode
        self.touch(mtime=True, ctime=True)
        return inode

    def create(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        return self._add(name, TmpFile(self.fs, st.S_IFREG | (mode & 0o7777), uid, gid))

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        child = self._add(name, TmpDir(self.fs, st.S_IFDIR | (mode & 0o7777), uid, gid))
        self.nlink += 1
        return child

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Inode:
        return self._add(name, TmpSymlink(self.fs, target, uid, gid))

    def mknod(self, name: str, mode: int, uid: int, gid: int, rdev: int = 0) -> Inode:
        return self._add(name, TmpSpecial(self.fs, mode, uid=uid, gid=gid, rdev=rdev))

    def link(self, name: str, inode: Inode) -> None:
        self._add(name, inode)
        inode.nlink += 1
        inode.touch(ctime=True)

    def unlink(self, name: str) -> None:
        inode = self.children.pop(name)
        inode.nlink -= 1
        inode.touch(ctime=True)
        self.touch(mtime=True, ctime=True)

    def rmdir(self, name: str) -> None:
        inode = self.children.pop(name)
        inode.nlink = 0
        self.nlink -= 1
        self.touch(mtime=True, ctime=True)

    def rename(self, name: str, new_dir: Inode, new_name: str) -> None:
        if not isinstance(new_dir, TmpDir):  # a tmpfs directory inside another file system (/dev/shm)
            raise err(errno.EXDEV)
        inode = self.children[name]
        old = new_dir.children.get(new_name)
        if old is inode:
            return
        if old is not None:
            if old.is_dir:
                new_dir.rmdir(new_name)
            else:
                new_dir.unlink(new_name)
        del self.children[name]
        new_dir.children[new_name] = inode
        if inode.is_dir and new_dir is not self:
            self.nlink -= 1
            new_dir.nlink += 1
        inode.touch(ctime=True)
        self.touch(mtime=True, ctime=True)
        new_dir.touch(mtime=True, ctime=True)


BLOCK_DIR_SIZE = 4096
