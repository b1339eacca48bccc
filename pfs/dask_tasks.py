"""The tasks of :mod:`pfs.dask`, as they run on the workers.

Keys: :func:`install_key` puts a key into this process's memory under an opaque random id
(sent by ``Client.run``, which the scheduler forwards without storing); tasks name the key by
that id only, so no task, task key or result ever holds it. A worker that has no key for an id
(it joined, or was restarted, after the keys were sent) raises :class:`KeyNotOnWorker` and the
client sends the keys again. The node entries a piece of a large file returns (node keys and
tags) are sealed under a key derived from the file key, so worker memory spilled to disk never
holds them in the clear.

Failures leave tasks as :class:`TaskFailed` (message and errno only: it pickles everywhere).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import stat
from collections.abc import Callable
from typing import Any, TypeVar

from .dask_io import (
    BytesSource,
    commit_local,
    input_stamp,
    is_local,
    local_temp,
    open_input,
    refuse_existing,
    scratch_file,
    umask,
    upload_file,
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
            fd, tmp = local_temp(dst, session)
            from pal import HostFile

            try:
                with HostFile.from_fd(fd, dst, writable=True) as out:
                    size = encrypt_stream(reader, out, key, bound)
                commit_local(tmp, dst, force=force, mode=_output_mode(src_fs, src, False), sync=sync)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return size
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
            from pal import HostFile

            fd, tmp = local_temp(dst, session)
            try:
                with HostFile.from_fd(fd, dst, writable=True) as out:
                    size = decrypt_stream(reader, out, key, expected)
                facts = _checked({"size": size, **_facts(reader, key)}, src, strict)
                commit_local(tmp, dst, force=force, mode=_output_mode(src_fs, src, True), sync=sync)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return facts
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
        from pal import HostFile

        st = os.stat(target)
        fd, tmp = local_temp(target, session)
        try:
            with HostFile.from_fd(fd, target, writable=True) as out:
                encrypt_stream(source, out, new, bound)
                if os.geteuid() == 0:
                    os.fchown(out.fd, st.st_uid, st.st_gid)
            commit_local(tmp, target, force=True, mode=stat.S_IMODE(st.st_mode), sync=sync)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
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


# ---------------------------------------------------------------------- large files, by node groups

@typed
def split_begin(src_fs: Any, src: str, dst_fs: Any, dst: str, tmp: str, force: bool) -> tuple[int, int]:
    """Make the temporary output ``tmp`` of a split encryption its final size (never emptying it:
    a piece written before this task was re-run stays); return the input's stamp."""
    from .layout import NODE_SIZE, node_count

    refuse_existing(dst_fs, dst, force)
    stamp = input_stamp(src_fs, src)
    os.makedirs(os.path.dirname(tmp) or ".", exist_ok=True)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        total = node_count(stamp[0]) * NODE_SIZE
        os.ftruncate(fd, total)
        if total:  # blocks allocated up front (writes into them are cheaper); keeps what is written
            with contextlib.suppress(OSError):
                os.posix_fallocate(fd, 0, total)
    finally:
        os.close(fd)
    return stamp


@typed
def split_piece(src_fs: Any, src: str, tmp: str, groups: list[int], key_id: str, stamp: tuple[int, int]) -> bytes:
    """Encrypt node groups ``groups`` of ``src`` into ``tmp``; return their entries, sealed."""
    from pal import HostFile

    from .layout import NODE_SIZE
    from .nodebuf import SEALED_SIZE, NodeBuffer
    from .stream import _GroupCipher, _read_plain, _Writer

    size = stamp[0]
    entries = []
    with open_input(src_fs, src) as reader, HostFile(tmp, writable=True) as out:
        writer = _Writer(out, SEALED_SIZE, background=True)
        try:
            cipher = _GroupCipher(writer)
            plain = NodeBuffer(NODE_SIZE)
            for m in groups:
                _read_plain(reader, m, size, plain)
                entries.append(bytes(cipher.encrypt_group(plain, m, size)))
        finally:
            writer.close()
    return seal_entries(key_id, b"".join(entries))


