"""The tasks of :mod:`pfs.dask`, as they run on the workers.

Keys: :func:`install_key` puts a key into this process's memory under an opaque random id
(sent by ``Client.run``, which the scheduler forwards without storing); tasks name the key by
that id only, so no task, task key or result ever holds it. A worker that has no key for an id
(it joined, or was restarted, after the keys were sent) raises :class:`KeyNotOnWorker` and the
client sends the keys again. The node entries a piece of a large file returns (node keys and
tags) are sealed under a key derived from the file key, so worker memory spilled to disk never
holds them in the clear.

The tasks of large files are in :mod:`pfs.dask_split`. Failures leave tasks as
:class:`TaskFailed` (message and errno only: it pickles everywhere).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import stat
from collections.abc import Callable
from typing import Any, TypeVar

from .dask_io import (
    BytesSource,
    is_local,
    open_input,
    refuse_existing,
    scratch_file,
    umask,
    upload_file,
    write_local,
)

_KEYS: dict[str, bytes] = {}
_TRANSIT_LABEL = b"pfs.dask entries in transit"
NO_KEY = "<no key on this worker>"  # a batch's outcome for a file whose key was missing

F = TypeVar("F", bound=Callable[..., Any])


class KeyNotOnWorker(Exception):
    """This worker has no key for the job's key id (it joined or restarted after they were sent)."""


class TaskFailed(Exception):
    """A file's task failed: ``args`` are (one-line message, errno or None)."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message, errno)

    @property
    def message(self) -> str:
        return str(self.args[0])

    @property
    def errno(self) -> int | None:
        return self.args[1]

    def __str__(self) -> str:
        return self.message


def install_key(key_id: str, key: bytes) -> bool:
    """Keep ``key`` in this worker's memory under ``key_id`` (run on every worker by the client)."""
    _KEYS[key_id] = bytes(key)
    return True


def forget_key(key_id: str) -> bool:
    """Drop the key ``key_id`` from this worker's memory."""
    _KEYS.pop(key_id, None)
    return True


def _key(key_id: str) -> bytes:
    try:
        return _KEYS[key_id]
    except KeyError:
        raise KeyNotOnWorker(key_id) from None


def _describe(exc: BaseException) -> str:
    from .errors import PfsError

    if isinstance(exc, PfsError):
        return str(exc)
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        return f"{exc.filename}: {what}" if exc.filename is not None else what
    return f"{type(exc).__name__}: {exc}"


