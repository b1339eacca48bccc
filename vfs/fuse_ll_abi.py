"""libfuse3's low-level API through ctypes: the request callbacks, the reply calls, the session.

Only declarations (``fuse_lowlevel.h`` of libfuse 3.x, ``FUSE_USE_VERSION`` 3.12+); the bridge
that serves them is :mod:`vfs.fuse_lowlevel`. ``struct stat``, ``struct statvfs``,
``struct fuse_file_info`` and ``struct fuse_conn_info`` are mfusepy's (it tracks their layout per
libfuse version), and the library is the one mfusepy loaded (libfuse3: see
:func:`vfs.fuse.load_mfusepy`).
"""

from __future__ import annotations

import ctypes
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_double, c_int, c_size_t, c_uint, c_uint64, c_void_p
from typing import Any

fuse_ino_t = c_uint64
c_off_t = ctypes.c_int64
c_mode_t = c_uint
c_dev_t = c_uint64

# the order of struct fuse_lowlevel_ops (every member is a function pointer)
OPS_ORDER = (
    "init", "destroy", "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink",
    "rmdir", "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync", "opendir",
    "readdir", "releasedir", "fsyncdir", "statfs", "setxattr", "getxattr", "listxattr", "removexattr",
    "access", "create", "getlk", "setlk", "bmap", "ioctl", "poll", "write_buf", "retrieve_reply",
    "forget_multi", "flock", "fallocate", "readdirplus", "copy_file_range", "lseek",
)

# setattr's to_set bits
SET_ATTR_MODE, SET_ATTR_UID, SET_ATTR_GID, SET_ATTR_SIZE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
SET_ATTR_ATIME, SET_ATTR_MTIME, SET_ATTR_ATIME_NOW, SET_ATTR_MTIME_NOW = 1 << 4, 1 << 5, 1 << 7, 1 << 8

RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


