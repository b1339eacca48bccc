"""Running a per-file operation of the ``pfs`` file commands over many files: progress, worker
processes, failures as results.

- :func:`run_file_jobs`: runs a per-file operation over many files, in worker processes when
  asked, going on past failures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click

from pfs.errors import CorruptedNodeError

from .cli_support import describe_error

# ---------------------------------------------------------------------- progress

class Progress:
    """A progress bar on stderr, shown only when stderr is a terminal and not quiet."""

    def __init__(self, total: int, label: str, *, enabled: bool):
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            self._bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    @property
    def callback(self) -> Callable[[int], None] | None:
        return self.update if self._bar is not None else None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


# ---------------------------------------------------------------------- running per-file jobs

@dataclass
class FileJob:
    """One file to process: ``src``, ``dst`` (or None) and a path (bound or expected)."""

    src: str
    dst: str | None = None
    path: str | None = None
    weight: int = 0  # bytes, for progress


@dataclass
class FileResult:
    """The outcome of one :class:`FileJob` (picklable: messages only, no exception objects)."""

    job: FileJob
    ok: bool
    value: Any = None
    message: str = ""
    trace: str = ""
    details: dict[str, Any] = field(default_factory=dict)


FileOp = Callable[..., Any]


def _run_one(op: FileOp, job: FileJob, params: dict[str, Any],
             progress: Callable[[int], None] | None) -> FileResult:
    try:
        value = op(job, progress=progress, **params)
    except Exception as exc:
        import traceback  # (failures only: it costs start-up)

        details = {}
        if isinstance(exc, CorruptedNodeError):
            details = {"node": exc.node, "plaintext_range": list(exc.plaintext_range)}
        return FileResult(job, False, message=describe_error(exc), trace=traceback.format_exc(),
                          details=details)
    return FileResult(job, True, value=value)


_in_job = False  # in a worker process: whether a job is running (see _worker_signal)
_stopped: int | None = None  # in a worker process: the stop signal received, if any


def _worker_signal(signum: int, _frame: object) -> None:
    """A stop signal in a worker: inside a job, unwind it (its clean-up runs, the parent gets
    the exception); between jobs, only remember it (leaving then could strand the pool's queue
    lock): every later job is refused."""
    from .outputs import Terminated

    global _stopped
    first = _stopped is None
    _stopped = signum
    if _in_job and first:
        raise Terminated(signum)


def _init_worker() -> None:
    from .outputs import STOP_SIGNALS

    for sig in STOP_SIGNALS:
        signal.signal(sig, _worker_signal)


def _run_one_in_worker(op: FileOp, job: FileJob, params: dict[str, Any]) -> FileResult:
    from .outputs import Terminated, remove_live_temps

    global _in_job
    if _stopped is not None:
        raise Terminated(_stopped)
    _in_job = True
    try:
        return _run_one(op, job, params, None)
    except BaseException:
        remove_live_temps()  # one made just as the signal came, before a ``with`` owned it
        raise
    finally:
        _in_job = False


def _stop_workers(pool: Any, signum: int) -> None:
    """Pass a stop signal on to the workers, so that the files they are writing are cleaned up."""
    for process in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(OSError):
            os.kill(process.pid, signum)


def run_file_jobs(op: FileOp, jobs: list[FileJob], params: dict[str, Any], *, workers: int,
                  progress: Progress) -> Iterator[FileResult]:
    """Run ``op(job, progress=..., **params)`` for every job; yield results in job order.

    With ``workers > 1`` and several jobs, files are spread over that many processes and
    ``params`` gets ``jobs=1`` (no nested pools). Otherwise files run one after the other and
    ``params`` is passed as given. Failures are results, not exceptions.
    """
    if workers > 1 and len(jobs) > 1:
        params = {**params, "jobs": 1} if "jobs" in params else params
        from concurrent.futures import ProcessPoolExecutor  # only trees with --jobs pay for it

        from .outputs import Terminated

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=_init_worker) as pool:
            futures = [pool.submit(_run_one_in_worker, op, job, params) for job in jobs]
            try:
                for job, future in zip(jobs, futures, strict=True):
                    result = future.result()
                    progress.update(job.weight)
                    yield result
            except BaseException as exc:
                for future in futures:
                    future.cancel()
                if isinstance(exc, Terminated | KeyboardInterrupt):
                    _stop_workers(pool, exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
                raise
        return
    for job in jobs:
        counted = 0

        def tick(n: int) -> None:
            nonlocal counted
            counted += n
            progress.update(n)

        result = _run_one(op, job, params, tick if progress.callback else None)
        if job.weight > counted:
            progress.update(job.weight - counted)
        yield result

