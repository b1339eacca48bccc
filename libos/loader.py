"""What ``libos run`` starts, from a manifest: functions without side effects (they read the
manifest's argv/env source files, nothing else).

- :func:`launch_plan`: the entry point, argv, environment, cwd, uid/gid and limits, by Gramine's
  rules: ``loader.argv``, ``loader.argv_src_file`` and ``loader.insecure__use_cmdline_argv`` are
  mutually exclusive; with none of them argv is ``[libos.entrypoint]`` and arguments from the
  command line are an error ("argv handling wasn't configured in the manifest"); with
  ``insecure__use_cmdline_argv`` argv is the entry point followed by the command line's arguments;
  ``loader.argv0_override`` replaces argv[0]; ``loader.uid``/``loader.gid`` default to 0;
  ``loader.argv_src_file`` / ``loader.env_src_file``: argv / environment from a host file
  (:mod:`libos.src_files`).
- :func:`unsupported_keys`: one warning line per Gramine key present that ``libos run`` does not
  implement (SGX-only keys together on one line).
- :func:`mount_plan`: which chroot mounts can be host bind mounts (native speed) and which must be
  served by the VFS (a check at every open, or a mount nested inside them).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from .manifest import Manifest, ManifestError, MountSpec
from .src_files import argv_from_file, env_from_file

__all__ = ["LaunchPlan", "UsageError", "launch_plan", "mount_plan", "unsupported_keys"]

# keys that change what a program sees under gramine-direct and that libos run does not implement
_NOT_IMPLEMENTED = {
    "loader.preload": "preloaded libraries are not loaded",
    "loader.log_file": "libos run writes its messages to stderr",
    "loader.pal_internal_mem_size": "there is no PAL heap",
    "libos.check_invalid_pointers": "the kernel checks pointers",
    "sys.brk.max_size": "the host's limit applies",
    "sys.disallow_subprocesses": "programs may start processes",
    "sys.allowed_ioctls": "every ioctl goes to the host",
    "sys.ioctl_structs": "every ioctl goes to the host",
    "sys.mock_syscalls": "system calls go to the host",
    "sys.disallowed_syscalls": "system calls go to the host",
    "fs.experimental__enable_sysfs_topology": "there is no /sys",
}


class UsageError(ValueError):
    """The command line does not fit the manifest (exit status 2)."""


@dataclass(frozen=True)
class LaunchPlan:
    """The process ``libos run`` starts: ``exe`` (a path inside the view), ``argv``, ``env``,
    ``cwd``, ``uid``/``gid``, and limits (``nofile``, ``stack``: None keeps the host's),
    ``no_aslr`` (``loader.insecure__disable_aslr``)."""

    exe: str
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    nofile: int | None = None
    stack: int | None = None
    no_aslr: bool = False


def _get(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _fail(manifest: Manifest, key: str, what: str) -> ManifestError:
    return ManifestError(key, f"{key}: {what}", source=manifest.source)


def _size(value: Any) -> int:
    """A Gramine size ("8M", "0x1000", 4096) in bytes (already checked by the parser)."""
    if isinstance(value, int):
        return value
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    factor = units.get(value[-1:].upper(), 1)
    digits = value[:-1] if factor != 1 else value
    return int(digits, 0) * factor


def launch_plan(manifest: Manifest, args: list[str]) -> LaunchPlan:
    """The process to start for ``manifest`` with the command line's ``args``.

    Raises :class:`ManifestError` (naming the key) for a manifest ``libos run`` can't start, and
    :class:`UsageError` for arguments the manifest does not take."""
    raw = manifest.raw
    entry = manifest.entrypoint
    if entry is None:
        raise _fail(manifest, "libos.entrypoint", "missing (expected the path of the program inside the view, "
                                                  'such as "/usr/bin/python3")')
    exe = posixpath.normpath(posixpath.join(manifest.start_dir, entry))
    exe = "/" + exe.lstrip("/")
    cmdline = _get(raw, "loader.insecure__use_cmdline_argv") is True
    sources = [k for k in ("loader.argv", "loader.argv_src_file") if _get(raw, k) is not None]
    if cmdline:
        sources.append("loader.insecure__use_cmdline_argv")
    if len(sources) > 1:
        raise _fail(manifest, sources[1], f"{' and '.join(sources)} are mutually exclusive (keep one)")
    env_file = _get(raw, "loader.env_src_file") is not None
    if env_file and _get(raw, "loader.insecure__use_host_env") is True:
        raise _fail(manifest, "loader.env_src_file", "loader.insecure__use_host_env and loader.env_src_file "
                                                     "can't be used together (keep one)")
    if cmdline:
        argv = [entry, *args]
    else:
        if args and sources:
            raise UsageError(f"arguments were given but {sources[0]} gives the program's whole argv (put them "
                             "there, or use loader.insecure__use_cmdline_argv = true instead)")
        if args:
            raise UsageError("arguments were given but the manifest takes none (set loader.argv in it, or "
                             "loader.insecure__use_cmdline_argv = true to pass them)")
        if sources == ["loader.argv_src_file"]:
            argv = argv_from_file(manifest)
        else:
            argv = list(manifest.argv) if manifest.argv is not None else [entry]
        if not argv:
            raise _fail(manifest, "loader.argv", "empty (expected at least argv[0], the program's name)")
    if manifest.argv0_override is not None:
        argv[0] = manifest.argv0_override
    stack = _get(raw, "sys.stack.size")
    nofile = _get(raw, "sys.fds.limit")
    return LaunchPlan(
        exe=exe, argv=argv, env=env_from_file(manifest) if env_file else dict(manifest.env), cwd=manifest.start_dir,
        uid=_get(raw, "loader.uid") or 0, gid=_get(raw, "loader.gid") or 0,
        nofile=nofile, stack=None if stack is None else _size(stack),
        no_aslr=_get(raw, "loader.insecure__disable_aslr") is True)


def unsupported_keys(manifest: Manifest) -> list[str]:
    """One warning per key of ``manifest`` that ``libos run`` accepts but does not implement."""
    warnings = []
    for key, why in _NOT_IMPLEMENTED.items():
        value = _get(manifest.raw, key)
        if value is not None and value is not False and value != []:
            warnings.append(f"{key}: not implemented by libos run ({why})")
    sgx = manifest.raw.get("sgx")
    if isinstance(sgx, dict):
        from .enclave import is_signed

        if is_signed(manifest.source):  # the simulated enclave: only what it does not simulate
            ignored = sorted(f"sgx.{k}" for k, v in sgx.items() if k not in _SIMULATED_SGX and v not in (False, [], 0))
            if ignored:
                warnings.append(f"{', '.join(ignored)}: not simulated by libos run's SGX platform")
            return warnings
        ignored = sorted(f"sgx.{k}" for k in sgx
                         if k not in ("trusted_files", "allowed_files", "file_check_policy"))
        if ignored:
            warnings.append(f"{', '.join(ignored)}: SGX settings, not used without SGX (as in gramine-direct)")
    return warnings


# what a signed manifest's simulated enclave uses (measured, signed, or served)
_SIMULATED_SGX = frozenset({
    "trusted_files", "allowed_files", "file_check_policy", "isvprodid", "isvsvn", "debug", "remote_attestation",
    "seal_key", "enclave_size", "max_threads", "edmm_enable", "cpu_features", "use_exinfo",
})


def _within(inner: str, outer: str) -> bool:
    return inner == outer or outer == "/" or inner.startswith(outer.rstrip("/") + "/")


def _checked(manifest: Manifest, spec: MountSpec) -> bool:
    """True when opens under a chroot mount must be checked (trusted files, or a policy with
    files not all allowed), as :class:`vfs.chroot.ChrootFs` does."""
    sgx = manifest.raw.get("sgx", {}) if isinstance(manifest.raw, dict) else {}
    if not (manifest.trusted_files or manifest.allowed_files or "file_check_policy" in sgx):
        return False
    host = (spec.uri or "").rstrip("/") or "/"
    if any(_within(t.path.rstrip("/") or "/", host) or _within(host, t.path.rstrip("/") or "/")
           for t in manifest.trusted_files):
        return True
    # every file under the mount allowed: nothing to check or to log
    return not any(a.endswith("/") and _within(host, a.rstrip("/") or "/") for a in manifest.allowed_files)


def mount_plan(manifest: Manifest) -> tuple[list[MountSpec], list[MountSpec]]:
    """``(binds, served)``: the chroot mounts of ``fs.mounts`` that become host bind mounts (no
    check at open, no other mount inside them), in mount order (parents first), and the mounts the
    VFS serves. ``fs.root`` is always served (it holds every mount point)."""
    binds, served = [], []
    for spec in manifest.mounts:
        nested = any(o is not spec and o.path != spec.path and _within(o.path, spec.path) for o in manifest.mounts)
        if spec.type == "chroot" and not nested and not _checked(manifest, spec):
            binds.append(spec)
        else:
            served.append(spec)
    binds.sort(key=lambda s: s.path.count("/"))
    return binds, served
