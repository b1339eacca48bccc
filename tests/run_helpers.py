"""Helpers for the real-program tests of ``libos run`` (tests/test_run_programs.py).

A :class:`View` is a Gramine manifest written into a test's temporary folder: the host's
``/usr``, ``/lib*``, ``/bin``, ``/etc`` as chroot mounts, an encrypted ``/data`` (host folder
``enc/``, key ``fs.insecure__keys.k``) and a tmpfs ``/tmp``, plus whatever a test adds. Its
``run`` starts ``libos run`` on it as a real subprocess; :func:`native` runs the same program on
the host, on plaintext, with the same environment, to compare with.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
LIBOS = str(BIN / "libos")
PFS = str(BIN / "pfs")

# the host parts a program needs, mounted at the same place (a host symlink such as /lib -> usr/lib
# is mounted as its target folder)
HOST_PARTS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc")

# the environment of every program, inside the view and natively (nothing else of the host's)
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "LC_ALL": "C",
    "LANG": "C",
    "TZ": "UTC",
    "PYTHONDONTWRITEBYTECODE": "1",
}

PYTHON = "/usr/bin/python3"  # the system interpreter (the view has /usr, not pyenv or the venv)
TIMEOUT = 300.0  # a hang guard only; nothing is timed


def runner_state() -> str | None:
    """Why ``libos run`` cannot be used here, or None if it can."""
    if not os.path.exists(LIBOS):
        return f"{LIBOS} not found (run scripts/setup.sh)"
    try:
        proc = subprocess.run([LIBOS, "run", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"libos run --help failed: {e}"
    if proc.returncode != 0:
        return f"libos has no working 'run' command ({(proc.stderr or proc.stdout).strip()[-200:]})"
    return None


def _toml(value: Any) -> str:
    """A TOML value for str, bool, int, list and inline-table (dict) values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def host_mounts() -> list[dict[str, str]]:
    """Chroot mounts of the host parts that exist (HOST_PARTS)."""
    mounts = []
    for part in HOST_PARTS:
        if os.path.isdir(part):
            mounts.append({"type": "chroot", "path": part, "uri": "file:" + os.path.realpath(part)})
    return mounts


@dataclass
class View:
    """A manifest and its host folders under ``root``; ``enc`` backs the encrypted ``/data``."""

    root: Path
    entrypoint: str
    argv: Sequence[str] | None = None  # loader.argv; None: insecure__use_cmdline_argv
    env: dict[str, str] = field(default_factory=lambda: dict(ENV))
    start_dir: str = "/data"
    extra_mounts: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # more top-level keys, e.g. "sgx.trusted_files"
    user: int | None = None  # run libos run as this uid (and gid): unprivileged, in a user namespace

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.enc = self.root / "enc"
        self.enc.mkdir(exist_ok=True)
        self.env_run = None
        if self.user is not None:
            # the user's own folders; a FUSE device node it may open (this machine's /dev/fuse
            # may be 0600: LIBOS_FUSE_DEVICE, docs/run.md); root's key file stays root's
            os.chown(self.root, self.user, self.user)
            os.chown(self.enc, self.user, self.user)
            device = self.root / "fuse"
            os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(10, 229))
            device.chmod(0o666)
            self.env_run = dict(os.environ, LIBOS_FUSE_DEVICE=str(device))
        self.key_hex = secrets.token_hex(16)
        self.key_file = self.root / "data.key"
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.key_hex + "\n")
        self.manifest = self.root / "app.manifest.toml"
        self.write()

    def mounts(self) -> list[dict[str, str]]:
        return [*host_mounts(),
                {"type": "encrypted", "path": "/data", "uri": f"file:{self.enc}/", "key_name": "k"},
                {"type": "tmpfs", "path": "/tmp"},
                *self.extra_mounts]

    def write(self) -> None:
        """(Re)write the manifest from the fields."""
        lines = [f"libos.entrypoint = {_toml(self.entrypoint)}"]
        if self.argv is None:
            lines.append("loader.insecure__use_cmdline_argv = true")
        else:
            lines.append(f"loader.argv = {_toml(list(self.argv))}")
        lines += [f"loader.env.{k} = {_toml(v)}" for k, v in self.env.items()]
        lines.append(f"fs.start_dir = {_toml(self.start_dir)}")
        lines.append(f"fs.insecure__keys.k = {_toml(self.key_hex)}")
        lines += [f"{k} = {_toml(v)}" for k, v in self.extra.items()]
        lines.append("fs.mounts = [")
        lines += [f"  {_toml(m)}," for m in self.mounts()]
        lines.append("]")
        self.manifest.write_text("\n".join(lines) + "\n")

    def cmd(self, *args: str) -> list[str]:
        """The ``libos run`` command line for ``args`` (argv[1:] of the entry point); run it with
        ``env=self.env_run``."""
        as_user = [] if self.user is None else [
            shutil.which("setpriv") or "setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--clear-groups"]
        return [*as_user, LIBOS, "run", str(self.manifest), *(["--", *args] if args else [])]

    def run(self, *args: str, input: bytes | str | None = None, timeout: float = TIMEOUT,
            check: bool = False) -> subprocess.CompletedProcess:
        """Run the entry point with ``args`` inside the view; output captured (bytes or text as
        ``input`` is; text when there is no input)."""
        text = not isinstance(input, bytes)
        proc = subprocess.run(self.cmd(*args), input=input, capture_output=True, text=text,
                              timeout=timeout, cwd=self.root, env=self.env_run)
        if check and proc.returncode != 0:
            raise AssertionError(f"libos run exited {proc.returncode}: {proc.stderr!r}")
        return proc

    def encrypt(self, plain: Path, inside: str) -> None:
        """Encrypt the host file or tree ``plain`` as ``/data/<inside>``, bound as the manifest's
        mount opens it (``pfs encrypt --manifest``)."""
        out = self.enc / inside
        out.parent.mkdir(parents=True, exist_ok=True)
        pfs("encrypt", "-q", "-w", str(self.key_file), "-i", str(plain), "-o", str(out),
            "--manifest", str(self.manifest))
        if self.user is not None:  # the user's files, as if it had made them
            for path in [out, *(out.rglob("*") if out.is_dir() else [])]:
                os.chown(path, self.user, self.user)

    def decrypt(self, inside: str) -> bytes:
        """The plaintext of ``/data/<inside>``, authenticated and checked to be bound to its path."""
        out = self.root / "decrypted" / inside
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.unlink()
        pfs("decrypt", "-q", "-V", "--strict", "-w", str(self.key_file), "-i", str(self.enc / inside),
            "-o", str(out))
        return out.read_bytes()

    def verify(self, inside: str) -> subprocess.CompletedProcess:
        return pfs("verify", "-q", "-V", "-w", str(self.key_file), str(self.enc / inside))


def pfs(*args: str) -> subprocess.CompletedProcess:
    """Run the ``pfs`` command; a failure is an assertion error with its stderr."""
    proc = subprocess.run([PFS, *args], capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"pfs {' '.join(args[:1])} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def native(argv: Sequence[str], *, cwd: Path, input: bytes | str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` on the host in ``cwd`` with the views' environment (ENV)."""
    text = not isinstance(input, bytes)
    return subprocess.run(list(argv), input=input, capture_output=True, text=text, cwd=cwd,
                          env=dict(ENV if env is None else env), timeout=TIMEOUT)


def status(returncode: int) -> int:
    """A subprocess return code as a shell reports it (128+N for death by signal N)."""
    return 128 - returncode if returncode < 0 else returncode
