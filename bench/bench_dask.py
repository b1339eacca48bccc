#!/usr/bin/env python3
"""`pfs encrypt --dask --jobs 2` of a 2 GiB tree against `pfs encrypt --jobs 2`, and 1, 2, 4 local workers.

Both sides are the real command line, each run a separate process, outputs fsync'ed off
(`--no-fsync`, so that the disk's write-back doesn't decide), `sync` before each run, the best
of --repeat runs; the Dask runs include starting the LocalCluster (its worker processes), as a
user pays it. The tree: 8 files of 192 MiB (whole: each is under half a worker's share) and 512
files of 1 MiB. Target: --dask >= 0.9x the plain run at --jobs 2. On a 2-core machine more
than 2 workers can only share the same 2 cores: the 4-worker figure shows the cost of that, not
a speed-up. `--scheduler` to a 2-worker cluster already running shows the job without the
cluster's start-up. With --before DIR (a checkout of an older tree) its `--dask --jobs 2` and
`--scheduler` runs are timed too, interleaved with ours: a before/after comparison under the
same load.

usage: python bench/bench_dask.py [--repeat 2] [--dir DIR] [--workers 1,2,4] [--before DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.9
MIB = 1 << 20


def pfs_command() -> list[str]:
    exe = Path(sys.executable).parent / "pfs"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tools.pfs_cli"]


def make_tree(root: Path) -> int:
    block = os.urandom(8 * MIB)
    total = 0
    for i in range(8):
        path = root / "large" / f"part{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for _ in range(24):
                f.write(i.to_bytes(8, "little") + block[8:])
        total += 192 * MIB
    for i in range(512):
        path = root / f"small{i % 16}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        start = (i * 4096) % (7 * MIB)
        path.write_bytes(block[start:start + MIB])
        total += MIB
    return total


def running_cluster():
    """A LocalCluster of 2 worker processes, already up: `--scheduler` runs pay no start-up."""
    import logging

    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                        silence_logs=logging.CRITICAL)


def run(args: list[str], out: Path, env: dict[str, str] | None = None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where to make the tree (default: a temporary folder)")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--before", default=None, help="an older tree to time in the same run")
    parser.add_argument("--json", default=None)
    opts = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-dask-", dir=opts.dir))
    try:
        src, out = base / "src", base / "out"
        total = make_tree(src)
        key = base / "k.key"
        key.write_bytes(os.urandom(16))
        key.chmod(0o600)
        pfs = [*pfs_command(), "encrypt", "-w", str(key), "-i", str(src), "-o", str(out), "-q", "--no-fsync"]
        rows: dict[str, float] = {}
        cluster = running_cluster()
        try:
            runs = [("plain --jobs 2", ["--jobs", "2"], None)] + [
                (f"--dask --jobs {n}", ["--dask", "--jobs", str(n)], None) for n in opts.workers.split(",")] + [
                ("--scheduler (2 up)", ["--scheduler", cluster.scheduler_address], None)]
            if opts.before:
                # the older tree's code first on the path (the venv's install is an editable path entry)
                env = {**os.environ, "PYTHONPATH": os.path.abspath(opts.before)}
                runs += [(f"{name} [before]", extra, env) for name, extra, _ in runs[1:] if "--jobs 2" in name
                         or "--scheduler" in name]
            for _ in range(opts.repeat):
                for name, extra, env in runs:
                    t = run([*pfs, *extra], out, env)
                    rows[name] = min(rows.get(name, t), t)
        finally:
            cluster.close()
        plain = rows["plain --jobs 2"]
        print(f"tree: {total / MIB:.0f} MiB (8 x 192 MiB + 512 x 1 MiB), {os.cpu_count()} cores, "
              f"best of {opts.repeat}")
        for name, t in rows.items():
            print(f"  {name:28s} {t:6.2f} s  {total / MIB / t:7.0f} MiB/s  {plain / t:5.2f}x plain --jobs 2")
        ratio = plain / rows["--dask --jobs 2"]
        print(f"--dask --jobs 2 / plain --jobs 2: {ratio:.2f}x (target >= {TARGET}x): "
              f"{'met' if ratio >= TARGET else 'missed'}; with the cluster up: "
              f"{plain / rows['--scheduler (2 up)']:.2f}x")
        if opts.before:
            print(f"before: --dask --jobs 2 {plain / rows['--dask --jobs 2 [before]']:.2f}x, with the cluster up "
                  f"{plain / rows['--scheduler (2 up) [before]']:.2f}x")
        if opts.json:
            report = {"total_mib": total / MIB, "cores": os.cpu_count(), "seconds": rows,
                      "ratio_dask_jobs2": ratio, "ratio_scheduler_up": plain / rows["--scheduler (2 up)"]}
            Path(opts.json).write_text(json.dumps(report, indent=1) + "\n")
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
