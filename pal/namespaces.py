"""Linux namespaces and mounts through libc (Python 3.11 has no ``os.unshare`` nor the mount API).

Each call raises ``OSError`` with the kernel's errno and names what failed. Only what
``libos run`` needs: ``unshare``, ``mount``/``umount2``, ``pivot_root``, and the new mount API
(``fsopen``/``fsconfig``/``fsmount``, ``open_tree``, ``move_mount``) that makes a mount without
attaching it anywhere, so nothing of it is ever visible in the host's mount table.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = [
    "AT_RECURSIVE", "CLONE_NEWNS", "CLONE_NEWPID", "CLONE_NEWUSER", "MNT_DETACH", "MOUNT_ATTR_NODEV",
    "MOUNT_ATTR_RDONLY", "MS_BIND", "MS_NODEV",
    "MS_NOEXEC", "MS_NOSUID", "MS_PRIVATE", "MS_RDONLY", "MS_REC", "MS_REMOUNT", "fs_mount", "mount",
    "enter_user_namespace", "move_mount", "open_tree", "pivot_root", "set_attrs", "set_readonly", "umount2", "unshare",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 4
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_NODEV = 0x4

# syscall numbers of the calls glibc has no wrapper for (the same on both architectures)
_SYSCALLS = {"x86_64": {"pivot_root": 155}, "aarch64": {"pivot_root": 41}}
_NEW_API = {"open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
            "mount_setattr": 442}
MOUNT_ATTR_RDONLY = 0x1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _syscall(name: str, *args) -> int:
    number = _NEW_API.get(name) or _SYSCALLS.get(platform.machine(), {}).get(name)
    if number is None:
        raise OSError(38, f"{name}: not supported on {platform.machine()}")
    return _libc.syscall(ctypes.c_long(number), *args)


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    """``unshare(2)``."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """``mount(2)``."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {fstype or 'bind'} at {target}")


def umount2(target: str, flags: int = 0) -> None:
    """``umount2(2)``."""
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """``pivot_root(2)``."""
    _check(_syscall("pivot_root", _b(new_root), _b(put_old)), f"pivot_root to {new_root}")


def open_tree(path: str, *, recursive: bool = True, dirfd: int = AT_FDCWD) -> int:
    """A detached copy of the mount tree at ``path`` (a bind mount not attached yet): its fd."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return _check(_syscall("open_tree", ctypes.c_int(dirfd), _b(path), ctypes.c_uint(flags)), f"bind of {path}")


def move_mount(mount_fd: int, target: str) -> None:
    """Attach the detached mount ``mount_fd`` at ``target``."""
    _check(_syscall("move_mount", ctypes.c_int(mount_fd), b"", ctypes.c_int(AT_FDCWD), _b(target),
                    ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), f"mount at {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def set_attrs(mount_fd: int, attrs: int) -> None:
    """Set the ``MOUNT_ATTR_*`` flags ``attrs`` on the (detached) mount tree ``mount_fd``, its other
    flags kept (``mount_setattr``: a remount would have to repeat flags a user namespace may not
    drop)."""
    attr = _MountAttr(attr_set=attrs)
    what = "read-only bind" if attrs & MOUNT_ATTR_RDONLY else "nodev bind"
    _check(_syscall("mount_setattr", ctypes.c_int(mount_fd), b"", ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE),
                    ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), what)


def set_readonly(mount_fd: int) -> None:
    """Make the (detached) mount tree ``mount_fd`` read-only, its other flags kept."""
    set_attrs(mount_fd, MOUNT_ATTR_RDONLY)


def enter_user_namespace() -> None:
    """Become uid/gid 0 of a new user namespace (mapped to this user), with a mount namespace of
    its own: what lets an unprivileged user mount FUSE, tmpfs, proc and bind mounts. Single-threaded
    callers only (the kernel's rule)."""
    uid, gid = os.geteuid(), os.getegid()
    unshare(CLONE_NEWUSER | CLONE_NEWNS)
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def fs_mount(fstype: str, options: dict[str, str | bool], *, attrs: int = 0) -> int:
    """A new, detached mount of ``fstype`` (``fsopen``/``fsconfig``/``fsmount``): its fd.
    ``options``: string options, or flags (``True``)."""
    fsfd = _check(_syscall("fsopen", _b(fstype), ctypes.c_uint(FSOPEN_CLOEXEC)), f"fsopen {fstype}")
    try:
        for key, value in options.items():
            if value is True:
                _check(_syscall("fsconfig", ctypes.c_int(fsfd), ctypes.c_uint(FSCONFIG_SET_FLAG), _b(key),
                                None, ctypes.c_int(0)), f"{fstype} option {key}")
            else:
                _check(_syscall("fsconfig", ctypes.c_int(fsfd), ctypes.c_uint(FSCONFIG_SET_STRING), _b(key),
                                _b(str(value)), ctypes.c_int(0)), f"{fstype} option {key}")
        _check(_syscall("fsconfig", ctypes.c_int(fsfd), ctypes.c_uint(FSCONFIG_CMD_CREATE), None, None,
                        ctypes.c_int(0)), f"creating the {fstype} file system")
        return _check(_syscall("fsmount", ctypes.c_int(fsfd), ctypes.c_uint(FSMOUNT_CLOEXEC),
                               ctypes.c_uint(attrs)), f"fsmount {fstype}")
    finally:
        os.close(fsfd)
