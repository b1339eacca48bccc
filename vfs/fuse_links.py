"""Hard links through the FUSE bridge: the other names' cached attributes and pages.

libfuse's path-based API gives each path its own kernel node, so a file with several names is
several kernel inodes, each caching its attributes (for the attribute timeout) and its pages.
A change made through one name (a write, truncate, chmod, unlink of another name...) would
leave ``stat`` and ``fstat`` of the others stale. :class:`LinkNames` remembers the names the
kernel has looked up for files with more than one link and, when one changes, invalidates the
other names' kernel nodes (``fuse_invalidate_path``: attributes and cached pages) before the
request that changed it is answered. Only a write is answered first: during a WRITE the kernel
holds the written pages locked, and invalidating a node that turned out to be the written one
(a name of it the bridge can't tell apart) would wait for them; so a write's notifications go
through a thread of their own, and the description's next flush or fsync (``close``) waits for
them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("vfs.fuse")

MAX_NAMES = 64  # names remembered per file (more: the oldest is dropped)
MAX_FILES = 4096  # files remembered (more: the table starts again)


class LinkNames:
    """The names seen of multiply-linked files, and their invalidation when one changes."""

    def __init__(self) -> None:
        self._names: dict[tuple[int, int], list[str]] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._invalidate: Callable[[str], Any] | None = None

    def start(self, invalidate: Callable[[str], Any]) -> None:
        """Begin notifying: ``invalidate(path)`` drops the kernel's cache of that path's node."""
        self._invalidate = invalidate
        threading.Thread(target=self._run, name="fuse-link-invalidate", daemon=True).start()

    def stop(self) -> None:
        self._queue.put(None)

    def seen(self, key: tuple[int, int], nlink: int, path: str) -> None:
        """The kernel got attributes of ``path`` (file ``key`` with ``nlink`` links)."""
        if nlink < 2 or self._invalidate is None:
            return
        with self._lock:
            names = self._names.get(key)
            if names is None:
                if len(self._names) >= MAX_FILES:
                    self._names.clear()
                names = self._names[key] = []
            if path not in names:
                names.append(path)
                del names[:-MAX_NAMES]

    def changed(self, key: tuple[int, int], path: str | None, *, wait: bool = True) -> None:
        """File ``key`` changed through ``path`` (None: through a descriptor): invalidate its
        other names, now (``wait``) or from the notification thread."""
        if not self._names or self._invalidate is None:
            return
        with self._lock:
            others = [n for n in self._names.get(key, ()) if n != path]
        for name in others:
            if wait:
                self._notify(name)
            else:
                self._queue.put(name)

    def _notify(self, path: str) -> None:
        try:
            assert self._invalidate is not None
            self._invalidate(path)
        except Exception as exc:  # only a cache hint: never let it fail a request
            log.debug("invalidating %s: %s", path, exc)

    def renamed(self, old: str, new: str) -> None:
        """A name (or a folder above names) moved: forget the old names."""
        prefix = old.rstrip("/") + "/"
        with self._lock:
            for names in self._names.values():
                names[:] = [n for n in names if n != old and not n.startswith(prefix)]

    def _run(self) -> None:
        while True:
            path = self._queue.get()
            if path is None:
                return
            self._notify(path)
