"""Reusable buffers for one group of data nodes, laid out for ``encrypt_into``/``decrypt_into``.

A sealed node is its 4096 bytes of ciphertext followed by its 16-byte tag, which is the layout
AES-GCM writes and reads, so nodes go between the disk, the cipher and the plaintext without a
copy. Used by the streaming paths (:mod:`pfs.stream`) and by the random-access reader.
"""

from __future__ import annotations

import threading

from .layout import DATA_ENTRIES_PER_MHT, ENTRY_SIZE, KEY_SIZE, MAC_SIZE, NODE_SIZE

SEALED_SIZE = NODE_SIZE + MAC_SIZE


class NodeBuffer:
    """Room for one group's 96 nodes, with a prepared memoryview of each node slot.

    ``stride`` is 4096 for plaintext, or 4112 for sealed nodes (ciphertext followed by its tag).
    """

    def __init__(self, stride: int):
        self.stride = stride
        self.buf = bytearray(DATA_ENTRIES_PER_MHT * stride)
        view = memoryview(self.buf)
        self.nodes = [view[i * stride:(i + 1) * stride] for i in range(DATA_ENTRIES_PER_MHT)]
        self.bodies = [view[i * stride:i * stride + NODE_SIZE] for i in range(DATA_ENTRIES_PER_MHT)]
        self.view = view

    def tags(self, count: int) -> bytes:
        """The 16-byte tags of the first ``count`` sealed nodes, concatenated."""
        out = bytearray(count * MAC_SIZE)
        for k in range(MAC_SIZE):
            out[k::MAC_SIZE] = self.buf[NODE_SIZE + k:count * self.stride:self.stride]
        return bytes(out)

    def set_tags(self, entries: bytes | bytearray, count: int, start: int = 0) -> None:
        """Put the tags of ``count`` MHT entries (from byte ``start`` of ``entries``) after their
        sealed nodes."""
        end = count * self.stride
        stop = start + count * ENTRY_SIZE
        for k in range(MAC_SIZE):
            self.buf[NODE_SIZE + k:end:self.stride] = entries[start + KEY_SIZE + k:stop:ENTRY_SIZE]


_per_thread = threading.local()


def sealed_scratch() -> NodeBuffer:
    """This thread's scratch buffer for sealed nodes (one per thread, however many files are open)."""
    buf = getattr(_per_thread, "sealed", None)
    if buf is None:
        buf = _per_thread.sealed = NodeBuffer(SEALED_SIZE)
    return buf
