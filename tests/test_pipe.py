"""vfs.pipe.Pipe against the real kernel: the same scenarios on ``os.pipe2()``/``os.mkfifo`` and on ours.

Each differential test runs one scenario on both and asserts the same outcomes (values or errno
names), and also the expected Linux outcome, so a shared mistake still fails.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import termios
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from vfs.pipe import DEFAULT_CAPACITY, PIPE_BUF, PIPE_MAX_SIZE, Pipe, round_pipe_size

PAGE = 4096
BLOCK_CHECK = 0.2  # how long a thread must stay blocked to count as blocked
DONE_TIMEOUT = 5.0  # how long a released thread may take to finish


# --------------------------------------------------------------------------- the two pipes


class KernelPipe:
    """A kernel pipe behind the Pipe API: one fd per open end; O_NONBLOCK set per call."""

    def __init__(self) -> None:
        r, w = os.pipe2(os.O_CLOEXEC)
        self.rfds = [r]
        self.wfds = [w]

    def open_reader(self) -> None:
        self.rfds.append(os.dup(self.rfds[0]))

    def open_writer(self) -> None:
        self.wfds.append(os.dup(self.wfds[0]))

    def close_reader(self) -> None:
        os.close(self.rfds.pop())

    def close_writer(self) -> None:
        os.close(self.wfds.pop())

    def read(self, size: int, *, nonblock: bool) -> bytes:
        os.set_blocking(self.rfds[0], not nonblock)
        return os.read(self.rfds[0], size)

    def write(self, data: bytes, *, nonblock: bool) -> int:
        os.set_blocking(self.wfds[0], not nonblock)
        return os.write(self.wfds[0], data)

    @property
    def capacity(self) -> int:
        return fcntl.fcntl(self._any_fd(), fcntl.F_GETPIPE_SZ)

    @property
    def available(self) -> int:
        return struct.unpack("i", fcntl.ioctl(self._any_fd(), termios.FIONREAD, b"\0" * 4))[0]

    def set_capacity(self, size: int) -> int:
        return fcntl.fcntl(self._any_fd(), fcntl.F_SETPIPE_SZ, size)

    def poll_state(self) -> tuple[bool | None, bool | None]:
        """(readable, writable) from poll(2); None for an end that is closed."""
        readable = writable = None
        if self.rfds:
            readable = bool(_poll(self.rfds[0], select.POLLIN) & (select.POLLIN | select.POLLHUP))
        if self.wfds:
            writable = bool(_poll(self.wfds[0], select.POLLOUT) & (select.POLLOUT | select.POLLERR))
        return readable, writable

    def _any_fd(self) -> int:
        return (self.rfds or self.wfds)[0]

    def close_all(self) -> None:
        while self.wfds:
            self.close_writer()
        while self.rfds:
            self.close_reader()


class OurPipe(Pipe):
    """Our Pipe set up as ``pipe2()`` does (one reader, one writer); closes what is left at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.open_reader()
        self.open_writer()

    def poll_state(self) -> tuple[bool | None, bool | None]:
        readable, writable = super().poll_state()
        return (readable if self.readers else None), (writable if self.writers else None)

    def close_all(self) -> None:
        while self.writers:
            self.close_writer()
        while self.readers:
            self.close_reader()


def _poll(fd: int, events: int) -> int:
    poller = select.poll()
    poller.register(fd, events)
    result = poller.poll(0)
    return result[0][1] if result else 0


@pytest.fixture
def pipes():
    """Factory for pipes of either kind; every pipe made is closed at teardown (releasing stuck threads)."""
    made = []

    def make(kind: str):
        pipe = KernelPipe() if kind == "kernel" else OurPipe()
        made.append(pipe)
        return pipe

    yield make
    for pipe in made:
        pipe.close_all()


def attempt(fn: Callable, *args, **kwargs):
    """The call's result, or the errno name it raised."""
    try:
        return fn(*args, **kwargs)
    except OSError as exc:
        return errno.errorcode[exc.errno]


