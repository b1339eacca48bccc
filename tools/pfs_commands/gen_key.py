"""``pfs gen-key``: a new random wrap key file."""

from __future__ import annotations

import os

import click

from pfs.keys import generate_key_file

from ..outputs import check_output_target
from ..pfs_command import PfsFileCommand, _settings, debug_option, force_option


@click.command("gen-key", cls=PfsFileCommand)
@click.option("-w", "--wrap-key", "wrap_key", required=True, metavar="FILE", help="Key file to create.")
@force_option
@debug_option
@click.pass_context
def gen_key(ctx: click.Context, wrap_key: str, force: bool, debug: bool) -> int:
    """Create a new random 16-byte wrap key file (mode 0600)."""
    _settings(ctx, debug)
    if force and not os.path.isdir(wrap_key):
        check_output_target(wrap_key, force=True)  # --force replaces a regular file, nothing else
    generate_key_file(wrap_key, force=force)
    click.echo(f"wrote a new 16-byte key to {wrap_key} (mode 0600)")
    return 0
