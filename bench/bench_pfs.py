#!/usr/bin/env python3
"""Throughput and memory of `pfs encrypt` / `pfs decrypt` against baselines from the same run.

Baselines, measured here and now (the machine is shared and noisy, so only ratios count):
- the raw Python limit: AES-128-GCM with a fresh key per 4 KiB node, `encrypt_into`/`decrypt_into`
  into a reused buffer, no I/O, no tree;
- `openssl speed -evp aes-128-gcm -bytes 4096` when openssl is installed (C, one key).

The targets are checked on runs with `--no-fsync` (the raw limit does no I/O either); the
default, durable run (fsync before rename) is printed too, against a plain copy + fsync.
Each `pfs` run is a separate process (the real command line, as a user runs it); its peak RSS
comes from wait4(). Every timing is the best of --repeat runs, with `sync` before each so that
write-back of an earlier run doesn't land in the next one.

usage: python bench/bench_pfs.py [--size-mib 256] [--repeat 3] [--dir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NODE = 4096
TARGET_SINGLE = 0.5  # single-process encrypt/decrypt >= 0.5 x raw Python limit
TARGET_JOBS2 = 1.3  # --jobs 2 >= 1.3 x single process
TARGET_RSS_MB = 100


def pfs_command() -> list[str]:
    exe = Path(sys.executable).parent / "pfs"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("pfs")
    if found:
        return [found]
    return [sys.executable, "-m", "tools.pfs_cli"]


def raw_python_limit(total: int, decrypt: bool) -> float:
    """MB/s of the bare per-node AES-GCM loop over ``total`` bytes (in memory)."""
    n = total // NODE
    plain = bytearray(os.urandom(NODE))
    out = bytearray(NODE + 16)
    iv = bytes(12)
    keys = os.urandom(16 * n)
    if decrypt:
        sealed = AESGCM(keys[:16]).encrypt(iv, bytes(plain), None)
        start = time.perf_counter()
        for _ in range(n):
            AESGCM(keys[:16]).decrypt_into(iv, sealed, None, plain)
    else:
        start = time.perf_counter()
        for i in range(n):
            AESGCM(keys[16 * i:16 * i + 16]).encrypt_into(iv, plain, None, out)
    return total / (time.perf_counter() - start) / 1e6


def openssl_speed() -> float | None:
    """MB/s of `openssl speed -evp aes-128-gcm -bytes 4096`, or None without openssl."""
    if not shutil.which("openssl"):
        return None
    proc = subprocess.run(["openssl", "speed", "-evp", "aes-128-gcm", "-bytes", "4096", "-seconds", "2"],
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        m = re.match(r"\s*AES-128-GCM\s+([\d.]+)k", line, re.IGNORECASE)
        if m:
            return float(m.group(1)) * 1000 / 1e6
    return None


def library_speed(plain: Path, enc: Path, out: Path, repeat: int) -> tuple[float, float]:
    """MB/s of pfs.encrypt_stream / decrypt_stream called in this process (no start-up, no fsync)."""
    from pal import HostFile
    from pfs import decrypt_stream, encrypt_stream

    key = os.urandom(16)
    best_enc = best_dec = float("inf")
    for _ in range(repeat):
        for path in (enc, out):
            path.unlink(missing_ok=True)
        os.sync()
        start = time.perf_counter()
        with HostFile(plain) as src, HostFile(enc, writable=True, create=True) as dst:
            size = encrypt_stream(src, dst, key, "bench")
        best_enc = min(best_enc, time.perf_counter() - start)
        os.sync()
        start = time.perf_counter()
        with HostFile(enc) as src, HostFile(out, writable=True, create=True) as dst:
            decrypt_stream(src, dst, key, "bench")
        best_dec = min(best_dec, time.perf_counter() - start)
    for path in (enc, out):
        path.unlink(missing_ok=True)
    return size / best_enc / 1e6, size / best_dec / 1e6


def disk_fsync_speed(src: Path, dst: Path) -> float:
    """MB/s of copying ``src`` to a new file and fsyncing it (what a durable output costs here)."""
    os.sync()
    start = time.perf_counter()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    elapsed = time.perf_counter() - start
    size = dst.stat().st_size
    dst.unlink()
    return size / elapsed / 1e6


def run_timed(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one command run to completion."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {err.strip()}")
    return elapsed, usage.ru_maxrss / 1024


def best(cmd: list[str], repeat: int, cleanup: Path) -> tuple[float, float]:
    times, peak = [], 0.0
    for _ in range(repeat):
        if cleanup.exists():
            cleanup.unlink()
        seconds, rss = run_timed(cmd)
        times.append(seconds)
        peak = max(peak, rss)
    return min(times), peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="work folder (default: a temp folder on the same disk as the repo)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    total = args.size_mib * 1024 * 1024
    base = Path(args.dir) if args.dir else Path(__file__).resolve().parent
    work = Path(tempfile.mkdtemp(prefix="pfs-bench-", dir=base))
    pfs = pfs_command()
    try:
        plain, enc, out, key = work / "plain.bin", work / "plain.enc", work / "plain.out", work / "key"
        with open(plain, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                f.write(chunk)
        subprocess.run([*pfs, "gen-key", "-w", str(key)], check=True, stdout=subprocess.DEVNULL)

        raw_enc = max(raw_python_limit(total, decrypt=False) for _ in range(2))
        raw_dec = max(raw_python_limit(total, decrypt=True) for _ in range(2))
        ossl = openssl_speed()

        disk = disk_fsync_speed(plain, work / "dd.out")
        lib_enc, lib_dec = library_speed(plain, enc, out, args.repeat)
        results: dict[str, dict[str, float]] = {}
        for label, jobs, extra in (("jobs1", 1, ["--no-fsync"]), ("jobs2", 2, ["--no-fsync"]),
                                   ("jobs1+fsync", 1, [])):
            enc_cmd = [*pfs, "encrypt", "-q", "-w", str(key), "-i", str(plain), "-o", str(enc),
                       "--jobs", str(jobs), *extra]
            t_enc, rss_enc = best(enc_cmd, args.repeat, enc)
            dec_cmd = [*pfs, "decrypt", "-q", "-w", str(key), "-i", str(enc), "-o", str(out),
                       "--jobs", str(jobs), *extra]
            t_dec, rss_dec = best(dec_cmd, args.repeat, out)
            if not filecmp.cmp(out, plain, shallow=False):
                raise SystemExit("bench: decrypted output differs from the input")
            results[label] = {
                "encrypt_MBps": total / t_enc / 1e6, "decrypt_MBps": total / t_dec / 1e6,
                "encrypt_peak_rss_MB": rss_enc, "decrypt_peak_rss_MB": rss_dec,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    j1, j2 = results["jobs1"], results["jobs2"]
    ratios = {
        "encrypt_vs_raw": j1["encrypt_MBps"] / raw_enc,
        "decrypt_vs_raw": j1["decrypt_MBps"] / raw_dec,
        "encrypt_jobs2_vs_jobs1": j2["encrypt_MBps"] / j1["encrypt_MBps"],
        "decrypt_jobs2_vs_jobs1": j2["decrypt_MBps"] / j1["decrypt_MBps"],
    }
    peak = max(v for r in results.values() for k, v in r.items() if k.endswith("rss_MB"))
    print(f"file size: {args.size_mib} MiB, best of {args.repeat}, {os.cpu_count()} CPUs")
    print(f"raw Python limit (new key per 4 KiB node): encrypt {raw_enc:8.0f} MB/s  decrypt {raw_dec:8.0f} MB/s")
    if ossl is not None:
        print(f"openssl speed aes-128-gcm 4096 B:        {ossl:8.0f} MB/s")
    print(f"plain copy + fsync on this disk:          {disk:8.0f} MB/s")
    print(f"pfs library in-process (no start-up):     encrypt {lib_enc:8.0f} MB/s  decrypt {lib_dec:8.0f} MB/s"
          f"  ({lib_enc / raw_enc:.2f} / {lib_dec / raw_dec:.2f} of the raw limit)")
    for name, r in results.items():
        print(f"pfs {name}: encrypt {r['encrypt_MBps']:8.0f} MB/s  decrypt {r['decrypt_MBps']:8.0f} MB/s  "
              f"peak RSS {max(r['encrypt_peak_rss_MB'], r['decrypt_peak_rss_MB']):5.1f} MB")
    checks = [
        ("single-process encrypt / raw limit", ratios["encrypt_vs_raw"], TARGET_SINGLE),
        ("single-process decrypt / raw limit", ratios["decrypt_vs_raw"], TARGET_SINGLE),
        ("--jobs 2 encrypt / single", ratios["encrypt_jobs2_vs_jobs1"], TARGET_JOBS2),
        ("--jobs 2 decrypt / single", ratios["decrypt_jobs2_vs_jobs1"], TARGET_JOBS2),
    ]
    for label, value, target in checks:
        print(f"{label:38s} {value:5.2f}  (target >= {target})  {'ok' if value >= target else 'BELOW TARGET'}")
    if ossl is not None:
        print(f"{'single-process encrypt / openssl':38s} {j1['encrypt_MBps'] / ossl:5.2f}")
    durable = results["jobs1+fsync"]
    print(f"{'with fsync (default): encrypt / disk':38s} {durable['encrypt_MBps'] / disk:5.2f}")
    print(f"{'with fsync (default): decrypt / disk':38s} {durable['decrypt_MBps'] / disk:5.2f}")
    print(f"{'peak RSS of any run (MB)':38s} {peak:5.1f}  (target < {TARGET_RSS_MB})  "
          f"{'ok' if peak < TARGET_RSS_MB else 'ABOVE TARGET'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"raw_encrypt_MBps": raw_enc, "raw_decrypt_MBps": raw_dec,
                                               "openssl_MBps": ossl, "disk_fsync_MBps": disk,
                                               "library_MBps": {"encrypt": lib_enc, "decrypt": lib_dec},
                                               "results": results, "ratios": ratios,
                                               "peak_rss_MB": peak}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
