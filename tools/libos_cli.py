"""The ``libos`` command: work with a manifest-defined file view."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

from .cli_support import CliError, describe_error


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """pfskit's library OS: a Gramine manifest's file view."""


@cli.command("mount")
@click.argument("manifest")
@click.argument("mountpoint")
@click.option("--ro", "readonly", is_flag=True, help="Mount read-only.")
@click.option("-f", "--foreground", is_flag=True, help="Stay in the foreground (Ctrl-C unmounts).")
@click.option("--allow-other", is_flag=True, help="Let other users access the mount.")
@click.option("--debug", is_flag=True, help="Show tracebacks and FUSE requests.")
def mount(manifest: str, mountpoint: str, readonly: bool, foreground: bool, allow_other: bool, debug: bool) -> None:
    """Mount the whole file view MANIFEST defines (its fs.root, fs.mounts, /proc, /dev) at MOUNTPOINT."""
    from libos import LibOS
    from libos.manifest import ManifestError
    from vfs.fuse import load_mfusepy, serve

    from .mounting import check_mountpoint, run_mount

    try:
        check_mountpoint(mountpoint)
        load_mfusepy()
        try:
            lo = LibOS.boot(manifest)
        except ManifestError as exc:
            raise CliError(str(exc)) from None
        except FileNotFoundError as exc:
            raise CliError(f"manifest '{manifest}' not found: {exc.strerror}") from None

        lo.process()  # pid 1: what /proc/self shows to programs looking through the mount

        def run() -> None:
            serve(lo.vfs, os.path.abspath(mountpoint), writable=not readonly, foreground=True,
                  allow_other=allow_other, debug=debug, fsname=os.path.abspath(manifest), subtype="libos",
                  direct_io=True,  # /proc files have no size until they are read
                  multithreaded=True)  # a FIFO open or read may block one request

        run_mount(run, mountpoint, foreground=foreground)
        if not foreground:
            click.echo(f"mounted the file view of {manifest} at {mountpoint}; unmount with "
                       f"'fusermount3 -u {mountpoint}'", err=True)
    except (CliError, OSError) as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"libos: error: {exc if isinstance(exc, CliError) else describe_error(exc)}", err=True)
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``libos``."""
    cli.main(args=argv, prog_name="libos")
