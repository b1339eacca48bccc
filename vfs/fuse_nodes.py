"""The low-level FUSE bridge's node table: kernel node ids for VFS inodes, their names and the
kernel's lookup counts (see :mod:`vfs.fuse_lowlevel`).

A node stands for one VFS inode (its ``(st_dev, st_ino)``) from the kernel's first lookup of it
to the FORGET that brings its count to zero. Ids come from a counter and are never reused. Each
node keeps the names the kernel knows it by, as ``(parent node, name)`` (the kernel's dentries):
the VFS is path-based, so a request on a node is served through one of them; a folder's rename
moves every name below it, since paths are made from the parents' names when asked.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

ROOT = 1  # FUSE_ROOT_ID


@dataclass(eq=False)
class Node:
    """A kernel inode: a VFS inode and the names the kernel knows it by."""

    key: tuple[int, int]
    names: list[tuple[int, str]] = field(default_factory=list)  # (parent node, name), latest first
    lookups: int = 0


def join(base: str, name: str) -> str:
    return ("/" if base == "/" else base + "/") + name


class NodeTable:
    """Nodes by id, by inode key and by name; every change under one lock."""

    def __init__(self, root_key: tuple[int, int]):
        self.nodes: dict[int, Node] = {ROOT: Node(root_key, lookups=1)}
        self.by_key: dict[tuple[int, int], int] = {}  # the live node of each inode
        self.entries: dict[tuple[int, str], int] = {}  # (parent, name) -> node
        self._next = ROOT + 1
        self.lock = threading.RLock()

    def path(self, ino: int) -> str | None:
        """A path the node has now (None: none of its names is known any longer)."""
        if ino == ROOT:
            return "/"
        node = self.nodes.get(ino)
        if node is None:
            return None
        for parent, name in list(node.names):
            base = self.path(parent) if parent != ino else None
            if base is not None:
                return join(base, name)
        return None

    def key(self, ino: int) -> tuple[int, int] | None:
        node = self.nodes.get(ino)
        return node.key if node is not None else None

    def remember(self, parent: int, name: str, key: tuple[int, int], *, count: bool = True) -> int:
        """The node of inode ``key`` just found as ``name`` in ``parent`` (``count``: the
        kernel is told of it, one more lookup)."""
        with self.lock:
            ino = ROOT if key == self.nodes[ROOT].key else self.by_key.get(key)
            if ino is None:
                ino = self._next
                self._next += 1
                self.nodes[ino] = Node(key)
                self.by_key[key] = ino
            node = self.nodes[ino]
            old = self.entries.get((parent, name))
            if old is not None and old != ino:
                self.drop_name(parent, name)
            if (parent, name) not in node.names and ino != ROOT:
                node.names.insert(0, (parent, name))
                self.entries[(parent, name)] = ino
            if count:
                node.lookups += 1
            return ino

    def counted(self, ino: int) -> None:
        """One more lookup of a node :meth:`remember` returned uncounted (it reached the kernel)."""
        with self.lock:
            self.nodes[ino].lookups += 1

    def drop_name(self, parent: int, name: str) -> None:
        """``name`` in ``parent`` is gone (or names another file now). A node left without
        names is detached from its key: the file was removed, and a new file given its inode
        number (ext4 reuses them at once) is a new node, not the removed file's kernel inode
        with its cached size and pages; the old node lives on for its open files until the
        kernel forgets it."""
        with self.lock:
            ino = self.entries.pop((parent, name), None)
            node = self.nodes.get(ino) if ino is not None else None
            if node is not None:
                with contextlib.suppress(ValueError):
                    node.names.remove((parent, name))
                if not node.names and self.by_key.get(node.key) == ino:
                    del self.by_key[node.key]

    def moved(self, parent: int, name: str, newparent: int, newname: str) -> None:
        """A rename: what ``newname`` named is gone, ``name``'s node is now called ``newname``."""
        with self.lock:
            ino = self.entries.get((parent, name))
            self.drop_name(newparent, newname)
            self.drop_name(parent, name)
            node = self.nodes.get(ino) if ino is not None else None
            if node is not None:
                node.names.insert(0, (newparent, newname))
                self.entries[(newparent, newname)] = ino  # type: ignore[assignment]
                self.by_key.setdefault(node.key, ino)  # type: ignore[arg-type]

    def forget(self, ino: int, n: int) -> None:
        """The kernel dropped ``n`` lookups of ``ino``; at zero the node is gone."""
        with self.lock:
            node = self.nodes.get(ino)
            if node is None or ino == ROOT:
                return
            node.lookups -= n
            if node.lookups <= 0:
                del self.nodes[ino]
                if self.by_key.get(node.key) == ino:
                    del self.by_key[node.key]
                for entry in node.names:
                    if self.entries.get(entry) == ino:
                        del self.entries[entry]
