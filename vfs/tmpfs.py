"""tmpfs: an in-memory file system with full semantics (files, folders, symlinks, hard links,
FIFOs), shared by every process of one LibOS."""

from __future__ import annotations

import errno
import stat as st
from collections.abc import Iterable

from .node import FileSystem, Handle, Inode, err


class TmpFs(FileSystem):
    """An in-memory file system."""

    type_name = "tmpfs"

    def __init__(self) -> None:
        super().__init__()
        self._root = TmpDir(self, st.S_IFDIR | 0o1777)

    def root(self) -> Inode:
        return self._root

    def statfs(self) -> dict[str, int]:
        info = super().statfs()
        info.update(f_blocks=1 << 20, f_bfree=1 << 20, f_bavail=1 << 20, f_files=1 << 20, f_ffree=1 << 20)
        return info


class TmpFile(Inode):
    """A regular file held in a ``bytearray``."""

    def __init__(self, fs: FileSystem, mode: int, uid: int = 0, gid: int = 0):
        super().__init__(fs, mode, uid=uid, gid=gid)
        self.data = bytearray()

    def size(self) -> int:
        return len(self.data)

    def open(self, flags: int) -> Handle:
        return TmpHandle(self)

    def truncate(self, size: int) -> None:
        with self.lock:
            if size < len(self.data):
                del self.data[size:]
            else:
                self.data.extend(bytes(size - len(self.data)))
            self.touch(mtime=True, ctime=True)


class TmpHandle(Handle):
    def __init__(self, inode: TmpFile):
        self.inode = inode

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.inode.data[offset:offset + size])

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        if not len(data):
            return 0  # an empty write never extends the file
        buf = self.inode.data
        with self.inode.lock:
            if offset > len(buf):
                buf.extend(bytes(offset - len(buf)))
            buf[offset:offset + len(data)] = data
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
    """A FIFO (or other special file): the VFS gives it its behaviour."""

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

    def mknod(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        return self._add(name, TmpSpecial(self.fs, mode, uid=uid, gid=gid))

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
