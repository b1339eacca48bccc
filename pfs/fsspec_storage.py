"""Storages (see :mod:`pfs.storage`) over fsspec file objects, for protected files kept on any fsspec target.

* :class:`FileObjectStorage`: reads ranges of an open, seekable binary file object (an fsspec
  ``AbstractBufferedFile`` fetches them from an object store by range, as they are needed).
* :class:`SpillStorage`: the bytes of a file being written for an object store, which can't be
  written at random: in memory up to ``threshold`` bytes, then in an anonymous temporary file.
  Protected files only ever hand their storage encrypted nodes, so what spills is ciphertext.
  :meth:`SpillStorage.copy_to` writes it out whole, :meth:`SpillStorage.load_from` reads an
  existing file in (to append to it or rebind it).

Neither imports fsspec: they only call ``seek``/``read``/``write`` on the objects they are given.
"""

from __future__ import annotations

import errno as _errno
import os
import tempfile
from typing import BinaryIO

from .errors import ReadOnlyError

__all__ = ["COPY_CHUNK", "DEFAULT_SPILL_THRESHOLD", "FileObjectStorage", "SpillStorage"]

DEFAULT_SPILL_THRESHOLD = 32 << 20  # bytes of ciphertext kept in memory before spilling to disk
COPY_CHUNK = 4 << 20


class FileObjectStorage:
    """Read-only storage over a seekable binary file object of ``size`` bytes (closed with it)."""

    def __init__(self, fileobj: BinaryIO, name: str, size: int | None = None):
        self._f = fileobj
        self.name = name
        if size is None:
            size = fileobj.seek(0, os.SEEK_END)
        self._size = size

    def __repr__(self) -> str:
        return f"<FileObjectStorage {self.name!r} {self._size} bytes>"

    def read_at(self, offset: int, size: int) -> bytes:
        if offset >= self._size or size <= 0:
            return b""
        self._f.seek(offset)
        return self._f.read(min(size, self._size - offset))

    def _refuse(self) -> None:
        raise ReadOnlyError(f"{self.name}: opened for reading only", path=self.name)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._refuse()

    def truncate(self, size: int) -> None:
        self._refuse()

    def fsync(self) -> None:
        pass

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        self._f.close()


class SpillStorage:
    """Growable storage in memory up to ``threshold`` bytes, then in a temporary file in ``folder``
    (created 0600 and unlinked at once: nothing is left behind, whatever happens)."""

    def __init__(self, name: str, *, threshold: int = DEFAULT_SPILL_THRESHOLD, folder: str | None = None):
        self.name = name
        self.threshold = threshold
        self._folder = folder
        self._mem: bytearray | None = bytearray()
        self._file: BinaryIO | None = None
        self._size = 0

    def __repr__(self) -> str:
        where = "memory" if self._file is None else "spilled"
        return f"<SpillStorage {self.name!r} {self._size} bytes {where}>"

    @property
    def spilled(self) -> bool:
        """Whether the bytes moved to the temporary file."""
        return self._file is not None

    def _spill(self) -> None:
        f = tempfile.TemporaryFile(dir=self._folder, prefix="pfs-spill-")  # noqa: SIM115 (0600, unlinked; kept open)
        try:
            f.write(self._mem or b"")
        except OSError as exc:
            f.close()
            raise _os_error(exc, self.name) from None
        self._file = f
        self._mem = None

    def read_at(self, offset: int, size: int) -> bytes:
        if self._mem is not None:
            return bytes(self._mem[offset:offset + size])
        assert self._file is not None
        return os.pread(self._file.fileno(), size, offset)

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        end = offset + len(data)
        if self._mem is not None and end > self.threshold:
            self._spill()
        if self._mem is not None:
            if offset > len(self._mem):
                self._mem.extend(bytes(offset - len(self._mem)))
            self._mem[offset:end] = data
        else:
            assert self._file is not None
            view = memoryview(data)
            pos = offset
            try:
                while view:
                    n = os.pwrite(self._file.fileno(), view, pos)
                    view, pos = view[n:], pos + n
            except OSError as exc:
                raise _os_error(exc, self.name) from None
        self._size = max(self._size, end)

    def truncate(self, size: int) -> None:
        if self._mem is not None and size > self.threshold:
            self._spill()
        if self._mem is not None:
            if size < len(self._mem):
                del self._mem[size:]
            else:
                self._mem.extend(bytes(size - len(self._mem)))
        else:
            assert self._file is not None
            os.ftruncate(self._file.fileno(), size)
        self._size = size

    def fsync(self) -> None:
        pass  # the bytes only count once copy_to has written them out

    def size(self) -> int:
        return self._size

    def load_from(self, fileobj: BinaryIO, *, chunk: int = COPY_CHUNK) -> None:
        """Append everything ``fileobj`` still holds (ciphertext of an existing file)."""
        while True:
            data = fileobj.read(chunk)
            if not data:
                return
            self.write_at(self._size, data)

    def copy_to(self, fileobj: BinaryIO, *, chunk: int = COPY_CHUNK) -> None:
        """Write all the bytes to ``fileobj``, ``chunk`` bytes at a time."""
        for offset in range(0, self._size, chunk):
            fileobj.write(self.read_at(offset, min(chunk, self._size - offset)))

    def close(self) -> None:
        """Drop the bytes (the temporary file goes with them)."""
        self._mem = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None
            self._mem = bytearray()
        self._size = 0


def _os_error(exc: OSError, name: str) -> OSError:
    from .errors import NoSpaceError, PfsError

    if exc.errno == _errno.ENOSPC:
        return NoSpaceError(f"{name}: no space left for the temporary spill file", path=name)
    return PfsError(f"{name}: temporary spill file: {exc.strerror or exc}", path=name, errno=exc.errno)
