"""The storage interface that protected files are read from and written to.

``pfs`` never touches host paths itself: it reads and writes nodes through any object with
``read_at``, ``write_at``, ``truncate``, ``fsync``, ``size`` and ``close`` (and a ``name`` used
in error messages). :class:`pal.HostFile` is the host-file implementation; :class:`MemoryStorage`
keeps the bytes in memory.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pal import HostFile

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


class MemoryStorage:
    """Storage in a ``bytearray`` (tests, in-memory file systems)."""

    def __init__(self, data: bytes | bytearray = b"", name: str = "<memory>"):
        self.data = bytearray(data)
        self.name = name

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
    ``readonly`` every change is refused."""

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

    def truncate(self, size: int) -> None:
        if self.readonly:
            self._refuse()
        self._inner.truncate(size)

    def fsync(self) -> None:
        if not self.readonly:
            self._inner.fsync()

    def size(self) -> int:
        return self._inner.size()

    def close(self) -> None:
        pass
