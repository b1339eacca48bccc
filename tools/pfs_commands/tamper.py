"""``pfs tamper``: corrupted variants of an encrypted file, for testing readers."""

from __future__ import annotations

import os

import click

from pfs.tamper import make_tampered_variants

from ..cli_support import CliError, require_file
from ..outputs import make_dirs, prune_dirs
from ..pfs_command import (
    PfsFileCommand,
    _load_key,
    _settings,
    debug_option,
    force_option,
    quiet_option,
    wrap_key_option,
)
from ..tree_run import not_empty


@click.command("tamper", cls=PfsFileCommand)
@wrap_key_option
@click.option("-i", "--input", "input_path", required=True, metavar="FILE", help="A valid encrypted file.")
@click.option("-o", "--output", "output", required=True, metavar="DIR", help="Folder for the variants.")
@force_option
@quiet_option
@debug_option
@click.pass_context
def tamper(ctx: click.Context, wrap_key: str, input_path: str, output: str, force: bool, quiet: bool,
           debug: bool) -> int:
    """Write corrupted variants of an encrypted file (like Gramine's pf_tamper), for testing readers.

    All variants appear at once or none does: they are written into a temporary folder beside
    the output and moved into place when every one is complete.
    """
    _settings(ctx, debug)
    not_empty(**{"-i/--input": input_path, "-o/--output": output})
    require_file(input_path, "input", folder_hint="; give one encrypted file")
    if os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"output '{output}' is a file; give a folder for the variants", code=2)
    key = _load_key(wrap_key)
    created: list[str] = []
    make_dirs(os.path.dirname(output.rstrip(os.sep)), created)
    try:
        variants = make_tampered_variants(input_path, key, output, overwrite=force)
    finally:
        prune_dirs(created)
    if not quiet:
        width = max((len(n) for n, _ in variants), default=0)
        for name, description in variants:
            click.echo(f"{name.ljust(width)}  {description}")
    click.echo(f"wrote {len(variants)} variants to {output}")
    return 0
