"""``pfs decrypt``: decrypt and authenticate a file, a stream or a folder tree."""

from __future__ import annotations

import os

import click

from ..cli_support import STDIO, UsageProblem, require_existing
from ..dask_run import dask_options, dask_runner
from ..file_jobs import FileJob, FileResult
from ..file_ops import op_decrypt, trailing_message
from ..pfs_command import (
    PfsFileCommand,
    _load_key,
    _positive_jobs,
    _settings,
    bind_prefix_check_option,
    debug_option,
    follow_symlinks_option,
    force_option,
    jobs_option,
    no_fsync_option,
    quiet_option,
    strict_option,
    verbose_option,
    wrap_key_option,
)
from ..tree_run import file_size, not_empty, output_for_file, plan_tree_jobs, run_tree
from .common import binding_warnings, echo_status, expected_path, one_path_check


@click.command("decrypt", cls=PfsFileCommand)
@wrap_key_option
@click.option("-i", "--input", "input_path", required=True, metavar="IN",
              help="Encrypted file, or folder tree to decrypt ('-': standard input).")
@click.option("-o", "--output", "output", required=True, metavar="OUT",
              help="Plaintext file or folder ('-': standard output, written once the whole file is authenticated).")
@click.option("-V", "--verify", "verify_path", is_flag=True,
              help="Check that each file is bound to its normalized input path, as Gramine opens it "
                   "(without a check, a file bound elsewhere is decrypted with a warning).")
@click.option("--expect-path", metavar="PATH", help="Check that the file is bound to PATH (single file).")
@bind_prefix_check_option
@strict_option
@jobs_option
@dask_options
@quiet_option
@verbose_option
@force_option
@no_fsync_option
@follow_symlinks_option
@debug_option
@click.pass_context
def decrypt(ctx: click.Context, wrap_key: str, input_path: str, output: str, verify_path: bool,
            expect_path: str | None, bind_prefix: str | None, strict: bool, jobs: int, quiet: bool, verbose: bool,
            force: bool, no_fsync: bool, follow_symlinks: bool, debug: bool, scheduler: str | None,
            use_dask: bool) -> int:
    """Decrypt and authenticate a file or a folder tree; a failed file leaves no output.

    Outputs get the input's permission bits, minus the umask.
    """
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    runner = dask_runner("decrypt", scheduler, use_dask, jobs, verbose)
    not_empty(**{"-i/--input": input_path, "-o/--output": output, "--expect-path": expect_path,
                  "--bind-prefix": bind_prefix})
    one_path_check(verify_path, expect_path, bind_prefix)
    verify_path = verify_path or (strict and expect_path is None and bind_prefix is None)
    if input_path == STDIO and verify_path:
        raise UsageProblem("standard input has no path to check: give --expect-path instead of -V/--strict")
    if input_path != STDIO:
        require_existing(input_path, "input")
    key = _load_key(wrap_key)
    tree = input_path != STDIO and os.path.isdir(input_path)
    created: list[str] = []
    walked = None
    if tree:
        if expect_path is not None:
            raise UsageProblem(f"--expect-path names the path of one file, but input '{input_path}' is a "
                               "folder; use -V to check each file against its own path")
        if output == STDIO:
            raise UsageProblem(f"input '{input_path}' is a folder: give an output folder, not -")

        def job_for(rel: str) -> FileJob:
            src = os.path.join(input_path, rel)
            expected = expected_path(src, input_path, verify_path, None, bind_prefix)
            return FileJob(src, os.path.join(output, rel), expected, file_size(src))

        planned = plan_tree_jobs(input_path, output, follow_symlinks, created, job_for)
        if planned is None:
            return 0
        walked, file_jobs = planned
    else:
        if output != STDIO:
            output_for_file(input_path, output)
        expected = expected_path(input_path, None, verify_path, expect_path, bind_prefix)
        file_jobs = [FileJob(input_path, output, expected, file_size(input_path))]

    def on_ok(result: FileResult) -> None:
        binding_warnings(result, own_path=True)
        if result.value["trailing"]:
            click.echo(f"pfs: warning: {trailing_message(result.job.src, result.value['trailing'])}", err=True)
        if not quiet:
            checked = f" (bound path '{result.job.path}' verified)" if result.job.path is not None else ""
            extra = f", {result.value['size']} bytes" if verbose else ""
            echo_status(f"{result.job.src} -> {result.job.dst}{checked}{extra}", output)

    params = {"key": key, "force": force, "jobs": jobs, "sync": not no_fsync, "strict": strict}
    return run_tree(op_decrypt, file_jobs, params, workers=jobs if tree else 1, quiet=quiet, label="decrypting",
                     created=created, on_ok=on_ok, settings=settings, verb="decrypt", walked=walked, output=output,
                     verbose=verbose, runner=runner)
