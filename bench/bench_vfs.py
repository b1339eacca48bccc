#!/usr/bin/env python3
"""I/O through the LibOS system-call API against plain os.pread/os.pwrite, in one run.

For each of: host (os.pread/os.pwrite on a host file: the baseline), LibOS on a chroot mount,
LibOS on an encrypted mount, LibOS on tmpfs: 4 KiB random reads and writes (ops/s) over a 64 MiB
file, and 1 MiB sequential writes then reads (MB/s). Prints each result and its ratio to the host.

usage: python bench/bench_vfs.py [--file-mib 64] [--ops 20000] [--seq-mib 256]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from libos import LibOS
from vfs.chroot import ChrootFs
from vfs.encrypted import EncryptedFs, KeyStore
from vfs.mount import MountTable
from vfs.tmpfs import TmpFs
from vfs.vfs import VFS

KIB4 = 4096
MIB = 1 << 20


class HostIO:
    """The baseline: a host file through os.*."""

    def __init__(self, path: Path):
        self.path = path

    def open(self, name: str, create: bool) -> int:
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        return os.open(self.path / name, flags, 0o600)

    pread = staticmethod(os.pread)
    pwrite = staticmethod(os.pwrite)
    write = staticmethod(os.write)
    read = staticmethod(os.read)
    close = staticmethod(os.close)
    fsync = staticmethod(os.fsync)


class LibosIO:
    """The same operations through a LibOS process on a mount at /m."""

    def __init__(self, proc):
        self.p = proc

    def open(self, name: str, create: bool) -> int:
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        return self.p.open("/m/" + name, flags, 0o600)

    def pread(self, fd: int, n: int, off: int) -> bytes:
        return self.p.pread(fd, n, off)

    def pwrite(self, fd: int, data: bytes, off: int) -> int:
        return self.p.pwrite(fd, data, off)

    def write(self, fd: int, data: bytes) -> int:
        return self.p.write(fd, data)

    def read(self, fd: int, n: int) -> bytes:
        return self.p.read(fd, n)

    def close(self, fd: int) -> None:
        self.p.close(fd)

    def fsync(self, fd: int) -> None:
        self.p.fsync(fd)


def libos_with(fs) -> LibosIO:
    vfs = VFS(MountTable())
    vfs.mounts.mount("/", TmpFs())
    vfs.mounts.mount("/m", fs)
    return LibosIO(LibOS(vfs).process())


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn()
    return time.perf_counter() - start, n


def run(io, file_mib: int, ops: int, seq_mib: int) -> dict[str, float]:
    rnd = random.Random(1)
    block = os.urandom(KIB4)
    chunk = os.urandom(MIB)
    # prepare the random-access file
    fd = io.open("rand.bin", True)
    for i in range(file_mib):
        io.pwrite(fd, chunk, i * MIB)
    io.fsync(fd)
    nblocks = file_mib * MIB // KIB4
    offsets = [rnd.randrange(nblocks) * KIB4 for _ in range(ops)]

    def rand_read() -> int:
        for off in offsets:
            io.pread(fd, KIB4, off)
        return len(offsets)

    def rand_write() -> int:
        for off in offsets:
            io.pwrite(fd, block, off)
        return len(offsets)

    t_rr, _ = timed(rand_read)
    t_rw, _ = timed(rand_write)
    io.close(fd)

    seq = io.open("seq.bin", True)

    def seq_write() -> int:
        for _ in range(seq_mib):
            io.write(seq, chunk)
        io.fsync(seq)
        return seq_mib

    t_sw, _ = timed(seq_write)
    io.close(seq)
    seq = io.open("seq.bin", False)

    def seq_read() -> int:
        total = 0
        while data := io.read(seq, MIB):
            total += len(data)
        assert total == seq_mib * MIB, total
        return total

    t_sr, _ = timed(seq_read)
    io.close(seq)
    return {"rand_read_ops": ops / t_rr, "rand_write_ops": ops / t_rw,
            "seq_write_MBps": seq_mib * MIB / t_sw / 1e6, "seq_read_MBps": seq_mib * MIB / t_sr / 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file-mib", type=int, default=64)
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--seq-mib", type=int, default=256)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vfs-bench-", dir=Path(__file__).resolve().parent))
    try:
        results = {}
        for name, make in [
            ("host os.pread/pwrite", lambda d: HostIO(d)),
            ("libos chroot", lambda d: libos_with(ChrootFs(str(d)))),
            ("libos encrypted", lambda d: libos_with(_encrypted(d))),
            ("libos tmpfs", lambda d: libos_with(TmpFs())),
        ]:
            folder = work / name.split()[-1].replace("/", "_")
            folder.mkdir()
            results[name] = run(make(folder), args.file_mib, args.ops, args.seq_mib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = results["host os.pread/pwrite"]
    print(f"file {args.file_mib} MiB, {args.ops} random 4 KiB ops, {args.seq_mib} MiB sequential in 1 MiB calls")
    print(f"{'':22s} {'4K rand read':>14s} {'4K rand write':>14s} {'seq write':>12s} {'seq read':>12s}")
    for name, r in results.items():
        print(f"{name:22s} {r['rand_read_ops']:10.0f}/s {r['rand_write_ops']:10.0f}/s "
              f"{r['seq_write_MBps']:7.0f} MB/s {r['seq_read_MBps']:7.0f} MB/s")
        if name != "host os.pread/pwrite":
            print(f"{'  ratio to host':22s} {r['rand_read_ops'] / base['rand_read_ops']:12.2f}   "
                  f"{r['rand_write_ops'] / base['rand_write_ops']:12.2f}   "
                  f"{r['seq_write_MBps'] / base['seq_write_MBps']:10.2f}   "
                  f"{r['seq_read_MBps'] / base['seq_read_MBps']:10.2f}")
    return 0


def _encrypted(folder: Path) -> EncryptedFs:
    keys = KeyStore()
    keys.set("default", os.urandom(16))
    return EncryptedFs(str(folder), keys=keys)


if __name__ == "__main__":
    sys.exit(main())