class Abi:
    """The structures and functions of the libfuse3 that ``mfusepy`` loaded."""

    def __init__(self, mfusepy: Any):
        lib = mfusepy._libfuse
        self.c_stat, self.c_statvfs = mfusepy.c_stat, mfusepy.c_statvfs
        self.file_info, self.conn_info = mfusepy.fuse_file_info, mfusepy.fuse_conn_info
        fi_p, stat_p = POINTER(self.file_info), POINTER(self.c_stat)

        class EntryParam(ctypes.Structure):
            _fields_ = [("ino", fuse_ino_t), ("generation", c_uint64), ("attr", self.c_stat),
                        ("attr_timeout", c_double), ("entry_timeout", c_double)]

        class Ctx(ctypes.Structure):
            _fields_ = [("uid", c_uint), ("gid", c_uint), ("pid", c_int), ("umask", c_mode_t)]

        class ForgetData(ctypes.Structure):
            _fields_ = [("ino", fuse_ino_t), ("nlookup", c_uint64)]

        class Args(ctypes.Structure):
            _fields_ = [("argc", c_int), ("argv", POINTER(c_char_p)), ("allocated", c_int)]

        self.EntryParam, self.Ctx, self.Args = EntryParam, Ctx, Args
        entry_p = POINTER(EntryParam)
        req = c_void_p
        self.types: dict[str, Any] = {
            "init": CFUNCTYPE(None, c_void_p, POINTER(self.conn_info)),
            "destroy": CFUNCTYPE(None, c_void_p),
            "lookup": CFUNCTYPE(None, req, fuse_ino_t, c_char_p),
            "forget": CFUNCTYPE(None, req, fuse_ino_t, c_uint64),
            "getattr": CFUNCTYPE(None, req, fuse_ino_t, fi_p),
            "setattr": CFUNCTYPE(None, req, fuse_ino_t, stat_p, c_int, fi_p),
            "readlink": CFUNCTYPE(None, req, fuse_ino_t),
            "mknod": CFUNCTYPE(None, req, fuse_ino_t, c_char_p, c_mode_t, c_dev_t),
            "mkdir": CFUNCTYPE(None, req, fuse_ino_t, c_char_p, c_mode_t),
            "unlink": CFUNCTYPE(None, req, fuse_ino_t, c_char_p),
            "rmdir": CFUNCTYPE(None, req, fuse_ino_t, c_char_p),
            "symlink": CFUNCTYPE(None, req, c_char_p, fuse_ino_t, c_char_p),
            "rename": CFUNCTYPE(None, req, fuse_ino_t, c_char_p, fuse_ino_t, c_char_p, c_uint),
            "link": CFUNCTYPE(None, req, fuse_ino_t, fuse_ino_t, c_char_p),
            "open": CFUNCTYPE(None, req, fuse_ino_t, fi_p),
            "read": CFUNCTYPE(None, req, fuse_ino_t, c_size_t, c_off_t, fi_p),
            "write": CFUNCTYPE(None, req, fuse_ino_t, c_void_p, c_size_t, c_off_t, fi_p),
            "flush": CFUNCTYPE(None, req, fuse_ino_t, fi_p),
            "release": CFUNCTYPE(None, req, fuse_ino_t, fi_p),
            "fsync": CFUNCTYPE(None, req, fuse_ino_t, c_int, fi_p),
            "opendir": CFUNCTYPE(None, req, fuse_ino_t, fi_p),
            "readdir": CFUNCTYPE(None, req, fuse_ino_t, c_size_t, c_off_t, fi_p),
            "releasedir": CFUNCTYPE(None, req, fuse_ino_t, fi_p),
            "fsyncdir": CFUNCTYPE(None, req, fuse_ino_t, c_int, fi_p),
            "statfs": CFUNCTYPE(None, req, fuse_ino_t),
            "create": CFUNCTYPE(None, req, fuse_ino_t, c_char_p, c_mode_t, fi_p),
            "forget_multi": CFUNCTYPE(None, req, c_size_t, POINTER(ForgetData)),
            "readdirplus": CFUNCTYPE(None, req, fuse_ino_t, c_size_t, c_off_t, fi_p),
        }

        class Ops(ctypes.Structure):
            _fields_ = [(name, self.types.get(name, c_void_p)) for name in OPS_ORDER]

        self.Ops = Ops

        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            f = getattr(lib, name)
            f.restype, f.argtypes = restype, list(argtypes)
            return f

        self.reply_err = fn("fuse_reply_err", c_int, req, c_int)
        self.reply_none = fn("fuse_reply_none", None, req)
        self.reply_entry = fn("fuse_reply_entry", c_int, req, entry_p)
        self.reply_create = fn("fuse_reply_create", c_int, req, entry_p, fi_p)
        self.reply_attr = fn("fuse_reply_attr", c_int, req, stat_p, c_double)
        self.reply_readlink = fn("fuse_reply_readlink", c_int, req, c_char_p)
        self.reply_open = fn("fuse_reply_open", c_int, req, fi_p)
        self.reply_write = fn("fuse_reply_write", c_int, req, c_size_t)
        self.reply_buf = fn("fuse_reply_buf", c_int, req, c_void_p, c_size_t)
        self.reply_statfs = fn("fuse_reply_statfs", c_int, req, POINTER(self.c_statvfs))
        self.add_direntry = fn("fuse_add_direntry", c_size_t, req, c_void_p, c_size_t, c_char_p, stat_p, c_off_t)
        self.add_direntry_plus = fn("fuse_add_direntry_plus", c_size_t, req, c_void_p, c_size_t, c_char_p,
                                    entry_p, c_off_t)
        self.req_ctx = fn("fuse_req_ctx", POINTER(Ctx), req)
        self.session_new = fn("fuse_session_new", c_void_p, POINTER(Args), POINTER(Ops), c_size_t, c_void_p)
        self.session_mount = fn("fuse_session_mount", c_int, c_void_p, c_char_p)
        self.session_loop = fn("fuse_session_loop", c_int, c_void_p)
        self.session_exit = fn("fuse_session_exit", None, c_void_p)
        self.session_unmount = fn("fuse_session_unmount", None, c_void_p)
        self.session_destroy = fn("fuse_session_destroy", None, c_void_p)
        self.daemonize = fn("fuse_daemonize", c_int, c_int)
        # the versioned default (FUSE_3.12) takes a struct fuse_loop_config made by fuse_loop_cfg_create
        self.session_loop_mt = fn("fuse_session_loop_mt", c_int, c_void_p, c_void_p)
        self.loop_cfg_create = fn("fuse_loop_cfg_create", c_void_p)
        self.loop_cfg_destroy = fn("fuse_loop_cfg_destroy", None, c_void_p)
