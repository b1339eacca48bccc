"""``pfs.open``: protected files with the feel of the built-in ``open``.

:class:`PfsRawIO` adapts a :class:`~pfs.protected_file.ProtectedFile` to ``io.RawIOBase`` so
that ``io.BufferedReader``/``BufferedWriter``/``BufferedRandom`` and ``io.TextIOWrapper`` stack
on top of it, exactly as they do over a host file.
"""

from __future__ import annotations

import contextlib
import io
import os

from pal import HostFile

from .layout import RECOVERY_SUFFIX
from .paths import normalize_bound_path, recovery_path
from .protected_file import DEFAULT_CACHE_SIZE, ProtectedFile

__all__ = ["RECOVERY_SUFFIX", "PfsRawIO", "open", "recovery_path"]


class PfsRawIO(io.RawIOBase):
    """Unbuffered, seekable binary I/O on a protected file (closing it closes the file)."""

    def __init__(self, pf: ProtectedFile, *, readable: bool, writable: bool, append: bool = False,
                 name: str = "", mode: str = "rb", on_close=None):
        super().__init__()
        self._pf = pf
        self._readable = readable
        self._writable = writable
        self._append = append
        self._pos = 0
        self._on_close = on_close
        self.name = name
        self.mode = mode

    @property
    def protected_file(self) -> ProtectedFile:
        """The underlying :class:`ProtectedFile`."""
        return self._pf

    def readable(self) -> bool:
        self._checkClosed()
        return self._readable

    def writable(self) -> bool:
        self._checkClosed()
        return self._writable

    def seekable(self) -> bool:
        self._checkClosed()
        return True

    def readinto(self, b) -> int:
        self._checkClosed()
        if not self._readable:
            raise io.UnsupportedOperation("file not open for reading")
        n = self._pf.readinto(self._pos, memoryview(b))
        self._pos += n
        return n

    def readall(self) -> bytes:
        self._checkClosed()
        if not self._readable:
            raise io.UnsupportedOperation("file not open for reading")
        data = self._pf.read(self._pos, max(0, self._pf.size - self._pos))
        self._pos += len(data)
        return data

    def write(self, b) -> int:
        self._checkClosed()
        if not self._writable:
            raise io.UnsupportedOperation("file not open for writing")
        if self._append:
            self._pos = self._pf.size
        n = self._pf.write(self._pos, b)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._pf.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise OSError(22, "Invalid argument: negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        self._checkClosed()
        if not self._writable:
            raise io.UnsupportedOperation("file not open for writing")
        size = self._pos if size is None else size
        self._pf.truncate(size)
        return size

    def flush(self) -> None:
        """Encrypt and write every change, and fsync the host file."""
        if not self.closed and self._writable and not self._pf.closed:
            self._pf.flush()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._pf.close()
            if self._on_close is not None:
                self._on_close()
        finally:
            super().close()

    def __repr__(self) -> str:
        return f"<pfs.PfsRawIO name={self.name!r} mode={self.mode!r}>"


def _parse_mode(mode: str) -> tuple[str, bool, bool]:
    """(kind in r/w/x/a, plus, text) of an ``open`` mode string."""
    kinds = [c for c in mode if c in "rwxa"]
    if len(kinds) != 1 or any(c not in "rwxab+t" for c in mode) or len(set(mode)) != len(mode):
        raise ValueError(f"invalid mode: {mode!r}")
    if "b" in mode and "t" in mode:
        raise ValueError("can't have text and binary mode at once")
    return kinds[0], "+" in mode, "b" not in mode


def open(file: str | os.PathLike, mode: str = "r", *, key: bytes, bind_path: str | None = None,
         check_path: bool = True, cache_size: int = DEFAULT_CACHE_SIZE, recovery: bool = False,
         buffering: int = -1, encoding: str | None = None, errors: str | None = None,
         newline: str | None = None):
    """Open a protected file like the built-in :func:`open`.

    ``key`` is the 16-byte wrap key. The file is bound to ``bind_path`` (default: ``file``
    normalized lexically, as Gramine's tools do); opening an existing file checks that binding
    unless ``check_path`` is false. ``recovery`` keeps Gramine's ``<file>.gramine.recovery``
    journal so that an interrupted flush can be rolled back. Modes ``r w x a`` with ``+``,
    ``b``/``t`` behave as for host files (``w`` replaces the file's content).
    """
    kind, plus, text = _parse_mode(mode)
    path = os.fspath(file)
    bound = bind_path if bind_path is not None else normalize_bound_path(path)
    readable = kind == "r" or plus
    writable = kind != "r" or plus
    if buffering == 0 and text:
        raise ValueError("can't have unbuffered text I/O")
    journal = None
    exists = os.path.exists(path)
    if kind == "x" and exists:
        raise FileExistsError(17, f"{path}: file exists", path)
    if kind == "r" and not exists:
        raise FileNotFoundError(2, f"{path}: no such file", path)
    create = kind in "wx" or (kind == "a" and not exists)
    host = HostFile(path, writable=writable or recovery, create=create, exclusive=kind == "x")
    try:
        if recovery:
            journal = HostFile(recovery_path(path), writable=True, create=True, mode=0o600)
        if create:
            host.truncate(0)
            pf = ProtectedFile.create(host, key, bound, cache_size=cache_size, recovery=journal)
        else:
            pf = ProtectedFile.open(host, key, bound if check_path else None, writable=writable,
                                    cache_size=cache_size, recovery=journal)
    except BaseException:
        host.close()
        if journal is not None:
            journal.close()
        raise

    def remove_journal() -> None:
        if recovery:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(recovery_path(path))

    raw = PfsRawIO(pf, readable=readable, writable=writable, append=kind == "a", name=path, mode=mode,
                   on_close=remove_journal)
    if kind == "a":
        raw.seek(0, io.SEEK_END)
    if buffering == 0:
        return raw
    size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE * 16
    if readable and writable:
        buffered = io.BufferedRandom(raw, size)
    elif writable:
        buffered = io.BufferedWriter(raw, size)
    else:
        buffered = io.BufferedReader(raw, size)
    if not text:
        return buffered
    wrapper = io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors=errors, newline=newline,
                               line_buffering=buffering == 1)
    wrapper.mode = mode
    return wrapper
