#!/usr/bin/env python3
"""Throughput of our encrypted FUSE mount (`pfs mount --rw`) against gocryptfs and a plain folder.

All three live in one temp folder under bench/ (same disk) and are measured in the same run
(the machine is shared and noisy, so the ratios count more than absolute numbers):
- sequential write of one file: 1 MiB writes of a random buffer (the same buffer over and over:
  no system here compresses), then fsync; write + fsync + close are timed together;
- sequential read, cold cache: unmount, `sync`, `echo 3 > /proc/sys/vm/drop_caches`, mount again,
  read the file in 1 MiB reads (when dropping caches isn't allowed this is said, and only the
  warm read is reported);
- sequential read, warm cache: read the file twice (two opens, as `cat` twice would), time the
  second;
- 4 KiB random reads: on a freshly mounted file system with dropped caches, --warmup preads at
  random 4 KiB-aligned offsets (checked against the expected bytes), then --ops timed preads;
- small files (--files, 0 to skip): write that many files of 1-16 KiB in 20 folders (open,
  write, close each), then on a freshly mounted file system with dropped caches list every folder
  with the attributes of each entry (`ls -l`), then read every file (checking its length);
- tar -x of an archive of those small files (made outside the mounts) into a new folder;
- sqlite (Python's sqlite3, default rollback journal): 200 transactions of 50 inserts of
  200-byte rows, then 2,000 point queries by primary key (transactions/s and queries/s).

Every timing is the best of --repeat runs, with `sync` before it. The target: the pfs mount does at
least 0.8 x gocryptfs on sequential write and on cold read.

usage: python bench/bench_fuse.py [--size-mib 1024] [--repeat 1] [--ops 20000] [--files 2000] [--json OUT]
   (as root: dropping the page cache needs it; FUSE needs /dev/fuse and fusermount3)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pfs import pfs_command  # the same `pfs` executable lookup (bench/ is on sys.path)

MIB = 1 << 20
KIB4 = 4096
TARGET = 0.8  # pfs mount >= 0.8 x gocryptfs on sequential write and cold read
PASSWORD = "bench-fuse-password"
FILE_NAME = "big.bin"


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"bench: {' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()}")


def drop_caches() -> bool:
    """sync, then drop the page cache, dentries and inodes; False if not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def daemons_of(mountpoint: Path) -> list[int]:
    """Processes whose command line names ``mountpoint`` (the FUSE daemon serving it)."""
    needle = str(mountpoint).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if needle in args:
            pids.append(int(entry))
    return pids


class System:
    """A place to put the test file; the mounted ones can be unmounted and mounted again."""

    name = "plain"

    def __init__(self, work: Path):
        self.dir = work / self.name
        self.dir.mkdir()

    @property
    def path(self) -> Path:
        return self.dir

    def setup(self) -> None:
        pass

    def mount(self) -> None:
        pass

    def unmount(self) -> None:
        pass

    def mounted(self) -> bool:
        return False

    def cycle(self) -> None:
        """Start cold: unmount, drop the page cache, mount again."""
        self.unmount()
        drop_caches()
        self.mount()


class FuseSystem(System):
    """A FUSE file system over ``dir/store`` shown at ``dir/mnt``."""

    def __init__(self, work: Path):
        super().__init__(work)
        self.store = self.dir / "store"
        self.mnt = self.dir / "mnt"
        self.store.mkdir()
        self.mnt.mkdir()

    @property
    def path(self) -> Path:
        return self.mnt

    def mounted(self) -> bool:
        return os.path.ismount(self.mnt)

    def mount_cmd(self) -> list[str]:
        raise NotImplementedError

    def mount(self) -> None:
        run(self.mount_cmd())
        if not self.mounted():
            raise SystemExit(f"bench: {self.name} did not mount at {self.mnt}")

    def unmount(self) -> None:
        """Unmount and wait for the daemon to finish (it flushes and exits after the unmount)."""
        if self.mounted():
            tool = shutil.which("fusermount3") or shutil.which("fusermount") or "umount"
            proc = subprocess.run([tool, "-u", str(self.mnt)], capture_output=True, text=True)
            if proc.returncode:
                time.sleep(0.5)
                subprocess.run([tool, "-u", "-z", str(self.mnt)], capture_output=True)
        deadline = time.monotonic() + 60
        while daemons_of(self.mnt) and time.monotonic() < deadline:
            time.sleep(0.02)


