"""Host calls on paths longer than the host's PATH_MAX.

A view's path can be as long as Linux allows a program's *relative* path to be (4,095 bytes
from its cwd), and the host folder of a chroot mount adds its own path in front: the joined host
path may then be too long for one host call (ENAMETOOLONG where Linux succeeds). :data:`host`
makes every ``pal.host_*`` call take such paths: a path of PATH_MAX bytes or more is reached
through ``O_PATH`` descriptors of its folders, opened a piece at a time, as
``/proc/self/fd/N/REST`` with a short ``REST``. Shorter paths are passed as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pal

HOST_PATH_MAX = 4096
PIECE = 3000  # bytes of path per host call (well under PATH_MAX with the /proc/self/fd/N/ prefix)


def _size(path: str) -> int:
    return len(path.encode(errors="surrogateescape"))


def _reachable(path: str, stack: contextlib.ExitStack) -> str:
    """A short path naming what absolute ``path`` names (descriptors closed by ``stack``)."""
    names = [n for n in path.split("/") if n]
    rest: list[str] = []
    size = 0
    while names and size + _size(names[-1]) + 1 < PIECE:  # the last names, as one short REST
        size += _size(names[-1]) + 1
        rest.insert(0, names.pop())
    fd: int | None = None
    while names:  # the folders before it, a piece per descriptor
        piece: list[str] = []
        size = 0
        while names and size + _size(names[0]) + 1 < PIECE:
            size += _size(names[0]) + 1
            piece.append(names.pop(0))
        fd = pal.host_open_dir_at(fd, ("/" if fd is None else "") + "/".join(piece))
        stack.callback(pal.host_close, fd)
    suffix = "/".join(rest) + ("/" if path.endswith("/") else "")
    return f"/proc/self/fd/{fd}/{suffix}" if fd is not None else "/" + suffix


class _HostCalls:
    """``pal``'s host calls, taking absolute paths of any length (see the module docstring)."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(pal, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if not any(isinstance(a, str) and len(a) >= HOST_PATH_MAX // 4 and _size(a) >= HOST_PATH_MAX
                       for a in args):
                return fn(*args, **kwargs)
            with contextlib.ExitStack() as stack:
                short = [_reachable(a, stack) if isinstance(a, str) and a.startswith("/")
                         and _size(a) >= HOST_PATH_MAX else a for a in args]
                return fn(*short, **kwargs)

        call.__name__ = name
        setattr(self, name, call)  # made once per call name
        return call


host: Any = _HostCalls()
