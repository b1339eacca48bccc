#!/usr/bin/env python3
"""The two FUSE bridges measured against each other: mfusepy's path-based API and libfuse's
inode-based low-level API (``PFSKIT_FUSE_API=lowlevel``), through ``libos mount``.

Three mount types (a chroot folder, a tmpfs, an encrypted folder), each served by both bridges,
in one run and the same temp folder, with bench/bench_fuse.py's workloads: sequential write +
fsync and read (cold and warm), 4 KiB random reads, 2,000 small files written, listed with
their attributes (``ls -l``), read, and extracted by ``tar -x``, and a small sqlite workload.
"Cold" means unmounted, page cache dropped and mounted again; a tmpfs lives in its daemon only,
so there the page cache is dropped without unmounting. Printed: each value and the ratio
lowlevel / mfusepy per mount type (> 1: the low-level bridge is faster).

usage: python bench/bench_fuse_api.py [--size-mib 256] [--repeat 1] [--ops 20000] [--files 2000] [--json OUT]
   (as root: dropping the page cache needs it; FUSE needs /dev/fuse and fusermount3)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_fuse import KIB4, MIB, FuseSystem, drop_caches, fmt, make_tar, measure, small_file_sizes

APIS = ("mfusepy", "lowlevel")
KINDS = ("chroot", "tmpfs", "encrypted")
BIN = Path(sys.executable).parent


class LibosMount(FuseSystem):
    """``libos mount`` of a manifest with one mount of ``kind`` at /m, served by ``api``."""

    def __init__(self, work: Path, kind: str, api: str):
        self.name = f"{kind}-{api}"
        self.kind, self.api = kind, api
        super().__init__(work)

    @property
    def path(self) -> Path:
        return self.mnt / "m"

    def setup(self) -> None:
        mount = {"chroot": '{ type = "chroot", path = "/m", uri = "file:store/" }',
                 "tmpfs": '{ type = "tmpfs", path = "/m" }',
                 "encrypted": '{ type = "encrypted", path = "/m", uri = "file:store/", key_name = "default" }'}
        self.manifest = self.dir / "m.toml"
        self.manifest.write_text(f'libos.entrypoint = "/bin/true"\nfs.mounts = [\n  {mount[self.kind]},\n]\n'
                                 f'fs.insecure__keys.default = "{os.urandom(16).hex()}"\n')

    def mount(self) -> None:
        libos = shutil.which("libos", path=str(BIN)) or "libos"
        proc = subprocess.run([libos, "mount", "m.toml", "mnt"], cwd=self.dir, capture_output=True, text=True,
                              env={**os.environ, "PFSKIT_FUSE_API": self.api})
        if proc.returncode or not self.mounted():
            raise SystemExit(f"bench: {self.name} did not mount at {self.mnt}: {proc.stderr.strip()}")

    def cycle(self) -> None:
        if self.kind == "tmpfs":  # its files live in the daemon: unmounting would lose them
            drop_caches()
        else:
            super().cycle()


def correctness(system: LibosMount, rounds: int) -> dict[str, float | None]:
    """What the bridges differ in, counted on ``system``: sizes seen stale through a hard link's
    other name (``stat b`` and ``fstat`` of a descriptor opened by ``b``, at once after each of
    ``rounds`` writes through a descriptor of ``a`` still open), whether ``renameat2`` with
    RENAME_EXCHANGE swaps the two names or is refused with both intact (1) or loses a file (0), and the names other than
    the user's seen in the folder while a removed file is open (libfuse's ``.fuse_hidden``)."""
    import ctypes

    folder = system.path / "checks"
    folder.mkdir()
    out: dict[str, float | None] = {"stale_link_sizes": None}
    if system.kind != "encrypted":  # no hard links there (files and folders only, as in Gramine)
        a, b = folder / "a", folder / "b"
        a.write_bytes(b"")
        os.link(a, b)
        fd_a, fd_b = os.open(a, os.O_WRONLY), os.open(b, os.O_RDONLY)
        stale = 0
        for i in range(1, rounds + 1):
            os.pwrite(fd_a, b"w" * 100, (i - 1) * 100)
            stale += (os.stat(b).st_size != i * 100) + (os.fstat(fd_b).st_size != i * 100)
        os.close(fd_a)
        os.close(fd_b)
        out["stale_link_sizes"] = stale
        a.unlink()
        b.unlink()
    (folder / "x").write_bytes(b"x")
    (folder / "y").write_bytes(b"y")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.renameat2(-100, os.fsencode(folder / "x"), -100, os.fsencode(folder / "y"), 2)  # RENAME_EXCHANGE
    kept = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    out["exchange_safe"] = float(kept in ([("x", b"x"), ("y", b"y")], [("x", b"y"), ("y", b"x")]))
    for name in ("x", "y"):
        (folder / name).unlink(missing_ok=True)
    fd = os.open(folder / "open", os.O_RDWR | os.O_CREAT, 0o600)
    os.unlink(folder / "open")
    out["hidden_names"] = len(os.listdir(folder))
    os.close(fd)
    shutil.rmtree(folder)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256, help="file size (default 256)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement, best kept (default 1)")
    ap.add_argument("--ops", type=int, default=20000, help="timed 4 KiB random reads (default 20000)")
    ap.add_argument("--warmup", type=int, default=2000, help="untimed, checked random reads first (default 2000)")
    ap.add_argument("--files", type=int, default=2000, help="small files to write, list, read, untar (default 2000)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="mount types (default chroot,tmpfs,encrypted)")
    ap.add_argument("--link-rounds", type=int, default=500, help="writes checked through a hard link (default 500)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    count, total = args.size_mib, args.size_mib * MIB
    chunk = os.urandom(MIB)
    rng = random.Random(4)
    offsets = [rng.randrange(total // KIB4) * KIB4 for _ in range(args.ops)]
    warmup = [rng.randrange(total // KIB4) * KIB4 for _ in range(args.warmup)]
    can_drop = drop_caches()
    if not can_drop:
        print("bench: can't drop the page cache (not root?): warm reads only")
    work = Path(tempfile.mkdtemp(prefix="fuse-api-bench-", dir=Path(__file__).resolve().parent))
    systems = [LibosMount(work, kind, api) for kind in kinds for api in APIS]
    runs: dict[str, list[dict[str, float | None]]] = {s.name: [] for s in systems}
    sizes = small_file_sizes(args.files)
    try:
        tar = make_tar(work, chunk, sizes) if args.files else None
        for system in systems:
            system.setup()
            system.mount()
        for i in range(args.repeat):
            for kind in kinds:  # the two bridges of one mount type one after the other, in turns
                order = APIS if i % 2 == 0 else APIS[::-1]
                for api in order:
                    system = next(s for s in systems if s.name == f"{kind}-{api}")
                    start = time.perf_counter()
                    result = measure(system, chunk, count, offsets, warmup, can_drop, sizes, tar)
                    runs[system.name].append({**result, **correctness(system, args.link_rounds)})
                    print(f"  run {i + 1}/{args.repeat} {system.name}: {time.perf_counter() - start:.1f} s",
                          file=sys.stderr, flush=True)
                    (system.path / "big.bin").unlink()
    finally:
        for system in systems:
            try:
                system.unmount()
            except BaseException as exc:
                print(f"bench: unmounting {system.name} failed: {exc}", file=sys.stderr)
        if not any(s.mounted() for s in systems):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"bench: left {work} in place (still mounted)", file=sys.stderr)

    # best of the runs; for the counts of wrong answers (correctness), the worst
    results = {name: {k: max((r[k] for r in rs if r[k] is not None), default=None)
                      for k in rs[0]} for name, rs in runs.items()}
    labels = {"write_MBps": "seq write + fsync MB/s", "cold_read_MBps": "seq read, cold MB/s",
              "warm_read_MBps": "seq read, warm MB/s", "random_4k_read_ops": "4 KiB random read /s",
              "small_write_files_per_s": "small files: write /s", "small_list_entries_per_s": "small: ls -l /s",
              "small_read_files_per_s": "small files: read /s", "tar_x_files_per_s": "small: tar -x /s",
              "sqlite_tx_per_s": "sqlite transactions /s", "sqlite_queries_per_s": "sqlite queries /s"}
    print(f"file size: {args.size_mib} MiB, best of {args.repeat}, {args.ops} random reads, "
          f"{args.files} small files, {os.cpu_count()} CPUs; ratio = lowlevel / mfusepy")
    print(f"{'':24s}" + "".join(f"{k + ' mfusepy':>19s}{'lowlevel':>10s}{'ratio':>7s}" for k in kinds))
    ratios: dict[str, dict[str, float | None]] = {k: {} for k in kinds}
    for key, label in labels.items():
        row = f"{label:24s}"
        for kind in kinds:
            old, new = results[f"{kind}-mfusepy"].get(key), results[f"{kind}-lowlevel"].get(key)
            ratio = new / old if old and new is not None else None
            ratios[kind][key] = ratio
            row += f"{fmt(old, 19)}{fmt(new, 10)}" + (f"{ratio:7.2f}" if ratio is not None else f"{'n/a':>7s}")
        print(row)
    print(f"correctness ({args.link_rounds} writes through a hard link; 1 = RENAME_EXCHANGE lost no file):")
    for key, label in (("stale_link_sizes", "stale sizes via link"), ("exchange_safe", "RENAME_EXCHANGE safe"),
                       ("hidden_names", "hidden names seen")):
        row = f"{label:24s}"
        for kind in kinds:
            old, new = results[f"{kind}-mfusepy"].get(key), results[f"{kind}-lowlevel"].get(key)
            row += f"{fmt(old, 19)}{fmt(new, 10)}{'':7s}"
        print(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"size_MiB": args.size_mib, "repeat": args.repeat, "ops": args.ops,
                                               "files": args.files, "cold_cache": can_drop, "results": results,
                                               "runs": runs, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