class PfsMount(FuseSystem):
    name = "pfs"

    def setup(self) -> None:
        self.key = self.dir / "wrap.key"
        run([*pfs_command(), "gen-key", "-w", str(self.key)])

    def mount_cmd(self) -> list[str]:
        return [*pfs_command(), "mount", "-w", str(self.key), str(self.store), str(self.mnt), "--rw"]


class GocryptfsMount(FuseSystem):
    name = "gocryptfs"

    def setup(self) -> None:
        run(["gocryptfs", "-init", "-q", "-extpass", f"echo {PASSWORD}", str(self.store)])

    def mount_cmd(self) -> list[str]:
        return ["gocryptfs", "-q", "-extpass", f"echo {PASSWORD}", str(self.store), str(self.mnt)]


def seq_write(path: Path, chunk: bytes, count: int) -> float:
    """Seconds to write ``count`` x ``chunk`` to a new file, fsync it and close it."""
    path.unlink(missing_ok=True)
    os.sync()
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(count):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def seq_read(path: Path, total: int, sync: bool = True) -> float:
    """Seconds to read the whole file in 1 MiB reads (checking its length)."""
    buf = bytearray(MIB)
    if sync:
        os.sync()
    start = time.perf_counter()
    got = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            got += n
    elapsed = time.perf_counter() - start
    if got != total:
        raise SystemExit(f"bench: read {got} bytes of {path}, expected {total}")
    return elapsed


