"""``pfs verify``: authenticate every node of files and trees."""

from __future__ import annotations

import click

from ..cli_support import STDIO, UsageProblem, echo_error
from ..dask_run import dask_options, dask_runner
from ..file_jobs import FileJob, FileResult, Progress, run_file_jobs
from ..file_ops import op_verify, trailing_message
from ..pfs_command import (
    PfsFileCommand,
    _load_key,
    _positive_jobs,
    _settings,
    bind_prefix_check_option,
    debug_option,
    follow_symlinks_option,
    jobs_option,
    quiet_option,
    strict_option,
    verbose_option,
    wrap_key_option,
)
from ..tree_run import expand, file_size, not_empty
from .common import binding_warnings, expected_path, one_path_check


@click.command("verify", cls=PfsFileCommand)
@wrap_key_option
@click.argument("paths", nargs=-1, required=True)
@click.option("--expect-path", metavar="PATH", help="Check that the (single) file is bound to PATH.")
@click.option("-V", "--verify-path", "verify_path", is_flag=True,
              help="Check that each file is bound to its own normalized path, as Gramine opens it "
                   "(without a check, a file bound elsewhere passes with a warning).")
@bind_prefix_check_option
@strict_option
@jobs_option
@dask_options
@quiet_option
@verbose_option
@follow_symlinks_option
@debug_option
@click.pass_context
def verify(ctx: click.Context, wrap_key: str, paths: tuple[str, ...], expect_path: str | None,
           verify_path: bool, bind_prefix: str | None, strict: bool, jobs: int, quiet: bool, verbose: bool,
           follow_symlinks: bool, debug: bool, scheduler: str | None, use_dask: bool) -> int:
    """Authenticate every node of every file (files or trees); report each bad file.

    Trailing nodes after the data a file's size needs give a warning (Gramine ignores them;
    --strict makes them a failure).
    """
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    runner = dask_runner("verify", scheduler, use_dask, jobs, verbose)
    not_empty(**{"--expect-path": expect_path, "--bind-prefix": bind_prefix})
    one_path_check(verify_path, expect_path, bind_prefix)
    verify_path = verify_path or (strict and expect_path is None and bind_prefix is None)
    key = _load_key(wrap_key)
    found, unreadable = expand(paths, "path", follow_symlinks=follow_symlinks, verbose=verbose)
    if expect_path is not None and (len(found) != 1 or found[0][1] is not None):
        raise UsageProblem("--expect-path applies to a single file; use -V to check each file's own path")
    if verify_path and any(path == STDIO for path, _ in found):
        raise UsageProblem("standard input has no path to check: give --expect-path instead of -V/--strict")
    file_jobs = []
    for path, tree in found:
        expected = expected_path(path, tree, verify_path, expect_path, bind_prefix)
        file_jobs.append(FileJob(path, None, expected, file_size(path)))
    results: list[FileResult] = []
    with Progress(sum(j.weight for j in file_jobs), "verifying", enabled=not quiet) as bar:
        for result in (runner or run_file_jobs)(op_verify, file_jobs, {"key": key, "jobs": jobs, "strict": strict},
                                    workers=jobs if len(file_jobs) > 1 else 1, progress=bar):
            results.append(result)
            if not result.ok:
                if settings.debug and result.trace:
                    click.echo(result.trace.rstrip(), err=True)
                click.echo(f"BAD  {result.message}")
                continue
            binding_warnings(result, own_path=True)
            if result.value["trailing"]:
                click.echo(f"pfs: warning: {trailing_message(result.job.src, result.value['trailing'])}", err=True)
            if verbose:
                click.echo(f"ok   {result.job.src} ({result.value['size']} bytes)")
    bad = sum(not r.ok for r in results)
    click.echo(f"{len(results) - bad} files ok" + (f", {bad} bad" if bad else ""))
    if bad:
        echo_error(f"{bad} of {len(results)} files failed verification")
    if unreadable:
        echo_error(f"{unreadable} entr{'y' if unreadable == 1 else 'ies'} of the trees could not be read; "
                   "what is under them was not verified")
    return 1 if bad or unreadable else 0
