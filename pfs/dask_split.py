"""The tasks that spread one large file's node groups over several workers (see :mod:`pfs.dask`).

Encrypt: :func:`split_begin` makes the temporary output its final size, :func:`split_piece`
encrypts runs of node groups straight into it and returns their node entries (sealed), and
:func:`split_finish` builds the MHT nodes from them, writes the metadata node and renames the
file into place. Decrypt/verify: :func:`split_open` checks the metadata and walks the MHT
nodes, :func:`split_open_piece` authenticates (and decrypts) runs of groups,
:func:`split_open_finish` checks the trailing nodes and renames the output.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from .dask_io import commit_local, input_stamp, open_input, refuse_existing
from .dask_tasks import _checked, _facts, _key, _output_mode, open_entries, seal_entries, typed


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
