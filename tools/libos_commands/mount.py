"""``libos mount``: a manifest's whole file view as a FUSE mount (``pfs umount`` ends it)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

import click

from ..cli_support import CliError, describe_error


@click.command("mount")
@click.argument("manifest")
@click.argument("mountpoint")
@click.option("--ro", "readonly", is_flag=True, help="Mount read-only.")
@click.option("-f", "--foreground", is_flag=True, help="Stay in the foreground (Ctrl-C unmounts).")
@click.option("--allow-other", is_flag=True, help="Let other users access the mount.")
@click.option("--expose-keys", is_flag=True,
              help="Show /dev/attestation/keys (mode 0600, to the mount's owner only); hidden by default.")
@click.option("--log", "log_file", metavar="FILE",
              help="Append the daemon's messages to FILE. Without it a background mount appends them to "
                   "$XDG_STATE_HOME/pfskit/mount.log (~/.local/state/pfskit/mount.log).")
@click.option("--platform", "platform_file", metavar="FILE",
              help="The simulated SGX platform of a signed manifest (app.manifest.sgx), as for libos run.")
@click.option("--fuse-api", type=click.Choice(["mfusepy", "lowlevel"]), default=None,
              help="libfuse's path-based API through mfusepy (the default), or its inode-based low-level API "
                   "(default: $PFSKIT_FUSE_API, else mfusepy).")
@click.option("--debug", is_flag=True, help="Show tracebacks and FUSE requests.")
def mount(manifest: str, mountpoint: str, readonly: bool, foreground: bool, allow_other: bool, expose_keys: bool,
          log_file: str | None, platform_file: str | None, fuse_api: str | None, debug: bool) -> None:
    """Mount the whole file view MANIFEST defines (its fs.root, fs.mounts, /proc, /dev) at MOUNTPOINT.

    Unmount with `pfs umount MOUNTPOINT` (or Ctrl-C / SIGTERM of the daemon)."""
    # (here, not at the top: `libos mount --help` and usage errors need none of them)
    from libos import LibOS
    from libos.manifest import ManifestError
    from vfs.fuse import fuse_api as chosen_api
    from vfs.fuse import load_mfusepy, serve

    from ..mounting import check_mountpoint, mount_log_path, run_mount

    try:
        check_mountpoint(mountpoint)
        api = chosen_api(fuse_api)
        load_mfusepy()
        try:
            lo = LibOS.boot(manifest, platform=platform_file)
        except ManifestError as exc:
            raise CliError(str(exc)) from None
        except FileNotFoundError as exc:
            raise CliError(f"manifest '{manifest}' not found: {exc.strerror}") from None

        lo.process()  # pid 1: what /proc/self shows to programs looking through the mount
        _host_keys(lo, expose_keys)

        def run(ready: Callable[[], None]) -> None:
            serve(lo.vfs, os.path.abspath(mountpoint), writable=not readonly, foreground=True,
                  allow_other=allow_other, debug=debug, fsname=os.path.abspath(manifest), subtype="libos",
                  # host folders change behind the mount's back; the writeback cache would trust
                  # its own sizes over theirs (and over a hard link's other names)
                  writeback_cache=False, keep_cache=False,
                  multithreaded=True, ready=ready, api=api)  # multithreaded: a FIFO open or read may block one request

        run_mount(run, mountpoint, foreground=foreground, log_file=log_file, prog="libos")
        if not foreground:
            click.echo(f"mounted the file view of {manifest} at {mountpoint}; unmount with "
                       f"'pfs umount {mountpoint}'; messages go to {mount_log_path(log_file, foreground=False)}",
                       err=True)
    except (CliError, OSError) as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"libos: error: {exc if isinstance(exc, CliError) else describe_error(exc)}", err=True)
        sys.exit(1)


def _host_keys(lo, expose: bool) -> None:
    """The keys in the mount's /dev: hidden, or (``--expose-keys``) for the mount's owner only.
    Inside the LibOS they stay as Gramine has them."""
    from vfs.dev import DevFs

    dev = lo.vfs.mounts.at("/dev")
    if dev is not None and isinstance(dev.fs, DevFs):
        dev.fs.host_view(expose=expose, owner=(os.geteuid(), os.getegid()))
