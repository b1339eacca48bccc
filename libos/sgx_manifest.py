"""The final manifest, as ``gramine-manifest`` and ``gramine-sgx-sign`` produce it.

The pipeline (Gramine 1.8+): parse the TOML (:func:`load`), insert what Gramine's ``Manifest()``
inserts (:func:`apply_defaults`), check it against Gramine's schema (:func:`check`), expand and
hash ``sgx.trusted_files`` (:func:`expand_trusted_files`), write it with ``tomli_w``
(:func:`dumps`). :func:`finalize` runs the middle three. For the same input, files and
``tomli_w`` 1.2.0 the bytes equal Gramine's, which matters because ``.manifest.sgx`` is measured
into MRENCLAVE byte for byte.

Errors are :class:`ManifestError` (an ``OSError``, errno EINVAL unless a file's own), one line,
naming the file or the key.
"""

from __future__ import annotations

import errno
import tomllib
from pathlib import Path
from typing import Any

from . import gramine_install
from .errors import SgxManifestError
from .trusted_files import collect, expand_entries, sha256_file

__all__ = [
    "DEFAULT_ENCLAVE_SIZE_NO_EDMM",
    "DEFAULT_ENCLAVE_SIZE_WITH_EDMM",
    "DEFAULT_THREAD_NUM",
    "ManifestError",
    "apply_defaults",
    "check",
    "dumps",
    "expand_trusted_files",
    "finalize",
    "load",
    "loads",
]

#: The error type of this module (schema errors, trusted-file rules, TOML syntax).
ManifestError = SgxManifestError

DEFAULT_ENCLAVE_SIZE_NO_EDMM = "256M"
DEFAULT_ENCLAVE_SIZE_WITH_EDMM = "1024G"
DEFAULT_THREAD_NUM = 4

_CPU_FEATURES = (("avx", "unspecified"), ("avx512", "unspecified"), ("amx", "unspecified"),
                 ("mpx", "disabled"), ("pkru", "disabled"))


def loads(text: str, *, source: str = "<string>") -> dict[str, Any]:
    """Parse manifest TOML ``text``; a syntax error names ``source`` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{source}: not valid TOML: {exc}") from None


def load(path: str | Path) -> dict[str, Any]:
    """Parse the manifest file at ``path`` (TOML) into its data model (nested dicts, in order)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    except OSError as exc:
        raise ManifestError(f"{path}: can't read the manifest: {exc.strerror}", errno=exc.errno) from None
    return loads(text, source=str(path))


def _table(parent: dict, name: str, key: str) -> dict:
    value = parent.setdefault(name, {})
    if not isinstance(value, dict):
        raise ManifestError(f"{key}: expected a table, got {type(value).__name__}", key=key)
    return value


def apply_defaults(data: dict[str, Any]) -> None:
    """Insert what Gramine's ``Manifest()`` inserts, where it is absent, in the same order.

    At the end of ``[sgx]``: ``trusted_files``, ``max_threads``, ``isvprodid``, ``isvsvn``,
    ``remote_attestation``, ``debug``, ``enable_stats``, ``edmm_enable``, ``enclave_size`` (256M, or
    1024G with EDMM), ``use_exinfo``, ``cpu_features``; string trusted files become ``{uri}``
    tables; ``loader.entrypoint`` gets ``uri = "file:<gramine.libos>"`` and that file's sha256.
    """
    sgx = _table(data, "sgx", "sgx")
    for name, value in (("trusted_files", []), ("max_threads", DEFAULT_THREAD_NUM), ("isvprodid", 0),
                        ("isvsvn", 0), ("remote_attestation", "none"), ("debug", False),
                        ("enable_stats", False), ("edmm_enable", False)):
        sgx.setdefault(name, value)
    sgx.setdefault("enclave_size", DEFAULT_ENCLAVE_SIZE_WITH_EDMM if sgx["edmm_enable"] else
                   DEFAULT_ENCLAVE_SIZE_NO_EDMM)
    sgx.setdefault("use_exinfo", False)
    features = _table(sgx, "cpu_features", "sgx.cpu_features")
    for name, value in _CPU_FEATURES:
        features.setdefault(name, value)

    items = sgx["trusted_files"]
    if not isinstance(items, list):
        raise ManifestError("sgx.trusted_files: must be an array (the TOML-table syntax of Gramine before 1.0 "
                            "is not supported; see Gramine's manifest syntax, \"Trusted files\")",
                            key="sgx.trusted_files")
    converted = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            converted.append({"uri": item})
        elif isinstance(item, dict) and "uri" in item:
            converted.append(item)
        else:
            key = f"sgx.trusted_files[{index}]"
            raise ManifestError(f"{key}: a trusted file is a \"file:...\" string or a {{uri, sha256}} table",
                                key=key)

    loader = _table(data, "loader", "loader")
    entrypoint = loader.setdefault("entrypoint", {})
    if not isinstance(entrypoint, dict):
        raise ManifestError("loader.entrypoint: must be a table {uri, sha256} (Gramine 1.9)", key="loader.entrypoint")
    entrypoint.setdefault("uri", f"file:{gramine_install.libos_path()}")
    if "sha256" not in entrypoint:
        uri = entrypoint["uri"]
        if not isinstance(uri, str) or not uri.startswith("file:"):
            raise ManifestError(f"loader.entrypoint.uri: unsupported URI {uri!r} (expected file:PATH)",
                                key="loader.entrypoint.uri")
        path = uri[len("file:"):]
        try:
            entrypoint["sha256"] = sha256_file(path)
        except OSError as exc:
            raise ManifestError(f"loader.entrypoint.uri: can't read {path}: {exc.strerror}", errno=exc.errno,
                                key="loader.entrypoint.uri") from None
    sgx["trusted_files"] = converted


