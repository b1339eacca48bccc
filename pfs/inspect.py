"""Inspection of encrypted files: what the header says without a key, and more with one.

:func:`read_header_info` reads only the unauthenticated plaintext header (node 0) and the
on-disk size, so it works without the key (and tells nothing that is authenticated).
:func:`read_full_info` opens the file with the key and reports the authenticated metadata.
"""

from __future__ import annotations

from typing import Any

from .errors import NotEncryptedError
from .layout import (
    DATA_ENTRIES_PER_MHT,
    FLAG_UPDATE_PENDING,
    MD_USER_DATA_SIZE,
    NODE_SIZE,
    data_node_count,
    mht_node_count,
    node_count,
)
from .metadata import parse_header
from .storage import Storage

__all__ = ["implied_plaintext_range", "read_full_info", "read_header_info"]


def _data_nodes_for_total(total: int) -> int | None:
    """The number of data nodes of a file that is exactly ``total`` nodes long, if one exists."""
    if total < 3:
        return None
    # total = 1 + ceil(ndata / 96) + ndata, and that is increasing in ndata: search near the estimate.
    estimate = (total - 1) * DATA_ENTRIES_PER_MHT // (DATA_ENTRIES_PER_MHT + 1)
    for ndata in range(max(1, estimate - 2), estimate + 3):
        if 1 + (ndata - 1) // DATA_ENTRIES_PER_MHT + 1 + ndata == total:
            return ndata
    return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def implied_plaintext_range(nodes: int) -> tuple[int, int] | None:
    """The range ``(lo, hi)`` of plaintext sizes that a fresh file of ``nodes`` nodes can hold.

    ``None`` when no writer produces a file of exactly that many nodes (a node count that a
    truncated or extended file can have).
    """
    if nodes == 1:
        return (0, MD_USER_DATA_SIZE)
    ndata = _data_nodes_for_total(nodes)
    if ndata is None:
        return None
    return (MD_USER_DATA_SIZE + (ndata - 1) * NODE_SIZE + 1, MD_USER_DATA_SIZE + ndata * NODE_SIZE)


def read_header_info(storage: Storage) -> dict[str, Any]:
    """What the plaintext header and on-disk size of ``storage`` say, without the key.

    Returns a dict with ``format_version`` ("2.0" or "1.0"), ``major``, ``minor``, ``flags``,
    ``update_pending`` (bit 0: an interrupted write left the file needing recovery),
    ``disk_size``, ``disk_nodes``, ``whole_nodes`` (whether the size is a multiple of 4096),
    ``implied_plaintext_size`` (``[lo, hi]`` or ``None``) and ``node_count_note`` (a sentence
    explaining what the node count implies). Nothing here is authenticated.

    Raises :class:`~pfs.errors.NotEncryptedError` (empty file, no ``GRAFS_PF`` id) or
    :class:`~pfs.errors.UnsupportedVersionError`.
    """
    name = storage.name
    disk_size = storage.size()
    if disk_size < NODE_SIZE:
        raise NotEncryptedError(
            f"{name}: not an encrypted file (invalid header: {disk_size} bytes, shorter than one "
            f"{NODE_SIZE}-byte node)", path=name)
    header = parse_header(storage.read_at(0, NODE_SIZE), name)
    whole = disk_size % NODE_SIZE == 0
    nodes = disk_size // NODE_SIZE
    implied = implied_plaintext_range(nodes) if whole else None
    if not whole:
        note = (f"on-disk size is not a multiple of {NODE_SIZE}: the file was truncated or extended "
                "and will be rejected")
    elif implied is None:
        note = (f"{nodes} nodes is not the size of any complete file: it was truncated, or carries "
                "trailing nodes after a shrink")
    elif nodes == 1:
        note = f"1 node: plaintext of at most {MD_USER_DATA_SIZE} bytes, held in the metadata node"
    else:
        ndata = _data_nodes_for_total(nodes)
        assert ndata is not None
        nmht = nodes - 1 - ndata
        note = (f"{nodes} nodes = metadata + {nmht} MHT + {_plural(ndata, 'data node')}: plaintext of "
                f"{implied[0]}..{implied[1]} bytes (if not shrunk after it was written)")
    return {
        "path": name,
        "format_version": f"{header.major}.{header.minor}",
        "major": header.major,
        "minor": header.minor,
        "flags": header.flags,
        "update_pending": bool(header.flags & FLAG_UPDATE_PENDING),
        "disk_size": disk_size,
        "disk_nodes": nodes,
        "whole_nodes": whole,
        "implied_plaintext_size": list(implied) if implied else None,
        "node_count_note": note,
    }


def read_full_info(storage: Storage, key: bytes, expected_path: str | None = None) -> dict[str, Any]:
    """:func:`read_header_info` plus the authenticated metadata, opening the file with ``key``.

    Adds ``bound_path``, ``plaintext_size``, ``tree_depth`` (``None`` without an MHT),
    ``data_nodes``, ``mht_nodes``, ``nodes_needed`` and ``trailing_nodes`` (nodes on disk past
    what the size needs). Only the metadata node and the root MHT node are verified; use a full
    read to check every node. The typed errors of :meth:`ProtectedFile.open` propagate
    (wrong key, path mismatch, truncation, ...). ``storage`` is left open.
    """
    from .protected_file import ProtectedFile  # (cryptography: only reading with a key needs it)

    info = read_header_info(storage)
    pf = ProtectedFile.open(storage, key, expected_path, writable=False)
    # Not closing ``pf``: that would close the caller's storage; a read-only file holds nothing.
    size = pf.size
    needed = node_count(size)
    info.update({
        "bound_path": pf.bound_path,
        "plaintext_size": size,
        "tree_depth": pf.tree_depth,
        "data_nodes": data_node_count(size),
        "mht_nodes": mht_node_count(size),
        "nodes_needed": needed,
        "trailing_nodes": max(0, info["disk_nodes"] - needed),
    })
    return info
