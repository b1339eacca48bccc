"""Library OS booted from a Gramine-syntax manifest: processes, descriptor tables and a POSIX
system-call API that behaves like Linux."""

from .libos import LibOS
from .process import AT_FDCWD, FdTable, Process

__all__ = ["AT_FDCWD", "FdTable", "LibOS", "Process"]
