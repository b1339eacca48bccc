"""procfs: a read-only /proc synthesized from the LibOS's real state.

What /proc shows of processes comes from a :class:`ProcProvider` (the LibOS implements it); what
it shows of the machine (``meminfo``, ``cpuinfo``, ``stat``, ``uptime``, ``version``, ``loadavg``,
``sys/kernel/osrelease`` ...) comes from the host through :mod:`pal`.

Layout::

    /proc/self -> PID            /proc/mounts -> self/mounts
    /proc/PID/{cmdline,comm,environ,status,stat,maps,mounts,mountinfo}
    /proc/PID/{cwd,exe,root} (symlinks)   /proc/PID/fd/N -> path or pipe:[INO]   /proc/PID/fdinfo/N
    /proc/{meminfo,cpuinfo,stat,uptime,version,loadavg}
    /proc/sys/kernel/{hostname,ostype,osrelease,pid_max,random/boot_id,random/uuid}
    /proc/sys/fs/pipe-max-size

Behaviour, matched against Linux (root and non-root):

- Files are generated when they are opened: the handle holds that snapshot (read-only, seekable,
  ``SEEK_END`` = snapshot length), while ``stat`` reports size 0 as Linux does.
- Permission bits are Linux's (``status`` 0444, ``environ`` 0400, ``fd/`` 0500, ``comm`` 0644
  ...), owned by the process's uid/gid, so the VFS refuses non-root writers with EACCES. Root may
  open a process or machine file for writing, as on Linux, and ``write`` then fails as on Linux:
  EIO for the machine files, EINVAL for the per-process ones (``comm`` too: renaming a process
  isn't supported); ``truncate`` is a no-op. The ``/proc/sys`` files
  refuse a writable ``open`` with EACCES even for root (Linux does this for its read-only sysctls;
  the writable ones -- hostname, pid_max, pipe-max-size -- cannot be changed here either).
- Creating names (``open(O_CREAT)``, ``mkdir``, ``symlink``, ``mknod``, ``link``, ``rename`` to a
  new name) gives ENOENT, removing them (``unlink``, ``rmdir``) and renaming onto an existing one
  give EPERM, ``chmod`` of a per-process entry gives EPERM: all as Linux.
- Inode numbers are stable per (pid, name): ``((pid + 1) << 32) | (kind << 24) | n``.
- ``/proc/PID/fd/N`` are "magic" links, as on Linux: following one reaches the open file itself
  (even unlinked or renamed, or a pipe), when the process info carries its open descriptions
  (``ProcessInfo.files``); otherwise it is an ordinary symlink to the path text.
- ``maps`` is empty (there is no address space to describe); ``thread-self`` and ``task/`` are not
  provided.
"""

from __future__ import annotations

import errno
import os
import stat as st
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pal

from .node import FileSystem, Handle, Inode, err


