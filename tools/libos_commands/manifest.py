"""``libos manifest``: Gramine's ``gramine-manifest`` (template -> final manifest)."""

from __future__ import annotations

import os
import stat
import sys
import traceback

import click

from ..cli_support import CliError, UsageProblem, describe_error

STDIO = "-"


def _read_template(infile: str) -> tuple[str, str, int | None]:
    """(text, name for messages, mode of the file or None for standard input)."""
    if infile == STDIO:
        return sys.stdin.read(), "<stdin>", None
    try:
        with open(infile, encoding="utf-8") as file:
            return file.read(), infile, os.fstat(file.fileno()).st_mode
    except IsADirectoryError:
        raise UsageProblem(f"template '{infile}' is a folder, not a file") from None
    except FileNotFoundError:
        raise UsageProblem(f"template '{infile}' does not exist") from None
    except UnicodeDecodeError:
        raise CliError(f"template '{infile}' is not UTF-8 text") from None
    except OSError as exc:
        raise CliError(f"can't read template '{infile}': {exc.strerror}") from None


def _check_outfile(outfile: str) -> None:
    try:
        st = os.lstat(outfile)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CliError(f"can't check output '{outfile}': {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        from ..outputs import _kind

        raise UsageProblem(f"output '{outfile}' is {_kind(st.st_mode)}; libos manifest only replaces regular files "
                           "(remove it or choose another output; - writes to standard output)")


def _write(outfile: str, text: str, source_mode: int | None) -> None:
    if outfile == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from ..outputs import AtomicOutput, output_mode

    with AtomicOutput(outfile, force=True, mode=output_mode(source_mode)) as out:
        out.file.write_at(0, text.encode())
        out.commit()


@click.command("manifest")
@click.option("-c", "--string", metavar="STRING", help="The template itself, instead of INFILE.")
@click.option("-D", "--define", "defines", multiple=True, metavar="NAME=VALUE",
              help="Define a template variable (a string; -D NAME alone is true). Repeatable.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Check the manifest against Gramine's schema.")
@click.option("--chroot", metavar="DIR", help="Look trusted files up inside DIR (their URIs unchanged).")
@click.option("--trusted-deps", is_flag=True,
              help="Add libos.entrypoint and its shared libraries (as ld.so finds them) to sgx.trusted_files.")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.argument("infile", required=False)
@click.argument("outfile", required=False, default=STDIO)
def manifest(string: str | None, defines: tuple[str, ...], check: bool, chroot: str | None, trusted_deps: bool,
             debug: bool, infile: str | None, outfile: str) -> None:
    """Render the manifest template INFILE (or -c STRING) into the final manifest OUTFILE (default: stdout).

    As Gramine's gramine-manifest: Gramine's template globals, Manifest()'s defaults, the schema
    check, and every sgx.trusted_files entry expanded (folders recursively) with its sha256.
    OUTFILE is written whole or not at all; - is standard output, INFILE - standard input."""
    from pathlib import Path

    from ..outputs import Terminated, stop_signals

    try:
        with stop_signals():
            if bool(string) == bool(infile):
                raise UsageProblem("specify exactly one of INFILE and -c STRING")
            if chroot is not None and not os.path.isdir(chroot):
                raise UsageProblem(f"--chroot '{chroot}' is not a folder")
            if outfile != STDIO:
                _check_outfile(outfile)
            if string is not None:
                text, source, mode = string, "<-c string>", None
            else:
                text, source, mode = _read_template(infile or STDIO)

            from libos.errors import SgxManifestError
            from libos.templating import parse_defines, render_manifest

            try:
                result = render_manifest(text, parse_defines(defines), source=source, check=check,
                                         trusted_deps=trusted_deps, chroot=Path(chroot) if chroot else None)
            except SgxManifestError as exc:
                failed_check = str(exc).startswith("manifest failed validation")
                hint = " (or skip the check with --no-check)" if failed_check else ""
                raise CliError(f"{exc}{hint}") from None
            _write(outfile, result, mode)
    except (Terminated, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Terminated) else 2
        click.echo(f"libos: stopped by signal {signum}; nothing written", err=True)
        sys.exit(128 + signum)
    except (CliError, OSError) as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"libos: error: {exc if isinstance(exc, CliError) else describe_error(exc)}", err=True)
        sys.exit(exc.code if isinstance(exc, CliError) else 1)
