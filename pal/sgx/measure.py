"""MRENCLAVE: the SGX measurement (ECREATE, EADD with SECINFO, EEXTEND of 256-byte chunks) of
Gramine's enclave layout.

:func:`measure` runs the measurement over a list of areas (:mod:`pal.sgx.layout`) as the CPU
hashes it: one running SHA-256 over a 64-byte ECREATE record, then per page a 64-byte EADD
record and, for measured pages, 16 EEXTEND records each followed by its 256 bytes. It can write
a trace of every record in the format of tests/vectors/gramine-sign/case1.trace.txt.
:func:`mrenclave` is the whole thing for a final manifest's bytes and a PAL image (pfskit's
stand-in by default). Unmeasured (heap) pages cost one EADD record each, hashed in batches.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from array import array
from typing import TextIO

from .layout import (
    PAGE,
    SECINFO_R,
    SECINFO_W,
    SECINFO_X,
    SSA_FRAME_SIZE,
    Area,
    EnclaveError,
    enclave_areas,
    enclave_params,
)
from .pal_image import PF_R, PF_W, PF_X, PalImage

__all__ = ["PalImage", "enclave_areas", "measure", "mrenclave", "EnclaveError"]

_ECREATE = struct.Struct("<8sIQ44s")
_EADD = struct.Struct("<8sQQ40s")
_EEXTEND = struct.Struct("<8sQ48s")
_CHUNK = 256
_CHUNKS = PAGE // _CHUNK
_REC = _EEXTEND.size + _CHUNK  # one EEXTEND record with its data
_PAGE_RECORDS = _EADD.size + _CHUNKS * _REC
_BATCH = 16384  # EADD-only pages hashed per update() call
_EADD_TAG = int.from_bytes(b"EADD\0\0\0\0", "little")


class _Measurement:
    """One running measurement; ``trace`` (a text stream) gets one line per record."""

    def __init__(self, enclave_size: int, trace: TextIO | None):
        self.size = enclave_size
        self.trace = trace
        self.hash = hashlib.sha256(_ECREATE.pack(b"ECREATE", SSA_FRAME_SIZE // PAGE, enclave_size, b""))
        if trace is not None:
            trace.write(f"ECREATE ssaframesize={SSA_FRAME_SIZE // PAGE} size={enclave_size:#x}\n")
        # page records with all-zero chunks: only the offsets change from page to page
        self._zero = bytearray(_PAGE_RECORDS)
        self._data = bytearray(_PAGE_RECORDS)
        for buf in (self._zero, self._data):
            for i in range(_CHUNKS):
                _EEXTEND.pack_into(buf, _EADD.size + i * _REC, b"EEXTEND", 0, b"")

    def _check(self, offset: int, pages: int = 1) -> None:
        if offset < 0 or offset + (pages - 1) * PAGE >= self.size:
            raise EnclaveError(f"enclave page {offset:#x} lies outside the enclave (size {self.size:#x})")

    def page(self, offset: int, flags: int, content: bytes | None) -> None:
        """EADD and EEXTEND of one measured page (``content``: 4096 bytes, ``None`` = zeros)."""
        self._check(offset)
        zero = content is None or not any(content)
        buf = self._zero if zero else self._data
        _EADD.pack_into(buf, 0, b"EADD", offset, flags, b"")
        for i in range(_CHUNKS):
            pos = _EADD.size + i * _REC
            struct.pack_into("<Q", buf, pos + 8, offset + i * _CHUNK)
            if not zero:
                buf[pos + _EEXTEND.size:pos + _REC] = content[i * _CHUNK:(i + 1) * _CHUNK]  # type: ignore[index]
        self.hash.update(buf)
        if self.trace is not None:
            self.trace.write(f"EADD offset={offset:#x} secinfo_flags={flags:#x}\n")
            for i in range(_CHUNKS):
                pos = _EADD.size + i * _REC + _EEXTEND.size
                digest = hashlib.sha256(buf[pos:pos + _CHUNK]).hexdigest()
                self.trace.write(f"EEXTEND offset={offset + i * _CHUNK:#x} chunk_sha256={digest}\n")

    def added(self, offset: int, pages: int, flags: int) -> None:
        """EADD only, of ``pages`` consecutive pages from ``offset``."""
        self._check(offset, pages)
        for start in range(0, pages, _BATCH):
            n = min(pages - start, _BATCH)
            if sys.byteorder == "little":  # the records as u64 words: tag, offset, flags, then zeros
                words = array("Q", bytes(n * _EADD.size))
                words[0::8] = array("Q", [_EADD_TAG]) * n
                words[1::8] = array("Q", range(offset + start * PAGE, offset + (start + n) * PAGE, PAGE))
                words[2::8] = array("Q", [flags]) * n
                self.hash.update(words)
            else:
                self.hash.update(b"".join([_EADD.pack(b"EADD", offset + p * PAGE, flags, b"")
                                           for p in range(start, start + n)]))
        if self.trace is not None:
            self.trace.writelines(f"EADD offset={offset + p * PAGE:#x} secinfo_flags={flags:#x}\n"
                                  for p in range(pages))


def measure(areas: list[Area], enclave_size: int, trace: TextIO | None = None) -> bytes:
    """MRENCLAVE (32 bytes) of an enclave of ``enclave_size`` bytes with ``areas`` (placed, in
    measurement order); ``trace``, if given, gets every record, one a line."""
    m = _Measurement(enclave_size, trace)
    for area in areas:
        if area.addr is None:
            raise EnclaveError(f"enclave area {area.desc!r} has no address")
        if area.pal is not None:
            load_base = area.addr - area.pal.map_base
            for seg in area.pal.segments:
                flags = area.flags | (SECINFO_R if seg.flags & PF_R else 0) | (SECINFO_W if seg.flags & PF_W else 0) \
                    | (SECINFO_X if seg.flags & PF_X else 0)
                for vaddr, page in area.pal.pages(seg):
                    m.page(load_base + vaddr, flags, page)
        elif not area.measure:
            m.added(area.addr, area.size // PAGE, area.flags)
        else:
            content = area.content
            for off in range(0, area.size, PAGE):
                page = None
                if content is not None and off < len(content):
                    page = content[off:off + PAGE]
                    page += bytes(PAGE - len(page))
                m.page(area.addr + off, area.flags, page)
    return m.hash.digest()


def mrenclave(manifest_sgx: bytes, pal: PalImage | None = None, trace: TextIO | None = None) -> bytes:
    """MRENCLAVE of the enclave of a final manifest (its exact bytes: ``sgx.enclave_size``,
    ``sgx.max_threads`` and ``sgx.edmm_enable`` are read from them) with ``pal`` (default:
    :meth:`PalImage.standin`, pfskit's runtime)."""
    image = PalImage.standin() if pal is None else pal
    params = enclave_params(manifest_sgx)
    return measure(enclave_areas(manifest_sgx, image, params=params), params.enclave_size, trace)
