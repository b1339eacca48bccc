"""Which FUSE request the current libfuse callback serves (its kernel ``unique`` id).

libfuse's high-level API hides an open file that is removed (``unlink``, or ``rename`` over
it) by renaming it to ``.fuse_hiddenNNNN`` from inside that same request, after checking with a
``getattr`` that the name is free. Its "open" is its node's open count, which drops only after
the file system's ``release`` callback has returned: a RELEASE served on another thread at the
same time leaves the bridge without a handle while libfuse still hides the file. So the bridge
recognizes a hide by the request, not by its handles: a rename to a hidden name is libfuse's
hide when the same request just asked for that name and was told it doesn't exist (a user's
``mv x .fuse_hidden...`` is one RENAME request, its lookup another).

libfuse has no public call for the request's id; its per-thread context (``fuse_get_context``)
is the public ``struct fuse_context`` followed by the request (``struct fuse_context_i``), and a
request starts with its session and its ``unique`` (``struct fuse_req``), as in every libfuse
since 2.6. The layout is checked against ``fuse_get_session`` at each call: if it ever differs,
:func:`request_reader` answers None and the bridge falls back to its handles.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any


def request_reader(mfusepy: Any, fuse_ptr: ctypes.c_void_p) -> Callable[[], int | None]:
    """A function giving the ``unique`` of the request the calling libfuse thread serves, or
    None (no request, or a libfuse whose context isn't laid out as expected)."""

    class ContextI(ctypes.Structure):
        _fields_ = [("ctx", mfusepy.fuse_context), ("req", ctypes.c_void_p)]

    class Req(ctypes.Structure):
        _fields_ = [("se", ctypes.c_void_p), ("unique", ctypes.c_uint64)]

    get_session = mfusepy._libfuse.fuse_get_session
    get_session.argtypes, get_session.restype = [ctypes.c_void_p], ctypes.c_void_p
    session = get_session(fuse_ptr)
    get_context = mfusepy._libfuse.fuse_get_context

    def unique() -> int | None:
        ctx = get_context()
        if not ctx:
            return None
        req = ContextI.from_address(ctypes.addressof(ctx.contents)).req
        if not req:
            return None
        head = Req.from_address(req)
        return head.unique if session and head.se == session else None

    return unique
