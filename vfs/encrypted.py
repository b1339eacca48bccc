"""encrypted: a host folder (or one host file) of protected files (Gramine ``type = "encrypted"``).

Folders are host folders; every regular file is a :mod:`pfs` protected file, encrypted under
the key ``key_name`` of a :class:`KeyStore`. The host mechanics (lookup, listing, folders,
unlink, attributes, live inodes by host identity) are those of :mod:`vfs.chroot`; this module adds
the encryption.

**Bound paths.** As Gramine does, a file is bound to the mount URI's path *as written*, joined
with the path below the mount and normalized lexically (``get_norm_path``): URI ``file:enc/`` +
``a/b`` -> ``enc/a/b``, relative stays relative, nothing is resolved. ``bind_root`` is that URI
path (the LibOS passes the manifest's; default: ``host_path`` as given), while ``host_path`` only
says where the files are. With ``bind_prefix`` a file is bound to ``bind_prefix/<path below the
mount>`` instead (what ``pfs encrypt --bind-prefix`` makes). A mount of a single host file binds
it to the URI's path (or to ``bind_prefix`` itself); that file need not exist yet (a URI not
ending in ``/`` whose host folder exists): the mount point then gives ENOENT until an open with
``O_CREAT`` makes the file (:meth:`EncryptedFs.create_root`), as in Gramine.

**One protected file per inode.** The first open makes a :class:`~pfs.ProtectedFile` that every
later open of the same inode shares (reference counted; opened read-only until a writer comes,
then reopened writable), so all descriptors see the same bytes at once; the last close flushes
and closes it. ``fsync`` flushes. An unlinked open file keeps working through its host
descriptor.

**Sizes.** ``st_size`` is the plaintext size (from the open protected file, or by decrypting the
metadata, cached by host identity, size and times); ``st_blocks`` is the host's. A file that can't
be decrypted (no key, wrong key, not a protected file, bound elsewhere) is listed and stat'ed with
its host size; opening it fails: EACCES (key not set, wrong key, path mismatch), EIO (corrupted
node, truncated file, interrupted write without recovery), EINVAL (not a protected file), with
one line logged to ``vfs.encrypted`` naming the file (and node).

**Renames** of files and folders rebind every protected file moved: each file is rebound in place
first (``ProtectedFile.rename``, through the shared open file if there is one), then the host
rename is made. If a rebind or the host rename fails, the files already rebound are bound back
and the error is raised, so the tree stays consistent. Host files below a moved folder that are
not protected files at all are moved as they are.

Only files and folders exist: symlink, link and mknod give EPERM. With ``enable_recovery`` each
writable file keeps Gramine's ``<file>.gramine.recovery`` journal (removed after a clean close)
and those journals are hidden from lookups and listings.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import stat as st
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pal
import pfs  # pfs.ProtectedFile (and cryptography) loads at the first open of a file, not at boot
from pfs.errors import NotEncryptedError
from pfs.layout import KEY_SIZE, NODE_SIZE, RECOVERY_SUFFIX
from pfs.paths import normalize_bound_path, recovery_path

from .chroot import ChrootFs, HostInode, host_open_noatime
from .node import Handle, Inode, Stat, err

if TYPE_CHECKING:
    from pfs.protected_file import ProtectedFile

log = logging.getLogger("vfs.encrypted")

SIZE_CACHE_ENTRIES = 16384  # plaintext sizes of closed files, by host identity and times (~2 MB)
_ACCMODE = 3


# decrypted nodes cached per open file (1 MiB): holds the MHT path and a run of data nodes, so
# sequential I/O flushes rarely and random reads mostly find their MHT node
FILE_CACHE_NODES = 256

class KeyStore:
    """Named 16-byte keys (``fs.insecure__keys``, ``/dev/attestation/keys/NAME``), thread-safe.

    ``names`` lists every known name: keys that are set, and names declared by the mounts that
    use them (set or not).
    """

    def __init__(self, keys: dict[str, bytes] | None = None):
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        self._declared: set[str] = set()
        for name, key in (keys or {}).items():
            self.set(name, key)

    def get(self, name: str) -> bytes:
        """The key ``name``; ``OSError`` EACCES ``key NAME is not set`` when it isn't."""
        with self._lock:
            key = self._keys.get(name)
        if key is None:
            raise OSError(errno.EACCES, f"key {name} is not set")
        return key

    def set(self, name: str, key: bytes | bytearray | memoryview) -> None:
        """Set (or replace) the key ``name``: exactly 16 bytes (else ``OSError`` EINVAL)."""
        key = bytes(key)
        if len(key) != KEY_SIZE:
            raise OSError(errno.EINVAL, f"key {name} must be {KEY_SIZE} bytes, not {len(key)}")
        with self._lock:
            self._keys[name] = key

    def declare(self, name: str) -> None:
        """Make ``name`` known (listed by :meth:`names`) without setting it."""
        with self._lock:
            self._declared.add(name)

    def is_set(self, name: str) -> bool:
        with self._lock:
            return name in self._keys

    def names(self) -> list[str]:
        """Every known key name, set or not, sorted."""
        with self._lock:
            return sorted(self._declared | set(self._keys))

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._keys

    def __repr__(self) -> str:  # never shows key material
        return f"<KeyStore names={self.names()!r}>"


