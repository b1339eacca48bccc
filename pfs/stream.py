"""Streaming fast paths: encrypt or decrypt a whole file at once.

The random-access :class:`~pfs.protected_file.ProtectedFile` works node by node through a
cache; these functions instead process one *group* at a time (an MHT node and its 96 data
nodes, contiguous on disk), with every node key drawn in one batch and AES-GCM running
``encrypt_into``/``decrypt_into`` on reused buffers. The bytes on disk follow the same layout
as the random-access path.

MHT nodes are visited depth-first (pre-order to decrypt, post-order to encrypt), so only the
path from the root to the current node is held in memory, whatever the file size.

With ``jobs > 1`` the data groups are handed, in batches, to forked worker processes
(:mod:`pfs.forkpool`) that read and write the files themselves with ``pread``/``pwrite``; only
group numbers and the 32-byte key/tag entries (through a shared memory map) cross between
processes. MHT and
metadata nodes stay in the parent.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pal import HostFile, random_bytes

from .crypto import decrypt_into, derive_metadata_key, new_nonce, open_sealed, seal
from .errors import CorruptedNodeError, InputChangedError, TruncatedFileError
from .layout import (
    CHILD_ENTRIES_OFFSET,
    CHILD_MHT_ENTRIES,
    DATA_ENTRIES_PER_MHT,
    ENTRY_SIZE,
    IV,
    KEY_SIZE,
    MAC_SIZE,
    MAJOR_VERSION,
    MD_USER_DATA_SIZE,
    NODE_SIZE,
    data_node_offset,
    mht_node_count,
    mht_physical,
    node_count,
    plaintext_range_of_node,
)
from .metadata import Header, Metadata, encode_path
from .nodebuf import SEALED_SIZE, NodeBuffer
from .protected_file import ProtectedFile

Progress = Callable[[int], None] | None

GROUP_DATA_BYTES = DATA_ENTRIES_PER_MHT * NODE_SIZE
ENTRIES_BYTES = DATA_ENTRIES_PER_MHT * ENTRY_SIZE  # the data-entry half of an MHT node
BATCH_GROUPS = 256  # groups per parallel batch (~100 MB of plaintext, 768 KiB of entries)
MIN_PARALLEL_GROUPS = 8  # below this, forking workers costs more than it saves


def _preallocate(dst: HostFile, size: int) -> None:
    """Make ``dst`` exactly ``size`` bytes, with its blocks allocated up front where possible
    (writing into allocated blocks is several times cheaper than extending a file)."""
    dst.truncate(0)
    if size:
        preallocate = getattr(dst, "preallocate", None)
        if preallocate is not None:
            preallocate(size)
        else:
            dst.truncate(size)


def _dfs_preorder(nmht: int) -> Iterator[int]:
    """MHT node indices in depth-first pre-order (parents before children)."""
    stack = [0]
    while stack:
        m = stack.pop()
        yield m
        first = m * CHILD_MHT_ENTRIES + 1
        last = min(first + CHILD_MHT_ENTRIES, nmht)
        stack.extend(range(last - 1, first - 1, -1))


def _group_span(m: int, size: int) -> tuple[int, int, int]:
    """(plaintext offset, plaintext length, number of data nodes) of MHT node ``m``'s group."""
    start = data_node_offset(m * DATA_ENTRIES_PER_MHT)
    length = min(GROUP_DATA_BYTES, size - start)
    return start, length, (length + NODE_SIZE - 1) // NODE_SIZE


def _interleave_entries(keys: bytes, tags: bytes, count: int) -> bytearray:
    """The data-entry half of an MHT node: ``count`` (key, tag) pairs, zero after them."""
    entries = bytearray(ENTRIES_BYTES)
    for k in range(KEY_SIZE):
        entries[k:count * ENTRY_SIZE:ENTRY_SIZE] = keys[k::KEY_SIZE]
        entries[KEY_SIZE + k:count * ENTRY_SIZE:ENTRY_SIZE] = tags[k::MAC_SIZE]
    return entries


