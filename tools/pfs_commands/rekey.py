"""``pfs rekey``: re-encrypt files in place under a new key."""

from __future__ import annotations

import click

from ..cli_support import STDIO, UsageProblem, echo_error
from ..dask_run import dask_options, dask_runner
from ..file_jobs import FileJob, FileResult
from ..file_ops import op_rekey
from ..pfs_command import (
    PfsFileCommand,
    _load_key,
    _positive_jobs,
    _settings,
    debug_option,
    follow_symlinks_option,
    jobs_option,
    quiet_option,
    verbose_option,
    wrap_key_option,
)
from ..tree_run import distinct_files, expand, file_size, run_tree


@click.command("rekey", cls=PfsFileCommand)
@wrap_key_option
@click.option("--new-key", "new_key", required=True, metavar="FILE", help="Key file of the new key.")
@click.argument("paths", nargs=-1, required=True)
@jobs_option
@dask_options
@quiet_option
@verbose_option
@follow_symlinks_option
@debug_option
@click.pass_context
def rekey(ctx: click.Context, wrap_key: str, new_key: str, paths: tuple[str, ...], jobs: int, quiet: bool,
          verbose: bool, follow_symlinks: bool, debug: bool, scheduler: str | None, use_dask: bool) -> int:
    """Re-encrypt files in place under a new key, keeping their bound paths (atomic per file)."""
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    runner = dask_runner("rekey", scheduler, use_dask, jobs, verbose)
    if STDIO in paths:
        raise UsageProblem("rekey rewrites files in place: standard input (-) can't be one")
    old = _load_key(wrap_key)
    new = _load_key(new_key, what="new key")
    found, unreadable = expand(paths, "path", follow_symlinks=follow_symlinks, verbose=verbose)
    file_jobs = [FileJob(path, None, None, file_size(path)) for path in distinct_files(found, verbose)]

    def on_ok(result: FileResult) -> None:
        if not quiet:
            click.echo(f"{result.job.src}: re-encrypted under the new key (bound to {result.value})")

    status = run_tree(op_rekey, file_jobs, {"key": old, "new_key": new}, workers=jobs, quiet=quiet,
                       label="re-encrypting", created=[], on_ok=on_ok, settings=settings, verb="re-encrypt",
                       runner=runner)
    if unreadable:
        echo_error(f"{unreadable} entr{'y' if unreadable == 1 else 'ies'} of the trees could not be read; "
                   "what is under them was not re-encrypted")
    return status or (1 if unreadable else 0)
