"""MRENCLAVE: the measurement's known answers, Gramine's layout and trace of case1, both cases'
MRENCLAVE (tests/vectors/gramine-sign, made by Gramine's own sgx_sign), what changes it and
what is refused; the stand-in PAL."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import struct
from pathlib import Path

import pytest

from pal.sgx.layout import HEAP_MIN, PAGE, Area, EnclaveError, enclave_params
from pal.sgx.measure import PalImage, enclave_areas, measure, mrenclave
from pal.sgx.pal_image import PF_R, PF_W, PF_X, STANDIN_PACKAGES, Segment

VECTORS = Path(__file__).resolve().parent / "vectors" / "gramine-sign"
ROOT = Path(__file__).resolve().parent.parent
CASES = ["case1", "case2"]
FLAG_BITS = {"R": 0x1, "W": 0x2, "X": 0x4, "TCS": 0x100, "REG": 0x200}


def gramine_pal() -> PalImage:
    return PalImage.from_elf(VECTORS / "libpal-standin.so")


def manifest(case: str) -> bytes:
    return (VECTORS / f"{case}.manifest.sgx").read_bytes()


def number(value: int | str) -> int:
    return value if isinstance(value, int) else int(value, 0)


# ---------------------------------------------------------------------- known answers

def kat_answers() -> dict[str, str]:
    return dict(line.split() for line in (VECTORS / "kat-areas.txt").read_text().splitlines() if line.strip())


@pytest.mark.parametrize("name", ["kat-areas-1", "kat-areas-2", "kat-areas-3"])
def test_measurement_known_answers(name: str) -> None:
    spec = json.loads((VECTORS / f"{name}.json").read_text())
    areas = [Area(a["desc"], number(a["size"]), sum(FLAG_BITS[f] for f in a["flags"].split("|")),
                  addr=number(a["addr"]), measure=a["measure"],
                  content=bytes.fromhex(a["content_hex"]) if "content_hex" in a else None)
             for a in spec["areas"]]
    assert measure(areas, number(spec["enclave_size"])).hex() == kat_answers()[name]


def test_spec_table_known_answers() -> None:
    """sgx-sim.md (b): size 0x100000 without pages, and with one "hello" page at 0 (R|REG)."""
    assert measure([], 0x100000).hex() == "a08241225dce7d7a43bbef6a5b6a8805e198fbc80378b06e9bd082b77cb0b346"
    hello = Area("hello", PAGE, 0x201, addr=0, content=b"hello")
    assert measure([hello], 0x100000).hex() == "0dd0ec9b7ae6939ecf0b1a1a75f7a8d61644082fb47348851dd382f3e3e19952"


# ---------------------------------------------------------------------- Gramine's cases

def layout_of(areas: list[Area]) -> list[dict]:
    """The areas in case1.layout.json's terms."""
    out = []
    for a in areas:
        d = {"desc": a.desc, "addr": hex(a.addr), "size": hex(a.size), "end": hex(a.end), "flags": hex(a.flags),
             "measure": a.measure}
        if a.content is not None:
            d["content_len"] = len(a.content)
            d["content_sha256_padded"] = hashlib.sha256(a.content + bytes(a.size - len(a.content))).hexdigest()
        if a.pal is not None:
            base = a.addr - a.pal.map_base
            d["segments"] = []
            for s in a.pal.segments:
                first, end = base + s.vaddr - s.vaddr % PAGE, base + -(-(s.vaddr + s.memsz) // PAGE) * PAGE
                d["segments"].append({"p_offset": hex(s.offset), "p_vaddr": hex(s.vaddr), "p_filesz": hex(s.filesz),
                                      "p_memsz": hex(s.memsz), "pages": f"{first:#x}-{end:#x}"})
        out.append(d)
    return out


@pytest.mark.parametrize("case", CASES)
def test_areas_equal_gramines_layout(case: str) -> None:
    want = json.loads((VECTORS / f"{case}.layout.json").read_text())
    params = enclave_params(manifest(case))
    assert hex(params.enclave_size) == want["enclave_size"]
    assert params.max_threads == want["max_threads"]
    assert params.edmm_enable == want["edmm_enable"]
    keys = ("desc", "addr", "size", "end", "flags", "measure", "content_len", "content_sha256_padded")
    expected = []
    for area in want["areas"]:
        entry = {k: area[k] for k in keys if k in area}
        if "segments" in area:
            entry["segments"] = [{k: s[k] for k in ("p_offset", "p_vaddr", "p_filesz", "p_memsz", "pages")}
                                 for s in area["segments"]]
        expected.append(entry)
    assert layout_of(enclave_areas(manifest(case), gramine_pal())) == expected


@pytest.mark.parametrize("case", CASES)
def test_mrenclave_equals_gramines(case: str) -> None:
    want = (VECTORS / f"{case}.mrenclave.txt").read_text().strip()
    assert mrenclave(manifest(case), gramine_pal()).hex() == want


def test_trace_equals_gramines_record_by_record() -> None:
    trace = io.StringIO()
    mrenclave(manifest("case1"), gramine_pal(), trace=trace)
    ours = trace.getvalue().splitlines()
    theirs = (VECTORS / "case1.trace.txt").read_text().splitlines()
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        assert a == b, f"record {i + 1} differs: ours {a!r}, Gramine's {b!r}"
    assert len(ours) == len(theirs)


def test_worked_example_tcs_and_tls_fields() -> None:
    """sgx-sim.md (b)'s worked example for case1: TCS[1] and TLS[0] fields."""
    areas = {a.desc: a for a in enclave_areas(manifest("case1"), gramine_pal())}
    tcs, tls = areas["tcs"].content, areas["tls"].content
    q = lambda data, off: struct.unpack_from("<Q", data, off)[0]  # noqa: E731
    assert (q(tcs, 0x1000 + 0x10), q(tcs, 0x1000 + 0x20), q(tcs, 0x1000 + 0x38)) == (0x3FF7000, 0x3F47000, 0x3FEC000)
    assert struct.unpack_from("<I", tcs, 0x1000 + 0x1C)[0] == 2
    assert (q(tls, 0x150), q(tls, 0x1A0), q(tls, 0x1B0)) == (0x3FF2F48, 0x4A3, 0x3F46000)
    assert q(tls, 0x8) == 0xBADBADBADBAD


# ---------------------------------------------------------------------- what changes MRENCLAVE

def with_sgx(text: str, **changes: str) -> bytes:
    for key, value in changes.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, key
    return text.encode()


def test_what_changes_mrenclave() -> None:
    pal = gramine_pal()
    text = manifest("case1").decode()
    base = mrenclave(text.encode(), pal)
    variants = {
        "a manifest byte": text.replace('MODE = "vector"', 'MODE = "vectoR"').encode(),
        "a trusted file's hash": text.replace("5ddbce25", "5ddbce26").encode(),
        "enclave size": with_sgx(text, enclave_size='"128M"'),
        "thread count": with_sgx(text, max_threads="3"),
        "edmm": with_sgx(text, edmm_enable="true"),
    }
    seen = {base}
    for what, data in variants.items():
        value = mrenclave(data, pal)
        assert value not in seen, what
        seen.add(value)
    other_pal = PalImage(pal.name, pal.data[:0x1000] + b"\x90" + pal.data[0x1001:], pal.segments, pal.entry)
    assert mrenclave(text.encode(), other_pal) not in seen
    assert mrenclave(text.encode(), pal) == base  # and it is deterministic


@pytest.mark.parametrize("size,message", [
    ('"100M"', "Enclave size not a power of two"),
    ('"0"', "Enclave size not a power of two"),
    ('"64Q"', "is not a size"),
    ('"512K"', "Enclave size is not large enough"),
])
def test_bad_enclave_sizes_are_refused(size: str, message: str) -> None:
    data = with_sgx(manifest("case1").decode(), enclave_size=size)
    with pytest.raises(EnclaveError, match=message) as info:
        mrenclave(data, gramine_pal())
    assert "\n" not in str(info.value) and info.value.errno == 22


@pytest.mark.parametrize("threads,message", [("0", "must be a positive number"), ("5000", "Too large")])
def test_bad_thread_counts_are_refused(threads: str, message: str) -> None:
    with pytest.raises(EnclaveError, match=message):
        mrenclave(with_sgx(manifest("case1").decode(), max_threads=threads), gramine_pal())


def pages_added(areas: list[Area]) -> list[int]:
    out = []
    for a in areas:
        if a.pal is not None:
            base = a.addr - a.pal.map_base
            out += [base + v for s in a.pal.segments for v, _ in a.pal.pages(s)]
        else:
            out += range(a.addr, a.end, PAGE)
    return out


def test_fixed_address_pal_leaves_the_heap_around_it() -> None:
    """A PAL linked at a fixed address (non-PIE) stays there; the heap is every other page from
    0x10000 up, each page added exactly once."""
    data = bytes(0x3000)
    pal = PalImage("fixed", data, (Segment(0, 0x400000, 0x1000, 0x1000, PF_R | PF_X),
                                   Segment(0x1000, 0x401000, 0x100, 0x2000, PF_R | PF_W)), 0x400000)
    areas = enclave_areas(with_sgx(manifest("case1").decode(), enclave_size='"64M"'), pal)
    by = {a.desc: a for a in areas}
    assert by["pal"].addr == 0x400000
    free = [a for a in areas if a.desc == "free"]
    assert [(a.addr, a.end) for a in free] == [(0x403000, by["sig_stack"].addr), (HEAP_MIN, 0x400000)]
    pages = pages_added(areas)
    assert sorted(pages) == list(range(HEAP_MIN, 64 << 20, PAGE))
    tls = by["tls"].content
    assert struct.unpack_from("<Q", tls, 0x1B0)[0] == 0x400000  # heap_max


def test_overlapping_fixed_pal_is_refused() -> None:
    pal = PalImage("high", bytes(0x1000), (Segment(0, 0x3FFE000, 0x1000, 0x1000, PF_R),), 0x3FFE000)
    with pytest.raises(EnclaveError, match="inside the enclave's"):
        enclave_areas(manifest("case1"), pal)


def test_pie_layout_adds_every_page_once() -> None:
    areas = enclave_areas(manifest("case1"), gramine_pal())
    assert sorted(pages_added(areas)) == list(range(HEAP_MIN, 64 << 20, PAGE))


def test_not_an_elf_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "libpal.so"
    bad.write_bytes(b"not an ELF file at all")
    with pytest.raises(EnclaveError, match="is not an ELF file"):
        PalImage.from_elf(bad)


# ---------------------------------------------------------------------- the stand-in PAL

def copy_sources(dest: Path) -> Path:
    for package in STANDIN_PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "runtime"))
    return dest


