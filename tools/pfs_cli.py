"""``pfs``: make, read, inspect and check Gramine encrypted files from the command line.

Compatible with Gramine's ``gramine-sgx-pf-crypt`` where they overlap (``-w/--wrap-key``,
``-i/--input``, ``-o/--output``, ``-V/--verify``, ``-v/--verbose``; files or folder trees).
Subcommands: gen-key, encrypt, decrypt, info, verify, tamper, rekey, mount, umount, one module
each in :mod:`tools.pfs_commands`, imported only when that command is used (``COMMANDS``
below; :mod:`tools.lazy_group`). ``pfs-encrypt`` is ``pfs encrypt``.

Every error is one line on stderr (``pfs: error: ...``; ``--debug`` adds the traceback); exit
status 2 for usage errors, 1 for failures. Keys are only ever read from files, never printed.
Outputs appear only when complete (see :class:`tools.outputs.AtomicOutput`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from .lazy_group import LazyCommand
from .pfs_command import PfsGroup, _settings, debug_option

_P = "tools.pfs_commands."

# name -> (module, click command in it, the first paragraph of its docstring: `pfs --help` shows it)
COMMANDS = {
    "gen-key": LazyCommand(_P + "gen_key", "gen_key", "Create a new random 16-byte wrap key file (mode 0600)."),
    "encrypt": LazyCommand(_P + "encrypt", "encrypt",
                           "Encrypt a file or a folder tree; print the path each file is bound to."),
    "decrypt": LazyCommand(_P + "decrypt", "decrypt",
                           "Decrypt and authenticate a file or a folder tree; a failed file leaves no output."),
    "info": LazyCommand(_P + "info", "info",
                        "Show what an encrypted file's header says (and, with a key, its metadata)."),
    "verify": LazyCommand(_P + "verify", "verify",
                          "Authenticate every node of every file (files or trees); report each bad file."),
    "tamper": LazyCommand(_P + "tamper", "tamper", "Write corrupted variants of an encrypted file (like Gramine's "
                          "pf_tamper), for testing readers."),
    "rekey": LazyCommand(_P + "rekey", "rekey",
                         "Re-encrypt files in place under a new key, keeping their bound paths (atomic per file)."),
    "mount": LazyCommand(_P + "mount", "mount", "Mount a folder of encrypted files at MOUNTPOINT (FUSE): plaintext "
                         "view, read-only unless --rw."),
    "umount": LazyCommand(_P + "umount", "umount", "Unmount a `pfs mount` or `libos mount`: waits until the daemon "
                          "has encrypted and flushed every change; fails if it could not (or had died: then its "
                          "stale mount is removed)."),
}


@click.group(cls=PfsGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@debug_option
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Gramine encrypted files (format v2.0, reads v1.0): make keys, encrypt, decrypt, inspect."""
    _settings(ctx, debug)


def _raw_names_on_stdout() -> None:
    """File names that are not UTF-8 are printed as their raw bytes (as ``ls`` prints them), on
    stdout and in messages on stderr."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="surrogateescape")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``pfs``."""
    _raw_names_on_stdout()
    cli.main(args=argv, prog_name="pfs")


def encrypt_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``pfs-encrypt`` (the same as ``pfs encrypt``)."""
    from .pfs_commands.encrypt import encrypt_standalone

    _raw_names_on_stdout()
    encrypt_standalone.main(args=argv, prog_name="pfs-encrypt")


if __name__ == "__main__":
    main()
