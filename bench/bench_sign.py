#!/usr/bin/env python3
"""Signing speed: `libos sign` of a manifest whose trusted files are all of /usr/lib/python3* and
the Python binary's shared-library closure, against `find ... -type f | xargs sha256sum` on the
same files (and `xargs -P2`), all in one run.

Every contender runs --repeat times, round robin (so that the machine's load moves them alike),
after one untimed warm-up each (the files are in the page cache for all of them); each time is the
median. Ratios are baseline time / our time: >= 1.0x means at least as fast as the baseline.

Also timed: `libos manifest` of the same manifest (render, defaults, expansion, write), and in
this process the trusted-file expansion alone (`sgx_manifest.expand_trusted_files`)
hashed serially, by threads (what pfskit uses) and by processes, to show which parallelism pays.

usage: python bench/bench_sign.py [--repeat 5] [--jobs N] [--json OUT]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEY = REPO / "tests" / "vectors" / "gramine-sign" / "test-signing-key.pem"


def script(name: str) -> str:
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"bench: '{name}' is not installed (run scripts/setup.sh)")
    return found


def inputs() -> tuple[list[str], list[str]]:
    """(the trusted-file entries of the manifest, the files they name for find/xargs)."""
    from libos.elf_deps import closure

    folders = sorted(glob.glob("/usr/lib/python3*"))
    python = os.path.realpath("/usr/bin/python3")
    libs = [python, *closure(python)]
    entries = [f"file:{d}/" for d in folders] + [f"file:{p}" for p in libs]
    return entries, folders + libs


def write_manifest(work: Path, entries: list[str]) -> Path:
    import tomli_w

    data = {"libos": {"entrypoint": "/usr/bin/python3"},
            "loader": {"entrypoint": {"uri": "file:/usr/bin/true"}},
            "fs": {"mounts": [{"path": "/usr", "uri": "file:/usr"}]},
            "sgx": {"debug": True, "trusted_files": entries}}
    path = work / "bench.manifest"
    path.write_text(tomli_w.dumps(data))
    return path


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def shell(cmd: str) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(["sh", "-c", cmd], check=True, stdout=subprocess.DEVNULL)
    return run


def expansion(entries: list[str], mode: str, jobs: int) -> Callable[[], None]:
    from libos import sgx_manifest, trusted_files

    def hash_processes(paths, *, jobs=None):
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:  # batches of 64, as the threads
            return list(pool.map(trusted_files.sha256_file, paths, chunksize=64))

    def run() -> None:
        data = {"sgx": {"trusted_files": list(entries)}}
        original = trusted_files.hash_files
        if mode == "processes":
            trusted_files.hash_files = hash_processes
        try:
            sgx_manifest.expand_trusted_files(data, jobs=1 if mode == "serial" else jobs)
        finally:
            trusted_files.hash_files = original
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=None, help="hashing threads (default: the CPUs)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    from libos.trusted_files import default_jobs

    jobs = args.jobs or default_jobs()
    entries, paths = inputs()
    quoted = " ".join(f"'{p}'" for p in paths)
    count = int(subprocess.run(["sh", "-c", f"find -H {quoted} -type f | wc -l"], capture_output=True, text=True,
                               check=True).stdout)
    size = int(subprocess.run(["sh", "-c", f"find -H {quoted} -type f -print0 | du -cb --files0-from=- | tail -1"],
                              capture_output=True, text=True, check=True).stdout.split()[0])
    with tempfile.TemporaryDirectory(prefix="bench-sign-") as tmp:
        work = Path(tmp)
        manifest = write_manifest(work, entries)
        libos = script("libos")
        contenders: dict[str, Callable[[], None]] = {
            "find | xargs sha256sum": shell(f"find -H {quoted} -type f -print0 | xargs -0 sha256sum"),
            "find | xargs -P2 -n 256 sha256sum": shell(
                f"find -H {quoted} -type f -print0 | xargs -0 -P2 -n 256 sha256sum"),
            "libos sign (end to end)": lambda: subprocess.run(
                [libos, "sign", "-q", "-k", str(KEY), "-m", str(manifest), "-o", str(work / "out.manifest.sgx"),
                 "-d", "2026-01-02"], check=True, stdout=subprocess.DEVNULL),
            "libos manifest (end to end)": lambda: subprocess.run(
                [libos, "manifest", "--no-check", str(manifest), str(work / "out.manifest")], check=True),
            "expansion, serial": expansion(entries, "serial", jobs),
            f"expansion, {jobs} threads": expansion(entries, "threads", jobs),
            f"expansion, {jobs} processes": expansion(entries, "processes", jobs),
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for run in contenders.values():
            run()  # warm-up: page cache, imports
        for _ in range(args.repeat):
            for name, run in contenders.items():
                times[name].append(timed(run))
        signed = (work / "out.manifest.sgx").read_text().count("[[sgx.trusted_files]]")
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"trusted files: {signed} in the signed manifest; find -type f: {count} files, {size / 2**20:.1f} MiB; "
          f"{os.cpu_count()} CPUs, median of {args.repeat}")
    ours = median["libos sign (end to end)"]
    for name, value in median.items():
        print(f"  {name:40s} {value * 1000:8.1f} ms")
    result = {"files": signed, "find_files": count, "bytes": size, "repeat": args.repeat, "jobs": jobs,
              "median_s": median, "ratios": {}}
    expand = median[f"expansion, {jobs} threads"]
    for base in ("find | xargs sha256sum", "find | xargs -P2 -n 256 sha256sum"):
        for label, value in (("libos sign", ours), ("libos manifest", median["libos manifest (end to end)"]),
                             ("expansion (threads)", expand)):
            ratio = median[base] / value
            result["ratios"][f"{label} vs {base}"] = ratio
            print(f"{label} vs {base}: {ratio:.2f}x" + (" (target >= 1.0x)" if label == "libos sign" else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
