"""The per-file operations of the ``pfs`` file commands (they run in worker processes too).

Inputs and outputs other than regular files:

- ``-`` names standard input or output. A FIFO, a pipe (``/dev/stdin``) or a terminal is a
  *stream*: read to its end. Plaintext from a stream is encrypted as it comes (its size is
  known at the end: the metadata node is written last); an encrypted stream is first copied
  into an unnamed temporary file (ciphertext only), since decryption needs random access.
- A FIFO is opened without blocking; if no writer is there yet a note says that the command
  waits for one (it never hangs without a word).
- Decrypting to standard output authenticates the whole file first and then writes it
  (re-checking every node), so no plaintext of a file that fails authentication is released.
  Encrypted output to standard output is made in an unnamed temporary file and copied out.
"""

from __future__ import annotations

import os
import select
import stat
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import click

from pal import HostFile
from pfs.errors import CorruptedNodeError
from pfs.inspect import read_full_info
from pfs.protected_file import ProtectedFile
from pfs.storage import BorrowedStorage
from pfs.stream import decrypt_stream, encrypt_stream

from .cli_support import STDIO, CliError, require_file
from .file_jobs import FileJob
from .outputs import AtomicOutput, check_output_target, default_mode, output_mode

CHUNK = 1 << 20

ProgressFn = Callable[[int], None] | None


# ---------------------------------------------------------------------- streams

def _write_all(fd: int, data: bytes | memoryview, what: str) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            raise CliError(f"{what} was closed before all the output was written; the output is "
                           "incomplete") from None
        view = view[n:]


def _open_stream(path: str) -> tuple[int, bool]:
    """``(fd, owned)`` for reading the stream ``path`` (``-``: standard input)."""
    if path == STDIO:
        return sys.stdin.fileno(), False
    try:
        st = os.stat(path)
    except OSError as exc:
        raise CliError(f"can't read input '{path}': {exc.strerror}") from None
    if stat.S_ISFIFO(st.st_mode):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise CliError(f"can't read input '{path}': {exc.strerror}") from None
        # With no writer yet a blocking read would see end-of-file at once: wait for data first.
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        if not poller.poll(0):
            click.echo(f"pfs: note: waiting for a program to write into the FIFO '{path}' "
                       "(Ctrl-C stops)", err=True)
            while not poller.poll(1000):
                pass
        os.set_blocking(fd, True)
        return fd, True
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY), True
    except OSError as exc:
        raise CliError(f"can't read input '{path}': {exc.strerror}") from None


def is_stream(path: str) -> bool:
    """Whether input ``path`` is read as a stream (``-``, a FIFO, a pipe, a device)."""
    if path == STDIO:
        return not stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode)
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path)
    except OSError:
        return False


def _read_chunks(fd: int, name: str) -> Any:
    """Yield the stream's data in chunks of up to CHUNK bytes, until end of file."""
    buf = bytearray()
    while True:
        try:
            piece = os.read(fd, CHUNK - len(buf))
        except OSError as exc:
            raise CliError(f"can't read input '{name}': {exc.strerror}") from None
        if piece:
            buf += piece
            if len(buf) < CHUNK:
                continue
        if buf:
            yield bytes(buf)
            buf.clear()
        if not piece:
            return


def _spool(path: str) -> HostFile:
    """The whole stream ``path`` (encrypted data) copied into an unnamed temporary file."""
    fd, owned = _open_stream(path)
    name = "standard input" if path == STDIO else path
    tmp = tempfile.TemporaryFile()  # noqa: SIM115 (handed over to the HostFile below)
    try:
        offset = 0
        for chunk in _read_chunks(fd, name):
            os.pwrite(tmp.fileno(), chunk, offset)
            offset += len(chunk)
        return HostFile.from_fd(os.dup(tmp.fileno()), name, writable=False)
    finally:
        tmp.close()
        if owned:
            os.close(fd)


