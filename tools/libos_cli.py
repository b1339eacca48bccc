"""The ``libos`` command: work with a manifest-defined file view.

Each subcommand is a module of :mod:`tools.libos_commands` (or elsewhere), imported only when
that command is used: one line of ``COMMANDS`` registers it (see :mod:`tools.lazy_group`).
A plain ``libos run`` command line (no help asked, only known options) is read without click
(:mod:`tools.libos_run`): ``libos run`` pays its start-up on every run; anything else, and any
command line it can't read, goes to the click group :data:`cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .lazy_command import LazyCommand

if TYPE_CHECKING:
    import click

# name -> (module, click command in it, the first paragraph of its docstring: `libos --help` shows it)
COMMANDS = {
    "manifest": LazyCommand("tools.libos_commands.manifest", "manifest", "Render the manifest template INFILE (or "
                            "-c STRING) into the final manifest OUTFILE (default: stdout)."),
    "mount": LazyCommand("tools.libos_commands.mount", "mount", "Mount the whole file view MANIFEST defines (its "
                         "fs.root, fs.mounts, /proc, /dev) at MOUNTPOINT."),
    "quote": LazyCommand("tools.libos_commands.quote", "quote", "Verify or show a quote read from "
                         "/dev/attestation/quote (simulated DCAP v3)."),
    "run": LazyCommand("tools.libos_commands.run", "run", "Run MANIFEST's libos.entrypoint inside the file view "
                       "the manifest defines."),
    "sign": LazyCommand("tools.libos_commands.sign", "sign", "Sign MANIFEST's enclave as gramine-sgx-sign: write "
                        "the final manifest and its .sig."),
    "gen-private-key": LazyCommand("tools.libos_commands.gen_private_key", "gen_private_key",
                                   "Create an enclave signing key (RSA-3072, exponent 3, PEM, mode 0600), as "
                                   "gramine-sgx-gen-private-key."),
    "sigstruct-view": LazyCommand("tools.libos_commands.sigstruct_view", "sigstruct_view",
                                  "Print every field of the SIGSTRUCT in SIGFILE (a .sig) and check its signature."),
}


def _make_cli() -> click.Group:
    import click

    from .lazy_group import LazyGroup

    @click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
    def cli() -> None:
        """pfskit's library OS: a Gramine manifest's file view."""

    return cli


def __getattr__(name: str) -> Any:
    if name != "cli":  # the click group, made (and click imported) on first use
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    group = globals()["cli"] = _make_cli()
    return group


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``libos``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        from .libos_run import main_plain

        main_plain(args[1:], own_process=argv is None)  # exits unless the command line needs click
    __getattr__("cli").main(args=args, prog_name="libos")
