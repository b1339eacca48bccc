"""``--scheduler ADDRESS`` / ``--dask`` of ``pfs encrypt|decrypt|verify|rekey``: the same
per-file jobs, run on a Dask cluster through :func:`pfs.dask.run_jobs` (Dask itself is imported
only when one of the options is given)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import click

from .cli_support import STDIO, CliError, UsageProblem
from .file_jobs import FileJob, FileResult, Progress

INSTALL_HINT = "pip install 'pfskit[data]'"


def dask_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The two options, added to a command."""
    func = click.option("--dask", "use_dask", is_flag=True,
                        help="Run on a local Dask cluster of --jobs worker processes.")(func)
    return click.option("--scheduler", metavar="ADDRESS",
                        help="Run on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT).")(func)


class DaskRunner:
    """Runs a command's file jobs on a cluster (``run_file_jobs``'s signature); ``kind`` is the
    command."""

    def __init__(self, kind: str, scheduler: str | None, jobs: int, verbose: bool = False):
        self.kind = kind
        self.scheduler = scheduler
        self.jobs = jobs
        self.verbose = verbose

    def _connect(self) -> tuple[Any, Any]:
        try:
            import logging

            from distributed import Client
        except ImportError:
            raise CliError(f"--dask and --scheduler need Dask and fsspec: {INSTALL_HINT}") from None
        if self.scheduler is None:
            cluster = local_cluster(self.jobs)
            client = Client(cluster)
            if self.verbose:
                click.echo(f"pfs: note: Dask dashboard: {client.dashboard_link}", err=True)
            return cluster, client
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        try:
            client = Client(self.scheduler, timeout="10s")
        except (OSError, ValueError) as exc:
            raise CliError(f"can't reach the Dask scheduler at '{self.scheduler}' ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'no answer'}); check the address "
                           "(tcp://HOST:PORT) and that the scheduler is running") from None
        if self.verbose:
            click.echo(f"pfs: note: Dask dashboard: {client.dashboard_link}", err=True)
        return None, client

    def __call__(self, op: Any, jobs: list[FileJob], params: dict[str, Any], *, workers: int,
                 progress: Progress) -> Iterator[FileResult]:
        from fsspec.implementations.local import LocalFileSystem

        from pfs.dask import Job, run_jobs

        for job in jobs:
            if job.src == STDIO or job.dst == STDIO:
                raise UsageProblem("--dask and --scheduler run over files and folders, not standard "
                                   "input or output")
        cluster, client = self._connect()
        try:
            local = LocalFileSystem()
            work = [Job(self.kind, local, os.path.abspath(j.src), local if j.dst else None,
                        os.path.abspath(j.dst) if j.dst else None, j.path, j.weight, ref=j) for j in jobs]
            keys = {"key": params["key"]}
            if "new_key" in params:
                keys["new_key"] = params["new_key"]
            for outcome in run_jobs(client, work, keys, force=params.get("force", False),
                                    sync=params.get("sync", True), strict=params.get("strict", False),
                                    progress=progress.callback):
                yield FileResult(outcome.job.ref, outcome.ok, value=outcome.value, message=outcome.error)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def local_cluster(workers: int) -> Any:
    """A LocalCluster of ``workers`` single-threaded worker processes that starts and stops fast.

    Its workers are forked from this process (not spawned): they start with distributed and
    the task modules already imported (about 0.4 s less to start, the first tasks import
    nothing) and stop in a few ms; the nannies still restart a killed worker. The workers'
    sampling profiler (every 10 ms) is off: it costs the AES-GCM loop time. The dashboard is on a
    free port (shown with -v)."""
    import logging

    import dask
    from distributed import LocalCluster

    # the tasks' modules, inherited by the forked workers
    import pfs.dask_split
    import pfs.stream  # noqa: F401

    dask.config.set({"distributed.worker.profile.enabled": False,
                     "distributed.worker.multiprocessing-method": "fork"})
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                        dashboard_address=":0", silence_logs=logging.CRITICAL)


def dask_runner(kind: str, scheduler: str | None, use_dask: bool, jobs: int,
                verbose: bool = False) -> DaskRunner | None:
    """The runner the options ask for (None: run here, as without them)."""
    if scheduler is not None and use_dask:
        raise UsageProblem("give either --scheduler or --dask, not both")
    if scheduler is not None and not scheduler:
        raise UsageProblem("--scheduler must not be empty")
    if scheduler is None and not use_dask:
        return None
    return DaskRunner(kind, scheduler, jobs, verbose)
