"""``libos run``: run a manifest's entry point inside its file view (see :mod:`libos.runner`).

The click command: its options and help. A plain command line never reaches it (see
:mod:`tools.libos_run`, which does the work for both).
"""

from __future__ import annotations

import sys

import click


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
    from tools.libos_run import execute, key_spec_ok

    for spec in keys:
        if not key_spec_ok(spec):
            raise click.UsageError(f"--key {spec!r}: expected NAME=FILE (a key file, as 'pfs gen-key -w' writes)")
    if pal is not None or platform_file is not None:
        from libos.enclave import is_signed

        if not is_signed(manifest):
            raise click.UsageError("--platform and --pal are for a signed manifest (app.manifest.sgx)")
    rest = list(args)
    if rest[:1] == ["--"]:  # click keeps the separator once MANIFEST is given
        rest = rest[1:]
    sys.exit(execute(manifest, rest, keys, debug, platform_file=platform_file, pal=pal))
