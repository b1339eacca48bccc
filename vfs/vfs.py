"""The VFS: path walk over the mount table, and every path operation with Linux's semantics.

This module is the one implementation of file semantics that every front end uses (the
in-process LibOS, the FUSE bridge, the runner): which errno a failure gives, how ``.``, ``..``,
symlinks, trailing slashes and mount points behave, what replaces what on rename.
"""

from __future__ import annotations

import errno
import os
import stat as st
import weakref
from dataclasses import dataclass

from pal import time_ns

from .file import O_ACCMODE, O_PATH, OpenFile, dirent_type, kill_setid
from .mount import Mount, MountTable
from .node import NAME_MAX, PATH_MAX, UTIME_NOW, Inode, Stat, TimeArg, err

MAXSYMLINKS = 40
O_NOFOLLOW = os.O_NOFOLLOW
O_DIRECTORY = os.O_DIRECTORY
O_TMPFILE = getattr(os, "O_TMPFILE", 0o20200000)
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_EMPTY_PATH = 0x1000
R_OK, W_OK, X_OK = 4, 2, 1


@dataclass(eq=False)
class Location:
    """A resolved path: where it is (canonical absolute path, mount, parent location) and what
    it is (inode). ``..`` goes to ``parent``, so it climbs out of mounts and symlinked paths the
    way Linux does."""

    path: str
    mount: Mount
    inode: Inode
    parent: Location | None = None

    def stat(self) -> Stat:
        return self.inode.stat()


@dataclass
class Context:
    """Who is asking, and from where: the parts of a process that path operations need."""

    root: Location
    cwd: Location
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    umask: int = 0o022
    # paths are the caller's (limited to PATH_MAX as Linux's); False for paths the FUSE bridge
    # is given, which join the caller's relative path to its cwd (the kernel limited the former)
    limit_paths: bool = True


@dataclass
class _Walk:
    """Internal state of one path walk."""

    cur: Location
    links: int = 0


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c]


def _join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else parent + "/" + name


