"""Path binding: how a file's bound path is derived, as Gramine's tools do it."""

from __future__ import annotations

import os
import posixpath

from .layout import RECOVERY_SUFFIX


def recovery_path(path: str | os.PathLike) -> str:
    """Where Gramine keeps the recovery journal of ``path``."""
    return os.fspath(path) + RECOVERY_SUFFIX


def normalize_bound_path(path: str) -> str:
    """Normalize ``path`` lexically like Gramine's ``get_norm_path``.

    ``./a//b/`` -> ``a/b``, ``a/../b`` -> ``b``; nothing is made absolute and symlinks are
    not resolved. A leading ``..`` that can't be folded is kept.
    """
    if not path:
        raise ValueError("empty path")
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return "" if norm == "." else norm


def bound_path_for(output_path: str, *, bind_path: str | None = None, bind_prefix: str | None = None,
                   relative_to: str | None = None) -> str:
    """The path a file written to ``output_path`` is bound to.

    ``bind_path`` wins; else ``bind_prefix`` joined with ``output_path`` relative to
    ``relative_to`` (the output tree's root); else the normalized output path.
    """
    if bind_path is not None:
        return bind_path
    if bind_prefix is not None:
        rel = posixpath.relpath(output_path, relative_to) if relative_to else posixpath.basename(output_path)
        return posixpath.join(bind_prefix, rel)
    return normalize_bound_path(output_path)
