"""What several ``pfs`` file commands share: status lines and the bound-path checks of
``decrypt`` and ``verify`` (not a command)."""

from __future__ import annotations

import click

from pfs.paths import bound_path_for, normalize_bound_path

from ..cli_support import STDIO, UsageProblem
from ..file_jobs import FileResult


def echo_status(line: str, output: str) -> None:
    """A per-file status line: on stdout, or on stderr when the data itself goes to stdout."""
    click.echo(line, err=output == STDIO)


def binding_warnings(result: FileResult, *, own_path: bool) -> None:
    """Warnings about a file that authenticated: a bound path other than its own, trailing nodes."""
    job, facts = result.job, result.value
    if own_path and job.path is None and job.src != STDIO:
        own = normalize_bound_path(job.src)
        if facts["bound"] != own:
            click.echo(f"pfs: warning: {job.src} is bound to '{facts['bound']}', not to its own path '{own}': "
                       f"Gramine opens it only as '{facts['bound']}' (-V or --strict makes this an error)",
                       err=True)



def one_path_check(verify_path: bool, expect_path: str | None, bind_prefix: str | None) -> None:
    if sum((verify_path, expect_path is not None, bind_prefix is not None)) > 1:
        raise UsageProblem("give only one of -V, --expect-path and --bind-prefix")


def expected_path(src: str, tree: str | None, verify_path: bool, expect_path: str | None,
                   bind_prefix: str | None) -> str | None:
    """The path ``src`` must be bound to, or None when no check was asked for."""
    if expect_path is not None:
        return expect_path
    if bind_prefix is not None:
        return bound_path_for(src, bind_prefix=bind_prefix, relative_to=tree)
    return normalize_bound_path(src) if verify_path else None
