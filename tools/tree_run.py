"""How the ``pfs`` file commands run over trees: walking inputs, making output folders, running
the per-file operation over every file, and the summary (see :mod:`tools.tree_walk` for what a
walk leaves out)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import click

from .cli_support import STDIO, CliError, UsageProblem, echo_error, is_inside, require_existing
from .file_jobs import FileJob, FileResult, Progress, run_file_jobs
from .outputs import make_dirs, prune_dirs
from .pfs_command import Settings, _print_failure, _report_failures
from .tree_walk import Tree, report_skipped, walk_tree


def output_for_file(input_path: str, output: str) -> None:
    """Checks for a single-file run: the output must not be a folder."""
    if os.path.isdir(output):
        raise CliError(f"output '{output}' is a folder but the input '{input_path}' is a file; "
                       "give the path of the output file", code=2)


def output_for_tree(input_path: str, output: str) -> None:
    """Checks for a tree run: the output must be a folder (or not exist yet)."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"output '{output}' is a file but the input '{input_path}' is a folder; "
                       "give an output folder", code=2)


def run_tree(op: Callable[..., Any], jobs: list[FileJob], params: dict[str, Any], *, workers: int,
              quiet: bool, label: str, created: list[str],
              on_ok: Callable[[FileResult], None], settings: Settings, verb: str,
              walked: Tree | None = None, output: str | None = None, verbose: bool = False,
              runner: Callable[..., Any] | None = None) -> int:
    """Report what the walk left out, make the output folders (``walked``'s empty folders too,
    under ``output``), run ``op`` over ``jobs`` (through ``runner``, e.g. on a Dask cluster, when
    given), report; return the exit status."""
    unreadable = report_skipped(walked.skipped, verbose=verbose) if walked is not None else 0
    keep: set[str] = set()
    results: list[FileResult] = []
    if walked is not None and output is not None:
        for rel in walked.empty_folders():
            folder = os.path.join(output, rel)
            try:
                make_dirs(folder, created)
            except CliError as exc:
                unreadable += 1
                echo_error(str(exc))
                continue
            keep.add(folder)
    runnable: list[FileJob] = []
    for job in jobs:
        if job.dst is not None and job.dst != STDIO:
            try:
                make_dirs(os.path.dirname(job.dst), created)
            except CliError as exc:
                result = FileResult(job, False, message=str(exc))
                _print_failure(result, settings)
                results.append(result)
                continue
        runnable.append(job)
    total = sum(j.weight for j in runnable)
    try:
        with Progress(total, label, enabled=not quiet) as bar:
            for result in (runner or run_file_jobs)(op, runnable, params, workers=workers, progress=bar):
                results.append(result)
                if result.ok:
                    on_ok(result)
                else:
                    _print_failure(result, settings)
    finally:
        prune_dirs(created, keep=frozenset(keep))
    return _report_failures(results, settings, verb, unreadable=unreadable)


def make_output_root(output: str, created: list[str]) -> None:
    """Create the output folder of a tree run (one error if that's impossible, nothing left)."""
    try:
        make_dirs(output, created)
    except CliError:
        prune_dirs(created)
        raise


def file_size(path: str) -> int:
    """The size of ``path`` for progress (0 if unknown)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def not_empty(**values: str | None) -> None:
    """Usage errors for options given as empty strings (``-o ""``)."""
    for flag, value in values.items():
        if value is not None and not value:
            raise UsageProblem(f"{flag} must not be empty")


def walk_input_tree(input_path: str, output: str, follow_symlinks: bool) -> Tree:
    """Walk the input tree of encrypt/decrypt (leaving out the output if it lies inside)."""
    output_for_tree(input_path, output)
    skip = output if os.path.isdir(output) and is_inside(output, input_path) else None
    walked = walk_tree(input_path, skip=skip, follow_symlinks=follow_symlinks)
    if nothing_to_do(walked):
        report_skipped(walked.skipped, verbose=True)
        click.echo(f"pfs: note: no files under '{input_path}'; nothing to do", err=True)
    return walked


def plan_tree_jobs(input_path: str, output: str, follow_symlinks: bool, created: list[str],
                   job_for: Callable[[str], FileJob]) -> tuple[Tree, list[FileJob]] | None:
    """Walk an encrypt/decrypt input tree, create the output folder, and make one job per file
    (``job_for(relative path)``); None when there is nothing to do (already reported)."""
    walked = walk_input_tree(input_path, output, follow_symlinks)
    if nothing_to_do(walked):
        return None
    make_output_root(output, created)
    return walked, [job_for(rel) for rel in walked.files]


def nothing_to_do(walked: Tree) -> bool:
    """Whether the walk found nothing to process or mirror, and no error."""
    return not walked.files and not walked.folders and not walked.errors


def expand(paths: Sequence[str], role: str, *, follow_symlinks: bool = False,
            verbose: bool = False) -> tuple[list[tuple[str, str | None]], int]:
    """Files named by ``paths`` (folders walked, what they leave out reported):
    ``(path, the tree it came from or None)``, and the number of unreadable entries."""
    out: list[tuple[str, str | None]] = []
    unreadable = 0
    for path in paths:
        if path != STDIO:
            require_existing(path, role)
        if path != STDIO and os.path.isdir(path):
            walked = walk_tree(path, follow_symlinks=follow_symlinks)
            unreadable += report_skipped(walked.skipped, verbose=verbose)
            out.extend((os.path.join(path, rel), path) for rel in walked.files)
        else:
            out.append((path, None))
    return out, unreadable


def distinct_files(found: list[tuple[str, str | None]], verbose: bool) -> list[str]:
    """The paths of ``found``, each real file once (a link and its target are one file to rekey)."""
    seen: dict[str, str] = {}
    out = []
    for path, _ in found:
        real = os.path.realpath(path)
        if real in seen:
            if verbose:
                click.echo(f"pfs: note: {path}: the same file as {seen[real]}; re-encrypted once", err=True)
            continue
        seen[real] = path
        out.append(path)
    return out