def check(data: dict[str, Any]) -> None:
    """Check ``data`` against Gramine's manifest schema (``gramine-manifest --check``).

    Raises :class:`ManifestError` naming the first offending key (unknown keys included, as
    Gramine's voluptuous schema refuses them).
    """
    from .manifest_schema import SchemaViolation, validate

    try:
        validate(data)
    except SchemaViolation as exc:
        raise ManifestError(f"manifest failed validation: {exc}", key=exc.key) from None


_check_schema = check  # finalize's keyword "check" hides the function


def expand_trusted_files(data: dict[str, Any], *, chroot: Path | None = None, jobs: int | None = None) -> None:
    """Expand ``sgx.trusted_files`` in place: folders recursively, duplicates merged, every file
    hashed (``jobs`` threads; default: one per CPU), each entry a ``{uri, sha256}`` table.

    With ``chroot`` the paths are looked up inside that folder (URIs unchanged). The rules are
    Gramine's, see :mod:`libos.trusted_files`.
    """
    sgx = data.get("sgx", {})
    items = sgx.get("trusted_files", [])
    if not isinstance(items, list):
        raise ManifestError("sgx.trusted_files: must be an array", key="sgx.trusted_files")
    if chroot is not None and not Path(chroot).is_dir():
        raise ManifestError(f"chroot {chroot}: not a folder", errno=errno.ENOTDIR)
    entries = expand_entries(items, chroot=chroot)
    collect(entries, jobs=jobs)
    sgx["trusted_files"] = [e.to_manifest() for e in entries]


def finalize(data: dict[str, Any], *, chroot: Path | None = None, check: bool = True,
             jobs: int | None = None) -> dict[str, Any]:
    """Defaults, schema check (unless ``check`` is false) and trusted-file expansion, in place;
    returns ``data`` (what ``gramine-manifest`` writes, and ``gramine-sgx-sign`` measures)."""
    apply_defaults(data)
    if check:
        _check_schema(data)
    expand_trusted_files(data, chroot=chroot, jobs=jobs)
    return data


# A stand-in entry that tomli_w writes as one [[sgx.trusted_files]] table (too long to be inline)
_PLACEHOLDER = "file:/" + "pfskit-trusted-files-placeholder/" * 4


def _trusted_files_block(data: dict[str, Any]) -> str | None:
    """``sgx.trusted_files`` written as tomli_w 1.2.0 writes it, when every entry is a plain
    ``{uri, sha256}`` table of strings without characters to escape and the array is not inline;
    else None (tomli_w then writes everything)."""
    sgx = data.get("sgx")
    items = sgx.get("trusted_files") if type(sgx) is dict else None
    if type(items) is not list or len(items) < 2:
        return None
    from tomli_w._writer import ILLEGAL_BASIC_STR_CHARS, Context, is_suitable_inline_table

    lines = []
    for item in items:
        if type(item) is not dict or len(item) != 2 or list(item) != ["uri", "sha256"]:
            return None
        uri, sha256 = item["uri"], item["sha256"]
        if type(uri) is not str or type(sha256) is not str:
            return None
        if not (ILLEGAL_BASIC_STR_CHARS.isdisjoint(uri) and ILLEGAL_BASIC_STR_CHARS.isdisjoint(sha256)):
            return None
        lines.append(f'[[sgx.trusted_files]]\nuri = "{uri}"\nsha256 = "{sha256}"\n')
    ctx = Context(False, 4)
    if all(is_suitable_inline_table(item, ctx) for item in items):
        return None  # tomli_w writes an inline array
    return "\n".join(lines)


def dumps(data: dict[str, Any]) -> str:
    """``data`` as TOML text exactly as Gramine writes it (``tomli_w.dumps``, tomli_w 1.2.0).

    A long ``sgx.trusted_files`` (tomli_w's share of the time of ``libos sign``: 0.2 s for 4,319
    entries) is written here, the rest by tomli_w with one stand-in entry in its place; the bytes
    are tomli_w's (tests/test_sgx_manifest.py compares them)."""
    import tomli_w

    try:
        block = _trusted_files_block(data)
        if block is None:
            return tomli_w.dumps(data)
        sgx = data["sgx"]
        items = sgx["trusted_files"]
        sgx["trusted_files"] = [{"uri": _PLACEHOLDER}]
        try:
            text = tomli_w.dumps(data)
        finally:
            sgx["trusted_files"] = items
        marker = f'[[sgx.trusted_files]]\nuri = "{_PLACEHOLDER}"\n'
        if text.count(marker) != 1:
            return tomli_w.dumps(data)
        return text.replace(marker, block)
    except TypeError as exc:
        raise ManifestError(f"manifest can't be written as TOML: {exc}") from None
