#!/usr/bin/env python3
"""The three ways to put programs on the VFS (issue 9, section 2), measured in one run on this machine.

Mechanisms (the C programs are in bench/mechanisms/, compiled with gcc into a temp folder):
- native: the program alone;
- libos-bind / libos-fuse: `libos run` (mount + PID namespaces over the FUSE view), the work
  folder a chroot mount bound straight from the host (bind) or served by the VFS over FUSE (fuse:
  a tmpfs mount nested in each chroot mount makes the runner serve it, the host parts included);
- notif-continue: a seccomp user-notification supervisor (SECCOMP_RET_USER_NOTIF on open, openat,
  stat, lstat, newfstatat, statx) that reads each path (process_vm_readv), checks the notification
  is still valid (NOTIF_ID_VALID) and answers SECCOMP_USER_NOTIF_FLAG_CONTINUE;
- notif-addfd: the same supervisor doing each call itself: it opens the file and injects the
  descriptor (SECCOMP_IOCTL_NOTIF_ADDFD + SECCOMP_ADDFD_FLAG_SEND), stats it and writes the result
  into the tracee;
- ptrace: seccomp SECCOMP_RET_TRACE on the same calls, PTRACE_O_TRACESECCOMP, the path read with
  process_vm_readv at each stop, then PTRACE_CONT.

Workloads: --calls x (openat + close) of an existing file and --calls x stat (timed inside the
program, around the loop only: the cost per call), `python3 -c "import json, sqlite3, email,
http.client"` and `tar -xf` of --files small files (1-4 KiB; checked after each run), timed from
fork to exit. The work folders are on /dev/shm (a host tmpfs; --dir to change): the disk, shared
with other jobs, would add noise larger than some of the costs measured. Each figure is the
median of --repeat runs, taken round robin over the mechanisms (whole programs after one untimed
round: warm caches); the machine's load average is printed before and after. "+us/call" is the
time over native divided by the calls the supervisor intercepted; "start ms" is a loop's
fork-to-exit time less the loop (the mechanism's set-up and exit).

Then the functional limits, by trying: (b) a VFS-only file (served by the supervisor from a
folder under a prefix the host lacks): open, chdir, execve; ADDFD of an O_PATH open; (c) threads
and vfork, with and without PTRACE_O_TRACECLONE/VFORK; and (a) for comparison: chdir into and
exec of what only the VFS has (its tmpfs).

usage: sudo .venv/bin/python bench/bench_mechanisms.py [--quick] [--repeat 5] [--calls 100000] [--files 2000]
       [--dir /dev/shm] [--json OUT]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBOS = str(Path(sys.executable).parent / "libos")
PYTHON = "/usr/bin/python3"
IMPORTS = "import json, sqlite3, email, http.client"
HOST_PARTS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc")
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LC_ALL": "C", "PYTHONDONTWRITEBYTECODE": "1"}
MECHS = ("native", "libos-bind", "libos-fuse", "notif-continue", "notif-addfd", "ptrace")
NEST = ".libos-bench-nest"  # a tmpfs mount point nested in each chroot mount of the fuse set


def fail(message: str) -> None:
    raise SystemExit(f"bench_mechanisms: {message}")


def compile_programs(out: Path) -> dict[str, str]:
    """gcc each program of bench/mechanisms/ into ``out``; {name: path}."""
    progs = {}
    for name in ("workload", "notif", "ptrace"):
        exe = out / name
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", str(exe),
               str(HERE / "mechanisms" / f"{name}.c")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            fail(f"gcc {name}.c failed: {proc.stderr.strip()[-600:]}")
        progs[name] = str(exe)
    return progs


def host_parts() -> list[str]:
    return [p for p in HOST_PARTS if os.path.isdir(p)]


def manifest(path: Path, entrypoint: str, work: Path, bindir: Path, fuse: bool) -> None:
    """``entrypoint`` with the host parts, /bench (the compiled programs), /w (``work``) and a tmpfs
    /tmp; with ``fuse``, a tmpfs nested in the host parts and /w, so the VFS serves them."""
    mounts = [{"type": "chroot", "path": p, "uri": "file:" + os.path.realpath(p)} for p in host_parts()]
    mounts += [{"type": "chroot", "path": "/bench", "uri": f"file:{bindir}"},
               {"type": "chroot", "path": "/w", "uri": f"file:{work}"}]
    if fuse:
        mounts += [{"type": "tmpfs", "path": f"{m['path']}/{NEST}"} for m in list(mounts) if m["path"] != "/bench"]
    mounts.append({"type": "tmpfs", "path": "/tmp"})

    def inline(d: dict[str, str]) -> str:
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in d.items()) + " }"

    lines = [f"libos.entrypoint = {json.dumps(entrypoint)}", "loader.insecure__use_cmdline_argv = true",
             'fs.start_dir = "/w"']
    lines += [f"loader.env.{k} = {json.dumps(v)}" for k, v in ENV.items()]
    lines += ["fs.mounts = ["] + [f"  {inline(m)}," for m in mounts] + ["]"]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Run:
    wall: float  # seconds, fork to exit
    loop_ns: int | None  # the program's own timing of its loop
    intercepted: int | None  # calls the supervisor saw


@dataclass
class Workload:
    name: str
    kind: str  # "open", "stat", "python", "tar"
    calls: int  # the loop's calls (0: a whole program, reported fork to exit)


class Bench:
    def __init__(self, top: Path, progs: dict[str, str], calls: int, files: int) -> None:
        self.top, self.progs, self.calls, self.files = top, progs, calls, files
        self.bindir = Path(progs["workload"]).parent
        self.work = {"host": top / "work", "fuse": top / "work-fuse"}  # libos-bind uses "host"
        for w in self.work.values():
            w.mkdir()
            (w / "target").write_bytes(b"x" * 100)
            (w / "x").mkdir()
            make_tar(w / "files.tar", files)
        for fuse in (False, True):
            work = self.work["fuse" if fuse else "host"]
            for prog in (progs["workload"], PYTHON, "/usr/bin/tar"):
                entry = "/bench/workload" if prog == progs["workload"] else prog
                manifest(self.toml(Path(prog).name, fuse), entry, work, self.bindir, fuse)

    def toml(self, prog: str, fuse: bool) -> Path:
        return self.top / f"{'fuse' if fuse else 'bind'}-{prog}.toml"

    def argv(self, kind: str, root: str, workload: str) -> list[str]:
        if kind in ("open", "stat"):
            return [workload, kind, f"{root}/target", str(self.calls)]
        if kind == "python":
            return [PYTHON, "-c", IMPORTS]
        return ["/usr/bin/tar", "-xf", "files.tar", "-C", "x"]

    def command(self, mech: str, kind: str) -> tuple[list[str], Path]:
        """(argv, cwd) of ``kind`` under ``mech``."""
        if mech.startswith("libos"):
            fuse = mech == "libos-fuse"
            argv = self.argv(kind, "/w", "/bench/workload")
            return [LIBOS, "run", str(self.toml(Path(argv[0]).name, fuse)), "--", *argv[1:]], self.top
        work = self.work["host"]
        argv = self.argv(kind, str(work), self.progs["workload"])
        if mech == "native":
            return argv, work
        if mech == "ptrace":
            return [self.progs["ptrace"], "--", *argv], work
        return [self.progs["notif"], mech.removeprefix("notif-"), "--", *argv], work

    def reset(self) -> None:
        for w in self.work.values():
            shutil.rmtree(w / "x")
            (w / "x").mkdir()

    def run(self, mech: str, kind: str) -> Run:
        cmd, cwd = self.command(mech, kind)
        self.reset()
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=dict(ENV), stdin=subprocess.DEVNULL, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            fail(f"{mech}: {' '.join(cmd[-5:])} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        loop_ns = intercepted = None
        for line in proc.stdout.splitlines():
            if line.startswith("ns "):
                loop_ns = int(line.split()[1])
        for line in proc.stderr.splitlines():
            if line.startswith("mech-intercepted "):
                intercepted = int(line.split()[1])
        if kind in ("open", "stat") and loop_ns is None:
            fail(f"{mech}: {kind} printed no timing: {proc.stdout[-200:]!r}")
        if kind == "tar":
            work = self.work["fuse" if mech == "libos-fuse" else "host"]
            got = sum(len(f) for _, _, f in os.walk(work / "x"))
            if got != self.files:
                fail(f"{mech}: tar -x left {got} files, not {self.files}")
        if (mech.startswith("notif") or mech == "ptrace") and not intercepted:
            fail(f"{mech}: the supervisor reported no intercepted call: {proc.stderr[-300:]!r}")
        return Run(wall, loop_ns, intercepted)


def make_tar(path: Path, files: int) -> None:
    rnd = random.Random(9)
    with tarfile.open(path, "w") as tar:
        for n in range(files):
            data = rnd.randbytes(rnd.randrange(1024, 4097))
            info = tarfile.TarInfo(f"d{n % 20:02d}/f{n:05d}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))


def limits(top: Path, progs: dict[str, str]) -> list[tuple[str, str]]:
    """What each supervisor can and cannot do, by trying; [(what, observed)]."""
    vfs = top / "vfs"
    (vfs / "sub").mkdir(parents=True)
    (vfs / "hello.txt").write_text("hello from the VFS\n")
    (vfs / "hello.sh").write_text("#!/bin/sh\necho ran\n")
    (vfs / "hello.sh").chmod(0o755)
    prefix = "/libos-bench-vfs-only"
    if os.path.exists(prefix):
        fail(f"{prefix} exists on this host: the VFS-only test needs a path the host lacks")
    out = []

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=top, env=dict(ENV), stdin=subprocess.DEVNULL)

    proc = run([progs["notif"], "vfs", prefix, str(vfs), "--", progs["workload"], "vfs", prefix])
    for line in proc.stdout.splitlines():
        out.append(("(b) notif, a file only the VFS has: " + line.split(":")[0], line.split(":", 1)[1].strip()))
    if proc.returncode or len(proc.stdout.splitlines()) != 3:
        fail(f"the VFS-only trial failed ({proc.returncode}): {proc.stdout!r} {proc.stderr[-300:]!r}")
    (top / "o-path").mkdir()
    with tarfile.open(top / "dirs.tar", "w") as tar:  # folders as entries: tar -x sets their times
        tar.add(vfs, arcname="vfs")
    proc = run([progs["notif"], "addfd", "--", "/usr/bin/tar", "-xf", str(top / "dirs.tar"), "-C", str(top / "o-path")])
    o_path = [ln for ln in proc.stderr.splitlines() if ln.startswith("mech-o-path-continued")]
    if proc.returncode or not o_path:
        fail(f"the O_PATH trial failed ({proc.returncode}): {proc.stderr[-300:]!r}")
    out.append(("(b) notif addfd, `tar -x`'s O_PATH opens (ADDFD refuses O_PATH files: EBADF)",
                f"{o_path[0].split()[1]} let through to the host (CONTINUE)"))
    # (a) for comparison: a folder and a script that only the VFS has (its tmpfs /tmp)
    manifest(top / "sh.toml", "/bin/sh", top / "work", Path(progs["workload"]).parent, False)
    script = 'mkdir /tmp/sub && cd /tmp/sub && pwd && printf "#!/bin/sh\\necho ran\\n" > s && chmod +x s && ./s'
    proc = run([LIBOS, "run", str(top / "sh.toml"), "--", "-c", script])
    if proc.returncode or proc.stdout.split() != ["/tmp/sub", "ran"]:
        fail(f"the libos run trial failed ({proc.returncode}): {proc.stdout!r} {proc.stderr[-300:]!r}")
    out.append(("(a) libos run, in its tmpfs /tmp: mkdir, cd, write a script, exec it", "ok (cwd /tmp/sub, ran)"))
    target = str(top / "work" / "target")
    for follow in (True, False):
        flag = [] if follow else ["--no-follow"]
        how = "with TRACECLONE/FORK/VFORK" if follow else "without (--no-follow)"
        for what, args in (("4 threads x 1000 opens", ["threads", target, "4", "1000"]),
                           ("vfork + exec of 1000 opens", ["vfork", target, "1000"])):
            proc = run([progs["ptrace"], *flag, "--", progs["workload"], *args])
            seen = {ln.split()[0]: ln.split()[1] for ln in proc.stderr.splitlines() if ln.startswith("mech-")}
            err = [ln for ln in proc.stderr.splitlines() if not ln.startswith("mech-")]
            result = (f"ok, {seen.get('mech-intercepted')} calls intercepted in {seen.get('mech-tasks')} tasks"
                      if proc.returncode == 0 else f"exit {proc.returncode}: {err[0] if err else ''}")
            out.append((f"(c) ptrace {how}: {what}", result))
    return out


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "loadavg": list(os.getloadavg())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 runs, 10,000 calls, 500 files")
    ap.add_argument("--repeat", type=int, help="runs per figure, median kept (default 5; --quick 3)")
    ap.add_argument("--calls", type=int, help="calls per loop (default 100000; --quick 10000)")
    ap.add_argument("--files", type=int, help="small files in the tar archive (default 2000; --quick 500)")
    ap.add_argument("--dir", help="work folder (default: /dev/shm, a host tmpfs, so that the shared disk's "
                                  "noise stays out of the mechanisms' costs; else the system's temp folder)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    base = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None)
    repeat = args.repeat or (3 if args.quick else 5)
    calls = args.calls or (10_000 if args.quick else 100_000)
    files = args.files or (500 if args.quick else 2000)
    if os.geteuid() != 0:
        fail("libos run needs root for now: run this with sudo")
    if platform.machine() != "x86_64":
        fail(f"the supervisors' seccomp filters are written for x86_64, not {platform.machine()}")
    for tool in ("gcc", "tar", PYTHON):
        if not shutil.which(tool):
            fail(f"{tool} is not installed (scripts/setup.sh installs it, as root)")
    if not os.path.exists(LIBOS):
        fail(f"{LIBOS} not found: run scripts/setup.sh")

    workloads = [Workload(f"openat+close x {calls}", "open", calls), Workload(f"stat x {calls}", "stat", calls),
                 Workload("python3 imports", "python", 0), Workload(f"tar -x {files} files", "tar", 0)]
    before = machine()
    top = Path(tempfile.mkdtemp(prefix="mech-bench-", dir=base))
    print(f"bench_mechanisms: work folder {top}", file=sys.stderr, flush=True)
    try:
        bindir = top / "bin"
        bindir.mkdir()
        progs = compile_programs(bindir)
        bench = Bench(top, progs, calls, files)
        results: dict[str, dict[str, list[Run]]] = {w.name: {m: [] for m in MECHS} for w in workloads}
        for w in workloads:
            if not w.calls:  # one untimed round first: caches warm for every mechanism alike
                for mech in MECHS:
                    bench.run(mech, w.kind)
            # round robin: the shared machine's noise falls on every mechanism alike
            for _ in range(repeat):
                for mech in MECHS:
                    results[w.name][mech].append(bench.run(mech, w.kind))
            row = results[w.name]
            print(f"  {w.name:24s} " + " ".join(f"{m} {statistics.median(r.wall for r in row[m]) * 1000:.0f}"
                                                 for m in MECHS) + " ms", file=sys.stderr, flush=True)
        found = limits(top, progs)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    after = machine()
    report(workloads, results, found, repeat, before, after, args.json)


def report(workloads: list[Workload], results: dict[str, dict[str, list[Run]]], found: list[tuple[str, str]],
           repeat: int, before: dict, after: dict, json_out: str | None) -> None:
    load = lambda m: " ".join(f"{x:.2f}" for x in m["loadavg"])  # noqa: E731
    print(f"median of {repeat} runs, round robin; {before['cpus']} CPUs, Linux {before['kernel']}; "
          f"load average (1/5/15 min) before {load(before)}, after {load(after)}")
    summary: dict[str, dict[str, dict[str, float | None]]] = {}
    for w in workloads:
        rows = results[w.name]
        med = {m: statistics.median(r.loop_ns / 1000 / w.calls if w.calls else r.wall * 1000 for r in rows[m])
               for m in MECHS}
        unit = "us/call" if w.calls else "ms"
        print(f"\n{w.name} ({'the loop, per call' if w.calls else 'fork to exit'})")
        print(f"  {'mechanism':16s}{unit:>10s}{'x native':>10s}{'intercepted':>13s}{'+us/call':>10s}"
              + (f"{'start ms':>10s}" if w.calls else ""))
        summary[w.name] = {}
        for m in MECHS:
            counts = [r.intercepted for r in rows[m] if r.intercepted is not None]
            count = statistics.median(counts) if counts else None
            extra = None
            if w.calls:
                extra = med[m] - med["native"]
            elif count:
                extra = (med[m] - med["native"]) * 1000 / count
            # the loop workloads' fork-to-exit time less their loop: the mechanism's start and end
            start = statistics.median(r.wall * 1000 - r.loop_ns / 1e6 for r in rows[m]) if w.calls else None
            summary[w.name][m] = {unit: med[m], "x_native": med[m] / med["native"], "intercepted": count,
                                  "extra_us_per_call": extra, "start_ms": start}
            print(f"  {m:16s}{med[m]:10.2f}{med[m] / med['native']:9.2f}x"
                  f"{'' if count is None else f'{count:.0f}':>13s}{'' if extra is None else f'{extra:+.1f}':>10s}"
                  + (f"{start:10.1f}" if start is not None else ""))
    print("\nfunctional limits, by trying:")
    for what, seen in found:
        print(f"  {what}: {seen}")
    if json_out:
        Path(json_out).write_text(json.dumps({
            "repeat": repeat, "machine_before": before, "machine_after": after, "median": summary,
            "limits": [{"what": w, "observed": s} for w, s in found]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
