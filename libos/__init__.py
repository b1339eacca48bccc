"""Library OS booted from a Gramine-syntax manifest: processes, descriptor tables and a POSIX
system-call API that behaves like Linux.

``LibOS`` and the process classes (which pull in the whole VFS) are imported on first use, so
that ``libos.manifest`` or ``libos.binding`` can be used without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs.lazy_names import lazy_names

if TYPE_CHECKING:
    from .libos import LibOS
    from .process import AT_FDCWD, FdTable, Process

# name -> the submodule that defines it, imported on first access
_LAZY = {"LibOS": "libos", "AT_FDCWD": "process", "FdTable": "process", "Process": "process"}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())


__all__ = ["AT_FDCWD", "FdTable", "LibOS", "Process"]