def differential(pipes, scenario: Callable) -> list:
    """Run ``scenario(pipe)`` on a kernel pipe and on ours; assert equal outcome lists; return them."""
    kernel = scenario(pipes("kernel"))
    ours = scenario(pipes("ours"))
    assert ours == kernel
    return ours


def fill_pages(pipe, pages: int) -> None:
    for _ in range(pages):
        assert pipe.write(b"f" * PAGE, nonblock=True) == PAGE


# --------------------------------------------------------------------------- single-threaded semantics


def test_eof_after_last_writer_closes(pipes):
    def scenario(p):
        p.open_writer()  # two writers: EOF needs both gone
        out = [p.write(b"abc", nonblock=False)]
        p.close_writer()
        out.append(attempt(p.read, 10, nonblock=True))
        out.append(attempt(p.read, 10, nonblock=True))  # one writer left: empty is EAGAIN, not EOF
        p.close_writer()
        out.append(p.read(10, nonblock=False))  # no writers: EOF at once, no blocking
        out.append(p.read(10, nonblock=True))
        return out

    assert differential(pipes, scenario) == [3, b"abc", "EAGAIN", b"", b""]


def test_reads_return_what_is_buffered(pipes):
    def scenario(p):
        out = [attempt(p.read, 10, nonblock=True)]
        p.write(b"0123456789", nonblock=True)
        out.append(p.read(4, nonblock=False))
        out.append(p.read(100, nonblock=False))  # partial read, no waiting for more
        p.write(b"x" * PAGE, nonblock=True)
        p.write(b"tail", nonblock=True)
        out.append(len(p.read(5000, nonblock=False)))  # spans both writes
        out.append(attempt(p.read, 1, nonblock=True))
        return out

    assert differential(pipes, scenario) == ["EAGAIN", b"0123", b"456789", PAGE + 4, "EAGAIN"]


def test_zero_length_read_and_write(pipes):
    def scenario(p):
        out = [p.read(0, nonblock=False), p.write(b"", nonblock=False), p.write(b"", nonblock=True)]
        p.close_reader()
        out.append(attempt(p.write, b"", nonblock=False))  # 0 before the no-reader check
        out.append(attempt(p.write, memoryview(b""), nonblock=True))
        return out

    assert differential(pipes, scenario) == [b"", 0, 0, 0, 0]


def test_epipe_without_readers(pipes):
    def scenario(p):
        p.open_reader()
        p.close_reader()
        out = [p.write(b"still one reader", nonblock=True)]
        p.close_reader()
        out += [attempt(p.write, b"x", nonblock=False), attempt(p.write, b"x", nonblock=True),
                attempt(p.write, b"y" * 3 * PAGE, nonblock=False), attempt(p.write, b"y" * 3 * PAGE, nonblock=True)]
        return out

    assert differential(pipes, scenario) == [16, "EPIPE", "EPIPE", "EPIPE", "EPIPE"]


def test_epipe_is_broken_pipe_error():
    p = OurPipe()
    p.close_reader()
    with pytest.raises(BrokenPipeError) as info:
        p.write(b"x", nonblock=False)
    assert info.value.strerror == os.strerror(errno.EPIPE)


def test_capacity_is_65536(pipes):
    def scenario(p):
        pages = 0
        while attempt(p.write, b"c" * PAGE, nonblock=True) == PAGE:
            pages += 1
            assert pages <= 1024
        out = [p.capacity, pages, attempt(p.write, b"c", nonblock=True)]
        p.read(PAGE, nonblock=True)
        out.append(attempt(p.write, b"c" * PAGE, nonblock=True))
        out.append(attempt(p.write, b"c", nonblock=True))
        return out

    assert differential(pipes, scenario) == [DEFAULT_CAPACITY, 16, "EAGAIN", PAGE, "EAGAIN"]
    assert Pipe().capacity == DEFAULT_CAPACITY == 65536


def test_small_writes_are_all_or_nothing(pipes):
    def scenario(p):
        fill_pages(p, 15)
        return [attempt(p.write, b"a" * 100, nonblock=True),
                attempt(p.write, b"b" * PIPE_BUF, nonblock=True),  # 3996 bytes free: EAGAIN, not partial
                attempt(p.write, b"c" * 100, nonblock=True),
                attempt(p.write, b"d" * 3896, nonblock=True),  # exactly fills
                attempt(p.write, b"e", nonblock=True)]

    assert differential(pipes, scenario) == [100, "EAGAIN", 100, 3896, "EAGAIN"]


