#!/usr/bin/env python3
"""pandas through the ``pfs`` fsspec file system against the plaintext files, in one run.

Makes a CSV and a Parquet file of about --size-mb MB each (random numbers and labels: the Parquet
file barely compresses), encrypts both with `pfs encrypt`, then times, alternately and --repeat
times each, `pd.read_csv` / `pd.read_parquet` of the plaintext file and of `pfs::file://<enc>`.
Prints the medians and the ratio plaintext time / pfs time (1.0: no cost; target >= 0.7).
Each read is checked to give the same frame as the plaintext read.

usage: python bench/bench_data.py [--size-mb 200] [--repeat 5] [--dir DIR] [--json OUT] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.7


def make_frame(size_mb: int, seed: int = 1):
    import numpy as np
    import pandas as pd

    rows = size_mb * 1_000_000 // 39  # about 39 bytes per CSV row with these columns
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "value": rng.normal(size=rows).round(6),
        "other": rng.random(size=rows).round(6),
        "count": rng.integers(0, 1_000_000, size=rows),
        "label": rng.choice(["alpha", "beta", "gamma", "delta", "epsilon"], size=rows),
    })


def median_time(fn, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", help="folder for the files (default: a temporary folder)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="40 MB files, 3 repeats")
    args = ap.parse_args()
    if args.quick:
        args.size_mb, args.repeat = 40, 3

    import pandas as pd

    work = Path(tempfile.mkdtemp(prefix="bench-data-", dir=args.dir))
    try:
        key = work / "wrap.key"
        pfs = [sys.executable, "-m", "tools.pfs_cli"]
        repo = Path(__file__).resolve().parents[1]
        subprocess.run([*pfs, "gen-key", "-w", str(key)], cwd=repo, check=True, capture_output=True)
        df = make_frame(args.size_mb)
        plain_csv, plain_pq = work / "t.csv", work / "t.parquet"
        df.to_csv(plain_csv, index=False)
        df.to_parquet(plain_pq, row_group_size=1_000_000)
        # the Parquet file compresses: make it about as large as the CSV, with more rows
        want_rows = int(len(df) * args.size_mb * 1e6 / plain_pq.stat().st_size)
        if want_rows > len(df):
            copies = -(-want_rows // len(df))
            df = pd.concat([df.assign(id=df["id"] + i * len(df)) for i in range(copies)], ignore_index=True)
            df = df.iloc[:want_rows]
            df.to_parquet(plain_pq, row_group_size=1_000_000)
        pq_rows = len(df)
        del df
        for name in ("t.csv", "t.parquet"):
            subprocess.run([*pfs, "encrypt", "-q", "-w", str(key), "-i", str(work / name), "-o",
                            str(work / f"enc-{name}"), "--bind-prefix", "/data"], cwd=repo, check=True)
        so = {"pfs": {"key_file": str(key), "bind_prefix": "/data", "root": str(work)}}
        cases = {
            "read_csv": (lambda: pd.read_csv(plain_csv),
                         lambda: pd.read_csv(f"pfs::file://{work}/enc-t.csv", storage_options=so)),
            "read_parquet": (lambda: pd.read_parquet(plain_pq),
                             lambda: pd.read_parquet(f"pfs::file://{work}/enc-t.parquet", storage_options=so)),
        }
        sizes = {"read_csv": plain_csv.stat().st_size, "read_parquet": plain_pq.stat().st_size}
        results = {}
        ok = True
        print(f"# {os.cpu_count()} CPUs; files: CSV {sizes['read_csv'] / 1e6:.0f} MB, Parquet "
              f"{sizes['read_parquet'] / 1e6:.0f} MB ({pq_rows:,} rows); median of {args.repeat}, alternating")
        for name, (plain_fn, pfs_fn) in cases.items():
            want, got = plain_fn(), pfs_fn()  # warm-up, and the check that both read the same frame
            pd.testing.assert_frame_equal(got, want)
            del want, got
            plain_t, pfs_t = [], []
            for _ in range(args.repeat):
                plain_t.append(median_time(plain_fn, 1)[0])
                pfs_t.append(median_time(pfs_fn, 1)[0])
            mp, me = statistics.median(plain_t), statistics.median(pfs_t)
            ratio = mp / me
            ok &= ratio >= TARGET
            results[name] = {"plain_s": mp, "pfs_s": me, "ratio": ratio, "bytes": sizes[name],
                             "plain_runs": plain_t, "pfs_runs": pfs_t}
            print(f"{name:13s} plaintext {mp:6.2f} s ({sizes[name] / 1e6 / mp:6.0f} MB/s)   pfs:: {me:6.2f} s "
                  f"({sizes[name] / 1e6 / me:6.0f} MB/s)   ratio {ratio:.2f}x (target >= {TARGET}x)"
                  f" {'ok' if ratio >= TARGET else 'MISSED'}")
        if args.json:
            Path(args.json).write_text(json.dumps({"size_mb": args.size_mb, "repeat": args.repeat,
                                                   "results": results}, indent=2) + "\n")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
