"""``/dev/attestation``'s SGX files (Gramine's ``libos/src/fs/dev/attestation.c``; sgx-sim.md (d)).

Present when the LibOS runs as an enclave (a signed manifest), beside ``keys/``:

=====================  ====  =============================================================
``attestation_type``   0444  ``none`` or ``dcap`` (``sgx.remote_attestation``), 4 bytes
``user_report_data``   0666  each ``write()`` replaces the stored 64 bytes (shorter data is
                             zero-padded, longer is cut); the descriptor then reads back what
                             it wrote; a fresh open reads nothing
``target_info``        0666  the same with 512 bytes
``my_target_info``     0444  this enclave's TARGETINFO (512 bytes)
``report``             0444  at open: EREPORT over the stored target_info and user_report_data
                             (432 bytes); an all-zero stored target_info gives a report for the
                             zero target and then becomes this enclave's own TARGETINFO
``quote``              0444  at open: a quote over the stored user_report_data (only with
                             ``sgx.remote_attestation = "dcap"``)
=====================  ====  =============================================================

Opening a read-only file for writing gives EACCES (root too, as in Gramine); a failure to make a
report or quote gives EACCES at open. Contents are made once per open; ``stat`` says size 0.
The stored values belong to the LibOS instance (Gramine keeps them per process).
"""

from __future__ import annotations

import errno
import os
import stat as st
import threading
from typing import Protocol

from .node import FileSystem, Handle, Inode, err

__all__ = ["AttestationProvider", "AttestationState", "attestation_entries"]

USER_REPORT_DATA_SIZE = 64
TARGET_INFO_SIZE = 512


class AttestationProvider(Protocol):
    """What the enclave offers the files (``pal.sgx.enclave.Enclave`` implements it)."""

    attestation_type: str

    def my_target_info(self) -> bytes:
        """This enclave's 512-byte TARGETINFO."""
        ...

    def report(self, target_info: bytes, report_data: bytes) -> bytes:
        """EREPORT for ``target_info`` (512 bytes) over ``report_data`` (64 bytes)."""
        ...

    def quote(self, report_data: bytes) -> bytes:
        """A quote over ``report_data`` (64 bytes)."""
        ...


class AttestationState:
    """The stored ``user_report_data`` and ``target_info`` (zeros until written), and the provider."""

    def __init__(self, provider: AttestationProvider):
        self.provider = provider
        self.lock = threading.Lock()
        self.user_report_data = bytes(USER_REPORT_DATA_SIZE)
        self.target_info = bytes(TARGET_INFO_SIZE)

    def make_report(self) -> bytes:
        with self.lock:
            target, data = self.target_info, self.user_report_data
        report = self.provider.report(target, data)
        if not any(target):  # Gramine's _PalAttestationReport: a zero target asks for our own
            with self.lock:
                if not any(self.target_info):
                    self.target_info = self.provider.my_target_info()
        return report


class _Snapshot(Handle):
    """Content made at open; reads by offset; never written."""

    direct_io = True  # st_size is 0: the kernel must not cache

    def __init__(self, content: bytes):
        self.content = content

    def read(self, offset: int, size: int) -> bytes:
        return self.content[offset:offset + size]

    def size(self) -> int:
        return len(self.content)


class _Stored(Handle):
    """``user_report_data`` / ``target_info``: each write replaces the stored value."""

    direct_io = True

    def __init__(self, state: AttestationState, attr: str, size: int):
        self.state, self.attr, self.limit = state, attr, size
        self.content = b""

    def read(self, offset: int, size: int) -> bytes:
        return self.content[offset:offset + size]

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        data = bytes(data)
        with self.state.lock:
            setattr(self.state, self.attr, data[:self.limit].ljust(self.limit, b"\0"))
        self.content = data
        return len(data)

    def truncate(self, size: int) -> None:
        self.content = self.content[:size]

    def size(self) -> int:
        return len(self.content)


class AttestationFile(Inode):
    """One file of the table above; ``make`` gives the content at open (read-only files) or
    ``stored`` names the stored value a writable file replaces."""

    def __init__(self, fs: FileSystem, state: AttestationState, name: str):
        writable = name in ("user_report_data", "target_info")
        super().__init__(fs, st.S_IFREG | (0o666 if writable else 0o444))
        self.state = state
        self.name = name

    def size(self) -> int:
        return 0

    def open(self, flags: int) -> Handle:
        state = self.state
        if self.name == "user_report_data":
            return _Stored(state, "user_report_data", USER_REPORT_DATA_SIZE)
        if self.name == "target_info":
            return _Stored(state, "target_info", TARGET_INFO_SIZE)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise err(errno.EACCES)
        if self.name == "attestation_type":
            return _Snapshot(state.provider.attestation_type.encode())
        try:
            if self.name == "my_target_info":
                return _Snapshot(state.provider.my_target_info())
            if self.name == "report":
                return _Snapshot(state.make_report())
            return _Snapshot(state.provider.quote(state.user_report_data))
        except OSError as exc:
            if exc.errno == errno.ENOMEM:
                raise
            raise err(errno.EACCES) from exc

    def truncate(self, size: int) -> None:
        if self.name not in ("user_report_data", "target_info"):
            raise err(errno.EACCES)


def attestation_entries(fs: FileSystem, provider: AttestationProvider) -> dict[str, Inode]:
    """The files of ``/dev/attestation`` (besides ``keys/``) for ``provider``."""
    state = AttestationState(provider)
    names = ["attestation_type", "user_report_data", "target_info", "my_target_info", "report"]
    if provider.attestation_type != "none":
        names.append("quote")
    return {name: AttestationFile(fs, state, name) for name in names}
