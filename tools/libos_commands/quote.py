"""``libos quote verify|view``: check or show a (simulated) DCAP quote, as a verifier service would."""

from __future__ import annotations

import sys
import traceback

import click


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    click.echo(f"libos: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def _read_quote(path: str, debug: bool) -> bytes:
    """The quote file's bytes; a file that can't be read, or is far too large: one line, exit 2."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as exc:
        _fail(f"quote file '{path}': {exc.strerror}", 2, debug)
    if len(data) >= 1 << 20:
        _fail(f"quote file '{path}' is larger than 1 MiB: not a quote", 2, debug)
    return data


def _hex(size: int | None, name: str):
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes | None:
        if value is None:
            return None
        text = value.removeprefix("0x")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not hex", param_hint=name) from None
        if size is not None and len(raw) != size:
            raise click.BadParameter(f"expected {size} bytes ({2 * size} hex characters), got {len(raw)}",
                                     param_hint=name)
        if size is None and len(raw) > 64:
            raise click.BadParameter(f"at most 64 bytes (128 hex characters), got {len(raw)}", param_hint=name)
        return raw
    return convert


@click.group("quote", context_settings={"help_option_names": ["-h", "--help"]})
def quote() -> None:
    """Verify or show a quote read from /dev/attestation/quote (simulated DCAP v3)."""


@quote.command("verify")
@click.argument("quote_file", metavar="QUOTE")
@click.option("--mrenclave", callback=_hex(32, "--mrenclave"), metavar="HEX", help="Expected MRENCLAVE (64 hex).")
@click.option("--mrsigner", callback=_hex(32, "--mrsigner"), metavar="HEX", help="Expected MRSIGNER (64 hex).")
@click.option("--isv-prod-id", type=click.IntRange(0, 0xFFFF), help="Expected ISVPRODID.")
@click.option("--min-isv-svn", type=click.IntRange(0, 0xFFFF), help="Lowest acceptable ISVSVN.")
@click.option("--report-data", callback=_hex(None, "--report-data"), metavar="HEX",
              help="Expected report data (up to 64 bytes; shorter values must be followed by zeros).")
@click.option("--platform", "platform_file", metavar="FILE",
              help="The simulated platform the quote must come from (default: $PFSKIT_SGX_PLATFORM, else "
                   "~/.local/share/pfskit/sgx-platform).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def verify(quote_file: str, mrenclave: bytes | None, mrsigner: bytes | None, isv_prod_id: int | None,
           min_isv_svn: int | None, report_data: bytes | None, platform_file: str | None, debug: bool) -> None:
    """Check QUOTE's signature chain and every field asked for; exit 1 naming the field that fails."""
    data = _read_quote(quote_file, debug)
    from pal.sgx.platform import PlatformError, load_platform
    from pal.sgx.quote import QuoteError, verify_quote

    try:
        platform = load_platform(platform_file, create=False)
        info = verify_quote(data, platform=platform, mrenclave=mrenclave, mrsigner=mrsigner,
                            isv_prod_id=isv_prod_id, min_isv_svn=min_isv_svn, report_data=report_data)
    except (QuoteError, PlatformError) as exc:
        _fail(f"{quote_file}: {exc}" if isinstance(exc, QuoteError) else str(exc), 1, debug)
    body = info.body
    click.echo(f"{quote_file}: quote verified (simulated SGX platform {platform.path}): mrenclave "
               f"{body.mrenclave.hex()} mrsigner {body.mrsigner.hex()} isv_prod_id {body.isvprodid} "
               f"isv_svn {body.isvsvn}")


@quote.command("view")
@click.argument("quote_file", metavar="QUOTE")
@click.option("--json", "as_json", is_flag=True, help="Print the fields as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def view(quote_file: str, as_json: bool, debug: bool) -> None:
    """Print every field of QUOTE (nothing is verified: use `libos quote verify`)."""
    data = _read_quote(quote_file, debug)
    from pal.sgx.quote import QuoteError, parse_quote

    try:
        info = parse_quote(data)
    except QuoteError as exc:
        _fail(f"{quote_file}: {exc}", 1, debug)
    fields = info.to_dict()
    del fields["verified"]
    if as_json:
        import json

        click.echo(json.dumps(fields, indent=2))
        return
    for key, value in fields.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for sub, v in value.items():
                click.echo(f"    {sub}: {v}")
        elif isinstance(value, list):
            click.echo(f"{key}:")
            for v in value:
                click.echo(f"    {v}")
        else:
            click.echo(f"{key}: {value}")
    click.echo("(not verified: use libos quote verify)")
