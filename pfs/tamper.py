"""Corrupted variants of an encrypted file, for testing readers (modelled on Gramine's pf_tamper).

:func:`make_tampered_variants` writes, next to each other in an output folder, copies of one
valid encrypted file that are each damaged in one way: cut at every field boundary of the
metadata, root MHT and first data nodes, extended past a node boundary, with a header field
changed, with a field of the encrypted metadata changed and the metadata re-sealed under the
real key (so that it passes the metadata tag), with an entry of the root MHT node changed and
the chain re-sealed, or with a data node changed or swapped.

Every variant written is one that a correct reader rejects when it opens the file with the
original's bound path as the expected path and reads all of it; variants that would not be
rejected for this particular file (an entry that the file does not use, a cut at or past its
end) are skipped. The ``meta_enc_filename_*`` variants are detectable only through that path
check. Output names are ``<input basename>.<variant>``, as pf_tamper names them.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from pal import HostFile

from .crypto import InvalidTag, derive_metadata_key, new_key, new_nonce, open_sealed, seal
from .errors import PfsError, WrongKeyError
from .layout import (
    CHILD_ENTRIES_OFFSET,
    ENCRYPTED_PART_SIZE,
    ENTRY_SIZE,
    HEADER_SIZE,
    HEADER_SIZE_V1,
    KEY_SIZE,
    MAC_SIZE,
    MAJOR_VERSION,
    NODE_SIZE,
    OFF_META_MAC,
    OFF_NONCE,
    data_node_count,
    mht_node_count,
    node_count,
)
from .metadata import Header, Metadata, parse_header
from .protected_file import ProtectedFile
from .storage import BorrowedStorage

__all__ = ["make_tampered_variants", "plan_variants", "Variant"]

U64_MAX = (1 << 64) - 1
_COPY_CHUNK = 1 << 20

# Field boundaries of the metadata node (v2 layout), as pf_tamper cuts them.
_EP = HEADER_SIZE  # start of the encrypted part
_PAD = HEADER_SIZE + ENCRYPTED_PART_SIZE  # start of the padding
_DATA_ENTRIES = CHILD_ENTRIES_OFFSET  # bytes of data-node entries in an MHT node


@dataclass
class Variant:
    """One corrupted copy: the first ``size`` bytes of the source (zero-extended), then patches."""

    suffix: str
    description: str
    size: int
    patches: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class _Source:
    """What the planner knows about the valid source file."""

    disk_size: int
    header: Header
    meta: Metadata
    key: bytes = field(repr=False)  # the wrap key: never in a repr
    node0: bytes = field(repr=False)
    root_mht: bytes | None = field(repr=False)  # plaintext of the root MHT node (node keys), when there is one
    encrypted_part_offset: int

    @property
    def size(self) -> int:
        return self.meta.size


def _xor(data: bytes, index: int, mask: int) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def _seal_metadata(src: _Source, meta: Metadata, *, nonce: bytes | None = None,
                   key_nonce: bytes | None = None) -> bytes:
    """A v2 metadata node holding ``meta``, sealed under the real wrap key.

    The metadata key is derived from ``key_nonce`` (default: ``nonce``); ``nonce`` (default:
    fresh) is what the header stores.
    """
    stored = nonce if nonce is not None else new_nonce()
    metadata_key = derive_metadata_key(src.key, key_nonce if key_nonce is not None else stored)
    ciphertext, mac = seal(metadata_key, meta.to_plaintext())
    return Header(MAJOR_VERSION, 0, stored, mac, src.header.flags, ciphertext).to_node()


def _copy_meta(meta: Metadata) -> Metadata:
    return Metadata(path=meta.path, size=meta.size, root_key=meta.root_key, root_mac=meta.root_mac,
                    data=bytearray(meta.data))


def _plan_truncations(src: _Source) -> list[Variant]:
    cuts = [
        ("trunc_meta_plain_0", 0, "empty file"),
        ("trunc_meta_plain_1", 4, "cut inside the file id"),
        ("trunc_meta_plain_2", 8, "cut after the file id"),
        ("trunc_meta_plain_3", 9, "cut after the major version"),
        ("trunc_meta_plain_4", 10, "cut after the minor version"),
        ("trunc_meta_plain_5", 26, "cut inside the key-derivation nonce"),
        ("trunc_meta_plain_6", 42, "cut after the nonce"),
        ("trunc_meta_plain_7", 50, "cut inside the metadata tag"),
        ("trunc_meta_enc_0", _EP, "cut at the start of the encrypted metadata"),
        ("trunc_meta_enc_1", _EP + 386, "cut inside the encrypted path"),
        ("trunc_meta_enc_2", _EP + 772, "cut after the encrypted path"),
        ("trunc_meta_enc_3", _EP + 776, "cut inside the encrypted size"),
        ("trunc_meta_enc_4", _EP + 780, "cut after the encrypted size"),
        ("trunc_meta_enc_5", _EP + 788, "cut inside the encrypted root MHT key"),
        ("trunc_meta_enc_6", _EP + 796, "cut after the encrypted root MHT key"),
        ("trunc_meta_enc_7", _EP + 804, "cut inside the encrypted root MHT tag"),
        ("trunc_meta_enc_8", _EP + 812, "cut after the encrypted root MHT tag"),
        ("trunc_meta_enc_9", _EP + 812 + 1536, "cut inside the data held in the metadata node"),
        ("trunc_meta_pad_0", _PAD, "cut at the start of the metadata padding"),
        ("trunc_meta_pad_1", _PAD + (NODE_SIZE - _PAD) // 2, "cut inside the metadata padding"),
        ("trunc_mht_0", NODE_SIZE, "cut after the metadata node (no root MHT node)"),
        ("trunc_mht_1", NODE_SIZE + KEY_SIZE // 2, "cut inside the root MHT's data entry 0 key"),
        ("trunc_mht_2", NODE_SIZE + KEY_SIZE, "cut after the root MHT's data entry 0 key"),
        ("trunc_mht_3", NODE_SIZE + KEY_SIZE + MAC_SIZE // 2, "cut inside the root MHT's data entry 0 tag"),
        ("trunc_mht_4", NODE_SIZE + ENTRY_SIZE, "cut after the root MHT's data entry 0"),
        ("trunc_mht_5", NODE_SIZE + _DATA_ENTRIES, "cut after the root MHT's data entries"),
        ("trunc_mht_6", NODE_SIZE + _DATA_ENTRIES + KEY_SIZE // 2,
         "cut inside the root MHT's child entry 0 key"),
        ("trunc_mht_7", NODE_SIZE + _DATA_ENTRIES + KEY_SIZE, "cut after the root MHT's child entry 0 key"),
        ("trunc_mht_8", NODE_SIZE + _DATA_ENTRIES + KEY_SIZE + MAC_SIZE // 2,
         "cut inside the root MHT's child entry 0 tag"),
        ("trunc_mht_9", NODE_SIZE + _DATA_ENTRIES + ENTRY_SIZE, "cut after the root MHT's child entry 0"),
        ("trunc_data_0", 2 * NODE_SIZE, "cut after the root MHT node (no data node)"),
        ("trunc_data_1", 2 * NODE_SIZE + NODE_SIZE // 2, "cut inside data node 0"),
        ("trunc_data_2", 3 * NODE_SIZE, "cut after data node 0"),
        ("trunc_data_3", 3 * NODE_SIZE + NODE_SIZE // 2, "cut inside data node 1"),
    ]
    needed = node_count(src.size) * NODE_SIZE
    out = []
    for suffix, size, what in cuts:
        # A cut inside a node is always invalid; a cut on a node boundary only when it drops a
        # node that the recorded size needs (trailing extra nodes are allowed by the format).
        if (size % NODE_SIZE and size < src.disk_size) or (size % NODE_SIZE == 0 and size < needed):
            out.append(Variant(suffix, f"{what}: file cut to {size} bytes", size))
    out.append(Variant("extend_0", f"one zero byte appended ({src.disk_size + 1} bytes)", src.disk_size + 1))
    out.append(Variant("extend_1", f"half a node of zeros appended ({src.disk_size + NODE_SIZE // 2} bytes)",
                       src.disk_size + NODE_SIZE // 2))
    return out


def _plan_header(src: _Source) -> list[Variant]:
    d = src.disk_size
    node0 = src.node0
    ep = src.encrypted_part_offset
    out = [
        Variant("meta_plain_id_0", "file id zeroed", d, [(0, bytes(8))]),
        Variant("meta_plain_id_1", "file id set to all 0xff", d, [(0, b"\xff" * 8)]),
        Variant("meta_plain_version_0", "major version set to 0", d, [(8, b"\x00")]),
        Variant("meta_plain_version_1", "major version set to 255", d, [(8, b"\xff")]),
    ]
    for i, (index, mask) in enumerate(((0, 0x01), (31, 0xFE))):
        off = OFF_NONCE + index
        patched = _xor(node0[off:off + 1], 0, mask)
        out.append(Variant(f"meta_plain_nonce_{i}", f"key-derivation nonce byte {index} changed", d,
                           [(off, patched)]))
        nonce = _xor(src.header.nonce, index, mask)
        fixed = _seal_metadata(src, src.meta, nonce=nonce, key_nonce=src.header.nonce)
        out.append(Variant(f"meta_plain_nonce_{i}_fixed",
                           f"key-derivation nonce byte {index} changed, metadata re-sealed under the "
                           "key of the original nonce", d, [(0, fixed)]))
    for i, index in enumerate((0, MAC_SIZE - 1)):
        off = OFF_META_MAC + index
        out.append(Variant(f"meta_plain_mac_{i}", f"metadata tag byte {index} changed", d,
                           [(off, _xor(node0[off:off + 1], 0, 0xFE))]))
    for i, (index, mask) in enumerate(((0, 0x01), (ENCRYPTED_PART_SIZE - 1, 0xFE))):
        off = ep + index
        out.append(Variant(f"meta_plain_encrypted_{i}", f"ciphertext byte {index} of the encrypted "
                           "metadata changed", d, [(off, _xor(node0[off:off + 1], 0, mask))]))
    return out


def _plan_metadata(src: _Source) -> list[Variant]:
    d = src.disk_size
    out = []

    def resealed(suffix: str, what: str, change: Callable[[Metadata], None]) -> None:
        meta = _copy_meta(src.meta)
        change(meta)
        out.append(Variant(suffix, f"{what}; metadata re-sealed with the real key", d,
                           [(0, _seal_metadata(src, meta))]))

    path = src.meta.path
    if path:
        resealed("meta_enc_filename_0", "bound path emptied", lambda m: setattr(m, "path", b""))
    resealed("meta_enc_filename_1", "first byte of the bound path changed",
             lambda m: setattr(m, "path", _xor(path or b"\0", 0, 0x01)))
    if len(path) > 1:
        resealed("meta_enc_filename_2", "last character of the bound path dropped",
                 lambda m: setattr(m, "path", path[:-1]))
    disk_nodes = d // NODE_SIZE
    sizes = [(d - NODE_SIZE, "on-disk size - 4096"), (d - 1, "on-disk size - 1"),
             (d + NODE_SIZE, "on-disk size + 4096"), (U64_MAX, "2**64 - 1"), (d + 1, "on-disk size + 1")]
    for i, (new_size, label) in enumerate(sizes):
        if new_size >= 0 and node_count(new_size) > disk_nodes:
            resealed(f"meta_enc_size_{i}", f"recorded plaintext size set to {new_size} ({label})",
                     lambda m, s=new_size: setattr(m, "size", s))
    if src.root_mht is not None:
        for field_name, label in (("root_key", "key"), ("root_mac", "tag")):
            for i, (index, mask) in enumerate(((0, 0x01), (KEY_SIZE - 1, 0xFE))):
                resealed(f"meta_enc_mht_{label if label == 'key' else 'mac'}_{i}",
                         f"byte {index} of the root MHT {label} changed",
                         lambda m, f=field_name, x=index, k=mask: setattr(m, f, _xor(getattr(m, f), x, k)))
    return out


def _plan_mht(src: _Source) -> list[Variant]:
    if src.root_mht is None:
        return []
    d = src.disk_size
    ndata = data_node_count(src.size)
    nmht = mht_node_count(src.size)
    out = []

    def entry(kind: str, j: int) -> int:
        return (CHILD_ENTRIES_OFFSET if kind == "child" else 0) + j * ENTRY_SIZE

    def resealed(suffix: str, what: str, change: Callable[[bytearray], None]) -> None:
        assert src.root_mht is not None
        plain = bytearray(src.root_mht)
        change(plain)
        key = new_key()
        ciphertext, mac = seal(key, plain)
        meta = _copy_meta(src.meta)
        meta.root_key, meta.root_mac = key, mac
        out.append(Variant(suffix, f"{what}; root MHT and metadata re-sealed", d,
                           [(0, _seal_metadata(src, meta)), (NODE_SIZE, ciphertext)]))

    def flip(kind: str, j: int, part: str) -> Callable[[bytearray], None]:
        def change(plain: bytearray) -> None:
            plain[entry(kind, j) + (0 if part == "key" else KEY_SIZE)] ^= 1
        return change

    def swap(kind: str) -> Callable[[bytearray], None]:
        def change(plain: bytearray) -> None:
            a, b = entry(kind, 0), entry(kind, 1)
            plain[a:a + ENTRY_SIZE], plain[b:b + ENTRY_SIZE] = plain[b:b + ENTRY_SIZE], plain[a:a + ENTRY_SIZE]
        return change

    # (suffix, kind, entry index, part, entries the file must use for the change to matter)
    flips = [
        ("mht_0", "data", 0, "key", ndata >= 1),
        ("mht_1", "data", 0, "tag", ndata >= 1),
        ("mht_2", "child", 0, "key", nmht >= 2),
        ("mht_3", "child", 0, "tag", nmht >= 2),
        ("mht_4", "data", 95, "key", ndata >= 96),
        ("mht_5", "data", 95, "tag", ndata >= 96),
        ("mht_6", "child", 31, "key", nmht >= 33),
        ("mht_7", "child", 31, "tag", nmht >= 33),
    ]
    for suffix, kind, j, part, applies in flips:
        if applies:
            resealed(suffix, f"root MHT {kind} entry {j}: {part} changed", flip(kind, j, part))
    if ndata >= 2:
        resealed("mht_8", "root MHT data entries 0 and 1 swapped", swap("data"))
    if nmht >= 3:
        resealed("mht_9", "root MHT child entries 0 and 1 swapped", swap("child"))
    return out


def _plan_data(src: _Source, read_node: Callable[[int], bytes]) -> list[Variant]:
    ndata = data_node_count(src.size)
    if ndata == 0:
        return []
    d = src.disk_size
    first = read_node(2)
    out = [
        Variant("data_0", "first byte of data node 0 changed", d, [(2 * NODE_SIZE, _xor(first[:1], 0, 1))]),
        Variant("data_1", "last byte of data node 0 changed", d,
                [(3 * NODE_SIZE - 1, _xor(first[-1:], 0, 1))]),
    ]
    if ndata >= 2:
        second = read_node(3)
        out.append(Variant("data_2", "data nodes 0 and 1 swapped", d,
                           [(2 * NODE_SIZE, second), (3 * NODE_SIZE, first)]))
    return out


def _load_source(storage: HostFile, key: bytes) -> _Source:
    name = storage.name
    disk_size = storage.size()
    node0 = storage.read_at(0, NODE_SIZE)
    header = parse_header(node0, name)
    try:
        plain = open_sealed(derive_metadata_key(key, header.nonce), header.ciphertext, header.mac)
    except InvalidTag:
        raise WrongKeyError(f"{name}: wrong key or corrupted metadata", path=name) from None
    meta = Metadata.from_plaintext(plain)
    root = None
    if mht_node_count(meta.size):
        root = open_sealed(meta.root_key, storage.read_at(NODE_SIZE, NODE_SIZE), meta.root_mac)
    ep = HEADER_SIZE if header.major == MAJOR_VERSION else HEADER_SIZE_V1
    return _Source(disk_size, header, meta, bytes(key), node0, root, ep)


def plan_variants(storage: HostFile, key: bytes) -> list[Variant]:
    """The variants that apply to the valid encrypted file in ``storage`` (nothing is written).

    Raises the typed errors of :meth:`ProtectedFile.open` when the source itself is not a valid
    encrypted file under ``key``.
    """
    # Validate with the real reader first (typed errors, root MHT check, truncation check).
    ProtectedFile.open(BorrowedStorage(storage, readonly=True), key, None)
    src = _load_source(storage, key)
    return (_plan_truncations(src) + _plan_header(src) + _plan_metadata(src) + _plan_mht(src)
            + _plan_data(src, lambda n: storage.read_at(n * NODE_SIZE, NODE_SIZE)))


def _copy_prefix(src_fd: int, dst_fd: int, length: int) -> None:
    """Copy the first ``length`` bytes of ``src_fd`` to the start of ``dst_fd``."""
    done = 0
    while done < length:
        n = min(_COPY_CHUNK, length - done)
        try:
            copied = os.copy_file_range(src_fd, dst_fd, n, done, done)
        except OSError:
            copied = 0
        if copied <= 0:
            chunk = os.pread(src_fd, n, done)
            if not chunk:
                raise PfsError(f"source shrank while copying (at byte {done})", errno=_errno.EIO)
            view = memoryview(chunk)
            offset = done
            while view:
                w = os.pwrite(dst_fd, view, offset)
                view = view[w:]
                offset += w
            copied = len(chunk)
        done += copied


def _write_variant(source: HostFile, variant: Variant, target: str, mode: int) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        _copy_prefix(source.fd, fd, min(variant.size, source.size()))
        os.ftruncate(fd, variant.size)
        for offset, data in variant.patches:
            data = data[:max(0, variant.size - offset)]
            if data:
                os.pwrite(fd, data, offset)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _staging_folder(folder: str) -> str:
    """A new hidden folder beside ``folder`` (inside it if the parent can't be written)."""
    parent = os.path.dirname(folder.rstrip(os.sep)) or "."
    with contextlib.suppress(OSError):  # a failure shows below, naming the folder
        os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(folder.rstrip(os.sep)) or 'variants'}.pfs-tmp-"
    try:
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    except OSError as exc:
        if not os.path.isdir(folder):
            raise PfsError(f"{parent}: can't create the variants' folder here: {exc.strerror}", path=parent,
                           errno=exc.errno) from None
        try:
            return tempfile.mkdtemp(prefix=".pfs-tmp-", dir=folder)
        except OSError as exc2:
            raise PfsError(f"{folder}: can't write the variants here: {exc2.strerror}", path=folder,
                           errno=exc2.errno) from None


