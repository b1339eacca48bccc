"""``libos run``: run a manifest's entry point inside its file view (see :mod:`libos.runner`)."""

from __future__ import annotations

import sys
import traceback

import click


def _warn(message: str) -> None:
    click.echo(f"libos: warning: {message}", err=True)


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    click.echo(f"libos: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def _load_keys(lo, specs: tuple[str, ...]) -> None:
    """``--key NAME=FILE``: set key NAME from FILE (16 raw bytes or 32 hex characters)."""
    from pfs.keys import load_key

    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise click.UsageError(f"--key {spec!r}: expected NAME=FILE (a key file, as 'pfs gen-key -w' writes)")
        lo.keys.set(name, load_key(path, what=f"key {name!r}"))


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("manifest")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("-k", "--key", "keys", multiple=True, metavar="NAME=FILE",
              help="Provision key NAME (an encrypted mount's key_name) from FILE: 16 bytes or 32 hex "
                   "characters, as 'pfs gen-key -w' writes it. Repeatable. Keys never go on the command line.")
@click.option("--platform", "platform_file", metavar="FILE",
              help="The simulated SGX platform a signed manifest runs on (made 0600 on first use; default: "
                   "$PFSKIT_SGX_PLATFORM, else ~/.local/share/pfskit/sgx-platform).")
@click.option("-l", "--pal", metavar="FILE",
              help="The PAL ELF a signed manifest was signed with (libos sign --pal); default pfskit's stand-in.")
@click.option("--debug", is_flag=True, help="Show tracebacks and FUSE requests.")
def run(manifest: str, args: tuple[str, ...], keys: tuple[str, ...], platform_file: str | None, pal: str | None,
        debug: bool) -> None:
    """Run MANIFEST's libos.entrypoint inside the file view the manifest defines.

    The view: its fs.root and fs.mounts (host folders, encrypted folders, tmpfs), a /proc of its
    own processes and a small /dev. A signed MANIFEST (app.manifest.sgx, app.sig beside it, as
    libos sign writes them) runs as the enclave on a simulated SGX platform: it starts only if
    its signature and MRENCLAVE check, and then has its seal keys (_sgx_mrenclave,
    _sgx_mrsigner) and /dev/attestation's report and quote.

    ARGS go to the program when the manifest sets loader.insecure__use_cmdline_argv
    (put `--` before them). The exit status is the program's (128+N when a signal N killed it).

    Options come before MANIFEST. Example: libos run -k default=wrap.key app.toml -- -c "print(1)"
    """
    import logging

    logging.basicConfig(format="libos: warning: %(message)s", level=logging.WARNING)
    from libos.errors import LibosError
    from libos.loader import UsageError, launch_plan, unsupported_keys
    from libos.manifest import ManifestError, load_manifest

    try:
        try:
            m = load_manifest(manifest)
        except FileNotFoundError as exc:
            raise LibosError(f"manifest '{manifest}' not found: {exc.strerror}") from None
        rest = list(args)
        if rest[:1] == ["--"]:  # click keeps the separator once MANIFEST is given
            rest = rest[1:]
        plan = launch_plan(m, rest)
        for line in unsupported_keys(m):
            _warn(line)
        from libos.runner import enter_namespaces
        from libos.runner import run as run_plan

        enter_namespaces(plan)  # unprivileged: a user namespace, before anything starts a thread
        from libos import LibOS

        if pal is None and platform_file is None:
            lo = LibOS.boot(m)
        else:
            from libos.enclave import is_signed

            if not is_signed(manifest):
                raise click.UsageError("--platform and --pal are for a signed manifest (app.manifest.sgx)")
            lo = LibOS.boot(m, platform=platform_file, pal=pal)
        _load_keys(lo, keys)
        missing = [n for n in m.keys_missing if not lo.keys.is_set(n)]
        if missing:
            raise LibosError(f"key {missing[0]!r} (key_name of an encrypted mount) is not set: give it with "
                             f"--key {missing[0]}=FILE or in fs.insecure__keys")
        code = run_plan(m, plan, debug=debug, lo=lo, on_error=lambda msg: _warn(msg))
    except UsageError as exc:
        _fail(str(exc), 2, debug)
    except click.UsageError:
        raise
    except (ManifestError, OSError) as exc:
        _fail(str(exc) if isinstance(exc, ManifestError | LibosError) or not exc.strerror
              else f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else ""), 1, debug)
    except Exception as exc:
        _fail(f"{type(exc).__name__}: {exc}", 1, debug)
    sys.exit(code)

