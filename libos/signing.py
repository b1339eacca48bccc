"""Signing an enclave as Gramine's ``gramine-sgx-sign`` does: the final manifest and its SIGSTRUCT.

:func:`sign_manifest` loads a manifest, fills in what Gramine's ``Manifest()`` inserts and hashes
the trusted files still without a hash (:mod:`libos.sgx_manifest`), writes the final manifest
(``.manifest.sgx``, the bytes that are measured), measures the enclave (:mod:`pal.sgx.measure`,
with Gramine's ``libpal.so`` or pfskit's stand-in PAL) and writes the signed SIGSTRUCT
(``.sig``, :mod:`pal.sgx.sigstruct`). With the same manifest, files, PAL, key and date both
outputs are byte-identical to Gramine's. Both outputs are written whole or not at all.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SigningError

__all__ = ["SignedEnclave", "default_key_path", "default_sigfile", "generate_private_key_file", "parse_date",
           "sign_manifest", "write_atomic"]

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def default_key_path() -> Path:
    """Gramine's default signing key: ``$XDG_CONFIG_HOME/gramine/enclave-key.pem``
    (``~/.config/gramine/enclave-key.pem``)."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "gramine" / "enclave-key.pem"


def default_sigfile(manifest_path: str | os.PathLike[str]) -> str:
    """The ``.sig`` beside the manifest, as gramine-sgx-sign names it: the manifest's path minus
    ``.manifest``, plus ``.sig``."""
    name = os.fspath(manifest_path)
    return (name[:-len(".manifest")] if name.endswith(".manifest") else name) + ".sig"


def parse_date(value: str | datetime.date | tuple[int, int, int] | None) -> tuple[int, int, int]:
    """A SIGSTRUCT date: ``"today"`` (also ``None``), ``"YYYY-MM-DD"`` (not checked as a calendar
    date: ``0000-00-00`` is valid, as in Gramine), a :class:`datetime.date` or a tuple."""
    if value is None or (isinstance(value, str) and value.casefold() == "today"):
        value = datetime.date.today()
    if isinstance(value, datetime.date):
        return value.year, value.month, value.day
    if isinstance(value, tuple):
        return value
    match = _DATE.fullmatch(value)
    if not match:
        raise SigningError(f"date {value!r}: expecting \"today\" or YYYY-MM-DD")
    year, month, day = (int(g) for g in match.groups())
    return year, month, day


@dataclass
class SignedEnclave:
    """What :func:`sign_manifest` wrote and measured."""

    manifest_sgx: str
    sigfile: str
    manifest_bytes: bytes
    sigstruct: Any  # pal.sgx.sigstruct.Sigstruct
    areas: list  # pal.sgx.layout.Area, in measurement order
    pal_name: str
    final: dict  # the final manifest's data

    def __repr__(self) -> str:
        return f"SignedEnclave({self.manifest_sgx!r}, {self.sigfile!r}, {self.sigstruct!r}, pal={self.pal_name!r})"

    @property
    def mrenclave(self) -> bytes:
        """MRENCLAVE (32 bytes)."""
        return self.sigstruct.enclave_hash


def _read_key(key_path: str | os.PathLike[str]) -> Any:
    from pal.sgx.sigstruct import SigningKeyError, load_private_key

    name = os.fspath(key_path)
    try:
        pem = Path(name).read_bytes()
    except FileNotFoundError:
        raise SigningError(f"signing key '{name}' does not exist; make one with 'libos gen-private-key' "
                           "(or give another with --key)", errno=2) from None
    except OSError as exc:
        raise SigningError(f"can't read signing key '{name}': {exc.strerror}", errno=exc.errno) from None
    try:
        return load_private_key(pem, name=name)
    except SigningKeyError as exc:
        raise SigningError(str(exc)) from None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_outputs(inputs: dict[str, str], outputs: dict[str, str]) -> None:
    """Outputs must be distinct, must not replace an input and may replace only regular files."""
    if os.path.abspath(outputs["output"]) == os.path.abspath(outputs["sigfile"]):
        raise SigningError(f"the output manifest and the .sig are the same file '{outputs['output']}'")
    for role, path in outputs.items():
        for what, source in inputs.items():
            if source and _same_file(path, source):
                raise SigningError(f"{role} '{path}' is the {what}; not overwriting it (choose another output)")
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                raise SigningError(f"{role} '{path}' exists and is not a regular file; remove it or choose "
                                   "another output")


def write_atomic(path: str, data: bytes, mode: int) -> str:
    """Write ``data`` to a temporary file beside ``path`` (mode ``mode``, fsynced) and return its
    name; the caller renames it into place (or removes it)."""
    import tempfile

    folder = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SigningError(f"can't write in the folder of '{path}': {exc.strerror}", errno=exc.errno) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _output_mode(manifest_path: str) -> int:
    """0644 minus the umask, and never more readable than the manifest (the owner keeps write)."""
    umask = os.umask(0o022)
    os.umask(umask)
    manifest_mode = stat.S_IMODE(os.stat(manifest_path).st_mode)
    return 0o644 & ~umask & (manifest_mode | 0o200)


