"""devfs: the /dev a LibOS process sees.

Entries::

    null zero full random urandom tty         character devices (Linux's modes and rdev numbers)
    stdin stdout stderr fd                    symlinks to /proc/self/fd/0..2 and /proc/self/fd
    shm/                                      a small in-memory directory (tmpfs semantics)
    attestation/keys/NAME                     the encrypted-files keys (Gramine's interface)
    attestation/{report,quote,...}            an enclave's SGX files (vfs/attestation.py)

Character devices behave as Linux's: ``null`` reads empty and swallows writes; ``zero`` reads
zeros; ``full`` reads zeros and fails every write with ENOSPC; ``random``/``urandom`` read from
``pal.random_bytes`` and accept writes; ``tty`` passes through to the host's ``/dev/tty`` (the
host's errno, ENXIO without a controlling terminal, when it can't be opened). Their handles are
not seekable: offsets are ignored and ``lseek`` returns 0 (Linux gives ESPIPE for ``tty``: the
core can't express that yet).

``attestation/keys/NAME``, as in Gramine: the directory lists the key store's names; reading a
key gives its 16 raw bytes (nothing while the key is known but not set); writing exactly 16
bytes at offset 0 sets it (encrypted mounts that use that name see it from then on), any other
write gives EACCES (Gramine's errno). Looking up an unknown name gives ENOENT; ``open(O_CREAT)`` of
a new name gives EACCES (Gramine's folder is r-x): the names are the manifest's keys
(``fs.insecure__keys``, the encrypted mounts' ``key_name``s). Key files are mode 0666 as Gramine's (every process of a
LibOS is in one trust domain), and ``stat`` reports size 0 like other pseudo files.

Shown to the host (``libos mount``), the keys would be readable by anyone who can reach the
mount: :meth:`DevFs.host_view` hides them, or with ``expose=True`` shows them mode 0600 (the
folder 0700), owned by the mount's owner, and marks them ``owner_only`` (the FUSE bridge then
refuses opens from any other uid, root included).

The top of /dev is fixed: creating or removing names there gives EPERM (use ``/dev/shm``).
"""

from __future__ import annotations

import errno
import os
import stat as st
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import pal

from .node import FileSystem, Handle, Inode, err
from .tmpfs import TmpDir, TmpSymlink

if TYPE_CHECKING:
    from .attestation import AttestationProvider

KEY_SIZE = 16

# (name, major, minor) of the character devices, as on Linux
DEVICES: list[tuple[str, int, int]] = [
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
]


class KeyStoreLike(Protocol):
    """The key store /dev/attestation/keys shows (``vfs.encrypted.KeyStore`` implements it)."""

    def get(self, name: str) -> bytes:
        """The 16-byte key ``name`` (``OSError`` EACCES if it is not set)."""
        ...

    def set(self, name: str, key: bytes) -> None:
        """Set (or replace) the key ``name``."""
        ...

    def names(self) -> list[str]:
        """Every known key name (set or not)."""
        ...


# ---------------------------------------------------------------------------------------------- devices


class _StreamHandle(Handle):
    """A character device: no file position."""

    seekable = False


class NullHandle(_StreamHandle):
    def read(self, offset: int, size: int) -> bytes:
        return b""

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        return len(data)


class ZeroHandle(_StreamHandle):
    def read(self, offset: int, size: int) -> bytes:
        return bytes(size)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        return len(data)


class FullHandle(ZeroHandle):
    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        raise err(errno.ENOSPC)


class RandomHandle(_StreamHandle):
    def read(self, offset: int, size: int) -> bytes:
        return pal.random_bytes(size)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        return len(data)  # Linux mixes it into the pool; ours has nothing to mix into


class TtyHandle(_StreamHandle):
    """The host's controlling terminal, through ``pal.HostDevice``."""

    def __init__(self, flags: int):
        self.dev = pal.HostDevice("/dev/tty", flags & (3 | os.O_NONBLOCK))

    def read(self, offset: int, size: int) -> bytes:
        return self.dev.read(size)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        return self.dev.write(data)

    def close(self) -> None:
        self.dev.close()


_HANDLES = {"null": NullHandle, "zero": ZeroHandle, "full": FullHandle, "random": RandomHandle,
            "urandom": RandomHandle}


class CharDevice(Inode):
    """A character device node: ``open`` gives the device's handle."""

    opens_device = True

    def __init__(self, fs: FileSystem, name: str, major: int, minor: int):
        super().__init__(fs, st.S_IFCHR | 0o666, rdev=os.makedev(major, minor))
        self.name = name

    def blocks(self, size: int) -> int:
        return 0

    def open(self, flags: int) -> Handle:
        if self.name == "tty":
            return TtyHandle(flags)
        return _HANDLES[self.name]()

    def truncate(self, size: int) -> None:
        pass  # O_TRUNC on a device does nothing


# ---------------------------------------------------------------------------------------------- directories


class DevDir(Inode):
    """A directory with a fixed set of entries (creating or removing names: EPERM)."""

    def __init__(self, fs: FileSystem, perm: int = 0o755):
        super().__init__(fs, st.S_IFDIR | perm)
        self.children: dict[str, Inode] = {}

    def lookup(self, name: str) -> Inode | None:
        return self.children.get(name)

    def entries(self) -> Iterable[tuple[str, Inode]]:
        return list(self.children.items())