def typed(func: F) -> F:
    """Turn any failure of a task into :class:`TaskFailed` (keys are never in messages)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (KeyNotOnWorker, TaskFailed):
            raise
        except Exception as exc:
            raise TaskFailed(_describe(exc), getattr(exc, "errno", None)) from None

    return wrapper  # type: ignore[return-value]


def _transit_key(key: bytes, salt: bytes) -> bytes:
    """A key for one sealed blob (so the zero IV of :func:`pfs.crypto.seal` is used once per key)."""
    return hmac.new(key, _TRANSIT_LABEL + salt, hashlib.sha256).digest()[:16]


def seal_entries(key_id: str, blob: bytes) -> bytes:
    """``blob`` (node entries) sealed for the trip to the task that assembles the file:
    salt (16 bytes), tag (16), ciphertext."""
    from .crypto import seal

    salt = os.urandom(16)
    ciphertext, tag = seal(_transit_key(_key(key_id), salt), blob)
    return salt + tag + ciphertext


def open_entries(key_id: str, sealed: bytes) -> bytes:
    """The node entries sealed by :func:`seal_entries` (InvalidTag if they were changed)."""
    from .crypto import open_sealed

    return open_sealed(_transit_key(_key(key_id), sealed[:16]), sealed[32:], sealed[16:32])


def _output_mode(src_fs: Any, src: str, plaintext_out: bool) -> int:
    if is_local(src_fs):
        return stat.S_IMODE(os.stat(src).st_mode) & 0o777 & ~umask()
    return 0o600 if plaintext_out else 0o666 & ~umask()


def _facts(storage: Any, key: bytes) -> dict[str, Any]:
    from .inspect import read_full_info
    from .storage import BorrowedStorage

    info = read_full_info(BorrowedStorage(storage, readonly=True), key)
    return {"bound": info["bound_path"], "trailing": info["trailing_nodes"]}


# ---------------------------------------------------------------------- whole files

@typed
def encrypt_file(src_fs: Any, src: str, dst_fs: Any, dst: str, bound: str, key_id: str, session: str,
                 force: bool, sync: bool) -> int:
    """Encrypt one file; return its plaintext size."""
    from .stream import encrypt_stream

    key = _key(key_id)
    refuse_existing(dst_fs, dst, force)
    with open_input(src_fs, src) as reader:
        if is_local(dst_fs):
            return write_local(dst, session, lambda out: encrypt_stream(reader, out, key, bound), force=force,
                               mode=_output_mode(src_fs, src, False), sync=sync)
        with scratch_file(dst) as out:
            size = encrypt_stream(reader, out, key, bound)
            upload_file(out, dst_fs, dst)
        return size


@typed
def decrypt_file(src_fs: Any, src: str, dst_fs: Any | None, dst: str | None, expected: str | None, key_id: str,
                 session: str, force: bool, sync: bool, strict: bool) -> dict[str, Any]:
    """Decrypt (or, without ``dst``, only verify) one file; return ``{"size", "bound", "trailing"}``."""
    from .storage import MemoryStorage
    from .stream import decrypt_stream

    key = _key(key_id)
    if dst is not None:
        refuse_existing(dst_fs, dst, force)
    with open_input(src_fs, src) as reader:
        if dst is None:
            size = decrypt_stream(reader, None, key, expected)
            return _checked({"size": size, **_facts(reader, key)}, src, strict)
        if is_local(dst_fs):
            def write(out: Any) -> dict[str, Any]:
                size = decrypt_stream(reader, out, key, expected)
                return _checked({"size": size, **_facts(reader, key)}, src, strict)

            return write_local(dst, session, write, force=force, mode=_output_mode(src_fs, src, True), sync=sync)
        plain = MemoryStorage(name=dst)
        size = decrypt_stream(reader, plain, key, expected)
        facts = _checked({"size": size, **_facts(reader, key)}, src, strict)
        dst_fs.pipe_file(dst, bytes(plain.data))
        return facts


def _checked(facts: dict[str, Any], src: str, strict: bool) -> dict[str, Any]:
    if strict and facts["trailing"]:
        raise TaskFailed(f"{src}: {facts['trailing']} trailing nodes after the data; strict refuses it")
    return facts


@typed
def rekey_file(fs: Any, path: str, old_id: str, new_id: str, session: str, sync: bool) -> str:
    """Re-encrypt one file in place under the new key, keeping its bound path; return that path.
    The plaintext is only ever in memory."""
    from .protected_file import ProtectedFile
    from .storage import BorrowedStorage, MemoryStorage
    from .stream import decrypt_stream, encrypt_stream

    old, new = _key(old_id), _key(new_id)
    target = os.path.realpath(path) if is_local(fs) else path
    with open_input(fs, target) as reader:
        pf = ProtectedFile.open(BorrowedStorage(reader, readonly=True), old, None, writable=False)
        bound = bytes(pf.metadata.path).decode(errors="surrogateescape")
        pf.close()
        plain = MemoryStorage(name=path)
        decrypt_stream(reader, plain, old, None)
    source = BytesSource(plain.data, path)
    if is_local(fs):
        st = os.stat(target)

        def write(out: Any) -> None:
            encrypt_stream(source, out, new, bound)
            if os.geteuid() == 0:
                os.fchown(out.fd, st.st_uid, st.st_gid)

        write_local(target, session, write, force=True, mode=stat.S_IMODE(st.st_mode), sync=sync)
        return bound
    with scratch_file(path) as out:
        encrypt_stream(source, out, new, bound)
        upload_file(out, fs, path)
    return bound


def run_batch(key_ids: list[str], calls: list[tuple[str, tuple]]) -> list[tuple[bool, Any, int | None]]:
    """Run several small files' tasks in one (``calls``: (function name, arguments)); each
    file's outcome is ``(True, value, None)`` or ``(False, message, errno)``, and
    ``(False, NO_KEY, None)`` for a file whose key was missing. A key missing at the start fails
    the whole batch before any file is touched."""
    for key_id in key_ids:
        _key(key_id)
    funcs = {"encrypt": encrypt_file, "decrypt": decrypt_file, "rekey": rekey_file}
    out: list[tuple[bool, Any, int | None]] = []
    for name, args in calls:
        try:
            out.append((True, funcs[name](*args), None))
        except TaskFailed as exc:
            out.append((False, exc.message, exc.errno))
        except KeyNotOnWorker:  # forgotten meanwhile: this file (not the ones done) is sent again
            out.append((False, NO_KEY, None))
    return out
