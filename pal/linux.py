"""The Linux host platform: host files, randomness, time, and the host facts /proc reports."""

from __future__ import annotations

import contextlib
import os
import time


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the kernel's CSPRNG."""
    return os.urandom(n)


def time_ns() -> int:
    """Wall-clock time in nanoseconds."""
    return time.time_ns()


def host_read_text(path: str) -> str:
    """The whole text of a small host file (``/proc/meminfo`` and the like); ``OSError`` as the host gives it."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def cpu_count() -> int:
    """Online CPUs of the host (at least 1)."""
    return os.cpu_count() or 1


def clock_ticks() -> int:
    """Clock ticks per second (``sysconf(_SC_CLK_TCK)``, the unit of times in ``/proc/PID/stat``)."""
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def page_size() -> int:
    """The host's memory page size in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4096


def uname() -> os.uname_result:
    """The host's ``uname(2)``: sysname, nodename, release, version, machine."""
    return os.uname()


class HostDevice:
    """A host character device (``/dev/tty``) opened for stream I/O: no offsets, reads may be short."""

    def __init__(self, path: str, flags: int):
        self.name = path
        self.fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOCTTY)

    def read(self, size: int) -> bytes:
        return os.read(self.fd, size)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return os.write(self.fd, data)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class HostFile:
    """A host file addressed by offset: the storage interface of ``pfs`` over a real file.

    ``read_at``/``write_at`` use ``pread``/``pwrite`` so that several users (threads, forked
    processes) can share one descriptor without a shared file position.
    """

    def __init__(self, path: str | os.PathLike, *, writable: bool = False, create: bool = False,
                 exclusive: bool = False, mode: int = 0o644):
        self.name = os.fspath(path)
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT
        if exclusive:
            flags |= os.O_EXCL
        self.fd = os.open(self.name, flags, mode)
        self.writable = writable

    @classmethod
    def from_fd(cls, fd: int, name: str, *, writable: bool) -> HostFile:
        """Wrap an already open descriptor (owned by the new object from now on)."""
        obj = cls.__new__(cls)
        obj.name = name
        obj.fd = fd
        obj.writable = writable
        return obj

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer only at end of file)."""
        return host_pread(self.fd, size, offset)

    def readinto_at(self, offset: int, buf: memoryview) -> int:
        """Fill ``buf`` from ``offset``; return the number of bytes read (short only at EOF)."""
        return host_preadinto(self.fd, buf, offset)

    def readv_at(self, offset: int, buffers: list[memoryview]) -> int:
        """Scatter-read into ``buffers`` from ``offset``; return the bytes read (short only at EOF)."""
        total = os.preadv(self.fd, buffers, offset)
        want = sum(len(b) for b in buffers)
        if total < want and total > 0:
            # a short read before EOF: finish buffer by buffer
            done = 0
            for buf in buffers:
                if done + len(buf) <= total:
                    done += len(buf)
                    continue
                got = self.readinto_at(offset + done, buf)
                done += got
                if got < len(buf):
                    break
            return done
        return total

    def writev_at(self, offset: int, buffers: list[memoryview]) -> None:
        """Gather-write all of ``buffers`` at ``offset``."""
        total = os.pwritev(self.fd, buffers, offset)
        want = sum(len(b) for b in buffers)
        if total < want:
            done = 0
            for buf in buffers:
                if done + len(buf) <= total:
                    done += len(buf)
                    continue
                skip = max(0, total - done)
                self.write_at(offset + done + skip, buf[skip:])
                done += len(buf)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at ``offset``."""
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view = view[n:]
            offset += n

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def preallocate(self, size: int) -> None:
        """Reserve disk blocks for ``size`` bytes (makes the file that long); a hint only:
        file systems that can't do it are left as they are."""
        try:
            os.posix_fallocate(self.fd, 0, size)
        except OSError:
            os.ftruncate(self.fd, size)

    def prefetch(self, offset: int, length: int) -> None:
        """Ask the kernel to start reading ``length`` bytes at ``offset`` into the page cache
        (``POSIX_FADV_WILLNEED``; returns without waiting). A hint: errors are ignored."""
        host_prefetch(self.fd, offset, length)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def free_space(self) -> int | None:
        """Bytes the file system holding this file can still take (``fstatvfs``: blocks free
        to unprivileged users), or None when the host can't say."""
        return host_free_space(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> HostFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------- host file-system calls
# Thin wrappers over ``os``: the host-backed file systems of the VFS (chroot, encrypted) make
# every host call through these. Errors propagate as the host's ``OSError`` (errno kept).


def host_lstat(path: str) -> os.stat_result:
    """``lstat(2)``."""
    return os.lstat(path)


def host_stat(path: str) -> os.stat_result:
    """``stat(2)`` (follows symlinks)."""
    return os.stat(path)


def host_fstat(fd: int) -> os.stat_result:
    """``fstat(2)``."""
    return os.fstat(fd)


def host_listdir(path: str) -> list[str]:
    """Names in the host folder ``path`` (without ``.`` and ``..``)."""
    return os.listdir(path)


def host_open(path: str, flags: int, mode: int = 0o777) -> int:
    """``open(2)``; the descriptor is always close-on-exec."""
    return os.open(path, flags | os.O_CLOEXEC, mode)


def host_close(fd: int) -> None:
    os.close(fd)


def host_pread(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset`` (fewer only at end of file)."""
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        size -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def host_preadinto(fd: int, buf: memoryview, offset: int) -> int:
    """Fill ``buf`` from ``offset``; return the number of bytes read (short only at end of file)."""
    done = 0
    total = len(buf)
    while done < total:
        n = os.preadv(fd, [buf[done:]], offset + done)
        if n == 0:
            break
        done += n
    return done


def host_prefetch(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start reading a range into the page cache (``POSIX_FADV_WILLNEED``);
    returns without waiting. A hint: errors are ignored."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)


def host_pwrite(fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
    """Write all of ``data`` at ``offset``; return its length."""
    view = memoryview(data).cast("B")
    total = len(view)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
    return total


def host_ftruncate(fd: int, size: int) -> None:
    os.ftruncate(fd, size)


def host_truncate(path: str, size: int) -> None:
    os.truncate(path, size)


def host_fsync(fd: int) -> None:
    os.fsync(fd)


def host_mkdir(path: str, mode: int) -> None:
    os.mkdir(path, mode)


def host_rmdir(path: str) -> None:
    os.rmdir(path)


def host_unlink(path: str) -> None:
    os.unlink(path)


def host_rename(src: str, dst: str) -> None:
    """``rename(2)``: replaces ``dst`` atomically."""
    os.rename(src, dst)


def host_link(src: str, dst: str) -> None:
    """``link(2)`` (a symlink ``src`` is linked itself, not followed)."""
    os.link(src, dst, follow_symlinks=False)


def host_symlink(target: str, path: str) -> None:
    os.symlink(target, path)


def host_readlink(path: str) -> str:
    return os.readlink(path)


def host_mkfifo(path: str, mode: int) -> None:
    os.mkfifo(path, mode)


def host_open_dir_at(dir_fd: int | None, path: str) -> int:
    """An ``O_PATH`` descriptor of the folder ``path`` (relative to ``dir_fd`` when given): how a
    host path longer than PATH_MAX is reached, a piece at a time."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)


def host_mknod(path: str, mode: int, rdev: int = 0) -> None:
    """``mknod(2)`` of a FIFO, a socket or a device node numbered ``rdev`` (``mode`` with its type
    bits)."""
    os.mknod(path, mode, rdev)


def host_chmod(target: str | int, mode: int) -> None:
    """``chmod(2)`` of a path (following symlinks: Linux can't chmod a symlink), or ``fchmod(2)``
    of a descriptor."""
    os.chmod(target, mode)


def host_lchown(target: str | int, uid: int, gid: int) -> None:
    """``lchown(2)`` of a path, or ``fchown(2)`` of a descriptor; -1 leaves an id as it is."""
    if isinstance(target, int):
        os.chown(target, uid, gid)
    else:
        os.chown(target, uid, gid, follow_symlinks=False)


def host_utime(target: str | int, atime_ns: int, mtime_ns: int) -> None:
    """Set both timestamps of a path (not following a symlink) or of a descriptor."""
    if isinstance(target, int):
        os.utime(target, ns=(atime_ns, mtime_ns))
    else:
        os.utime(target, ns=(atime_ns, mtime_ns), follow_symlinks=False)


def host_statvfs(path: str) -> os.statvfs_result:
    return os.statvfs(path)


def host_free_space(target: str | int) -> int | None:
    """Free bytes (``f_bavail * f_frsize``) of the file system holding a path or a descriptor,
    or None when the host can't say (no ``statvfs`` there, or it reports no blocks at all)."""
    try:
        s = os.fstatvfs(target) if isinstance(target, int) else os.statvfs(target)
    except (OSError, ValueError):
        return None
    if s.f_blocks == 0:  # pseudo file systems report nothing: unknown, not full
        return None
    return s.f_bavail * s.f_frsize


def host_memory() -> tuple[int, int] | None:
    """(total, available) bytes of host memory (``MemTotal``, ``MemAvailable`` of /proc/meminfo),
    or None when the host can't say."""
    try:
        text = host_read_text("/proc/meminfo")
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024  # the unit is kB
    if "MemTotal" not in fields:
        return None
    return fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", fields["MemTotal"]))


def host_geteuid() -> int:
    """The host process's effective uid."""
    return os.geteuid()
