"""The simulated SGX platform: the secrets a CPU package holds, kept in a user-private file.

A platform is ``root_key`` (16 bytes: the stand-in for the package's fused key, from which every
EGETKEY key and the quoting keys are derived), ``cpusvn`` (16 bytes, the simulated microcode/TCB
level, public in every REPORT) and ``owner_epoch`` (16 bytes, the BIOS-set owner value; zeros).
It is made on first use, at random, in a file created with mode 0600 (never replaced once it
exists): two platform files are two machines.

Where the file is: ``--platform FILE`` of ``libos run`` / ``libos quote verify``, else
``$PFSKIT_SGX_PLATFORM``, else ``$XDG_DATA_HOME/pfskit/sgx-platform`` (``XDG_DATA_HOME``
defaulting to ``~/.local/share``). The file is JSON::

    {"format": "pfskit-sgx-platform/1", "root_key": "<32 hex>", "cpusvn": "<32 hex>",
     "owner_epoch": "<32 hex>"}

A file that is readable or writable by group or others, not owned by the user, or not of that
form is refused with a :class:`PlatformError` that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat as st
from dataclasses import dataclass, field
from pathlib import Path

import pal

__all__ = ["DEFAULT_CPUSVN", "ENV_VAR", "FORMAT", "Platform", "PlatformError", "default_path", "load_platform"]

ENV_VAR = "PFSKIT_SGX_PLATFORM"
FORMAT = "pfskit-sgx-platform/1"
#: the CPUSVN a new platform gets (any 16 bytes; this one looks like a real microcode level)
DEFAULT_CPUSVN = bytes.fromhex("0f0f0202ff0100000000000000000000")
_FIELDS = ("root_key", "cpusvn", "owner_epoch")


class PlatformError(OSError):
    """The platform file can't be made or used; ``str()`` is one line naming the file."""

    def __init__(self, message: str, *, errno: int = errno.EINVAL):
        super().__init__(errno, message)

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True, repr=False)
class Platform:
    """A simulated SGX platform (see the module docstring). ``report_keyid`` is the CPU's
    CR_REPORT_KEYID: random per boot, here per :class:`Platform` object."""

    root_key: bytes
    cpusvn: bytes = DEFAULT_CPUSVN
    owner_epoch: bytes = bytes(16)
    path: str | None = None
    report_keyid: bytes = field(default_factory=lambda: pal.random_bytes(32))

    def __post_init__(self) -> None:
        for name in _FIELDS:
            if len(getattr(self, name)) != 16:
                raise PlatformError(f"platform {name} must be 16 bytes")
        if len(self.report_keyid) != 32:
            raise PlatformError("platform report KEYID must be 32 bytes")

    def __repr__(self) -> str:  # never shows the secrets
        return f"<Platform {self.path or '(in memory)'} cpusvn={self.cpusvn.hex()}>"

    @classmethod
    def generate(cls, *, cpusvn: bytes = DEFAULT_CPUSVN) -> Platform:
        """A new platform in memory (a fresh random root key)."""
        return cls(root_key=pal.random_bytes(16), cpusvn=cpusvn)

    def to_json(self) -> str:
        """The platform file's content."""
        data = {"format": FORMAT, **{name: getattr(self, name).hex() for name in _FIELDS}}
        return json.dumps(data, indent=1) + "\n"


def default_path() -> Path:
    """The platform file used when none is named: ``$PFSKIT_SGX_PLATFORM``, else
    ``$XDG_DATA_HOME/pfskit/sgx-platform`` (``~/.local/share/pfskit/sgx-platform``)."""
    named = os.environ.get(ENV_VAR)
    if named:
        return Path(named)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "pfskit" / "sgx-platform"


def _parse(path: Path, text: bytes) -> Platform:
    bad = f"platform file {path} is not a pfskit platform file"
    try:
        data = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise PlatformError(f"{bad} (not JSON): move it away, or name another with --platform") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PlatformError(f'{bad} (expected "format": "{FORMAT}"): move it away, or name another with --platform')
    values = {}
    for name in _FIELDS:
        value = data.get(name)
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 16:  # never echo the value: it is a secret
            raise PlatformError(f"platform file {path}: {name} is not 32 hex characters (the file is corrupt)")
        values[name] = raw
    return Platform(**values, path=str(path))


def _read(path: Path) -> Platform:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not st.S_ISREG(info.st_mode):
            raise PlatformError(f"platform file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise PlatformError(f"platform file {path} is mode {info.st_mode & 0o777:04o}: its secrets must be "
                                f"private to you (chmod 600 {path})", errno=errno.EACCES)
        if info.st_uid != os.geteuid():
            raise PlatformError(f"platform file {path} belongs to uid {info.st_uid}, not to you", errno=errno.EACCES)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            if sum(map(len, chunks)) > 1 << 16:
                raise PlatformError(f"platform file {path} is too large to be a pfskit platform file")
        return _parse(path, b"".join(chunks))
    finally:
        os.close(fd)


def _create(path: Path) -> None:
    """Make a new platform file at ``path`` unless one exists (atomic: written beside it with
    O_EXCL and mode 0600, then hard-linked into place, so a concurrent creator's file wins whole)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{pal.random_bytes(4).hex()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, Platform.generate().to_json().encode())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def load_platform(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Platform:
    """The platform in ``path`` (default: :func:`default_path`), made there first if it does not
    exist and ``create``. Raises :class:`PlatformError` for a file that is corrupt, too open, or
    can't be made."""
    where = Path(path) if path is not None else default_path()
    try:
        return _read(where)
    except FileNotFoundError:
        if not create:
            raise PlatformError(f"platform file {where} does not exist (name an existing one with --platform)",
                                errno=errno.ENOENT) from None
    except PlatformError:
        raise
    except OSError as exc:
        raise PlatformError(f"platform file {where}: {exc.strerror}", errno=exc.errno or errno.EIO) from None
    try:
        _create(where)
        return _read(where)
    except PlatformError:
        raise
    except OSError as exc:
        raise PlatformError(f"can't make the platform file {where}: {exc.strerror}",
                            errno=exc.errno or errno.EIO) from None
