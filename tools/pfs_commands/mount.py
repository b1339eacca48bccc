"""``pfs mount``: a folder of encrypted files as a plaintext FUSE mount (``pfs umount`` ends it).

The daemon's life cycle (fork, signals, log) is :mod:`tools.mounting`; the file system served is
:mod:`vfs.encrypted` through :mod:`vfs.fuse`.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections.abc import Callable

import click

from pal import HostFile
from pfs.errors import PfsError, WrongKeyError
from pfs.paths import normalize_bound_path
from pfs.protected_file import ProtectedFile
from pfs.storage import BorrowedStorage

from ..cli_support import CliError
from ..pfs_command import PfsCommand, _load_key, _settings, debug_option, wrap_key_option


def _first_pfs_file(root: str, limit: int = 200) -> str | None:
    """Some regular file below ``root`` (to check the key before mounting), or None."""
    seen = 0
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(".gramine.recovery"):
                continue
            seen += 1
            if seen > limit:
                return None
            return os.path.join(folder, name)
    return None


def _check_binding(encdir: str, sample: str, key: bytes, bind_prefix: str | None) -> None:
    """Refuse to mount when ``sample`` (a file below ``encdir``) is bound to another path than
    the mount would open it as (every file would give EACCES); say which ``--bind-prefix`` fits."""
    rel = os.path.relpath(sample, encdir).replace(os.sep, "/")
    expected = posixpath.join(bind_prefix, rel) if bind_prefix is not None else normalize_bound_path(f"{encdir}/{rel}")
    try:
        with HostFile(sample) as probe, ProtectedFile.open(BorrowedStorage(probe), key, None) as pf:
            found = pf.bound_path
    except PfsError:
        return  # not a protected file, or damaged: reported when it is opened
    if found == expected:
        return
    what = (f"'{sample}' is bound to '{found}', but this mount would open it as '{expected}' "
            "(every file would give EACCES)")
    if found == rel:
        raise CliError(f"{what}; the files are bound to their paths below '{encdir}': mount it from inside, "
                       f"as '.' (cd {shlex.quote(encdir)} && pfs mount ... . MOUNTPOINT); not mounting")
    if found.endswith("/" + rel):
        prefix = found[:-len(rel)].rstrip("/") or "/"
        raise CliError(f"{what}; mount with --bind-prefix {shlex.quote(prefix)}; not mounting")
    raise CliError(f"{what}; no --bind-prefix fits (its bound path does not end in its path below "
                   f"'{encdir}', '{rel}'); not mounting")


@click.command("mount", cls=PfsCommand)
@wrap_key_option
@click.argument("encdir")
@click.argument("mountpoint")
@click.option("--rw", is_flag=True, help="Mount read-write (default: read-only).")
@click.option("--bind-prefix", metavar="PREFIX",
              help="Files are bound to PREFIX/<path below ENCDIR> (as made by `encrypt --bind-prefix`).")
@click.option("-f", "--foreground", is_flag=True, help="Stay in the foreground (Ctrl-C unmounts).")
@click.option("--allow-other", is_flag=True, help="Let other users access the mount (needs user_allow_other).")
@click.option("--recovery", is_flag=True, help="Keep Gramine's recovery journal for files written through the mount.")
@click.option("--log", "log_file", metavar="FILE",
              help="Append the daemon's messages (e.g. files that fail authentication) to FILE. Without it a "
                   "background mount appends them to $XDG_STATE_HOME/pfskit/mount.log "
                   "(~/.local/state/pfskit/mount.log); a foreground one prints them.")
@debug_option
@click.pass_context
def mount(ctx: click.Context, wrap_key: str, encdir: str, mountpoint: str, rw: bool, bind_prefix: str | None,
          foreground: bool, allow_other: bool, recovery: bool, log_file: str | None, debug: bool) -> int:
    """Mount a folder of encrypted files at MOUNTPOINT (FUSE): plaintext view, read-only unless --rw."""
    settings = _settings(ctx, debug)
    # (here, not at the top: `pfs mount --help` and usage errors need none of them)
    from vfs.encrypted import EncryptedFs, KeyStore
    from vfs.fuse import load_mfusepy, serve
    from vfs.mount import MountTable
    from vfs.vfs import VFS

    from ..mounting import check_mountpoint, run_mount

    key = _load_key(wrap_key)
    if not os.path.isdir(encdir):
        raise CliError(f"'{encdir}' is not a folder of encrypted files")
    check_mountpoint(mountpoint)
    load_mfusepy()
    sample = _first_pfs_file(encdir)
    if sample is not None:
        try:
            with HostFile(sample) as probe:
                ProtectedFile.open(BorrowedStorage(probe), key, None)
        except PfsError as exc:
            if isinstance(exc, WrongKeyError):
                raise CliError(f"wrong key for '{encdir}': {exc}; not mounting") from None
            click.echo(f"pfs: warning: {exc}", err=True)
        _check_binding(encdir, sample, key, bind_prefix)
    keys = KeyStore()
    keys.set("default", key)
    vfs = VFS(MountTable())
    vfs.mounts.mount("/", EncryptedFs(encdir, keys=keys, bind_prefix=bind_prefix, enable_recovery=recovery),
                     readonly=not rw)
    if settings.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG)

    def run(ready: Callable[[], None]) -> None:
        serve(vfs, os.path.abspath(mountpoint), writable=rw, foreground=True, allow_other=allow_other,
              debug=settings.debug, fsname=os.path.abspath(encdir), subtype="pfs", ready=ready)

    code = run_mount(run, mountpoint, foreground=foreground, log_file=log_file)
    if not foreground:
        _say_mounted(encdir, mountpoint, rw, log_file)
    return code


def _say_mounted(encdir: str, mountpoint: str, rw: bool, log_file: str | None) -> None:
    from ..mounting import mount_log_path

    click.echo(f"mounted {encdir} at {mountpoint} ({'read-write' if rw else 'read-only'}); "
               f"unmount with 'pfs umount {mountpoint}'; messages go to {mount_log_path(log_file, foreground=False)}",
               err=True)