def random_reads(path: Path, chunk: bytes, offsets: list[int], warmup: list[int]) -> float:
    """ops/s of 4 KiB preads at ``offsets``, after ``warmup`` preads that check the bytes read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for off in warmup:
            inner = off % MIB
            if os.pread(fd, KIB4, off) != chunk[inner:inner + KIB4]:
                raise SystemExit(f"bench: wrong bytes at offset {off} of {path}")
        os.sync()
        pread = os.pread
        start = time.perf_counter()
        for off in offsets:
            pread(fd, KIB4, off)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    return len(offsets) / elapsed


SMALL_DIRS = 20


def small_file_sizes(n: int) -> list[int]:
    rng = random.Random(9)
    return [rng.randrange(1024, 16 * 1024) for _ in range(n)]


def small_write(root: Path, chunk: bytes, sizes: list[int]) -> float:
    """files/s writing ``sizes`` as small files in SMALL_DIRS folders under ``root``."""
    os.sync()
    start = time.perf_counter()
    for d in range(SMALL_DIRS):
        os.mkdir(root / f"d{d}")
    for i, size in enumerate(sizes):
        fd = os.open(root / f"d{i % SMALL_DIRS}" / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, chunk[:size])
        finally:
            os.close(fd)
    return len(sizes) / (time.perf_counter() - start)


def make_tar(work: Path, chunk: bytes, sizes: list[int]) -> Path:
    """A tar archive (outside every mount) of ``sizes`` as small files in SMALL_DIRS folders."""
    src = work / "tar-src"
    src.mkdir()
    for d in range(SMALL_DIRS):
        (src / f"d{d}").mkdir()
    for i, size in enumerate(sizes):
        (src / f"d{i % SMALL_DIRS}" / f"f{i}").write_bytes(chunk[:size])
    archive = work / "small.tar"
    run(["tar", "-cf", str(archive), "-C", str(src), "."])
    shutil.rmtree(src)
    return archive


def tar_extract(root: Path, archive: Path, files: int) -> float:
    """files/s of ``tar -x`` of ``archive`` into a new folder ``root``."""
    root.mkdir()
    os.sync()
    start = time.perf_counter()
    run(["tar", "-xf", str(archive), "-C", str(root)])
    return files / (time.perf_counter() - start)


def small_list_and_read(root: Path, sizes: list[int]) -> tuple[float, float]:
    """(entries/s listing every folder with each entry's attributes, files/s reading every file)."""
    start = time.perf_counter()
    seen = 0
    for d in range(SMALL_DIRS):
        with os.scandir(root / f"d{d}") as it:
            for entry in it:
                entry.stat(follow_symlinks=False)
                seen += 1
    listed = time.perf_counter() - start
    if seen != len(sizes):
        raise SystemExit(f"bench: listed {seen} small files under {root}, expected {len(sizes)}")
    start = time.perf_counter()
    for i, size in enumerate(sizes):
        with open(root / f"d{i % SMALL_DIRS}" / f"f{i}", "rb", buffering=0) as f:
            if len(f.read(size + 1)) != size:
                raise SystemExit(f"bench: wrong length for small file {i} under {root}")
    return len(sizes) / listed, len(sizes) / (time.perf_counter() - start)


def sqlite_work(root: Path) -> tuple[float, float]:
    """(transactions/s, point queries/s) of a small sqlite database in ``root``."""
    db = sqlite3.connect(root / "bench.db")
    try:
        db.execute("create table t(id integer primary key, v text)")
        start = time.perf_counter()
        for _ in range(200):
            with db:
                db.executemany("insert into t(v) values (?)", [("x" * 200,)] * 50)
        tx = 200 / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(2000):
            if db.execute("select v from t where id = ?", (i * 5 + 1,)).fetchone() is None:
                raise SystemExit(f"bench: sqlite row {i * 5 + 1} missing under {root}")
        return tx, 2000 / (time.perf_counter() - start)
    finally:
        db.close()
        for name in ("bench.db", "bench.db-journal"):
            (root / name).unlink(missing_ok=True)


def measure(system: System, chunk: bytes, count: int, offsets: list[int], warmup: list[int],
            can_drop: bool, sizes: list[int], tar: Path | None = None) -> dict[str, float | None]:
    total = count * len(chunk)
    file = system.path / FILE_NAME
    t_write = seq_write(file, chunk, count)
    seq_read(file, total)
    t_warm = seq_read(file, total)
    t_cold = None
    if can_drop:
        system.cycle()
        t_cold = seq_read(file, total, sync=False)
    system.cycle()
    ops = random_reads(file, chunk, offsets, warmup)
    results: dict[str, float | None] = {
        "write_MBps": total / t_write / 1e6,
        "cold_read_MBps": total / t_cold / 1e6 if t_cold else None,
        "warm_read_MBps": total / t_warm / 1e6,
        "random_4k_read_ops": ops,
    }
    if sizes:
        root = system.path / "small"
        root.mkdir()
        results["small_write_files_per_s"] = small_write(root, chunk, sizes)
        system.cycle()
        results["small_list_entries_per_s"], results["small_read_files_per_s"] = small_list_and_read(root, sizes)
        shutil.rmtree(root)
        if tar is not None:
            results["tar_x_files_per_s"] = tar_extract(system.path / "tarx", tar, len(sizes))
            shutil.rmtree(system.path / "tarx")
    results["sqlite_tx_per_s"], results["sqlite_queries_per_s"] = sqlite_work(system.path)
    return results


def best(runs: list[dict[str, float | None]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = max(values) if values else None
    return out


def fmt(value: float | None, width: int = 9) -> str:
    return f"{value:{width}.0f}" if value is not None else f"{'n/a':>{width}}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement, best kept (default 1)")
    ap.add_argument("--ops", type=int, default=20000, help="timed 4 KiB random reads (default 20000)")
    ap.add_argument("--warmup", type=int, default=2000, help="untimed, checked random reads first (default 2000)")
    ap.add_argument("--files", type=int, default=2000, help="small files to write, list and read (default 2000)")
    ap.add_argument("--dir", help="work folder (default: a temp folder under bench/, on the repo's disk)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    count, total = args.size_mib, args.size_mib * MIB
    chunk = os.urandom(MIB)
    rng = random.Random(4)
    pages = total // KIB4
    offsets = [rng.randrange(pages) * KIB4 for _ in range(args.ops)]
    warmup = [rng.randrange(pages) * KIB4 for _ in range(args.warmup)]

    can_drop = drop_caches()
    if not can_drop:
        print("bench: can't write /proc/sys/vm/drop_caches (not root?): no cold-cache read, warm only")
    base = Path(args.dir) if args.dir else Path(__file__).resolve().parent
    work = Path(tempfile.mkdtemp(prefix="fuse-bench-", dir=base))
    systems: list[System] = [PfsMount(work)]
    if shutil.which("gocryptfs"):
        systems.append(GocryptfsMount(work))
    else:
        print("bench: gocryptfs is not installed: no comparison with it")
    systems.append(System(work))
    runs: dict[str, list[dict[str, float | None]]] = {s.name: [] for s in systems}
    try:
        tar = make_tar(work, chunk, small_file_sizes(args.files)) if args.files else None
        for system in systems:
            system.setup()
            system.mount()
        for i in range(args.repeat):
            for system in systems:
                start = time.perf_counter()
                runs[system.name].append(measure(system, chunk, count, offsets, warmup, can_drop,
                                                 small_file_sizes(args.files), tar))
                print(f"  run {i + 1}/{args.repeat} {system.name}: {time.perf_counter() - start:.1f} s",
                      file=sys.stderr, flush=True)
                (system.path / FILE_NAME).unlink()
    finally:
        for system in systems:
            try:
                system.unmount()
            except BaseException as exc:  # keep unmounting the others
                print(f"bench: unmounting {system.name} failed: {exc}", file=sys.stderr)
        if not any(s.mounted() for s in systems):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"bench: left {work} in place (still mounted)", file=sys.stderr)

    results = {name: best(r) for name, r in runs.items()}
    keys = [("write_MBps", "seq write + fsync", "MB/s"), ("cold_read_MBps", "seq read, cold", "MB/s"),
            ("warm_read_MBps", "seq read, warm", "MB/s"), ("random_4k_read_ops", "4 KiB random read", "ops/s")]
    if args.files:
        keys += [("small_write_files_per_s", "small files: write", "/s"),
                 ("small_list_entries_per_s", "small files: ls -l", "/s"),
                 ("small_read_files_per_s", "small files: read", "/s"),
                 ("tar_x_files_per_s", "small files: tar -x", "/s")]
    keys += [("sqlite_tx_per_s", "sqlite transactions", "/s"), ("sqlite_queries_per_s", "sqlite queries", "/s")]
    names = list(results)
    print(f"file size: {args.size_mib} MiB, best of {args.repeat}, {args.ops} random reads, {os.cpu_count()} CPUs")
    header = f"{'':24s}" + "".join(f"{n:>12s}" for n in names)
    has_gc = "gocryptfs" in results
    print(header + ("   pfs / gocryptfs" if has_gc else "") + "   pfs / plain")
    ratios: dict[str, dict[str, float | None]] = {"vs_gocryptfs": {}, "vs_plain": {}}
    for key, label, unit in keys:
        row = f"{label + ' (' + unit + ')':24s}" + "".join(f"{fmt(results[n][key], 12)}" for n in names)
        ours = results["pfs"][key]
        for ref, slot in (("gocryptfs", "vs_gocryptfs"), ("plain", "vs_plain")):
            other = results.get(ref, {}).get(key)
            ratio = ours / other if ours is not None and other else None
            ratios[slot][key] = ratio
            if ref in results:
                row += f"   {ratio:15.2f}" if ratio is not None else f"   {'n/a':>15s}"
        print(row)
    if has_gc:
        for key, label in (("write_MBps", "sequential write"), ("cold_read_MBps", "cold sequential read")):
            ratio = ratios["vs_gocryptfs"][key]
            if ratio is None:
                print(f"pfs / gocryptfs, {label:22s}   n/a  (target >= {TARGET})  NOT MEASURED")
            else:
                print(f"pfs / gocryptfs, {label:22s} {ratio:5.2f}  (target >= {TARGET})  "
                      f"{'ok' if ratio >= TARGET else 'BELOW TARGET'}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "size_MiB": args.size_mib, "repeat": args.repeat, "ops": args.ops, "files": args.files,
            "cold_cache": can_drop,
            "results": results, "runs": runs, "ratios": ratios, "target_vs_gocryptfs": TARGET}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