@typed
def split_finish(src_fs: Any, src: str, dst: str, tmp: str, bound: str, key_id: str, stamp: tuple[int, int],
                 pieces: list[tuple[list[int], bytes]], force: bool, sync: bool) -> int:
    """Write the MHT and metadata nodes of a split encryption and rename ``tmp`` to ``dst``."""
    from pal import HostFile

    from .errors import InputChangedError
    from .layout import DATA_ENTRIES_PER_MHT, ENTRY_SIZE, MD_USER_DATA_SIZE, mht_node_count
    from .metadata import Metadata, encode_path
    from .stream import _dfs_preorder, _MhtBuilder, write_metadata

    key = _key(key_id)
    size = stamp[0]
    by_group: dict[int, bytes] = {}
    per_group = DATA_ENTRIES_PER_MHT * ENTRY_SIZE
    for groups, sealed in pieces:
        blob = open_entries(key_id, sealed)
        for i, m in enumerate(groups):
            by_group[m] = blob[i * per_group:(i + 1) * per_group]
    with HostFile(tmp, writable=True) as out:
        builder = _MhtBuilder(out)
        for m in _dfs_preorder(mht_node_count(size)):
            builder.push(m, by_group[m])
        builder.finish_all()
        meta = Metadata(path=encode_path(bound, dst))
        meta.size = size
        with open_input(src_fs, src) as reader:
            head = reader.read_at(0, min(size, MD_USER_DATA_SIZE))
        meta.data[:len(head)] = head
        meta.root_key, meta.root_mac = builder.root
        if input_stamp(src_fs, src) != tuple(stamp):
            raise InputChangedError(f"{src}: the file changed while it was being encrypted; try again when "
                                    "nothing is writing to it", path=src)
        write_metadata(out, key, meta)
    commit_local(tmp, dst, force=force, mode=_output_mode(src_fs, src, False), sync=sync)
    return size


@typed
def split_open(src_fs: Any, src: str, tmp: str | None, expected: str | None, key_id: str) -> tuple[int, bytes]:
    """Check the metadata (key, bound path, size) of a large encrypted file and walk its MHT
    nodes; with ``tmp``, make that temporary output its final size with the first 3 KiB of
    plaintext in place. Returns (plaintext size, every group's entries, sealed)."""
    from .layout import MD_USER_DATA_SIZE, NODE_SIZE, mht_node_count, node_count
    from .protected_file import ProtectedFile
    from .storage import BorrowedStorage
    from .stream import _dfs_preorder, _MhtWalker

    key = _key(key_id)
    with open_input(src_fs, src) as reader:
        pf = ProtectedFile.open(BorrowedStorage(reader, readonly=True), key, expected, writable=False)
        meta = pf.metadata
        size = meta.size
        if reader.size() < node_count(size) * NODE_SIZE:
            from .errors import TruncatedFileError

            raise TruncatedFileError(f"{src}: on-disk size too small for the recorded size", path=src)
        walker = _MhtWalker(reader, meta, src)
        nmht = mht_node_count(size)
        entries = {m: bytes(walker.visit(m)) for m in _dfs_preorder(nmht)}
        head = bytes(meta.data[:min(size, MD_USER_DATA_SIZE)])
        pf.close()
    if tmp is not None:
        os.makedirs(os.path.dirname(tmp) or ".", exist_ok=True)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)
            os.pwrite(fd, head, 0)
        finally:
            os.close(fd)
    return size, seal_entries(key_id, b"".join(entries[m] for m in range(nmht)))


@typed
def split_open_piece(src_fs: Any, src: str, tmp: str | None, groups: list[int], key_id: str,
                     plan: tuple[int, bytes]) -> int:
    """Authenticate (and with ``tmp``, decrypt into it) node groups ``groups``; the bytes done."""
    from pal import HostFile

    from .layout import DATA_ENTRIES_PER_MHT, ENTRY_SIZE, NODE_SIZE, mht_node_count
    from .nodebuf import SEALED_SIZE, NodeBuffer
    from .stream import _corrupted, _GroupCipher, _read_sealed, _Writer

    size, sealed = plan
    groups = [m for m in groups if m < mht_node_count(size)]  # runs were planned from the size on disk
    if not groups:
        return 0
    blob = open_entries(key_id, sealed)
    per_group = DATA_ENTRIES_PER_MHT * ENTRY_SIZE
    done = 0
    with open_input(src_fs, src) as reader:
        out = HostFile(tmp, writable=True) if tmp is not None else None
        writer = _Writer(out, NODE_SIZE, background=out is not None)
        try:
            cipher = _GroupCipher(writer)
            buf = NodeBuffer(SEALED_SIZE)
            for m in groups:
                got = _read_sealed(reader, m, size, buf)
                n = cipher.decrypt_group(buf, got, m, size, blob[m * per_group:(m + 1) * per_group])
                if n < 0:
                    raise _corrupted(src, -n - 1)
                done += n
        finally:
            writer.close()
            if out is not None:
                out.close()
    return done


@typed
def split_open_finish(src_fs: Any, src: str, dst: str | None, tmp: str | None, key_id: str, plan: tuple[int, bytes],
                      pieces: list[int], force: bool, sync: bool, strict: bool) -> dict[str, Any]:
    """Check the trailing nodes and rename the decrypted ``tmp`` to ``dst``."""
    key = _key(key_id)
    with open_input(src_fs, src) as reader:
        facts = _checked({"size": plan[0], **_facts(reader, key)}, src, strict)
    if dst is not None and tmp is not None:
        commit_local(tmp, dst, force=force, mode=_output_mode(src_fs, src, True), sync=sync)
    return facts