def test_buffer_is_counted_in_pages(pipes):
    """Linux frees a page slot only when the page is read out; small writes merge into the last page."""

    def scenario(p):
        out = []
        for _ in range(16):
            out.append(p.write(b"1", nonblock=True))  # all in one page
        out.append(p.available)
        p.read(16, nonblock=True)
        for _ in range(16):
            out.append(p.write(b"s" * 4095, nonblock=True))  # each needs a fresh page
        out += [p.available, attempt(p.write, b"m", nonblock=True),  # fits the last page's tail
                attempt(p.write, b"m", nonblock=True), p.poll_state()]
        out.append(len(p.read(4094, nonblock=True)))  # one byte left in the first page: no slot freed
        out += [attempt(p.write, b"w", nonblock=True), p.poll_state()]
        out.append(p.read(1, nonblock=True))
        out += [attempt(p.write, b"w" * PIPE_BUF, nonblock=True), p.available]
        return out

    assert differential(pipes, scenario) == (
        [1] * 16 + [16] + [4095] * 16
        + [16 * 4095, 1, "EAGAIN", (True, False), 4094, "EAGAIN", (True, False), b"s", PIPE_BUF, 15 * 4095 + 1 + 4096])


def test_large_write_merges_its_remainder_first(pipes):
    def scenario(p):
        p.write(b"h" * 100, nonblock=True)
        big = b"R" * 50 + b"P" * (15 * PAGE)
        out = [attempt(p.write, big, nonblock=True), p.available, attempt(p.write, b"x", nonblock=True)]
        out.append(p.read(200, nonblock=True))  # the remainder sits right after the first write
        return out

    expected_head = b"h" * 100 + b"R" * 50 + b"P" * 50
    assert differential(pipes, scenario) == [15 * PAGE + 50, 15 * PAGE + 150, "EAGAIN", expected_head]


def test_large_nonblocking_write_is_partial(pipes):
    def scenario(p):
        fill_pages(p, 15)
        out = [attempt(p.write, b"L" * 10000, nonblock=True),  # only a page fits
               attempt(p.write, b"L" * 10000, nonblock=True)]  # nothing fits
        p.read(3 * PAGE, nonblock=True)
        out.append(attempt(p.write, b"M" * (PIPE_BUF + 1), nonblock=True))
        return out

    assert differential(pipes, scenario) == [PAGE, "EAGAIN", PIPE_BUF + 1]


def test_set_capacity_rounding_and_limits(pipes):
    sizes = [0, 1, 4095, 4096, 4097, 5000, 12289, 65536, 100000, PIPE_MAX_SIZE, PIPE_MAX_SIZE + 1, -1]
    # compare with the kernel as the privilege it grants us (root usually has CAP_SYS_RESOURCE)
    privileged = _has_cap_sys_resource() or _pipe_max_size() != PIPE_MAX_SIZE

    kernel = pipes("kernel")
    ours = pipes("ours")
    got_kernel = [attempt(kernel.set_capacity, n) for n in sizes]
    got_ours = [attempt(ours.set_capacity, n, privileged=privileged) for n in sizes]
    assert got_ours == got_kernel
    assert got_ours[:10] == [4096, 4096, 4096, 4096, 8192, 8192, 16384, 65536, 131072, 1048576]
    assert got_ours[-1] == "EINVAL"
    assert ours.capacity == kernel.capacity

    assert attempt(Pipe().set_capacity, PIPE_MAX_SIZE + 1) == "EPERM"
    assert Pipe().set_capacity(PIPE_MAX_SIZE + 1, privileged=True) == 2 * PIPE_MAX_SIZE
    assert [round_pipe_size(n) for n in (0, 4097, 1 << 31)] == [4096, 8192, 1 << 31]
    assert attempt(round_pipe_size, (1 << 31) + 1) == "EINVAL"