class _Writer:
    """Writes node buffers, either at once or from a background thread (``pwritev`` drops the
    GIL, so the copy into the page cache overlaps with the next group's AES-GCM)."""

    def __init__(self, dst: HostFile | None, stride: int, *, background: bool, depth: int = 3):
        self.dst = dst
        self.stride = stride
        self.background = background and dst is not None
        self.free: queue.SimpleQueue[NodeBuffer] = queue.SimpleQueue()
        for _ in range(depth if self.background else 1):
            self.free.put(NodeBuffer(stride))
        self.error: BaseException | None = None
        if self.background:
            self.jobs: queue.SimpleQueue[tuple[int, NodeBuffer, int, int] | threading.Event | None] = \
                queue.SimpleQueue()
            self.thread = threading.Thread(target=self._run, name="pfs-writer", daemon=True)
            self.thread.start()

    def buffer(self) -> NodeBuffer:
        """A free buffer (waits for the writer when all are in flight)."""
        if self.error is not None:
            raise self.error
        return self.free.get()

    def submit(self, offset: int, buf: NodeBuffer, count: int, length: int) -> None:
        """Write the bodies of the first ``count`` nodes of ``buf`` (``length`` bytes) at ``offset``."""
        if self.dst is None:
            self.free.put(buf)
        elif self.background:
            self.jobs.put((offset, buf, count, length))
        else:
            self._write(offset, buf, count, length)
            self.free.put(buf)

    def _write(self, offset: int, buf: NodeBuffer, count: int, length: int) -> None:
        assert self.dst is not None
        if buf.stride == NODE_SIZE:
            self.dst.write_at(offset, buf.view[:length])
        else:
            self.dst.writev_at(offset, buf.bodies[:count])

    def drain(self) -> None:
        """Wait until every submitted write is done; re-raise the first write error."""
        if self.background:
            done = threading.Event()
            self.jobs.put(done)
            done.wait()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if isinstance(job, threading.Event):
                job.set()
                continue
            offset, buf, count, length = job
            try:
                if self.error is None:
                    self._write(offset, buf, count, length)
            except BaseException as exc:  # re-raised in the producer
                self.error = exc
            self.free.put(buf)

    def close(self) -> None:
        """Wait for every write; re-raise the first write error."""
        if self.background:
            self.jobs.put(None)
            self.thread.join()
            self.background = False
        if self.error is not None:
            raise self.error


def _read_plain(src: HostFile, m: int, size: int, buf: NodeBuffer) -> int:
    """Read group ``m``'s plaintext into ``buf``, zero-padding the last node; return its length."""
    start, length, count = _group_span(m, size)
    got = src.readinto_at(start, buf.view[:length])
    if got != length:
        raise InputChangedError(f"{src.name}: the file shrank while it was being encrypted; nothing was "
                                "written: try again when nothing is writing to it", path=src.name)
    buf.view[length:count * NODE_SIZE] = bytes(count * NODE_SIZE - length)
    return length


def _read_sealed(src: HostFile, m: int, size: int, buf: NodeBuffer) -> int:
    """Read group ``m``'s data nodes into the slots of ``buf``; return the bytes read."""
    count = _group_span(m, size)[2]
    return src.readv_at((mht_physical(m) + 1) * NODE_SIZE, buf.bodies[:count])


