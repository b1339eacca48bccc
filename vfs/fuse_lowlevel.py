"""The inode-based FUSE bridge: libfuse3's low-level API (through ctypes) over the same VFS.

The kernel names files here by node id, not by path: one node per VFS inode (its
``(st_dev, st_ino)``), however many names it has, with the kernel's lookup count kept (a node
lives from its first LOOKUP to the FORGET that brings the count to zero). So a hard-linked file
is one kernel inode: a write or truncate through one name is seen at once through every other
(``stat`` and ``fstat``), with no invalidation; and a removed open file needs no hidden name (the
kernel sends UNLINK; the open handles keep the file alive).

The VFS is path-based: each node remembers the names the kernel looked it up by (``(parent node,
name)``, as the kernel's dentries), and a request on a node is served through one of them, by
the same :class:`~vfs.fuse.FuseBridge` methods the path-based bridge uses (permissions, caller
ids, caching decisions, flushes and failures are the same code). A node whose names are all gone
(an unlinked open file) is served through its open handles.

The node table is :mod:`vfs.fuse_nodes`, the session :mod:`vfs.fuse_ll_serve`, libfuse's
declarations :mod:`vfs.fuse_ll_abi`. Opt-in: ``PFSKIT_FUSE_API=lowlevel`` (or ``libos mount
--fuse-api=lowlevel``); see docs/decisions.md for the measurements.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from .fuse import (
    FUSE_CAP_ASYNC_READ,
    FUSE_CAP_ATOMIC_O_TRUNC,
    FUSE_CAP_BIG_WRITES,
    FUSE_CAP_WRITEBACK_CACHE,
    MAX_IO,
    PREFETCH_ENTRIES,
    FuseBridge,
    _fill_stat,
)
from .fuse_caller import time_arg
from .fuse_ll_abi import (
    SET_ATTR_ATIME,
    SET_ATTR_ATIME_NOW,
    SET_ATTR_GID,
    SET_ATTR_MODE,
    SET_ATTR_MTIME,
    SET_ATTR_MTIME_NOW,
    SET_ATTR_SIZE,
    SET_ATTR_UID,
    Abi,
)
from .fuse_nodes import NodeTable, join
from .node import UTIME_NOW, Stat, err

log = logging.getLogger("vfs.fuse")

def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


class LowLevelBridge:
    """The low-level callbacks: node ids to paths, then the path bridge's methods."""

    def __init__(self, bridge: FuseBridge, abi: Abi):
        self.bridge, self.abi = bridge, abi
        self.vfs = bridge.vfs
        self.timeout = bridge.attr_timeout
        root = self.vfs.root()
        self.table = NodeTable((root.inode.fs.dev, root.inode.ino))
        self._local = threading.local()
        self._buffers = threading.local()
        self.session: int | None = None
        # called once, at the first request after INIT (whose answer would lower the kernel's
        # read-ahead again: it takes the smaller of its own and the answer's)
        self.after_init: Callable[[], None] | None = None
        bridge.caller = self._caller

    # ------------------------------------------------------------------ requests

    def _caller(self) -> tuple[int, int, int]:
        req = getattr(self._local, "req", None)
        if req is None:
            return os.geteuid(), os.getegid(), os.getpid()
        c = self.abi.req_ctx(req).contents
        return c.uid, c.gid, c.pid

    def ops(self) -> Any:
        """The ``struct fuse_lowlevel_ops`` (its callbacks are kept alive by this object)."""
        ops = self.abi.Ops()
        self._callbacks = []
        for name, ftype in self.abi.types.items():
            method = getattr(self, f"ll_{name}", None)
            if method is None or (name == "flush" and not self.bridge.writable):
                continue
            cb = ftype(self._wrap(name, method))
            self._callbacks.append(cb)
            setattr(ops, name, cb)
        return ops

    def _wrap(self, name: str, method: Callable[..., None]) -> Callable[..., None]:
        if name in ("init", "destroy"):
            def session_call(*args: Any) -> None:
                try:
                    method(*args)
                except Exception:
                    log.exception("FUSE %s failed", name)
            return session_call
        forget = name in ("forget", "forget_multi")

        def call(req: int, *args: Any) -> None:
            self._local.req = req
            if self.after_init is not None:  # the first request: INIT has been answered
                after, self.after_init = self.after_init, None
                after()
            try:
                method(req, *args)
            except OSError as exc:
                if not forget:
                    self.abi.reply_err(req, exc.errno or errno.EIO)
            except Exception:
                log.exception("FUSE %s failed", name)
                if not forget:
                    self.abi.reply_err(req, errno.EIO)
            finally:
                self._local.req = None
        return call

    # ------------------------------------------------------------------ nodes

    def _path(self, ino: int) -> str:
        p = self.table.path(ino)
        if p is None:
            raise err(errno.ENOENT)
        return p

    def _child(self, parent: int, name: str) -> str:
        return join(self._path(parent), name)

    def _remember(self, parent: int, name: str, s: Stat, count: bool = True) -> int:
        """The node of the file with attributes ``s`` just found as ``name`` in ``parent``."""
        return self.table.remember(parent, name, (s.st_dev, s.st_ino), count=count)

    def _entry(self, ino: int, s: Stat) -> Any:
        e = self.abi.EntryParam()
        e.ino = ino
        _fill_stat(e.attr, s)
        e.attr_timeout = e.entry_timeout = self.timeout
        return e

    def _reply_entry(self, req: int, parent: int, name: str) -> None:
        s = self.vfs.stat(self.bridge.root_ctx, self._child(parent, name), follow=False)
        self.abi.reply_entry(req, self._entry(self._remember(parent, name, s), s))

    def _open_file(self, ino: int) -> Any:
        """An open handle of node ``ino`` (for a request on a file that has no name left)."""
        key = self.table.key(ino)
        with self.bridge._lock:
            files = list(self.bridge._files.values())
        for f in files:
            if (f.inode.fs.dev, f.inode.ino) == key:
                return f
        raise err(errno.ENOENT)

    def _stat(self, ino: int, fh: int | None) -> Stat:
        if fh is not None and fh in self.bridge._files:
            return self.bridge._files[fh].stat()
        path = self.table.path(ino)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                return self.bridge.stat(path)
        return self._open_file(ino).stat()

    # ------------------------------------------------------------------ session

    def ll_init(self, userdata: int, conn: Any) -> None:
        c = conn.contents
        c.max_write = MAX_IO
        c.max_readahead = min(c.max_readahead or MAX_IO, MAX_IO)
        want = FUSE_CAP_ASYNC_READ | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_BIG_WRITES
        if self.bridge.writeback:
            want |= FUSE_CAP_WRITEBACK_CACHE
        c.want |= want & c.capable
        if self.bridge.on_init is not None:
            self.bridge.on_init()

    def ll_destroy(self, userdata: int) -> None:
        self.bridge.destroy("/")

    # ------------------------------------------------------------------ names

    def ll_lookup(self, req: int, parent: int, name: bytes) -> None:
        try:
            self._reply_entry(req, parent, _name(name))
        except FileNotFoundError:
            e = self.abi.EntryParam()  # ino 0: a negative entry, cached for the entry timeout
            e.entry_timeout = self.timeout
            self.abi.reply_entry(req, e)

    def ll_forget(self, req: int, ino: int, nlookup: int) -> None:
        self.table.forget(ino, nlookup)
        self.abi.reply_none(req)

    def ll_forget_multi(self, req: int, count: int, forgets: Any) -> None:
        for i in range(count):
            self.table.forget(forgets[i].ino, forgets[i].nlookup)
        self.abi.reply_none(req)

    def ll_mknod(self, req: int, parent: int, name: bytes, mode: int, rdev: int) -> None:
        self.bridge.mknod(self._child(parent, _name(name)), mode, rdev)
        self._reply_entry(req, parent, _name(name))

    def ll_mkdir(self, req: int, parent: int, name: bytes, mode: int) -> None:
        self.bridge.mkdir(self._child(parent, _name(name)), mode)
        self._reply_entry(req, parent, _name(name))

    def ll_symlink(self, req: int, target: bytes, parent: int, name: bytes) -> None:
        self.bridge.symlink(self._child(parent, _name(name)), _name(target))
        self._reply_entry(req, parent, _name(name))

    def ll_link(self, req: int, ino: int, newparent: int, newname: bytes) -> None:
        self.bridge._check_write()
        self.vfs.link(self.bridge.ctx, self._path(ino), self._child(newparent, _name(newname)))
        self._reply_entry(req, newparent, _name(newname))

    def ll_unlink(self, req: int, parent: int, name: bytes) -> None:
        self.bridge._check_write()
        self.vfs.unlink(self.bridge.ctx, self._child(parent, _name(name)))
        self.table.drop_name(parent, _name(name))
        self.abi.reply_err(req, 0)

    def ll_rmdir(self, req: int, parent: int, name: bytes) -> None:
        self.bridge.rmdir(self._child(parent, _name(name)))
        self.table.drop_name(parent, _name(name))
        self.abi.reply_err(req, 0)

    def ll_rename(self, req: int, parent: int, name: bytes, newparent: int, newname: bytes, flags: int) -> None:
        self.bridge._check_write()
        old, new = self._child(parent, _name(name)), self._child(newparent, _name(newname))
        self.bridge.check_rename_flags(new, flags)
        self.vfs.rename(self.bridge.ctx, old, new)
        self.table.moved(parent, _name(name), newparent, _name(newname))
        self.abi.reply_err(req, 0)

    def ll_readlink(self, req: int, ino: int) -> None:
        self.abi.reply_readlink(req, os.fsencode(self.bridge.readlink(self._path(ino))))

    def ll_statfs(self, req: int, ino: int) -> None:
        st = self.abi.c_statvfs()
        for key, value in self.bridge.statfs(self.table.path(ino) or "/").items():
            if hasattr(st, key):
                setattr(st, key, value)
        self.abi.reply_statfs(req, ctypes.byref(st))

    # ------------------------------------------------------------------ attributes

    def ll_getattr(self, req: int, ino: int, fi: Any) -> None:
        st = self.abi.c_stat()
        _fill_stat(st, self._stat(ino, fi.contents.fh if fi else None))
        self.abi.reply_attr(req, ctypes.byref(st), self.timeout)

    def ll_setattr(self, req: int, ino: int, attr: Any, to_set: int, fi: Any) -> None:
        """In libfuse's high-level order: mode, owner, size, times; then the new attributes."""
        b = self.bridge
        a = attr.contents
        fh = fi.contents.fh if fi else None
        path = self.table.path(ino)
        b.call_fh.fh = fh
        if path is None and (fh is None or fh not in b._files):
            b.call_fh.hidden = self._open_file(ino)  # a file without a name: through an open handle
        try:
            if to_set & SET_ATTR_MODE:
                b.chmod(path, a.st_mode)
            if to_set & (SET_ATTR_UID | SET_ATTR_GID):
                b.chown(path, a.st_uid if to_set & SET_ATTR_UID else -1, a.st_gid if to_set & SET_ATTR_GID else -1)
            if to_set & SET_ATTR_SIZE:
                if path is None and fh is None:
                    b.call_fh.hidden.truncate(a.st_size)
                else:
                    b.truncate(path, a.st_size, fh)
            if to_set & (SET_ATTR_ATIME | SET_ATTR_MTIME):
                atime = UTIME_NOW if to_set & SET_ATTR_ATIME_NOW else \
                    time_arg(a.st_atimespec) if to_set & SET_ATTR_ATIME else None
                mtime = UTIME_NOW if to_set & SET_ATTR_MTIME_NOW else \
                    time_arg(a.st_mtimespec) if to_set & SET_ATTR_MTIME else None
                b.utimens(path, (atime, mtime))
        finally:
            b.call_fh.fh = b.call_fh.hidden = None
        self.ll_getattr(req, ino, fi)

    # ------------------------------------------------------------------ files

    def _opened(self, fi: Any, fh: int, path: str | None) -> None:
        f = fi.contents
        f.fh = fh
        if self.bridge.needs_direct_io(fh):
            f.direct_io = 1
        elif not self.bridge.direct_io:
            f.keep_cache = 1 if path is not None and self.bridge.keep_cache_at_open(fh, path) else 0

    def ll_create(self, req: int, parent: int, name: bytes, mode: int, fi: Any) -> None:
        path = self._child(parent, _name(name))
        fh = self.bridge.create(path, mode, fi.contents.flags)
        try:
            s = self.bridge._files[fh].stat()
            e = self._entry(self._remember(parent, _name(name), s), s)
            self._opened(fi, fh, path)
        except BaseException:
            self.bridge.release(path, fh)
            raise
        if self.abi.reply_create(req, e, fi) != 0:  # the caller was interrupted: nobody has it
            self.table.forget(e.ino, 1)
            self.bridge.release(path, fh)

    def ll_open(self, req: int, ino: int, fi: Any) -> None:
        b = self.bridge
        path = self.table.path(ino)
        flags = fi.contents.flags
        if path is None:  # reopened through /proc/PID/fd/N after its last name was removed
            fh = b._add(self.vfs.reopen(b.ctx, self._open_file(ino), b._open_flags(flags)))
        else:
            fh = b.open(path, flags)
        self._opened(fi, fh, path)
        if self.abi.reply_open(req, fi) != 0:
            b.release(path, fh)

    def ll_read(self, req: int, ino: int, size: int, off: int, fi: Any) -> None:
        buf = getattr(self._buffers, "buf", None)
        if buf is None or len(buf) < size:
            buf = self._buffers.buf = bytearray(max(size, MAX_IO))
        n = self.bridge.readinto(fi.contents.fh, memoryview(buf)[:size], off)
        c = (ctypes.c_char * len(buf)).from_buffer(buf)
        self.abi.reply_buf(req, c, n)

    def ll_write(self, req: int, ino: int, data: int, size: int, off: int, fi: Any) -> None:
        n = self.bridge.write(None, ctypes.string_at(data, size), off, fi.contents.fh)
        self.abi.reply_write(req, n)

    def ll_flush(self, req: int, ino: int, fi: Any) -> None:
        self.bridge.flush(None, fi.contents.fh)
        self.abi.reply_err(req, 0)

    def ll_release(self, req: int, ino: int, fi: Any) -> None:
        self.bridge.release(None, fi.contents.fh)
        self.abi.reply_err(req, 0)

    def ll_fsync(self, req: int, ino: int, datasync: int, fi: Any) -> None:
        self.bridge.fsync(None, datasync, fi.contents.fh)
        self.abi.reply_err(req, 0)

    # ------------------------------------------------------------------ folders

    def ll_opendir(self, req: int, ino: int, fi: Any) -> None:
        fi.contents.fh = self.bridge.opendir(self._path(ino))
        self.abi.reply_open(req, fi)

    def ll_releasedir(self, req: int, ino: int, fi: Any) -> None:
        self.bridge.releasedir(None, fi.contents.fh)
        self.abi.reply_err(req, 0)

    def ll_fsyncdir(self, req: int, ino: int, datasync: int, fi: Any) -> None:
        self.abi.reply_err(req, 0)

    def ll_readdir(self, req: int, ino: int, size: int, off: int, fi: Any) -> None:
        self._readdir(req, ino, size, off, fi, plus=False)

    def ll_readdirplus(self, req: int, ino: int, size: int, off: int, fi: Any) -> None:
        self._readdir(req, ino, size, off, fi, plus=True)

    def _readdir(self, req: int, ino: int, size: int, off: int, fi: Any, *, plus: bool) -> None:
        """Entries from ``off`` on, as many as fit in ``size`` bytes; with ``plus``, each
        entry's attributes too (a lookup of it: counted only if it was sent)."""
        b = self.bridge
        fh = fi.contents.fh
        path = self.table.path(ino)
        entries = b.listing(path, fh, off)
        if plus:
            b.prefetch_entries(fh, entries[off:off + PREFETCH_ENTRIES])
        buf = ctypes.create_string_buffer(size)
        pos = 0
        st = self.abi.c_stat()
        for index in range(off, len(entries)):
            name, d_ino, dtype = entries[index]
            raw = os.fsencode(name)
            addr = ctypes.addressof(buf) + pos
            if not plus:
                st.st_ino, st.st_mode = d_ino, dtype << 12
                need = self.abi.add_direntry(req, addr, size - pos, raw, ctypes.byref(st), index + 1)
            else:
                s = b.entry_stat(path, fh, name)
                if s is None:  # ".", "..", or gone: no attributes, no lookup
                    e = self.abi.EntryParam()
                    e.attr.st_ino, e.attr.st_mode = d_ino, dtype << 12
                    need = self.abi.add_direntry_plus(req, addr, size - pos, raw, ctypes.byref(e), index + 1)
                else:
                    with self.table.lock:
                        node = self._remember(ino, name, s, count=False)
                        e = self._entry(node, s)
                        need = self.abi.add_direntry_plus(req, addr, size - pos, raw, ctypes.byref(e), index + 1)
                        if need <= size - pos:
                            self.table.counted(node)
                        else:
                            self.table.forget(node, 0)  # gone again unless the kernel has it
            if need > size - pos:
                break
            pos += need
        self.abi.reply_buf(req, buf, pos)
