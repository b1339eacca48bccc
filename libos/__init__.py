"""Library OS booted from a Gramine-syntax manifest: processes, descriptor tables and a POSIX
system-call API that behaves like Linux.

``LibOS`` and the process classes (which pull in the whole VFS) are imported on first use, so
that ``libos.manifest`` or ``libos.binding`` can be used without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .libos import LibOS
    from .process import AT_FDCWD, FdTable, Process

# name -> the submodule that defines it, imported on first access
_LAZY = {"LibOS": "libos", "AT_FDCWD": "process", "FdTable": "process", "Process": "process"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["AT_FDCWD", "FdTable", "LibOS", "Process"]
