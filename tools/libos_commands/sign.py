"""``libos sign``: Gramine's ``gramine-sgx-sign`` (the final manifest and its SIGSTRUCT)."""

from __future__ import annotations

import sys
import traceback

import click


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    click.echo(f"libos: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def _prot(flags: int) -> str:
    kind = "TCS" if flags & 0x100 else "REG"
    return f"{kind}:" + "".join(c if flags & bit else "-" for c, bit in (("R", 1), ("W", 2), ("X", 4)))


def _print_details(result) -> None:
    """What gramine-sgx-sign prints with --verbose: the measured attributes, the memory areas
    and the measurement."""
    from pal.sgx.layout import PAGE, SECINFO_R, SECINFO_W, SECINFO_X, enclave_params
    from pal.sgx.pal_image import PF_R, PF_W, PF_X

    params = enclave_params(result.final)
    click.echo("Attributes (required for enclave measurement):")
    click.echo(f"    size:        {params.enclave_size:#x}")
    click.echo(f"    edmm:        {params.edmm_enable}")
    click.echo(f"    max_threads: {params.max_threads}")
    click.echo("SGX remote attestation:")
    attestation = result.final.get("sgx", {}).get("remote_attestation", "none")
    click.echo({"none": "    None", "dcap": "    DCAP/ECDSA"}.get(attestation, "    <unrecognized>"))
    click.echo("Memory:")
    for area in result.areas:
        if area.pal is not None:
            base = area.addr - area.pal.map_base
            for seg in area.pal.segments:
                flags = area.flags | (SECINFO_R if seg.flags & PF_R else 0) | (SECINFO_W if seg.flags & PF_W else 0) \
                    | (SECINFO_X if seg.flags & PF_X else 0)
                start = base + seg.vaddr - seg.vaddr % PAGE
                end = base + -(-(seg.vaddr + seg.memsz) // PAGE) * PAGE
                desc = "code" if flags & SECINFO_X else "data"
                click.echo(f"    {start:016x}-{end:016x} [{_prot(flags)}] ({desc}) measured")
        else:
            measured = " measured" if area.measure else ""
            click.echo(f"    {area.addr:016x}-{area.end:016x} [{_prot(area.flags)}] ({area.desc}){measured}")
    click.echo("Measurement:")
    click.echo(f"    {result.mrenclave.hex()}")


@click.command("sign")
@click.option("-m", "--manifest", "manifest", metavar="FILE", required=True, help="Input .manifest file.")
@click.option("-o", "--output", metavar="FILE", required=True,
              help="Output .manifest.sgx file (the manifest with the fields Gramine fills in).")
@click.option("-k", "--key", metavar="FILE", default=None,
              help="Signing key (.pem, RSA-3072, exponent 3). Default: $XDG_CONFIG_HOME/gramine/enclave-key.pem "
                   "(~/.config/gramine/enclave-key.pem), as Gramine.")
@click.option("-s", "--sigfile", metavar="FILE", default=None,
              help="Output .sig file. Default: the manifest's path without .manifest, plus .sig.")
@click.option("-d", "--date", default="today", show_default=True,
              help='SIGSTRUCT date: YYYY-MM-DD or "today".')
@click.option("-l", "--libpal", "--pal", "pal", metavar="FILE", default=None,
              help="The PAL ELF to measure (Gramine's libpal.so, or any ELF). Default: pfskit's stand-in PAL, "
                   "which identifies pfskit's runtime (see docs/signing.md).")
@click.option("--chroot", metavar="DIR", default=None, help="Read trusted files inside DIR, not the host's /.")
@click.option("--verbose/--quiet", "-v/-q", default=True,
              help="Print the layout and measurement (default on); --quiet prints nothing.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def sign(manifest: str, output: str, key: str | None, sigfile: str | None, date: str, pal: str | None,
         chroot: str | None, verbose: bool, debug: bool) -> None:
    """Sign MANIFEST's enclave as gramine-sgx-sign: write the final manifest and its .sig.

    Trusted files still without a hash are hashed; the final manifest (.manifest.sgx) is
    measured into MRENCLAVE with the PAL, and the SIGSTRUCT (.sig) is signed with the key.
    With Gramine's libpal.so (--pal) both outputs are byte-identical to gramine-sgx-sign's for
    the same inputs, date and key. Example: libos sign -k key.pem -m app.manifest -o app.manifest.sgx
    """
    import os

    from libos.errors import LibosError, SigningError
    from libos.signing import parse_date, sign_manifest
    from pal.sgx.layout import EnclaveError

    try:
        when = parse_date(date)
    except SigningError as exc:
        _fail(f"--date: {exc}", 2, debug)
    if chroot is not None and not os.path.isdir(chroot):
        _fail(f"--chroot '{chroot}' is not a folder", 2, debug)
    if not os.path.isfile(manifest):
        _fail(f"manifest '{manifest}' does not exist" if not os.path.exists(manifest)
              else f"manifest '{manifest}' is not a file", 2, debug)
    from libos.signing import default_key_path

    key_path = key if key is not None else str(default_key_path())
    if not os.path.exists(key_path):
        _fail(f"signing key '{key_path}' does not exist; make one with 'libos gen-private-key' "
              "(or give another with --key)", 2, debug)
    if pal is not None and not os.path.isfile(pal):
        _fail(f"PAL '{pal}' does not exist" if not os.path.exists(pal) else f"PAL '{pal}' is not a file", 2, debug)
    try:
        result = sign_manifest(manifest, key_path, output, sigfile=sigfile, date=when, pal=pal, chroot=chroot)
    except (LibosError, EnclaveError) as exc:
        _fail(str(exc), 1, debug)
    except OSError as exc:
        _fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", 1, debug)
    if not verbose:
        return
    _print_details(result)
    click.echo(f"wrote {result.manifest_sgx} and {result.sigfile} (MRENCLAVE {result.mrenclave.hex()}, "
               f"MRSIGNER {result.sigstruct.mrsigner.hex()})", err=True)
