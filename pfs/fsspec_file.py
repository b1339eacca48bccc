"""File objects of the ``pfs`` fsspec file system: opening a protected file on an fsspec target.

Local files are opened on the host (:class:`pal.HostFile`) and written at random, in place
(``r+``, ``a``) or, for a new content (``w``, ``x``), in a temporary file in the same folder that
replaces the target when the file is closed. Other targets (object stores) are read by range
through the target's own file object and written whole on close from a :class:`SpillStorage`
(ciphertext, in memory up to a threshold, then in an unlinked temporary file).

Leaving a ``with`` block on an exception discards a new content: nothing half-written appears.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
from collections.abc import Callable
from typing import Any

from pal import HostFile, random_bytes

from .fileio import PfsRawIO
from .fsspec_storage import FileObjectStorage, SpillStorage
from .protected_file import ProtectedFile
from .storage import BorrowedStorage

__all__ = ["BUFFER_SIZE", "open_protected", "temp_sibling"]

BUFFER_SIZE = 1 << 20


class _PfsRaw(PfsRawIO):
    """:class:`PfsRawIO` that, once the protected file is closed, commits (rename into place,
    upload) or, after :meth:`discard` or a failed close, aborts."""

    def __init__(self, pf: ProtectedFile, *, commit: Callable[[], None] | None,
                 abort: Callable[[], None] | None, **kwargs: Any):
        super().__init__(pf, **kwargs)
        self._commit = commit
        self._abort = abort
        self._discarded = False

    def discard(self) -> None:
        """Drop what was written instead of committing it (a new content only)."""
        self._discarded = True

    def close(self) -> None:
        if self.closed:
            return
        try:
            try:
                self._pf.close()
            except BaseException:
                if self._abort is not None:
                    self._abort()
                raise
            if self._discarded and self._abort is not None:
                self._abort()
            elif self._commit is not None:
                self._commit()
        finally:
            io.RawIOBase.close(self)


class _Sized:
    """What the buffered objects add for fsspec's callers: ``size`` (plaintext), ``path``, and
    discarding a new content when a ``with`` block ends in an exception."""

    raw: _PfsRaw
    path: str

    @property
    def size(self) -> int:
        """Plaintext size in bytes."""
        return self.raw.protected_file.size

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.raw.discard()
        return super().__exit__(exc_type, exc, tb)  # type: ignore[misc]


class PfsReader(_Sized, io.BufferedReader):
    """A protected file open for reading."""


class PfsWriter(_Sized, io.BufferedWriter):
    """A protected file open for writing."""


class PfsRandom(_Sized, io.BufferedRandom):
    """A protected file open for reading and writing."""


def temp_sibling(path: str) -> str:
    """A fresh temporary name in the folder of the local ``path``."""
    folder, base = os.path.split(path)
    return os.path.join(folder, f".{base}.pfs-tmp-{random_bytes(6).hex()}")


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def open_protected(target: Any, path: str, mode: str, key: bytes, bound: str, *, check_path: bool,
                   local: bool, cache_size: int, spill_threshold: int, spill_dir: str | None,
                   buffer_size: int = BUFFER_SIZE) -> io.BufferedIOBase:
    """Open the protected file at ``path`` of the fsspec file system ``target`` in ``mode``
    (``rb wb xb ab r+b``), bound to ``bound`` (checked on open unless ``check_path`` is false)."""
    kind = mode[0]
    if kind not in "rwxa" or any(c not in "rwxab+" for c in mode):
        raise ValueError(f"pfs: unsupported mode {mode!r}")
    plus = "+" in mode
    readable, writable = kind == "r" or plus, kind != "r" or plus
    expected = bound if check_path else None
    exists = target.isfile(path) if kind != "w" else None
    if kind == "x" and exists:
        raise FileExistsError(17, f"{path}: file exists", path)
    if kind == "r" and not exists:
        raise FileNotFoundError(2, f"{path}: no such file", path)
    fresh = kind in "wx" or (kind == "a" and not exists)
    commit = abort = None
    if local:
        if fresh:
            tmp = temp_sibling(path)
            storage = HostFile(tmp, writable=True, create=True, exclusive=True)
            storage.name = path
            commit = _replace(tmp, path, exclusive=kind == "x")
            abort = _remove(tmp)
        else:
            storage = HostFile(path, writable=writable)
    elif not writable:
        storage = FileObjectStorage(target.open(path, "rb"), path, target.size(path))
    else:
        spill = SpillStorage(path, threshold=spill_threshold, folder=spill_dir)
        if not fresh:
            with target.open(path, "rb") as src:
                spill.load_from(src)
        storage = BorrowedStorage(spill)
        commit = _upload(target, spill, path)
        abort = spill.close
    try:
        if fresh:
            pf = ProtectedFile.create(storage, key, bound, cache_size=cache_size)
        else:
            pf = ProtectedFile.open(storage, key, expected, writable=writable, cache_size=cache_size)
    except BaseException:
        storage.close()
        if abort is not None:
            abort()
        raise
    raw = _PfsRaw(pf, commit=commit, abort=abort, readable=readable, writable=writable,
                  append=kind == "a", name=path, mode=mode)
    if kind == "a":
        raw.seek(0, io.SEEK_END)
    cls = PfsRandom if readable and writable else PfsWriter if writable else PfsReader
    f = cls(raw, buffer_size)
    f.path = path
    return f


def _replace(tmp: str, path: str, *, exclusive: bool) -> Callable[[], None]:
    def commit() -> None:
        try:
            if exclusive:
                os.link(tmp, path)  # fails if someone created it meanwhile
                os.unlink(tmp)
            else:
                os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
    return commit


def _remove(tmp: str) -> Callable[[], None]:
    return lambda: _unlink_quietly(tmp)


def _upload(target: Any, spill: SpillStorage, path: str) -> Callable[[], None]:
    def commit() -> None:
        try:
            parent = posixpath.dirname(path)
            if parent:
                with contextlib.suppress(OSError, NotImplementedError):
                    target.makedirs(parent, exist_ok=True)
            with target.open(path, "wb") as out:
                spill.copy_to(out)
        finally:
            spill.close()
    return commit
