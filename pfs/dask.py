"""Dataset jobs on a Dask cluster: encrypt, decrypt, verify and re-key trees of files.

``encrypt_tree(src_url, dst_url, key=..., client=...)`` and its siblings take fsspec URLs on
both sides (plaintext from one store, encrypted files to another) and spread the files over
the cluster's workers; a large file on a local (or shared) destination (at least ``split_size``
and more than half a worker's share of the job) is cut into runs of node groups encrypted by
several workers and assembled by one task into the same layout as
``pfs encrypt`` (see :mod:`pfs.dask_tasks`); large files are decrypted and verified in runs of
node groups too. A failing file is a failed :class:`FileOutcome`
with its cause; the others finish.

Keys reach the workers only in memory, by ``Client.run`` under an opaque id (see
:mod:`pfs.dask_tasks`); they are never in a task, a task key, a result or a log, and they are
dropped from the workers when the job ends. Needs ``pip install pfskit[data]``.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .dask_io import TMP_TAG, is_local, temp_prefix
from .dask_tasks import NO_KEY, KeyNotOnWorker, TaskFailed

SPLIT_SIZE = 64 << 20  # files at least this large may be cut into pieces (local destinations)
PIECE_GROUPS = 64  # node groups per piece (24 MiB of plaintext)
MAX_KEY_RESENDS = 5
BATCH_BYTES = 16 << 20  # smaller files go to the workers in batches (fewer, larger tasks)
BATCH_FILES = 256

__all__ = ["FileOutcome", "Job", "TreeResult", "decrypt_tree", "encrypt_tree", "rekey_tree", "run_jobs",
           "verify_tree"]


@dataclass
class Job:
    """One file of a job: ``kind`` is encrypt, decrypt, verify or rekey; ``path`` is the bound
    path (encrypt) or the expected one (decrypt/verify; None: not checked)."""

    kind: str
    src_fs: Any
    src: str
    dst_fs: Any = None
    dst: str | None = None
    path: str | None = None
    size: int = 0
    ref: Any = None  # the caller's own handle (the command's FileJob)


@dataclass
class FileOutcome:
    """What became of one :class:`Job`: ``value`` is the plaintext size (encrypt), ``{"size",
    "bound", "trailing"}`` (decrypt/verify) or the bound path (rekey)."""

    job: Job
    ok: bool
    value: Any = None
    error: str = ""
    errno: int | None = None


@dataclass
class TreeResult:
    """The outcomes of a job, in the order the files finished."""

    files: list[FileOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if not f.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


def _listing(url: str, options: dict[str, Any] | None) -> tuple[Any, str, list[str] | None]:
    """(file system, root path, paths relative to it; None when the URL names one file)."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url, **(options or {}))
    if fs.isdir(root):
        return fs, root, sorted(posixpath.relpath(p, root) for p in fs.find(root))
    if not fs.exists(root):
        raise FileNotFoundError(2, "no such file or folder", url)
    return fs, root, None


def _pairs(src_url: str, dst_url: str | None, src_options: dict[str, Any] | None,
           dst_options: dict[str, Any] | None) -> tuple[Any, Any, list[tuple[str, str | None, str]]]:
    from fsspec.core import url_to_fs

    src_fs, src_root, rels = _listing(src_url, src_options)
    dst_fs, dst_root = url_to_fs(dst_url, **(dst_options or {})) if dst_url is not None else (None, None)
    if rels is None:
        return src_fs, dst_fs, [(src_root, dst_root, posixpath.basename(src_root))]
    join = posixpath.join
    return src_fs, dst_fs, [(join(src_root, r), join(dst_root, r) if dst_root else None, r) for r in rels]


def encrypt_tree(src_url: str, dst_url: str, *, key: bytes, client: Any, bind_prefix: str | None = None,
                 force: bool = False, sync: bool = True, storage_options: dict[str, Any] | None = None,
                 dst_storage_options: dict[str, Any] | None = None, split_size: int = SPLIT_SIZE,
                 progress: Callable[[int], None] | None = None) -> TreeResult:
    """Encrypt every file under ``src_url`` (or the one file it names) to the same relative path
    under ``dst_url``. Each file is bound to ``bind_prefix``/<relative path>, or without a
    prefix to its destination path. ``progress`` gets the plaintext bytes of each file done."""
    src_fs, dst_fs, pairs = _pairs(src_url, dst_url, storage_options, dst_storage_options)
    jobs = []
    for src, dst, rel in pairs:
        bound = posixpath.join(bind_prefix, rel) if bind_prefix is not None else dst
        jobs.append(Job("encrypt", src_fs, src, dst_fs, dst, bound, int(src_fs.size(src) or 0)))
    return TreeResult(list(run_jobs(client, jobs, {"key": key}, force=force, sync=sync, split_size=split_size,
                                    progress=progress)))


