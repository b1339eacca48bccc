"""``pfs encrypt`` (and ``pfs-encrypt``): encrypt a file, a stream or a folder tree."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from pfs.paths import bound_path_for

from ..cli_support import STDIO, UsageProblem, require_existing
from ..dask_run import dask_options, dask_runner
from ..file_jobs import FileJob, FileResult
from ..file_ops import op_encrypt
from ..pfs_command import (
    PfsFileCommand,
    _load_key,
    _positive_jobs,
    _settings,
    debug_option,
    follow_symlinks_option,
    force_option,
    jobs_option,
    no_fsync_option,
    quiet_option,
    verbose_option,
    wrap_key_option,
)
from ..tree_run import file_size, not_empty, output_for_file, plan_tree_jobs, run_tree
from .common import echo_status


def _encrypt(ctx: click.Context, wrap_key: str, input_path: str, output: str, bind_path: str | None,
             bind_prefix: str | None, jobs: int, quiet: bool, verbose: bool, force: bool, no_fsync: bool,
             follow_symlinks: bool, debug: bool, manifest: str | None = None, scheduler: str | None = None,
             use_dask: bool = False) -> int:
    settings = _settings(ctx, debug)
    _positive_jobs(jobs)
    runner = dask_runner("encrypt", scheduler, use_dask, jobs, verbose)
    if bind_path is not None and bind_prefix is not None:
        raise UsageProblem("give either --bind-path or --bind-prefix, not both")
    not_empty(**{"-i/--input": input_path, "-o/--output": output, "--bind-path": bind_path,
                  "--bind-prefix": bind_prefix})
    if input_path != STDIO:
        require_existing(input_path, "input")
    tree = input_path != STDIO and os.path.isdir(input_path)
    if output == STDIO and tree:
        raise UsageProblem(f"input '{input_path}' is a folder: give an output folder, not -")
    if output == STDIO and bind_path is None:
        raise UsageProblem("with -o - give --bind-path: the path the encrypted file will be opened as")
    key = _load_key(wrap_key)
    if manifest is not None:  # bind as the manifest's encrypted mount will open each output
        if bind_path is not None or bind_prefix is not None:
            raise UsageProblem("give --manifest or --bind-path/--bind-prefix, not both")
        from libos.binding import bind_options_from_manifest

        bind_path, bind_prefix = bind_options_from_manifest(manifest, output, tree=tree)
    created: list[str] = []
    walked = None
    if tree:
        if bind_path is not None:
            raise UsageProblem(f"--bind-path names the path of one file, but input '{input_path}' is a "
                               "folder; use --bind-prefix for a tree")

        def job_for(rel: str) -> FileJob:
            src, dst = os.path.join(input_path, rel), os.path.join(output, rel)
            return FileJob(src, dst, bound_path_for(dst, bind_prefix=bind_prefix, relative_to=output), file_size(src))

        planned = plan_tree_jobs(input_path, output, follow_symlinks, created, job_for)
        if planned is None:
            return 0
        walked, file_jobs = planned
    else:
        if output != STDIO:
            output_for_file(input_path, output)
        bound = bound_path_for(output, bind_path=bind_path, bind_prefix=bind_prefix)
        file_jobs = [FileJob(input_path, output, bound, file_size(input_path))]

    def on_ok(result: FileResult) -> None:
        if not quiet:
            extra = f" ({result.value} bytes)" if verbose else ""
            echo_status(f"{result.job.dst} -> bound to {result.job.path}{extra}", output)

    return run_tree(op_encrypt, file_jobs, {"key": key, "force": force, "jobs": jobs, "sync": not no_fsync},
                     workers=jobs if tree else 1, quiet=quiet, label="encrypting", created=created,
                     on_ok=on_ok, settings=settings, verb="encrypt", walked=walked, output=output,
                     verbose=verbose, runner=runner)


def _encrypt_options(func: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        wrap_key_option,
        click.option("-i", "--input", "input_path", required=True, metavar="IN",
                     help="Plaintext file, or folder tree to encrypt ('-': standard input; pipes and "
                          "FIFOs are read to their end)."),
        click.option("-o", "--output", "output", required=True, metavar="OUT",
                     help="Encrypted file, or folder (the output tree mirrors the input tree); "
                          "'-': standard output (needs --bind-path)."),
        click.option("--bind-path", metavar="PATH",
                     help="Bind the file to PATH (single file; default: the normalized output path)."),
        click.option("--bind-prefix", metavar="PREFIX",
                     help="Bind each file to PREFIX/<path relative to the output root> "
                          "(PREFIX/<basename> for a single file)."),
        click.option("--manifest", metavar="MANIFEST",
                     help="Bind each output as the encrypted mount of Gramine manifest MANIFEST that covers "
                          "it will open it: the mount's URI path + the output's path below it."),
        jobs_option, dask_options, quiet_option, verbose_option, force_option, no_fsync_option, follow_symlinks_option,
        debug_option, click.pass_context,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@click.command("encrypt", cls=PfsFileCommand)
@_encrypt_options
def encrypt(ctx: click.Context, **kwargs: Any) -> int:
    """Encrypt a file or a folder tree; print the path each file is bound to.

    The bound path is what a Gramine manifest must use for the file (by default the output
    path, normalized: './enc//a' -> 'enc/a'). Outputs get the input's permission bits, minus
    the umask.
    """
    return _encrypt(ctx, **kwargs)


@click.command("pfs-encrypt", cls=PfsFileCommand, context_settings={"help_option_names": ["-h", "--help"]})
@_encrypt_options
def encrypt_standalone(ctx: click.Context, **kwargs: Any) -> int:
    """Encrypt a file or a folder tree (same as 'pfs encrypt')."""
    return _encrypt(ctx, **kwargs)