class KeyFile(Inode):
    """``/dev/attestation/keys/NAME`` (mode 0444 and never written for the enclave's own keys)."""

    def __init__(self, fs: DevFs, name: str):
        owner = fs.key_owner
        self.readonly = name in fs.readonly_keys
        perm = 0o666 if owner is None else 0o600
        super().__init__(fs, st.S_IFREG | (perm & 0o444 if self.readonly else perm), ino=fs.key_ino(name),
                         uid=owner[0] if owner else 0, gid=owner[1] if owner else 0)
        self.name = name
        self.owner_only = owner is not None

    def size(self) -> int:
        return 0

    def open(self, flags: int) -> Handle:
        if self.readonly and (flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC):
            raise err(errno.EACCES)  # Gramine: the _sgx_ keys are read-only, root included
        return KeyHandle(self.fs, self.name)  # type: ignore[arg-type]

    def truncate(self, size: int) -> None:
        pass  # a key can be replaced, never emptied


class KeyHandle(Handle):
    """Reads give the key's current 16 bytes; a 16-byte write at offset 0 sets it."""

    direct_io = True  # st_size is 0 and the key can change: the kernel must not cache it

    def __init__(self, fs: DevFs, name: str):
        self.fs = fs
        self.name = name

    def _key(self) -> bytes:
        try:
            return bytes(self.fs.keys.get(self.name))  # type: ignore[union-attr]
        except OSError as e:
            if e.errno in (errno.EACCES, errno.ENOENT):
                return b""  # known but not set: empty, as Gramine
            raise
        except KeyError:
            return b""

    def read(self, offset: int, size: int) -> bytes:
        return self._key()[offset:offset + size]

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        if offset != 0 or len(data) != KEY_SIZE:
            raise err(errno.EACCES)  # Gramine: a write of anything but the 16 bytes of a key
        self.fs.keys.set(self.name, bytes(data))  # type: ignore[union-attr]
        return KEY_SIZE

    def truncate(self, size: int) -> None:
        pass

    def size(self) -> int:
        return len(self._key())


class KeysDir(DevDir):
    """``/dev/attestation/keys``: one file per key name the store knows (plus names created here)."""

    def _names(self) -> list[str]:
        fs: DevFs = self.fs  # type: ignore[assignment]
        return list(fs.keys.names()) if hasattr(fs.keys, "names") else []

    def lookup(self, name: str) -> Inode | None:
        if name in self._names():
            return KeyFile(self.fs, name)  # type: ignore[arg-type]
        return None

    def entries(self) -> Iterable[tuple[str, Inode]]:
        return [(name, KeyFile(self.fs, name)) for name in self._names()]  # type: ignore[arg-type]

    def create(self, name: str, mode: int, uid: int, gid: int) -> Inode:
        if name in self._names():
            raise err(errno.EEXIST)
        raise err(errno.EACCES)  # Gramine: keys/ is r-x, a key name comes from the manifest


# ---------------------------------------------------------------------------------------------- file system


class DevFs(FileSystem):
    """/dev: devices, stdio links, ``shm/``, and (with ``keys``) ``attestation/keys/``; with
    ``attestation`` (an enclave) also the SGX files of :mod:`vfs.attestation`, and the keys in
    ``readonly_keys`` are mode 0444 and can't be written (``_sgx_mrenclave``, ``_sgx_mrsigner``).

    ``stdio``: make ``stdin``/``stdout``/``stderr``/``fd`` (links into ``/proc/self/fd``, so they
    need /proc mounted).
    """

    type_name = "devtmpfs"

    def __init__(self, keys: KeyStoreLike | None = None, *, stdio: bool = True,
                 attestation: AttestationProvider | None = None, readonly_keys: Iterable[str] = ()):
        super().__init__()
        self.keys = keys
        self.readonly_keys = frozenset(readonly_keys)
        self.key_owner: tuple[int, int] | None = None  # (uid, gid) once shown to the host with keys
        self._key_inos: dict[str, int] = {}
        root = self._root = DevDir(self)
        for name, major, minor in DEVICES:
            root.children[name] = CharDevice(self, name, major, minor)
        if stdio:
            for fd, name in enumerate(("stdin", "stdout", "stderr")):
                root.children[name] = TmpSymlink(self, f"/proc/self/fd/{fd}")
            root.children["fd"] = TmpSymlink(self, "/proc/self/fd")
        root.children["shm"] = TmpDir(self, st.S_IFDIR | 0o1777)
        if keys is not None:
            folder = DevDir(self, 0o555 if attestation is not None else 0o755)  # Gramine's: 0555
            if attestation is not None:
                from .attestation import attestation_entries

                folder.children.update(attestation_entries(self, attestation))
            folder.children["keys"] = KeysDir(self)
            root.children["attestation"] = folder

    def root(self) -> Inode:
        return self._root

    def host_view(self, *, expose: bool, owner: tuple[int, int]) -> None:
        """Prepare this /dev to be shown to the host: without ``expose`` there is no
        ``attestation/keys``; with it the keys are mode 0600 (their folder 0700), owned by
        ``owner`` (uid, gid), and open only to that uid."""
        attestation = self._root.children.get("attestation")
        if not isinstance(attestation, DevDir) or "keys" not in attestation.children:
            return
        if not expose:
            del attestation.children["keys"]
            return
        self.key_owner = owner
        keys = attestation.children["keys"]
        keys.mode = st.S_IFDIR | 0o700
        keys.uid, keys.gid = owner
        keys.owner_only = True  # type: ignore[attr-defined]

    def describe(self) -> str:
        return "devtmpfs"

    def key_ino(self, name: str) -> int:
        """A stable inode number for the key file ``name``."""
        with self.lock:
            ino = self._key_inos.get(name)
            if ino is None:
                ino = self._key_inos[name] = self.new_ino()
            return ino
