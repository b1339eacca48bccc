"""chroot: a host folder (or one host file) passed through to the VFS (Gramine ``type = "chroot"``).

Every mechanic is the host call, made through :mod:`pal`; host errors propagate with their
errno. The VFS does the semantic checks before calling in.

**Inodes.** An inode stands for one host object, identified by the host's ``(st_dev, st_ino)``.
The file system keeps a weak table of live inodes by that identity, so looking up the same host
object (under any name, or again after a rename) gives the same :class:`HostInode`. Each inode
remembers the host path it was last reached by: every lookup refreshes it, and a rename through
the VFS rewrites the paths of the moved inode and of every live inode below it. Attributes come
from the host's ``lstat`` (refreshed on every lookup and :meth:`~HostInode.stat`), so mode,
nlink, ids, size, blocks and times always agree with the host; ``st_ino`` is the host's, ``st_dev``
the file system's own. An open handle keeps a host descriptor, so an unlinked file keeps working.
Host paths longer than PATH_MAX (a long relative path of the view) are reached through
:mod:`vfs.host_paths`.

**Trusted and allowed files** (Gramine's SGX checks, for regular files opened or created below
the mount): ``trusted`` maps host paths to the expected SHA-256 (``None``: the hash is not given;
:func:`hash_trusted_files` fills such entries in once, when the LibOS boots; a file still without
one is accepted at its first open, its hash logged and kept: every later open must match it; a
path ending in ``/`` trusts every file below it, each pinned so at its first open);
``allowed`` lists host paths, and folders (ending in ``/``, or naming a host folder) whose files
are all allowed. A listed trusted file is always verified and read-only (whatever the policy).
``policy`` decides about files that are neither: ``None`` passes them through (Gramine without
SGX), ``"strict"`` refuses them (EACCES), ``"allow_all_but_log"`` passes them and logs a line.

Trusted files against TOCTOU: the whole file is hashed through the very descriptor that then
serves the reads, and per-chunk SHA-256 digests (64 KiB chunks) are recorded in the same pass.
Every later read re-reads the chunks it covers and checks them against those digests, so a host
change after the open gives EACCES instead of unverified bytes, while memory stays bounded (32
bytes per chunk; the last verified chunk is kept per handle for small sequential reads). The
digests of verified files are cached by ``(st_dev, st_ino, size, mtime_ns, ctime_ns)`` (a fixed
number of entries), so a second open of an unchanged file does not re-hash it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat as st
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable

import pal

from .host_paths import host
from .node import BLOCK_SIZE, NAME_MAX, FileSystem, Handle, Inode, Stat, err

log = logging.getLogger("vfs.chroot")

POLICIES = (None, "strict", "allow_all_but_log")
TRUSTED_CHUNK = 64 * 1024
TRUSTED_CACHE_ENTRIES = 256
_ACCMODE = 3


def _norm_host(path: str) -> str:
    """An absolute, lexically normalized host path (``file:`` stripped); keeps a trailing ``/``."""
    if path.startswith("file:"):
        path = path[len("file:"):]
    is_dir = path.endswith("/")
    norm = os.path.abspath(path)
    return norm + "/" if is_dir and norm != "/" else norm


O_NOATIME = getattr(os, "O_NOATIME", 0)


def host_open_noatime(path: str, flags: int) -> int:
    """``pal.host_open`` with O_NOATIME where the host permits it (the file's owner, or root):
    the daemon's own reads (headers, hashes, pages) never move an atime a program has set."""
    if O_NOATIME:
        try:
            return host.host_open(path, flags | O_NOATIME)
        except PermissionError:
            pass  # not the owner: an ordinary open (which may still be refused)
    return host.host_open(path, flags)


def _join(parent: str, name: str) -> str:
    return parent + name if parent.endswith("/") else parent + "/" + name


def host_stat_to_stat(s: os.stat_result, dev: int) -> Stat:
    """A VFS :class:`Stat` from a host stat result (the host's inode number, our ``dev``)."""
    return Stat(s.st_mode, s.st_ino, dev, s.st_nlink, s.st_uid, s.st_gid, s.st_size,
                s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns, s.st_blksize or BLOCK_SIZE, s.st_blocks, s.st_rdev)


class ChrootFs(FileSystem):
    """A host folder, or a single host file, passed through (see the module docstring)."""

    type_name = "chroot"

    def __init__(self, host_path: str, *, readonly: bool = False, trusted: dict[str, bytes | str | None] | None = None,
                 allowed: list[str] | None = None, policy: str | None = None):
        super().__init__()
        if policy not in POLICIES:
            raise ValueError(f"unknown file check policy {policy!r} (expected strict or allow_all_but_log)")
        self.uri_path = host_path[len("file:"):] if host_path.startswith("file:") else host_path
        self.host_root = os.path.abspath(self.uri_path)
        self.readonly = readonly
        self.policy = policy
        self._trusted: dict[str, bytes | None] = {}
        self._trusted_dirs: list[str] = []
        for path, digest in (trusted or {}).items():
            norm = _norm_host(path)
            if norm.endswith("/"):
                self._trusted_dirs.append(norm)
            else:
                self._trusted[norm] = _digest(digest, path)
        self._allowed: set[str] = set()
        self._allowed_dirs: list[str] = []
        for path in allowed or []:
            norm = _norm_host(path)
            if norm.endswith("/"):
                self._allowed_dirs.append(norm)
            else:
                self._allowed.add(norm)
                if os.path.isdir(norm):
                    self._allowed_dirs.append(norm + "/")
        self._live: weakref.WeakValueDictionary[tuple[int, int], HostInode] = weakref.WeakValueDictionary()
        self._verified: OrderedDict[str, tuple[tuple[int, ...], list[bytes]]] = OrderedDict()
        self._verified_lock = threading.Lock()
        self._root: HostInode | None = self._find_root()

    # ------------------------------------------------------------------ inodes

    def _find_root(self) -> HostInode | None:
        """The inode of the mount's host root (``OSError`` if there is none)."""
        root_stat = host.host_stat(self.host_root)  # the mount root itself may be a host symlink
        return self.inode_for(self.host_root, root_stat, is_root=True)

    def root(self) -> Inode:
        assert self._root is not None
        return self._root

    def inode_class(self, mode: int) -> type[HostInode]:
        """The inode class for a host object of ``mode`` (subclasses specialize it)."""
        return HostInode

    def inode_for(self, path: str, s: os.stat_result, *, is_root: bool = False) -> HostInode:
        """The live inode of the host object ``s`` (reached by ``path``), made on first sight."""
        key = (s.st_dev, s.st_ino)
        with self.lock:
            inode = self._live.get(key)
            if inode is None or st.S_IFMT(inode.mode) != st.S_IFMT(s.st_mode):
                inode = self.inode_class(s.st_mode)(self, path, s, is_root=is_root)
                self._live[key] = inode
            else:
                inode.path = path
                inode.set_host_stat(s)
            return inode

    def lookup_host(self, path: str) -> HostInode | None:
        """The inode at host ``path`` (a fresh ``lstat``), or None if nothing is there."""
        try:
            s = host.host_lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self.inode_for(path, s)

    def moved(self, old: str, new: str) -> None:
        """Host ``old`` was renamed to ``new``: rewrite the paths of live inodes at and below it."""
        prefix = old + "/"
        with self.lock:
            for inode in list(self._live.values()):
                if inode.path == old:
                    inode.path = new
                elif inode.path.startswith(prefix):
                    inode.path = new + inode.path[len(old):]

    def rel_path(self, host_path: str) -> str:
        """``host_path`` relative to the mount's host root ("" for the root itself)."""
        if host_path == self.host_root:
            return ""
        return host_path[len(self.host_root):].lstrip("/")

    # ------------------------------------------------------------------ file checks

    def trusted_digest(self, host_path: str) -> tuple[bool, bytes | None]:
        """(is trusted, expected SHA-256 or None) for the regular file at ``host_path``."""
        if host_path in self._trusted:
            return True, self._trusted[host_path]
        if any(host_path.startswith(d) for d in self._trusted_dirs):
            return True, None
        return False, None

    def is_allowed(self, host_path: str) -> bool:
        return host_path in self._allowed or any(host_path.startswith(d) for d in self._allowed_dirs)

    def check_access(self, host_path: str, *, creating: bool = False) -> None:
        """Apply ``policy`` to a file that is not trusted (EACCES under ``strict``)."""
        if self.policy is None or self.is_allowed(host_path):
            return
        what = "creation of" if creating else "access to"
        if self.policy == "strict":
            log.warning("%s: refusing %s a file that is neither trusted nor allowed", host_path, what)
            raise err(errno.EACCES, host_path)
        log.warning("%s: allowing %s a file that is neither trusted nor allowed (allow_all_but_log)",
                    host_path, what)

    def verified_chunks(self, host_path: str, fd: int, expected: bytes | None) -> tuple[int, list[bytes]]:
        """Hash the trusted file open as ``fd``: (size, per-chunk digests), or EACCES on a mismatch."""
        import hashlib  # (trusted files only: not loaded for the other mounts)

        s = pal.host_fstat(fd)
        fingerprint = (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
        with self._verified_lock:
            cached = self._verified.get(host_path)
            if cached is not None and cached[0] == fingerprint:
                self._verified.move_to_end(host_path)
                return s.st_size, cached[1]
        whole = hashlib.sha256()
        chunks: list[bytes] = []
        offset = 0
        while True:
            data = pal.host_pread(fd, TRUSTED_CHUNK, offset)
            if not data:
                break
            whole.update(data)
            chunks.append(hashlib.sha256(data).digest())
            offset += len(data)
        digest = whole.digest()
        if offset != s.st_size:
            log.warning("%s: trusted file changed while it was being hashed", host_path)
            raise err(errno.EACCES, host_path)
        if expected is None:
            log.warning("%s: trusted file without a sha256 in the manifest; its sha256 is %s (kept for the run)",
                        host_path, digest.hex())
            with self._verified_lock:  # the first hash seen is the one every later open must match
                pinned = self._trusted.get(host_path)
                if pinned is not None and pinned != digest:
                    raise err(errno.EACCES, host_path)
                self._trusted[host_path] = digest
        elif digest != expected:
            log.error("%s: trusted file does not match its sha256: expected %s, found %s", host_path,
                      expected.hex(), digest.hex())
            raise err(errno.EACCES, host_path)
        with self._verified_lock:
            self._verified[host_path] = (fingerprint, chunks)
            while len(self._verified) > TRUSTED_CACHE_ENTRIES:
                self._verified.popitem(last=False)
        return offset, chunks

    # ------------------------------------------------------------------ file-system wide

    def statfs(self) -> dict[str, int]:
        v = pal.host_statvfs(self.host_root)
        return {"f_bsize": v.f_bsize, "f_frsize": v.f_frsize, "f_blocks": v.f_blocks, "f_bfree": v.f_bfree,
                "f_bavail": v.f_bavail, "f_files": v.f_files, "f_ffree": v.f_ffree,
                "f_namemax": min(v.f_namemax, NAME_MAX) or NAME_MAX}

    def describe(self) -> str:
        return "file:" + self.uri_path

    def check_writable(self, path: str | None = None) -> None:
        if self.readonly:
            raise err(errno.EROFS, path)


def hash_trusted_files(trusted: dict[str, bytes | None]) -> dict[str, bytes | None]:
    """``trusted`` with the SHA-256 of every file entry given without one (each logged), as read
    now: called once when a LibOS boots, so a change on the host during the run is refused. A file
    that can't be read now keeps ``None`` (it is pinned at its first open instead)."""
    import hashlib

    result = dict(trusted)
    for path, digest in trusted.items():
        if digest is not None or path.endswith("/"):
            continue
        try:
            fd = host_open_noatime(_norm_host(path), os.O_RDONLY)
        except OSError as exc:
            log.debug("%s: trusted file not hashed at start: %s", path, exc.strerror or exc)
            continue
        try:
            whole = hashlib.sha256()
            offset = 0
            while data := pal.host_pread(fd, 1024 * 1024, offset):
                whole.update(data)
                offset += len(data)
        except OSError as exc:  # a folder named without its "/", or an unreadable file
            log.debug("%s: trusted file not hashed at start: %s", path, exc.strerror or exc)
            continue
        finally:
            pal.host_close(fd)
        result[path] = whole.digest()
        log.warning("%s: trusted file without a sha256 in the manifest; its sha256 at start is %s (used for the "
                    "run)", path, result[path].hex())
    return result


def _digest(value: bytes | str | None, path: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = bytes.fromhex(value)
    if len(value) != 32:
        raise ValueError(f"{path}: a sha256 has 32 bytes, not {len(value)}")
    return bytes(value)


class HostInode(Inode):
    """One host object (file, folder, symlink, FIFO, ...) reached by ``path``."""

    fs: ChrootFs

    def __init__(self, fs: ChrootFs, path: str, s: os.stat_result, *, is_root: bool = False):
        # Inode.__init__ is not called: the attributes are the host's (see the properties below)
        self.fs = fs
        self.path = path
        self.key = (s.st_dev, s.st_ino)
        self.ino = s.st_ino
        self.is_root = is_root
        self.lock = threading.RLock()
        self.open_count = 0
        self.handles: weakref.WeakSet[HostHandle] = weakref.WeakSet()
        self._st = host_stat_to_stat(s, fs.dev)

    # ------------------------------------------------------------------ attributes (host's)

    mode = property(lambda self: self._st.st_mode)
    uid = property(lambda self: self._st.st_uid)
    gid = property(lambda self: self._st.st_gid)
    nlink = property(lambda self: self._st.st_nlink)
    rdev = property(lambda self: self._st.st_rdev)
    atime_ns = property(lambda self: self._st.st_atime_ns)
    mtime_ns = property(lambda self: self._st.st_mtime_ns)
    ctime_ns = property(lambda self: self._st.st_ctime_ns)

    @property
    def cached_stat(self) -> Stat:
        """The attributes as of the last host stat (without a new one)."""
        return self._st

    def set_host_stat(self, s: os.stat_result) -> None:
        self._st = host_stat_to_stat(s, self.fs.dev)

    def refresh(self) -> Stat:
        """Re-read the attributes from the host: by path while it still names this object, else
        through an open descriptor, else the last known ones with no links left."""
        try:
            s = host.host_stat(self.path) if self.is_root else host.host_lstat(self.path)
            if (s.st_dev, s.st_ino) == self.key:
                self.set_host_stat(s)
                return self._st
        except (FileNotFoundError, NotADirectoryError):
            pass
        fd = self.host_fd()
        if fd is not None:
            self.set_host_stat(pal.host_fstat(fd))
            return self._st
        self._st = self._st._replace(st_nlink=0)
        return self._st

    def host_fd(self) -> int | None:
        """A host descriptor open on this object, if any (how an unlinked file is still reached)."""
        for handle in list(self.handles):
            if handle.fd >= 0:
                return handle.fd
        return None

    def stat(self) -> Stat:
        return self.refresh()

    def size(self) -> int:
        return self.refresh().st_size

    def blocks(self, size: int) -> int:
        return self._st.st_blocks

    def touch(self, *, atime: bool = False, mtime: bool = False, ctime: bool = False) -> None:
        """The host keeps the timestamps; nothing to do."""

    def host_ref(self) -> str | int:
        """How to reach this object on the host: its path while that still names it, else a
        descriptor open on it (an unlinked or replaced file: changing its path would change
        another file), else ENOENT."""
        try:
            s = host.host_stat(self.path) if self.is_root else host.host_lstat(self.path)
            if (s.st_dev, s.st_ino) == self.key:
                return self.path
        except (FileNotFoundError, NotADirectoryError):
            pass
        fd = self.host_fd()
        if fd is None:
            raise err(errno.ENOENT, self.path)
        return fd

    def chmod(self, mode: int) -> None:
        self.fs.check_writable(self.path)
        host.host_chmod(self.host_ref(), mode & 0o7777)
        self.refresh()

    def chown(self, uid: int, gid: int) -> None:
        self.fs.check_writable(self.path)
        host.host_lchown(self.host_ref(), uid, gid)
        self.refresh()

    def utimens(self, atime_ns: int | None, mtime_ns: int | None) -> None:
        self.fs.check_writable(self.path)
        cur = self.refresh()
        host.host_utime(self.host_ref(), cur.st_atime_ns if atime_ns is None else atime_ns,
                       cur.st_mtime_ns if mtime_ns is None else mtime_ns)
        self.refresh()

    # ------------------------------------------------------------------ files

    def open(self, flags: int) -> Handle:
        if not self.is_reg:
            # FIFOs are served by the VFS; host devices and sockets are not passed through
            raise err(errno.ENXIO if st.S_ISSOCK(self.mode) else errno.EACCES, self.path)
        acc = flags & _ACCMODE
        trusted, expected = self.fs.trusted_digest(self.path)
        if trusted and (acc != os.O_RDONLY or flags & os.O_TRUNC):
            log.warning("%s: refusing to open a trusted file for writing", self.path)
            raise err(errno.EACCES, self.path)
        if not trusted:
            self.fs.check_access(self.path)
        if acc != os.O_RDONLY or flags & os.O_TRUNC:
            self.fs.check_writable(self.path)
        fd = self._open_host(acc | (flags & (os.O_SYNC | os.O_DSYNC)))
        try:
            self.set_host_stat(pal.host_fstat(fd))
            if trusted:
                size, chunks = self.fs.verified_chunks(self.path, fd, expected)
                handle: HostHandle = TrustedHandle(self, fd, size, chunks)
            else:
                handle = HostHandle(self, fd)
        except BaseException:
            pal.host_close(fd)
            raise
        self.handles.add(handle)
        return handle

    def _open_host(self, mode: int) -> int:
        """A new host descriptor on this object: by its path, or, once the path no longer names
        it (unlinked, or replaced by another object), through a descriptor still open on it
        (``/proc/self/fd/N``, as Linux lets a process reopen a removed file)."""
        try:
            fd: int | None = host_open_noatime(self.path, mode | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            fd = None
        if fd is not None:
            try:
                s = pal.host_fstat(fd)
            except BaseException:
                pal.host_close(fd)
                raise
            if (s.st_dev, s.st_ino) == self.key:
                return fd
            pal.host_close(fd)
        held = self.host_fd()
        if held is None:
            # the host path now names another object, or nothing
            raise err(errno.ESTALE if fd is not None else errno.ENOENT, self.path)
        return host_open_noatime(f"/proc/self/fd/{held}", mode)

    def truncate(self, size: int) -> None:
        self.fs.check_writable(self.path)
        trusted, _ = self.fs.trusted_digest(self.path)
        if trusted:
            raise err(errno.EACCES, self.path)
        self.fs.check_access(self.path)
        host.host_truncate(self.path, size)
        self.refresh()

    def readlink(self) -> str:
        return host.host_readlink(self.path)

    # ------------------------------------------------------------------ directories

    def _child_path(self, name: str) -> str:
        if not self.is_dir:
            raise err(errno.ENOTDIR, self.path)
        return _join(self.path, name)

    def lookup(self, name: str) -> Inode | None:
        return self.fs.lookup_host(self._child_path(name))

    def entries(self) -> Iterable[tuple[str, Inode]]:
        if not self.is_dir:
            raise err(errno.ENOTDIR, self.path)
        out = []
        try:
            names = host.host_listdir(self.path)
        except FileNotFoundError:
            if self.refresh().st_nlink == 0:
                return out  # a removed folder still in use (a cwd, an open folder) lists empty, as on Linux
            raise
        for name in sorted(names):
            inode = self.lookup(name)
            if inode is not None:  # else it vanished meanwhile
                out.append((name, inode))
        return out

    def _made(self, path: str, mode: int | None, uid: int, gid: int) -> HostInode:
        """The inode of a host object just made at ``path``: permission bits exactly ``mode`` (the
        host umask undone), and owned by ``uid``/``gid`` when the host process may give files away."""
        s = host.host_lstat(path)
        if mode is not None and st.S_IMODE(s.st_mode) != mode & 0o7777:
            host.host_chmod(path, mode & 0o7777)
        if pal.host_geteuid() == 0 and (uid, gid) != (s.st_uid, s.st_gid):
            host.host_lchown(path, uid, gid)
        s = host.host_lstat(path)
        self.refresh()
        return self.fs.inode_for(path, s)

    def create(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        path = self._child_path(name)
        self.fs.check_writable(path)
        if self.fs.trusted_digest(path)[0]:
            raise err(errno.EACCES, path)
        self.fs.check_access(path, creating=True)
        fd = host.host_open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, mode & 0o7777)
        pal.host_close(fd)
        return self._made(path, mode, uid, gid)

    def mkdir(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        path = self._child_path(name)
        self.fs.check_writable(path)
        host.host_mkdir(path, mode & 0o7777)
        return self._made(path, mode, uid, gid)

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Inode:
        path = self._child_path(name)
        self.fs.check_writable(path)
        host.host_symlink(target, path)
        return self._made(path, None, uid, gid)

    def mknod(self, name: str, mode: int, uid: int, gid: int, rdev: int = 0) -> Inode:
        path = self._child_path(name)
        self.fs.check_writable(path)
        # a device node is made on the host as it is asked (the VFS let only root ask); it is
        # never opened through the mount (HostInode.open, and the bridge's nodev mounts)
        host.host_mknod(path, st.S_IFMT(mode) | (mode & 0o7777), rdev)
        return self._made(path, mode, uid, gid)

    def link(self, name: str, inode: Inode) -> None:
        path = self._child_path(name)
        self.fs.check_writable(path)
        assert isinstance(inode, HostInode)
        host.host_link(inode.path, path)
        self.refresh()
        inode.refresh()

    def unlink(self, name: str) -> None:
        path = self._child_path(name)
        self.fs.check_writable(path)
        host.host_unlink(path)
        self.refresh()

    def rmdir(self, name: str) -> None:
        path = self._child_path(name)
        self.fs.check_writable(path)
        host.host_rmdir(path)
        self.refresh()

    def rename(self, name: str, new_dir: Inode, new_name: str) -> None:
        assert isinstance(new_dir, HostInode)
        src = self._child_path(name)
        dst = new_dir._child_path(new_name)
        self.fs.check_writable(src)
        host.host_rename(src, dst)
        self.fs.moved(src, dst)
        self.refresh()
        new_dir.refresh()


class HostHandle(Handle):
    """An open host file: a host descriptor, I/O by offset (``pread``/``pwrite``)."""

    def __init__(self, inode: HostInode, fd: int):
        self.inode = inode
        self.fd = fd

    def read(self, offset: int, size: int) -> bytes:
        return pal.host_pread(self.fd, size, offset)

    def readinto(self, offset: int, buf: memoryview) -> int:
        return pal.host_preadinto(self.fd, buf, offset)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        return pal.host_pwrite(self.fd, data, offset)

    def truncate(self, size: int) -> None:
        pal.host_ftruncate(self.fd, size)

    def size(self) -> int:
        return pal.host_fstat(self.fd).st_size

    def host_version(self) -> tuple[int, ...]:
        s = pal.host_fstat(self.fd)
        return (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)

    def fsync(self) -> None:
        pal.host_fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.inode.handles.discard(self)
            pal.host_close(fd)


class TrustedHandle(HostHandle):
    """A trusted file opened read-only: every byte returned is checked against the digests made
    when the whole file was verified at open (see the module docstring)."""

    def __init__(self, inode: HostInode, fd: int, size: int, chunks: list[bytes]):
        super().__init__(inode, fd)
        self._size = size
        self._chunks = chunks
        self._last: tuple[int, bytes] | None = None  # (chunk index, verified bytes)

    def _chunk(self, index: int) -> bytes:
        import hashlib

        if self._last is not None and self._last[0] == index:
            return self._last[1]
        start = index * TRUSTED_CHUNK
        data = pal.host_pread(self.fd, min(TRUSTED_CHUNK, self._size - start), start)
        if hashlib.sha256(data).digest() != self._chunks[index]:
            log.error("%s: trusted file changed after it was verified (bytes %d-%d)", self.inode.path, start,
                      start + TRUSTED_CHUNK)
            raise err(errno.EACCES, self.inode.path)
        self._last = (index, data)
        return data

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self._size)
        out = []
        pos = offset
        while pos < end:
            index = pos // TRUSTED_CHUNK
            start = index * TRUSTED_CHUNK
            data = self._chunk(index)
            stop = min(end, start + len(data))
            out.append(data[pos - start:stop - start])
            pos = stop
        return b"".join(out)

    def readinto(self, offset: int, buf: memoryview) -> int:
        return Handle.readinto(self, offset, buf)  # through read(): every byte is checked

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        raise err(errno.EBADF)

    def truncate(self, size: int) -> None:
        raise err(errno.EBADF)

    def size(self) -> int:
        return self._size
