"""``pfs`` as an fsspec file system: Gramine protected files on any fsspec target.

Registered as the protocol ``pfs`` through the ``fsspec.specs`` entry point, so that with no
import of ours::

    fsspec.open("pfs::file:///srv/enc/in.csv", pfs={"key_file": "wrap.key", "bind_prefix": "/data"})
    pd.read_csv("pfs::s3://bucket/enc/in.csv", storage_options={"pfs": {"key_env": "PFS_KEY"}, "s3": {...}})
    fsspec.filesystem("pfs", target_protocol="file", key_file="wrap.key")

Paths are the target's paths. Each file is bound (see docs/data.md) to ``bind_prefix`` joined
with its path under ``root`` (by default the folder of the chained URL's path, else the target's
root), or to its host path when no prefix is given, as ``pfs encrypt`` binds them.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from typing import Any

import fsspec
from fsspec.implementations.chained import ChainedFileSystem
from fsspec.implementations.local import LocalFileSystem

from .errors import PfsError
from .fsspec_file import BUFFER_SIZE, open_protected, temp_sibling
from .fsspec_keys import WrapKey, resolve_key
from .fsspec_storage import DEFAULT_SPILL_THRESHOLD, FileObjectStorage, SpillStorage
from .layout import RECOVERY_SUFFIX
from .paths import normalize_bound_path
from .protected_file import DEFAULT_CACHE_SIZE, ProtectedFile
from .storage import BorrowedStorage

__all__ = ["PfsFileSystem", "WrapKey"]

_GLOB = "*?["


class _PfsCached(type(ChainedFileSystem)):
    """fsspec's caching metaclass, with a ``key`` argument wrapped in :class:`WrapKey` before
    fsspec tokenizes the arguments (the token, and ``storage_options``, never hold the key)."""

    def __call__(cls, *args: Any, **kwargs: Any):
        key = kwargs.get("key")
        if key is not None and not isinstance(key, WrapKey):
            kwargs["key"] = WrapKey(key)
        return super().__call__(*args, **kwargs)


def _default_root(fo: str | None) -> str:
    """The folder of the chained URL's path (before any glob character)."""
    if not fo:
        return ""
    cut = min([fo.index(c) for c in _GLOB if c in fo], default=len(fo))
    return posixpath.dirname(fo[:cut]) if cut < len(fo) else posixpath.dirname(fo)