def test_standin_identifies_pfskits_runtime() -> None:
    from importlib import metadata

    image = PalImage.standin()
    assert image == PalImage.standin()  # deterministic
    assert [s.flags for s in image.segments] == [PF_R, PF_R | PF_X]
    header = image.data[:image.segments[0].filesz].decode()
    assert header.startswith("pfskit stand-in PAL")
    assert f"version: {metadata.version('pfskit')}\n" in header
    listing = header.split("\n\n", 1)[1]
    digest = hashlib.sha256((ROOT / "pal" / "sgx" / "layout.py").read_bytes()).hexdigest()
    assert f"{digest}  pal/sgx/layout.py\n" in listing
    assert f"libos-code-sha256: {hashlib.sha256(listing.encode()).hexdigest()}\n" in header
    assert image.entry == image.segments[1].vaddr


@pytest.mark.parametrize("package", STANDIN_PACKAGES)
def test_a_change_of_any_runtime_source_changes_the_standin(tmp_path: Path, package: str) -> None:
    root = copy_sources(tmp_path)
    before = PalImage.standin(root)
    assert before == PalImage.standin(ROOT)  # a copy of the same sources is the same runtime
    target = sorted((root / package).rglob("*.py"))[-1]
    target.write_bytes(target.read_bytes() + b"\n# changed\n")
    after = PalImage.standin(root)
    assert after != before
    assert mrenclave(manifest("case1"), after) != mrenclave(manifest("case1"), before)


def test_a_new_runtime_source_changes_the_standin(tmp_path: Path) -> None:
    root = copy_sources(tmp_path)
    before = PalImage.standin(root)
    (root / "vfs" / "extra.py").write_text("")
    assert PalImage.standin(root) != before


def test_fixed_address_pal_measures_as_gramine() -> None:
    """tests/vectors/sgx-nonpie: a non-PIE PAL at 0x400000, MRENCLAVE from Gramine's own code."""
    folder = VECTORS.parent / "sgx-nonpie"
    pal = PalImage.from_elf(folder / "nonpie.elf")
    data = (folder / "nonpie.manifest.sgx").read_bytes()
    by = {a.desc: a for a in enclave_areas(data, pal)}
    assert (by["pal"].addr, by["pal"].end) == (0x400000, 0x404000)
    assert mrenclave(data, pal).hex() == (folder / "nonpie.mrenclave.txt").read_text().strip()
