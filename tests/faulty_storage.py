"""A Storage wrapper that injects a fault at the N-th mutating call (write_at, writev_at or truncate).

It offers the vectored calls production uses when a storage has them (``readv_at``,
``writev_at``, as :class:`pal.HostFile` does), so that faults land on the calls production
really makes: a ``writev_at`` is one mutating call (logged as ``"writev"`` with its offset and
total length), failed or dropped as a whole.

One :class:`FaultPlan` is shared by the wrappers of the main file and of the recovery
journal, so N counts across both, in the order the library issues them. Modes:

- ``"fail"``: the N-th call raises ``OSError(EIO)`` and does nothing; later calls go through.
- ``"stop"``: a power cut: the N-th call and every later mutating call (and fsync) are
  silently dropped; what the inner storage holds is what "survives".
"""

from __future__ import annotations

import errno

from pfs.storage import readv_through


class FaultPlan:
    def __init__(self, at: int | None = None, mode: str = "stop"):
        assert mode in ("fail", "stop")
        self.at = at
        self.mode = mode
        self.armed = True
        self.count = 0
        self.cut = False
        self.log: list[tuple] = []  # every counted call, with whether it was performed
        self.vector_reads = 0  # readv_at calls (not counted as mutating)

    def allow(self, what: tuple) -> bool:
        """Count one mutating call; return whether to perform it (or raise)."""
        if not self.armed:
            return True
        if self.cut:
            self.log.append((*what, "dropped"))
            return False
        self.count += 1
        if self.at is not None and self.count == self.at:
            if self.mode == "fail":
                self.log.append((*what, "failed"))
                raise OSError(errno.EIO, "injected I/O error")
            self.cut = True
            self.log.append((*what, "dropped"))
            return False
        self.log.append((*what, "done"))
        return True


class FaultyStorage:
    """A real Storage (read_at, readv_at, write_at, writev_at, truncate, fsync, size, free_space,
    close, name) around another one."""

    def __init__(self, inner, plan: FaultPlan, label: str, on_write=None):
        self.inner = inner
        self.plan = plan
        self.label = label
        self.name = inner.name
        self.on_write = on_write  # called after every performed write_at (for snapshots)

    def read_at(self, offset: int, size: int) -> bytes:
        return self.inner.read_at(offset, size)

    def write_at(self, offset: int, data) -> None:
        if self.plan.allow(("write", self.label, offset, len(data))):
            self.inner.write_at(offset, data)
            if self.on_write is not None:
                self.on_write(self, offset, bytes(data))

    def readv_at(self, offset: int, buffers) -> int:
        """Scatter-read through the inner storage's ``readv_at``, or its ``read_at``."""
        self.plan.vector_reads += 1
        return readv_through(self.inner, offset, buffers)

    def writev_at(self, offset: int, buffers) -> None:
        """Gather-write, as one mutating call."""
        data = b"".join(bytes(b) for b in buffers)
        if self.plan.allow(("writev", self.label, offset, len(data))):
            writev = getattr(self.inner, "writev_at", None)
            if writev is not None:
                writev(offset, buffers)
            else:
                self.inner.write_at(offset, data)
            if self.on_write is not None:
                self.on_write(self, offset, data)

    def free_space(self) -> int | None:
        free = getattr(self.inner, "free_space", None)
        return None if free is None else free()

    def truncate(self, size: int) -> None:
        if self.plan.allow(("truncate", self.label, size)):
            self.inner.truncate(size)

    def fsync(self) -> None:
        if not self.plan.cut:
            self.inner.fsync()

    def size(self) -> int:
        return self.inner.size()

    def close(self) -> None:
        self.inner.close()
