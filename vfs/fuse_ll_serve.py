"""Mounting and running a session of the low-level FUSE bridge (:mod:`vfs.fuse_lowlevel`):
:func:`serve_lowlevel` is :func:`vfs.fuse.serve` on libfuse's low-level API."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Callable

from .fuse import FuseBridge, load_mfusepy
from .fuse_ll_abi import Abi
from .fuse_lowlevel import LowLevelBridge
from .fuse_readahead import raise_read_ahead
from .fuse_session import FuseError, SignalStop, UnmountFlushError, check_fuse_device
from .vfs import VFS


def serve_lowlevel(vfs: VFS, mountpoint: str, *, writable: bool, foreground: bool = True, allow_other: bool = False,
                   debug: bool = False, fsname: str = "pfskit", subtype: str = "pfs", writeback_cache: bool = True,
                   direct_io: bool = False, keep_cache: bool = True, multithreaded: bool = False,
                   ready: Callable[[], None] | None = None,
                   on_bridge: Callable[[LowLevelBridge], None] | None = None) -> None:
    """:func:`vfs.fuse.serve` through libfuse's low-level API (same arguments, same errors);
    ``on_bridge`` is given the node table's owner before mounting (diagnostics, tests)."""
    mfusepy = load_mfusepy()
    abi = Abi(mfusepy)
    if not mountpoint.startswith("/dev/fd/"):
        check_fuse_device()
    bridge = FuseBridge(vfs, writable=writable, writeback_cache=writeback_cache and not direct_io,
                        direct_io=direct_io, keep_cache=keep_cache)
    ll = LowLevelBridge(bridge, abi)
    if on_bridge is not None:
        on_bridge(ll)
    stopper = SignalStop(mountpoint, bridge.open_for_writing) \
        if threading.current_thread() is threading.main_thread() else None
    session: list[int] = []

    def started() -> None:
        def exit_session() -> None:
            abi.session_exit(session[0])

        if stopper is not None and stopper.started(exit_session):
            exit_session()
        if ready is not None:
            ready()

    bridge.on_init = started
    if stopper is not None:
        bridge.on_destroy = stopper.ended
    opts = [f"fsname={fsname}", f"subtype={subtype}", "default_permissions"]
    if not writable:
        opts.append("ro")
    if allow_other:
        opts.append("allow_other")
    argv = [b"pfskit", b"-o", ",".join(opts).encode()] + ([b"-d"] if debug else [])
    args = abi.Args(len(argv), (ctypes.c_char_p * len(argv))(*argv), 0)
    ops = ll.ops()
    se = abi.session_new(ctypes.byref(args), ctypes.byref(ops), ctypes.sizeof(ops), None)
    if not se:
        raise FuseError(errno.EINVAL, f"FUSE at '{mountpoint}': libfuse refused the mount options "
                                      "(its own message is just before this one)")
    session.append(se)
    ll.session = se
    real = os.path.realpath(mountpoint)  # not once mounted: that would ask this very session
    with stopper or contextlib.nullcontext():
        try:
            if abi.session_mount(se, os.fsencode(mountpoint)) != 0:
                raise FuseError(errno.EIO, f"FUSE at '{mountpoint}': the mount failed "
                                           "(libfuse's own message is just before this one)")
            try:
                if not foreground:
                    abi.daemonize(0)
                ll.after_init = lambda: raise_read_ahead(real, resolve=False)
                if multithreaded:
                    cfg = abi.loop_cfg_create()
                    try:
                        res = abi.session_loop_mt(se, cfg)
                    finally:
                        abi.loop_cfg_destroy(cfg)
                else:
                    res = abi.session_loop(se)
            finally:
                abi.session_unmount(se)
        finally:
            abi.session_destroy(se)  # calls destroy: every open file flushed and closed
    if res < 0 and (stopper is None or stopper.received is None):
        raise FuseError(-res, f"FUSE at '{mountpoint}': the FUSE session ended with an error "
                              f"({os.strerror(-res)})")
    if bridge.failures:
        raise UnmountFlushError(bridge.failures)
