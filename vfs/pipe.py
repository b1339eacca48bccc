"""The in-memory pipe shared by ``pipe2()`` and FIFOs (named pipes), with Linux semantics.

A :class:`Pipe` is the buffer and the reader/writer bookkeeping only; the VFS wraps it in open file
descriptions (which hold ``O_NONBLOCK``) and turns ``EPIPE`` into ``SIGPIPE`` where needed.

Semantics follow Linux ``pipe(7)``/``fifo(7)`` and ``fs/pipe.c``:

* ``read`` returns what is buffered (up to ``size``) without waiting; on an empty pipe it returns
  ``b""`` when no writer is left (EOF), raises ``EAGAIN`` when non-blocking, or waits.
* ``write`` of at most :data:`PIPE_BUF` bytes is atomic: all of it goes in at once, never
  interleaved with other writes. Larger writes may be split; a blocking one writes what fits and
  waits for room until it is done, returning the partial count if the last reader goes away after
  some bytes went in (``EPIPE`` if none did). Writing to a pipe with no readers raises ``EPIPE``; a
  zero-length write returns 0 before that check, as Linux does.
* Capacity defaults to 65536 bytes; :meth:`Pipe.set_capacity` implements ``F_SETPIPE_SZ``.

The buffer is modelled as Linux keeps it: a ring of ``capacity // PAGE_SIZE`` page slots. A write
first merges its sub-page remainder (``len % PAGE_SIZE`` bytes) into the last page when it fits there,
then fills fresh pages of up to ``PAGE_SIZE`` bytes; a page's slot is freed only when it has been
read completely. So the bytes that fit depend on how they were written, exactly as in the kernel
(sixteen 1-byte writes share one page; sixteen 4095-byte writes fill the pipe).

FIFO open protocol for the VFS (Linux ``fifo_open``)::

    O_RDONLY:  pipe.open_reader(); pipe.wait_for_writer(nonblock=nb)
    O_WRONLY:  pipe.open_writer(); pipe.wait_for_reader(nonblock=nb)   # on ENXIO: pipe.close_writer()
    O_RDWR:    pipe.open_reader(); pipe.open_writer()                  # never blocks

As in Linux, the partner check is tied to this thread's own open: a wait returns if a partner was
open at that moment or has opened since (Linux's ``r_counter``/``w_counter``), so a partner that
opens and closes again in between still releases the opener. ``pipe2()`` just calls
``open_reader()`` and ``open_writer()``.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import deque

__all__ = ["DEFAULT_CAPACITY", "PAGE_SIZE", "PIPE_BUF", "PIPE_MAX_SIZE", "Pipe", "round_pipe_size"]

PIPE_BUF = 4096
"""Writes of at most this many bytes are atomic."""

DEFAULT_CAPACITY = 65536
"""Linux's default pipe size (16 pages)."""

PAGE_SIZE = 4096
"""Pipe sizes are whole pages, and at least one."""

PIPE_MAX_SIZE = 1048576
"""Linux's default ``/proc/sys/fs/pipe-max-size``: the largest ``F_SETPIPE_SZ`` for unprivileged callers."""

_MAX_ROUNDABLE = 1 << 31  # round_pipe_size() gives up above this (EINVAL)


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def round_pipe_size(size: int) -> int:
    """Round a requested pipe size the way Linux's ``round_pipe_size`` does (power of two, >= a page).

    Raises ``EINVAL`` for sizes that are negative or above 2**31 (Linux sees a negative ``int`` as a
    huge unsigned value).
    """
    if size < 0 or size > _MAX_ROUNDABLE:
        raise _error(errno.EINVAL)
    if size < PAGE_SIZE:
        return PAGE_SIZE
    return 1 << (size - 1).bit_length()


