#!/usr/bin/env python3
"""`libos run` against native runs, `bwrap` (the namespace floor) and `proot` (the ptrace peer).

Every workload is a real program started as a fresh process, timed from fork to exit (wall clock,
`time.perf_counter`), the median of --repeat runs, all in one run on this machine:

- start-up: `/bin/true`, `python3 -c pass`, `python3 -c "import json, sqlite3, email, http.client"`;
- `tar -xf` of an archive of --files small files (1-4 KiB) into an empty folder;
- `sqlite3`: 10 transactions of 1,000 inserts, then 2,000 point queries by primary key (one
  `.read` of an SQL file, into a new database each run);
- `sha256sum` of a --size-mib file (random bytes; warm page cache after the first run).

Two sets, each measured with four launchers (native, bwrap, proot, libos run):
- chroot (host-backed): the work folder is a host folder, bound at /w (libos run: a chroot
  mount, which the runner binds straight from the host when nothing is checked on it);
- encrypted: the same files in a folder of pfs files; libos run sees it as an encrypted mount
  at /w; native, bwrap and proot run on a `pfs mount --rw` of that folder (the same bindings).

Runs go round robin over the launchers. Between runs the outputs (the tar folder, the database)
are removed untimed. The views of bwrap and proot are the host's /usr, /lib*, /bin, /sbin, /etc,
/proc, /dev, a private /tmp and /w. The "net" column is native/libos with each launcher's own
`/bin/true` time taken off both sides: the speed of the work once the program runs.

Targets (from issue 9): libos run adds <= 150 ms to `python3 -c pass` over native; chroot
workloads (tar, sqlite, sha256) at >= 0.8x native speed; encrypted workloads at >= 0.9x of the
native run on the pfs mount; libos run faster than proot on every workload; the runner's peak
memory < 150 MB (its own process: the peak of VmHWM in /proc/PID/status, sampled every 5 ms while
it runs; the wait4() ru_maxrss of the whole run, the program's processes included, is printed too).

usage: sudo .venv/bin/python bench/bench_run.py [--quick] [--repeat 5] [--files 2000] [--size-mib 256] [--json OUT]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
LIBOS, PFS = str(BIN / "libos"), str(BIN / "pfs")
MIB = 1 << 20
PYTHON = "/usr/bin/python3"
HOST_PARTS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc")
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LC_ALL": "C", "PYTHONDONTWRITEBYTECODE": "1"}
LAUNCHERS = ("native", "bwrap", "proot", "libos")
TARGET_FIXED_MS, TARGET_CHROOT, TARGET_ENCRYPTED, TARGET_MEM_MB = 150.0, 0.8, 0.9, 150.0


@dataclass
class Workload:
    name: str
    argv: list[str]
    io: bool = True  # a file-system workload (has an encrypted variant, ratio targets)
    reset: Callable[[Path], None] = field(default=lambda w: None)  # untimed, before each run
    lines: int = 0  # lines of output a correct run prints (checked, so a run can't do nothing)


def _reset_tar(work: Path) -> None:
    shutil.rmtree(work / "x", ignore_errors=True)
    (work / "x").mkdir()


def _reset_db(work: Path) -> None:
    (work / "bench.db").unlink(missing_ok=True)


WORKLOADS = [
    Workload("/bin/true", ["/bin/true"], io=False),
    Workload("python3 -c pass", [PYTHON, "-c", "pass"], io=False),
    Workload("python3 imports", [PYTHON, "-c", "import json, sqlite3, email, http.client"], io=False),
    Workload("tar -x", ["/usr/bin/tar", "-xvf", "files.tar", "-C", "x"], reset=_reset_tar),  # lines: set later
    Workload("sqlite3", ["/usr/bin/sqlite3", "bench.db", ".read work.sql"], reset=_reset_db, lines=2000),
    Workload("sha256sum", ["/usr/bin/sha256sum", "big.bin"], lines=1),
]


def fail(message: str) -> None:
    raise SystemExit(f"bench_run: {message}")


def check(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode:
        fail(f"{' '.join(cmd[:3])} ... exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return proc


def make_inputs(folder: Path, files: int, size_mib: int) -> None:
    """files.tar (``files`` files of 1-4 KiB in 20 folders), work.sql, big.bin."""
    rnd = random.Random(9)
    with tarfile.open(folder / "files.tar", "w") as tar:
        for n in range(files):
            data = rnd.randbytes(rnd.randrange(1024, 4097))
            info = tarfile.TarInfo(f"d{n % 20:02d}/f{n:05d}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    sql = ["CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, v INTEGER NOT NULL);"]
    for batch in range(10):
        sql.append("BEGIN;")
        sql += [f"INSERT INTO t VALUES ({n}, 'row-{n:05d}-{'x' * 40}', {n * 7919 % 10007});"
                for n in range(batch * 1000, batch * 1000 + 1000)]
        sql.append("COMMIT;")
    sql += [f"SELECT v FROM t WHERE id = {rnd.randrange(10000)};" for _ in range(2000)]
    (folder / "work.sql").write_text("\n".join(sql) + "\n")
    chunk = os.urandom(MIB)
    with open(folder / "big.bin", "wb") as f:
        for _ in range(size_mib):
            f.write(chunk)


def host_parts() -> list[str]:
    return [p for p in HOST_PARTS if os.path.isdir(p)]


def bwrap_argv(work: Path, tmp: Path, argv: list[str]) -> list[str]:
    cmd = ["bwrap", "--die-with-parent", "--unshare-pid", "--clearenv"]
    for part in host_parts():
        if os.path.islink(part):
            cmd += ["--symlink", os.readlink(part), part]
        else:
            cmd += ["--ro-bind", part, part]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--bind", str(tmp), "/tmp", "--bind", str(work), "/w",
            "--chdir", "/w"]
    for k, v in ENV.items():
        cmd += ["--setenv", k, v]
    return [*cmd, "--", *argv]


def proot_argv(root: Path, work: Path, tmp: Path, argv: list[str]) -> list[str]:
    cmd = ["proot", "-r", str(root)]
    for part in host_parts():
        cmd += ["-b", f"{os.path.realpath(part)}:{part}"]
    cmd += ["-b", "/proc", "-b", "/dev", "-b", f"{tmp}:/tmp", "-b", f"{work}:/w", "-w", "/w"]
    return [*cmd, *argv]


def manifest(path: Path, entrypoint: str, work_mount: dict[str, str]) -> None:
    """A manifest for ``entrypoint`` (its arguments from the command line) with the host parts, /w
    and a tmpfs /tmp."""
    mounts = [{"type": "chroot", "path": p, "uri": "file:" + os.path.realpath(p)} for p in host_parts()]
    mounts += [work_mount, {"type": "tmpfs", "path": "/tmp"}]

    def inline(d: dict[str, str]) -> str:
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in d.items()) + " }"

    lines = [f"libos.entrypoint = {json.dumps(entrypoint)}", "loader.insecure__use_cmdline_argv = true",
             'fs.start_dir = "/w"']
    lines += [f"loader.env.{k} = {json.dumps(v)}" for k, v in ENV.items()]
    lines += ["fs.mounts = ["] + [f"  {inline(m)}," for m in mounts] + ["]"]
    path.write_text("\n".join(lines) + "\n")


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None, watch: bool,
          lines: int) -> tuple[float, float, float]:
    """(seconds, peak VmHWM of the started process in MB or 0, wait4 ru_maxrss in MB); the
    program must exit 0 and print ``lines`` lines."""
    peak = [0]
    stop = threading.Event()

    def sample(pid: int) -> None:
        while not stop.is_set():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except (OSError, ValueError):
                pass
            stop.wait(0.005)

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        sampler = threading.Thread(target=sample, args=(proc.pid,), daemon=True)
        if watch:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        if watch:
            sampler.join()
        out.seek(0)
        printed = out.read().count(b"\n")
        if proc.returncode or printed != lines:
            err.seek(0)
            fail(f"{' '.join(cmd[-4:])} exited {proc.returncode} after {printed} lines of output (expected "
                 f"{lines}): {err.read().decode(errors='replace').strip()[-400:]}")
    return elapsed, peak[0] / 1024, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 runs, 500 files, 32 MiB (a minute or two)")
    ap.add_argument("--repeat", type=int, help="runs per measurement, median kept (default 5; --quick 3)")
    ap.add_argument("--files", type=int, help="small files in the tar archive (default 2000; --quick 500)")
    ap.add_argument("--size-mib", type=int, help="sha256sum's file (default 256; --quick 32)")
    ap.add_argument("--dir", help="work folder (default: a temp folder under bench/, on the repo's disk)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    files = args.files or (500 if args.quick else 2000)
    size_mib = args.size_mib or (32 if args.quick else 256)
    if os.geteuid() != 0:
        fail("libos run needs root for now: run this with sudo")
    for tool in ("bwrap", "proot", "tar", "sqlite3", "sha256sum"):
        if not shutil.which(tool):
            fail(f"{tool} is not installed (scripts/setup.sh installs it, as root)")
    if not os.path.exists(LIBOS):
        fail(f"{LIBOS} not found: run scripts/setup.sh")
    # the runner's modules compiled, as an installed package's are: with PYTHONDONTWRITEBYTECODE
    # set and sources changed since their last compile, every libos run would compile them again
    root = Path(__file__).resolve().parent.parent
    check([sys.executable, "-m", "compileall", "-q", *(str(root / p) for p in ("tools", "libos", "vfs", "pfs", "pal"))],
          env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
    load_before = os.getloadavg()

    base = Path(args.dir) if args.dir else Path(__file__).resolve().parent
    top = Path(tempfile.mkdtemp(prefix="run-bench-", dir=base))
    host, enc, mnt, tmp, root = (top / n for n in ("host", "enc", "mnt", "tmp", "root"))
    for d in (host, enc, mnt, tmp, root):
        d.mkdir()
    key = top / "bench.key"
    with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(os.urandom(16))
    mounts = {"chroot": {"type": "chroot", "path": "/w", "uri": f"file:{host}"},
              "encrypted": {"type": "encrypted", "path": "/w", "uri": f"file:{enc}", "key_name": "k"}}
    for set_name, work_mount in mounts.items():  # Gramine's rule: the entry point is the manifest's
        for program in {w.argv[0] for w in WORKLOADS}:
            manifest(top / f"{set_name}-{Path(program).name}.toml", program, work_mount)
    mounted = False
    results: dict[str, dict[str, float]] = {}
    io_rows: list[str] = []
    memory: list[tuple[float, float]] = []
    try:
        print(f"bench_run: inputs ({files} files, {size_mib} MiB) in {top}", file=sys.stderr, flush=True)
        make_inputs(host, files, size_mib)
        WORKLOADS[3].lines = files  # tar -v: one line per file
        for name in ("files.tar", "work.sql", "big.bin"):
            check([PFS, "encrypt", "-q", "-w", str(key), "-i", str(host / name), "-o", str(enc / name),
                   "--manifest", str(top / "encrypted-true.toml")])

        def launch(launcher: str, work: Path, set_name: str, argv: list[str]) -> tuple[list[str], Path, dict | None]:
            if launcher == "native":
                return argv, work, dict(ENV)
            if launcher == "bwrap":
                return bwrap_argv(work, tmp, argv), top, None
            if launcher == "proot":
                return proot_argv(root, work, tmp, argv), top, dict(ENV)
            toml = top / f"{set_name}-{Path(argv[0]).name}.toml"
            return [LIBOS, "run", "-k", f"k={key}", str(toml), "--", *argv[1:]], top, None

        for set_name in mounts:
            for w in WORKLOADS:
                if set_name == "encrypted" and not w.io:
                    continue
                name = f"{set_name}: {w.name}"
                row = results.setdefault(name, {})
                if w.io:
                    io_rows.append(name)
                times: dict[str, list[float]] = {n: [] for n in LAUNCHERS}
                # round robin: the machine's noise (other jobs on shared cores and disk) falls on
                # every launcher alike rather than on whichever ran during a busy spell
                for _ in range(repeat):
                    for launcher in LAUNCHERS:
                        # the encrypted set: native, bwrap and proot on a pfs mount of the folder,
                        # libos run on the folder itself with the pfs mount unmounted (one writer)
                        wanted = set_name == "encrypted" and launcher != "libos"
                        if wanted and not mounted:
                            check([PFS, "mount", "-w", str(key), str(enc), str(mnt), "--rw", "--log",
                                   str(top / "mount.log")])
                        elif mounted and not wanted:
                            check([PFS, "umount", str(mnt)])
                        mounted = wanted
                        work = host if set_name == "chroot" else mnt
                        folder = enc if (set_name == "encrypted" and launcher == "libos") else work
                        w.reset(folder)
                        cmd, cwd, env = launch(launcher, work, set_name, w.argv)
                        elapsed, hwm, maxrss = timed(cmd, cwd, env, launcher == "libos", w.lines)
                        times[launcher].append(elapsed)
                        if launcher == "libos":
                            memory.append((hwm, maxrss))
                        w.reset(folder)
                for launcher in LAUNCHERS:
                    row[launcher] = statistics.median(times[launcher])
                print(f"  {name:28s} " + " ".join(f"{n} {row[n] * 1000:.1f}" for n in LAUNCHERS) + " ms",
                      file=sys.stderr, flush=True)
    finally:
        if mounted:
            subprocess.run([PFS, "umount", str(mnt)], capture_output=True)
        if not mounted or not os.path.ismount(mnt):
            shutil.rmtree(top, ignore_errors=True)
        else:
            print(f"bench_run: left {top} in place (still mounted)", file=sys.stderr)
    load = (*load_before, *os.getloadavg())
    report(results, io_rows, memory, repeat, files, size_mib, args.json, load)


def report(results: dict[str, dict[str, float]], io_rows: list[str], memory: list[tuple[float, float]],
           repeat: int, files: int, size_mib: int, json_out: str | None, load: tuple[float, ...]) -> None:
    print(f"median of {repeat} runs, ms (tar: {files} files; sha256sum: {size_mib} MiB; {os.cpu_count()} CPUs); "
          "encrypted rows: native/bwrap/proot on a `pfs mount` of the folder, libos run on its encrypted mount")
    print(f"load average (1, 5, 15 min) before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"after: {load[3]:.2f} {load[4]:.2f} {load[5]:.2f}")
    print(f"{'workload':28s}" + "".join(f"{n:>10s}" for n in LAUNCHERS)
          + f"{'native/libos':>14s}{'proot/libos':>13s}{'net':>8s}")
    floor = results["chroot: /bin/true"]
    verdicts = []
    for name, row in results.items():
        speed = row["native"] / row["libos"]  # >1: libos run is faster
        # net: the same ratio with each launcher's own /bin/true time taken off both sides (its
        # start-up), i.e. the speed of the work itself
        net_libos, net_native = row["libos"] - floor["libos"], row["native"] - floor["native"]
        net = f"{net_native / net_libos:7.2f}x" if name in io_rows and net_libos > 0 else f"{'':8s}"
        print(f"{name:28s}" + "".join(f"{row[n] * 1000:10.1f}" for n in LAUNCHERS)
              + f"{speed:13.2f}x{row['proot'] / row['libos']:12.2f}x{net}")
        verdicts.append((f"faster than proot: {name}", row["libos"] < row["proot"],
                         f"{row['libos'] * 1000:.1f} vs {row['proot'] * 1000:.1f} ms"))
        if name in io_rows:
            target = TARGET_ENCRYPTED if name.startswith("encrypted") else TARGET_CHROOT
            verdicts.append((f"{name} >= {target}x native", speed >= target, f"{speed:.2f}x"))
    fixed = (results["chroot: python3 -c pass"]["libos"] - results["chroot: python3 -c pass"]["native"]) * 1000
    verdicts.insert(0, (f"fixed cost (python3 -c pass) <= {TARGET_FIXED_MS:.0f} ms", fixed <= TARGET_FIXED_MS,
                        f"+{fixed:.1f} ms"))
    hwm = max(m[0] for m in memory)
    maxrss = max(m[1] for m in memory)
    verdicts.append((f"runner peak memory < {TARGET_MEM_MB:.0f} MB", hwm < TARGET_MEM_MB,
                     f"{hwm:.1f} MB VmHWM of the runner (the whole run with the program, wait4 ru_maxrss: "
                     f"{maxrss:.1f} MB)"))
    print("targets:")
    for what, ok, value in verdicts:
        print(f"  {'ok  ' if ok else 'MISS'}  {what}: {value}")
    if json_out:
        Path(json_out).write_text(json.dumps({
            "repeat": repeat, "files": files, "size_MiB": size_mib, "median_s": results,
            "load_average_before_after": load,
            "runner_peak_vmhwm_MB": hwm, "run_maxrss_MB": maxrss,
            "targets": [{"what": w, "ok": ok, "value": v} for w, ok, v in verdicts]}, indent=2))


if __name__ == "__main__":
    main()
