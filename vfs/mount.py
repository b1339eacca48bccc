"""The mount table: file systems attached at absolute paths, later mounts on top of earlier ones."""

from __future__ import annotations

import posixpath
import threading
from dataclasses import dataclass, field

from .node import FileSystem, Inode


@dataclass(eq=False)
class Mount:
    """One file system attached at ``path`` (canonical, absolute)."""

    path: str
    fs: FileSystem
    options: dict[str, object] = field(default_factory=dict)

    @property
    def root(self) -> Inode:
        return self.fs.root()

    @property
    def readonly(self) -> bool:
        return bool(self.options.get("readonly")) or self.fs.readonly


class MountTable:
    """Ordered mounts; the last mount at a path covers the earlier ones."""

    def __init__(self) -> None:
        self._mounts: list[Mount] = []
        self._lock = threading.Lock()

    def mount(self, path: str, fs: FileSystem, **options: object) -> Mount:
        """Attach ``fs`` at ``path`` (absolute); return the new mount."""
        if not path.startswith("/"):
            raise ValueError(f"mount path must be absolute: {path!r}")
        canonical = posixpath.normpath(path)
        if canonical.startswith("//"):
            canonical = "/" + canonical.lstrip("/")
        mount = Mount(canonical, fs, dict(options))
        with self._lock:
            self._mounts.append(mount)
        return mount

    def unmount(self, path: str) -> Mount:
        """Detach the topmost mount at ``path``."""
        with self._lock:
            for i in range(len(self._mounts) - 1, -1, -1):
                if self._mounts[i].path == path:
                    mount = self._mounts.pop(i)
                    mount.fs.sync()
                    return mount
        raise KeyError(path)

    def at(self, path: str) -> Mount | None:
        """The topmost mount attached exactly at canonical ``path``."""
        for mount in reversed(self._mounts):
            if mount.path == path:
                return mount
        return None

    def covering(self, path: str) -> Mount:
        """The mount whose tree holds canonical ``path`` (longest prefix; ``/`` must be mounted)."""
        best: Mount | None = None
        for mount in self._mounts:
            p = mount.path
            if (path == p or p == "/" or path.startswith(p + "/")) and (best is None or len(p) >= len(best.path)):
                best = mount
        if best is None:
            raise LookupError("nothing is mounted at /")
        return best

    def children_of(self, path: str) -> list[str]:
        """Names of mount points that are direct children of canonical ``path``."""
        names = []
        for mount in self._mounts:
            parent, name = posixpath.split(mount.path)
            if name and parent == path and name not in names:
                names.append(name)
        return names

    def __iter__(self):
        return iter(list(self._mounts))

    def sync(self) -> None:
        for mount in list(self._mounts):
            mount.fs.sync()