class PfsFileSystem(ChainedFileSystem, metaclass=_PfsCached):
    """Protected (encrypted) files over another fsspec file system.

    ``key`` (16 bytes), ``key_file`` (raw or hex, as ``pfs`` commands read it) or ``key_env``
    (an environment variable holding 32 hex digits): exactly one. ``bind_prefix``/``root``: the
    binding (above); ``check_path=False`` skips the check on open. ``spill_threshold``: bytes
    of ciphertext a file written to a non-local target keeps in memory before spilling to a
    temporary file in ``spill_dir``. ``target_protocol``/``target_options`` or ``fs``: the target.
    """

    protocol = "pfs"
    root_marker = ""

    def __init__(self, target_protocol: str | None = None, target_options: dict | None = None,
                 fs: fsspec.AbstractFileSystem | None = None, fo: str | None = None, *,
                 key: bytes | WrapKey | None = None, key_file: str | os.PathLike[str] | None = None,
                 key_env: str | None = None, bind_prefix: str | None = None, root: str | None = None,
                 check_path: bool = True, spill_threshold: int = DEFAULT_SPILL_THRESHOLD,
                 spill_dir: str | None = None, cache_size: int = DEFAULT_CACHE_SIZE, **kwargs: Any):
        super().__init__(**kwargs)
        if fs is None:
            fs = fsspec.filesystem(target_protocol or "file", **(target_options or {}))
        self.fs = fs
        self._key = WrapKey(resolve_key(key, key_file, key_env))
        self.bind_prefix = bind_prefix
        stripped = fs._strip_protocol(fo) if fo else None
        self.root = fs._strip_protocol(root) if root else _default_root(stripped)
        self.check_path = check_path
        self.spill_threshold = spill_threshold
        self.spill_dir = spill_dir
        self.cache_size = cache_size
        self.local = isinstance(fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"<PfsFileSystem over {type(self.fs).__name__} root={self.root!r} bind_prefix={self.bind_prefix!r}>"

    # ----------------------------------------------------------------- paths

    def _target(self, path: str) -> str:
        path = self._strip_protocol(path)
        return self.fs._strip_protocol(path) if path else self.fs._strip_protocol(self.root or "")

    def bound_path(self, path: str) -> str:
        """The path the file at ``path`` is bound to."""
        target = self._target(path)
        if self.bind_prefix is None:
            return normalize_bound_path(target)
        if self.root:
            rel = posixpath.relpath(target, self.root) if target != self.root else posixpath.basename(target)
        else:
            rel = target.lstrip("/")
        if rel == ".." or rel.startswith("../"):
            raise PfsError(f"{target}: not under the pfs root '{self.root}' (set 'root' to bind it)",
                           path=target, errno=22)
        return posixpath.join(self.bind_prefix, rel)

    # ----------------------------------------------------------------- files

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict | None = None, **kwargs: Any):
        target = self._target(path)
        return open_protected(
            self.fs, target, mode, self._key.value, self.bound_path(target), check_path=self.check_path,
            local=self.local, cache_size=self.cache_size, spill_threshold=self.spill_threshold,
            spill_dir=self.spill_dir, buffer_size=max(block_size or 0, BUFFER_SIZE))

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Plaintext bytes ``start:end`` of the file (negative: from the end, as slices)."""
        with self.open(path, "rb") as f:
            size = f.size
            lo = 0 if start is None else (start if start >= 0 else max(0, size + start))
            hi = size if end is None else (end if end >= 0 else max(0, size + end))
            if hi <= lo:
                return b""
            f.seek(lo)
            return f.read(hi - lo)

    def _storage(self, target: str, size: int | None = None):
        if self.local:
            from pal import HostFile

            return HostFile(target)
        return FileObjectStorage(self.fs.open(target, "rb"), target, size)

    def plaintext_size(self, path: str, encrypted_size: int | None = None) -> int:
        """The plaintext size recorded in the file's (authenticated) metadata."""
        target = self._target(path)
        with ProtectedFile.open(self._storage(target, encrypted_size), self._key.value, None) as pf:
            return pf.size

    def _plain_entry(self, entry: dict) -> dict:
        entry = dict(entry)
        if entry.get("type") == "file":
            entry["encrypted_size"] = entry.get("size")
            try:
                entry["size"] = self.plaintext_size(entry["name"], entry.get("size"))
            except PfsError as exc:
                entry["size"] = None
                entry["pfs_error"] = str(exc)
        return entry

    def info(self, path: str, **kwargs: Any) -> dict:
        """The target's entry, with the plaintext ``size`` (and ``encrypted_size``) of a file."""
        entry = dict(self.fs.info(self._target(path), **kwargs))
        if entry.get("type") == "file":
            entry["encrypted_size"] = entry.get("size")
            entry["size"] = self.plaintext_size(entry["name"], entry.get("size"))
        return entry

    def ls(self, path: str, detail: bool = True, **kwargs: Any):
        """The folder's entries (recovery journals left out); with ``detail``, plaintext sizes
        (``size`` None and ``pfs_error`` set for a file that can't be opened with this key)."""
        entries = [e for e in self.fs.ls(self._target(path), detail=True, **kwargs)
                   if not e["name"].endswith(RECOVERY_SUFFIX)]
        if not detail:
            return [e["name"] for e in entries]
        return [self._plain_entry(e) for e in entries]

    def modified(self, path: str):
        return self.fs.modified(self._target(path))

    def created(self, path: str):
        return self.fs.created(self._target(path))

    def exists(self, path: str, **kwargs: Any) -> bool:
        return self.fs.exists(self._target(path))

    def isdir(self, path: str) -> bool:
        return self.fs.isdir(self._target(path))

    def isfile(self, path: str) -> bool:
        return self.fs.isfile(self._target(path))

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.fs.mkdir(self._target(path), create_parents=create_parents, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.fs.makedirs(self._target(path), exist_ok=exist_ok)

    def rmdir(self, path: str) -> None:
        self.fs.rmdir(self._target(path))

    def rm_file(self, path: str) -> None:
        target = self._target(path)
        self.fs.rm_file(target)
        if self.local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target + RECOVERY_SUFFIX)

    def rm(self, path, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = [path] if isinstance(path, str) else list(path)
        self.fs.rm([self._target(p) for p in paths], recursive=recursive, maxdepth=maxdepth)

    # ----------------------------------------------------------------- copies and moves: rebinding

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy a file, bound to its new path (the metadata node is rewritten)."""
        self._relocate(self._target(path1), self._target(path2), move=False)

    def mv(self, path1: str, path2: str, recursive: bool = False, maxdepth: int | None = None,
           **kwargs: Any) -> None:
        """Move file(s), each rebound to its new path."""
        src, dst = self._target(path1), self._target(path2)
        if src == dst:
            return
        if not self.fs.isdir(src):
            self._relocate(src, dst, move=True)
            return
        if not recursive:
            raise IsADirectoryError(21, f"{src}: is a folder (give recursive=True)", src)
        for name in self.fs.find(src, maxdepth=maxdepth):
            self._relocate(name, posixpath.join(dst, posixpath.relpath(name, src)), move=True)
        with contextlib.suppress(OSError):
            self.fs.rm(src, recursive=True)

    def _relocate(self, src: str, dst: str, *, move: bool) -> None:
        key = self._key.value
        expected = self.bound_path(src) if self.check_path else None
        new_bound = self.bound_path(dst)
        parent = posixpath.dirname(dst)
        if parent:
            with contextlib.suppress(OSError, NotImplementedError):
                self.fs.makedirs(parent, exist_ok=True)
        if self.local:
            self._relocate_local(src, dst, key, expected, new_bound, move=move)
            return
        spill = SpillStorage(dst, threshold=self.spill_threshold, folder=self.spill_dir)
        try:
            with self.fs.open(src, "rb") as f:
                spill.load_from(f)
            with ProtectedFile.open(BorrowedStorage(spill), key, expected, writable=True,
                                    cache_size=self.cache_size) as pf:
                pf.rename(new_bound)
            with self.fs.open(dst, "wb") as out:
                spill.copy_to(out)
        finally:
            spill.close()
        if move:
            self.fs.rm_file(src)

    def _relocate_local(self, src: str, dst: str, key: bytes, expected: str | None, new_bound: str, *,
                        move: bool) -> None:
        import shutil

        from pal import HostFile

        if move:
            # rebind in place (the key and binding are checked first), then rename; undone on failure
            with ProtectedFile.open(HostFile(src, writable=True), key, expected, writable=True,
                                    cache_size=self.cache_size) as pf:
                old_bound = pf.bound_path
                pf.rename(new_bound)
                try:
                    os.replace(src, dst)
                except BaseException:
                    pf.rename(old_bound)
                    raise
            return
        tmp = temp_sibling(dst)
        try:
            shutil.copyfile(src, tmp)
            with ProtectedFile.open(HostFile(tmp, writable=True), key, expected, writable=True,
                                    cache_size=self.cache_size) as pf:
                pf.rename(new_bound)
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
