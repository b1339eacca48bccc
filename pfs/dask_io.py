"""Storage adapters and atomic outputs for the Dask jobs of :mod:`pfs.dask` (worker side).

Inputs on a local file system are :class:`pal.HostFile`; elsewhere an fsspec file object read
by range (:class:`FsspecReader`). Outputs never appear half-written at their final name: on a
local file system they are written into a temporary file next to the destination and renamed
at success; on other stores (object stores) encrypted output is made in an unnamed local
temporary file (ciphertext only) and then written as one object, and decrypted output is made
in memory (plaintext never reaches a worker's disk) and written as one object.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

from pal import HostFile

TMP_TAG = ".pfs-dask-"  # temporary outputs: .<name>.pfs-dask-<session>-<random>
COPY_CHUNK = 8 << 20


T = TypeVar("T")

def is_local(fs: Any) -> bool:
    """Whether the fsspec file system ``fs`` is the local one (true random writes, renames)."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


class FsspecReader:
    """A read-only storage (``read_at``, ``readinto_at``, ``readv_at``) over an fsspec file."""

    def __init__(self, fs: Any, path: str):
        self.name = path
        self._file = fs.open(path, "rb")
        self._size = int(fs.size(path))

    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, size: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(size)

    def readinto_at(self, offset: int, buf: memoryview) -> int:
        data = self.read_at(offset, len(buf))
        buf[:len(data)] = data
        return len(data)

    def readv_at(self, offset: int, buffers: list[memoryview]) -> int:
        data = self.read_at(offset, sum(len(b) for b in buffers))
        done = 0
        for buf in buffers:
            chunk = data[done:done + len(buf)]
            buf[:len(chunk)] = chunk
            done += len(chunk)
        return len(data)

    def fsync(self) -> None:
        pass

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FsspecReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BytesSource:
    """A read-only storage over bytes in memory (plaintext being re-encrypted)."""

    def __init__(self, data: bytes | bytearray, name: str):
        self.data = memoryview(data)
        self.name = name

    def size(self) -> int:
        return len(self.data)

    def read_at(self, offset: int, size: int) -> bytes:
        return bytes(self.data[offset:offset + size])

    def readinto_at(self, offset: int, buf: memoryview) -> int:
        chunk = self.data[offset:offset + len(buf)]
        buf[:len(chunk)] = chunk
        return len(chunk)


def open_input(fs: Any, path: str) -> HostFile | FsspecReader:
    """``path`` of ``fs`` for random-access reading."""
    return HostFile(path) if is_local(fs) else FsspecReader(fs, path)


def input_stamp(fs: Any, path: str) -> tuple[int, int]:
    """(size, modification time or 0) of an input, to notice it changing during a job."""
    if is_local(fs):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    return int(fs.size(path)), 0


def umask() -> int:
    """This process's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_prefix(dst: str, session: str) -> str:
    return f".{posixpath.basename(dst)}{TMP_TAG}{session}-"


def local_temp(dst: str, session: str) -> tuple[int, str]:
    """A new temporary file (mode 0600) next to the local destination ``dst``."""
    folder = os.path.dirname(dst) or "."
    os.makedirs(folder, exist_ok=True)
    return tempfile.mkstemp(prefix=temp_prefix(dst, session), dir=folder)


def commit_local(tmp: str, dst: str, *, force: bool, mode: int, sync: bool) -> None:
    """Give ``tmp`` its mode, fsync it, and rename it to ``dst`` (never replacing an existing
    ``dst`` unless ``force``; never anything but a regular file)."""
    os.chmod(tmp, mode)
    if sync:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if force:
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.lstat(dst).st_mode):
                raise IsADirectoryError(21, "not a regular file: not replacing it", dst)
        os.replace(tmp, dst)
    else:
        try:
            os.link(tmp, dst)
        except FileExistsError:
            raise FileExistsError(17, "output already exists; not overwriting it (use force)", dst) from None
        os.unlink(tmp)
    if sync:
        fd = os.open(os.path.dirname(dst) or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_local(dst: str, session: str, write: Callable[[HostFile], T], *, force: bool, mode: int, sync: bool) -> T:
    """Write ``dst`` through a temporary file beside it: ``write(out)`` fills it, then
    :func:`commit_local` puts it in place; on any failure (a signal included) the temporary file
    is removed and ``dst`` is left as it was. Returns what ``write`` returned."""
    fd, tmp = local_temp(dst, session)
    try:
        with HostFile.from_fd(fd, dst, writable=True) as out:
            result = write(out)
        commit_local(tmp, dst, force=force, mode=mode, sync=sync)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return result


def refuse_existing(fs: Any, dst: str, force: bool) -> None:
    """Fail before any work when ``dst`` exists and ``force`` is not given."""
    if not force and fs.exists(dst):
        raise FileExistsError(17, "output already exists; not overwriting it (use force)", dst)


def upload_file(src: HostFile, fs: Any, dst: str) -> None:
    """Write the whole local file ``src`` as the object ``dst`` of ``fs``; on a failure the
    object is discarded, not committed."""
    parent = posixpath.dirname(dst)
    if parent:
        with contextlib.suppress(OSError, NotImplementedError):
            fs.makedirs(parent, exist_ok=True)
    out = fs.open(dst, "wb")
    try:
        offset = 0
        while chunk := src.read_at(offset, COPY_CHUNK):
            out.write(chunk)
            offset += len(chunk)
    except BaseException:
        discard = getattr(out, "discard", None)
        if discard is not None:
            discard()
        raise
    out.close()


def scratch_file(name: str) -> HostFile:
    """An unnamed local temporary file (for ciphertext on its way to an object store)."""
    tmp = tempfile.TemporaryFile()  # noqa: SIM115 (handed over to the HostFile)
    try:
        return HostFile.from_fd(os.dup(tmp.fileno()), name, writable=True)
    finally:
        tmp.close()
