"""Gramine's enclave memory layout: the areas whose pages MRENCLAVE measures.

:func:`enclave_areas` lays out, from a final manifest's bytes and a PAL image, the areas
Gramine's ``gramine-sgx-sign`` and its loader add (in this order): the manifest at the top,
SSA frames, TCS pages, TLS pages, a stack and a signal stack per thread, the PAL's ELF pages,
and (without EDMM) the heap as unmeasured pages from ``0x10000`` up to the PAL. Areas without
a fixed address are placed top-down from the enclave's end. The TCS and TLS pages are filled
in as Gramine 1.9 fills them. docs/signing.md describes it; the constants are Gramine 1.9's.
"""

from __future__ import annotations

import errno as _errno
import struct
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pal_image import PalImage

__all__ = ["Area", "EnclaveError", "EnclaveParams", "enclave_areas", "enclave_params", "parse_size"]

PAGE = 0x1000
HEAP_MIN = 0x10000  # MMAP_MIN_ADDR
ENCLAVE_BASE = 0x0
SSA_FRAME_SIZE = 0x4000
SSA_FRAME_NUM = 2
TCS_SIZE = 0x1000
STACK_SIZE = 0x40000
SIG_STACK_SIZE = 0x10000
STACK_PROTECTOR_CANARY = 0xBADBADBADBAD
GPR_SIZE = 0xB8  # sizeof(sgx_pal_gpr_t)
MAX_THREADS = 4096  # the loader's MAX_DBG_THREADS

# SECINFO.FLAGS
SECINFO_R, SECINFO_W, SECINFO_X = 0x1, 0x2, 0x4
SECINFO_TCS, SECINFO_REG = 0x100, 0x200
RW_REG = SECINFO_R | SECINFO_W | SECINFO_REG

# sgx_arch_tcs_t
TCS_OSSA, TCS_NSSA, TCS_OENTRY, TCS_OGS_BASE, TCS_OFS_LIMIT, TCS_OGS_LIMIT = 0x10, 0x1C, 0x20, 0x38, 0x40, 0x44
# struct pal_enclave_tcb (Gramine 1.9's _graminelibos_offsets)
TLS_SELF, TLS_CANARY, TLS_ENCLAVE_SIZE, TLS_TCS_OFFSET = 0x000, 0x008, 0x110, 0x118
TLS_INITIAL_STACK, TLS_SIG_STACK_LOW, TLS_SIG_STACK_HIGH = 0x120, 0x130, 0x138
TLS_SSA, TLS_GPR, TLS_MANIFEST_SIZE, TLS_HEAP_MIN, TLS_HEAP_MAX = 0x148, 0x150, 0x1A0, 0x1A8, 0x1B0

DEFAULT_ENCLAVE_SIZE = "256M"
DEFAULT_ENCLAVE_SIZE_EDMM = "1024G"
DEFAULT_MAX_THREADS = 4


class EnclaveError(OSError):
    """The enclave can't be laid out or measured (bad size, too small, a bad PAL image); ``str()``
    is one line naming the manifest key or the file. ``errno`` EINVAL."""

    def __init__(self, message: str, *, errno: int = _errno.EINVAL):
        super().__init__(errno, message)

    def __str__(self) -> str:
        return str(self.strerror)


def rounddown(addr: int) -> int:
    return addr - addr % PAGE


