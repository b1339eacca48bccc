"""``libos sigstruct-view``: Gramine's ``gramine-sgx-sigstruct-view``, plus a signature check."""

from __future__ import annotations

import sys
import traceback

import click


def readable(sig, verbose: bool = True) -> dict:
    """The fields as gramine-sgx-sigstruct-view names and formats them (its order); without
    ``verbose`` the short set it prints by default."""
    view = {
        "mr_signer": sig.mrsigner.hex(),
        "mr_enclave": sig.enclave_hash.hex(),
        "isv_prod_id": sig.isv_prod_id,
        "isv_svn": sig.isv_svn,
        "attribute_flags": hex(sig.attribute_flags),
        "attribute_xfrms": hex(sig.attribute_xfrms),
        "misc_select": hex(sig.misc_select),
        "attribute_flags_mask": hex(sig.attribute_flags_mask),
        "attribute_xfrm_mask": hex(sig.attribute_xfrm_mask),
        "misc_mask": hex(sig.misc_mask),
        "date": sig.date,
        "debug_enclave": sig.debug,
    }
    if not verbose:
        for key in ("attribute_flags", "attribute_xfrms", "misc_select", "attribute_flags_mask",
                    "attribute_xfrm_mask", "misc_mask", "date"):
            del view[key]
    return view


@click.command("sigstruct-view")
@click.argument("sigfile")
@click.option("--verbose/--quiet", "-v/-q", default=True,
              help="Every field (default), or only Gramine's short set (MRSIGNER, MRENCLAVE, ISVPRODID, ISVSVN, "
                   "debug).")
@click.option("--output-format", type=click.Choice(["text", "toml", "json"]), default="text", show_default=True,
              help="Output format, as Gramine's.")
@click.option("--json", "as_json", is_flag=True, help="Same as --output-format json.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def sigstruct_view(sigfile: str, verbose: bool, output_format: str, as_json: bool, debug: bool) -> None:
    """Print every field of the SIGSTRUCT in SIGFILE (a .sig) and check its signature.

    The fields and formats are gramine-sgx-sigstruct-view's. A malformed file or a signature that
    does not verify is an error (exit status 1)."""
    from pal.sgx.sigstruct import SIGSTRUCT_SIZE, Sigstruct, SigstructError

    try:
        with open(sigfile, "rb") as f:
            data = f.read(SIGSTRUCT_SIZE + 1)
            if len(data) > SIGSTRUCT_SIZE:  # (don't read a big file whole to say it is too big)
                import os

                raise SigstructError(f"a SIGSTRUCT is {SIGSTRUCT_SIZE} bytes, this file has "
                                     f"{os.fstat(f.fileno()).st_size or 'more'}")
        sig = Sigstruct.from_bytes(data)
        sig.verify()
    except (SigstructError, OSError) as exc:
        if debug:
            traceback.print_exc()
        what = str(exc) if isinstance(exc, SigstructError) else (exc.strerror or str(exc))
        click.echo(f"libos: error: {sigfile}: {what}", err=True)
        sys.exit(1)
    view = readable(sig, verbose)
    fmt = "json" if as_json else output_format
    if fmt == "json":
        import json

        click.echo(json.dumps(view, indent=4))
    elif fmt == "toml":
        import tomli_w

        click.echo(tomli_w.dumps(view), nl=False)
    else:
        click.echo("Attributes:")
        for key, value in view.items():
            click.echo(f"    {key}: {value}")