class _GroupCipher:
    """Seals or opens the data nodes of one group at a time; output goes through a writer."""

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer

    def encrypt_group(self, plain: NodeBuffer, m: int, size: int) -> bytearray:
        """Encrypt group ``m``'s plaintext (read into ``plain``); return MHT node ``m``'s data entries."""
        count = _group_span(m, size)[2]
        sealed = self.writer.buffer()
        keys = random_bytes(KEY_SIZE * count)
        node_keys = [keys[j:j + KEY_SIZE] for j in range(0, KEY_SIZE * count, KEY_SIZE)]
        for key, pt, out in zip(node_keys, plain.nodes[:count], sealed.nodes, strict=False):
            AESGCM(key).encrypt_into(IV, pt, None, out)
        entries = _interleave_entries(keys, sealed.tags(count), count)
        self.writer.submit((mht_physical(m) + 1) * NODE_SIZE, sealed, count, count * NODE_SIZE)
        return entries

    def decrypt_group(self, sealed: NodeBuffer, got: int, m: int, size: int, entries: bytes | bytearray) -> int:
        """Authenticate group ``m``'s data nodes (``got`` bytes read into ``sealed``) and write
        their plaintext through the writer.

        Returns the plaintext length, or ``-(physical node + 1)`` of the first bad node.
        """
        start, length, count = _group_span(m, size)
        first_physical = mht_physical(m) + 1
        if got != count * NODE_SIZE:
            return -(first_physical + got // NODE_SIZE + 1)
        plain = self.writer.buffer()
        sealed.set_tags(entries, count)
        node_keys = [entries[j:j + KEY_SIZE] for j in range(0, ENTRY_SIZE * count, ENTRY_SIZE)]
        i = 0
        try:
            for i, (key, ct, out) in enumerate(zip(node_keys, sealed.nodes[:count], plain.nodes, strict=False)):  # noqa: B007 (read in except)
                decrypt_into(key, ct, out)
        except InvalidTag:
            self.writer.free.put(plain)
            return -(first_physical + i + 1)
        self.writer.submit(start, plain, count, length)
        return length


# ---------------------------------------------------------------------- worker processes

_worker_state: dict = {}


def _worker_cipher() -> _GroupCipher:
    """This worker's cipher, with its own background writer (threads don't survive fork)."""
    st = _worker_state
    if "cipher" not in st:
        st["cipher"] = _GroupCipher(_Writer(st["dst"], st["out_stride"], background=True))
    return st["cipher"]


def _worker_encrypt(task: tuple[int, list[int]]) -> list[int]:
    """Encrypt a run of groups; their entries go to the shared map. Returns their lengths."""
    first_slot, groups = task
    st = _worker_state
    cipher = _worker_cipher()
    lengths = []
    for slot, m in enumerate(groups, first_slot):
        lengths.append(_read_plain(st["src"], m, st["size"], st["inbuf"]))
        st["shm"][slot * ENTRIES_BYTES:(slot + 1) * ENTRIES_BYTES] = cipher.encrypt_group(st["inbuf"], m, st["size"])
    cipher.writer.drain()
    return lengths


def _worker_decrypt(task: tuple[int, list[int]]) -> list[int]:
    """Decrypt a run of groups with the entries in the shared map; see ``decrypt_group``."""
    first_slot, groups = task
    st = _worker_state
    cipher = _worker_cipher()
    results = []
    for slot, m in enumerate(groups, first_slot):
        got = _read_sealed(st["src"], m, st["size"], st["inbuf"])
        entries = st["shm"][slot * ENTRIES_BYTES:(slot + 1) * ENTRIES_BYTES]
        results.append(cipher.decrypt_group(st["inbuf"], got, m, st["size"], entries))
        if results[-1] < 0:
            break
    cipher.writer.drain()
    return results


_WORKER_FUNCS = (_worker_encrypt, _worker_decrypt)


class _Workers:
    """A pool of forked processes that share ``src``/``dst`` descriptors and an entries map."""

    def __init__(self, jobs: int, src: HostFile, dst: HostFile | None, size: int, out_stride: int):
        self.shm = mmap.mmap(-1, 2 * BATCH_GROUPS * ENTRIES_BYTES)  # two batches in flight
        in_stride = SEALED_SIZE if out_stride == NODE_SIZE else NODE_SIZE
        _worker_state.update(src=src, dst=dst, size=size, shm=self.shm, inbuf=NodeBuffer(in_stride),
                             out_stride=out_stride)
        from .forkpool import ForkPool  # only runs with jobs > 1 need it

        try:
            self.pool = ForkPool(jobs, _WORKER_FUNCS)
        finally:
            _worker_state.clear()
        self.jobs = jobs

    def submit(self, func: Callable[[tuple[int, list[int]]], list[int]], groups: list[int], base: int) -> list[int]:
        """Start ``func`` over one batch of ``groups`` (slots from ``base``), in runs of consecutive
        slots; return a handle for :meth:`collect`."""
        run = max(1, -(-len(groups) // (self.jobs * 4)))
        tasks = [(base + first, groups[first:first + run]) for first in range(0, len(groups), run)]
        return self.pool.submit(_WORKER_FUNCS.index(func), tasks)

    def collect(self, handle: list[int]) -> list[int]:
        """Wait for a batch; its results, flattened."""
        return self.pool.collect(handle)

    def batches(self, nmht: int) -> Iterator[tuple[int, list[int]]]:
        """(first slot, groups) of each batch in depth-first order, alternating halves of the map."""
        for i, groups in enumerate(_batches(_dfs_preorder(nmht), BATCH_GROUPS)):
            yield (i % 2) * BATCH_GROUPS, groups

    def entries(self, slot: int) -> bytes:
        return self.shm[slot * ENTRIES_BYTES:(slot + 1) * ENTRIES_BYTES]

    def set_entries(self, slot: int, entries: bytes | bytearray | memoryview) -> None:
        self.shm[slot * ENTRIES_BYTES:(slot + 1) * ENTRIES_BYTES] = entries

    def close(self) -> None:
        self.pool.close(kill=True)  # every batch was collected, or the run failed: nothing to wait for
        self.shm.close()


def _batches(items: Iterator[int], n: int) -> Iterator[list[int]]:
    batch: list[int] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------- encrypt

class _MhtBuilder:
    """Post-order completion of MHT nodes along the current root-to-node path."""

    def __init__(self, dst: HostFile):
        self.dst = dst
        self.stack: list[tuple[int, bytearray]] = []
        self.root: tuple[bytes, bytes] = (bytes(KEY_SIZE), bytes(MAC_SIZE))

    def push(self, m: int, entries: bytes | bytearray) -> None:
        """Start MHT node ``m`` (after finishing every node that is not one of its ancestors)."""
        parent = (m - 1) // CHILD_MHT_ENTRIES if m else -1
        while self.stack and self.stack[-1][0] != parent:
            self._finish()
        plain = bytearray(NODE_SIZE)
        plain[:ENTRIES_BYTES] = entries
        self.stack.append((m, plain))

    def finish_all(self) -> None:
        while self.stack:
            self._finish()

    def _finish(self) -> None:
        m, plain = self.stack.pop()
        key = random_bytes(KEY_SIZE)
        ciphertext, mac = seal(key, plain)
        self.dst.write_at(mht_physical(m) * NODE_SIZE, ciphertext)
        if m == 0:
            self.root = (key, mac)
        else:
            parent_plain = self.stack[-1][1]
            off = CHILD_ENTRIES_OFFSET + ((m - 1) % CHILD_MHT_ENTRIES) * ENTRY_SIZE
            parent_plain[off:off + KEY_SIZE] = key
            parent_plain[off + KEY_SIZE:off + ENTRY_SIZE] = mac


def _stamp(src: HostFile) -> tuple[int, int] | None:
    """(size, modification time) of ``src`` where the storage has a descriptor."""
    fd = getattr(src, "fd", None)
    if fd is None:
        return None
    st = os.fstat(fd)
    return st.st_size, st.st_mtime_ns


def encrypt_stream(src: HostFile, dst: HostFile, key: bytes, bound_path: str, *, jobs: int = 1,
                   progress: Progress = None) -> int:
    """Encrypt all of ``src`` (plaintext) into ``dst`` (writable, empty); return the plaintext size.

    ``bound_path`` is embedded in the metadata node. ``jobs > 1`` uses that many worker
    processes for the data nodes of large files. ``src`` must not change meanwhile: a size or
    modification time that differs at the end raises :class:`~pfs.errors.InputChangedError`
    before the metadata node is written (``dst`` then holds no valid file).
    """
    if len(key) != KEY_SIZE:
        raise ValueError("key must be 16 bytes")
    meta = Metadata(path=encode_path(bound_path, dst.name))
    stamp = _stamp(src)
    size = src.size()
    meta.size = size
    head = src.read_at(0, min(size, MD_USER_DATA_SIZE))
    meta.data[:len(head)] = head
    if progress:
        progress(len(head))
    nmht = mht_node_count(size)
    _preallocate(dst, node_count(size) * NODE_SIZE)
    if nmht:
        builder = _MhtBuilder(dst)
        parallel = jobs > 1 and nmht >= MIN_PARALLEL_GROUPS
        workers = _Workers(jobs, src, dst, size, SEALED_SIZE) if parallel else None
        try:
            if workers is None:
                writer = _Writer(dst, SEALED_SIZE, background=True)
                cipher = _GroupCipher(writer)
                plain = NodeBuffer(NODE_SIZE)
                try:
                    for m in _dfs_preorder(nmht):
                        done = _read_plain(src, m, size, plain)
                        builder.push(m, cipher.encrypt_group(plain, m, size))
                        if progress:
                            progress(done)
                finally:
                    writer.close()
            else:
                # batch k+1 runs in the workers while the parent builds batch k's MHT nodes
                pending = None
                for base, groups in itertools.chain(workers.batches(nmht), [(0, [])]):
                    handle = workers.submit(_worker_encrypt, groups, base) if groups else None
                    if pending is not None:
                        done_base, done_groups, done_handle = pending
                        done = workers.collect(done_handle)
                        for slot, m in enumerate(done_groups, done_base):
                            builder.push(m, workers.entries(slot))
                        if progress:
                            progress(sum(done))
                    pending = (base, groups, handle)
        finally:
            if workers is not None:
                workers.close()
        builder.finish_all()
        meta.root_key, meta.root_mac = builder.root
    if _stamp(src) != stamp or src.size() != size:
        raise InputChangedError(
            f"{src.name}: the file changed while it was being encrypted (size {size} at the start, "
            f"{src.size()} at the end); the output would be neither version: try again when nothing is "
            "writing to it", path=src.name)
    write_metadata(dst, key, meta)
    return size


def write_metadata(dst: HostFile, key: bytes, meta: Metadata) -> None:
    """Seal ``meta`` under ``key`` (with a fresh nonce) and write it as node 0 of ``dst``: the
    last write of an encryption, once every data and MHT node is in place."""
    nonce = new_nonce()
    ciphertext, mac = seal(derive_metadata_key(key, nonce), meta.to_plaintext())
    dst.write_at(0, Header(MAJOR_VERSION, 0, nonce, mac, 0, ciphertext).to_node())


# ---------------------------------------------------------------------- decrypt

def decrypt_stream(src: HostFile, dst: HostFile | None, key: bytes, expected_path: str | None, *,
                   jobs: int = 1, progress: Progress = None) -> int:
    """Decrypt and authenticate all of ``src`` into ``dst`` (or only verify when ``dst`` is None).

    Runs the same checks as :meth:`ProtectedFile.open`, then every node. Returns the plaintext
    size. Raises the typed errors of :mod:`pfs.errors`.

    What reaches ``dst``: only authenticated plaintext, ever. The metadata, path and size checks
    run before ``dst`` is touched (a failure there leaves it as it was); after that, a group of
    data nodes is written only once all of its nodes have passed authentication, so a bad node
    keeps its group out of ``dst``, but groups before it may already have been written. On any
    error from then on ``dst`` is emptied (truncated to 0 bytes) before the error is raised. A
    caller that must not leave even that on disk (a crash can come before the emptying) writes
    into a temporary file and removes it on failure, as ``pfs decrypt`` does.
    """
    pf = ProtectedFile.open(src, key, expected_path)
    try:
        return _decrypt_nodes(pf, src, dst, jobs=jobs, progress=progress)
    except BaseException:
        if dst is not None:
            with contextlib.suppress(OSError):
                dst.truncate(0)
        raise


def _decrypt_nodes(pf: ProtectedFile, src: HostFile, dst: HostFile | None, *, jobs: int,
                   progress: Progress) -> int:
    meta = pf.metadata
    size = meta.size
    name = src.name
    if dst is not None:
        _preallocate(dst, size)
        dst.write_at(0, meta.data[:min(size, MD_USER_DATA_SIZE)])
    if progress:
        progress(min(size, MD_USER_DATA_SIZE))
    nmht = mht_node_count(size)
    if not nmht:
        return size
    if src.size() < node_count(size) * NODE_SIZE:  # re-checked: the file may change under us
        raise TruncatedFileError(f"{name}: on-disk size too small for the recorded size", path=name)
    walker = _MhtWalker(src, meta, name)
    parallel = jobs > 1 and nmht >= MIN_PARALLEL_GROUPS
    workers = _Workers(jobs, src, dst, size, NODE_SIZE) if parallel else None
    try:
        if workers is None:
            writer = _Writer(dst, NODE_SIZE, background=True)
            cipher = _GroupCipher(writer)
            sealed = NodeBuffer(SEALED_SIZE)
            try:
                for m in _dfs_preorder(nmht):
                    got = _read_sealed(src, m, size, sealed)
                    done = cipher.decrypt_group(sealed, got, m, size, walker.visit(m))
                    if done < 0:
                        raise _corrupted(name, -done - 1)
                    if progress:
                        progress(done)
            finally:
                writer.close()
        else:
            # the parent opens batch k+1's MHT nodes while the workers check batch k
            pending = None
            for base, groups in itertools.chain(workers.batches(nmht), [(0, [])]):
                handle = None
                if groups:
                    for slot, m in enumerate(groups, base):
                        workers.set_entries(slot, walker.visit(m))
                    handle = workers.submit(_worker_decrypt, groups, base)
                if pending is not None:
                    results = workers.collect(pending)
                    bad = [-r - 1 for r in results if r < 0]
                    if bad:
                        raise _corrupted(name, min(bad))
                    if progress:
                        progress(sum(results))
                pending = handle
    finally:
        if workers is not None:
            workers.close()
    return size


def _corrupted(name: str, physical: int) -> CorruptedNodeError:
    lo, hi = plaintext_range_of_node(physical)
    return CorruptedNodeError(
        f"{name}: corrupted node {physical} (plaintext bytes {lo}-{hi - 1}): authentication failed",
        path=name, node=physical, plaintext_range=(lo, hi))


class _MhtWalker:
    """Pre-order decryption of MHT nodes, keeping only the pending child entries."""

    def __init__(self, src: HostFile, meta: Metadata, name: str):
        self.src = src
        self.nmht = mht_node_count(meta.size)
        self.name = name
        self.pending: dict[int, bytes] = {0: meta.root_key + meta.root_mac}

    def visit(self, m: int) -> bytes:
        """Decrypt MHT node ``m``; return its data-entry half."""
        entry = self.pending.pop(m)
        physical = mht_physical(m)
        ciphertext = self.src.read_at(physical * NODE_SIZE, NODE_SIZE)
        try:
            plain = open_sealed(entry[:KEY_SIZE], ciphertext, entry[KEY_SIZE:])
        except InvalidTag:
            raise _corrupted(self.name, physical) from None
        first = m * CHILD_MHT_ENTRIES + 1
        for child in range(first, min(first + CHILD_MHT_ENTRIES, self.nmht)):
            off = CHILD_ENTRIES_OFFSET + (child - first) * ENTRY_SIZE
            self.pending[child] = plain[off:off + ENTRY_SIZE]
        return plain[:ENTRIES_BYTES]


__all__ = ["decrypt_stream", "encrypt_stream", "write_metadata"]