def roundup(addr: int) -> int:
    return -(-addr // PAGE) * PAGE


@dataclass
class Area:
    """A range of enclave pages: ``content`` (zero-padded; ``None`` = zeros) or a PAL image's
    segments (``pal``), added with SECINFO ``flags``, measured (EEXTEND) or only added (EADD)."""

    desc: str
    size: int
    flags: int
    addr: int | None = None
    measure: bool = True
    content: bytes | None = field(default=None, repr=False)
    pal: PalImage | None = field(default=None, repr=False)

    @property
    def end(self) -> int:
        assert self.addr is not None
        return self.addr + self.size


@dataclass(frozen=True)
class EnclaveParams:
    """What the measurement reads from the manifest: ``sgx.enclave_size`` (bytes),
    ``sgx.max_threads``, ``sgx.edmm_enable``."""

    enclave_size: int
    max_threads: int
    edmm_enable: bool


def parse_size(value: object, key: str = "sgx.enclave_size") -> int:
    """A size string as gramine-sgx-sign reads it: a number (``int(x, 0)``) with an optional
    upper-case ``K``/``M``/``G`` suffix."""
    if not isinstance(value, str):
        raise EnclaveError(f"{key} must be a string such as \"256M\", not {value!r}")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(value[-1:], 1)
    digits = value[:-1] if scale != 1 else value
    try:
        return int(digits, 0) * scale
    except ValueError:
        raise EnclaveError(f"{key} = {value!r} is not a size (a number with an optional K, M or G suffix, "
                           "e.g. \"256M\")") from None


def enclave_params(manifest_sgx: bytes | Mapping[str, Any]) -> EnclaveParams:
    """The enclave's size, thread count and EDMM switch from a final manifest (its bytes, or its
    parsed data), with Gramine's defaults, refused as Gramine's loader refuses them."""
    if isinstance(manifest_sgx, bytes | bytearray):
        try:
            data = tomllib.loads(bytes(manifest_sgx).decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise EnclaveError(f"the manifest is not valid TOML: {exc}") from None
    else:
        data = manifest_sgx
    sgx = data.get("sgx", {})
    if not isinstance(sgx, Mapping):
        raise EnclaveError("sgx must be a table")
    edmm = sgx.get("edmm_enable", False)
    if not isinstance(edmm, bool):
        raise EnclaveError(f"sgx.edmm_enable must be true or false, not {edmm!r}")
    raw_size = sgx.get("enclave_size", DEFAULT_ENCLAVE_SIZE_EDMM if edmm else DEFAULT_ENCLAVE_SIZE)
    size = parse_size(raw_size)
    if size <= 0 or size & (size - 1):
        raise EnclaveError(f"sgx.enclave_size = {raw_size!r}: Enclave size not a power of two "
                           "(an SGX-imposed requirement)")
    threads = sgx.get("max_threads", DEFAULT_MAX_THREADS)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise EnclaveError(f"'sgx.max_threads' must be a positive number, not {threads!r}")
    if threads > MAX_THREADS:
        raise EnclaveError(f"Too large 'sgx.max_threads' ({threads}), maximum allowed is {MAX_THREADS}")
    return EnclaveParams(size, threads, edmm)


def enclave_areas(manifest_sgx: bytes, pal: PalImage, *, params: EnclaveParams | None = None) -> list[Area]:
    """Every area of the enclave of the final manifest ``manifest_sgx`` (its exact bytes) with
    ``pal``, with addresses and contents, in measurement order. ``params``: the manifest's
    :func:`enclave_params` when the caller has them (parsing a big manifest again costs)."""
    if params is None:
        params = enclave_params(manifest_sgx)
    n = params.max_threads
    content = bytes(manifest_sgx) + b"\0"  # the in-enclave manifest is NUL-terminated
    stacks = [Area("stack", STACK_SIZE, RW_REG) for _ in range(n)]
    sig_stacks = [Area("sig_stack", SIG_STACK_SIZE, RW_REG) for _ in range(n)]
    pal_area = Area("pal", pal.map_size, SECINFO_REG, addr=pal.map_base or None, pal=pal)
    ssa = Area("ssa", n * SSA_FRAME_SIZE * SSA_FRAME_NUM, RW_REG)
    tcs = Area("tcs", n * TCS_SIZE, SECINFO_TCS)
    tls = Area("tls", n * PAGE, RW_REG)
    areas = [Area("manifest", roundup(len(content)), SECINFO_R | SECINFO_REG, content=content),
             ssa, tcs, tls, *stacks, *sig_stacks, pal_area]

    last = ENCLAVE_BASE + params.enclave_size
    for area in areas:
        if area.addr is None:
            area.addr = last - area.size
            if area.addr < HEAP_MIN:
                raise EnclaveError(f"Enclave size is not large enough: sgx.enclave_size {params.enclave_size:#x} "
                                   f"does not hold the {n} threads' areas and the PAL (raise sgx.enclave_size)")
            last = area.addr
    _check_fixed_pal(areas, pal_area, params.enclave_size)

    tcs.content, tls.content = _tcs_tls(params, len(content), ssa, tcs, tls, stacks, sig_stacks, pal_area)
    if params.edmm_enable:  # EDMM enclaves add their heap pages at run time
        return areas
    free = []
    for area in areas:  # (gaps: only a PAL at a fixed address below the others leaves one)
        if area.end < last:
            free.append(Area("free", last - area.end, RW_REG | SECINFO_X, addr=area.end, measure=False))
            last = area.addr  # type: ignore[assignment]
    if last > HEAP_MIN:
        free.append(Area("free", last - HEAP_MIN, RW_REG | SECINFO_X, addr=HEAP_MIN, measure=False))
    return areas + free


def _check_fixed_pal(areas: list[Area], pal_area: Area, enclave_size: int) -> None:
    """A PAL linked at a fixed address must lie inside the enclave, above the heap's start and
    apart from the other areas."""
    if pal_area.pal is None or not pal_area.pal.map_base:
        return
    if pal_area.addr < HEAP_MIN or pal_area.end > ENCLAVE_BASE + enclave_size:  # type: ignore[operator]
        raise EnclaveError(f"PAL '{pal_area.pal.name}' is linked at {pal_area.addr:#x}-{pal_area.end:#x}, outside "
                           f"the enclave's {HEAP_MIN:#x}-{enclave_size:#x}")
    for area in areas:
        if area is not pal_area and area.addr < pal_area.end and pal_area.addr < area.end:  # type: ignore[operator]
            raise EnclaveError(f"PAL '{pal_area.pal.name}' is linked at {pal_area.addr:#x}, inside the enclave's "
                               f"{area.desc} area (raise sgx.enclave_size or use a position-independent PAL)")


def _tcs_tls(params: EnclaveParams, manifest_size: int, ssa: Area, tcs: Area, tls: Area, stacks: list[Area],
             sig_stacks: list[Area], pal_area: Area) -> tuple[bytes, bytes]:
    """The TCS pages (``sgx_arch_tcs_t``) and TLS pages (``struct pal_enclave_tcb``) of every thread."""
    assert pal_area.pal is not None and None not in (ssa.addr, tcs.addr, tls.addr, pal_area.addr)
    tcs_data = bytearray(tcs.size)
    tls_data = bytearray(tls.size)
    base = ENCLAVE_BASE
    for t in range(params.max_threads):
        ssa_t = ssa.addr + SSA_FRAME_SIZE * SSA_FRAME_NUM * t  # type: ignore[operator]
        tcs_page = t * TCS_SIZE
        struct.pack_into("<Q", tcs_data, tcs_page + TCS_OSSA, ssa_t - base)
        struct.pack_into("<I", tcs_data, tcs_page + TCS_NSSA, SSA_FRAME_NUM)
        struct.pack_into("<Q", tcs_data, tcs_page + TCS_OENTRY, pal_area.addr + pal_area.pal.entry - base)
        struct.pack_into("<Q", tcs_data, tcs_page + TCS_OGS_BASE, tls.addr - base + PAGE * t)  # type: ignore[operator]
        struct.pack_into("<I", tcs_data, tcs_page + TCS_OFS_LIMIT, 0xFFF)
        struct.pack_into("<I", tcs_data, tcs_page + TCS_OGS_LIMIT, 0xFFF)
        tls_page = t * PAGE
        for off, value in ((TLS_SELF, tls.addr + PAGE * t), (TLS_CANARY, STACK_PROTECTOR_CANARY),  # type: ignore[operator]
                           (TLS_ENCLAVE_SIZE, params.enclave_size), (TLS_TCS_OFFSET, tcs.addr - base + TCS_SIZE * t),
                           (TLS_INITIAL_STACK, stacks[t].end), (TLS_SIG_STACK_LOW, sig_stacks[t].addr),
                           (TLS_SIG_STACK_HIGH, sig_stacks[t].end), (TLS_SSA, ssa_t),
                           (TLS_GPR, ssa_t + SSA_FRAME_SIZE - GPR_SIZE), (TLS_MANIFEST_SIZE, manifest_size),
                           (TLS_HEAP_MIN, HEAP_MIN), (TLS_HEAP_MAX, pal_area.addr)):
            struct.pack_into("<Q", tls_data, tls_page + off, value)
    return bytes(tcs_data), bytes(tls_data)