def decrypt_tree(src_url: str, dst_url: str, *, key: bytes, client: Any, bind_prefix: str | None = None,
                 verify_path: bool = False, force: bool = False, sync: bool = True,
                 storage_options: dict[str, Any] | None = None, dst_storage_options: dict[str, Any] | None = None,
                 split_size: int = SPLIT_SIZE, progress: Callable[[int], None] | None = None) -> TreeResult:
    """Decrypt and authenticate every file under ``src_url`` to ``dst_url``. With ``bind_prefix``
    each file must be bound to prefix/<relative path>; with ``verify_path`` to its own path."""
    return _check_tree("decrypt", src_url, dst_url, key, client, bind_prefix, verify_path, force, sync,
                       storage_options, dst_storage_options, progress, split_size)


def verify_tree(url: str, *, key: bytes, client: Any, bind_prefix: str | None = None, verify_path: bool = False,
                storage_options: dict[str, Any] | None = None, split_size: int = SPLIT_SIZE,
                progress: Callable[[int], None] | None = None) -> TreeResult:
    """Authenticate every node of every file under ``url``."""
    return _check_tree("verify", url, None, key, client, bind_prefix, verify_path, False, False,
                       storage_options, None, progress, split_size)


def _check_tree(kind: str, src_url: str, dst_url: str | None, key: bytes, client: Any, bind_prefix: str | None,
                verify_path: bool, force: bool, sync: bool, src_options: dict[str, Any] | None,
                dst_options: dict[str, Any] | None, progress: Callable[[int], None] | None,
                split_size: int) -> TreeResult:
    src_fs, dst_fs, pairs = _pairs(src_url, dst_url, src_options, dst_options)
    jobs = []
    for src, dst, rel in pairs:
        expected = posixpath.join(bind_prefix, rel) if bind_prefix is not None else (src if verify_path else None)
        jobs.append(Job(kind, src_fs, src, dst_fs, dst, expected, int(src_fs.size(src) or 0)))
    return TreeResult(list(run_jobs(client, jobs, {"key": key}, force=force, sync=sync, split_size=split_size,
                                    progress=progress)))


def rekey_tree(url: str, *, key: bytes, new_key: bytes, client: Any, sync: bool = True,
               storage_options: dict[str, Any] | None = None,
               progress: Callable[[int], None] | None = None) -> TreeResult:
    """Re-encrypt every file under ``url`` in place under ``new_key``, keeping bound paths."""
    src_fs, _, pairs = _pairs(url, None, storage_options, None)
    jobs = [Job("rekey", src_fs, src, size=int(src_fs.size(src) or 0)) for src, _, _ in pairs]
    return TreeResult(list(run_jobs(client, jobs, {"key": key, "new_key": new_key}, sync=sync, progress=progress)))


# ---------------------------------------------------------------------- running jobs

class _Keys:
    """The job's keys on every worker, under ids made for this job only."""

    def __init__(self, client: Any, keys: dict[str, bytes]):
        from .dask_tasks import install_key

        self.client = client
        self._keys = keys
        self.ids = {name: secrets.token_hex(16) for name in keys}
        self._install = install_key
        self.send()

    def send(self) -> None:
        for name, key in self._keys.items():
            self.client.run(self._install, self.ids[name], key)

    def forget(self) -> None:
        from .dask_tasks import forget_key

        for key_id in self.ids.values():
            with contextlib.suppress(Exception):
                self.client.run(forget_key, key_id)


