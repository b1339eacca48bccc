"""Helpers for the real-FUSE tests: starting and always stopping ``pfs mount`` / ``libos mount``
daemons, and a random file-system exerciser checked against an in-memory model.

The exerciser also runs as a program (``python fuse_helpers.py exercise ROOT SEED OPS``) so the
tests can run several of them at once in separate processes; it prints the final model as JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
PFS = BIN / "pfs"
LIBOS = BIN / "libos"
FUSERMOUNT = shutil.which("fusermount3")
SLOW = os.environ.get("PFSKIT_SLOW", "") not in ("", "0")


def _libfuse_major() -> int | None:
    """The libfuse major version the daemons run on: what ``vfs.fuse.load_mfusepy`` loads, asked in a
    fresh interpreter (it may pick the library through the environment), or None."""
    code = "from vfs.fuse import load_mfusepy; print(load_mfusepy().fuse_version_major)"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return int(proc.stdout) if proc.returncode == 0 and proc.stdout.strip().isdigit() else None


def _libfuse3_path() -> str | None:
    from ctypes.util import find_library

    name = find_library("fuse3")
    if name is None:
        return None
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib"):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return name


LIBFUSE_MAJOR = _libfuse_major()
LIBFUSE3 = _libfuse3_path()


def fuse_unavailable() -> str | None:
    """Why real FUSE mounts can't run here (None when they can)."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if FUSERMOUNT is None:
        return "fusermount3 is not installed"
    if not PFS.exists():
        return f"{PFS} is not installed (pip install -e .)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy/libfuse3 not usable: {exc}"
    return None