def sign_manifest(manifest_path: str | os.PathLike[str], key_path: str | os.PathLike[str] | None,
                  output: str | os.PathLike[str], sigfile: str | os.PathLike[str] | None = None,
                  date: str | datetime.date | tuple[int, int, int] | None = None,
                  pal: str | os.PathLike[str] | None = None, chroot: str | os.PathLike[str] | None = None,
                  *, jobs: int | None = None) -> SignedEnclave:
    """Sign the enclave of ``manifest_path`` as ``gramine-sgx-sign`` does and write ``output``
    (the final ``.manifest.sgx``) and ``sigfile`` (default :func:`default_sigfile`).

    ``key_path``: an RSA-3072 private key of exponent 3 (PEM; default :func:`default_key_path`);
    ``date``: the SIGSTRUCT date (default today); ``pal``: the PAL ELF to measure (Gramine's
    ``libpal.so``; default pfskit's stand-in PAL); ``chroot``: where trusted files are read.
    Raises :class:`SigningError`, ``ManifestError`` (:mod:`libos.sgx_manifest`) or
    ``EnclaveError`` (:mod:`pal.sgx.layout`); nothing is written then.
    """
    from pal.sgx.layout import EnclaveError, enclave_areas, enclave_params
    from pal.sgx.measure import PalImage, measure
    from pal.sgx.sigstruct import Sigstruct, SigstructError

    from . import sgx_manifest

    manifest_name = os.fspath(manifest_path)
    key_name = os.fspath(key_path) if key_path is not None else str(default_key_path())
    outputs = {"output": os.fspath(output),
               "sigfile": os.fspath(sigfile) if sigfile is not None else default_sigfile(manifest_name)}
    _check_outputs({"input manifest": manifest_name, "signing key": key_name,
                    "PAL": os.fspath(pal) if pal is not None else ""}, outputs)
    when = parse_date(date)
    private_key = _read_key(key_name)

    data = sgx_manifest.load(manifest_name)
    # gramine-sgx-sign applies Manifest()'s defaults and expands trusted files; it does not run
    # the schema check (gramine-manifest does)
    sgx_manifest.finalize(data, chroot=Path(chroot) if chroot is not None else None, check=False, jobs=jobs)
    manifest_bytes = sgx_manifest.dumps(data).encode("utf-8")

    try:
        image = PalImage.from_elf(pal) if pal is not None else PalImage.standin()
    except FileNotFoundError:
        raise SigningError(f"PAL '{pal}' does not exist", errno=2) from None
    except EnclaveError as exc:
        raise SigningError(str(exc)) from None
    params = enclave_params(data)  # (the data that manifest_bytes serialise: no second TOML parse)
    areas = enclave_areas(manifest_bytes, image, params=params)
    digest = measure(areas, params.enclave_size)
    try:
        sig = Sigstruct.for_enclave(digest, data["sgx"], date=when)
        sig.sign(private_key)
    except SigstructError as exc:
        raise SigningError(str(exc)) from None

    mode = _output_mode(manifest_name)
    temps = []
    try:
        temps.append(write_atomic(outputs["output"], manifest_bytes, mode))
        temps.append(write_atomic(outputs["sigfile"], sig.to_bytes(), mode))
        # the .sig last: a .sig beside a manifest always belongs to a manifest written before it
        for tmp, final in zip(temps, (outputs["output"], outputs["sigfile"]), strict=True):
            os.replace(tmp, final)
        temps.clear()
    except OSError as exc:
        raise SigningError(f"can't write '{exc.filename or outputs['output']}': {exc.strerror}",
                           errno=exc.errno) from None
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return SignedEnclave(outputs["output"], outputs["sigfile"], manifest_bytes, sig, areas, image.name, data)


def generate_private_key_file(path: str | os.PathLike[str] | None = None, *, force: bool = False) -> str:
    """Write a new RSA-3072 private key of exponent 3 to ``path`` (default
    :func:`default_key_path`) as ``gramine-sgx-gen-private-key`` does: PEM "TraditionalOpenSSL",
    unencrypted, mode 0600, missing folders created 0700. An existing file is kept unless
    ``force``; the key appears whole or not at all. Returns the path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from pal.sgx.sigstruct import RSA_EXPONENT, RSA_KEY_BITS

    final = os.fspath(path) if path is not None else str(default_key_path())
    if os.path.isdir(final):
        raise SigningError(f"key file '{final}' is a folder; give the path of the key file")
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(final)
        if not stat.S_ISREG(st.st_mode):
            raise SigningError(f"'{final}' exists and is not a regular file; not replacing it")
        if not force:
            raise SigningError(f"refusing to overwrite {final}, use --force to replace it", errno=17)
    folder = os.path.dirname(final)
    if folder:
        old = os.umask(0o077)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise SigningError(f"can't create folder '{folder}': {exc.strerror}", errno=exc.errno) from None
        finally:
            os.umask(old)
    pem = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=RSA_KEY_BITS).private_bytes(
        encoding=serialization.Encoding.PEM, format=serialization.PrivateFormat.TraditionalOpenSSL,
        encryption_algorithm=serialization.NoEncryption())
    tmp = write_atomic(final, pem, 0o600)
    try:
        if force:
            os.replace(tmp, final)
        else:
            os.link(tmp, final)  # fails if the file appeared meanwhile: never clobbered
    except FileExistsError:
        raise SigningError(f"refusing to overwrite {final}, use --force to replace it", errno=17) from None
    except OSError as exc:
        raise SigningError(f"can't write key file '{final}': {exc.strerror}", errno=exc.errno) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return final
