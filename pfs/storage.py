"""The storage interface that protected files are read from and written to.

``pfs`` never touches host paths itself: it reads and writes nodes through any object with
``read_at``, ``write_at``, ``truncate``, ``fsync``, ``size`` and ``close`` (and a ``name`` used
in error messages). :class:`pal.HostFile` is the host-file implementation; :class:`MemoryStorage`
keeps the bytes in memory.

Optional methods, used when present: ``free_space()`` (bytes the storage can still take, or None
when unknown: growth past it fails at once with ENOSPC instead of filling the host), and the
faster paths ``readv_at``/``writev_at`` (scatter/gather of consecutive nodes), ``readinto_at``,
``prefetch`` and ``preallocate``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pal import HostFile, host_memory

__all__ = ["BorrowedStorage", "HostFile", "MemoryStorage", "Storage"]


@runtime_checkable
class Storage(Protocol):
    """Byte storage addressed by offset."""

    name: str

    def read_at(self, offset: int, size: int) -> bytes: ...

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None: ...

    def truncate(self, size: int) -> None: ...

    def fsync(self) -> None: ...

    def size(self) -> int: ...

    def close(self) -> None: ...


def readv_through(storage: object, offset: int, buffers: list[memoryview]) -> int:
    """Scatter-read ``buffers`` from ``offset`` of ``storage``: its own ``readv_at`` when it has
    one, else one ``read_at`` spread over the buffers; the number of bytes read."""
    readv = getattr(storage, "readv_at", None)
    if readv is not None:
        return readv(offset, buffers)
    data = storage.read_at(offset, sum(len(b) for b in buffers))  # type: ignore[attr-defined]
    done = 0
    for buf in buffers:
        chunk = data[done:done + len(buf)]
        buf[:len(chunk)] = chunk
        done += len(chunk)
    return len(data)


class MemoryStorage:
    """Storage in a ``bytearray`` (tests, in-memory file systems)."""

    def __init__(self, data: bytes | bytearray = b"", name: str = "<memory>", *, capacity: int | None = None):
        self.data = bytearray(data)
        self.name = name
        self.capacity = capacity  # most bytes it may hold (None: as much as host memory allows)

    def free_space(self) -> int | None:
        """Bytes it can still take: up to ``capacity``, and never more than the host's available
        memory (None when neither is known)."""
        room = None if self.capacity is None else max(0, self.capacity - len(self.data))
        memory = host_memory()
        if memory is not None:
            room = memory[1] if room is None else min(room, memory[1])
        return room

    def __repr__(self) -> str:
        return f"<MemoryStorage {self.name!r} {len(self.data)} bytes>"

    def read_at(self, offset: int, size: int) -> bytes:
        return bytes(self.data[offset:offset + size])

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        end = offset + len(data)
        if offset > len(self.data):
            self.data.extend(bytes(offset - len(self.data)))
        self.data[offset:end] = data

    def truncate(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data.extend(bytes(size - len(self.data)))

    def fsync(self) -> None:
        pass

    def size(self) -> int:
        return len(self.data)

    def close(self) -> None:
        pass


class BorrowedStorage:
    """Another storage, lent: ``close`` does nothing (its owner closes it), and with
    ``readonly`` every change is refused. The vectored calls go to the inner storage's own."""

    def __init__(self, inner: Storage, *, readonly: bool = False):
        self._inner = inner
        self.readonly = readonly
        self.name = inner.name

    def _refuse(self) -> None:
        from .errors import ReadOnlyError

        raise ReadOnlyError(f"{self.name}: storage is read-only here", path=self.name)

    def read_at(self, offset: int, size: int) -> bytes:
        return self._inner.read_at(offset, size)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if self.readonly:
            self._refuse()
        self._inner.write_at(offset, data)

    def readv_at(self, offset: int, buffers: list[memoryview]) -> int:
        return readv_through(self._inner, offset, buffers)

    def writev_at(self, offset: int, buffers: list[memoryview]) -> None:
        if self.readonly:
            self._refuse()
        writev = getattr(self._inner, "writev_at", None)
        if writev is not None:
            writev(offset, buffers)
        else:
            self._inner.write_at(offset, b"".join(buffers))

    def truncate(self, size: int) -> None:
        if self.readonly:
            self._refuse()
        self._inner.truncate(size)

    def fsync(self) -> None:
        if not self.readonly:
            self._inner.fsync()

    def size(self) -> int:
        return self._inner.size()

    def free_space(self) -> int | None:
        free = getattr(self._inner, "free_space", None)
        return None if free is None else free()

    def close(self) -> None:
        pass