class VFS:
    """Path operations over a :class:`MountTable` (``/`` must be mounted)."""

    def __init__(self, mounts: MountTable | None = None):
        self.mounts = mounts or MountTable()
        # folders that stay in use by location (cwds, open folder descriptions): a rename above
        # them moves their path, as the kernel's dentries move
        self._pinned: weakref.WeakSet[Location] = weakref.WeakSet()
        self.pipe_factory = None  # set by vfs.pipe users: () -> Pipe

    # ================================================================== locations

    def root(self) -> Location:
        mount = self.mounts.at("/")
        if mount is None:
            raise err(errno.ENOENT, "/")
        return Location("/", mount, mount.root)

    def context(self, cwd: str = "/", **kwargs) -> Context:
        """A root context starting in ``cwd``."""
        root = self.root()
        ctx = Context(root=root, cwd=root, **kwargs)
        ctx.cwd = self.lookup(ctx, cwd)
        if not ctx.cwd.inode.is_dir:
            raise err(errno.ENOTDIR, cwd)
        return ctx

    # ================================================================== permission checks

    def may(self, ctx: Context, inode: Inode, want: int) -> bool:
        """Unix permission check of ``want`` (R_OK|W_OK|X_OK bits) for the context's user."""
        mode = inode.mode
        if ctx.uid == 0:
            # root passes every check, except execute when nobody may execute
            return not (want & X_OK) or inode.is_dir or bool(mode & 0o111)
        if ctx.uid == inode.uid:
            bits = (mode >> 6) & 7
        elif inode.gid == ctx.gid or inode.gid in ctx.groups:
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        return (bits & want) == want

    def _require(self, ctx: Context, inode: Inode, want: int, path: str | None = None) -> None:
        if not self.may(ctx, inode, want):
            raise err(errno.EACCES, path)

    def _writable_mount(self, loc: Location, path: str | None = None) -> None:
        if loc.mount.readonly:
            raise err(errno.EROFS, path)

    # ================================================================== path walk

    def _check_name(self, ctx: Context, path: str) -> None:
        if not isinstance(path, str):
            raise TypeError("path must be str")
        if "\0" in path:
            raise ValueError("embedded null byte")
        if path == "":
            raise err(errno.ENOENT, path)
        if ctx.limit_paths and len(path.encode(errors="surrogateescape")) >= PATH_MAX:
            raise err(errno.ENAMETOOLONG, path)

    def _child(self, ctx: Context, cur: Location, name: str, path: str) -> Location:
        """The entry ``name`` in directory ``cur`` (mount points win over what they cover)."""
        if len(name.encode(errors="surrogateescape")) > NAME_MAX:
            raise err(errno.ENAMETOOLONG, path)
        child_path = _join(cur.path, name)
        mount = self.mounts.at(child_path)
        if mount is not None:
            root = mount.root
            if root is None:  # a single-file mount whose file isn't made yet
                raise err(errno.ENOENT, path)
            return Location(child_path, mount, root, cur)
        inode = cur.inode.lookup(name)
        if inode is None:
            raise err(errno.ENOENT, path)
        return Location(child_path, cur.mount, inode, cur)

    def _walk(self, ctx: Context, walk: _Walk, names: list[str], path: str) -> None:
        """Resolve every name in ``names`` as a directory, following symlinks."""
        for name in names:
            self._step(ctx, walk, name, path, follow=True, want_dir=True)

    def _step(self, ctx: Context, walk: _Walk, name: str, path: str, *, follow: bool, want_dir: bool) -> None:
        cur = walk.cur
        if not cur.inode.is_dir:
            raise err(errno.ENOTDIR, path)
        self._require(ctx, cur.inode, X_OK, path)
        if name == ".":
            return
        if name == "..":
            if cur.parent is not None and cur.path != ctx.root.path:
                walk.cur = cur.parent
            return
        loc = self._child(ctx, cur, name, path)
        if not (loc.inode.is_symlink and follow):
            walk.cur = loc
            return
        walk.links += 1
        if walk.links > MAXSYMLINKS:
            raise err(errno.ELOOP, path)
        file = loc.inode.magic_target()
        if file is not None:  # /proc/PID/fd/N: the open file itself, whatever its name now
            walk.cur = file.location
            if want_dir and not walk.cur.inode.is_dir:
                raise err(errno.ENOTDIR, path)
            return
        target = loc.inode.readlink()
        if not target:
            raise err(errno.ENOENT, path)
        if target.startswith("/"):
            walk.cur = ctx.root
        names = _split(target)
        if want_dir:
            self._walk(ctx, walk, names, path)
        else:
            self._walk(ctx, walk, names[:-1], path)
            if names:
                self._step(ctx, walk, names[-1], path, follow=True, want_dir=False)
            if target.endswith("/") and not walk.cur.inode.is_dir:
                raise err(errno.ENOTDIR, path)
        if want_dir and not walk.cur.inode.is_dir:
            raise err(errno.ENOTDIR, path)

    def _start(self, ctx: Context, path: str) -> _Walk:
        return _Walk(ctx.root if path.startswith("/") else ctx.cwd)

    def lookup(self, ctx: Context, path: str, *, follow: bool = True) -> Location:
        """Resolve ``path`` completely (``follow``: also a final symlink)."""
        self._check_name(ctx, path)
        names = _split(path)
        trailing = path.endswith("/")
        walk = self._start(ctx, path)
        if not names:
            return walk.cur
        self._walk(ctx, walk, names[:-1], path)
        self._step(ctx, walk, names[-1], path, follow=follow or trailing, want_dir=False)
        loc = walk.cur
        if trailing and not loc.inode.is_dir:
            raise err(errno.ENOTDIR, path)
        return loc

    def lookup_parent(self, ctx: Context, path: str) -> tuple[Location, str, bool]:
        """Resolve every component but the last: (parent directory, last name, trailing slash)."""
        self._check_name(ctx, path)
        names = _split(path)
        walk = self._start(ctx, path)
        if not names:
            return walk.cur, ".", True
        self._walk(ctx, walk, names[:-1], path)
        parent = walk.cur
        if not parent.inode.is_dir:
            raise err(errno.ENOTDIR, path)
        return parent, names[-1], path.endswith("/")

    def _maybe_child(self, ctx: Context, parent: Location, name: str, path: str) -> Location | None:
        try:
            return self._child(ctx, parent, name, path)
        except FileNotFoundError:
            return None

    def _absent_root(self, parent: Location, name: str) -> Mount | None:
        """The mount at ``parent/name`` if its root doesn't exist yet (a single-file mount whose
        file isn't made: only creating a regular file there makes it)."""
        mount = self.mounts.at(_join(parent.path, name))
        return mount if mount is not None and mount.root is None else None

    def _create_root(self, ctx: Context, mount: Mount, parent: Location, mode: int, path: str) -> Inode:
        if mount.readonly:
            raise err(errno.EROFS, path)
        return mount.fs.create_root(mode & 0o7777 & ~ctx.umask, ctx.uid,  # type: ignore[attr-defined]
                                    self._new_gid(ctx, parent))

    def realpath(self, ctx: Context, path: str) -> str:
        """The canonical path of ``path`` (symlinks resolved)."""
        return self.lookup(ctx, path).path

    # ================================================================== metadata

    def stat(self, ctx: Context, path: str, *, follow: bool = True) -> Stat:
        return self.lookup(ctx, path, follow=follow).stat()

    def access(self, ctx: Context, path: str, mode: int) -> None:
        """``access(2)``: raise unless the caller may ``mode`` (F_OK = 0)."""
        if mode & ~7:
            raise err(errno.EINVAL, path)
        loc = self.lookup(ctx, path)
        if mode & W_OK and loc.mount.readonly:
            raise err(errno.EROFS, path)
        if mode and not self.may(ctx, loc.inode, mode):
            raise err(errno.EACCES, path)

    def chmod(self, ctx: Context, path: str, mode: int, *, follow: bool = True) -> None:
        loc = self.lookup(ctx, path, follow=follow)
        if loc.inode.is_symlink:
            raise err(errno.EOPNOTSUPP, path)
        self._writable_mount(loc, path)
        if ctx.uid not in (0, loc.inode.uid):
            raise err(errno.EPERM, path)
        loc.inode.chmod(self.chmod_mode(ctx, loc.inode, mode))

    def in_group(self, ctx: Context, gid: int) -> bool:
        """Whether ``gid`` is the context's group or one of its supplementary groups."""
        return gid == ctx.gid or gid in ctx.groups

    def chmod_mode(self, ctx: Context, inode: Inode, mode: int) -> int:
        """The mode ``chmod(mode)`` by ``ctx`` sets: Linux drops S_ISGID when an unprivileged
        caller is not in the file's group."""
        if ctx.uid != 0 and mode & st.S_ISGID and not self.in_group(ctx, inode.gid):
            mode &= ~st.S_ISGID
        return mode

    def chown(self, ctx: Context, path: str, uid: int, gid: int, *, follow: bool = True) -> None:
        """``chown``/``lchown`` (-1 leaves an id as it is): root gives files away; an owner may
        only change the group, to one of its own (Linux's rules)."""
        loc = self.lookup(ctx, path, follow=follow)
        self._writable_mount(loc, path)
        self.check_chown(ctx, loc.inode, uid, gid, path)
        if loc.inode.is_reg:
            kill_setid(loc.inode)  # Linux: whoever chowns, root included, even to -1/-1
        loc.inode.chown(uid, gid)

    def check_chown(self, ctx: Context, inode: Inode, uid: int, gid: int, path: str | None = None) -> None:
        """EPERM unless ``ctx`` may set these ids (see :meth:`chown`)."""
        if ctx.uid == 0:
            return
        if uid not in (-1, inode.uid) or ctx.uid != inode.uid:
            raise err(errno.EPERM, path)
        if gid not in (-1, inode.gid) and not self.in_group(ctx, gid):
            raise err(errno.EPERM, path)

    def utimens(self, ctx: Context, path: str, atime_ns: TimeArg, mtime_ns: TimeArg, *,
                follow: bool = True, now_is_touch: bool = False) -> None:
        """``utimensat``: each time in ns, :data:`UTIME_NOW` or None (``UTIME_OMIT``); see
        :meth:`set_times`."""
        loc = self.lookup(ctx, path, follow=follow)
        self.set_times(ctx, loc.inode, atime_ns, mtime_ns, path, readonly=loc.mount.readonly,
                       now_is_touch=now_is_touch)

    def set_times(self, ctx: Context, inode: Inode, atime_ns: TimeArg, mtime_ns: TimeArg,
                  path: str | None = None, *, readonly: bool = False, now_is_touch: bool = False,
                  mtime_is_now: bool = False) -> None:
        """Set the times of ``inode`` as ``utimensat`` does, with Linux's checks: both omitted
        changes nothing; both "now" needs ownership or write permission; any explicit time
        needs ownership (root passes). ``now_is_touch``: one "now" and one omitted time count
        as a touch too (what the kernel asks of a FUSE file system after ``ftruncate``).
        ``mtime_is_now``: the explicit ``mtime_ns`` is the kernel's "now" (with the FUSE writeback
        cache the kernel keeps a regular file's mtime and sends its own clock for a touch)."""
        if atime_ns is None and mtime_ns is None:
            return
        if readonly:
            raise err(errno.EROFS, path)
        if ctx.uid not in (0, inode.uid):
            asked = (atime_ns, UTIME_NOW if mtime_is_now else mtime_ns)
            if now_is_touch:
                touch = all(t is UTIME_NOW or t is None for t in asked)
            else:
                touch = asked[0] is UTIME_NOW and asked[1] is UTIME_NOW
            if not touch:
                raise err(errno.EPERM, path)
            self._require(ctx, inode, W_OK, path)
        now = time_ns() if UTIME_NOW in (atime_ns, mtime_ns) else 0
        inode.utimens(now if atime_ns is UTIME_NOW else atime_ns,  # type: ignore[arg-type]
                      now if mtime_ns is UTIME_NOW else mtime_ns)  # type: ignore[arg-type]

    def readlink(self, ctx: Context, path: str) -> str:
        loc = self.lookup(ctx, path, follow=False)
        if not loc.inode.is_symlink:
            raise err(errno.EINVAL, path)
        return loc.inode.readlink()

    def truncate(self, ctx: Context, path: str, size: int) -> None:
        """``truncate(2)`` by path."""
        if size < 0:
            raise err(errno.EINVAL, path)
        loc = self.lookup(ctx, path)
        if loc.inode.is_dir:
            raise err(errno.EISDIR, path)
        if not loc.inode.is_reg:
            raise err(errno.EINVAL, path)
        self._writable_mount(loc, path)
        self._require(ctx, loc.inode, W_OK, path)
        if ctx.uid != 0:
            kill_setid(loc.inode)
        with loc.inode.lock:
            loc.inode.truncate(size)
        loc.inode.touch(mtime=True, ctime=True)

    def listdir(self, ctx: Context, path: str) -> list[tuple[str, int, int]]:
        """(name, ino, d_type) of every entry, ``.`` and ``..`` first; mount points included."""
        loc = self.lookup(ctx, path)
        if not loc.inode.is_dir:
            raise err(errno.ENOTDIR, path)
        self._require(ctx, loc.inode, R_OK, path)
        return self.dir_listing(loc)

    def dir_listing(self, loc: Location) -> list[tuple[str, int, int]]:
        inode = loc.inode
        up = loc.parent.inode if loc.parent is not None else inode
        out = [(".", inode.ino, dirent_type(inode.mode)), ("..", up.ino, dirent_type(up.mode))]
        seen = set()
        for name, child in inode.entries():
            mount = self.mounts.at(_join(loc.path, name))
            target = mount.root if mount is not None else child
            if target is None:
                continue
            out.append((name, target.ino, dirent_type(target.mode)))
            seen.add(name)
        for name in self.mounts.children_of(loc.path):
            if name not in seen:
                root = self.mounts.at(_join(loc.path, name)).root  # type: ignore[union-attr]
                if root is None:
                    continue
                out.append((name, root.ino, dirent_type(root.mode)))
        return out

    # ================================================================== namespace changes

    def _parent_for_change(self, ctx: Context, parent: Location, path: str) -> None:
        if parent.inode.stat().st_nlink == 0:
            raise err(errno.ENOENT, path)  # a removed directory takes no new entries
        self._writable_mount(parent, path)
        self._require(ctx, parent.inode, W_OK | X_OK, path)

    def mkdir(self, ctx: Context, path: str, mode: int = 0o777) -> None:
        parent, name, _ = self.lookup_parent(ctx, path)
        if name in (".", "..") or self._maybe_child(ctx, parent, name, path) is not None:
            raise err(errno.EEXIST, path)
        if self._absent_root(parent, name) is not None:
            raise err(errno.EPERM, path)  # a single-file mount takes a regular file only
        self._parent_for_change(ctx, parent, path)
        perm = mode & ~ctx.umask & 0o1777  # mkdir drops set-user/group-ID from its argument...
        if parent.inode.mode & st.S_ISGID:
            perm |= st.S_ISGID  # ...and inherits set-group-ID from the parent
        parent.inode.mkdir(name, perm, ctx.uid, self._new_gid(ctx, parent))

    def mknod(self, ctx: Context, path: str, mode: int, rdev: int = 0) -> None:
        """Create a FIFO (``mode`` with S_IFIFO), a socket's name (S_IFSOCK: what ``bind()`` of an
        AF_UNIX socket makes), a regular file (S_IFREG or no type) or a character or block device
        (S_IFCHR, S_IFBLK: root only, as Linux asks CAP_MKNOD; ``rdev`` is its ``makedev`` number).
        Device nodes are kept on chroot and tmpfs mounts but never open a device: an open gives
        EACCES, as on a ``nodev`` mount (encrypted mounts have no such nodes: EPERM)."""
        parent, name, trailing = self.lookup_parent(ctx, path)
        if name in (".", "..") or self._maybe_child(ctx, parent, name, path) is not None:
            raise err(errno.EEXIST, path)
        if trailing:
            raise err(errno.ENOENT, path)
        kind = st.S_IFMT(mode) or st.S_IFREG
        if kind not in (st.S_IFREG, st.S_IFIFO, st.S_IFSOCK, st.S_IFCHR, st.S_IFBLK):
            raise err(errno.EPERM, path)
        target = self._absent_root(parent, name)
        if target is not None:
            if kind != st.S_IFREG:
                raise err(errno.EPERM, path)  # a single-file mount takes a regular file only
            self._create_root(ctx, target, parent, mode, path)
            return
        self._parent_for_change(ctx, parent, path)
        is_device = kind in (st.S_IFCHR, st.S_IFBLK)
        if is_device and ctx.uid != 0:
            raise err(errno.EPERM, path)  # Linux checks CAP_MKNOD after the folder's permissions
        perm = mode & 0o7777 & ~ctx.umask
        if kind == st.S_IFREG:
            parent.inode.create(name, perm, ctx.uid, self._new_gid(ctx, parent))
        else:
            parent.inode.mknod(name, kind | perm, ctx.uid, self._new_gid(ctx, parent), rdev if is_device else 0)

    def mkfifo(self, ctx: Context, path: str, mode: int = 0o666) -> None:
        self.mknod(ctx, path, st.S_IFIFO | (mode & 0o7777))

    def symlink(self, ctx: Context, target: str, path: str) -> None:
        if target == "":
            raise err(errno.ENOENT, path)
        if len(target.encode(errors="surrogateescape")) >= PATH_MAX:
            raise err(errno.ENAMETOOLONG, path)
        parent, name, trailing = self.lookup_parent(ctx, path)
        if name in (".", "..") or self._maybe_child(ctx, parent, name, path) is not None:
            raise err(errno.EEXIST, path)
        if trailing:
            raise err(errno.ENOENT, path)
        if self._absent_root(parent, name) is not None:
            raise err(errno.EPERM, path)  # a single-file mount takes a regular file only
        self._parent_for_change(ctx, parent, path)
        parent.inode.symlink(name, target, ctx.uid, self._new_gid(ctx, parent))

    def link(self, ctx: Context, old: str, new: str, *, follow: bool = False) -> None:
        src = self.lookup(ctx, old, follow=follow)
        parent, name, trailing = self.lookup_parent(ctx, new)
        if name in (".", "..") or self._maybe_child(ctx, parent, name, new) is not None:
            raise err(errno.EEXIST, new)
        if trailing:
            raise err(errno.ENOENT, new)
        if src.inode.is_dir:
            raise err(errno.EPERM, old)
        if src.mount is not parent.mount or self._absent_root(parent, name) is not None:
            raise err(errno.EXDEV, new)
        self._parent_for_change(ctx, parent, new)
        parent.inode.link(name, src.inode)

    def unlink(self, ctx: Context, path: str) -> None:
        parent, name, trailing = self.lookup_parent(ctx, path)
        if name in (".", ".."):
            raise err(errno.EISDIR, path)
        loc = self._child(ctx, parent, name, path)
        if self.mounts.at(loc.path) is not None:
            raise err(errno.EBUSY, path)
        if loc.inode.is_dir:
            raise err(errno.EISDIR, path)
        if trailing:
            raise err(errno.ENOTDIR, path)
        self._parent_for_change(ctx, parent, path)
        self._sticky_check(ctx, parent.inode, loc.inode, path)
        parent.inode.unlink(name)

    def rmdir(self, ctx: Context, path: str) -> None:
        parent, name, _ = self.lookup_parent(ctx, path)
        if name == ".":
            raise err(errno.EINVAL, path)
        if name == "..":
            raise err(errno.ENOTEMPTY, path)
        loc = self._child(ctx, parent, name, path)
        if not loc.inode.is_dir:
            raise err(errno.ENOTDIR, path)
        if self.mounts.at(loc.path) is not None or loc is ctx.root:
            raise err(errno.EBUSY, path)
        if any(True for _ in loc.inode.entries()) or self.mounts.children_of(loc.path):
            raise err(errno.ENOTEMPTY, path)
        self._parent_for_change(ctx, parent, path)
        self._sticky_check(ctx, parent.inode, loc.inode, path)
        parent.inode.rmdir(name)

    def rename(self, ctx: Context, old: str, new: str) -> None:
        """``rename(2)``: files and directories, replacing the target as Linux does."""
        old_parent, old_name, old_trailing = self.lookup_parent(ctx, old)
        new_parent, new_name, new_trailing = self.lookup_parent(ctx, new)
        if old_name in (".", "..") or new_name in (".", ".."):
            raise err(errno.EBUSY, old if old_name in (".", "..") else new)
        src = self._child(ctx, old_parent, old_name, old)
        if old_parent.mount is not new_parent.mount or self._absent_root(new_parent, new_name) is not None:
            raise err(errno.EXDEV, new)
        dst = self._maybe_child(ctx, new_parent, new_name, new)  # as Linux, before the checks below
        if (old_trailing or new_trailing) and not src.inode.is_dir:
            raise err(errno.ENOTDIR, old if old_trailing else new)
        if self.mounts.at(src.path) is not None:
            raise err(errno.EBUSY, new)
        if dst is not None and self.mounts.at(dst.path) is not None:
            raise err(errno.EBUSY, new)
        if dst is not None and dst.mount is not src.mount:
            raise err(errno.EXDEV, new)
        if dst is not None and dst.inode is src.inode:
            return
        if dst is not None and src.path.startswith(dst.path.rstrip("/") + "/"):
            raise err(errno.ENOTEMPTY, new)  # the target is an ancestor of the source
        if src.inode.is_dir:
            # a directory can't move below itself
            prefix = src.path.rstrip("/") + "/"
            if (new_parent.path + "/").startswith(prefix) or new_parent.path == src.path:
                raise err(errno.EINVAL, new)
            if dst is not None:
                if not dst.inode.is_dir:
                    raise err(errno.ENOTDIR, new)
                if any(True for _ in dst.inode.entries()):
                    raise err(errno.ENOTEMPTY, new)
        elif dst is not None and dst.inode.is_dir:
            raise err(errno.EISDIR, new)
        self._parent_for_change(ctx, old_parent, old)
        self._parent_for_change(ctx, new_parent, new)
        self._sticky_check(ctx, old_parent.inode, src.inode, old)
        if dst is not None:
            self._sticky_check(ctx, new_parent.inode, dst.inode, new)
        old_parent.inode.rename(old_name, new_parent.inode, new_name)
        if src.inode.is_dir:
            self._moved(src.path, _join(new_parent.path, new_name), new_parent)

    def _sticky_check(self, ctx: Context, parent: Inode, child: Inode, path: str) -> None:
        if ctx.uid != 0 and parent.mode & st.S_ISVTX and ctx.uid not in (parent.uid, child.uid):
            raise err(errno.EPERM, path)

    def _new_gid(self, ctx: Context, parent: Location) -> int:
        return parent.inode.gid if parent.inode.mode & st.S_ISGID else ctx.gid

    # ================================================================== open

    def open(self, ctx: Context, path: str, flags: int, mode: int = 0o666, *, asked: int | None = None) -> OpenFile:
        """``open(2)``: every flag that matters for files (O_CREAT, O_EXCL, O_TRUNC, O_APPEND,
        O_DIRECTORY, O_NOFOLLOW, O_PATH, O_NONBLOCK). ``asked``: the access mode the caller asked
        for, when ``flags`` open wider than that (the FUSE writeback cache reads pages of a
        write-only file): permissions are checked for ``asked``."""
        if flags & O_TMPFILE == O_TMPFILE:
            raise err(errno.EOPNOTSUPP, path)
        if flags & os.O_CREAT and flags & O_DIRECTORY and not flags & O_PATH:
            raise err(errno.EINVAL, path)  # Linux >= 6.4
        if flags & O_PATH:
            flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | os.O_CLOEXEC
            loc = self.lookup(ctx, path, follow=not flags & O_NOFOLLOW)
            if flags & O_DIRECTORY and not loc.inode.is_dir:
                raise err(errno.ENOTDIR, path)
            return OpenFile(loc, flags)
        created = False
        if flags & os.O_CREAT:
            parent, name, trailing = self.lookup_parent(ctx, path)
            if trailing:
                raise err(errno.EISDIR, path)  # O_CREAT never makes a folder, whatever is there
            loc = None if name in (".", "..") else self._maybe_child(ctx, parent, name, path)
            if name in (".", ".."):
                loc = self.lookup(ctx, path)
            if loc is not None and flags & os.O_EXCL:
                raise err(errno.EEXIST, path)
            if loc is not None and trailing and not loc.inode.is_dir and not loc.inode.is_symlink:
                raise err(errno.EISDIR, path)
            if loc is not None and loc.inode.is_symlink:
                if flags & O_NOFOLLOW:
                    raise err(errno.ELOOP, path)
                try:
                    loc = self.lookup(ctx, path)
                except NotADirectoryError:
                    target = loc.inode.readlink()
                    if not target.endswith("/"):
                        raise
                    # "file/": once the path up to it resolves, O_CREAT with a trailing slash is
                    # EISDIR on Linux, whatever is there
                    self.lookup_parent(ctx, target if target.startswith("/") else _join(parent.path, target))
                    raise err(errno.EISDIR, path) from None
                except FileNotFoundError:
                    # a dangling symlink: create its target
                    target = loc.inode.readlink()
                    if target.endswith("/"):
                        raise err(errno.EISDIR, path) from None
                    if not target.startswith("/"):
                        target = _join(parent.path, target)
                    return self.open(ctx, target, flags & ~O_NOFOLLOW, mode, asked=asked)
            if loc is None:
                if trailing:
                    raise err(errno.EISDIR, path)
                target = self._absent_root(parent, name)
                if target is not None:  # the absent file of a single-file mount: the mount makes it
                    inode = self._create_root(ctx, target, parent, mode, path)
                else:
                    self._parent_for_change(ctx, parent, path)
                    inode = parent.inode.create(name, mode & 0o7777 & ~ctx.umask, ctx.uid,
                                                self._new_gid(ctx, parent))
                loc = self._child(ctx, parent, name, path)
                assert loc.inode is inode or loc.inode.ino == inode.ino
                created = True
        else:
            loc = self.lookup(ctx, path, follow=not flags & O_NOFOLLOW)
            if loc.inode.is_symlink:
                raise err(errno.ENOTDIR if flags & O_DIRECTORY else errno.ELOOP, path)
        return self._open_at(ctx, loc, flags, path, created=created, asked=asked)

    def reopen(self, ctx: Context, file: OpenFile, flags: int, *, asked: int | None = None) -> OpenFile:
        """A new open description of the object ``file`` is open on, even if it has no name
        any more (what opening ``/proc/self/fd/N`` does on Linux; the FUSE bridge's way to
        reopen an unlinked file). O_CREAT and O_EXCL don't apply."""
        return self._open_at(ctx, file.location, flags & ~(os.O_CREAT | os.O_EXCL), file.path, asked=asked)

    def _open_at(self, ctx: Context, loc: Location, flags: int, path: str, *, created: bool = False,
                 asked: int | None = None) -> OpenFile:
        """The checks and the open of ``open(2)`` once ``path`` is resolved to ``loc``."""
        acc = flags & O_ACCMODE
        checked = acc if asked is None else asked & O_ACCMODE
        inode = loc.inode
        if flags & O_DIRECTORY and not inode.is_dir:
            raise err(errno.ENOTDIR, path)
        if inode.is_dir:
            if acc != os.O_RDONLY or flags & (os.O_CREAT | os.O_TRUNC):
                raise err(errno.EISDIR, path)
            self._require(ctx, inode, R_OK, path)
            return OpenFile(self.pin(loc), flags)
        if (st.S_ISCHR(inode.mode) or st.S_ISBLK(inode.mode)) and not inode.opens_device:
            raise err(errno.EACCES, path)  # a device node made in a mount: as a nodev mount's (before permissions)
        if not created:
            # access mode 3 asks for both permissions and grants neither (ioctl-only descriptors)
            want = (R_OK if checked != os.O_WRONLY else 0) | (W_OK if checked != os.O_RDONLY else 0)
            if flags & os.O_TRUNC:
                want |= W_OK
            self._require(ctx, inode, want, path)
        if (acc != os.O_RDONLY or flags & os.O_TRUNC) and loc.mount.readonly and inode.is_reg:
            raise err(errno.EROFS, path)
        if inode.is_fifo:
            return self._open_fifo(loc, flags)
        if st.S_ISSOCK(inode.mode):
            raise err(errno.ENXIO, path)  # a socket is reached by connect(), never opened
        handle = inode.open(flags)
        kills_setid = ctx.uid != 0
        try:
            if flags & os.O_TRUNC and inode.is_reg and handle.size():
                if kills_setid:
                    kill_setid(inode)
                with inode.lock:
                    # a read-only handle can't truncate (host descriptors): the inode can
                    (inode.truncate if acc in (os.O_RDONLY, O_ACCMODE) else handle.truncate)(0)
                inode.touch(mtime=True, ctime=True)
        except BaseException:
            handle.close()
            raise
        file = OpenFile(loc, flags, handle)
        file.kills_setid = kills_setid
        return file

    def _open_fifo(self, loc: Location, flags: int) -> OpenFile:
        pipe = self.fifo_pipe(loc.inode)
        acc = flags & O_ACCMODE
        nonblock = bool(flags & os.O_NONBLOCK)
        if acc == os.O_RDONLY:
            pipe.open_reader()
            try:
                pipe.wait_for_writer(nonblock=nonblock)
            except BaseException:
                pipe.close_reader()
                raise
            return OpenFile(loc, flags, pipe=pipe, pipe_end="r")
        if acc == os.O_WRONLY:
            if nonblock and pipe.readers == 0:
                raise err(errno.ENXIO, loc.path)
            pipe.open_writer()
            try:
                pipe.wait_for_reader(nonblock=nonblock)
            except BaseException:
                pipe.close_writer()
                raise
            return OpenFile(loc, flags, pipe=pipe, pipe_end="w")
        # O_RDWR on a FIFO (Linux allows it): both ends at once, never blocks
        pipe.open_reader()
        pipe.open_writer()
        f = OpenFile(loc, flags, pipe=pipe, pipe_end="rw")
        return f

    def fifo_pipe(self, inode: Inode):
        """The pipe buffer behind a FIFO inode (one per inode, made on first open)."""
        with inode.lock:
            pipe = getattr(inode, "pipe", None)
            if pipe is None:
                from .pipe import Pipe

                pipe = Pipe()
                inode.pipe = pipe  # type: ignore[attr-defined]
            return pipe

    def statfs(self, ctx: Context, path: str) -> dict[str, int]:
        loc = self.lookup(ctx, path)
        return loc.mount.fs.statfs()

    def chdir_target(self, ctx: Context, path: str) -> Location:
        loc = self.lookup(ctx, path)
        if not loc.inode.is_dir:
            raise err(errno.ENOTDIR, path)
        self._require(ctx, loc.inode, X_OK, path)
        return self.pin(loc)

    def pin(self, loc: Location) -> Location:
        """Keep ``loc``'s path (and its parents') right when a folder above it is renamed."""
        self._pinned.add(loc)
        return loc

    def _moved(self, old_path: str, new_path: str, new_parent: Location) -> None:
        prefix = old_path + "/"
        for loc in list(self._pinned):
            chain = []
            cur: Location | None = loc
            while cur is not None and cur.path != old_path and cur.path.startswith(prefix):
                chain.append(cur)
                cur = cur.parent
            if cur is None or cur.path != old_path:
                continue
            # ``cur`` is the moved folder itself; the chain below it keeps its names
            cur.path = new_path
            cur.parent = new_parent
            for below in reversed(chain):
                below.path = new_path + below.path[len(old_path):]

    def sync(self) -> None:
        self.mounts.sync()