class _Submitter:
    """Turns jobs into tasks: a large file into pieces, small files into batches, the rest into
    one task each. A unit is (terminal future, its jobs, whether it is a batch)."""

    def __init__(self, client: Any, keys: _Keys, session: str, force: bool, sync: bool, split_size: int,
                 strict: bool):
        self.client, self.keys, self.session = client, keys, session
        self.force, self.sync, self.split_size, self.strict = force, sync, split_size, strict
        self.min_split = split_size

    def _call(self, job: Job) -> tuple[str, tuple]:
        ids, s = self.keys.ids, self.session
        if job.kind == "encrypt":
            return "encrypt", (job.src_fs, job.src, job.dst_fs, job.dst, job.path, ids["key"], s, self.force,
                               self.sync)
        if job.kind in ("decrypt", "verify"):
            return "decrypt", (job.src_fs, job.src, job.dst_fs, job.dst, job.path, ids["key"], s, self.force,
                               self.sync, self.strict)
        return "rekey", (job.src_fs, job.src, ids["key"], ids["new_key"], s, self.sync)

    def units(self, jobs: list[Job]) -> list[tuple[Any, list[Job], bool]]:
        """Submit every job: small files (under BATCH_BYTES) go in batches sized so that each
        worker gets several."""
        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        # a file is cut into pieces only when it is more than half a worker's share of the job:
        # smaller ones, whole, already keep every worker busy (pieces cost an assembly task each)
        self.min_split = max(self.split_size, sum(j.size for j in jobs) // (2 * workers) + 1)
        small = [j for j in jobs if j.size < BATCH_BYTES and not self._splits(j)]
        budget = max(1 << 20, min(BATCH_BYTES, sum(j.size for j in small) // (4 * workers)))
        out = [self.submit(j) for j in jobs if j.size >= BATCH_BYTES or self._splits(j)]
        batch: list[Job] = []
        weight = 0
        for job in small:
            batch.append(job)
            weight += job.size + 4096
            if weight >= budget or len(batch) >= BATCH_FILES:
                out.append(self.submit_batch(batch))
                batch, weight = [], 0
        if batch:
            out.append(self.submit_batch(batch))
        return out

    def _splits(self, job: Job) -> bool:
        if job.size < self.min_split:
            return False
        if job.kind == "encrypt":
            return is_local(job.dst_fs)
        return job.kind == "verify" or (job.kind == "decrypt" and is_local(job.dst_fs))

    def submit_batch(self, jobs: list[Job]) -> tuple[Any, list[Job], bool]:
        from . import dask_tasks as t

        ids = list(self.keys.ids.values())
        return self.client.submit(t.run_batch, ids, [self._call(j) for j in jobs], pure=False), jobs, True

    def submit(self, job: Job) -> tuple[Any, list[Job], bool]:
        from . import dask_tasks as t

        if self._splits(job):
            return self._split(job), [job], False
        name, args = self._call(job)
        func = {"encrypt": t.encrypt_file, "decrypt": t.decrypt_file, "rekey": t.rekey_file}[name]
        return self.client.submit(func, *args, pure=False), [job], False

    def _split(self, job: Job) -> Any:
        from . import dask_split as t
        from .layout import mht_node_count

        c, key_id = self.client, self.keys.ids["key"]
        tmp = None if job.dst is None else posixpath.join(posixpath.dirname(job.dst),
                                                          temp_prefix(job.dst, self.session) + secrets.token_hex(4))
        if job.kind != "encrypt":
            return self._split_open(job, tmp)
        assert job.dst is not None and tmp is not None
        begin = c.submit(t.split_begin, job.src_fs, job.src, job.dst_fs, job.dst, tmp, self.force, pure=False)
        nmht = mht_node_count(job.size)
        runs = [list(range(first, min(first + PIECE_GROUPS, nmht))) for first in range(0, nmht, PIECE_GROUPS)]
        pieces = [c.submit(t.split_piece, job.src_fs, job.src, tmp, run, key_id, begin, pure=False) for run in runs]
        return c.submit(t.split_finish, job.src_fs, job.src, job.dst, tmp, job.path, key_id, begin,
                        list(zip(runs, pieces, strict=True)), self.force, self.sync, pure=False)


    def _split_open(self, job: Job, tmp: str | None) -> Any:
        """A large file decrypted or verified in pieces: one task checks the metadata and walks the
        MHT, several authenticate (and decrypt) runs of node groups, one renames the output."""
        from . import dask_split as t
        from .layout import DATA_ENTRIES_PER_MHT, NODE_SIZE, mht_node_count

        c, key_id = self.client, self.keys.ids["key"]
        plan = c.submit(t.split_open, job.src_fs, job.src, tmp, job.path, key_id, pure=False)
        # the recorded size is inside the metadata: the runs are planned from the file's size on disk
        nmht = mht_node_count(job.size * DATA_ENTRIES_PER_MHT // (DATA_ENTRIES_PER_MHT + 1) // NODE_SIZE * NODE_SIZE)
        runs = [list(range(first, first + PIECE_GROUPS)) for first in range(0, nmht + PIECE_GROUPS, PIECE_GROUPS)]
        pieces = [c.submit(t.split_open_piece, job.src_fs, job.src, tmp, run, key_id, plan, pure=False)
                  for run in runs]
        return c.submit(t.split_open_finish, job.src_fs, job.src, job.dst, tmp, key_id, plan, pieces, self.force,
                        self.sync, self.strict, pure=False)


def _outcomes(future: Any, jobs: list[Job], batch: bool) -> list[FileOutcome]:
    """The outcomes of a finished unit (raises KeyNotOnWorker for the caller to resend)."""
    try:
        value = future.result()
    except KeyNotOnWorker:
        raise
    except TaskFailed as exc:
        return [FileOutcome(j, False, error=exc.message, errno=exc.errno) for j in jobs]
    except Exception as exc:  # the cluster's own failures (a worker killed too often, ...)
        return [FileOutcome(j, False, error=f"{j.src}: {type(exc).__name__}: {exc}") for j in jobs]
    if not batch:
        return [FileOutcome(jobs[0], True, value)]
    return [FileOutcome(j, ok, v if ok else None, "" if ok else v, e)
            for j, (ok, v, e) in zip(jobs, value, strict=True)]


def run_jobs(client: Any, jobs: list[Job], keys: dict[str, bytes], *, force: bool = False, sync: bool = True,
             strict: bool = False, split_size: int = SPLIT_SIZE,
             progress: Callable[[int], None] | None = None,
             stats: dict[str, int] | None = None) -> Iterator[FileOutcome]:
    """Run ``jobs`` on ``client``'s cluster; yield each file's outcome as it finishes.

    ``keys``: ``{"key": ...}`` (and ``"new_key"`` for rekey). Temporary outputs of files that
    failed, or of workers that died, are removed before the last outcome is yielded.
    ``stats["key_resends"]`` counts the times workers had lost the keys."""
    from distributed import as_completed

    session = secrets.token_hex(6)
    sent = _Keys(client, keys)
    submitter = _Submitter(client, sent, session, force, sync, split_size, strict)
    pending: dict[Any, tuple[list[Job], bool, int]] = {}
    held: list[FileOutcome] = []
    try:
        for future, unit_jobs, batch in submitter.units(jobs):
            pending[future] = (unit_jobs, batch, 0)
        done = as_completed(list(pending))
        for future in done:
            unit_jobs, batch, resends = pending.pop(future)
            try:
                outcomes = _outcomes(future, unit_jobs, batch)
            except KeyNotOnWorker:
                outcomes = [FileOutcome(j, False, error=NO_KEY) for j in unit_jobs]
            lost = [o.job for o in outcomes if not o.ok and o.error == NO_KEY]
            if lost and resends < MAX_KEY_RESENDS:
                if stats is not None:
                    stats["key_resends"] = stats.get("key_resends", 0) + 1
                sent.send()
                again, _, _ = submitter.submit_batch(lost) if batch else submitter.submit(lost[0])
                pending[again] = (lost, batch, resends + 1)
                done.add(again)
                outcomes = [o for o in outcomes if o.job not in lost]
            for o in outcomes:
                if not o.ok and o.error == NO_KEY:
                    o.error = f"{o.job.src}: the workers keep losing the job's keys"
            for outcome in outcomes:
                if progress:
                    progress(outcome.job.size)
            yield from held
            held = outcomes
    finally:
        for future in list(pending):
            future.cancel()
        sent.forget()
        _sweep(jobs, session)
    yield from held


def _sweep(jobs: list[Job], session: str) -> None:
    """Remove this job's temporary outputs left in local destination folders (workers killed
    mid-file; split encryptions that failed)."""
    folders = set()
    for job in jobs:
        target = job.dst if job.dst is not None else (job.src if job.kind == "rekey" else None)
        fs = job.dst_fs if job.dst is not None else job.src_fs
        if target is not None and is_local(fs):
            folders.add(os.path.dirname(os.path.realpath(target) if job.kind == "rekey" else target))
    marker = f"{TMP_TAG}{session}-"
    for folder in folders:
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if name.startswith(".") and marker in name:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, name))