def test_set_capacity_busy_and_effect(pipes):
    def scenario(p):
        fill_pages(p, 3)
        out = [attempt(p.set_capacity, 8192), attempt(p.set_capacity, 4096), p.set_capacity(16384), p.capacity,
               attempt(p.write, b"x" * PAGE, nonblock=True), attempt(p.write, b"x" * PAGE, nonblock=True)]
        p.read(4 * PAGE, nonblock=True)
        out += [p.set_capacity(4096), attempt(p.write, b"y" * PAGE, nonblock=True),
                attempt(p.write, b"y", nonblock=True)]
        return out

    assert differential(pipes, scenario) == ["EBUSY", "EBUSY", 16384, 16384, PAGE, "EAGAIN", 4096, PAGE, "EAGAIN"]


def test_poll_state(pipes):
    def scenario(p):
        out = [p.poll_state()]
        p.write(b"z", nonblock=True)
        out.append(p.poll_state())
        p.read(1, nonblock=True)
        fill_pages(p, 15)
        out.append(p.poll_state())  # a page free: writable
        p.write(b"z", nonblock=True)
        out.append(p.poll_state())  # 4095 free: a small write could block
        p.read(PAGE, nonblock=True)
        out.append(p.poll_state())
        p.close_writer()
        out.append(p.poll_state())
        while p.read(PAGE, nonblock=True):
            pass
        out.append(p.poll_state())  # empty, no writers: POLLHUP
        return out

    assert differential(pipes, scenario) == [
        (False, True), (True, True), (True, True), (True, False), (True, True), (True, None), (True, None)]

    def no_reader(p):
        p.close_reader()
        return [p.poll_state()]

    assert differential(pipes, no_reader) == [(None, True)]  # POLLERR
    ours = OurPipe()
    ours.close_reader()
    assert Pipe.poll_state(ours) == (False, True)


def test_misuse():
    p = Pipe()
    with pytest.raises(RuntimeError):
        p.close_reader()
    with pytest.raises(RuntimeError):
        p.close_writer()
    with pytest.raises(OSError) as info:
        p.read(-1, nonblock=True)
    assert info.value.errno == errno.EINVAL


def test_accepts_any_byte_buffer():
    p = OurPipe()
    assert p.write(bytearray(b"ab"), nonblock=True) == 2
    assert p.write(memoryview(b"xcdx")[1:3], nonblock=True) == 2
    assert p.write(memoryview(bytes(8)).cast("I"), nonblock=True) == 8  # counted in bytes
    assert p.available == 12
    assert p.read(100, nonblock=True) == b"abcd" + bytes(8)
    assert p.available == 0


# --------------------------------------------------------------------------- blocking, with threads


class Background(threading.Thread):
    """Run ``fn`` in a daemon thread, keeping its result or exception."""

    def __init__(self, fn: Callable, *args, **kwargs) -> None:
        super().__init__(daemon=True)
        self.call = (fn, args, kwargs)
        self.result = self.error = None
        self.start()

    def run(self) -> None:
        fn, args, kwargs = self.call
        try:
            self.result = fn(*args, **kwargs)
        except BaseException as exc:
            self.error = exc

    def assert_blocked(self) -> None:
        self.join(BLOCK_CHECK)
        assert self.is_alive(), f"did not block: result={self.result!r} error={self.error!r}"

    def outcome(self):
        """Wait for the thread; its result or the errno name it raised."""
        self.join(DONE_TIMEOUT)
        assert not self.is_alive(), "still blocked"
        if isinstance(self.error, OSError):
            return errno.errorcode[self.error.errno]
        if self.error is not None:
            raise self.error
        return self.result


