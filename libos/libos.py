"""A booted LibOS: the VFS built from a manifest, its processes, keys, and /proc's view of them."""

from __future__ import annotations

import errno
import logging
import os
import stat as st
import threading
from typing import TYPE_CHECKING, Any

from pal import time_ns
from vfs.file import OpenFile
from vfs.mount import Mount, MountTable
from vfs.node import FileSystem, Inode, err
from vfs.tmpfs import TmpFs
from vfs.vfs import VFS, Context, Location

from .process import FdTable, Process

if TYPE_CHECKING:
    from .manifest import Manifest, MountSpec

log = logging.getLogger("libos")
O_LARGEFILE = 0o100000  # what Linux reports for every file opened on 64-bit


class _PipeFs(FileSystem):
    """Where anonymous pipes live (never mounted: /proc shows them as ``pipe:[ino]``)."""

    type_name = "pipefs"

    def __init__(self) -> None:
        super().__init__()
        self._root = Inode(self, st.S_IFDIR | 0o700)

    def root(self) -> Inode:
        return self._root


class LibOS:
    """A library OS instance. Build one with :meth:`boot` (from a manifest) or :meth:`empty`."""

    def __init__(self, vfs: VFS, *, start_dir: str = "/", argv: list[str] | None = None,
                 env: dict[str, str] | None = None, exe: str = "", keys: Any = None):
        self.vfs = vfs
        self.start_dir = start_dir
        self.argv = argv or []
        self.env = env or {}
        self.exe = exe
        self.keys = keys
        self.processes: dict[int, Process] = {}
        self.exited: dict[int, int] = {}
        self._next_pid = 1
        self._lock = threading.RLock()
        self._current = threading.local()
        self._pipefs = _PipeFs()
        self._pipe_mount = Mount("pipe:", self._pipefs)
        self.manifest: Manifest | None = None
        self._trusted: dict[str, bytes | None] | None = None  # sgx.trusted_files, hashes filled in at boot
        self.enclave: Any = None  # a pal.sgx.enclave.Enclave when booted from a signed manifest

    # ------------------------------------------------------------------ construction

    @classmethod
    def empty(cls) -> LibOS:
        """A LibOS whose root is a fresh tmpfs, with /proc and /dev (for tests and scratch work)."""
        vfs = VFS(MountTable())
        vfs.mounts.mount("/", TmpFs())
        libos = cls(vfs)
        libos._mount_pseudo_fs()
        return libos

    @classmethod
    def boot(cls, manifest: Manifest | str | os.PathLike, *, host_env: dict[str, str] | None = None,
             platform: Any = None, pal: str | os.PathLike | None = None) -> LibOS:
        """Build the file view a manifest defines (``fs.root``, ``fs.mounts``, keys, trusted and
        allowed files), plus /proc and /dev; no process runs until :meth:`process`.

        A signed manifest (``app.manifest.sgx``, with ``app.sig`` beside it) boots as the enclave
        (:mod:`libos.enclave`): its signature and MRENCLAVE are checked first (``pal``: the PAL
        ELF it was signed with, default pfskit's stand-in), the keys ``_sgx_mrenclave`` and
        ``_sgx_mrsigner`` are its seal keys on ``platform`` (a ``pal.sgx.platform.Platform``, a
        platform file, or None for the default one), and /dev/attestation has the SGX files.
        Raises :class:`~libos.enclave.EnclaveStartError` when that can't be, or when an unsigned
        manifest uses those keys.

        Raises :class:`~libos.manifest.ManifestError` for an invalid manifest, ``OSError`` if it
        can't be read, and :class:`~libos.errors.MountError` (naming the mount and its host path)
        for a mount whose host path is missing or unusable. An encrypted single-file mount may
        name a file not made yet: an ``O_CREAT`` open makes it, as in Gramine."""
        from .manifest import Manifest as ManifestType
        from .manifest import load_manifest

        if not isinstance(manifest, ManifestType):
            manifest = load_manifest(manifest, host_env=host_env)
        from vfs.encrypted import KeyStore

        from .enclave import EnclaveStartError, is_signed, load_enclave, unsigned_special_key

        enclave = None
        if is_signed(manifest.source):
            enclave = load_enclave(manifest.source, manifest.raw, platform=platform, pal=pal)
        else:
            problem = unsigned_special_key(manifest.raw, [*manifest.mounts, *filter(None, [manifest.root])])
            if problem:
                raise EnclaveStartError(problem, errno=errno.EACCES)
        keys = KeyStore()
        for name, key in manifest.keys.items():
            keys.set(name, key)
        if enclave is not None:
            from pal.sgx.enclave import SEAL_KEY_NAMES

            for name in SEAL_KEY_NAMES:  # fetched once, at start-up, as Gramine does
                keys.set(name, enclave.seal_key(name))
        vfs = VFS(MountTable())
        libos = cls(vfs, start_dir=manifest.start_dir, argv=list(manifest.argv or [manifest.entrypoint or ""]),
                    env=dict(manifest.env), exe=manifest.entrypoint or "", keys=keys)
        libos.manifest = manifest
        libos.enclave = enclave
        root = manifest.root
        if root is None:
            vfs.mounts.mount("/", TmpFs())
        else:
            vfs.mounts.mount("/", libos._make_mount_fs(root), readonly=bool(getattr(root, "readonly", False)))
        libos._mount_pseudo_fs()
        for spec in manifest.mounts:
            vfs.mounts.mount(spec.path, libos._make_mount_fs(spec), readonly=bool(getattr(spec, "readonly", False)))
        return libos

    def _make_mount_fs(self, spec: MountSpec) -> FileSystem:
        """:meth:`_make_fs`, a host path that can't be used raised as a :class:`MountError`
        naming the mount and the path."""
        try:
            return self._make_fs(spec)
        except OSError as exc:
            from .errors import MountError

            what = "does not exist" if exc.errno == errno.ENOENT else exc.strerror or str(exc)
            if exc.errno == errno.ENOENT and spec.type == "encrypted" and not (spec.uri or "").endswith("/"):
                what += " (a single file to be created needs an existing folder)"
            host = spec.uri or ""
            written = f'"file:{spec.uri_path}" ({host})' if spec.uri_path not in (None, host) else f'"file:{host}"'
            name = spec.key or ("fs.root" if spec.path == "/" else "mount")
            raise MountError(f"{name}: {spec.type} mount at {spec.path}: host path {written} {what}",
                             errno=exc.errno, key=name, host_path=host) from None

    def _checks_for_chroot(self) -> dict[str, Any]:
        manifest = self.manifest
        if manifest is None:
            return {}
        sgx = manifest.raw.get("sgx", {}) if isinstance(manifest.raw, dict) else {}
        if not (manifest.trusted_files or manifest.allowed_files or "file_check_policy" in sgx):
            return {}
        if self._trusted is None:  # hashed once per boot, shared by every chroot mount
            from vfs.chroot import hash_trusted_files

            self._trusted = hash_trusted_files({t.path: t.sha256 for t in manifest.trusted_files})
        return {
            "trusted": self._trusted,
            "allowed": list(manifest.allowed_files),
            "policy": manifest.file_check_policy,
        }

    def _make_fs(self, spec: MountSpec) -> FileSystem:
        if spec.type == "tmpfs":
            return TmpFs()
        if spec.type == "chroot":
            from vfs.chroot import ChrootFs

            return ChrootFs(spec.uri, readonly=bool(getattr(spec, "readonly", False)), **self._checks_for_chroot())
        if spec.type == "encrypted":
            from vfs.encrypted import EncryptedFs

            return EncryptedFs(spec.uri, key_name=spec.key_name or "default", keys=self.keys,
                               enable_recovery=bool(spec.enable_recovery),
                               bind_prefix=getattr(spec, "bind_prefix", None),
                               bind_root=getattr(spec, "uri_path", None))  # Gramine binds to the URI as written
        raise ValueError(f"unknown mount type {spec.type!r}")

    def _mount_pseudo_fs(self) -> None:
        try:
            from vfs.proc import ProcFs
        except ImportError:  # pragma: no cover - proc is optional while it is being built
            ProcFs = None
        try:
            from vfs.dev import DevFs
        except ImportError:  # pragma: no cover
            DevFs = None
        if ProcFs is not None and self.vfs.mounts.at("/proc") is None:
            self.vfs.mounts.mount("/proc", ProcFs(_ProcView(self)))
        if DevFs is not None and self.vfs.mounts.at("/dev") is None:
            if self.keys is None:
                from vfs.encrypted import KeyStore

                self.keys = KeyStore()
            if self.enclave is None:
                self.vfs.mounts.mount("/dev", DevFs(self.keys))
            else:
                from pal.sgx.enclave import SEAL_KEY_NAMES

                self.vfs.mounts.mount("/dev", DevFs(self.keys, attestation=self.enclave, readonly_keys=SEAL_KEY_NAMES))

    # ------------------------------------------------------------------ processes

    @staticmethod
    def clock() -> int:
        return time_ns()

    def process(self, argv: list[str] | None = None, *, cwd: str | None = None, uid: int = 0,
                gid: int = 0, umask: int = 0o022) -> Process:
        """Start a new top-level process (its own empty descriptor table) in ``cwd`` or ``fs.start_dir``."""
        ctx = self.vfs.context(cwd or self.start_dir, uid=uid, gid=gid, umask=umask)
        with self._lock:
            pid = self._next_pid
            self._next_pid += 1
            proc = Process(self, pid, 0, ctx, FdTable(), argv=argv if argv is not None else self.argv,
                           env=self.env, exe=self.exe)
            self.processes[pid] = proc
        return proc

    def fork(self, parent: Process) -> Process:
        ctx = Context(root=parent.ctx.root, cwd=parent.ctx.cwd, uid=parent.ctx.uid, gid=parent.ctx.gid,
                      groups=parent.ctx.groups, umask=parent.ctx.umask)
        with self._lock:
            pid = self._next_pid
            self._next_pid += 1
            child = Process(self, pid, parent.pid, ctx, parent.fds.copy(), argv=parent.argv, env=parent.env,
                            exe=parent.exe)
            self.processes[pid] = child
        return child

    def reap(self, proc: Process) -> None:
        with self._lock:
            self.processes.pop(proc.pid, None)
            self.exited[proc.pid] = proc.exit_status or 0

    def wait(self, pid: int) -> int:
        """The exit status of an ended process (ECHILD if unknown or still running)."""
        with self._lock:
            if pid not in self.exited:
                raise err(errno.ECHILD)
            return self.exited.pop(pid)

    def set_current(self, pid: int) -> None:
        self._current.pid = pid

    def new_pipe(self, nonblock: int) -> tuple[OpenFile, OpenFile]:
        """Two open descriptions on a new anonymous pipe: (read end, write end)."""
        from vfs.pipe import Pipe

        inode = Inode(self._pipefs, st.S_IFIFO | 0o600)
        pipe = Pipe()
        inode.pipe = pipe  # type: ignore[attr-defined]
        loc = Location(f"pipe:[{inode.ino}]", self._pipe_mount, inode)
        pipe.open_reader()
        pipe.open_writer()
        reader = OpenFile(loc, os.O_RDONLY | nonblock, pipe=pipe, pipe_end="r")
        writer = OpenFile(loc, os.O_WRONLY | nonblock, pipe=pipe, pipe_end="w")
        return reader, writer

    def shutdown(self) -> None:
        """End every process and flush every file system."""
        for proc in list(self.processes.values()):
            proc.exit(0)
        self.vfs.sync()

    def current_pid(self) -> int:
        """The pid of the process whose call is running on this thread."""
        return getattr(self._current, "pid", 1)


