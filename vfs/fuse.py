"""The FUSE bridge: serves any :class:`~vfs.vfs.VFS` to the host kernel through ``mfusepy``.

Every request goes through the same VFS the LibOS uses, so what a mount shows is exactly what
an application inside the LibOS sees. Open files are kept by handle number. A file unlinked (or
replaced by a rename) while open stays fully usable, ``fstat`` included: libfuse's high-level
API names such a file by a path in its requests, so it "hides" it by renaming it to
``.fuse_hiddenNNNN``; the bridge turns that rename (made by the removing request itself, to a
name it found free: see :mod:`vfs.fuse_request`; any other rename is a rename) into a real
unlink and answers for the hidden name from the open handles, so nothing is ever left in the
user's folder, even after a crash. Stopping on a signal and the session's errors are :mod:`vfs.fuse_session`.
The kernel's page cache is used where that is safe: attributes and entries (names that don't
exist too) are cached for a second, and a writable mount enables the writeback cache, which
batches small writes. Files whose ``st_size`` doesn't tell how much they hold (generated ones:
``/proc``, ``/dev/attestation``) are served with direct I/O, each on its own; every other file
goes through the page cache, so shared and private ``mmap`` work on every mount type.
File data is kept in the kernel's cache across opens (``keep_cache``, decided at every open) when
only this daemon changes the file (encrypted, tmpfs); a host file (chroot), which others may change
behind the mount's back, keeps it only while its identity, size, mtime and ctime are those of the
previous open of that name (``keep_cache=False``: every file is treated so, by its size and mtime).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from .file import OpenFile
from .fuse_caller import caller_groups, only_clears_setid, time_arg
from .fuse_links import LinkNames
from .fuse_ll_abi import RENAME_NOREPLACE
from .fuse_readahead import READ_AHEAD_KB, fuse_device, raise_read_ahead, raise_read_ahead_when_mounted  # noqa: F401
from .fuse_request import request_reader
from .fuse_session import FUSE_MAIN_FAILURES, FuseError, SignalStop, UnmountFlushError, check_fuse_device
from .fuse_threads import keep_thread_state
from .node import UTIME_NOW, Stat, TimeArg, err
from .vfs import VFS, Context, Location

log = logging.getLogger("vfs.fuse")

LIBFUSE3_SONAME = "libfuse3.so.3"  # what dlopen loads libfuse3 by (its major version in the name)
HIDDEN_NAME = re.compile(r"\.fuse_hidden[0-9a-f]{16}")  # libfuse's name for a removed open file
MAX_VERSIONS = 4096  # names whose file version at the last open is remembered (for keep_cache)
MAX_IO = 1 << 20  # bytes per FUSE read/write request (libfuse3; the kernel may cap it lower)
FUSE_CAP_WRITEBACK_CACHE = 1 << 16
FUSE_CAP_ASYNC_READ = 1 << 0
FUSE_CAP_ATOMIC_O_TRUNC = 1 << 3
FUSE_CAP_BIG_WRITES = 1 << 5
FUSE_READDIR_PLUS = 1  # readdir flag: the kernel asks for attributes too
FUSE_FILL_DIR_PLUS = 2  # filler flag: this entry's attributes are complete
PREFETCH_ENTRIES = 256  # READDIRPLUS: entries whose attributes are prefetched per chunk (~180 fit in one)


def load_mfusepy():
    """Import ``mfusepy`` on libfuse3, or raise a clear error.

    mfusepy looks for libfuse2 first (Debian installs it beside libfuse3 for other tools, e.g.
    gocryptfs), so libfuse3 is named explicitly unless the caller chose a library already; a
    library of another major version is refused (the bridge serves libfuse3's calls only).
    """
    if "mfusepy" not in sys.modules and not os.environ.get("FUSE_LIBRARY_PATH") \
            and not os.environ.get("FUSE_LIBRARY_NAME"):
        os.environ["FUSE_LIBRARY_PATH"] = _libfuse3()
    try:
        with _ctypes_util_on_demand():
            import mfusepy
    except (ImportError, OSError) as exc:  # libfuse missing: mfusepy raises at import
        raise OSError(errno.ENOSYS, f"FUSE is not available ({exc}); install the fuse3 package") from None
    if mfusepy.fuse_version_major != 3:
        raise OSError(errno.ENOSYS, f"libfuse {mfusepy.fuse_version_major} was loaded (FUSE_LIBRARY_PATH or "
                      "FUSE_LIBRARY_NAME?); pfskit needs libfuse3: unset them or name libfuse3")
    return mfusepy


@contextlib.contextmanager
def _ctypes_util_on_demand():
    """While mfusepy is imported, ``ctypes.util`` is a stand-in whose ``find_library`` imports
    the real module on first use. mfusepy imports it at its top for ``find_library`` alone,
    which it calls only when ``FUSE_LIBRARY_PATH`` is not set; the real module brings
    subprocess, shutil and tempfile (~5-10 ms of every ``libos run``'s start-up)."""
    if "ctypes.util" in sys.modules:
        yield
        return
    import types

    stand_in = types.ModuleType("ctypes.util", "ctypes.util until it is needed (see vfs.fuse)")

    def find_library(name: str) -> str | None:
        if sys.modules.get("ctypes.util") is stand_in:
            del sys.modules["ctypes.util"]
        from ctypes.util import find_library as real

        return real(name)

    stand_in.find_library = find_library  # type: ignore[attr-defined]
    sys.modules["ctypes.util"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("ctypes.util") is stand_in:
            del sys.modules["ctypes.util"]


def _libfuse3() -> str:
    """What dlopen loads libfuse3 by: its soname when the loader finds it (no ``ldconfig -p`` run,
    which ``ctypes.util.find_library`` makes and mfusepy repeats), else what find_library finds."""
    try:
        ctypes.CDLL(LIBFUSE3_SONAME)
        return LIBFUSE3_SONAME
    except OSError:
        from ctypes.util import find_library

        found = find_library("fuse3")
    if found is None:
        raise OSError(errno.ENOSYS, "libfuse3 is not installed; install the fuse3 package")
    return found


FUSE_APIS = ("mfusepy", "lowlevel")


def fuse_api(api: str | None = None) -> str:
    """The FUSE API a mount uses: ``api``, else ``$PFSKIT_FUSE_API``, else ``"mfusepy"``."""
    chosen = api or os.environ.get("PFSKIT_FUSE_API") or "mfusepy"
    if chosen not in FUSE_APIS:
        raise FuseError(errno.EINVAL, f"unknown FUSE API '{chosen}' (PFSKIT_FUSE_API or --fuse-api): "
                                      f"use {' or '.join(FUSE_APIS)}")
    return chosen


def _not_served(*args: Any) -> int:
    """Stands for a callback this mount leaves out (mfusepy skips ``libfuse_ignore`` ones)."""
    raise err(errno.ENOSYS)


_not_served.libfuse_ignore = True  # type: ignore[attr-defined]


def _fill_stat(st: Any, s: Stat) -> None:
    """Copy ``s`` into libfuse's ``struct stat``."""
    st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid = s.st_mode, s.st_ino, s.st_nlink, s.st_uid, s.st_gid
    st.st_size, st.st_blksize, st.st_blocks, st.st_rdev = s.st_size, s.st_blksize, s.st_blocks, s.st_rdev
    st.st_atimespec.tv_sec, st.st_atimespec.tv_nsec = divmod(s.st_atime_ns, 10**9)
    st.st_mtimespec.tv_sec, st.st_mtimespec.tv_nsec = divmod(s.st_mtime_ns, 10**9)
    st.st_ctimespec.tv_sec, st.st_ctimespec.tv_nsec = divmod(s.st_ctime_ns, 10**9)


def _attrs(s: Stat) -> dict[str, Any]:
    return {
        "st_mode": s.st_mode, "st_ino": s.st_ino, "st_nlink": s.st_nlink, "st_uid": s.st_uid,
        "st_gid": s.st_gid, "st_size": s.st_size, "st_atime": s.st_atime_ns, "st_mtime": s.st_mtime_ns,
        "st_ctime": s.st_ctime_ns, "st_blocks": s.st_blocks, "st_blksize": s.st_blksize, "st_rdev": s.st_rdev,
    }


class FuseBridge:
    """``mfusepy`` operations over a VFS, each served as the calling process: new objects get
    its uid and gid, and the VFS checks permissions against its uid, gid and supplementary
    groups (the kernel checks them too: mounts use ``default_permissions``)."""

    use_ns = True

    def __init__(self, vfs: VFS, *, writable: bool = True, writeback_cache: bool = True,
                 attr_timeout: float = 1.0, direct_io: bool = False, keep_cache: bool = True):
        self.vfs = vfs
        self.direct_io = direct_io  # every file, not only generated ones (see needs_direct_io)
        self.keep_cache = keep_cache and not direct_io
        self.root_ctx = vfs.context("/", umask=0, limit_paths=False)
        self.writable = writable
        self.writeback = writeback_cache and writable
        self.attr_timeout = attr_timeout
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, Location] = {}
        self._listings: dict[int, list[tuple[str, int, int]]] = {}  # folder handle -> its listing
        self._hidden: dict[str, Location] = {}  # libfuse's hidden name -> the unlinked open file
        self._versions: dict[str, tuple[int, ...]] = {}  # name -> the file's version at its last open
        self._next_fh = 1
        self._lock = threading.Lock()
        self.call_fh = threading.local()  # the handle of a chmod/chown/utimens call (mfusepy drops it)
        self.owner = os.geteuid()  # the mount's owner: the only user who may open owner-only files
        # (uid, gid, pid) of the request being served (set by serve; None: served as root)
        self.caller: Callable[[], tuple[int, int, int]] | None = None
        # the kernel's id of the request being served (set by serve; None: unknown): see vfs.fuse_request
        self.request: Callable[[], int | None] | None = None
        # thread -> (request, path): the hidden name it last found free (libfuse's threads aren't
        # Python's: a threading.local lasts one callback)
        self._probes: dict[int, tuple[int | None, str]] = {}
        self.on_init: Callable[[], None] | None = None  # called once the session runs (set by serve)
        self.on_destroy: Callable[[], None] | None = None  # called when libfuse destroys it (set by serve)
        self.links = LinkNames()  # other names of hard-linked files, invalidated when one changes
        self.failures: list[str] = []  # writes lost where no program may hear of it: write-back, last closes, unmount
        if not writable:
            # nothing to push at close: without a flush callback the kernel stops sending FLUSH
            # (one round trip less per close)
            self.flush = _not_served

    # ------------------------------------------------------------------ lifecycle

    def init_with_config(self, conn, config) -> None:
        config.use_ino = 1
        # libfuse renames an open file it is told to remove to a hidden name, which keeps a
        # path for later requests on it (fstat): see _hide
        config.hard_remove = 0
        # whether cached data is kept is decided at each open (keep_cache_at_open): libfuse's
        # kernel_cache would keep it for host files too, and its auto_cache trusts a second-old stat
        config.kernel_cache = 0
        config.auto_cache = 0
        config.direct_io = 1 if self.direct_io else 0
        # calls on an open file may come without a path (an unlinked file has none)
        config.nullpath_ok = 1
        config.attr_timeout = self.attr_timeout
        config.entry_timeout = self.attr_timeout
        # names that don't exist are cached too (sqlite looks for its journal at every query)
        config.negative_timeout = self.attr_timeout
        if conn is not None:
            conn.max_write = MAX_IO
            conn.max_readahead = min(conn.max_readahead or MAX_IO, MAX_IO)
            want = FUSE_CAP_ASYNC_READ | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_BIG_WRITES
            if self.writeback:
                want |= FUSE_CAP_WRITEBACK_CACHE
            conn.want |= want & conn.capable
        if self.on_init is not None:
            self.on_init()

    def destroy(self, path: str) -> None:
        """Unmount: fsync and close every file still open (the kernel never releases them when
        the session ends on a signal) and sync the file systems. What fails is logged and kept in
        :attr:`failures`."""
        self.links.stop()
        if self.on_destroy is not None:
            self.on_destroy()
        with self._lock:
            files = list(self._files.values())
            self._files.clear()
        for file in files:
            try:
                if file.writable and file.handle is not None:
                    file.fsync()
                file.decref()
            except OSError as exc:
                self._failed(f"flushing {file.path} at unmount failed", exc)
        try:
            self.vfs.sync()
        except OSError as exc:
            self._failed(f"flushing {exc.filename or 'the mount'} at unmount failed", exc)

    def _failed(self, what: str, exc: OSError) -> None:
        """A write lost where no program may hear of it: logged, and in the mount's result."""
        message = f"{what}: {exc.strerror or exc}"
        with self._lock:
            if any(f.startswith(f"{what}: ") for f in self.failures):
                return  # once per file (a failed write-back comes page after page)
            self.failures.append(message)
        log.error("%s", message)

    # ------------------------------------------------------------------ handles

    def _add(self, file: OpenFile) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._files[fh] = file
            return fh

    def _file(self, fh: int) -> OpenFile:
        file = self._files.get(fh)
        if file is None:
            raise err(errno.EBADF)
        return file

    def open_for_writing(self) -> list[str]:
        """Paths of the regular files open for writing (those with a path still)."""
        with self._lock:
            files = list(self._files.values())
        return sorted({f.path for f in files if f.writable and f.inode.is_reg and f.path})

    def _owner_gate(self, inode: Any) -> None:
        """EACCES when ``inode`` is owner-only (``/dev/attestation/keys`` shown with
        ``--expose-keys``) and the request comes from another user than the mount's owner."""
        if getattr(inode, "owner_only", False) and self.caller_uid() != self.owner:
            raise err(errno.EACCES)

    def _owner_check(self, file: OpenFile) -> OpenFile:
        """``file``, unless :meth:`_owner_gate` refuses it (then it is closed again)."""
        try:
            self._owner_gate(file.inode)
        except OSError:
            file.decref()
            raise
        return file

    def caller_uid(self) -> int:
        """The uid of the request being served."""
        return self.caller()[0] if self.caller is not None else os.geteuid()

    @property
    def ctx(self) -> Context:
        """The VFS context of the request being served: the caller's ids (the kernel has applied
        its umask already). Groups are read only for an unprivileged caller (root passes every
        check)."""
        if self.caller is None:
            return self.root_ctx
        uid, gid, pid = self.caller()
        if uid == 0 and gid == 0:
            return self.root_ctx
        root = self.root_ctx.root
        return Context(root=root, cwd=root, uid=uid, gid=gid, groups=caller_groups(pid) if uid else (), umask=0,
                       limit_paths=False)

    def _check_write(self) -> None:
        if not self.writable:
            raise err(errno.EROFS)

    def _open_flags(self, flags: int) -> int:
        flags &= ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY)
        if self.writeback:
            # with the writeback cache the kernel reads pages of write-only files and computes
            # append offsets itself
            if flags & 3 == os.O_WRONLY:
                flags = (flags & ~3) | os.O_RDWR
            flags &= ~os.O_APPEND
        return flags

    # ------------------------------------------------------------------ attributes

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        return _attrs(self.stat(path, fh))

    def stat(self, path: str | None, fh: int | None = None) -> Stat:
        """What ``getattr`` reports: of the open file ``fh`` if given, else of ``path``."""
        if fh is not None and fh in self._files:
            return self._files[fh].stat()
        if path is None:
            raise err(errno.EBADF)
        hidden = self._hidden_file(path)
        if hidden is not None:
            return hidden.stat()
        try:
            s = self.vfs.stat(self.ctx, path, follow=False)
        except FileNotFoundError:
            if self._hidden_name(path) is not None:  # libfuse checking that a hidden name is free?
                self._probes[threading.get_ident()] = (self._request(), path)
            raise
        self.links.seen((s.st_dev, s.st_ino), s.st_nlink, path)
        return s

    def _changed(self, inode: Any, path: str | None) -> None:
        """``inode`` changed through ``path``: its other names' kernel caches are stale."""
        self.links.changed((inode.fs.dev, inode.ino), path)

    # ------------------------------------------------------------------ unlinked open files

    @staticmethod
    def _hidden_name(path: str) -> str | None:
        name = path.rpartition("/")[2]
        return name if HIDDEN_NAME.fullmatch(name) else None

    def _hidden_file(self, path: str) -> OpenFile | None:
        """An open handle of the unlinked file libfuse calls ``path``, if it is one."""
        name = self._hidden_name(path)
        loc = self._hidden.get(name) if name is not None else None
        if loc is None:
            return None
        with self._lock:
            return next((f for f in self._files.values() if f.inode is loc.inode), None)

    def _hide(self, old: str, hidden: str) -> None:
        """libfuse's "rename to a hidden name" of a file that is open: unlink it for real (the
        open handles keep it alive) and remember it under the hidden name until its last close
        (libfuse may hide a file whose last RELEASE the bridge has served already: then there
        is nothing to answer for, and libfuse's later unlink of the name gets ENOENT)."""
        loc = self.vfs.lookup(self.ctx, old, follow=False)
        self.vfs.unlink(self.ctx, old)
        with self._lock:
            if any(f.inode is loc.inode for f in self._files.values()):
                self._hidden[hidden] = loc

    def access(self, path: str, amode: int) -> int:
        self.vfs.access(self.ctx, path, amode)
        return 0

    def _writable_handle(self) -> bool:
        """Whether the request came with a handle of a description open for writing."""
        file = self._files.get(getattr(self.call_fh, "fh", None))  # type: ignore[arg-type]
        return file is not None and file.writable

    def _handle_file(self) -> OpenFile:
        """The open file of a path-less chmod/chown/utimens (``fchmod`` and friends)."""
        fh = getattr(self.call_fh, "fh", None)
        if fh is not None and fh in self._files:
            return self._files[fh]
        hidden = getattr(self.call_fh, "hidden", None)
        if hidden is not None:
            return hidden
        raise err(errno.EBADF)

    # chmod, chown and utimens name the object itself: the kernel has followed what it had to
    # follow, so a symlink here is the link (lchown, utimensat with AT_SYMLINK_NOFOLLOW)

    def _path_or_handle(self, path: str | None) -> str | None:
        """``path``, or None when the call is on an open file: path-less, or on a hidden name
        (then :meth:`_handle_file` finds an open handle of it)."""
        if path is None:
            return None
        hidden = self._hidden_file(path)
        if hidden is None:
            return path
        self.call_fh.hidden = hidden
        return None

    def chmod(self, path: str | None, mode: int) -> int:
        self._check_write()
        path = self._path_or_handle(path)
        ctx = self.ctx
        if path is None:
            inode = self._handle_file().inode
        else:
            inode = self.vfs.lookup(ctx, path, follow=False).inode
            if not only_clears_setid(inode.mode, mode):
                self.vfs.chmod(ctx, path, mode, follow=False)
                self._changed(inode, path)
                return 0
        if not only_clears_setid(inode.mode, mode):
            mode = self.vfs.chmod_mode(ctx, inode, mode)
        # the kernel has checked it: the owner's fchmod, or its own clearing of the set-id bits
        # after a write or chown by another user, which Linux does whoever writes
        inode.chmod(mode)
        self._changed(inode, path)
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        self._check_write()
        path = self._path_or_handle(path)
        if path is None:
            inode = self._handle_file().inode
            self.vfs.check_chown(self.ctx, inode, uid, gid)
            inode.chown(uid, gid)
        else:
            inode = self.vfs.lookup(self.ctx, path, follow=False).inode
            self.vfs.chown(self.ctx, path, uid, gid, follow=False)
        self._changed(inode, path)
        return 0

    def utimens(self, path: str | None, times: tuple[TimeArg, TimeArg] | None = None) -> int:
        """``utimensat``: each time in ns, ``UTIME_NOW`` or None (omitted); no times: both now.
        The kernel sends "mtime now" after an ``ftruncate`` by a writer too: times that are
        only "now" need ownership or write permission (``now_is_touch``)."""
        self._check_write()
        atime, mtime = (UTIME_NOW, UTIME_NOW) if times is None else times
        # with the writeback cache the kernel keeps a regular file's mtime: it sends a touch as
        # "atime now" plus its own clock, and at an fsync or close the mtime a write gave the file
        # (atime omitted, with a handle open for writing); a caller's explicit mtime never gets
        # here from a non-owner (the kernel checks ownership first: default_permissions)
        kernel_mtime = self.writeback and (atime is UTIME_NOW or atime is None) and isinstance(mtime, int)
        ctx = self.ctx
        if kernel_mtime and atime is None and self._writable_handle():
            ctx = self.root_ctx  # a write's mtime: Linux sets it whatever the permissions are now
        path = self._path_or_handle(path)
        if path is None:
            inode = self._handle_file().inode
            with contextlib.suppress(FileNotFoundError):  # an unlinked file: its times are gone with it
                self.vfs.set_times(ctx, inode, atime, mtime, now_is_touch=True,
                                   mtime_is_now=kernel_mtime and inode.is_reg)
        else:
            loc = self.vfs.lookup(self.ctx, path, follow=False)
            inode = loc.inode
            self.vfs.set_times(ctx, inode, atime, mtime, path, readonly=loc.mount.readonly, now_is_touch=True,
                               mtime_is_now=kernel_mtime and inode.is_reg)
        self._changed(inode, path)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return self.vfs.statfs(self.ctx, path)

    def readlink(self, path: str) -> str:
        return self.vfs.readlink(self.ctx, path)

    # ------------------------------------------------------------------ names

    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        """The whole listing at once. mfusepy sets libfuse's readdir callback only when the
        operations have this method; the kernel's requests are served by ``readdir_fuse_3`` in
        :func:`serve`, through :meth:`listing`."""
        # with use_ino the kernel takes d_ino from here: an entry with ino 0 is skipped by readdir(3)
        return [(name, {"st_ino": ino, "st_mode": dtype << 12}, 0) for name, ino, dtype in self._entries(path, fh)]

    def _entries(self, path: str | None, fh: int) -> list[tuple[str, int, int]]:
        """``(name, ino, d_type)`` of the folder open as ``fh`` (or at ``path``), read now."""
        loc = self._dirs.get(fh)
        return self.vfs.dir_listing(loc) if loc is not None else self.vfs.listdir(self.ctx, path or "/")

    def listing(self, path: str | None, fh: int, offset: int) -> list[tuple[str, int, int]]:
        """``(name, ino, d_type)`` of a folder open as ``fh``: read anew when a listing starts
        (offset 0) and kept for the later chunks, so offsets stay stable within one pass."""
        if offset == 0 or fh not in self._listings:
            entries = self._entries(path, fh)
            with self._lock:
                self._listings[fh] = entries
        return self._listings[fh]

    def prefetch_entries(self, fh: int, entries: list[tuple[str, int, int]]) -> None:
        """Tell the folder's file system that these entries' attributes are wanted next."""
        loc = self._dirs.get(fh)
        if loc is not None:
            try:
                loc.inode.prefetch_stats([name for name, _, _ in entries if name not in (".", "..")])
            except OSError as exc:  # only a hint
                log.debug("prefetching attributes in %s: %s", loc.path, exc)

    def entry_stat(self, path: str | None, fh: int, name: str) -> Stat | None:
        """Full attributes of entry ``name`` of folder ``fh`` (READDIRPLUS: then ``ls -l`` needs
        no LOOKUP per file); None for ``.``, ``..`` and an entry that vanished meanwhile."""
        if name in (".", ".."):
            return None
        loc = self._dirs.get(fh)
        base = (loc.path if loc is not None else path or "/").rstrip("/")
        try:
            s = self.vfs.stat(self.ctx, f"{base}/{name}", follow=False)
        except OSError:
            return None
        self.links.seen((s.st_dev, s.st_ino), s.st_nlink, f"{base}/{name}")
        return s

    def mkdir(self, path: str, mode: int) -> int:
        self._check_write()
        self.vfs.mkdir(self.ctx, path, mode)
        return 0

    def mknod(self, path: str, mode: int, dev: int) -> int:
        self._check_write()
        self.vfs.mknod(self.ctx, path, mode, dev)
        return 0

    def rmdir(self, path: str) -> int:
        self._check_write()
        self.vfs.rmdir(self.ctx, path)
        return 0

    def unlink(self, path: str) -> int:
        self._check_write()
        name = self._hidden_name(path)
        if name is not None and self._hidden.pop(name, None) is not None:
            return 0  # the last close of a hidden file: it was unlinked already
        inode = self.vfs.lookup(self.ctx, path, follow=False).inode
        self.vfs.unlink(self.ctx, path)
        self._changed(inode, path)
        return 0

    def rename(self, old: str, new: str, flags: int = 0) -> int:
        self._check_write()
        self.check_rename_flags(new, flags)
        if self._is_hide_rename(old, new):
            self._hide(old, self._hidden_name(new))  # type: ignore[arg-type]
        else:
            self.vfs.rename(self.ctx, old, new)
            self.links.renamed(old, new)
        return 0

    def check_rename_flags(self, new: str, flags: int) -> None:
        """``renameat2`` flags: RENAME_NOREPLACE over an existing name is EEXIST; the VFS has no
        RENAME_EXCHANGE (nor RENAME_WHITEOUT): EINVAL, as a Linux file system without them, both
        names left as they were (renaming instead would replace the target: a lost file)."""
        if flags & ~RENAME_NOREPLACE:
            raise err(errno.EINVAL, new)
        if flags & RENAME_NOREPLACE:
            with contextlib.suppress(FileNotFoundError):
                self.vfs.stat(self.ctx, new, follow=False)
                raise err(errno.EEXIST, new)

    def _request(self) -> int | None:
        return self.request() if self.request is not None else None

    def _is_hide_rename(self, old: str, new: str) -> bool:
        """Whether renaming ``old`` to ``new`` is libfuse hiding a removed file: ``new`` is a
        free name of libfuse's form in the same folder, and the request is libfuse's hide: the
        same request just found ``new`` free (see :mod:`vfs.fuse_request`; libfuse's open count
        outlives the bridge's handle while a RELEASE is served). Any other rename, a user's to
        such a name included, is one. Without request ids: when ``old`` has open handles."""
        hidden = self._hidden_name(new)
        if hidden is None or hidden in self._hidden or self._hidden_file(old) is not None:
            return False
        if old.rpartition("/")[0] != new.rpartition("/")[0]:
            return False
        probe = self._probes.pop(threading.get_ident(), None)
        try:
            inode = self.vfs.lookup(self.ctx, old, follow=False).inode
        except FileNotFoundError:
            return False  # the rename gives ENOENT
        request = self._request()
        if request is not None:
            return probe == (request, new)
        try:
            self.vfs.stat(self.ctx, new, follow=False)
            return False
        except FileNotFoundError:
            pass
        with self._lock:
            return any(f.inode is inode for f in self._files.values())

    def symlink(self, target: str, source: str) -> int:
        """``ln -s source target``: create ``target`` pointing to ``source``."""
        self._check_write()
        self.vfs.symlink(self.ctx, source, target)
        return 0

    def link(self, target: str, source: str) -> int:
        """``ln source target``."""
        self._check_write()
        self.vfs.link(self.ctx, source, target)
        inode = self.vfs.lookup(self.ctx, target, follow=False).inode
        key = (inode.fs.dev, inode.ino)
        # the kernel takes the new name for another file (libfuse's nodes are paths): it doesn't
        # know that the source's link count changed
        self.links.seen(key, 2, source)
        self.links.changed(key, target)
        return 0

    # ------------------------------------------------------------------ files

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        self._check_write()
        self._owner_gate(self.vfs.lookup(self.ctx, path.rpartition("/")[0] or "/").inode)
        file = self.vfs.open(self.ctx, path, self._open_flags(flags) | os.O_CREAT, mode, asked=flags)
        return self._add(self._owner_check(file))

    def open(self, path: str, flags: int) -> int:
        if flags & 3 != os.O_RDONLY or flags & os.O_TRUNC:
            self._check_write()
        hidden = self._hidden_file(path)
        if hidden is not None:  # an unlinked file opened again (through /proc/PID/fd/N)
            return self._add(self.vfs.reopen(self.ctx, hidden, self._open_flags(flags), asked=flags))
        # the caller's permissions are for what it asked (a write-only open widened for the
        # writeback cache must not need read permission)
        return self._add(self._owner_check(self.vfs.open(self.ctx, path, self._open_flags(flags), asked=flags)))

    def keep_cache_at_open(self, fh: int, path: str) -> bool:
        """Whether the kernel may keep the data it cached for ``path`` (libfuse gives each name a
        node of its own) now that it is open as ``fh``: always for files only this daemon changes,
        and for others (host files) while the file's version is the one of the previous open."""
        file = self._files.get(fh)
        if file is None or file.handle is None:
            return False
        version = file.handle.host_version()
        if version is None:
            if self.keep_cache:
                return True
            s = file.inode.stat()
            version = (s.st_ino, s.st_size, s.st_mtime_ns)
        with self._lock:
            last = self._versions.pop(path, None)  # (re)inserted last: the oldest go first
            self._versions[path] = version
            if len(self._versions) > MAX_VERSIONS:
                del self._versions[next(iter(self._versions))]  # forgotten: its next open rereads
        return last == version

    def needs_direct_io(self, fh: int) -> bool:
        """Whether the file open as ``fh`` must bypass the page cache: its ``st_size`` is not
        what it holds (generated files report 0, as on Linux), so the kernel would read nothing."""
        file = self._files.get(fh)
        if file is None or file.handle is None or not file.inode.is_reg:
            return False
        if getattr(file.handle, "direct_io", False):  # a pseudo file whose content changes under it
            return True
        return file.handle.size() != file.inode.stat().st_size

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return self._file(fh).pread(size, offset)

    def readinto(self, fh: int, buf: memoryview, offset: int) -> int:
        """``read`` straight into libfuse's reply buffer (no copies of the data in Python)."""
        return self._file(fh).preadinto(buf, offset)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        file = self._file(fh)
        try:
            n = file.pwrite(data, offset)
            if file.inode.nlink > 1:  # see vfs.fuse_links: notified after the reply, waited for at close
                self.links.changed((file.inode.fs.dev, file.inode.ino), file.path, wait=False)
                file.links_changed = True  # type: ignore[attr-defined]
            return n
        except OSError as exc:
            if self.writeback:  # the kernel's write-back: at best the program sees EIO at close
                self._failed(f"writing {file.path} failed", exc)
            raise

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        self._check_write()
        hidden = self._hidden_file(path) if path is not None else None
        if fh is not None and fh in self._files:
            file = self._files[fh]
            file.truncate(length)
            self._changed(file.inode, path or file.path)
        elif hidden is not None:
            hidden.truncate(length)
        elif path is None:
            raise err(errno.EBADF)
        else:
            self.vfs.truncate(self.ctx, path, length)
            self._changed(self.vfs.lookup(self.ctx, path).inode, path)
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        """``close()`` of a descriptor: push the file's changes to the host (no fsync)."""
        file = self._files.get(fh)
        if file is not None and getattr(file, "links_changed", False):
            file.links_changed = False  # type: ignore[attr-defined]
            self._changed(file.inode, file.path)
        if file is not None and file.handle is not None and file.writable:
            try:
                file.handle.flush()
            except OSError as exc:  # the program's close() gets the error; the log says which file
                log.error("writing %s failed: %s", file.path, exc.strerror or exc)
                raise
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        file = self._file(fh)
        try:
            file.fsync()
        except OSError as exc:
            log.error("fsync of %s failed: %s", file.path, exc.strerror or exc)
            raise
        return 0

    def release(self, path: str | None, fh: int) -> int:
        with self._lock:
            file = self._files.pop(fh, None)
            if file is not None and not any(f.inode is file.inode for f in self._files.values()):
                for name in [n for n, loc in self._hidden.items() if loc.inode is file.inode]:
                    del self._hidden[name]  # its last close: libfuse may never unlink the name (see _hide)
        if file is not None:
            try:
                file.decref()
            except OSError as exc:  # the kernel drops a release's error: the daemon's result has it
                self._failed(f"writing {file.path} at its last close failed", exc)
        return 0

    def opendir(self, path: str) -> int:
        """A handle on the folder (later calls on it may come without a path)."""
        self.vfs.listdir(self.ctx, path)  # errors (ENOTDIR, EACCES) at open, as the kernel expects
        loc = self.vfs.pin(self.vfs.lookup(self.ctx, path))
        self._owner_gate(loc.inode)
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._dirs[fh] = loc
        return fh

    def releasedir(self, path: str | None, fh: int) -> int:
        with self._lock:
            self._dirs.pop(fh, None)
            self._listings.pop(fh, None)
        return 0


def serve(vfs: VFS, mountpoint: str, *, writable: bool, foreground: bool = True, allow_other: bool = False,
          debug: bool = False, fsname: str = "pfskit", subtype: str = "pfs", writeback_cache: bool = True,
          direct_io: bool = False, keep_cache: bool = True, multithreaded: bool = False,
          ready: Callable[[], None] | None = None, api: str | None = None) -> None:
    """Mount ``vfs`` at ``mountpoint`` and serve requests until it is unmounted (blocks).

    ``api``: ``"mfusepy"`` (libfuse's path-based API, the default) or ``"lowlevel"`` (its
    inode-based API: :mod:`vfs.fuse_lowlevel`); None: ``$PFSKIT_FUSE_API``, else the default.

    ``direct_io`` bypasses the kernel's page cache for every file (files whose size isn't known
    before they are read, /proc's, always bypass it), at the cost of caching and of shared mmap.
    A host file's cached data is kept at open only while the file is unchanged since the name's
    previous open; ``keep_cache=False`` treats every file so (by its size and mtime), where others
    may change more than host files behind the mount's back.
    ``mountpoint`` "/dev/fd/N" serves a mount the caller made on the FUSE device it opened as N
    (and whose read-ahead it sets: :func:`raise_read_ahead`); any other is watched in the mount
    table until it is there, and its read-ahead raised.
    ``multithreaded`` serves requests from several libfuse threads: needed when a request may
    block (FIFOs, pipes); otherwise one thread is faster (the threads only contend for the GIL:
    measured 1.3-1.8x on sequential I/O). ``ready`` is called once the mount is up.

    Called from a process's main thread, SIGTERM, SIGINT and SIGHUP unmount cleanly
    (:mod:`vfs.fuse_session`): what programs wrote is flushed and encrypted first, and serve
    returns normally. Raises :class:`FuseError` if the mount can't be made, and
    :class:`UnmountFlushError` if files could not be flushed at the end.
    """
    if fuse_api(api) == "lowlevel":
        from .fuse_ll_serve import serve_lowlevel
        return serve_lowlevel(vfs, mountpoint, writable=writable, foreground=foreground, allow_other=allow_other,
                              debug=debug, fsname=fsname, subtype=subtype, writeback_cache=writeback_cache,
                              direct_io=direct_io, keep_cache=keep_cache, multithreaded=multithreaded, ready=ready)
    mfusepy = load_mfusepy()
    if not mountpoint.startswith("/dev/fd/"):  # "/dev/fd/N": mounted already, on a device the caller opened
        check_fuse_device()
    bridge = FuseBridge(vfs, writable=writable, writeback_cache=writeback_cache and not direct_io,
                        direct_io=direct_io, keep_cache=keep_cache)
    bridge.caller = mfusepy.fuse_get_context
    stopper = SignalStop(mountpoint, bridge.open_for_writing) \
        if threading.current_thread() is threading.main_thread() else None

    def started() -> None:
        fuse_ptr = ctypes.c_void_p(mfusepy._libfuse.fuse_get_context().contents.fuse)
        bridge.request = request_reader(mfusepy, fuse_ptr)

        def exit_session() -> None:
            mfusepy._libfuse.fuse_exit(fuse_ptr)

        invalidate = mfusepy._libfuse.fuse_invalidate_path
        invalidate.argtypes, invalidate.restype = [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int
        bridge.links.start(lambda path: invalidate(fuse_ptr, path.encode(errors="surrogateescape")))
        if stopper is not None and stopper.started(exit_session):
            exit_session()  # a stop signal came while mounting
        if ready is not None:
            ready()

    bridge.on_init = started
    if stopper is not None:
        bridge.on_destroy = stopper.ended
    # nodev (libfuse's default, said anyway): a device node in the mount never opens a device
    options: dict[str, Any] = {"fsname": fsname, "subtype": subtype, "default_permissions": True, "nodev": True,
                               # also set in init_with_config; mfusepy moves it where libfuse wants
                               "use_ino": True}
    if not writable:
        options["ro"] = True
    if allow_other:
        options["allow_other"] = True

    class Fuse(mfusepy.FUSE):
        """mfusepy drops the file handle of chmod/chown/utimens/truncate: pass it on."""

        def _with_fh(self, fip, call):
            bridge.call_fh.fh = fip.contents.fh if fip else None
            try:
                return call()
            finally:
                bridge.call_fh.fh = bridge.call_fh.hidden = None

        if multithreaded:
            def _wrapper(self, func, *args, **kwargs):
                keep_thread_state()  # every callback comes through here
                return super()._wrapper(func, *args, **kwargs)

        def rename_fuse_3(self, old, new, flags):
            """mfusepy drops renameat2's flags (RENAME_EXCHANGE became a plain, replacing rename)."""
            return bridge.rename(old.decode(self.encoding, self.errors), new.decode(self.encoding, self.errors),
                                 flags)

        def chmod_fuse_3(self, path, mode, fip):
            return self._with_fh(fip, lambda: super(Fuse, self).chmod_fuse_3(path, mode, fip))

        def chown_fuse_3(self, path, uid, gid, fip):
            return self._with_fh(fip, lambda: super(Fuse, self).chown_fuse_3(path, uid, gid, fip))

        def read(self, path, buf, size, offset, fip):
            target = (ctypes.c_char * size).from_address(ctypes.addressof(buf.contents))
            return bridge.readinto(fip.contents.fh, memoryview(target).cast("B"), offset)

        def readdir_fuse_3(self, path, buf, filler, offset, fip, flags):
            """Entries with offsets (libfuse then passes READDIRPLUS attributes on to the kernel;
            with offset 0 everywhere it drops them), attributes when the kernel asks for them."""
            name = None if path is None else path.decode(self.encoding, self.errors)
            fh = fip.contents.fh
            entries = bridge.listing(name, fh, offset)
            if flags & FUSE_READDIR_PLUS:
                bridge.prefetch_entries(fh, entries[offset:offset + PREFETCH_ENTRIES])
            for index in range(offset, len(entries)):
                entry, ino, dtype = entries[index]
                st = mfusepy.c_stat()
                full = bridge.entry_stat(name, fh, entry) if flags & FUSE_READDIR_PLUS else None
                if full is None:
                    st.st_ino, st.st_mode = ino, dtype << 12
                else:
                    _fill_stat(st, full)
                if filler(buf, entry.encode(self.encoding, self.errors), st, index + 1,
                          FUSE_FILL_DIR_PLUS if full is not None else 0):
                    break
            return 0

        def getattr_fuse_3(self, path, buf, fip):
            # as mfusepy's, without the attribute dictionary in between
            ctypes.memset(buf, 0, ctypes.sizeof(mfusepy.c_stat))
            name = None if path is None else path.decode(self.encoding, self.errors)
            _fill_stat(buf.contents, bridge.stat(name, fip.contents.fh if fip else None))
            return 0

        def create(self, path, mode, fip):
            # as mfusepy's, without its inspect.signature() call per file
            fi = fip.contents
            name = path.decode(self.encoding, self.errors)
            fi.fh = bridge.create(name, mode, fi.flags)
            if bridge.needs_direct_io(fi.fh):
                fi.direct_io = 1
            elif not bridge.direct_io:
                fi.keep_cache = 1 if bridge.keep_cache_at_open(fi.fh, name) else 0
            return 0

        def open(self, path, fip):
            fi = fip.contents
            name = path.decode(self.encoding, self.errors)
            fi.fh = bridge.open(name, fi.flags)
            if bridge.needs_direct_io(fi.fh):
                fi.direct_io = 1
            elif not bridge.direct_io:
                fi.keep_cache = 1 if bridge.keep_cache_at_open(fi.fh, name) else 0
            return 0

        def truncate_fuse_3(self, path, length, fip):
            fh = fip.contents.fh if fip else None
            name = None if path is None else path.decode(self.encoding, self.errors)
            return bridge.truncate(name, length, fh)

        def utimens_fuse_3(self, path, buf, fip):
            """As mfusepy's, with libfuse's UTIME_NOW and UTIME_OMIT markers understood."""
            times = None
            if buf:
                times = (time_arg(buf.contents.actime), time_arg(buf.contents.modtime))
            name = None if path is None else path.decode(self.encoding, self.errors)
            return self._with_fh(fip, lambda: bridge.utimens(name, times))

    # the bridge itself is the operations object: callbacks it doesn't define stay unset in libfuse
    with stopper or contextlib.nullcontext():
        if not mountpoint.startswith("/dev/fd/"):  # (a caller that mounted it sets its read-ahead)
            # started here: the thread inherits the blocked stop signals
            threading.Thread(target=raise_read_ahead_when_mounted, args=(os.path.realpath(mountpoint),),
                             daemon=True, name="fuse-read-ahead").start()
        try:
            Fuse(bridge, mountpoint, foreground=foreground, debug=debug, nothreads=not multithreaded, **options)
        except RuntimeError as exc:  # fuse_main_real's result (libfuse printed why on stderr)
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            what = FUSE_MAIN_FAILURES.get(code, f"libfuse failed ({exc})")
            raise FuseError(errno.EIO, f"FUSE at '{mountpoint}': {what} (libfuse error {code}; "
                                       "its own message is just before this one)") from None
    if bridge.failures:
        raise UnmountFlushError(bridge.failures)
