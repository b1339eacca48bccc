"""A small pool of forked worker processes for the ``--jobs`` streaming paths.

``multiprocessing.Pool`` costs ~25 ms to import and start here, a tenth of encrypting a 256 MiB
file; this pool is a fork and two pipes. A task is a run of group numbers for one of a few
functions known before the fork; its result is a list of integers. Both travel as fixed-size
messages no larger than ``PIPE_BUF``, so every write is atomic and several workers can share one
task pipe and one result pipe. The workers inherit everything else (open files, a shared memory
map) from the parent, as with ``multiprocessing``'s fork context.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import struct
from array import array
from collections.abc import Callable, Sequence

MAX_RUN = 256  # groups in one task
_TASK = struct.Struct("<iiii")  # task id, function index, first slot, number of groups
_RESULT = struct.Struct("<iiq")  # task id, status (0, an errno, or -1), number of values or bytes
TASK_SIZE = _TASK.size + 4 * MAX_RUN
RESULT_SIZE = _RESULT.size + 8 * MAX_RUN
assert max(TASK_SIZE, RESULT_SIZE) <= select.PIPE_BUF

Task = tuple[int, list[int]]  # (first slot, groups)
Func = Callable[[Task], list[int]]  # at most MAX_RUN integers back


class WorkerFailed(OSError):
    """A worker process died, or raised something other than an OSError."""


class ForkPool:
    """``jobs`` forked workers running ``funcs`` (chosen by index) on tasks; see the module doc."""

    def __init__(self, jobs: int, funcs: Sequence[Func]):
        self.funcs = list(funcs)
        self._next_id = 0
        self._results: dict[int, list[int] | BaseException] = {}
        self.pids: list[int] = []
        tasks_r, self._tasks_w = os.pipe()
        self._results_r, results_w = os.pipe()
        try:
            for _ in range(jobs):
                pid = os.fork()
                if pid == 0:  # the worker: never returns
                    os.close(self._tasks_w)
                    os.close(self._results_r)
                    self._serve(tasks_r, results_w)
                self.pids.append(pid)
        except BaseException:
            self.close(kill=True)
            raise
        finally:
            os.close(tasks_r)
            os.close(results_w)

    # ------------------------------------------------------------------ parent

    def submit(self, func: int, tasks: list[Task]) -> list[int]:
        """Queue ``tasks`` for function ``func``; return the handle :meth:`collect` takes.

        Results are taken in while the task pipe is full: workers blocked on a full result pipe
        and a parent blocked on a full task pipe would wait for each other forever."""
        if any(len(groups) > MAX_RUN for _, groups in tasks):
            raise ValueError(f"at most {MAX_RUN} groups per task")
        ids = []
        for first, groups in tasks:
            task_id = self._next_id
            self._next_id += 1
            msg = _TASK.pack(task_id, func, first, len(groups)) + array("I", groups).tobytes()
            while True:
                readable, writable, _ = select.select([self._results_r], [self._tasks_w], [], 1.0)
                if writable:  # room for at least PIPE_BUF bytes: the message goes in whole
                    os.write(self._tasks_w, msg.ljust(TASK_SIZE, b"\0"))
                    break
                if readable:
                    self._receive()
                else:
                    self._check_alive()
            ids.append(task_id)
        return ids

    def collect(self, ids: list[int]) -> list[int]:
        """The results of the tasks ``ids``, concatenated in order; re-raises a task's error."""
        for task_id in ids:
            while task_id not in self._results:
                self._receive()
        out: list[int] = []
        for task_id in ids:
            result = self._results.pop(task_id)
            if isinstance(result, BaseException):
                raise result
            out.extend(result)
        return out

    def _receive(self) -> None:
        ready, _, _ = select.select([self._results_r], [], [], 1.0)
        if not ready:
            self._check_alive()
            return
        msg = os.read(self._results_r, RESULT_SIZE)
        if len(msg) != RESULT_SIZE:
            self._check_alive()
            raise WorkerFailed(errno.EIO, "a worker process ended early")
        task_id, status, n = _RESULT.unpack_from(msg)
        body = msg[_RESULT.size:]
        if status == 0:
            self._results[task_id] = array("q", body[:8 * n]).tolist()
        else:
            text = body[:n].decode(errors="replace")
            self._results[task_id] = OSError(status, text) if status > 0 else WorkerFailed(errno.EIO, text)

    def _check_alive(self) -> None:
        for pid in self.pids:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.pids.remove(pid)
                raise WorkerFailed(errno.EIO, f"worker process {pid} died (wait status {status})")

    def close(self, *, kill: bool = False) -> None:
        """Let the workers finish and reap them (``kill``: stop them at once)."""
        if self._tasks_w >= 0:
            os.close(self._tasks_w)
            self._tasks_w = -1
        for pid in self.pids:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):  # reaped already
                os.waitpid(pid, 0)
        self.pids = []
        if self._results_r >= 0:
            os.close(self._results_r)
            self._results_r = -1

    # ------------------------------------------------------------------ worker

    def _serve(self, tasks_r: int, results_w: int) -> None:
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends the workers with the parent
            while msg := os.read(tasks_r, TASK_SIZE):
                task_id, func, first, n = _TASK.unpack_from(msg)
                groups = array("I", msg[_TASK.size:_TASK.size + 4 * n]).tolist()
                try:
                    values = self.funcs[func]((first, groups))
                    if len(values) > MAX_RUN:
                        raise ValueError(f"{len(values)} results for one task; at most {MAX_RUN} fit")
                    out = _RESULT.pack(task_id, 0, len(values)) + array("q", values).tobytes()
                except OSError as exc:
                    text = str(exc).encode()[:8 * MAX_RUN]
                    out = _RESULT.pack(task_id, exc.errno or errno.EIO, len(text)) + text
                except Exception as exc:  # reported to the parent
                    text = f"{type(exc).__name__}: {exc}".encode()[:8 * MAX_RUN]
                    out = _RESULT.pack(task_id, -1, len(text)) + text
                os.write(results_w, out.ljust(RESULT_SIZE, b"\0"))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
