"""The fork pool behind --jobs: real forked processes, real pipes."""

from __future__ import annotations

import errno
import os

import pytest

from pfs.forkpool import MAX_RUN, ForkPool, WorkerFailed


def square_with_pid(task: tuple[int, list[int]]) -> list[int]:
    first, groups = task
    return [first] + [g * g for g in groups] + [os.getpid()]


def fail_with_oserror(task: tuple[int, list[int]]) -> list[int]:
    raise OSError(errno.ENOSPC, f"disk full at task {task[0]}")


def fail_with_bug(task: tuple[int, list[int]]) -> list[int]:
    raise KeyError("oops")


def die(task: tuple[int, list[int]]) -> list[int]:
    os._exit(3)


FUNCS = [square_with_pid, fail_with_oserror, fail_with_bug, die]


def test_results_come_back_in_order_from_several_workers() -> None:
    pool = ForkPool(3, FUNCS)
    try:
        assert len(pool.pids) == 3 and os.getpid() not in pool.pids
        batches = [[(b * 100 + i, list(range(i, i + 5))) for i in range(20)] for b in range(2)]
        handles = [pool.submit(0, tasks) for tasks in batches]  # two batches in flight
        workers = set()
        for tasks, handle in reversed(list(zip(batches, handles, strict=True))):
            out = pool.collect(handle)
            expected = []
            for first, groups in tasks:
                expected += [first] + [g * g for g in groups] + [None]
            assert [v if e is not None else None for v, e in zip(out, expected, strict=True)] == expected
            workers |= {v for v, e in zip(out, expected, strict=True) if e is None}
        assert workers <= set(pool.pids)
        big = list(range(MAX_RUN - 2))  # the largest task whose results fit
        assert pool.collect(pool.submit(0, [(7, big)]))[1:-1] == [g * g for g in big]
        with pytest.raises(WorkerFailed, match="at most"):  # too many results: an error, not garbage
            pool.collect(pool.submit(0, [(7, list(range(MAX_RUN)))]))
        assert pool.collect(pool.submit(0, [(8, [2])]))[:2] == [8, 4]
        with pytest.raises(ValueError):
            pool.submit(0, [(0, list(range(MAX_RUN + 1)))])
    finally:
        pids = list(pool.pids)
        pool.close()
    for pid in pids:  # reaped: no zombies left
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_a_workers_oserror_comes_back_with_its_errno_and_the_pool_goes_on() -> None:
    pool = ForkPool(2, FUNCS)
    try:
        with pytest.raises(OSError) as exc:
            pool.collect(pool.submit(1, [(5, [1, 2])]))
        assert exc.value.errno == errno.ENOSPC and "disk full at task 5" in str(exc.value)
        with pytest.raises(WorkerFailed, match="KeyError"):
            pool.collect(pool.submit(2, [(0, [1])]))
        assert pool.collect(pool.submit(0, [(1, [3])]))[:2] == [1, 9]
    finally:
        pool.close()


def test_a_dead_worker_is_reported_not_waited_for() -> None:
    pool = ForkPool(2, FUNCS)
    try:
        with pytest.raises(WorkerFailed, match="died"):
            pool.collect(pool.submit(3, [(0, [1])]))
    finally:
        pool.close(kill=True)
    assert pool.pids == []


def test_more_tasks_than_the_pipes_hold_do_not_deadlock() -> None:
    """Hundreds of tasks at once: the parent must take results in while it queues tasks."""
    import signal

    def timeout(signum, frame):
        raise TimeoutError("the pool deadlocked")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)
    pool = ForkPool(8, FUNCS)
    try:
        tasks = [(i, list(range(200))) for i in range(400)]  # ~400 KiB of tasks, ~650 KiB of results
        out = pool.collect(pool.submit(0, tasks))
        assert len(out) == 400 * 202
        assert out[::202] == list(range(400))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        pool.close(kill=True)