def _message(path: str, exc: OSError) -> str:
    text = exc.strerror if isinstance(exc.strerror, str) else str(exc)
    return text if path in text else f"{path}: {text}"


class EncryptedFs(ChrootFs):
    """A host folder (or file) of protected files; see the module docstring."""

    type_name = "encrypted"

    def __init__(self, host_path: str, *, key_name: str = "default", keys: KeyStore, enable_recovery: bool = False,
                 bind_prefix: str | None = None, bind_root: str | None = None):
        self.key_name = key_name
        self.keys = keys
        self.enable_recovery = enable_recovery
        self.bind_prefix = bind_prefix
        super().__init__(host_path)
        self.bind_root = self.uri_path if bind_root is None else bind_root
        self._sizes: OrderedDict[tuple[int, ...], int] = OrderedDict()
        self._sizes_lock = threading.Lock()
        self._logged: set[str] = set()
        keys.declare(key_name)

    def inode_class(self, mode: int) -> type[HostInode]:
        return EncryptedInode

    def _find_root(self) -> HostInode | None:
        try:
            return super()._find_root()
        except FileNotFoundError:
            # a single file to be made by the program (Gramine's "write a result" mount)
            if self.uri_path.endswith("/") or not os.path.isdir(os.path.dirname(self.host_root)):
                raise
            return None

    def root(self) -> Inode | None:  # type: ignore[override]
        """The mount's root; None for a single-file mount whose file doesn't exist yet."""
        return self._root

    def create_root(self, mode: int, uid: int, gid: int) -> Inode:
        """Make the missing file of a single-file mount (an open with ``O_CREAT`` of the mount point)."""
        with self.lock:
            if self._root is not None:
                raise err(errno.EEXIST, self.host_root)
            self.check_writable(self.host_root)
            self.new_file(self.host_root, mode)
            s = pal.host_lstat(self.host_root)
            if st.S_IMODE(s.st_mode) != mode & 0o7777:
                pal.host_chmod(self.host_root, mode & 0o7777)  # the host umask undone
            if pal.host_geteuid() == 0 and (uid, gid) != (s.st_uid, s.st_gid):
                pal.host_lchown(self.host_root, uid, gid)
                s = pal.host_lstat(self.host_root)
            self._root = self.inode_for(self.host_root, s, is_root=True)
            return self._root

    # ------------------------------------------------------------------ keys and paths

    def key(self, path: str | None = None) -> bytes:
        """The mount's key; EACCES ``key NAME is not set`` (naming ``path``) when it isn't."""
        try:
            return self.keys.get(self.key_name)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, path) from None

    def bound_path(self, host_path: str) -> str:
        """The path the protected file at ``host_path`` is bound to."""
        rel = self.rel_path(host_path)
        if self.bind_prefix is not None:
            return posixpath.join(self.bind_prefix, rel) if rel else self.bind_prefix
        return normalize_bound_path(self.bind_root + "/" + rel if rel else self.bind_root)

    def hidden(self, name: str) -> bool:
        """Whether the host entry ``name`` is kept out of sight (recovery journals)."""
        return self.enable_recovery and name.endswith(RECOVERY_SUFFIX)

    def log_failure(self, path: str, exc: OSError, what: str = "cannot open encrypted file") -> None:
        """One log line per failing file and cause (readers retry; the log shouldn't repeat)."""
        node = getattr(exc, "node", None)
        extra = f" (node {node})" if node is not None and f"node {node}" not in str(exc) else ""
        line = f"{path}: {what}: {_message(path, exc)}{extra}"
        with self.lock:
            if line in self._logged:
                return
            if len(self._logged) > 10_000:
                self._logged.clear()
            self._logged.add(line)
        log.warning("%s", line)

    # ------------------------------------------------------------------ protected files

    def open_pf(self, host_path: str, bound: str, *, writable: bool, key: bytes | None = None,
                identity: tuple[int, int] | None = None) -> tuple[ProtectedFile, pal.HostFile]:
        """Open the protected file at ``host_path`` (checking it is bound to ``bound``); logs and
        raises on failure. ``identity``: the host (st_dev, st_ino) it must be."""
        if key is None:
            key = self.key(host_path)
        host_writable = writable or (self.enable_recovery and not self.readonly)
        try:
            host = _host_file(host_path, writable=host_writable)
        except PermissionError:
            if writable:
                raise
            host = _host_file(host_path, writable=False)
        journal = None
        try:
            if identity is not None:
                s = pal.host_fstat(host.fd)
                if (s.st_dev, s.st_ino) != identity:
                    raise err(errno.ESTALE, host_path)
            if self.enable_recovery:
                jpath = recovery_path(host_path)
                if writable:
                    journal = pal.HostFile(jpath, writable=True, create=True, mode=0o600)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        journal = pal.HostFile(jpath, writable=host.writable)
            pf = pfs.ProtectedFile.open(host, key, bound, writable=writable, recovery=journal,
                                    cache_size=FILE_CACHE_NODES)
        except OSError as exc:
            host.close()
            if journal is not None:
                journal.close()
            self.log_failure(host_path, exc)
            raise
        return pf, host

    def new_file(self, path: str, mode: int) -> None:
        """Make a valid empty protected file at host ``path`` (which must not exist), bound to
        its path; nothing is left on the host if that fails."""
        key = self.key(path)  # before anything is made on the host
        fd = pal.host_open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, mode & 0o7777)
        host = pal.HostFile.from_fd(fd, path, writable=True)
        try:
            pf = pfs.ProtectedFile.create(host, key, self.bound_path(path))
            pf.flush(sync=False)  # a valid empty file; durable with the first fsync, as on Linux
            pf.close()
        except BaseException:
            host.close()
            with contextlib.suppress(OSError):
                pal.host_unlink(path)
            raise

    def prefetch_sizes(self, inodes: list[EncryptedInode]) -> None:
        """Ask the host to start reading the metadata and root MHT nodes of every closed file
        whose plaintext size isn't known yet, so that their reads overlap instead of costing a
        disk round trip each (a stat of 2,000 files on a cold cache: 0.36 -> 0.13 s)."""
        for inode in inodes:
            if not inode.is_reg or inode.pf is not None:
                continue
            with self._sizes_lock:
                if _size_key(inode, inode.cached_stat) in self._sizes:
                    continue
            try:
                fd = pal.host_open(inode.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                pal.host_prefetch(fd, 0, 2 * NODE_SIZE)
            finally:
                pal.host_close(fd)

    def plain_size(self, inode: EncryptedInode, s: Stat) -> int:
        """The plaintext size of a closed file, or its host size if it can't be decrypted."""
        fingerprint = _size_key(inode, s)
        with self._sizes_lock:
            size = self._sizes.get(fingerprint)
            if size is not None:
                self._sizes.move_to_end(fingerprint)
                return size
        if not self.keys.is_set(self.key_name):
            return s.st_size
        try:
            host = _host_file(inode.path, writable=False)
        except OSError:
            return s.st_size
        try:
            pf = pfs.ProtectedFile.open(host, self.key(inode.path), self.bound_path(inode.path), cache_size=1)
        except OSError:
            host.close()
            return s.st_size
        size = pf.size
        pf.close()
        with self._sizes_lock:
            self._sizes[fingerprint] = size
            while len(self._sizes) > SIZE_CACHE_ENTRIES:
                self._sizes.popitem(last=False)
        return size

    def rebind(self, host_path: str, old: str, new: str, key: bytes) -> bool:
        """Bind the file at ``host_path`` (bound to ``old``) to ``new``: through its shared open
        protected file if it has one, else by opening it. False if it is no protected file."""
        inode = self.lookup_host(host_path)
        if isinstance(inode, EncryptedInode):
            with inode.lock:
                if inode.pf is not None:
                    inode.make_writable()
                    inode.pf.rename(new)
                    return True
        try:
            pf, _ = self.open_pf(host_path, old, writable=True, key=key)
        except NotEncryptedError:
            return False
        try:
            pf.rename(new)
        finally:
            pf.close()
        return True

    def sync(self) -> None:
        for inode in list(self._live.values()):
            if isinstance(inode, EncryptedInode):
                inode.flush()

    def describe(self) -> str:
        return "file:" + self.uri_path


def _host_file(path: str, *, writable: bool) -> pal.HostFile:
    """A protected file's host file, opened with O_NOATIME where permitted (reading its header
    for a stat must not move the atime a program set)."""
    fd = host_open_noatime(path, os.O_RDWR if writable else os.O_RDONLY)
    return pal.HostFile.from_fd(fd, path, writable=writable)


def _size_key(inode: HostInode, s: Stat) -> tuple[int, ...]:
    """What identifies a version of a closed file for the plaintext size cache."""
    return (*inode.key, s.st_size, s.st_mtime_ns, s.st_ctime_ns)


class EncryptedInode(HostInode):
    """A host folder, or a protected file shared by all its open descriptions."""

    fs: EncryptedFs

    def __init__(self, fs: ChrootFs, path: str, s: os.stat_result, *, is_root: bool = False):
        super().__init__(fs, path, s, is_root=is_root)
        self.pf: ProtectedFile | None = None
        self._host: pal.HostFile | None = None
        self._refs = 0

    # ------------------------------------------------------------------ attributes

    def host_fd(self) -> int | None:
        host = self._host
        return host.fd if host is not None and host.fd >= 0 else None

    def stat(self) -> Stat:
        s = self.refresh()
        if not self.is_reg:
            return s
        with self.lock:
            if self.pf is not None:
                return s._replace(st_size=self.pf.size)
        return s._replace(st_size=self.fs.plain_size(self, s))

    def size(self) -> int:
        return self.stat().st_size

    # ------------------------------------------------------------------ the shared protected file

    def acquire(self, writable: bool) -> ProtectedFile:
        """The shared protected file (opened on first use, writable when asked), one more user."""
        with self.lock:
            if self.pf is not None:
                if writable:
                    self.make_writable()
                self._refs += 1
                return self.pf
        # opening from closed must not interleave with a rename rebinding files in place
        with self.fs.lock, self.lock:
            if self.pf is None:
                self.pf, self._host = self.fs.open_pf(self.path, self.fs.bound_path(self.path), writable=writable,
                                                      identity=self.key)
            elif writable:
                self.make_writable()
            self._refs += 1
            return self.pf

    def make_writable(self) -> None:
        """Reopen the shared read-only protected file writable (it holds no changes)."""
        with self.lock:
            old = self.pf
            assert old is not None
            if old.writable:
                return
            self.fs.check_writable(self.path)
            new, host = self.fs.open_pf(self.path, old.bound_path, writable=True, identity=self.key)
            old.close()
            self.pf, self._host = new, host

    def release(self) -> None:
        """One user fewer; the last one flushes and closes the protected file."""
        with self.lock:
            self._refs -= 1
            if self._refs > 0 or self.pf is None:
                return
            pf, self.pf, self._host = self.pf, None, None
            try:
                pf.close()
            except OSError as exc:
                self.fs.log_failure(self.path, exc, "flush on close failed")
                raise
            if self.fs.enable_recovery and pf.writable:
                self._remove_journal()

    def _remove_journal(self) -> None:
        """Remove this file's journal, if the path still names this file."""
        try:
            s = pal.host_lstat(self.path)
        except OSError:
            return
        if (s.st_dev, s.st_ino) == self.key:
            with contextlib.suppress(FileNotFoundError):
                pal.host_unlink(recovery_path(self.path))

    def flush(self) -> None:
        with self.lock:
            if self.pf is not None and self.pf.writable:
                self.pf.flush()

    def utimens(self, atime_ns: int | None, mtime_ns: int | None) -> None:
        # write pending changes first, or their flush at close would move the host's mtime
        # past the time set here (``cp -p``, ``tar -x``, ``touch -d`` on an open file)
        with self.lock:
            if self.pf is not None and self.pf.writable:
                self.pf.flush(sync=False)
        super().utimens(atime_ns, mtime_ns)

    def call(self, op, *args):
        """Run ``op(pf, *args)`` on the shared protected file, logging corruption."""
        with self.lock:
            pf = self.pf
            if pf is None:
                raise err(errno.EBADF)
            try:
                return op(pf, *args)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    self.fs.log_failure(self.path, exc, "I/O error")
                raise

    # ------------------------------------------------------------------ files

    def open(self, flags: int) -> Handle:
        if not self.is_reg:
            return super().open(flags)
        writable = (flags & _ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        if writable:
            self.fs.check_writable(self.path)
        self.acquire(writable)
        return EncryptedHandle(self)

    def truncate(self, size: int) -> None:
        self.fs.check_writable(self.path)
        self.acquire(True)
        try:
            self.call(pfs.ProtectedFile.truncate, size)
        finally:
            self.release()

    # ------------------------------------------------------------------ folders

    def lookup(self, name: str) -> Inode | None:
        if self.fs.hidden(name):
            return None
        return super().lookup(name)

    def entries(self) -> Iterable[tuple[str, Inode]]:
        return [(name, inode) for name, inode in super().entries() if not self.fs.hidden(name)]

    def prefetch_stats(self, names: list[str]) -> None:
        children = [self.lookup(name) for name in names if not self.fs.hidden(name)]
        self.fs.prefetch_sizes([c for c in children if isinstance(c, EncryptedInode)])

    def create(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        path = self._child_path(name)
        self.fs.check_writable(path)
        if self.fs.hidden(name):
            raise err(errno.EPERM, path)
        self.fs.new_file(path, mode)
        return self._made(path, mode, uid, gid)

    def symlink(self, name: str, target: str, uid: int, gid: int) -> Inode:
        raise err(errno.EPERM, self._child_path(name))

    def mknod(self, name: str, mode: int, uid: int, gid: int, rdev: int = 0) -> Inode:
        raise err(errno.EPERM, self._child_path(name))

    def link(self, name: str, inode: Inode) -> None:
        raise err(errno.EPERM, self._child_path(name))

    def unlink(self, name: str) -> None:
        path = self._child_path(name)
        super().unlink(name)
        if self.fs.enable_recovery:
            with contextlib.suppress(FileNotFoundError):
                pal.host_unlink(recovery_path(path))

    def rename(self, name: str, new_dir: Inode, new_name: str) -> None:
        assert isinstance(new_dir, EncryptedInode)
        fs = self.fs
        src = self._child_path(name)
        dst = new_dir._child_path(new_name)
        fs.check_writable(src)
        if fs.hidden(new_name):
            raise err(errno.EPERM, dst)
        with fs.lock:
            files = _regular_files(src)
            moves = [(p, fs.bound_path(p), fs.bound_path(dst + p[len(src):])) for p in files]
            moves = [m for m in moves if m[1] != m[2]]
            key = fs.key(src) if moves else b""
            done: list[tuple[str, str, str]] = []
            try:
                for path, old, new in moves:
                    if fs.rebind(path, old, new, key):
                        done.append((path, old, new))
                super().rename(name, new_dir, new_name)
            except BaseException as exc:
                for path, old, new in reversed(done):
                    try:
                        fs.rebind(path, new, old, key)
                    except OSError as undo:
                        log.error("%s: could not bind it back to %s after a failed rename: %s", path, old, undo)
                if isinstance(exc, OSError):
                    fs.log_failure(src, exc, f"rename to {dst} failed")
                raise
            if fs.enable_recovery and files == [src]:
                with contextlib.suppress(FileNotFoundError):
                    pal.host_rename(recovery_path(src), recovery_path(dst))


def _regular_files(path: str) -> list[str]:
    """Host regular files at or below ``path`` (not following symlinks), journals excluded."""
    s = pal.host_lstat(path)
    if st.S_ISREG(s.st_mode):
        return [path]
    if not st.S_ISDIR(s.st_mode):
        return []
    out = []
    for name in sorted(pal.host_listdir(path)):
        if not name.endswith(RECOVERY_SUFFIX):
            out.extend(_regular_files(path + "/" + name))
    return out


class EncryptedHandle(Handle):
    """One open description's view of the inode's shared protected file."""

    def __init__(self, inode: EncryptedInode):
        self.inode = inode
        self._closed = False

    def read(self, offset: int, size: int) -> bytes:
        return self.inode.call(pfs.ProtectedFile.read, offset, size)

    def readinto(self, offset: int, buf: memoryview) -> int:
        return self.inode.call(pfs.ProtectedFile.readinto, offset, buf)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        return self.inode.call(pfs.ProtectedFile.write, offset, data)

    def truncate(self, size: int) -> None:
        """``ftruncate``: mtime and ctime change at once, as on Linux (the host file's times are
        the file's: the change is written out now, not at the next flush)."""
        self.inode.call(pfs.ProtectedFile.truncate, size)
        self.inode.utimens(None, pal.time_ns())

    def size(self) -> int:
        return self.inode.call(lambda pf: pf.size)

    def fsync(self) -> None:
        self.inode.call(pfs.ProtectedFile.flush)

    def flush(self) -> None:
        self.inode.call(lambda pf: pf.flush(sync=False) if pf.writable else None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.inode.release()
