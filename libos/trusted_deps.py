"""``--trusted-deps``: the entry point of a manifest and its shared libraries as trusted files.

The entry point (``libos.entrypoint``) is taken through the manifest's chroot mounts to its host
file; a script (``#!``) brings its interpreter; :func:`libos.elf_deps.closure` gives the libraries
``ld.so`` loads. Every file is added under the name ``ld.so`` opens it by, each name its symbolic
links lead to and its real path: Gramine checks a trusted file by the name opened, pfskit's
``libos run`` by the path its VFS resolves the links to.
"""

from __future__ import annotations

import errno
import os
import posixpath
from pathlib import Path

from .elf_deps import ElfDepsError, Resolver, closure

__all__ = ["add_trusted_deps", "host_path"]


def host_path(data: dict, inside: str) -> str:
    """Where the LibOS path ``inside`` comes from: through the chroot mount (``fs.mounts``, or
    ``fs.root``, by default ``file:.``) with the longest path covering it."""
    fs = data.get("fs") if isinstance(data.get("fs"), dict) else {}
    root = fs.get("root") if isinstance(fs.get("root"), dict) else {}
    mounts = [("/", root.get("uri", "file:."))] if root.get("type", "chroot") == "chroot" else []
    for mount in fs.get("mounts") or ():
        if isinstance(mount, dict) and mount.get("type", "chroot") == "chroot" and isinstance(mount.get("path"), str):
            mounts.append((posixpath.normpath(mount["path"]), mount.get("uri", "")))
    inside = posixpath.normpath(inside)
    best: tuple[str, str] | None = None
    for path, uri in mounts:
        covers = path == "/" or inside == path or inside.startswith(path + "/")
        if covers and isinstance(uri, str) and uri.startswith("file:") and (best is None or len(path) > len(best[0])):
            best = (path, uri)
    if best is None:
        raise ElfDepsError(f"libos.entrypoint: no chroot mount of the manifest covers {inside}", key="libos.entrypoint")
    rest = posixpath.relpath(inside, best[0])
    host = best[1][len("file:"):]
    return posixpath.normpath(host if rest == "." else posixpath.join(host, rest))


def _interpreter_of_script(real: str) -> str | None:
    try:
        with open(real, "rb") as file:
            head = file.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return os.fsdecode(words[0]) if words else None


def add_trusted_deps(data: dict, *, chroot: Path | None = None) -> list[str]:
    """Add ``libos.entrypoint`` (its host file, through the manifest's mounts) and its shared-library
    closure to ``sgx.trusted_files`` (URIs already listed are not added again); returns the paths.

    A script (``#!``) brings its interpreter and the interpreter's closure. A file named through
    symbolic links is added under the names its links lead to and its real path too
    (``/lib64/ld-linux-x86-64.so.2``, ``/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2``,
    ``/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2``).
    """
    entry = (data.get("libos") or {}).get("entrypoint")
    if not isinstance(entry, str) or not entry:
        raise ElfDepsError("libos.entrypoint: --trusted-deps needs the entry point (a path)", key="libos.entrypoint")
    entry = entry.removeprefix("file:")
    program = host_path(data, entry) if posixpath.isabs(entry) else entry
    res = Resolver(Path(chroot) if chroot is not None else None, None)
    if not os.path.isfile(res.real(program)):
        raise ElfDepsError(f"libos.entrypoint: {entry} (host file {program}) does not exist or is not a file",
                           errno=errno.ENOENT, key="libos.entrypoint")
    files = [program]
    interpreter = _interpreter_of_script(res.real(program))
    if interpreter is not None:
        files.append(interpreter)
        program = interpreter
    files += closure(program, root=res.root, cache=res.cache)
    # a name through symbolic links is listed under the names its links lead to and its real path
    # as well: Gramine checks the name opened, pfskit's libos run the path its VFS resolves it to
    files = [alias for path in files for alias in res.aliases(path)]
    items = data.setdefault("sgx", {}).setdefault("trusted_files", [])
    listed = {item if isinstance(item, str) else item.get("uri") for item in items if isinstance(item, str | dict)}
    added = []
    for path in files:
        uri = f"file:{posixpath.normpath(path)}"
        if uri not in listed:
            listed.add(uri)
            items.append({"uri": uri})
            added.append(posixpath.normpath(path))
    return added
