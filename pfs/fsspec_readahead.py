"""Decrypting ahead of sequential reads, in a thread, while the caller works on what it has.

pandas' CSV tokenizer and pyarrow's decoders run without the GIL, as does AES-GCM itself, so a
file read front to back (``pd.read_csv``) is decrypted chunk by chunk in one background thread,
``DEPTH`` chunks of ``CHUNK`` bytes ahead of the reader. Random reads go straight to the file.
The protected file is used under one lock, by one thread at a time.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from .fileio import PfsRawIO
from .protected_file import ProtectedFile

__all__ = ["CHUNK", "DEPTH", "ReadAheadRaw"]

CHUNK = 1 << 20
DEPTH = 4
SEQUENTIAL_AFTER = 2  # sequential reads seen before decrypting ahead starts


class ReadAheadRaw(PfsRawIO):
    """A read-only :class:`PfsRawIO` that decrypts ahead once reads are sequential."""

    def __init__(self, pf: ProtectedFile, **kwargs):
        super().__init__(pf, readable=True, writable=False, **kwargs)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[int, Future[bytes]] = {}  # chunk index -> its plaintext
        self._held: tuple[int, bytes] | None = None  # the chunk being consumed
        self._last_end = -1
        self._streak = 0

    def _decrypt_chunk(self, index: int) -> bytes:
        with self._lock:
            return self._pf.read(index * CHUNK, CHUNK)

    def _schedule(self, first: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="pfs-readahead")
        last = min(first + DEPTH, (self._pf.size + CHUNK - 1) // CHUNK)
        for index in range(first, last):
            if index not in self._ahead:
                self._ahead[index] = self._pool.submit(self._decrypt_chunk, index)

    def _drop_before(self, index: int) -> None:
        for old in [i for i in self._ahead if i < index or i >= index + DEPTH + 1]:
            self._ahead.pop(old).cancel()

    def readinto(self, b) -> int:
        self._checkClosed()
        pos = self._pos
        view = memoryview(b).cast("B")
        if pos == self._last_end:
            self._streak += 1
        else:
            self._streak = 0
        index = pos // CHUNK
        data = None
        if self._held is not None and self._held[0] == index:
            data = self._held[1]
        elif index in self._ahead:
            data = self._ahead.pop(index).result()
            self._held = (index, data)
        if data is None and self._streak < SEQUENTIAL_AFTER:
            with self._lock:
                n = self._pf.readinto(pos, view)
        elif data is None:
            data = self._decrypt_chunk(index)
            self._held = (index, data)
        if data is not None:
            start = pos - index * CHUNK
            n = max(0, min(len(view), len(data) - start))
            view[:n] = data[start:start + n]
            if self._streak >= SEQUENTIAL_AFTER:
                self._drop_before(index)
                self._schedule(index + 1)
        self._pos = pos + n
        self._last_end = self._pos
        return n

    def readall(self) -> bytes:
        chunks = []
        while True:
            chunk = self.read(CHUNK)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def discard(self) -> None:
        """Nothing to drop: the file is only read."""

    def close(self) -> None:
        if self.closed:
            return
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()
        self._held = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self._lock:
            super().close()
