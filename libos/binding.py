"""Bound paths from a manifest: the path Gramine will check a file of an encrypted mount against.

Gramine opens a file of an encrypted mount through the URI ``<mount URI>/<path below the mount>``
and checks the protected file's bound path against that URI's path normalized lexically
(``get_norm_path``): the URI as the manifest writes it, relative stays relative, nothing is
resolved (``uri = "file:enc/"``: ``enc/a/b``). A single-file mount binds its file to the URI's
path. So a file made for a manifest must be bound to exactly that, whatever folder it is made in.

A host path is *covered* by an encrypted mount when it is the mount's host path or lies below it
(host paths as :func:`libos.manifest.load_manifest` resolves them: relative URIs against the
manifest's folder; compared lexically, then with symlinks resolved).
"""

from __future__ import annotations

import os
import posixpath

from pfs.paths import normalize_bound_path

from .errors import BindingError
from .manifest import Manifest, ManifestError, MountSpec, load_manifest

__all__ = ["bind_options_from_manifest", "bound_path_by_manifest", "covering_mount", "mount_bound_path"]


def mount_bound_path(spec: MountSpec, rel: str) -> str:
    """The path Gramine binds the file ``rel`` (below the encrypted mount ``spec``; "" for its root) to."""
    root = spec.uri_path if spec.uri_path is not None else (spec.uri or "")
    root = root or "."  # Gramine treats an empty URI path as "."
    return normalize_bound_path(root + "/" + rel if rel else root)


def _below(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` ("" when equal), or None when it is not at or below it."""
    root = root.rstrip("/") or "/"
    if path == root:
        return ""
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def covering_mount(manifest: Manifest, host_path: str) -> tuple[MountSpec, str] | None:
    """The encrypted mount (``fs.root`` or ``fs.mounts``) whose host path holds ``host_path``, and
    ``host_path`` relative to it ("" for the mount's own path); None when no encrypted mount does."""
    mounts = [m for m in ([manifest.root] if manifest.root else []) + list(manifest.mounts)
              if m.type == "encrypted" and m.uri]
    lexical = os.path.abspath(host_path)
    resolved = os.path.realpath(host_path)
    for path, resolve in ((lexical, False), (resolved, True)):
        for spec in mounts:
            assert spec.uri is not None
            rel = _below(path, os.path.realpath(spec.uri) if resolve else os.path.abspath(spec.uri))
            if rel is not None:
                return spec, rel
    return None


def _load(manifest: Manifest | str | os.PathLike[str]) -> Manifest:
    if isinstance(manifest, Manifest):
        return manifest
    try:
        return load_manifest(manifest)
    except ManifestError as exc:
        raise BindingError(f"{exc}; can't bind by it") from None


def bound_path_by_manifest(manifest: Manifest | str | os.PathLike[str], host_path: str) -> str:
    """The path the file at ``host_path`` must be bound to for ``manifest``: what its encrypted
    mount covering ``host_path`` opens it as. :class:`BindingError` when no encrypted mount covers
    it (or the manifest is invalid); ``OSError`` when the manifest can't be read."""
    m = _load(manifest)
    found = covering_mount(m, host_path)
    if found is None:
        where = m.source or "the manifest"
        mounts = [f"{s.path} (uri \"file:{s.uri_path}\")" for s in ([m.root] if m.root else []) + list(m.mounts)
                  if s.type == "encrypted"]
        known = f"its encrypted mounts: {', '.join(mounts)}" if mounts else "it has no encrypted mount"
        raise BindingError(f"no encrypted mount of {where} covers '{host_path}' ({known}); "
                           "write the output below the host folder of one of them")
    spec, rel = found
    return mount_bound_path(spec, posixpath.normpath(rel) if rel else "")


def bind_options_from_manifest(manifest: str | os.PathLike[str], output: str, *,
                               tree: bool) -> tuple[str | None, str | None]:
    """``(bind_path, bind_prefix)`` for ``pfs encrypt --manifest``: the output file's bound path,
    or for a tree the bound path of the output folder (each file: that prefix + its path below)."""
    bound = bound_path_by_manifest(manifest, output)
    return (None, bound) if tree else (bound, None)
