"""What every ``pfs`` subcommand shares: one-line error reporting, settings, common options.

:class:`PfsCommand` and :class:`PfsGroup` turn every error into one line on stderr and an exit
status (``--debug`` adds the traceback); the ``*_option`` decorators keep option names and help
texts the same across subcommands.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from pfs.errors import PfsError

from .cli_support import CliError, UsageProblem, describe_error, echo_error
from .lazy_group import LazyGroup
from .outputs import Terminated, remove_live_temps, stop_signals

if TYPE_CHECKING:
    from .file_jobs import FileResult

# ---------------------------------------------------------------------- error handling

def _wants_debug(args: Sequence[str]) -> bool:
    args = list(args)
    if "--" in args:
        args = args[:args.index("--")]
    return "--debug" in args


def _invoke(main: Callable[..., Any], args: Sequence[str] | None, prog_name: str | None,
            extra: dict[str, Any]) -> int:
    """Run a click ``main`` and turn every error into one line on stderr and an exit status."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = _wants_debug(argv)
    try:
        rv = main(args=argv, prog_name=prog_name, standalone_mode=False, **extra)
    except (click.exceptions.Abort, KeyboardInterrupt):
        remove_live_temps()
        _echo_stopped("interrupted")
        return 130
    except Terminated as exc:
        remove_live_temps()
        _echo_stopped(f"{exc}; no partial output left")
        return 128 + exc.signum
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx is not None else str(exc), err=True)
        return 2
    except click.UsageError as exc:
        if debug:
            _print_traceback()
        where = exc.ctx.command_path if exc.ctx is not None else (prog_name or "pfs")
        echo_error(f"{exc.format_message()} (see '{where} --help')")
        return 2
    except click.ClickException as exc:
        echo_error(exc.format_message())
        return exc.exit_code
    except Exception as exc:
        if debug:
            _print_traceback()
        echo_error(describe_error(exc))
        return exc.code if isinstance(exc, CliError) else 1
    return rv if isinstance(rv, int) else 0


def _print_traceback() -> None:
    import traceback  # only --debug needs it

    traceback.print_exc()


def _echo_stopped(message: str) -> None:
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        echo_error(message)


class _ErrorHandlingMixin:
    """``main`` that reports errors as one line (also under ``click.testing.CliRunner``)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        code = _invoke(super().main, args, prog_name, extra)  # type: ignore[misc]
        if standalone_mode:
            sys.exit(code)
        return code


class PfsGroup(_ErrorHandlingMixin, LazyGroup):
    """The ``pfs`` command group (its subcommands are imported on first use)."""


class PfsCommand(_ErrorHandlingMixin, click.Command):
    """A ``pfs`` subcommand (runnable on its own, as ``pfs-encrypt`` is)."""


class PfsFileCommand(PfsCommand):
    """A subcommand that writes or reads files: SIGTERM and SIGHUP stop it with the same clean-up
    as Ctrl-C (no temporary output left; exit status 128 + the signal number)."""

    def invoke(self, ctx: click.Context) -> Any:
        with stop_signals():
            return super().invoke(ctx)


class Settings:
    """Options shared by every subcommand."""

    def __init__(self, debug: bool = False):
        self.debug = debug


def _settings(ctx: click.Context, debug: bool) -> Settings:
    settings = ctx.find_object(Settings) or ctx.ensure_object(Settings)
    settings.debug = settings.debug or debug
    return settings


def _load_key(path: str, what: str = "wrap key") -> bytes:
    """The key in file ``path``; a key-file problem is a usage error (exit status 2)."""
    from pfs.keys import load_key

    try:
        return load_key(path, what=what)
    except PfsError as exc:
        raise CliError(describe_error(exc), code=2) from None


def _positive_jobs(jobs: int) -> int:
    if jobs < 1:
        raise UsageProblem("--jobs must be at least 1")
    return jobs


def _report_failures(results: list[FileResult], settings: Settings, verb: str, *, unreadable: int = 0) -> int:
    """Print the summary line of a multi-file run; return the exit status. ``unreadable``: the
    entries of the tree that could not be read (reported already), which fail the run too."""
    failed = [r for r in results if not r.ok]
    if failed and len(results) > 1:
        echo_error(f"{len(failed)} of {len(results)} files failed to {verb}")
    if unreadable:
        echo_error(f"{unreadable} entr{'y' if unreadable == 1 else 'ies'} of the tree could not be read; "
                   "what is under them was not processed")
    return 1 if failed or unreadable else 0


def _print_failure(result: FileResult, settings: Settings) -> None:
    if settings.debug and result.trace:
        click.echo(result.trace.rstrip(), err=True)
    echo_error(result.message)


debug_option = click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Print only errors and warnings (no progress bar).")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Print more details.")
jobs_option = click.option("--jobs", "-j", type=int, default=1, show_default=True,
                           help="Worker processes: over the files of a tree, or for one large file.")
force_option = click.option("--force", is_flag=True,
                            help="Replace existing output files (regular files only, never links or devices).")
no_fsync_option = click.option(
    "--no-fsync", "no_fsync", is_flag=True,
    help="Don't fsync outputs before renaming them into place (faster; a power cut soon after may lose them).")
bind_prefix_check_option = click.option(
    "--bind-prefix", metavar="PREFIX",
    help="Check that each file is bound to PREFIX/<its path relative to the tree> (as `encrypt --bind-prefix`).")
wrap_key_option = click.option("-w", "--wrap-key", "wrap_key", required=True, metavar="FILE",
                               help="Key file: 16 raw bytes or 32 hex characters.")
follow_symlinks_option = click.option(
    "--follow-symlinks", is_flag=True,
    help="Follow symbolic links in trees, also to folders and out of the tree (default: a link to a file "
         "inside the tree counts as that file; other links are skipped with a warning).")
strict_option = click.option(
    "--strict", is_flag=True,
    help="Make warnings errors: a file bound to a path other than its own (as -V checks), trailing nodes.")