class Pipe:
    """A kernel-style pipe buffer shared by read ends and write ends.

    Thread-safe: any number of threads may read, write, open and close concurrently. Blocking calls
    wait on condition variables and are released by the other side (data, room, or the last
    partner closing).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        """Create an empty pipe with no readers or writers.

        ``capacity`` is rounded like ``F_SETPIPE_SZ`` (a power of two of at least one page).
        """
        self._capacity = round_pipe_size(capacity)
        self._slots: deque[list] = deque()  # [page bytes, read position]; at most _capacity // PAGE_SIZE
        self._bytes = 0
        self._readers = 0
        self._writers = 0
        self._r_counter = 0  # reader opens ever (Linux r_counter)
        self._w_counter = 0  # writer opens ever (Linux w_counter)
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)  # data arrived or the last writer left
        self._writable = threading.Condition(self._lock)  # room freed or the last reader left
        self._partner = threading.Condition(self._lock)  # a reader or writer opened
        self._local = threading.local()  # per-thread counter snapshots taken at open

    def __repr__(self) -> str:
        return (f"<Pipe {self._bytes}/{self._capacity} bytes in {len(self._slots)} pages, "
                f"{self._readers} readers, {self._writers} writers>")

    # ----------------------------------------------------------------- ends

    def open_reader(self) -> None:
        """Count a read end (a FIFO opened for reading, or ``pipe2``'s ``fd[0]``)."""
        with self._lock:
            self._readers += 1
            self._r_counter += 1
            # fifo_open checks for a partner atomically with the count: remember what it saw
            self._local.w_seen = None if self._writers else self._w_counter
            self._partner.notify_all()

    def open_writer(self) -> None:
        """Count a write end (a FIFO opened for writing, or ``pipe2``'s ``fd[1]``)."""
        with self._lock:
            self._writers += 1
            self._w_counter += 1
            self._local.r_seen = None if self._readers else self._r_counter
            self._partner.notify_all()

    def close_reader(self) -> None:
        """Drop a read end; when the last one goes, blocked writers wake and get ``EPIPE``."""
        with self._lock:
            if self._readers <= 0:
                raise RuntimeError("close_reader() without a matching open_reader()")
            self._readers -= 1
            if self._readers == 0:
                self._writable.notify_all()

    def close_writer(self) -> None:
        """Drop a write end; when the last one goes, blocked readers wake and see EOF."""
        with self._lock:
            if self._writers <= 0:
                raise RuntimeError("close_writer() without a matching open_writer()")
            self._writers -= 1
            if self._writers == 0:
                self._readable.notify_all()

    def wait_for_writer(self, *, nonblock: bool) -> None:
        """FIFO ``open(O_RDONLY)``: wait for a writer, unless one was open at our ``open_reader()``.

        Returns once a writer exists or has opened since then. With ``nonblock`` it returns at once
        (POSIX: a non-blocking read open always succeeds).
        """
        with self._lock:
            seen = self._local.__dict__.pop("w_seen", self._w_counter)
            if seen is None or nonblock or self._writers:
                return
            while self._w_counter == seen:
                self._partner.wait()

    def wait_for_reader(self, *, nonblock: bool) -> None:
        """FIFO ``open(O_WRONLY)``: wait for a reader, unless one was open at our ``open_writer()``.

        Returns once a reader exists or has opened since then. With ``nonblock`` and no reader,
        raises ``ENXIO`` instead (the caller then drops its write end).
        """
        with self._lock:
            seen = self._local.__dict__.pop("r_seen", self._r_counter)
            if seen is None or self._readers:
                return
            if nonblock:
                raise _error(errno.ENXIO)
            while self._r_counter == seen:
                self._partner.wait()

    # ------------------------------------------------------------------ I/O

    def read(self, size: int, *, nonblock: bool) -> bytes:
        """Read up to ``size`` bytes.

        Returns buffered data at once (possibly fewer than ``size`` bytes); ``b""`` for ``size == 0``
        or at EOF (empty, no writers). An empty pipe with writers raises ``EAGAIN`` when ``nonblock``,
        otherwise blocks until data arrives or the last writer closes.
        """
        if size < 0:
            raise _error(errno.EINVAL)
        if size == 0:
            return b""
        with self._lock:
            while not self._slots:
                if not self._writers:
                    return b""
                if nonblock:
                    raise _error(errno.EAGAIN)
                self._readable.wait()
            out = bytearray()
            slots = self._slots
            while slots and len(out) < size:
                slot = slots[0]
                page, pos = slot
                end = min(len(page), pos + size - len(out))
                out += page[pos:end]
                if end == len(page):
                    slots.popleft()
                else:
                    slot[1] = end
            self._bytes -= len(out)
            self._writable.notify_all()
            return bytes(out)

    def write(self, data: bytes | bytearray | memoryview, *, nonblock: bool) -> int:
        """Write ``data`` and return the number of bytes written.

        Raises ``EPIPE`` (:class:`BrokenPipeError`) when there are no readers (unless ``data`` is
        empty: that returns 0). Up to :data:`PIPE_BUF` bytes go in atomically: all at once when there
        is room, else ``EAGAIN`` (``nonblock``) or a wait for room for all of it. Larger writes take
        what fits: non-blocking returns the partial count (``EAGAIN`` if nothing fit); blocking
        continues until done, or returns the partial count if the last reader closes mid-way.
        """
        view = memoryview(data).cast("B")
        total = view.nbytes
        if total == 0:
            return 0
        with self._lock:
            if not self._readers:
                raise _error(errno.EPIPE)
            written = 0
            # Linux pipe_write: the sub-page remainder goes into the last page if it fits there...
            chars = total & (PAGE_SIZE - 1)
            if chars and self._slots:
                last = self._slots[-1][0]
                if len(last) + chars <= PAGE_SIZE:
                    last += view[:chars]
                    written = self._bytes_in(chars)
                    if written == total:
                        return total
            # ...then whole pages into free slots; up to PIPE_BUF bytes always land in one slot.
            while True:
                if not self._readers:
                    if written:
                        return written
                    raise _error(errno.EPIPE)
                if len(self._slots) < self._capacity // PAGE_SIZE:
                    n = min(PAGE_SIZE, total - written)
                    self._slots.append([bytearray(view[written:written + n]), 0])
                    written += self._bytes_in(n)
                    if written == total:
                        return total
                    continue
                if nonblock:
                    if written:
                        return written
                    raise _error(errno.EAGAIN)
                self._writable.wait()

    def _bytes_in(self, n: int) -> int:
        """Account ``n`` newly buffered bytes and wake readers; returns ``n``. Lock held."""
        self._bytes += n
        self._readable.notify_all()
        return n

    # ---------------------------------------------------------------- state

    @property
    def readers(self) -> int:
        """Number of open read ends."""
        return self._readers

    @property
    def writers(self) -> int:
        """Number of open write ends."""
        return self._writers

    @property
    def available(self) -> int:
        """Bytes buffered (``FIONREAD``)."""
        return self._bytes

    @property
    def capacity(self) -> int:
        """Buffer size in bytes (``F_GETPIPE_SZ``)."""
        return self._capacity

    def set_capacity(self, size: int, *, privileged: bool = False) -> int:
        """``F_SETPIPE_SZ``: resize the buffer and return the new capacity.

        ``size`` is rounded up to a power of two of at least one page. Raises ``EINVAL`` for a size
        Linux cannot round, ``EPERM`` above :data:`PIPE_MAX_SIZE` unless ``privileged``
        (``CAP_SYS_RESOURCE``), and ``EBUSY`` if more pages are in use than the new size holds.
        """
        new = round_pipe_size(size)
        if new > PIPE_MAX_SIZE and not privileged:
            raise _error(errno.EPERM)
        with self._lock:
            if len(self._slots) > new // PAGE_SIZE:
                raise _error(errno.EBUSY)
            grew = new > self._capacity
            self._capacity = new
            if grew:
                self._writable.notify_all()
            return new

    def poll_state(self) -> tuple[bool, bool]:
        """``(readable, writable)`` for select/poll.

        Readable: data is buffered, or no writer is left (``POLLHUP``; a FIFO that has never had a
        writer is the VFS's to special-case). Writable: a page slot is free (so any write of up to
        :data:`PIPE_BUF` bytes goes in at once), or no reader is left (``POLLERR``).
        """
        with self._lock:
            readable = bool(self._slots) or not self._writers
            writable = len(self._slots) < self._capacity // PAGE_SIZE or not self._readers
            return readable, writable
