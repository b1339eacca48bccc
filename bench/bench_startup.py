#!/usr/bin/env python3
"""Start-up time of the command lines (`pfs`, `pfs-encrypt`, `libos`) against a bare interpreter.

Every command is a separate process, as a user (or `libos run`) starts it; the runs of all the
commands are interleaved (round robin), so that the machine's load moves them alike, and each
command's time is the median of --repeat runs. Baselines in the same run: `python -c pass` (the
same interpreter and site-packages as the commands) and `python -c "import click"` (the floor
of a click command line). Ratios are against the bare interpreter.

With --before DIR (a checkout or export of an older tree), every command of ours is also run
from DIR (``PYTHONPATH=DIR``, same interpreter and entry-point scripts), interleaved with the
current tree's runs: a before/after comparison under the same load. Byte-compile DIR first
(``python -m compileall -q pfs pal vfs libos tools`` in it, as scripts/setup.sh does here).

With --imports, each command is also run once under `python -X importtime`: the number of
modules it imports, whether the heavy ones (cryptography, pfs.stream, vfs) are among them, and
its costliest imports (cumulative microseconds).

usage: python bench/bench_startup.py [--repeat 21] [--before DIR] [--imports] [--top 8] [--json OUT]
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

HEAVY = ("cryptography", "pfs.stream", "pfs.protected_file", "vfs")


def script(name: str) -> str:
    """The entry-point script ``name`` next to this interpreter (or on PATH)."""
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"bench: '{name}' is not installed (run scripts/setup.sh)")
    return found


def commands(work: Path) -> dict[str, list[str]]:
    """The command lines to time (argv lists, all run with this interpreter)."""
    py = sys.executable
    key, plain, enc = work / "key", work / "tiny.txt", work / "tiny.pfs"
    pfs = [py, script("pfs")]
    return {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import click'": [py, "-c", "import click"],
        "pfs --help": [*pfs, "--help"],
        "pfs encrypt --help": [*pfs, "encrypt", "--help"],
        "pfs info FILE": [*pfs, "info", str(enc)],
        "pfs info -w KEY FILE": [*pfs, "info", "-w", str(key), str(enc)],
        "pfs encrypt (13 bytes)": [*pfs, "encrypt", "-q", "--force", "-w", str(key), "-i", str(plain),
                                   "-o", str(work / "out.pfs")],
        "pfs-encrypt --help": [py, script("pfs-encrypt"), "--help"],
        "libos --help": [py, script("libos"), "--help"],
        "libos mount --help": [py, script("libos"), "mount", "--help"],
    }


def prepare(work: Path) -> None:
    """A key and a tiny encrypted file for the commands to work on."""
    pfs = [sys.executable, script("pfs")]
    (work / "tiny.txt").write_bytes(b"hello, world\n")
    subprocess.run([*pfs, "gen-key", "-w", str(work / "key")], check=True, capture_output=True)
    subprocess.run([*pfs, "encrypt", "-q", "-w", str(work / "key"), "-i", str(work / "tiny.txt"),
                    "-o", str(work / "tiny.pfs")], check=True, capture_output=True)


Command = tuple[list[str], dict[str, str] | None]  # argv, environment (None: ours)


def with_before(cmds: dict[str, list[str]], before: str | None) -> dict[str, Command]:
    """``cmds`` with our environment, and each of our commands once more run from ``before``."""
    out: dict[str, Command] = {}
    for name, argv in cmds.items():
        out[name] = (argv, None)
    if before is not None:
        env = {**os.environ, "PYTHONPATH": os.path.abspath(before)}
        for name, argv in cmds.items():
            if not name.startswith("python "):
                out[f"{name} [before]"] = (argv, env)
    return out


def run_once(command: Command) -> float:
    """Seconds from spawn to exit of one run (it must succeed)."""
    argv, env = command
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"bench: {argv} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return elapsed


def timings(cmds: dict[str, Command], repeat: int) -> dict[str, float]:
    """The median seconds of every command, the runs interleaved."""
    for command in cmds.values():  # warm the page cache and the byte code
        run_once(command)
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(repeat):
        for name, command in cmds.items():
            samples[name].append(run_once(command))
    return {name: statistics.median(s) for name, s in samples.items()}


def imports(command: Command) -> tuple[list[tuple[str, int, int]], list[str]]:
    """``(modules as (name, nesting depth, cumulative import time in us), the heavy ones imported)``."""
    argv, env = command
    proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True, env=env)
    mods: list[tuple[str, int, int]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative, raw = line.split(":", 1)[1].split("|")
        name = raw.strip()
        mods.append((name, (len(raw) - len(raw.lstrip()) - 1) // 2, int(cumulative)))
    names = {name for name, _, _ in mods}
    heavy = sorted(h for h in HEAVY if any(n == h or n.startswith(h + ".") for n in names))
    return mods, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs per command (median)")
    parser.add_argument("--before", metavar="DIR", help="also run every command from the older tree DIR")
    parser.add_argument("--imports", action="store_true", help="also list what each command imports")
    parser.add_argument("--top", type=int, default=8, help="with --imports: the costliest top-level imports shown")
    parser.add_argument("--json", metavar="OUT", help="write the results to OUT")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        prepare(work)
        cmds = with_before(commands(work), args.before)
        medians = timings(cmds, args.repeat)
        base = medians["python -c pass"]
        print(f"start-up, median of {args.repeat} interleaved runs ({os.cpu_count()} cores, "
              f"python {sys.version.split()[0]})")
        print(f"{'command':37} {'ms':>7} {'x bare':>7} {'+ms':>7}")
        results: dict[str, dict[str, object]] = {}
        for name, seconds in medians.items():
            print(f"{name:37} {seconds * 1e3:7.1f} {seconds / base:7.2f} {(seconds - base) * 1e3:7.1f}")
            results[name] = {"median_ms": round(seconds * 1e3, 2), "x_bare": round(seconds / base, 2)}
        if args.imports:
            print()
            for name, command in cmds.items():
                mods, heavy = imports(command)
                top = sorted((m for m in mods if m[1] == 0), key=lambda m: -m[2])[:args.top]
                print(f"{name}: {len(mods)} modules; heavy: {', '.join(heavy) or 'none'}")
                print("    " + ", ".join(f"{m} {us / 1e3:.1f}" for m, _, us in top) + " (ms, cumulative)")
                results[name].update(modules=len(mods), heavy=heavy)
    if args.json:
        Path(args.json).write_text(json.dumps({"repeat": args.repeat, "before": args.before, "results": results},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