def _publish(staging: str, folder: str, names: list[str], overwrite: bool) -> None:
    """Move the complete set of variants from ``staging`` into ``folder``."""
    if not os.path.isdir(folder):
        os.rename(staging, folder)  # the whole folder appears at once
        return
    moved: list[str] = []
    try:
        for name in names:
            src, dst = os.path.join(staging, name), os.path.join(folder, name)
            if overwrite:
                os.replace(src, dst)
            else:
                os.link(src, dst)  # EEXIST if a file appeared meanwhile: never clobbered
                os.unlink(src)
            moved.append(dst)
    except BaseException:
        if not overwrite:
            for dst in moved:
                with contextlib.suppress(OSError):
                    os.unlink(dst)
        raise
    os.rmdir(staging)


def make_tampered_variants(src_path: str | os.PathLike[str], key: bytes, out_dir: str | os.PathLike[str],
                           *, overwrite: bool = False) -> list[tuple[str, str]]:
    """Write every applicable corrupted variant of ``src_path`` into ``out_dir``.

    ``src_path`` must be a valid encrypted file under ``key`` (else the typed error of
    :meth:`ProtectedFile.open`). ``out_dir`` is created if missing. The variants,
    ``<basename>.<variant>``, are all written into a temporary folder beside ``out_dir``
    and moved into place only when every one is complete: on any failure (or interruption)
    nothing is left. Without ``overwrite``, an existing output file raises ``PfsError``
    (errno EEXIST) before anything is written. Variants get the source's permission bits,
    minus the umask. Returns ``(file name, description)`` for each variant written.
    """
    src_name = os.fspath(src_path)
    folder = os.fspath(out_dir)
    base = os.path.basename(src_name.rstrip("/"))
    with HostFile(src_name) as source:
        variants = plan_variants(source, key)
        names = [f"{base}.{v.suffix}" for v in variants]
        if not overwrite:
            existing = [n for n in names if os.path.lexists(os.path.join(folder, n))]
            if existing:
                raise PfsError(
                    f"{os.path.join(folder, existing[0])}: already exists ({len(existing)} of the "
                    f"{len(names)} output files do); not overwriting", path=folder, errno=_errno.EEXIST)
        mode = stat.S_IMODE(os.fstat(source.fd).st_mode) & 0o666 & ~_umask()
        staging = _staging_folder(folder)
        try:
            for name, variant in zip(names, variants, strict=True):
                _write_variant(source, variant, os.path.join(staging, name), mode)
            _publish(staging, folder, names, overwrite)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return [(name, variant.description) for name, variant in zip(names, variants, strict=True)]
