#!/usr/bin/env python3
"""`pfs encrypt` / `pfs decrypt` against Gramine's own `pf_crypt`, built from Gramine's sources and
measured in the same run, on the same file.

Gramine's code is never part of this repository: give the location of its sources, either a
checkout or a bare git repository (then ``--ref`` picks the version), with ``--gramine-src`` or
the ``GRAMINE_SRC`` environment variable. The script compiles the seven C files `pf_crypt` is made
of (tools/pf_crypt, tools/common, common/src/protected_files, two of common/src) with ``cc`` and
the system's mbedtls (Debian: ``apt-get install libmbedtls-dev uthash-dev``) into a temporary
folder, checks that each tool decrypts the other's output, then times both. Gramine's build links
its own mbedtls 3.x; the AES-GCM and CMAC calls are the same, the library version differs.

Both tools write without fsync here (`pf_crypt` never fsyncs), so `pfs` runs with `--no-fsync`;
the default, durable `pfs` run is printed too. Every timing is the best of --repeat runs, `sync`
before each.

usage: python bench/bench_gramine.py --gramine-src DIR [--ref v1.9] [--size-mib 256] [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_pfs import best, pfs_command

SOURCES = [
    "tools/pf_crypt/pf_crypt.c",
    "tools/common/pf_util/pf_util.c",
    "tools/common/util.c",
    "common/src/path_utils.c",
    "common/src/string_utils.c",
    "common/src/protected_files/protected_files.c",
    "common/src/protected_files/lru_cache.c",
]
INCLUDES = ["common/include", "common/include/arch/x86_64", "tools/common", "tools/common/pf_util",
            "common/src/protected_files"]


def gramine_tree(src: Path, ref: str, work: Path) -> Path:
    """A folder holding the Gramine files pf_crypt needs: ``src`` itself when it is a source
    tree, else those files of ``ref`` extracted from the git repository ``src``."""
    if (src / SOURCES[0]).is_file():
        return src
    tree = work / "gramine-src"
    tree.mkdir()
    wanted = ["tools/pf_crypt", "tools/common", "common/src/protected_files", "common/src/path_utils.c",
              "common/src/string_utils.c", "common/include"]
    archive = subprocess.run(["git", f"--git-dir={src}", "archive", ref, *wanted], capture_output=True)
    if archive.returncode:
        raise SystemExit(f"bench: {src} is neither a Gramine source tree nor a git repository with {ref!r}: "
                         f"{archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def build_pf_crypt(tree: Path, out: Path) -> Path:
    cc = os.environ.get("CC", "cc")
    cflags = os.environ.get("CFLAGS", "-O3").split()
    cmd = [cc, *cflags, "-DIN_TOOLS", *(f"-I{tree / inc}" for inc in INCLUDES),
           *(str(tree / name) for name in SOURCES), "-lmbedcrypto", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"bench: building pf_crypt failed (need libmbedtls-dev and uthash-dev):\n{proc.stderr}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gramine-src", default=os.environ.get("GRAMINE_SRC"),
                    help="Gramine's sources: a checkout or a (bare) git repository (default: $GRAMINE_SRC)")
    ap.add_argument("--ref", default="v1.9", help="the version to build from a git repository (default v1.9)")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="work folder (default: a temp folder under bench/, on the repo's disk)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if not args.gramine_src:
        ap.error("give Gramine's sources with --gramine-src DIR or GRAMINE_SRC")
    total = args.size_mib * 1024 * 1024
    base = Path(args.dir) if args.dir else Path(__file__).resolve().parent
    work = Path(tempfile.mkdtemp(prefix="gramine-bench-", dir=base))
    pfs = pfs_command()
    try:
        pf_crypt = build_pf_crypt(gramine_tree(Path(args.gramine_src), args.ref, work), work / "pf_crypt")
        plain, key = work / "plain.bin", work / "key"
        with open(plain, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                f.write(chunk)
        subprocess.run([*pfs, "gen-key", "-w", str(key)], check=True, stdout=subprocess.DEVNULL)

        runs = {  # name: (encrypt command, decrypt command); each bound to its own output's name
            "gramine pf_crypt": (
                [str(pf_crypt), "encrypt", "-w", str(key), "-i", str(plain), "-o", str(work / "g.enc")],
                [str(pf_crypt), "decrypt", "-w", str(key), "-i", str(work / "g.enc"), "-o", str(work / "g.out")]),
            "pfs --no-fsync": (
                [*pfs, "encrypt", "-q", "-w", str(key), "-i", str(plain), "-o", str(work / "p.enc"), "--no-fsync"],
                [*pfs, "decrypt", "-q", "-w", str(key), "-i", str(work / "p.enc"), "-o", str(work / "p.out"),
                 "--no-fsync"]),
            "pfs (default, fsync)": (
                [*pfs, "encrypt", "-q", "-w", str(key), "-i", str(plain), "-o", str(work / "d.enc")],
                [*pfs, "decrypt", "-q", "-w", str(key), "-i", str(work / "d.enc"), "-o", str(work / "d.out")]),
        }
        results: dict[str, dict[str, float]] = {}
        for name, (enc_cmd, dec_cmd) in runs.items():
            t_enc, _ = best(enc_cmd, args.repeat, Path(enc_cmd[enc_cmd.index("-o") + 1]))
            out = Path(dec_cmd[dec_cmd.index("-o") + 1])
            t_dec, _ = best(dec_cmd, args.repeat, out)
            if not filecmp.cmp(out, plain, shallow=False):
                raise SystemExit(f"bench: {name}: decrypted output differs from the input")
            results[name] = {"encrypt_MBps": total / t_enc / 1e6, "decrypt_MBps": total / t_dec / 1e6}

        # each tool reads the other's files, checking the bound path (the output path given)
        for cmd in ([*pfs, "decrypt", "-q", "-w", str(key), "-i", str(work / "g.enc"), "-o", str(work / "x1"), "-V"],
                    [str(pf_crypt), "decrypt", "-w", str(key), "-i", str(work / "p.enc"), "-o", str(work / "x2"),
                     "-V"]):
            subprocess.run(cmd, check=True, capture_output=True)
        if not (filecmp.cmp(work / "x1", plain, shallow=False) and filecmp.cmp(work / "x2", plain, shallow=False)):
            raise SystemExit("bench: the tools do not read each other's files")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    gramine, ours, durable = (results[name] for name in runs)
    ratios = {f"{op}_pfs_vs_gramine": ours[f"{op}_MBps"] / gramine[f"{op}_MBps"] for op in ("encrypt", "decrypt")}
    ratios.update({f"{op}_pfs_fsync_vs_gramine": durable[f"{op}_MBps"] / gramine[f"{op}_MBps"]
                   for op in ("encrypt", "decrypt")})
    print(f"file size: {args.size_mib} MiB, best of {args.repeat}, {os.cpu_count()} CPUs, Gramine {args.ref}")
    for name, r in results.items():
        print(f"{name:22s} encrypt {r['encrypt_MBps']:7.0f} MB/s  decrypt {r['decrypt_MBps']:7.0f} MB/s")
    print(f"pfs --no-fsync / pf_crypt: encrypt {ratios['encrypt_pfs_vs_gramine']:.2f}x  "
          f"decrypt {ratios['decrypt_pfs_vs_gramine']:.2f}x")
    print(f"pfs (fsync) / pf_crypt:    encrypt {ratios['encrypt_pfs_fsync_vs_gramine']:.2f}x  "
          f"decrypt {ratios['decrypt_pfs_fsync_vs_gramine']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"gramine_ref": args.ref, "size_MiB": args.size_mib,
                                               "repeat": args.repeat, "results": results, "ratios": ratios},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
