"""A click group that imports a subcommand's module only when that command is used.

Start-up counts (``libos run`` pays it on every run), and most of a command line's imports
belong to one subcommand: ``pfs encrypt`` needs ``cryptography``, ``pfs mount`` the VFS and
FUSE. A :class:`LazyGroup` knows its subcommands from a static table of
``name -> LazyCommand(module, attribute, help)``; ``GROUP --help`` lists them from the table,
and a command's module is imported only when that command is run, its help is shown, or the
shell completes it. Registering a command is one line in the group's table::

    "gen-key": LazyCommand("tools.pfs_commands.gen_key", "gen_key",
                           "Create a new random 16-byte wrap key file (mode 0600)."),

``help`` is the first paragraph of the command's docstring (what the group's help shows for
it); tests/test_cli_lazy.py checks that each table entry matches its command. Commands added
with :meth:`click.Group.add_command` work as in any group (imported with the group).
"""

from __future__ import annotations

from collections.abc import Mapping
from gettext import gettext as _
from typing import Any

import click

from .lazy_command import LazyCommand

__all__ = ["LazyCommand", "LazyGroup"]


class LazyGroup(click.Group):
    """A :class:`click.Group` whose ``lazy_commands`` are imported on first use."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, LazyCommand] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, LazyCommand] = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(self.load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def load(self, name: str) -> click.Command:
        """Import the lazy command ``name``."""
        spec = self.lazy_commands[name]
        # __import__, not importlib.import_module: `python -X importtime` reports only the former
        command = getattr(__import__(spec.module, fromlist=[spec.attribute]), spec.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{spec.module}.{spec.attribute} is not a click command")
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # click suggests close matches among the commands loaded so far: make it all of them
            no_such = getattr(click.exceptions, "NoSuchCommand", None)
            if no_such is None or not isinstance(exc, no_such):
                raise
            raise no_such(exc.command_name, possibilities=self.list_commands(ctx), ctx=exc.ctx) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section of the help, as click writes it, without importing a lazy
        command that is not loaded yet (its short help comes from the table)."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is None:
                cmd = click.Command(name, help=self.lazy_commands[name].help)
            if not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section(_("Commands")):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])
