"""``libos gen-private-key``: Gramine's ``gramine-sgx-gen-private-key`` (an enclave signing key)."""

from __future__ import annotations

import sys
import traceback

import click


@click.command("gen-private-key")
@click.argument("output_arg", metavar="[OUTPUT]", required=False)
@click.option("-o", "--output", metavar="FILE", default=None,
              help="Key file to write (or give it as OUTPUT, as Gramine). Default: "
                   "$XDG_CONFIG_HOME/gramine/enclave-key.pem (~/.config/gramine/enclave-key.pem).")
@click.option("-f", "--force", is_flag=True, help="Replace an existing key file.")
@click.option("-q", "--quiet", is_flag=True, help="Don't print the key's path.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def gen_private_key(output_arg: str | None, output: str | None, force: bool, quiet: bool, debug: bool) -> None:
    """Create an enclave signing key (RSA-3072, exponent 3, PEM, mode 0600), as gramine-sgx-gen-private-key.

    An existing file is never replaced without --force."""
    from libos.errors import SigningError
    from libos.signing import generate_private_key_file

    if output_arg is not None and output is not None and output_arg != output:
        click.echo("libos: error: give the key file once (-o FILE or OUTPUT)", err=True)
        sys.exit(2)
    try:
        path = generate_private_key_file(output or output_arg, force=force)
    except SigningError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"libos: error: {exc}", err=True)
        sys.exit(1)
    if not quiet:
        click.echo(f"wrote RSA 3072 private key to {path}")