class _ProcView:
    """What /proc shows of a LibOS (the ``vfs.proc.ProcProvider`` protocol)."""

    def __init__(self, libos: LibOS):
        self.libos = libos

    def current_pid(self) -> int:
        return self.libos.current_pid()

    def pids(self) -> list[int]:
        with self.libos._lock:
            return sorted(self.libos.processes)

    def process(self, pid: int):
        from vfs.proc import ProcessInfo

        proc = self.libos.processes.get(pid)
        if proc is None:
            return None
        return ProcessInfo(
            pid=proc.pid, ppid=proc.ppid, comm=(os.path.basename(proc.exe) or "libos")[:15],
            cmdline=list(proc.argv), cwd=proc.ctx.cwd.path, exe=proc.exe, root=proc.ctx.root.path,
            fds={fd: f.path for fd, f in proc.fds.items()}, uid=proc.ctx.uid, gid=proc.ctx.gid,
            umask=proc.ctx.umask, state="R", threads=1, start_time_ns=proc.start_time_ns,
            environ=dict(proc.env),
            fdinfo={fd: (f.offset, f.flags | O_LARGEFILE) for fd, f in proc.fds.items()},
            files=dict(proc.fds.items()))

    def mount_lines(self) -> list[tuple[str, str, str, str, int]]:
        lines = []
        for mount in self.libos.vfs.mounts:
            opts = "ro" if mount.readonly else "rw"
            lines.append((mount.fs.describe(), mount.path, mount.fs.type_name, opts, mount.fs.dev))
        return lines