def _encrypt_from_stream(path: str, out: HostFile, key: bytes, bound: str, *, sync: bool,
                         progress: ProgressFn) -> int:
    fd, owned = _open_stream(path)
    name = "standard input" if path == STDIO else path
    if os.isatty(fd):
        click.echo("pfs: note: reading the plaintext from the terminal; end it with Ctrl-D", err=True)
    try:
        pf = ProtectedFile.create(BorrowedStorage(out), key, bound)
        try:
            offset = 0
            for chunk in _read_chunks(fd, name):
                pf.write(offset, chunk)
                offset += len(chunk)
                if progress:
                    progress(len(chunk))
            pf.flush(sync=sync)
        finally:
            pf.close()
    finally:
        if owned:
            os.close(fd)
    return offset


def _open_input(path: str, role: str) -> tuple[HostFile, int | None]:
    """The input ``path`` for random access, and its mode (None for a stream)."""
    if path != STDIO:
        require_file(path, role)
    if is_stream(path):
        return _spool(path), None
    try:
        if path == STDIO:
            return HostFile.from_fd(os.dup(sys.stdin.fileno()), "standard input", writable=False), None
        src = HostFile(path)
    except OSError as exc:
        raise CliError(f"can't read {role} '{path}': {exc.strerror}") from None
    return src, os.fstat(src.fd).st_mode


def _copy_out(src: HostFile, what: str) -> None:
    offset = 0
    while chunk := src.read_at(offset, CHUNK):
        _write_all(sys.stdout.fileno(), chunk, what)
        offset += len(chunk)


# ---------------------------------------------------------------------- checks after a decryption

def file_facts(src: HostFile, key: bytes) -> dict[str, Any]:
    """The bound path and the trailing nodes of the (authenticated) file ``src``."""
    info = read_full_info(BorrowedStorage(src, readonly=True), key)
    return {"bound": info["bound_path"], "trailing": info["trailing_nodes"]}


def trailing_message(name: str, trailing: int) -> str:
    return (f"{name}: {trailing} trailing node{'s' if trailing != 1 else ''} ({trailing * 4096} bytes) after "
            "the nodes its size needs: data appended to it, or left by a tool that wrote it over a larger "
            "file; Gramine ignores them ('pfs rekey' rewrites the file without them)")


# ---------------------------------------------------------------------- operations

def op_encrypt(job: FileJob, *, progress: ProgressFn, key: bytes, force: bool, jobs: int,
               sync: bool = True) -> int:
    """Encrypt ``job.src`` (a file or a stream) to ``job.dst`` (a file or ``-``) bound to
    ``job.path``; return the plaintext size."""
    assert job.path is not None and job.dst is not None
    if job.src != STDIO:
        require_file(job.src, "input")
    if job.dst == STDIO:
        with tempfile.TemporaryFile() as tmp:
            out = HostFile.from_fd(os.dup(tmp.fileno()), "standard output", writable=True)
            with out:
                size = _encrypt_into(job, out, progress=progress, key=key, jobs=jobs, sync=False)
                _copy_out(out, "standard output")
        return size
    check_output_target(job.dst, force=force)
    mode = None if job.src == STDIO or is_stream(job.src) else os.stat(job.src).st_mode
    with AtomicOutput(job.dst, force=force, sync=sync, mode=output_mode(mode)) as out:
        size = _encrypt_into(job, out.file, progress=progress, key=key, jobs=jobs, sync=sync)
        out.commit()
    return size


def _encrypt_into(job: FileJob, out: HostFile, *, progress: ProgressFn, key: bytes, jobs: int,
                  sync: bool) -> int:
    assert job.path is not None
    if is_stream(job.src):
        return _encrypt_from_stream(job.src, out, key, job.path, sync=sync, progress=progress)
    src, _ = _open_input(job.src, "input")
    with src:
        return encrypt_stream(src, out, key, job.path, jobs=jobs, progress=progress)