KINDS = ["kernel", "ours"]


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_reader_wakes_on_write(pipes, kind):
    p = pipes(kind)
    reader = Background(p.read, 100, nonblock=False)
    reader.assert_blocked()
    p.write(b"hello", nonblock=False)
    assert reader.outcome() == b"hello"


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_reader_wakes_on_last_writer_close(pipes, kind):
    p = pipes(kind)
    p.open_writer()
    reader = Background(p.read, 100, nonblock=False)
    reader.assert_blocked()
    p.close_writer()
    reader.assert_blocked()  # one writer left
    p.close_writer()
    assert reader.outcome() == b""


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_writer_wakes_on_read(pipes, kind):
    p = pipes(kind)
    fill_pages(p, 15)
    p.write(b"x", nonblock=True)
    writer = Background(p.write, b"w" * PIPE_BUF, nonblock=False)  # 4095 free: atomic write waits
    writer.assert_blocked()
    p.read(1, nonblock=False)
    writer.assert_blocked()  # still not room for all of it
    p.read(PAGE, nonblock=False)
    assert writer.outcome() == PIPE_BUF


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_writer_gets_epipe_on_last_reader_close(pipes, kind):
    p = pipes(kind)
    fill_pages(p, 16)
    p.open_reader()
    writer = Background(p.write, b"w" * 100, nonblock=False)
    writer.assert_blocked()
    p.close_reader()
    writer.assert_blocked()  # one reader left
    p.close_reader()
    assert writer.outcome() == "EPIPE"


@pytest.mark.parametrize("kind", KINDS)
def test_large_blocking_write_completes_as_reader_drains(pipes, kind):
    p = pipes(kind)
    fill_pages(p, 15)
    writer = Background(p.write, b"B" * (3 * PAGE), nonblock=False)
    writer.assert_blocked()
    received = b""
    while len(received) < 18 * PAGE:
        received += p.read(PAGE, nonblock=False)
    assert writer.outcome() == 3 * PAGE
    assert received == b"f" * (15 * PAGE) + b"B" * (3 * PAGE)


@pytest.mark.parametrize("kind", KINDS)
def test_large_blocking_write_returns_partial_count_when_readers_go(pipes, kind):
    p = pipes(kind)
    fill_pages(p, 15)
    writer = Background(p.write, b"B" * (3 * PAGE), nonblock=False)
    writer.assert_blocked()  # one page went in, then the pipe was full
    p.close_reader()
    assert writer.outcome() == PAGE


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_writes_up_to_pipe_buf_never_interleave(pipes, kind):
    """Several writers, each a distinct byte and record size <= PIPE_BUF; one reader reading odd sizes.

    Runs of byte k must be whole multiples of writer k's record size: a split record leaves a run
    boundary inside it.
    """
    p = pipes(kind)
    sizes = {ord("A"): PIPE_BUF, ord("B"): 4000, ord("C"): 2731, ord("D"): 1500, ord("E"): 1}
    records = 150

    def writer(byte: int, size: int) -> None:
        record = bytes([byte]) * size
        for _ in range(records):
            assert p.write(record, nonblock=False) == size

    chunks: list[bytes] = []

    def reader() -> None:
        for n in iter(lambda: 1 + len(chunks) % 7 * 1111, None):
            chunk = p.read(n, nonblock=False)
            if not chunk:
                return
            chunks.append(chunk)

    read_thread = Background(reader)
    writers = [Background(writer, byte, size) for byte, size in sizes.items()]
    for w in writers:
        assert w.outcome() is None
    p.close_writer()
    assert read_thread.outcome() is None

    stream = b"".join(chunks)
    assert len(stream) == records * sum(sizes.values())
    pos = 0
    while pos < len(stream):
        byte = stream[pos]
        end = pos
        while end < len(stream) and stream[end] == byte:
            end += 1
        assert (end - pos) % sizes[byte] == 0, f"record of {chr(byte)!r} split at offset {pos}"
        pos = end
    for byte, size in sizes.items():
        assert stream.count(byte) == records * size


# --------------------------------------------------------------------------- FIFO open


class Fifo:
    """A real FIFO; opened fds are closed at teardown."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fds: list[int] = []
        os.mkfifo(path)

    def open(self, flags: int) -> int:
        fd = os.open(self.path, flags | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd


@pytest.fixture
def fifo(tmp_path: Path):
    f = Fifo(tmp_path / "fifo")
    yield f
    for fd in f.fds:
        os.close(fd)


def _our_open(p: Pipe, mode: str, nonblock: bool) -> str:
    """The VFS's FIFO open protocol on our pipe; returns "ok" or raises."""
    if mode == "r":
        p.open_reader()
        p.wait_for_writer(nonblock=nonblock)
    else:
        p.open_writer()
        try:
            p.wait_for_reader(nonblock=nonblock)
        except OSError:
            p.close_writer()
            raise
    return "ok"