def random_uuid() -> str:
    """A random (version 4) UUID as Linux's random/uuid prints it (``uuid`` module left unloaded:
    it costs ~2 ms of ``libos run``'s start-up)."""
    b = bytearray(pal.random_bytes(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

# ---------------------------------------------------------------------------------------------- provider


@dataclass
class ProcessInfo:
    """One process as /proc shows it (a snapshot the provider makes on request).

    ``start_time_ns`` is wall-clock (``pal.time_ns``). The fields after ``environ`` are optional:
    ``fdinfo`` maps an fd to ``(position, open flags)`` for ``/proc/PID/fdinfo/N``.
    """

    pid: int
    ppid: int
    comm: str
    cmdline: list[str]
    cwd: str
    exe: str
    root: str
    fds: dict[int, str]  # fd -> what /proc/PID/fd/N links to: a path, or "pipe:[INODE]"
    uid: int
    gid: int
    umask: int
    state: str  # "R", "S", ... or Linux's long form "R (running)"
    threads: int
    start_time_ns: int
    environ: dict[str, str]
    fdinfo: dict[int, tuple[int, int]] = field(default_factory=dict)
    files: dict[int, Any] = field(default_factory=dict)  # fd -> its open description (magic links)
    groups: tuple[int, ...] = ()
    pgid: int = 0  # 0: same as pid
    sid: int = 0  # 0: same as pgid
    vm_size_kb: int = 0
    vm_rss_kb: int = 0


class ProcProvider(Protocol):
    """What the LibOS tells /proc."""

    def current_pid(self) -> int:
        """The process making the current call (what ``/proc/self`` points to)."""
        ...

    def pids(self) -> list[int]:
        """Every live process."""
        ...

    def process(self, pid: int) -> ProcessInfo | None:
        """A snapshot of ``pid``, or None if there is no such process."""
        ...

    def mount_lines(self) -> list[tuple[str, str, str, str]]:
        """``(source, mount point, fs type, options)`` of every mount, in mount order.

        A fifth element, when present, is the mount's ``st_dev`` (shown in ``mountinfo``)."""
        ...


# ---------------------------------------------------------------------------------------------- formats

_STATES = {"R": "R (running)", "S": "S (sleeping)", "D": "D (disk sleep)", "T": "T (stopped)",
           "t": "t (tracing stop)", "X": "X (dead)", "Z": "Z (zombie)", "P": "P (parked)", "I": "I (idle)"}
_ALL_CAPS = (1 << 41) - 1  # CAP_LAST_CAP = 40
_MOUNT_FLAGS = {"rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime", "nodiratime", "strictatime",
                "sync", "dirsync", "mand"}
_PF_RANDOMIZE = 0x00400000  # what Linux shows in stat's flags for an ordinary process


def _state(state: str) -> str:
    return _STATES.get(state, state) if state else "R (running)"


def _mangle(text: str) -> str:
    """Escape a field of /proc/mounts the way Linux does (space, tab, newline, backslash)."""
    return text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def _enc(text: str) -> bytes:
    return os.fsencode(text)


def _cpus_mask(n: int) -> tuple[str, str]:
    mask = (1 << n) - 1
    return f"{mask:x}", ("0" if n == 1 else f"0-{n - 1}")


def format_cmdline(argv: list[str]) -> bytes:
    """``/proc/PID/cmdline``: each argument followed by a NUL."""
    return b"".join(_enc(a) + b"\0" for a in argv)


def format_environ(env: dict[str, str]) -> bytes:
    """``/proc/PID/environ``: ``NAME=value`` entries, each followed by a NUL."""
    return b"".join(_enc(f"{k}={v}") + b"\0" for k, v in env.items())


def format_status(info: ProcessInfo) -> bytes:
    """``/proc/PID/status`` with Linux's field names, order and number formats."""
    pgid = info.pgid or info.pid
    sid = info.sid or pgid
    max_fd = max(info.fds, default=0)
    fdsize = 64
    while fdsize <= max_fd:
        fdsize *= 2
    ids = lambda n: "\t".join([str(n)] * 4)  # noqa: E731 - real, effective, saved, fs
    kb = lambda n: f"{n:8d} kB"  # noqa: E731
    caps = f"{_ALL_CAPS if info.uid == 0 else 0:016x}"
    mask, cpu_list = _cpus_mask(pal.cpu_count())
    name = info.comm[:15].replace("\\", "\\\\").replace("\n", "\\n")
    fields = [
        ("Name", name), ("Umask", f"{info.umask & 0o777:04o}"), ("State", _state(info.state)),
        ("Tgid", info.pid), ("Ngid", 0), ("Pid", info.pid), ("PPid", info.ppid), ("TracerPid", 0),
        ("Uid", ids(info.uid)), ("Gid", ids(info.gid)), ("FDSize", fdsize),
        ("Groups", " ".join(str(g) for g in info.groups) + " "),  # Linux's trailing space
        ("NStgid", info.pid), ("NSpid", info.pid), ("NSpgid", pgid), ("NSsid", sid),
        ("VmPeak", kb(info.vm_size_kb)), ("VmSize", kb(info.vm_size_kb)), ("VmLck", kb(0)), ("VmPin", kb(0)),
        ("VmHWM", kb(info.vm_rss_kb)), ("VmRSS", kb(info.vm_rss_kb)), ("RssAnon", kb(info.vm_rss_kb)),
        ("RssFile", kb(0)), ("RssShmem", kb(0)), ("VmData", kb(info.vm_rss_kb)), ("VmStk", kb(0)),
        ("VmExe", kb(0)), ("VmLib", kb(0)), ("VmPTE", kb(0)), ("VmSwap", kb(0)), ("HugetlbPages", kb(0)),
        ("CoreDumping", 0), ("THP_enabled", 1), ("Threads", max(1, info.threads)), ("SigQ", "0/0"),
        ("SigPnd", "0" * 16), ("ShdPnd", "0" * 16), ("SigBlk", "0" * 16), ("SigIgn", "0" * 16),
        ("SigCgt", "0" * 16), ("CapInh", "0" * 16), ("CapPrm", caps), ("CapEff", caps), ("CapBnd", f"{_ALL_CAPS:016x}"),
        ("CapAmb", "0" * 16), ("NoNewPrivs", 0), ("Seccomp", 0),
        ("Cpus_allowed", mask), ("Cpus_allowed_list", cpu_list), ("Mems_allowed", "1"), ("Mems_allowed_list", "0"),
        ("voluntary_ctxt_switches", 0), ("nonvoluntary_ctxt_switches", 0),
    ]
    return "".join(f"{k}:\t{v}\n" for k, v in fields).encode()


def format_stat(info: ProcessInfo, *, boot_time_ns: int) -> bytes:
    """``/proc/PID/stat``: Linux's 52 space-separated fields (``man 5 proc``)."""
    pgid = info.pgid or info.pid
    sid = info.sid or pgid
    ticks = pal.clock_ticks()
    start = max(0, info.start_time_ns - boot_time_ns) * ticks // 1_000_000_000
    rss_pages = info.vm_rss_kb * 1024 // pal.page_size()
    fields: list[object] = [
        info.pid, f"({info.comm[:15]})", _state(info.state)[0], info.ppid, pgid, sid,
        0, -1, _PF_RANDOMIZE,  # tty_nr, tpgid, flags
        0, 0, 0, 0,  # minflt cminflt majflt cmajflt
        0, 0, 0, 0,  # utime stime cutime cstime
        20, 0, max(1, info.threads), 0, start,  # priority nice num_threads itrealvalue starttime
        info.vm_size_kb * 1024, rss_pages, (1 << 64) - 1,  # vsize rss rsslim
        0, 0, 0, 0, 0,  # startcode endcode startstack kstkesp kstkeip
        0, 0, 0, 0,  # signal blocked sigignore sigcatch
        0, 0, 0, 17, 0, 0, 0,  # wchan nswap cnswap exit_signal processor rt_priority policy
        0, 0, 0,  # delayacct_blkio_ticks guest_time cguest_time
        0, 0, 0, 0, 0, 0, 0, 0,  # start_data end_data start_brk arg_start arg_end env_start env_end exit_code
    ]
    assert len(fields) == 52
    return (" ".join(str(f) for f in fields) + "\n").encode()


def _visible_mounts(lines: list[tuple], root: str) -> list[tuple[int, tuple]]:
    """(index in mount order, line) of the mounts a process rooted at ``root`` sees, their mount
    points made relative to that root."""
    root = root.rstrip("/") or "/"
    out = []
    for i, line in enumerate(lines):
        path = line[1]
        if root != "/":
            if path == root:
                path = "/"
            elif path.startswith(root + "/"):
                path = path[len(root):]
            else:
                continue
        out.append((i, (line[0], path, *line[2:])))
    return out


def format_mounts(lines: list[tuple], root: str = "/") -> bytes:
    """``/proc/PID/mounts``: ``source mountpoint type options 0 0``."""
    out = []
    for _, (source, path, fstype, options, *_rest) in _visible_mounts(lines, root):
        out.append(f"{_mangle(source)} {_mangle(path)} {_mangle(fstype)} {_mangle(options)} 0 0\n")
    return "".join(out).encode()


def format_mountinfo(lines: list[tuple], root: str = "/") -> bytes:
    """``/proc/PID/mountinfo``: ``ID PARENT MAJ:MIN ROOT MOUNTPOINT MOUNTOPTS - TYPE SOURCE SUPEROPTS``.

    Mount IDs are 2, 3, ... in mount order; a mount's parent is the latest earlier mount covering
    its mount point (the first visible mount's parent is 1, which is never listed, as for a
    chrooted process on Linux).
    """
    ids = {i: i + 2 for i in range(len(lines))}
    out = []
    for i, (source, path, fstype, options, *rest) in _visible_mounts(lines, root):
        real = lines[i][1]
        parent = 1
        best = -1
        for j in range(i):
            p = lines[j][1]
            if (real == p or p == "/" or real.startswith(p + "/")) and len(p) >= best and real != "/":
                best, parent = len(p), ids[j]
        dev = rest[0] if rest else None
        majmin = f"{os.major(dev)}:{os.minor(dev)}" if dev is not None else f"0:{ids[i]}"
        opts = [o for o in options.split(",") if o]
        mount_opts = [o for o in opts if o in _MOUNT_FLAGS]
        if not any(o in ("rw", "ro") for o in mount_opts):
            mount_opts.insert(0, "rw")
        rw = "ro" if "ro" in mount_opts else "rw"
        super_opts = [rw] + [o for o in opts if o not in _MOUNT_FLAGS]
        out.append(f"{ids[i]} {parent} {majmin} / {_mangle(path)} {','.join(mount_opts)} - {_mangle(fstype)} "
                   f"{_mangle(source)} {_mangle(','.join(super_opts))}\n")
    return "".join(out).encode()


def format_fdinfo(pos: int, flags: int) -> bytes:
    """``/proc/PID/fdinfo/N`` (the ``pos`` and ``flags`` lines; flags in octal with a leading 0)."""
    return f"pos:\t{pos}\nflags:\t0{flags:o}\n".encode()


# ---------------------------------------------------------------------------------------------- inodes

_KIND_ENTRY, _KIND_FD, _KIND_FDINFO = 0, 1, 2


def _ino(pid: int, kind: int, n: int) -> int:
    return ((pid + 1) << 32) | (kind << 24) | n


class SnapshotHandle(Handle):
    """An open /proc file: the bytes generated at open time. Writes fail with ``write_errno``
    (Linux: EIO for the machine files, EINVAL for per-process ones); truncation is ignored."""

    def __init__(self, data: bytes, write_errno: int = errno.EIO):
        self.data = data
        self.write_errno = write_errno

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size]

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        raise err(self.write_errno)

    def truncate(self, size: int) -> None:
        pass

    def size(self) -> int:
        return len(self.data)


class _NoNames:
    """Directory behaviour shared by every /proc directory: a fixed set of names."""

    def create(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        raise err(errno.ENOENT)

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        raise err(errno.ENOENT)

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Inode:
        raise err(errno.ENOENT)

    def mknod(self, name: str, mode: int, uid: int, gid: int, rdev: int = 0) -> Inode:
        raise err(errno.ENOENT)

    def link(self, name: str, inode: Inode) -> None:
        raise err(errno.ENOENT)

    def rename(self, name: str, new_dir: Inode, new_name: str) -> None:
        raise err(errno.EPERM if new_dir.lookup(new_name) is not None else errno.ENOENT)


class ProcFile(Inode):
    """A generated file: ``generate()`` runs at every open."""

    def __init__(self, fs: ProcFs, ino: int, perm: int, generate: Callable[[], bytes], *, uid: int = 0,
                 gid: int = 0, sysctl: bool = False, per_process: bool = False):
        super().__init__(fs, st.S_IFREG | perm, uid=uid, gid=gid, ino=ino)
        self.generate = generate
        self.sysctl = sysctl
        self.per_process = per_process

    def size(self) -> int:
        return 0

    def open(self, flags: int) -> Handle:
        if self.sysctl and flags & 3 != os.O_RDONLY:
            raise err(errno.EACCES)
        return SnapshotHandle(self.generate(), errno.EINVAL if self.per_process else errno.EIO)

    def truncate(self, size: int) -> None:
        pass

    def chmod(self, mode: int) -> None:
        if self.per_process:
            raise err(errno.EPERM)
        super().chmod(mode)


class ProcLink(Inode):
    """A symlink whose target is computed when it is read."""

    def __init__(self, fs: ProcFs, ino: int, target: Callable[[], str], *, perm: int = 0o777, uid: int = 0,
                 gid: int = 0, size: int = 0, per_process: bool = False, magic: Callable[[], Any] | None = None):
        super().__init__(fs, st.S_IFLNK | perm, uid=uid, gid=gid, ino=ino)
        self.target = target
        self._size = size
        self.per_process = per_process
        self._magic = magic

    def magic_target(self) -> Any:
        return self._magic() if self._magic is not None else None

    def size(self) -> int:
        return self._size

    def readlink(self) -> str:
        return self.target()

    def chmod(self, mode: int) -> None:
        if self.per_process:
            raise err(errno.EPERM)
        super().chmod(mode)


class ProcStaticDir(_NoNames, Inode):
    """A directory with a fixed dict of children."""

    def __init__(self, fs: ProcFs, ino: int, perm: int = 0o555):
        super().__init__(fs, st.S_IFDIR | perm, ino=ino)
        self.children: dict[str, Inode] = {}

    def lookup(self, name: str) -> Inode | None:
        return self.children.get(name)

    def entries(self) -> Iterable[tuple[str, Inode]]:
        return list(self.children.items())


class ProcRoot(ProcStaticDir):
    """``/proc``: the machine-wide entries, then one directory per live process."""

    def _pid_dir(self, pid: int) -> Inode | None:
        fs: ProcFs = self.fs  # type: ignore[assignment]
        info = fs.provider.process(pid)
        if info is None:
            return None
        return ProcPidDir(fs, info)

    def lookup(self, name: str) -> Inode | None:
        child = self.children.get(name)
        if child is not None:
            return child
        if name.isdigit() and name.isascii() and str(int(name)) == name:
            return self._pid_dir(int(name))
        return None

    def entries(self) -> Iterable[tuple[str, Inode]]:
        out = list(self.children.items())
        fs: ProcFs = self.fs  # type: ignore[assignment]
        for pid in sorted(fs.provider.pids()):
            inode = self._pid_dir(pid)
            if inode is not None:
                out.append((str(pid), inode))
        return out


# name -> (kind, permission bits); the order is Linux's readdir order
_PID_ENTRIES: list[tuple[str, str, int]] = [
    ("fd", "dir", 0o500), ("fdinfo", "dir", 0o555), ("environ", "file", 0o400), ("status", "file", 0o444),
    ("comm", "file", 0o644), ("cmdline", "file", 0o444), ("stat", "file", 0o444), ("maps", "file", 0o444),
    ("cwd", "link", 0o777), ("root", "link", 0o777), ("exe", "link", 0o777), ("mounts", "file", 0o444),
    ("mountinfo", "file", 0o444),
]
_PID_INDEX = {name: i + 1 for i, (name, _, _) in enumerate(_PID_ENTRIES)}


class ProcPidDir(_NoNames, Inode):
    """``/proc/PID``: every entry reads the provider's state of ``PID`` again when it is used."""

    def __init__(self, fs: ProcFs, info: ProcessInfo):
        super().__init__(fs, st.S_IFDIR | 0o555, uid=info.uid, gid=info.gid, ino=_ino(info.pid, _KIND_ENTRY, 0))
        self.pid = info.pid

    def chmod(self, mode: int) -> None:
        raise err(errno.EPERM)

    def info(self) -> ProcessInfo:
        fs: ProcFs = self.fs  # type: ignore[assignment]
        info = fs.provider.process(self.pid)
        if info is None:
            raise err(errno.ESRCH)
        return info

    def _link(self, name: str) -> str:
        try:
            target = getattr(self.info(), name)
        except ProcessLookupError:
            raise err(errno.ENOENT) from None
        if not target:
            raise err(errno.ENOENT)
        return target

    def _make(self, name: str) -> Inode | None:
        index = _PID_INDEX.get(name)
        if index is None:
            return None
        _, kind, perm = _PID_ENTRIES[index - 1]
        fs: ProcFs = self.fs  # type: ignore[assignment]
        ino = _ino(self.pid, _KIND_ENTRY, index)
        owner = {"uid": self.uid, "gid": self.gid}
        if kind == "dir":
            return ProcFdDir(fs, self, ino, perm, info_files=name == "fdinfo")
        if kind == "link":
            return ProcLink(fs, ino, lambda: self._link(name), perm=perm, per_process=True, **owner)
        generate = {
            "environ": lambda: format_environ(self.info().environ),
            "status": lambda: format_status(self.info()),
            "comm": lambda: _enc(self.info().comm[:15]) + b"\n",
            "cmdline": lambda: format_cmdline(self.info().cmdline),
            "stat": lambda: format_stat(self.info(), boot_time_ns=fs.boot_time_ns()),
            "maps": lambda: b"",
            "mounts": lambda: format_mounts(fs.provider.mount_lines(), self.info().root),
            "mountinfo": lambda: format_mountinfo(fs.provider.mount_lines(), self.info().root),
        }[name]
        return ProcFile(fs, ino, perm, _vanished_is_enoent(generate), per_process=True, **owner)

    def lookup(self, name: str) -> Inode | None:
        return self._make(name)

    def entries(self) -> Iterable[tuple[str, Inode]]:
        return [(name, self._make(name)) for name, _, _ in _PID_ENTRIES]  # type: ignore[misc]


def _vanished_is_enoent(generate: Callable[[], bytes]) -> Callable[[], bytes]:
    """Opening a file of a process that has ended: ENOENT (as Linux's failed lookup)."""

    def run() -> bytes:
        try:
            return generate()
        except ProcessLookupError:
            raise err(errno.ENOENT) from None

    return run


class ProcFdDir(_NoNames, Inode):
    """``/proc/PID/fd`` (symlinks) or ``/proc/PID/fdinfo`` (files): one entry per open fd."""

    def __init__(self, fs: ProcFs, piddir: ProcPidDir, ino: int, perm: int, *, info_files: bool):
        super().__init__(fs, st.S_IFDIR | perm, uid=piddir.uid, gid=piddir.gid, ino=ino)
        self.piddir = piddir
        self.info_files = info_files

    def chmod(self, mode: int) -> None:
        raise err(errno.EPERM)

    def _make(self, fd: int, info: ProcessInfo) -> Inode:
        fs: ProcFs = self.fs  # type: ignore[assignment]
        pid = self.piddir.pid
        owner = {"uid": self.uid, "gid": self.gid}
        flags = info.fdinfo.get(fd, (0, os.O_RDWR))[1]
        if self.info_files:
            def generate() -> bytes:
                now = self.piddir.info()
                if fd not in now.fds:
                    raise err(errno.ENOENT)
                return format_fdinfo(*now.fdinfo.get(fd, (0, os.O_RDWR)))

            return ProcFile(fs, _ino(pid, _KIND_FDINFO, fd), 0o444, _vanished_is_enoent(generate), per_process=True,
                            **owner)
        acc = flags & 3
        perm = {os.O_RDONLY: 0o500, os.O_WRONLY: 0o300}.get(acc, 0o700)

        def target() -> str:
            try:
                return self.piddir.info().fds[fd]
            except (KeyError, ProcessLookupError):
                raise err(errno.ENOENT) from None

        def magic() -> Any:
            try:
                return self.piddir.info().files.get(fd)
            except ProcessLookupError:
                return None

        return ProcLink(fs, _ino(pid, _KIND_FD, fd), target, perm=perm, size=64, per_process=True, magic=magic,
                        **owner)

    def lookup(self, name: str) -> Inode | None:
        if not (name.isdigit() and name.isascii() and str(int(name)) == name):
            return None
        try:
            info = self.piddir.info()
        except ProcessLookupError:
            return None
        fd = int(name)
        return self._make(fd, info) if fd in info.fds else None

    def entries(self) -> Iterable[tuple[str, Inode]]:
        try:
            info = self.piddir.info()
        except ProcessLookupError:
            return []
        return [(str(fd), self._make(fd, info)) for fd in sorted(info.fds)]


# ---------------------------------------------------------------------------------------------- file system


def _host_text(path: str) -> str:
    try:
        return pal.host_read_text(path)
    except OSError as e:
        raise err(errno.EIO, path) from e


class ProcFs(FileSystem):
    """A read-only /proc over ``provider`` (the LibOS) and the host's machine facts (via ``pal``).

    ``hostname`` is what ``/proc/sys/kernel/hostname`` shows (default: the host's).
    """

    type_name = "proc"

    def __init__(self, provider: ProcProvider, *, hostname: str | None = None):
        super().__init__()
        self.provider = provider
        self.hostname = hostname if hostname is not None else pal.uname().nodename
        self.boot_id = random_uuid()
        self._static_ino = 0
        self._root = ProcRoot(self, self._next_static())
        self._build()

    def _next_static(self) -> int:
        self._static_ino += 1
        return _ino(-1, _KIND_ENTRY, self._static_ino)

    def root(self) -> Inode:
        return self._root

    def describe(self) -> str:
        return "proc"

    def boot_time_ns(self) -> int:
        """When the host booted, as wall-clock nanoseconds (the origin of ``stat``'s starttime)."""
        try:
            up = float(pal.host_read_text("/proc/uptime").split()[0])
        except (OSError, ValueError, IndexError):
            return 0
        return pal.time_ns() - int(up * 1e9)

    # ------------------------------------------------------------------ the fixed tree

    def _file(self, parent: ProcStaticDir, name: str, generate: Callable[[], str | bytes], perm: int = 0o444,
              *, sysctl: bool = False) -> None:
        def as_bytes() -> bytes:
            data = generate()
            return data if isinstance(data, bytes) else data.encode()

        parent.children[name] = ProcFile(self, self._next_static(), perm, as_bytes, sysctl=sysctl)

    def _dir(self, parent: ProcStaticDir, name: str) -> ProcStaticDir:
        child = ProcStaticDir(self, self._next_static())
        parent.children[name] = child
        return child

    def _build(self) -> None:
        root = self._root
        root.children["self"] = ProcLink(self, self._next_static(), lambda: str(self.provider.current_pid()))
        root.children["mounts"] = ProcLink(self, self._next_static(), lambda: "self/mounts", size=11)
        for name in ("meminfo", "cpuinfo", "stat", "version"):
            self._file(root, name, lambda name=name: _host_text(f"/proc/{name}"))
        self._file(root, "uptime", lambda: _host_text("/proc/uptime"))
        self._file(root, "loadavg", self._loadavg)
        sys_dir = self._dir(root, "sys")
        kernel = self._dir(sys_dir, "kernel")
        self._file(kernel, "hostname", lambda: self.hostname + "\n", 0o644, sysctl=True)
        self._file(kernel, "ostype", lambda: pal.uname().sysname + "\n", sysctl=True)
        self._file(kernel, "osrelease", lambda: pal.uname().release + "\n", sysctl=True)
        self._file(kernel, "pid_max", self._pid_max, 0o644, sysctl=True)
        random = self._dir(kernel, "random")
        self._file(random, "boot_id", lambda: self.boot_id + "\n", sysctl=True)
        self._file(random, "uuid", lambda: random_uuid() + "\n",
                   sysctl=True)
        fs_dir = self._dir(sys_dir, "fs")
        self._file(fs_dir, "pipe-max-size", lambda: f"{_pipe_max_size()}\n", 0o644, sysctl=True)

    def _loadavg(self) -> str:
        """The host's load averages; the process counts and last pid are the LibOS's."""
        fields = _host_text("/proc/loadavg").split()
        pids = self.provider.pids()
        running = 0
        for pid in pids:
            info = self.provider.process(pid)
            if info is not None and _state(info.state).startswith("R"):
                running += 1
        return f"{' '.join(fields[:3])} {running}/{len(pids)} {max(pids, default=0)}\n"

    def _pid_max(self) -> str:
        try:
            return str(int(pal.host_read_text("/proc/sys/kernel/pid_max"))) + "\n"
        except (OSError, ValueError):
            return "32768\n"


def _pipe_max_size() -> int:
    try:
        from .pipe import PIPE_MAX_SIZE
    except ImportError:  # pragma: no cover - pipe.py is optional
        return 1048576
    return PIPE_MAX_SIZE