def op_decrypt(job: FileJob, *, progress: ProgressFn, key: bytes, force: bool, jobs: int,
               sync: bool = True, strict: bool = False) -> dict[str, Any]:
    """Decrypt ``job.src`` (a file, a stream or ``-``) to ``job.dst`` (a file or ``-``), checking
    ``job.path`` if set; return ``{"size", "bound", "trailing"}``. ``strict``: trailing nodes
    are an error (no output)."""
    assert job.dst is not None
    if job.dst != STDIO:
        check_output_target(job.dst, force=force)
    src, mode = _open_input(job.src, "input")
    with src:
        if job.dst == STDIO:
            # Authenticate everything first; then write, re-checking each node as it is read.
            decrypt_stream(src, None, key, job.path, jobs=jobs)
            facts = _checked_facts(src, key, strict)
            pf = ProtectedFile.open(BorrowedStorage(src, readonly=True), key, job.path)
            offset = 0
            while chunk := pf.read(offset, CHUNK):
                _write_all(sys.stdout.fileno(), chunk, "standard output")
                offset += len(chunk)
                if progress:
                    progress(len(chunk))
            return {"size": offset, **facts}
        with AtomicOutput(job.dst, force=force, sync=sync,
                          mode=output_mode(mode) if mode is not None else default_mode()) as out:
            size = decrypt_stream(src, out.file, key, job.path, jobs=jobs, progress=progress)
            facts = _checked_facts(src, key, strict)
            out.commit()
    return {"size": size, **facts}


def _checked_facts(src: HostFile, key: bytes, strict: bool) -> dict[str, Any]:
    facts = file_facts(src, key)
    if strict and facts["trailing"]:
        raise CliError(trailing_message(src.name, facts["trailing"]) + "; --strict refuses it")
    return facts


def op_verify(job: FileJob, *, progress: ProgressFn, key: bytes, jobs: int, strict: bool = False) -> dict[str, Any]:
    """Authenticate every node of ``job.src``; with ``strict``, trailing nodes after the data are
    a failure too. Returns ``{"size", "bound", "trailing"}``."""
    src, _ = _open_input(job.src, "file")
    with src:
        try:
            size = decrypt_stream(src, None, key, job.path, jobs=jobs, progress=progress)
        except CorruptedNodeError as exc:
            # The stream walks the tree depth-first (and in batches with jobs > 1), so the node
            # it reports need not be the first bad one in file order: look before it.
            earlier = _first_bad_node_before(src, key, exc.plaintext_range[0])
            raise (earlier or exc) from None
        facts = _checked_facts(src, key, strict)
    return {"size": size, **facts}


def _first_bad_node_before(src: HostFile, key: bytes, limit: int) -> CorruptedNodeError | None:
    """The first node (in file order) that fails authentication below plaintext offset ``limit``."""
    pf = ProtectedFile.open(BorrowedStorage(src), key, None)
    try:
        offset = 0
        while offset < limit:
            n = min(CHUNK, limit - offset)
            try:
                pf.read(offset, n)
            except CorruptedNodeError as exc:
                return exc
            offset += n
    finally:
        pf.close()
    return None


def op_rekey(job: FileJob, *, progress: ProgressFn, key: bytes, new_key: bytes) -> str:
    """Re-encrypt ``job.src`` in place under ``new_key``, keeping its bound path.

    The plaintext only ever exists in memory: the file is read through a ProtectedFile with the
    old key and written through a ProtectedFile with the new key into a temporary file in the
    same folder, which is fsynced and then atomically replaces the original.
    """
    require_file(job.src, "file")
    target = os.path.realpath(job.src)  # replace the file a symlink points to, not the link
    st = os.stat(target)
    if not stat.S_ISREG(st.st_mode):
        raise CliError(f"'{job.src}' is not a regular file; rekey replaces files in place", code=2)
    try:
        storage = HostFile(target)
    except OSError as exc:
        raise CliError(f"can't read '{job.src}': {exc.strerror}") from None
    try:
        old_pf = ProtectedFile.open(storage, key, None)
    except BaseException:
        storage.close()
        raise
    with old_pf as old:
        bound = bytes(old.metadata.path)
        size = old.size
        with AtomicOutput(target, force=True, mode=st.st_mode & 0o7777) as out:
            new = ProtectedFile.create(BorrowedStorage(out.file), new_key, bound)
            try:
                offset = 0
                while offset < size:
                    chunk = old.read(offset, CHUNK)
                    if not chunk:
                        break
                    new.write(offset, chunk)
                    offset += len(chunk)
                    if progress:
                        progress(len(chunk))
                new.flush()
            finally:
                new.close()
            if offset != size:
                raise CliError(f"{job.src}: read {offset} of {size} bytes; file left unchanged")
            if os.geteuid() == 0:
                os.fchown(out.file.fd, st.st_uid, st.st_gid)
            out.commit()
    return bound.decode(errors="replace")