def test_fifo_nonblocking_opens(fifo):
    def kernel_open(flags):
        fifo.open(flags)
        return "ok"

    kernel = [attempt(kernel_open, os.O_WRONLY | os.O_NONBLOCK)]  # no reader: ENXIO
    rfd = fifo.open(os.O_RDONLY | os.O_NONBLOCK)  # succeeds without a writer
    kernel.append(os.read(rfd, 10))  # no writer: EOF
    kernel.append(attempt(kernel_open, os.O_WRONLY | os.O_NONBLOCK))  # now there is a reader
    kernel.append(attempt(os.read, rfd, 10))  # a writer exists: empty is EAGAIN

    p = Pipe()
    ours = [attempt(_our_open, p, "w", True)]
    assert p.writers == 0  # the failed open left no writer behind
    _our_open(p, "r", True)
    ours.append(p.read(10, nonblock=True))
    ours.append(attempt(_our_open, p, "w", True))
    ours.append(attempt(p.read, 10, nonblock=True))

    assert ours == kernel == ["ENXIO", b"", "ok", "EAGAIN"]
    assert (p.readers, p.writers) == (1, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_fifo_blocking_read_open_waits_for_writer(fifo, kind):
    p = Pipe()
    opener = Background(fifo.open, os.O_RDONLY) if kind == "kernel" else Background(_our_open, p, "r", False)
    opener.assert_blocked()
    if kind == "kernel":
        fifo.open(os.O_WRONLY)
    else:
        assert _our_open(p, "w", False) == "ok"
    assert opener.outcome() is not None


@pytest.mark.parametrize("kind", KINDS)
def test_fifo_blocking_write_open_waits_for_reader(fifo, kind):
    p = Pipe()
    opener = Background(fifo.open, os.O_WRONLY) if kind == "kernel" else Background(_our_open, p, "w", False)
    opener.assert_blocked()
    if kind == "kernel":
        fifo.open(os.O_RDONLY | os.O_NONBLOCK)
    else:
        assert _our_open(p, "r", True) == "ok"
    assert opener.outcome() is not None


@pytest.mark.parametrize("kind", KINDS)
def test_fifo_writer_that_opens_and_closes_still_releases_reader(fifo, kind):
    p = Pipe()
    opener = Background(fifo.open, os.O_RDONLY) if kind == "kernel" else Background(_our_open, p, "r", False)
    opener.assert_blocked()
    if kind == "kernel":
        os.close(os.open(fifo.path, os.O_WRONLY | os.O_NONBLOCK))
    else:
        _our_open(p, "w", True)
        p.close_writer()
    assert opener.outcome() is not None


def test_fifo_partner_between_count_and_wait():
    """Linux counts and checks under one lock; our two calls must behave the same in the gap."""
    p = Pipe()
    counted, go = threading.Event(), threading.Event()

    def reader_open() -> str:
        p.open_reader()
        counted.set()
        go.wait()
        p.wait_for_writer(nonblock=False)
        return "ok"

    opener = Background(reader_open)
    counted.wait()
    p.open_writer()  # a writer opens and leaves before the reader gets to wait
    p.close_writer()
    go.set()
    assert opener.outcome() == "ok"

    # a reader present at open_writer() time, gone before the wait: the open still succeeds
    p2 = Pipe()
    p2.open_reader()
    p2.open_writer()
    p2.close_reader()
    assert p2.wait_for_reader(nonblock=True) is None


def test_fifo_rdwr_never_blocks_and_pipe2_style():
    p = Pipe()
    p.open_reader()
    p.open_writer()
    assert (p.readers, p.writers) == (1, 1)
    assert p.write(b"self", nonblock=False) == 4
    assert p.read(10, nonblock=False) == b"self"


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def _pipe_max_size() -> int:
    return int(Path("/proc/sys/fs/pipe-max-size").read_text())
