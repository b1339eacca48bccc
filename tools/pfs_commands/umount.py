"""``pfs umount``: unmount a ``pfs mount`` or ``libos mount`` once its daemon has flushed."""

from __future__ import annotations

import click

from ..mounting import unmount
from ..pfs_command import PfsCommand, _settings, debug_option


@click.command("umount", cls=PfsCommand)
@click.argument("mountpoint")
@debug_option
@click.pass_context
def umount(ctx: click.Context, mountpoint: str, debug: bool) -> int:
    """Unmount a `pfs mount` or `libos mount`: waits until the daemon has encrypted and flushed every
    change; fails if it could not (or had died: then its stale mount is removed)."""
    _settings(ctx, debug)
    unmount(mountpoint)
    return 0
