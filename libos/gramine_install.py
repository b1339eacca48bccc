"""Where the install paths that Gramine's templates and ``Manifest()`` name point for pfskit.

Gramine's ``gramine-manifest`` offers ``gramine.libos`` (the LibOS binary, ``libsysdb.so``),
``gramine.pkglibdir`` and ``gramine.runtimedir()`` (Gramine's patched glibc), and its
``Manifest()`` fills in ``loader.entrypoint`` with ``gramine.libos`` and that file's hash.
When Gramine is installed on this machine its own paths are used, so that the same template
gives the same manifest as ``gramine-manifest``. Otherwise:

- ``pkglibdir`` is pfskit's ``libos/runtime`` folder and ``libos`` its stand-in ``libsysdb.so``;
- ``runtimedir()`` is the host's libc folder (pfskit runs programs natively with the host's
  libc, which Gramine replaces with its own build).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

__all__ = ["GRAMINE_PKGLIBDIRS", "host_libc_dir", "libos_path", "pkglibdir", "runtimedir"]

_MULTIARCH = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"

#: Where Gramine's packages and ``meson install`` put PKGLIBDIR, searched in this order.
GRAMINE_PKGLIBDIRS: tuple[Path, ...] = (
    Path("/usr/lib") / _MULTIARCH / "gramine",
    Path("/usr/local/lib") / _MULTIARCH / "gramine",
    Path("/usr/lib64/gramine"),
    Path("/usr/local/lib64/gramine"),
)

_STANDIN_DIR = Path(__file__).resolve().parent / "runtime"


def pkglibdir() -> Path:
    """Gramine's PKGLIBDIR when Gramine is installed here, else pfskit's ``libos/runtime``."""
    for candidate in GRAMINE_PKGLIBDIRS:
        if (candidate / "libsysdb.so").is_file():
            return candidate
    return _STANDIN_DIR


def libos_path() -> Path:
    """``gramine.libos``: the LibOS binary (Gramine's ``libsysdb.so`` or pfskit's stand-in)."""
    return pkglibdir() / "libsysdb.so"


def host_libc_dir() -> Path:
    """The folder of the host's libc (``/lib/<multiarch>`` resolved), the stand-in runtime dir."""
    for candidate in (Path("/lib") / _MULTIARCH, Path("/usr/lib") / _MULTIARCH, Path("/lib64")):
        if (candidate / "libc.so.6").exists():
            return candidate.resolve()
    return (Path("/lib") / _MULTIARCH).resolve()


def runtimedir(libc: str = "glibc") -> Path:
    """``gramine.runtimedir(libc)``: Gramine's runtime folder, or the host's libc folder."""
    base = pkglibdir()
    if base != _STANDIN_DIR:
        return (base / "runtime" / libc).resolve()
    return host_libc_dir()
