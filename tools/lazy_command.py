"""A lazy subcommand's entry in a group's table (no click here: a command line that doesn't need
click, ``libos run``, reads the table without importing it; see :mod:`tools.lazy_group`)."""

from __future__ import annotations

from typing import NamedTuple


class LazyCommand(NamedTuple):
    """Where a subcommand lives: ``module.attribute`` is the :class:`click.Command`; ``help`` is
    the first paragraph of its docstring."""

    module: str
    attribute: str
    help: str
