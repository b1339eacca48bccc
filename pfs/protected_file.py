"""Random-access protected files: read, write, truncate, rename, flush, recovery.

A :class:`ProtectedFile` keeps an LRU cache of decrypted nodes. Dirty nodes (and, by
construction, every MHT ancestor of a dirty node) stay in memory until the next flush; only
clean nodes are evicted, and when the cache is full of dirty nodes it is flushed. A flush
re-encrypts exactly the dirty nodes, each under a fresh random key, then the metadata node
under a key derived from a fresh nonce.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pal import random_bytes

from .crypto import (
    InvalidTag,
    decrypt_into,
    derive_metadata_key,
    new_nonce,
    open_node,
    open_sealed,
    seal,
    seal_node,
)
from .errors import (
    CorruptedNodeError,
    FileClosedError,
    FileTooLargeError,
    NoSpaceError,
    NotEncryptedError,
    PartialNodeError,
    PathMismatchError,
    PfsError,
    ReadOnlyError,
    RecoveryFailedError,
    RecoveryNeededError,
    TruncatedFileError,
    WrongKeyError,
)
from .layout import (
    DATA_ENTRIES_PER_MHT,
    ENCRYPTED_PART_SIZE,
    ENTRY_SIZE,
    FILE_ID,
    FLAG_UPDATE_PENDING,
    IV,
    KEY_SIZE,
    MAC_SIZE,
    MAJOR_VERSION,
    MD_USER_DATA_SIZE,
    NODE_SIZE,
    OFF_FLAGS,
    RECOVERY_RECORD_SIZE,
    data_entry_offset,
    data_node_count,
    data_node_of,
    data_node_offset,
    data_physical,
    mht_depth,
    mht_entry_offset_in_parent,
    mht_node_count,
    mht_parent,
    mht_physical,
    node_count,
    plaintext_range_of_node,
)
from .metadata import Header, Metadata, encode_path, parse_header
from .nodebuf import sealed_scratch
from .storage import Storage

DEFAULT_CACHE_SIZE = 48
# The largest plaintext size (16 TiB). The format has no sparse files: every byte up to the size
# is a node on the host, so a size is refused at once past this (EFBIG) or past the storage's
# free space (ENOSPC), never by filling the host with zero nodes first.
MAX_FILE_SIZE = 1 << 44
ROOM_RECHECK = 64 << 20  # growth allowed past the last free-space check before asking again
PREFETCH_BYTES = 8 << 20  # how far ahead of sequential reads the host is asked to read
PREFETCH_AFTER = 1 << 20  # bytes read in sequence before prefetching starts


class _Node:
    """A decrypted MHT or data node held in the cache."""

    __slots__ = ("dirty", "index", "is_mht", "physical", "plain")

    def __init__(self, physical: int, is_mht: bool, index: int, plain: bytearray, dirty: bool):
        self.physical = physical
        self.is_mht = is_mht
        self.index = index
        self.plain = plain
        self.dirty = dirty


class ProtectedFile:
    """One open protected file over a :class:`~pfs.storage.Storage`.

    Use :meth:`create` or :meth:`open`; the object is a context manager (closing flushes).
    """

    def __init__(self, storage: Storage, key: bytes, *, writable: bool,
                 cache_size: int = DEFAULT_CACHE_SIZE, recovery: Storage | None = None):
        if len(key) != KEY_SIZE:
            raise ValueError("key must be 16 bytes")
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._storage = storage
        self._kdk = bytes(key)
        self._writable = writable
        self._cache_size = cache_size
        self._recovery = recovery
        self._cache: OrderedDict[int, _Node] = OrderedDict()
        self._meta = Metadata()
        self._meta_dirty = False
        self._committed_size = 0  # plaintext size as of the last completed flush (what is on disk)
        self._present_ndata = 0  # data nodes whose current content is on disk (or cached and dirty)
        self._disk_node0: bytes | None = None  # raw node 0 on disk (for the recovery journal)
        self._disk_header: Header | None = None
        self._read_end = -1  # plaintext offset where the last read ended
        self._sequential = 0  # bytes read in sequence up to there
        self._prefetched = 0  # host bytes asked for ahead of sequential reads
        self._room_until = 0  # host size known to fit at the last free-space check
        self.version = (MAJOR_VERSION, 0)
        self._closed = False
        self._failed: PfsError | None = None

    # ----------------------------------------------------------------- construction

    @property
    def name(self) -> str:
        """The storage's name, used in every error message."""
        return self._storage.name

    @classmethod
    def create(cls, storage: Storage, key: bytes, bound_path: str | bytes, *,
               cache_size: int = DEFAULT_CACHE_SIZE, recovery: Storage | None = None) -> ProtectedFile:
        """A new, empty protected file bound to ``bound_path`` (written out on the first flush)."""
        pf = cls(storage, key, writable=True, cache_size=cache_size, recovery=recovery)
        pf._meta.path = encode_path(bound_path, storage.name)
        pf._meta_dirty = True
        return pf

    @classmethod
    def open(cls, storage: Storage, key: bytes, expected_path: str | bytes | None = None, *,
             writable: bool = False, cache_size: int = DEFAULT_CACHE_SIZE,
             recovery: Storage | None = None) -> ProtectedFile:
        """Open an existing protected file, running the format's checks in order.

        ``expected_path``: the path the file must be bound to (``None`` skips the check).
        ``recovery``: the recovery journal; when given, an interrupted flush is rolled back.
        """
        pf = cls(storage, key, writable=writable, cache_size=cache_size, recovery=recovery)
        pf._load(expected_path)
        return pf

    def _load(self, expected_path: str | bytes | None) -> None:
        name = self.name
        disk_size = self._storage.size()
        if disk_size == 0 or disk_size % NODE_SIZE:
            # past one whole node, a file that starts with the file id was cut (or extended)
            if disk_size > NODE_SIZE and self._storage.read_at(0, len(FILE_ID)) == FILE_ID:
                raise PartialNodeError(
                    f"{name}: truncated or extended encrypted file: it starts with an encrypted file's "
                    f"header, but its size {disk_size} is not a multiple of {NODE_SIZE} (it ends "
                    f"{disk_size % NODE_SIZE} bytes into node {disk_size // NODE_SIZE})", path=name)
            raise self._not_encrypted(f"size {disk_size} is not a positive multiple of {NODE_SIZE}")
        node0 = self._storage.read_at(0, NODE_SIZE)
        header = parse_header(node0, name)
        if header.flags & FLAG_UPDATE_PENDING:
            if self._recovery is None:
                raise RecoveryNeededError(
                    f"{name}: an earlier write was interrupted; open it with recovery enabled "
                    "to roll back to the last complete version", path=name)
            self._replay_recovery()
            disk_size = self._storage.size()
            node0 = self._storage.read_at(0, NODE_SIZE)
            header = parse_header(node0, name)
            if header.flags & FLAG_UPDATE_PENDING:
                raise RecoveryFailedError(
                    f"{name}: recovery journal did not restore a consistent version", path=name)
        try:
            plain = open_sealed(derive_metadata_key(self._kdk, header.nonce), header.ciphertext, header.mac)
        except InvalidTag:
            raise WrongKeyError(f"{name}: wrong key or corrupted metadata", path=name) from None
        meta = Metadata.from_plaintext(plain)
        if expected_path is not None:
            want = encode_path(expected_path, name)
            if meta.path != want:
                found = meta.path.decode(errors="replace")
                expected = want.decode(errors="replace")
                raise PathMismatchError(
                    f"{name}: path mismatch: the file is bound to '{found}' but was opened as "
                    f"'{expected}'", path=name, expected=expected, found=found)
        needed = node_count(meta.size)
        if disk_size < needed * NODE_SIZE:
            raise TruncatedFileError(
                f"{name}: on-disk size {disk_size} is too small for the recorded plaintext size "
                f"{meta.size} ({needed} nodes needed, {disk_size // NODE_SIZE} present)", path=name)
        self._meta = meta
        self._committed_size = meta.size
        self._present_ndata = data_node_count(meta.size)
        self._disk_node0 = node0
        self._disk_header = header
        self.version = (header.major, header.minor)
        if header.major != MAJOR_VERSION and self._writable:
            self._meta_dirty = True  # migrate v1 to v2 on the next flush
        if meta.size > MD_USER_DATA_SIZE:
            self._get_mht(0)

    def _not_encrypted(self, why: str) -> PfsError:
        return NotEncryptedError(f"{self.name}: not an encrypted file (invalid header: {why})", path=self.name)

    # ----------------------------------------------------------------- public API

    @property
    def size(self) -> int:
        """Plaintext size in bytes."""
        return self._meta.size

    @property
    def metadata(self) -> Metadata:
        """The decrypted metadata as of now (bound path, size, root MHT key/tag, first 3072 bytes)."""
        return self._meta

    @property
    def bound_path(self) -> str:
        """The path the file is bound to."""
        return self._meta.path.decode(errors="replace")

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def tree_depth(self) -> int | None:
        """Depth of the deepest MHT node (0 = root only), or None when there is no MHT."""
        n = mht_node_count(self._meta.size)
        return None if n == 0 else mht_depth(n - 1)

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at end of file)."""
        self._check_open()
        if offset < 0 or size < 0:
            raise ValueError("offset and size must be non-negative")
        end = min(offset + size, self._meta.size)
        if offset >= end:
            return b""
        out = bytearray(end - offset)
        self.readinto(offset, memoryview(out))
        return bytes(out)

    def readinto(self, offset: int, buf: memoryview | bytearray) -> int:
        """Read into ``buf`` from ``offset``; return the number of bytes read."""
        self._check_open()
        view = memoryview(buf).cast("B")
        end = min(offset + len(view), self._meta.size)
        self._prefetch_ahead(offset, end)
        pos = offset
        while pos < end:
            if pos < MD_USER_DATA_SIZE:
                stop = min(end, MD_USER_DATA_SIZE)
                view[pos - offset:stop - offset] = self._meta.data[pos:stop]
                pos = stop
                continue
            d = data_node_of(pos)
            if d < self._present_ndata and data_physical(d) not in self._cache:
                pos = self._read_span(d, pos, end, view, offset)
                continue
            start = data_node_offset(d)
            stop = min(end, start + NODE_SIZE)
            node = self._get_data(d)
            view[pos - offset:stop - offset] = node.plain[pos - start:stop - start]
            self._shrink_cache()
            pos = stop
        return max(0, end - offset)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at ``offset`` (zero-filling any gap past the end); return its length."""
        self._check_writable()
        if offset < 0:
            raise ValueError("offset must be non-negative")
        view = memoryview(data).cast("B")
        if not view:
            return 0
        if offset + len(view) > self._meta.size:
            self._check_growth(offset + len(view))
        if offset > self._meta.size:
            self._grow(offset)
        end = offset + len(view)
        pos = offset
        while pos < end:
            if pos < MD_USER_DATA_SIZE:
                stop = min(end, MD_USER_DATA_SIZE)
                self._meta.data[pos:stop] = view[pos - offset:stop - offset]
                self._meta_dirty = True
            else:
                d = data_node_of(pos)
                start = data_node_offset(d)
                stop = min(end, start + NODE_SIZE)
                if pos == start and end - pos >= 2 * NODE_SIZE and self._recovery is None:
                    stop = pos + self._write_run(d, (end - pos) // NODE_SIZE, view[pos - offset:end - offset])
                    pos = stop
                    if pos > self._meta.size:
                        self._meta.size = pos
                    self._shrink_cache()
                    continue
                node = self._get_data(d, overwrite=pos == start and stop == start + NODE_SIZE)
                node.plain[pos - start:stop - start] = view[pos - offset:stop - offset]
                self._mark_dirty(node)
            pos = stop
            if pos > self._meta.size:
                self._meta.size = pos
                self._meta_dirty = True
            self._shrink_cache()
        return len(view)

    def truncate(self, size: int) -> None:
        """Set the plaintext size: growing writes zeros; shrinking flushes and cuts the host file."""
        self._check_writable()
        if size < 0:
            raise ValueError("size must be non-negative")
        if size > self._meta.size:
            self._check_growth(size)
            self._grow(size)
            return
        if size == self._meta.size:
            return
        self._meta.size = size
        self._meta_dirty = True
        if size < MD_USER_DATA_SIZE:
            self._meta.data[size:] = bytes(MD_USER_DATA_SIZE - size)
        keep_data = data_node_count(size)
        keep_mht = mht_node_count(size)
        for phys in [p for p, n in self._cache.items()
                     if n.index >= (keep_mht if n.is_mht else keep_data)]:
            del self._cache[phys]
        if keep_mht == 0:
            self._meta.root_key = bytes(KEY_SIZE)
            self._meta.root_mac = bytes(KEY_SIZE)
        self._flush_changes(sync=False)
        try:
            self._storage.truncate(node_count(size) * NODE_SIZE)
        except OSError as exc:
            self._failed = PfsError(f"{self.name}: truncate failed: {exc.strerror or exc}", path=self.name,
                                    errno=exc.errno or None)
            raise self._failed from exc

    def rename(self, new_path: str | bytes) -> None:
        """Bind the file to ``new_path`` (rewrites and flushes the metadata node)."""
        self._check_writable()
        self._meta.path = encode_path(new_path, self.name)
        self._meta_dirty = True
        self.flush()

    def flush(self, *, sync: bool = True) -> None:
        """Write every change to storage, and fsync it unless ``sync`` is false (a journaled
        flush always syncs: its write order depends on it)."""
        self._check_open()
        if self._writable:
            self._flush_changes(sync=sync)

    def close(self) -> None:
        """Flush (when writable) and close the storage. Safe to call twice."""
        if self._closed:
            return
        try:
            if self._writable and self._failed is None:
                self._flush_changes(sync=True)
        finally:
            self._closed = True
            self._cache.clear()
            self._storage.close()
            if self._recovery is not None:
                self._recovery.close()

    def __enter__(self) -> ProtectedFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("rw" if self._writable else "ro")
        return f"<ProtectedFile {self.name!r} size={self._meta.size} {state}>"

    # ----------------------------------------------------------------- nodes

    def _check_open(self) -> None:
        if self._closed:
            raise FileClosedError(f"{self.name}: file is closed", path=self.name)
        if self._failed is not None:
            raise FileClosedError(
                f"{self.name}: unusable after an earlier write failed ({self._failed})", path=self.name)

    def _check_writable(self) -> None:
        self._check_open()
        if not self._writable:
            raise ReadOnlyError(f"{self.name}: file is open read-only", path=self.name)

    def _corrupted(self, physical: int, why: str) -> CorruptedNodeError:
        lo, hi = plaintext_range_of_node(physical)
        return CorruptedNodeError(
            f"{self.name}: corrupted node {physical} (plaintext bytes {lo}-{hi - 1}): {why}",
            path=self.name, node=physical, plaintext_range=(lo, hi))

    def _decrypt_node(self, physical: int, key: bytes, mac: bytes) -> bytearray:
        ciphertext = self._storage.read_at(physical * NODE_SIZE, NODE_SIZE)
        if len(ciphertext) != NODE_SIZE:
            raise self._corrupted(physical, "missing from the file")
        try:
            return open_node(key, ciphertext, mac)
        except InvalidTag:
            raise self._corrupted(physical, "authentication failed") from None

    def _insert(self, node: _Node) -> _Node:
        self._cache[node.physical] = node
        return node

    def _get_mht(self, m: int) -> _Node:
        physical = mht_physical(m)
        node = self._cache.get(physical)
        if node is not None:
            self._cache.move_to_end(physical)
            return node
        if m >= mht_node_count(self._committed_size):
            return self._insert(_Node(physical, True, m, bytearray(NODE_SIZE), False))
        if m == 0:
            key, mac = self._meta.root_key, self._meta.root_mac
        else:
            parent = self._get_mht(mht_parent(m)).plain
            off = mht_entry_offset_in_parent(m)
            key, mac = bytes(parent[off:off + KEY_SIZE]), bytes(parent[off + KEY_SIZE:off + 32])
        return self._insert(_Node(physical, True, m, self._decrypt_node(physical, key, mac), False))

    def _get_data(self, d: int, *, overwrite: bool = False) -> _Node:
        """Data node ``d`` from the cache or storage (``overwrite``: the caller replaces all of
        it, so the old content isn't read)."""
        physical = data_physical(d)
        node = self._cache.get(physical)
        if node is not None:
            self._cache.move_to_end(physical)
            return node
        if overwrite or d >= self._present_ndata:
            return self._insert(_Node(physical, False, d, bytearray(NODE_SIZE), False))
        parent = self._get_mht(d // DATA_ENTRIES_PER_MHT).plain
        off = data_entry_offset(d)
        key, mac = bytes(parent[off:off + KEY_SIZE]), bytes(parent[off + KEY_SIZE:off + 32])
        return self._insert(_Node(physical, False, d, self._decrypt_node(physical, key, mac), False))

    def _mark_dirty(self, node: _Node) -> None:
        """Mark ``node`` and its MHT ancestors dirty (a dirty node's ancestors are always dirty)."""
        self._meta_dirty = True
        if node.dirty:
            return
        node.dirty = True
        m = node.index if node.is_mht else None
        if not node.is_mht:
            parent = self._get_mht(node.index // DATA_ENTRIES_PER_MHT)
            if parent.dirty:
                return
            parent.dirty = True
            m = parent.index
        while m:
            parent = self._get_mht(mht_parent(m))
            if parent.dirty:
                return
            parent.dirty = True
            m = parent.index

    def _shrink_cache(self, room: int = 0) -> None:
        """Evict least-recently-used clean nodes (until ``room`` more fit); flush first when only
        dirty ones are left."""
        cache = self._cache
        while len(cache) > max(0, self._cache_size - room):
            victim = next((p for p, n in cache.items() if not n.dirty), None)
            if victim is None:
                self._flush_changes(sync=False)
                continue
            del cache[victim]

    def _check_growth(self, new_size: int) -> None:
        """Refuse, before anything changes, a size past ``MAX_FILE_SIZE`` (EFBIG) or one whose
        nodes the storage has no room for (ENOSPC; storages that can't tell are not checked)."""
        name = self.name
        if new_size > MAX_FILE_SIZE:
            raise FileTooLargeError(
                f"{name}: a size of {new_size} bytes is past the largest protected file "
                f"({MAX_FILE_SIZE} bytes, 16 TiB)", path=name)
        end = node_count(new_size) * NODE_SIZE
        if end <= self._room_until:
            return  # checked already, not long ago
        host_size = self._storage.size()
        free_space = getattr(self._storage, "free_space", None)
        free = free_space() if free_space is not None and end > host_size else None
        if free is None:
            return
        if end - host_size > free:
            raise NoSpaceError(
                f"{name}: no space for a size of {new_size} bytes: it needs {end - host_size} more "
                f"bytes of storage, {free} are free", path=name)
        # small growths (appends) don't ask the host again until they pass this
        self._room_until = min(host_size + free, end + ROOM_RECHECK)

    def _grow(self, new_size: int) -> None:
        """Extend the plaintext with zeros up to ``new_size``, materializing every new node."""
        old = self._meta.size
        if old < MD_USER_DATA_SIZE:
            stop = min(new_size, MD_USER_DATA_SIZE)
            if any(self._meta.data[old:stop]):
                self._meta.data[old:stop] = bytes(stop - old)
        elif (old - MD_USER_DATA_SIZE) % NODE_SIZE:
            # bytes past the old end inside the last node may be stale: zero them
            d = data_node_of(old)
            node = self._get_data(d)
            inner = old - data_node_offset(d)
            if any(node.plain[inner:]):
                node.plain[inner:] = bytes(NODE_SIZE - inner)
                self._mark_dirty(node)
        first_new = data_node_count(old)
        for d in range(first_new, data_node_count(new_size)):
            node = self._get_data(d)
            self._mark_dirty(node)
            # the size must cover every materialized node before a flush can commit it
            self._meta.size = min(new_size, data_node_offset(d) + NODE_SIZE)
            self._shrink_cache()
        self._meta.size = new_size
        self._meta_dirty = True

    # ----------------------------------------------------------------- flush

    def _flush_changes(self, *, sync: bool) -> None:
        if not self._meta_dirty:
            return
        if self._failed is not None:
            raise self._failed
        meta = self._meta
        dirty = [n for n in self._cache.values() if n.dirty]
        # children before parents: data nodes first, then MHT nodes by decreasing index
        dirty.sort(key=lambda n: (n.is_mht, -n.index))
        writes: list[tuple[int, bytes | memoryview]] = []
        root_dirty = False
        keys = random_bytes(KEY_SIZE * len(dirty))  # a fresh key for every node, drawn at once
        for i, node in enumerate(dirty):
            key = keys[i * KEY_SIZE:(i + 1) * KEY_SIZE]
            ciphertext, mac = seal_node(key, node.plain)
            if not node.is_mht:
                parent = self._cache[mht_physical(node.index // DATA_ENTRIES_PER_MHT)].plain
                off = data_entry_offset(node.index)
                parent[off:off + 32] = key + mac
            elif node.index == 0:
                meta.root_key, meta.root_mac = key, mac
                root_dirty = True
            else:
                parent = self._cache[mht_physical(mht_parent(node.index))].plain
                off = mht_entry_offset_in_parent(node.index)
                parent[off:off + 32] = key + mac
            writes.append((node.physical, ciphertext))
        nonce = new_nonce()
        ciphertext, mac = seal(derive_metadata_key(self._kdk, nonce), meta.to_plaintext())
        header = Header(MAJOR_VERSION, 0, nonce, mac, 0, ciphertext)
        assert len(ciphertext) == ENCRYPTED_PART_SIZE
        node0 = header.to_node()
        journal = (self._recovery is not None and root_dirty and meta.size > MD_USER_DATA_SIZE
                   and self._disk_node0 is not None)
        try:
            if journal:
                self._write_journal(writes)
            self._write_nodes(writes)
            self._storage.write_at(0, node0)
            if sync or journal:
                self._storage.fsync()
        except OSError as exc:
            self._failed = PfsError(f"{self.name}: write failed: {exc.strerror or exc}", path=self.name,
                                    errno=exc.errno or None)
            raise self._failed from exc
        for node in dirty:
            node.dirty = False
        self._meta_dirty = False
        self._committed_size = meta.size
        self._present_ndata = data_node_count(meta.size)
        self._disk_node0 = node0
        self._disk_header = header

    def _write_nodes(self, writes: list[tuple[int, bytes]]) -> None:
        """Write sealed nodes, one call per run of consecutive physical nodes."""
        writev = getattr(self._storage, "writev_at", None)
        run: list[bytes] = []
        start = -1
        for physical, ciphertext in [*sorted(writes, key=lambda w: w[0]), (-1, b"")]:
            if run and physical == start + len(run):
                run.append(ciphertext)
                continue
            if run:
                if writev is not None and len(run) > 1:
                    writev(start * NODE_SIZE, [memoryview(c) for c in run])
                else:
                    self._storage.write_at(start * NODE_SIZE, run[0] if len(run) == 1 else b"".join(run))
            start, run = physical, [ciphertext]

    def _write_run(self, first: int, count: int, src: memoryview) -> int:
        """Seal up to ``count`` whole data nodes from ``first`` (one MHT group at most) straight
        to storage, each under a fresh key, and record their keys and tags in their MHT node,
        which becomes dirty. Only without a recovery journal: the journal's write order needs
        every node to change inside a flush. Returns the bytes written."""
        m = first // DATA_ENTRIES_PER_MHT
        last = min(first + count, (m + 1) * DATA_ENTRIES_PER_MHT)
        n = last - first
        for d in range(first, last):
            self._cache.pop(data_physical(d), None)  # replaced whole: a cached copy is stale
        parent = self._get_mht(m)
        self._mark_dirty(parent)
        keys = random_bytes(KEY_SIZE * n)
        sealed = memoryview(bytearray(n * (NODE_SIZE + MAC_SIZE)))
        step = NODE_SIZE + MAC_SIZE
        for i in range(n):
            AESGCM(keys[i * KEY_SIZE:(i + 1) * KEY_SIZE]).encrypt_into(
                IV, src[i * NODE_SIZE:(i + 1) * NODE_SIZE], None, sealed[i * step:(i + 1) * step])
        bodies = [sealed[i * step:i * step + NODE_SIZE] for i in range(n)]
        try:
            writev = getattr(self._storage, "writev_at", None)
            if writev is not None:
                writev(data_physical(first) * NODE_SIZE, bodies)
            else:
                self._storage.write_at(data_physical(first) * NODE_SIZE, b"".join(bodies))
        except OSError as exc:
            self._failed = PfsError(f"{self.name}: write failed: {exc.strerror or exc}", path=self.name,
                                    errno=exc.errno or None)
            raise self._failed from exc
        plain = parent.plain
        base = data_entry_offset(first)
        for i in range(n):
            e = base + i * ENTRY_SIZE
            plain[e:e + KEY_SIZE] = keys[i * KEY_SIZE:(i + 1) * KEY_SIZE]
            plain[e + KEY_SIZE:e + ENTRY_SIZE] = sealed[i * step + NODE_SIZE:(i + 1) * step]
        self._present_ndata = max(self._present_ndata, last)
        return n * NODE_SIZE

    def _read_span(self, first: int, pos: int, end: int, view: memoryview, base: int) -> int:
        """Read plaintext ``[pos, end)`` from data node ``first`` on, as far as the nodes are on
        disk, uncached and under one MHT node: one scatter read for all of them, whole nodes
        decrypted straight into ``view`` (which holds plaintext from ``base``), partly read ones
        (the first and last) into the cache. Returns where reading stopped. A node that fails
        authentication is zeroed in ``view`` before the error is raised."""
        m = first // DATA_ENTRIES_PER_MHT
        last = min(data_node_of(end - 1) + 1, (m + 1) * DATA_ENTRIES_PER_MHT, self._present_ndata)
        lo = data_physical(first)
        hi = lo + last - first  # a group's data nodes are contiguous on disk
        hi = self._first_cached(lo + 1, hi)  # a cached node may be newer than the disk: stop before it
        n = hi - lo
        entries = self._get_mht(m).plain
        sealed = sealed_scratch()
        got = self._read_bodies(lo * NODE_SIZE, sealed.bodies[:n])
        e = data_entry_offset(first)
        sealed.set_tags(entries, n, e)
        nodes = sealed.nodes
        node_start = data_node_offset(first)
        for i in range(n):
            if got < (i + 1) * NODE_SIZE:
                raise self._corrupted(lo + i, "missing from the file")
            node_end = node_start + NODE_SIZE
            key = entries[e:e + KEY_SIZE]
            if pos <= node_start and node_end <= end:
                target = view[node_start - base:node_end - base]
                try:
                    decrypt_into(key, nodes[i], target)
                except InvalidTag:
                    raise self._corrupted(lo + i, "authentication failed") from None
            else:
                plain = bytearray(NODE_SIZE)
                try:
                    decrypt_into(key, nodes[i], plain)
                except InvalidTag:
                    raise self._corrupted(lo + i, "authentication failed") from None
                a, b = max(pos, node_start), min(end, node_end)
                view[a - base:b - base] = plain[a - node_start:b - node_start]
                self._insert(_Node(lo + i, False, first + i, plain, False))
            node_start = node_end
            e += ENTRY_SIZE
        self._shrink_cache()
        return min(end, node_start)

    def _first_cached(self, lo: int, hi: int) -> int:
        """The first physical node in ``[lo, hi)`` that is in the cache, or ``hi``."""
        cache = self._cache
        if hi - lo <= len(cache):
            return next((p for p in range(lo, hi) if p in cache), hi)
        return min((p for p in cache if lo <= p < hi), default=hi)

    def _prefetch_ahead(self, offset: int, end: int) -> None:
        """Once reads are sequential, keep the host reading ``PREFETCH_BYTES`` ahead of them, so
        the disk works while we decrypt (the kernel's own read-ahead alone left cold reads of a
        freshly written file at about half the speed)."""
        if offset == self._read_end:
            self._sequential += end - offset
        else:
            self._sequential = self._prefetched = 0
        self._read_end = end
        if self._sequential < PREFETCH_AFTER or end <= MD_USER_DATA_SIZE:
            return
        host_end = (data_physical(data_node_of(end - 1)) + 1) * NODE_SIZE
        if host_end + PREFETCH_BYTES // 2 <= self._prefetched:
            return
        prefetch = getattr(self._storage, "prefetch", None)
        if prefetch is not None:
            start = max(self._prefetched, host_end)
            prefetch(start, host_end + PREFETCH_BYTES - start)
        self._prefetched = host_end + PREFETCH_BYTES

    def _read_bodies(self, offset: int, bodies: list[memoryview]) -> int:
        """Scatter-read consecutive nodes from ``offset`` into ``bodies``; return the bytes read."""
        readv = getattr(self._storage, "readv_at", None)
        if readv is not None:
            return readv(offset, bodies)
        data = self._storage.read_at(offset, len(bodies) * NODE_SIZE)
        for i, body in enumerate(bodies):
            chunk = data[i * NODE_SIZE:(i + 1) * NODE_SIZE]
            body[:len(chunk)] = chunk
        return len(data)

    def _write_journal(self, writes: list[tuple[int, bytes]]) -> None:
        """Gramine's write order: old images to the journal, then node 0 flagged "update pending"."""
        recovery = self._recovery
        assert recovery is not None and self._disk_node0 is not None and self._disk_header is not None
        on_disk = node_count(self._committed_size)
        recovery.truncate(0)
        offset = 0
        records = [p for p, _ in writes if p != 1 and p < on_disk]
        if on_disk > 1 and any(p == 1 for p, _ in writes):
            records.append(1)
        for physical in records:
            old = self._storage.read_at(physical * NODE_SIZE, NODE_SIZE)
            recovery.write_at(offset, struct.pack("<Q", physical) + old)
            offset += RECOVERY_RECORD_SIZE
        recovery.write_at(offset, struct.pack("<Q", 0) + self._disk_node0)
        recovery.fsync()
        flagged = bytearray(self._disk_header.to_node())
        flagged[OFF_FLAGS] = FLAG_UPDATE_PENDING
        self._storage.write_at(0, flagged)
        self._storage.fsync()

    def _replay_recovery(self) -> None:
        """Write the journal's old node images back, undoing an interrupted flush."""
        recovery = self._recovery
        assert recovery is not None
        name = self.name
        size = recovery.size()
        if size == 0 or size % RECOVERY_RECORD_SIZE:
            raise RecoveryFailedError(
                f"{name}: recovery journal is missing or damaged ({size} bytes, expected a non-zero "
                f"multiple of {RECOVERY_RECORD_SIZE}); the file can't be rolled back", path=name)
        for offset in range(0, size, RECOVERY_RECORD_SIZE):
            record = recovery.read_at(offset, RECOVERY_RECORD_SIZE)
            (physical,) = struct.unpack_from("<Q", record)
            self._storage.write_at(physical * NODE_SIZE, record[8:])
        self._storage.fsync()


__all__ = ["ProtectedFile", "DEFAULT_CACHE_SIZE", "MAX_FILE_SIZE"]
