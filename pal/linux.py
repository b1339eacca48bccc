"""The Linux host platform: host files, randomness and time."""

from __future__ import annotations

import os
import time


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the kernel's CSPRNG."""
    return os.urandom(n)


def time_ns() -> int:
    """Wall-clock time in nanoseconds."""
    return time.time_ns()


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
        chunks = []
        while size > 0:
            chunk = os.pread(self.fd, size, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def readinto_at(self, offset: int, buf: memoryview) -> int:
        """Fill ``buf`` from ``offset``; return the number of bytes read (short only at EOF)."""
        done = 0
        total = len(buf)
        while done < total:
            n = os.preadv(self.fd, [buf[done:]], offset + done)
            if n == 0:
                break
            done += n
        return done

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

    def fsync(self) -> None:
        os.fsync(self.fd)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> HostFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
