"""The PAL image an enclave measures: Gramine's ``libpal.so`` (any ELF), or pfskit's stand-in.

A :class:`PalImage` is what the measurement needs of an ELF file: its bytes, its PT_LOAD
segments in program-header order and its entry point. :meth:`PalImage.from_elf` reads them
with pyelftools (as Gramine's ``gramine-sgx-sign --libpal`` does); :meth:`PalImage.standin`
builds, in memory, the image pfskit measures when no PAL is given: it identifies pfskit's
runtime (its version, and the SHA-256 of every source file of the LibOS code, ``libos/``,
``pal/``, ``pfs/``, ``vfs/``), so that a change of that code changes MRENCLAVE.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .layout import PAGE, EnclaveError, rounddown, roundup

__all__ = ["PF_R", "PF_W", "PF_X", "PalImage", "Segment", "STANDIN_PACKAGES"]

PF_X, PF_W, PF_R = 0x1, 0x2, 0x4
#: The packages whose sources the stand-in PAL identifies (in this order, files sorted by path).
STANDIN_PACKAGES = ("libos", "pal", "pfs", "vfs")
# the stand-in's entry point: `pause; jmp .-2` (it is never run; it only has to be code)
_STANDIN_CODE = bytes.fromhex("f390ebfc")


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD program header."""

    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int  # p_flags: PF_R | PF_W | PF_X


@dataclass(frozen=True)
class PalImage:
    """An ELF file's bytes, PT_LOAD segments (program-header order) and entry point."""

    name: str
    data: bytes
    segments: tuple[Segment, ...]
    entry: int

    def __repr__(self) -> str:
        return f"PalImage({self.name!r}, {len(self.data)} bytes, {len(self.segments)} PT_LOAD, entry={self.entry:#x})"

    @classmethod
    def from_elf(cls, path: str | os.PathLike[str]) -> PalImage:
        """Read ``path`` (an ELF file) with pyelftools; :class:`EnclaveError` if it is not one or
        has no PT_LOAD segment."""
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        name = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        try:
            import io

            elf = ELFFile(io.BytesIO(data))
            segments = tuple(Segment(seg.header.p_offset, seg.header.p_vaddr, seg.header.p_filesz,
                                     seg.header.p_memsz, seg.header.p_flags)
                             for seg in elf.iter_segments() if seg.header.p_type == "PT_LOAD")
            entry = elf.header.e_entry
        except (ELFError, ValueError, KeyError) as exc:
            raise EnclaveError(f"PAL '{name}' is not an ELF file ({exc}); give Gramine's libpal.so") from None
        image = cls(name, data, segments, entry)
        image.check()
        return image

    @classmethod
    def standin(cls, root: str | os.PathLike[str] | None = None) -> PalImage:
        """The stand-in PAL that identifies pfskit's runtime (see docs/signing.md): a read-only
        segment with a text header (pfskit's version, the SHA-256 of the listing below) and the
        listing ``<sha256>  <path>`` of every ``*.py`` file of :data:`STANDIN_PACKAGES` under
        ``root`` (default: the folder holding this installation's packages), then an executable
        page with the entry point. The same sources give the same image, byte for byte."""
        base = Path(root) if root is not None else Path(__file__).resolve().parent.parent.parent
        return _standin(str(base.resolve()), _pfskit_version())

    def check(self) -> None:
        """Refuse an image the measurement can't load: no PT_LOAD, or a segment's file range
        outside the file."""
        if not self.segments:
            raise EnclaveError(f"PAL '{self.name}' has no PT_LOAD segment")
        for seg in self.segments:
            if seg.offset + seg.filesz > len(self.data) or seg.filesz > seg.memsz:
                raise EnclaveError(f"PAL '{self.name}': a PT_LOAD segment (offset {seg.offset:#x}, "
                                   f"file size {seg.filesz:#x}) lies outside the file or exceeds its memory size")
            if seg.offset % PAGE != seg.vaddr % PAGE:
                raise EnclaveError(f"PAL '{self.name}': PT_LOAD at vaddr {seg.vaddr:#x} is not congruent to its "
                                   f"file offset {seg.offset:#x} modulo the page size")

    @property
    def map_base(self) -> int:
        """The lowest PT_LOAD address, rounded down to a page."""
        return min(rounddown(seg.vaddr) for seg in self.segments)

    @property
    def map_size(self) -> int:
        """The pages from :attr:`map_base` to the end of the highest segment."""
        return max(roundup(seg.vaddr + seg.memsz) for seg in self.segments) - self.map_base

    def pages(self, seg: Segment) -> list[tuple[int, bytes]]:
        """``(page vaddr, 4096 bytes)`` of a segment as the enclave loader measures it: the file's
        bytes from the page-aligned offset, zero before ``p_offset`` and from ``p_offset + p_filesz``."""
        first = rounddown(seg.vaddr)
        file_start = rounddown(seg.offset)
        lo, hi = seg.offset, seg.offset + seg.filesz
        out = []
        for page in range(first, roundup(seg.vaddr + seg.memsz), PAGE):
            start = page - first + file_start
            a, b = max(start, lo), min(start + PAGE, hi)
            if a >= b:
                out.append((page, bytes(PAGE)))
                continue
            out.append((page, bytes(a - start) + self.data[a:b] + bytes(start + PAGE - b)))
        return out


def _pfskit_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pfskit")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def standin_sources(root: str | os.PathLike[str]) -> list[tuple[str, bytes]]:
    """``(relative path, bytes)`` of every ``*.py`` file of :data:`STANDIN_PACKAGES` under
    ``root``, sorted by path (``__pycache__`` left out)."""
    base = Path(root)
    files = []
    for package in STANDIN_PACKAGES:
        folder = base / package
        if not folder.is_dir():
            raise EnclaveError(f"stand-in PAL: pfskit's package folder '{folder}' is missing")
        for path in folder.rglob("*.py"):
            if "__pycache__" not in path.parts and path.is_file():
                files.append((path.relative_to(base).as_posix(), path.read_bytes()))
    return sorted(files)


def _standin(root: str, version: str) -> PalImage:
    listing = "".join(f"{hashlib.sha256(data).hexdigest()}  {rel}\n" for rel, data in standin_sources(root))
    header = (f"pfskit stand-in PAL (not Gramine's libpal.so)\nversion: {version}\n"
              f"libos-code-sha256: {hashlib.sha256(listing.encode()).hexdigest()}\n\n{listing}").encode()
    code_offset = roundup(len(header))
    data = header + bytes(code_offset - len(header)) + _STANDIN_CODE
    segments = (Segment(0, 0, len(header), len(header), PF_R),
                Segment(code_offset, code_offset, len(_STANDIN_CODE), len(_STANDIN_CODE), PF_R | PF_X))
    return PalImage("pfskit stand-in PAL", data, segments, code_offset)