def run(cmd: list[str | os.PathLike], *, cwd: str | os.PathLike | None = None, timeout: float = 120,
        check: bool = False, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


# ---------------------------------------------------------------------- mount table


def _unescape(field_: str) -> str:
    return field_.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounted(mountpoint: str | os.PathLike) -> bool:
    """Whether ``mountpoint`` is in the mount table (also true for a dead FUSE mount, where
    ``os.path.ismount`` gives False because stat fails with ENOTCONN)."""
    target = os.path.abspath(mountpoint)
    with open("/proc/self/mounts") as f:
        return any(_unescape(line.split()[1]) == target for line in f if line.strip())


def mount_line(mountpoint: str | os.PathLike) -> str | None:
    target = os.path.abspath(mountpoint)
    with open("/proc/self/mounts") as f:
        for line in f:
            if line.strip() and _unescape(line.split()[1]) == target:
                return line.strip()
    return None


def fusermount_u(mountpoint: str | os.PathLike, *, lazy: bool = False) -> subprocess.CompletedProcess:
    return run([FUSERMOUNT, "-u", *(["-z"] if lazy else []), os.path.abspath(mountpoint)], timeout=30)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def daemon_pids(mountpoint: str | os.PathLike) -> list[int]:
    """Pids of the ``pfs``/``libos mount`` daemons serving ``mountpoint`` (found by their command
    line, which names the mount point as given: only daemons this test started match)."""
    want = {str(mountpoint), os.path.abspath(mountpoint)}
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "mount" in argv and want & set(argv) and any(a.endswith(("pfs", "libos")) for a in argv[:2]):
            pids.append(int(entry))
    return pids


def wait_gone(pids: list[int], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------- daemons


@dataclass
class Mount:
    """One mount made by a test: a foreground daemon (``proc`` set, stderr in ``log_path``) or a
    background one (found by its command line)."""

    mountpoint: Path
    argv: list[str]
    cwd: Path | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    background_pids: list[int] = field(default_factory=list)
    start_stderr: str = ""  # what a background mount command printed

    def pids(self) -> list[int]:
        if self.proc is not None:
            return [self.proc.pid]
        return self.background_pids or daemon_pids(self.mountpoint)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def alive(self) -> bool:
        return any(_alive(p) for p in self.pids())

    def unmount(self, *, timeout: float = 30.0) -> None:
        """Unmount (``fusermount3 -u``) and wait until the daemon has flushed and exited."""
        pids = self.pids()
        proc = fusermount_u(self.mountpoint)
        if proc.returncode != 0:
            raise AssertionError(f"fusermount3 -u {self.mountpoint} failed: {proc.stderr.strip()}")
        self.wait_exit(pids, timeout)

    def wait_exit(self, pids: list[int] | None = None, timeout: float = 30.0) -> int | None:
        if self.proc is not None:
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"daemon {self.proc.pid} still running {timeout} s after unmount") from None
        if not wait_gone(pids if pids is not None else self.pids(), timeout):
            raise AssertionError(f"daemon of {self.mountpoint} still running {timeout} s after unmount")
        return None

    def kill9(self) -> None:
        for pid in self.pids():
            os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        else:
            wait_gone(self.pids(), 10)

    def cleanup(self) -> None:
        """Never leave a mount or a daemon behind, whatever state the test left."""
        pids = self.pids()
        if mounted(self.mountpoint) and fusermount_u(self.mountpoint).returncode != 0:
            fusermount_u(self.mountpoint, lazy=True)
        if not wait_gone(pids, 10):
            for pid in pids:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            wait_gone(pids, 5)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if mounted(self.mountpoint):
            fusermount_u(self.mountpoint, lazy=True)


class Mounter:
    """Starts mounts for one test and cleans every one of them up at teardown."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.mounts: list[Mount] = []
        self._n = 0

    def foreground(self, argv: list[str | os.PathLike], mountpoint: str | os.PathLike, *,
                   cwd: str | os.PathLike | None = None, timeout: float = 20.0,
                   env: dict[str, str] | None = None) -> Mount:
        """Start ``argv`` (a mount command; ``-f`` is added) in a Popen and wait for the mount."""
        self._n += 1
        log_path = self.tmp_path / f"daemon-{self._n}.log"
        argv = [str(a) for a in argv] + ["-f"]
        mp = Path(cwd or ".") / mountpoint if not os.path.isabs(mountpoint) else Path(mountpoint)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, env=env)
        m = Mount(mp, argv, Path(cwd) if cwd else None, proc, log_path)
        self.mounts.append(m)
        deadline = time.monotonic() + timeout
        while not mounted(mp):
            if proc.poll() is not None:
                raise AssertionError(f"{argv} exited ({proc.returncode}) before mounting:\n{m.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv}: no mount after {timeout} s:\n{m.log()}")
            time.sleep(0.02)
        return m

    def background(self, argv: list[str | os.PathLike], mountpoint: str | os.PathLike, *,
                   cwd: str | os.PathLike | None = None) -> Mount:
        """Run ``argv`` (a mount command in background mode: returns once mounted)."""
        mp = Path(cwd or ".") / mountpoint if not os.path.isabs(mountpoint) else Path(mountpoint)
        m = Mount(mp, [str(a) for a in argv], Path(cwd) if cwd else None)
        self.mounts.append(m)
        proc = run(argv, cwd=cwd, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"{argv} failed ({proc.returncode}): {proc.stderr.strip()}")
        assert mounted(mp), f"{argv} returned 0 but {mp} is not mounted"
        m.start_stderr = proc.stderr
        m.background_pids = daemon_pids(mp)
        assert m.background_pids, f"no daemon found for {mp}"
        return m

    def pfs(self, key: Path, encdir: Path | str, mountpoint: Path | str, *args: str,
            background: bool = False, cwd: Path | None = None, env: dict[str, str] | None = None) -> Mount:
        argv: list[str | os.PathLike] = [PFS, "mount", "-w", key, encdir, mountpoint, *args]
        if background:
            return self.background(argv, mountpoint, cwd=cwd)
        return self.foreground(argv, mountpoint, cwd=cwd, env=env)

    def cleanup(self) -> None:
        for m in reversed(self.mounts):
            m.cleanup()


# ---------------------------------------------------------------------- content helpers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_files(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` -> its bytes (relative POSIX paths)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def make_tree(root: Path, seed: int, *, files: int = 30, max_size: int = 20000) -> dict[str, bytes]:
    """A small tree of random files (some at node-boundary sizes) in nested folders."""
    rnd = random.Random(seed)
    sizes = [0, 1, 3071, 3072, 3073, 4096, 7168, 7169, 4096 * 3 + 3072]
    content = {}
    for i in range(files):
        depth = rnd.randrange(3)
        rel = "/".join(f"d{rnd.randrange(3)}" for _ in range(depth))
        name = f"{rel}/f{i}.bin" if rel else f"f{i}.bin"
        size = sizes[i] if i < len(sizes) else rnd.randrange(max_size)
        data = rnd.randbytes(size)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        content[name] = data
    return content


# ---------------------------------------------------------------------- the exerciser


class FileObj:
    """The model of one file (shared by its names and its held descriptors)."""

    def __init__(self) -> None:
        self.data = bytearray()


def _payload(rnd: random.Random, n: int) -> bytes:
    # compressible and random runs, so a byte out of place shows
    return rnd.randbytes(n) if rnd.random() < 0.7 else bytes([rnd.randrange(256)]) * n


def _offset(rnd: random.Random, size: int) -> int:
    boundaries = [0, 3071, 3072, 3073, 4095, 4096, 7167, 7168, 7169, 3072 + 4096 * 96]
    r = rnd.random()
    if r < 0.3:
        return rnd.choice(boundaries)
    if r < 0.5:
        return size
    return rnd.randrange(size + 8192)


def _length(rnd: random.Random) -> int:
    r = rnd.random()
    if r < 0.1:
        return 0
    if r < 0.4:
        return rnd.randrange(1, 64)
    if r < 0.9:
        return rnd.randrange(1, 9000)
    return rnd.randrange(9000, 200_000)


def exercise(root: str, seed: int, ops: int, *, prefix: str = "", max_names: int = 8) -> dict[str, str]:
    """Run ``ops`` random operations on files named ``prefix*`` in folder ``root``, checking every
    read against the model; return {name: sha256} of the files left."""
    rnd = random.Random(seed)
    names: dict[str, FileObj] = {}
    held: list[tuple[int, FileObj]] = []
    pool = [f"{prefix}f{i}" for i in range(max_names)]

    def p(name: str) -> str:
        return os.path.join(root, name)

    def check_read(fd: int, obj: FileObj, what: str) -> None:
        size = len(obj.data)
        off = _offset(rnd, size)
        n = _length(rnd)
        got = os.pread(fd, n, off)
        want = bytes(obj.data[off:off + n])
        if got != want:
            raise AssertionError(f"seed {seed}: {what}: pread({n}, {off}) of size {size}: got {len(got)} bytes "
                                 f"(sha {sha(got)[:12]}), want {len(want)} (sha {sha(want)[:12]})")

    def do_write(fd: int, obj: FileObj) -> None:
        off = _offset(rnd, len(obj.data))
        data = _payload(rnd, _length(rnd))
        written = os.pwrite(fd, data, off)
        assert written == len(data), (seed, written, len(data))
        if data:
            if off > len(obj.data):
                obj.data.extend(bytes(off - len(obj.data)))
            obj.data[off:off + len(data)] = data

    for step in range(ops):
        op = rnd.choices(
            ["write", "read", "truncate", "rename", "fsync", "mmap", "append", "unlink", "hold", "held_write",
             "held_read", "release", "stat"],
            [20, 15, 8, 6, 5, 5, 6, 3, 4, 8, 6, 4, 6])[0]
        name = rnd.choice(pool)
        obj = names.get(name)
        what = f"step {step} {op} {name}"
        if op in ("write", "fsync"):
            fd = os.open(p(name), os.O_RDWR | os.O_CREAT, 0o644)
            if obj is None:
                obj = names[name] = FileObj()
            try:
                do_write(fd, obj)
                if op == "fsync":
                    os.fsync(fd)
            finally:
                os.close(fd)
        elif op == "read":
            if obj is None:
                try:
                    os.open(p(name), os.O_RDONLY)
                except FileNotFoundError:
                    continue
                raise AssertionError(f"seed {seed}: {what}: opened a file the model says is gone")
            fd = os.open(p(name), os.O_RDONLY)
            try:
                check_read(fd, obj, what)
            finally:
                os.close(fd)
        elif op == "truncate":
            if obj is None:
                continue
            size = rnd.choice([0, 1, 3072, 3073, 4096, len(obj.data) // 2, len(obj.data) + rnd.randrange(10000)])
            os.truncate(p(name), size)
            del obj.data[size:]
            obj.data.extend(bytes(size - len(obj.data)))
        elif op == "rename":
            if obj is None:
                continue
            new = rnd.choice(pool)
            os.rename(p(name), p(new))
            if new != name:
                names[new] = names.pop(name)
        elif op == "mmap":
            if obj is None or not obj.data:
                continue
            fd = os.open(p(name), os.O_RDWR)
            try:
                size = len(obj.data)
                with mmap.mmap(fd, size) as m:
                    if bytes(m[:]) != bytes(obj.data):
                        raise AssertionError(f"seed {seed}: {what}: mmap view differs from the model")
                    off = rnd.randrange(size)
                    data = _payload(rnd, min(size - off, rnd.randrange(1, 10000)))
                    m[off:off + len(data)] = data
                    obj.data[off:off + len(data)] = data
                    m.flush()
            finally:
                os.close(fd)
        elif op == "append":
            fd = os.open(p(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if obj is None:
                obj = names[name] = FileObj()
            try:
                data = _payload(rnd, _length(rnd))
                os.write(fd, data)
                obj.data.extend(data)
            finally:
                os.close(fd)
        elif op == "unlink":
            if obj is None:
                continue
            os.unlink(p(name))
            del names[name]
        elif op == "hold":
            if obj is None or len(held) >= 3:
                continue
            held.append((os.open(p(name), os.O_RDWR), obj))
        elif op in ("held_write", "held_read", "release"):
            if not held:
                continue
            i = rnd.randrange(len(held))
            fd, hobj = held[i]
            if op == "held_write":
                do_write(fd, hobj)
            elif op == "held_read":
                check_read(fd, hobj, what + " (held fd)")
                if os.fstat(fd).st_size != len(hobj.data):
                    raise AssertionError(f"seed {seed}: {what}: fstat size {os.fstat(fd).st_size} != "
                                         f"{len(hobj.data)}")
            else:
                os.close(fd)
                del held[i]
        elif op == "stat":
            if obj is None:
                continue
            size = os.stat(p(name)).st_size
            if size != len(obj.data):
                raise AssertionError(f"seed {seed}: {what}: st_size {size} != model {len(obj.data)}")
    for fd, _ in held:
        os.close(fd)
    # full check through the mount
    for name, obj in names.items():
        with open(p(name), "rb") as f:
            got = f.read()
        if got != obj.data:
            raise AssertionError(f"seed {seed}: final content of {name} differs ({len(got)} vs {len(obj.data)} bytes)")
    listed = {n for n in os.listdir(root) if n.startswith(prefix)}
    if listed != set(names):
        raise AssertionError(f"seed {seed}: listing {sorted(listed)} != model {sorted(names)}")
    return {name: sha(bytes(obj.data)) for name, obj in names.items()}


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "exercise":
        root_, seed_, ops_ = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        prefix_ = sys.argv[5] if len(sys.argv) > 5 else ""
        print(json.dumps(exercise(root_, seed_, ops_, prefix=prefix_)))
    else:
        sys.exit("usage: fuse_helpers.py exercise ROOT SEED OPS [PREFIX]")


def one_line_error(proc: subprocess.CompletedProcess, *needles: str, returncode: int | None = None) -> str:
    """The command failed (with ``returncode`` if given) with exactly one error line, no
    traceback, containing every one of ``needles``; that line."""
    assert proc.returncode != 0, proc
    if returncode is not None:
        assert proc.returncode == returncode, proc
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
