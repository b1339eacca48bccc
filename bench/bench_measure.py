#!/usr/bin/env python3
"""Speed of the MRENCLAVE measurement (pal/sgx/measure.py) against raw SHA-256 of the same bytes.

Two enclaves: Gramine's case1 (tests/vectors/gramine-sign: 64M, 2 threads, the vectors' PAL) and
a default enclave (256M, 4 threads, no EDMM, pfskit's stand-in PAL; ~64K heap pages, each one
EADD record). Each is laid out and measured --repeat times; the baseline, in the same run, is
one hashlib.sha256 over as many bytes as the measurement hashes (its records and page data),
so the ratio says what the record building costs on top of the hashing itself. The stand-in
PAL's construction (reading and hashing pfskit's sources) is timed separately.

usage: python bench/bench_measure.py [--repeat 7] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pal.sgx.layout import PAGE, enclave_areas, enclave_params  # noqa: E402
from pal.sgx.measure import PalImage, measure  # noqa: E402

VECTORS = ROOT / "tests" / "vectors" / "gramine-sign"
DEFAULT_MANIFEST = b'[libos]\nentrypoint = "/app/run"\n\n[sgx]\nenclave_size = "256M"\nmax_threads = 4\n'


def hashed_bytes(areas) -> int:
    """How many bytes the measurement feeds SHA-256: ECREATE, then per page EADD (+16 x 320)."""
    total = 64
    for a in areas:
        pages = sum(len(a.pal.pages(s)) for s in a.pal.segments) if a.pal is not None else a.size // PAGE
        total += pages * (64 + (16 * 320 if a.measure else 0))
    return total


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    standin_s = timed(PalImage.standin, args.repeat)
    cases = {
        "case1 (64M, 2 threads)": ((VECTORS / "case1.manifest.sgx").read_bytes(),
                                   PalImage.from_elf(VECTORS / "libpal-standin.so")),
        "default (256M, 4 threads)": (DEFAULT_MANIFEST, PalImage.standin()),
    }
    results = {"standin_pal_s": standin_s, "cases": {}}
    print(f"stand-in PAL built in {standin_s * 1000:.1f} ms (median of {args.repeat})")
    for name, (manifest, pal) in cases.items():
        size = enclave_params(manifest).enclave_size
        areas = enclave_areas(manifest, pal)
        nbytes = hashed_bytes(areas)
        blob = bytes(nbytes)
        ours = timed(lambda m=manifest, p=pal, s=size: measure(enclave_areas(m, p), s), args.repeat)
        base = timed(lambda b=blob: hashlib.sha256(b).digest(), args.repeat)
        pages = sum(a.size // PAGE for a in areas)
        results["cases"][name] = {"measure_s": ours, "sha256_same_bytes_s": base, "ratio": ours / base,
                                  "pages": pages, "hashed_bytes": nbytes}
        print(f"{name}: {pages} pages, {nbytes / 1e6:.1f} MB hashed; layout+measure {ours * 1000:.1f} ms, "
              f"sha256 of as many bytes {base * 1000:.1f} ms, ratio {ours / base:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
