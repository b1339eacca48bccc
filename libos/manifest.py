"""Gramine manifests: load, validate and resolve a Gramine-syntax TOML manifest.

The manifest is parsed with :mod:`tomllib` and checked key by key. Anything wrong raises a
:class:`ManifestError` that names the offending key as a dotted path (``fs.mounts[2].type``),
says what is wrong and what was expected. The result is a :class:`Manifest` with typed fields;
the parsed TOML stays available as ``Manifest.raw``.

Supported keys (Gramine's syntax):

- ``loader.entrypoint`` (``"file:..."`` or ``{uri, sha256}``), ``libos.entrypoint``,
  ``loader.argv`` (array of strings), ``loader.argv0_override``, ``loader.log_level``;
- ``loader.env.NAME``: a string, ``{value = "..."}`` or ``{passthrough = true}`` (taken from the
  ``host_env`` mapping; a variable missing from the host is left unset); with
  ``loader.insecure__use_host_env = true`` the whole host environment is the starting point;
- ``fs.root`` (``{type, uri}``; ``path`` may be given but must be ``"/"``), ``fs.start_dir``;
- ``fs.mounts``: array of ``{type, path, uri, key_name, enable_recovery}``; ``type`` is
  ``chroot`` (default), ``encrypted`` or ``tmpfs``. **Extension:** ``readonly = true`` is accepted
  on chroot mounts (Gramine has no such key);
- ``fs.insecure__keys.NAME`` = 32 hex characters (16 bytes);
- ``sgx.trusted_files`` (``"file:..."`` strings or ``{uri, sha256}`` tables),
  ``sgx.allowed_files`` (``"file:..."`` strings), ``sgx.file_check_policy``.

Other Gramine keys (``sgx.*``, ``sys.*``, ``libos.check_invalid_pointers``, ...) are accepted and
type-checked but otherwise ignored. Keys that Gramine does not know produce a warning (in
``Manifest.warnings`` and on the ``libos.manifest`` logger); they are never silently dropped.
Pre-1.0 table forms of ``sgx.trusted_files``/``sgx.allowed_files`` and ``fs.mount.NAME`` tables
are accepted with a deprecation warning.

``file:`` URIs name host paths: the scheme is stripped, a relative path is resolved against
``base_dir`` (for :func:`load_manifest`, the manifest's folder) and normalized lexically; a URI
ending in ``/`` names a directory and its host path keeps the trailing ``/``. A mount also keeps
its URI path as written (``MountSpec.uri_path``): encrypted mounts bind their files to it, as
Gramine does (see :mod:`libos.binding`).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FILE_CHECK_POLICIES",
    "LOG_LEVELS",
    "MOUNT_TYPES",
    "SPECIAL_KEY_NAMES",
    "Manifest",
    "ManifestError",
    "MountSpec",
    "TrustedFile",
    "load_manifest",
    "loads_manifest",
]

log = logging.getLogger("libos.manifest")

MOUNT_TYPES = ("chroot", "encrypted", "tmpfs")
FILE_CHECK_POLICIES = ("strict", "allow_all_but_log")
LOG_LEVELS = ("none", "error", "warning", "debug", "trace", "all")
#: Key names Gramine derives itself (SGX sealing keys); never reported in ``keys_missing``.
SPECIAL_KEY_NAMES = ("_sgx_mrenclave", "_sgx_mrsigner")

# Known Gramine keys that need no handling here, with the type they must have.
# Kinds: "bool", "int", "str", "size" (a size string such as "512M", or an integer), "any".
_OTHER_KEYS: dict[str, str] = {
    "loader.argv_src_file": "str",
    "loader.env_src_file": "str",
    "loader.insecure__use_cmdline_argv": "bool",
    "loader.insecure__use_host_env": "bool",
    "loader.insecure__disable_aslr": "bool",
    "loader.log_file": "str",
    "loader.uid": "int",
    "loader.gid": "int",
    "loader.pal_internal_mem_size": "size",
    "loader.preload": "str",
    "libos.check_invalid_pointers": "bool",
    "sys.stack.size": "size",
    "sys.brk.max_size": "size",
    "sys.enable_sigterm_injection": "bool",
    "sys.enable_extra_runtime_domain_names_conf": "bool",
    "sys.experimental__enable_flock": "bool",
    "sys.insecure__allow_eventfd": "bool",
    "sys.disallow_subprocesses": "bool",
    "sys.fds.limit": "int",
    "sys.allowed_ioctls": "any",
    "sys.mock_syscalls": "any",
    "sys.disallowed_syscalls": "any",
    "fs.experimental__enable_sysfs_topology": "bool",
    "sgx.debug": "bool",
    "sgx.edmm_enable": "bool",
    "sgx.enclave_size": "size",
    "sgx.max_threads": "int",
    "sgx.thread_num": "int",
    "sgx.insecure__rpc_thread_num": "int",
    "sgx.rpc_thread_num": "int",
    "sgx.preheat_enclave": "bool",
    "sgx.enable_stats": "bool",
    "sgx.nonpie_binary": "bool",
    "sgx.require_avx": "bool",
    "sgx.require_avx512": "bool",
    "sgx.require_mpx": "bool",
    "sgx.require_pkru": "bool",
    "sgx.require_amx": "bool",
    "sgx.require_exinfo": "bool",
    "sgx.use_exinfo": "bool",
    "sgx.insecure__allow_memfaults_without_exinfo": "bool",
    "sgx.isvprodid": "int",
    "sgx.isvsvn": "int",
    "sgx.remote_attestation": "any",  # "none" | "epid" | "dcap"; a bool before Gramine 1.3
    "sgx.ra_client_spid": "str",
    "sgx.ra_client_linkable": "bool",
    "sgx.vtune_profile": "bool",
    "sgx.profile.enable": "str",
    "sgx.profile.mode": "str",
    "sgx.profile.with_stack": "bool",
    "sgx.profile.frequency": "int",
    "sgx.allowed_ioctls": "any",
}
# Keys handled by this module (their contents are checked where they are parsed).
_HANDLED_KEYS = (
    "loader.entrypoint", "libos.entrypoint", "loader.argv", "loader.argv0_override", "loader.log_level",
    "loader.env", "fs.root", "fs.start_dir", "fs.mounts", "fs.mount", "fs.insecure__keys",
    "sgx.trusted_files", "sgx.allowed_files", "sgx.file_check_policy",
)
# Tables whose sub-keys are free-form.
_OPEN_TABLES = ("sgx.cpu_features", "sgx.seal_key", "sgx.ioctl_structs", "sys.ioctl_structs")
# Legacy keys we recognise but do not implement: a warning with a hint instead of "unknown".
_LEGACY_KEYS = {
    "sgx.protected_files": "legacy protected files are not supported; use an encrypted mount in fs.mounts",
    "sgx.protected_files_key": "legacy key; use fs.insecure__keys",
    "sgx.insecure__protected_files_key": "legacy key; use fs.insecure__keys",
    "sgx.protected_mrenclave_files": "legacy key; use an encrypted mount with key_name = \"_sgx_mrenclave\"",
    "sgx.protected_mrsigner_files": "legacy key; use an encrypted mount with key_name = \"_sgx_mrsigner\"",
    "sgx.trusted_checksum": "legacy key; use sgx.trusted_files tables with sha256",
}
_KNOWN = frozenset(_OTHER_KEYS) | frozenset(_HANDLED_KEYS) | frozenset(_OPEN_TABLES) | frozenset(_LEGACY_KEYS)

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SIZE = re.compile(r"(0[xX][0-9a-fA-F]+|\d+)[KMG]?")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


class ManifestError(ValueError):
    """A manifest is not valid TOML or breaks a rule; ``key`` is the dotted path of the offender.

    ``message`` is one line that starts with the key (``fs.mounts[2].type: unknown mount type
    "ramfs" (expected one of: chroot, encrypted, tmpfs)``). ``str(error)`` is the message, prefixed
    with ``source: `` when the manifest came from a file. For TOML syntax errors ``key`` is
    ``None`` and ``line``/``column`` give the position.
    """

    def __init__(self, key: str | None, message: str, *, source: str | None = None,
                 line: int | None = None, column: int | None = None) -> None:
        self.key = key
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        super().__init__(f"{source}: {message}" if source else message)


@dataclass(frozen=True)
class MountSpec:
    """One mount: ``type`` (chroot/encrypted/tmpfs), ``path`` inside the LibOS (absolute,
    normalized), ``uri`` (the host path, ``file:`` stripped, or ``None`` for tmpfs), ``key_name``
    (encrypted mounts only, else ``None``), ``enable_recovery`` and ``readonly`` (our extension);
    ``uri_path``: the URI's path as written (``file:`` stripped, not resolved: what Gramine binds
    encrypted files under), ``key``: the dotted manifest key naming the mount (``fs.mounts[1]``)."""

    type: str
    path: str
    uri: str | None
    key_name: str | None = None
    enable_recovery: bool = False
    readonly: bool = False
    uri_path: str | None = field(default=None, compare=False)
    key: str = field(default="", compare=False)


@dataclass(frozen=True)
class TrustedFile:
    """An ``sgx.trusted_files`` entry: ``path`` is the host path (ends in ``/`` for a directory),
    ``sha256`` the expected digest if the manifest gives one, ``uri`` the entry as written."""

    path: str
    sha256: bytes | None = None
    uri: str = ""

    @property
    def is_dir(self) -> bool:
        """True when the URI names a directory (every file under it is trusted)."""
        return self.path.endswith("/")


@dataclass(frozen=True)
class Manifest:
    """A validated manifest.

    - ``entrypoint``: ``libos.entrypoint`` (a path inside the LibOS), ``loader_entrypoint``: the host
      path of ``loader.entrypoint``; ``argv``: ``loader.argv`` (``None`` if absent), ``argv0_override``;
    - ``env``: the resolved environment (passthrough variables taken from ``host_env``);
    - ``root``: ``fs.root`` (``None`` if absent; Gramine's default is a chroot of the current folder),
      ``start_dir`` (default ``"/"``), ``mounts`` in manifest order;
    - ``keys``: ``fs.insecure__keys`` as 16-byte values (kept out of ``repr``); ``keys_missing``: key
      names used by encrypted mounts but not given in the manifest (to be provisioned at run time via
      ``/dev/attestation/keys``; Gramine's special ``_sgx_*`` keys are never listed);
    - ``trusted_files``, ``allowed_files`` (host paths), ``file_check_policy``, ``log_level``;
    - ``raw``: the parsed TOML, ``warnings``: unknown or deprecated keys, ``source``: the file path.
    """

    entrypoint: str | None = None
    loader_entrypoint: str | None = None
    argv: list[str] | None = None
    argv0_override: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    root: MountSpec | None = None
    start_dir: str = "/"
    mounts: list[MountSpec] = field(default_factory=list)
    keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    trusted_files: list[TrustedFile] = field(default_factory=list)
    allowed_files: list[str] = field(default_factory=list)
    file_check_policy: str = "strict"
    log_level: str = "error"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)
    keys_missing: list[str] = field(default_factory=list)
    source: str | None = None


def load_manifest(path: str | os.PathLike[str], *, host_env: Mapping[str, str] | None = None) -> Manifest:
    """Load and validate the manifest file at ``path``.

    Relative ``file:`` URIs are resolved against the manifest's folder. ``host_env`` (default
    ``os.environ``) supplies ``{passthrough = true}`` variables. Raises :class:`ManifestError` for
    an invalid manifest and ``OSError`` if the file cannot be read.
    """
    path = _plain_path(os.fspath(path))
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(None, f"manifest is not valid UTF-8 (byte {e.start})", source=path) from None
    return loads_manifest(text, base_dir=os.path.dirname(path) or ".", host_env=host_env, source=path)


def _plain_path(path: str) -> str:
    """``str(pathlib.Path(path))``: empty and ``.`` parts dropped (pathlib is not loaded for this:
    ~3 ms of every ``libos run``)."""
    root = "//" if path.startswith("//") and not path.startswith("///") else "/" if path.startswith("/") else ""
    return root + "/".join(part for part in path.split("/") if part not in ("", ".")) or "."


def loads_manifest(text: str, *, base_dir: str | os.PathLike[str] = ".", host_env: Mapping[str, str] | None = None,
                   source: str | None = None) -> Manifest:
    """Parse and validate manifest ``text``.

    Relative ``file:`` URIs are resolved against ``base_dir`` (default: the current directory).
    ``host_env`` (default ``os.environ``) supplies ``{passthrough = true}`` variables; ``source``
    names the manifest in errors and in ``Manifest.source``. Raises :class:`ManifestError`.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        where = f"line {line}, column {col}: " if m else ""
        detail = _TOML_POS.sub("", msg).strip()
        raise ManifestError(None, f"{where}TOML syntax error: {detail}", source=source,
                            line=line, column=col) from None
    return _Parser(raw, base_dir, os.environ if host_env is None else host_env, source).parse()


# --- helpers -------------------------------------------------------------------------------------

def _q(value: object) -> str:
    """A value as it would appear in TOML, for messages (strings in double quotes)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "date/time"


def _got(value: object) -> str:
    kind = _toml_type(value)
    if isinstance(value, bool | int | float | str):
        return f"got {kind} {_q(value)}"
    return f"got {kind}"


def _normalize_inside_path(path: str) -> str:
    """Lexically normalize an absolute path inside the LibOS (one leading slash)."""
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/")


def _is_within(inner: str, outer: str) -> bool:
    """True if ``inner`` equals ``outer`` or lies below it (both normalized, no trailing '/')."""
    return inner == outer or outer == "/" or inner.startswith(outer + "/")


class _Parser:
    def __init__(self, raw: dict[str, Any], base_dir: str | os.PathLike[str], host_env: Mapping[str, str],
                 source: str | None) -> None:
        self._mount_keys: list[str] = []
        self.raw = raw
        self.base_dir = os.path.abspath(os.fspath(base_dir))
        self.host_env = host_env
        self.source = source
        self.warnings: list[str] = []

    # -- plumbing --

    def fail(self, key: str | None, what: str) -> ManifestError:
        return ManifestError(key, f"{key}: {what}" if key else what, source=self.source)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s%s", f"{self.source}: " if self.source else "", message)

    def get(self, dotted: str) -> Any:
        """The value at a dotted key, or None when absent (a non-table on the way is a type error)."""
        node: Any = self.raw
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict):
                parent = ".".join(parts[:i])
                raise self.fail(parent, f"expected a table, {_got(node)}")
            node = node.get(part)
            if node is None:
                return None
        return node

    def expect(self, key: str, value: Any, kind: type | tuple[type, ...], expected: str) -> None:
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
        if not ok:
            raise self.fail(key, f"expected {expected}, {_got(value)}")

    def opt_str(self, key: str) -> str | None:
        value = self.get(key)
        if value is not None:
            self.expect(key, value, str, "a string")
        return value

    def file_uri(self, key: str, uri: Any) -> str:
        """Host path of a ``file:`` URI: scheme stripped, resolved against base_dir, normalized."""
        self.expect(key, uri, str, 'a "file:" URI string')
        if not uri.startswith("file:"):
            raise self.fail(key, f'URI {_q(uri)} must start with "file:"')
        rest = uri[len("file:"):]
        if not rest:
            raise self.fail(key, f'URI {_q(uri)} names no host path (expected "file:<path>")')
        is_dir = rest.endswith("/")
        path = posixpath.normpath(posixpath.join(self.base_dir, rest))
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
        return path + "/" if is_dir and path != "/" else path

    def check_table_keys(self, key: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for k in table:
            if k not in allowed:
                self.warn(f"{key}.{k}: unknown key (ignored; expected one of: {', '.join(allowed)})")

    # -- sections --

    def parse(self) -> Manifest:
        self.check_unknown(self.raw, "")
        self.check_other_types()
        loader_entrypoint = self.loader_entrypoint()
        entrypoint = self.opt_str("libos.entrypoint")
        if entrypoint == "":
            raise self.fail("libos.entrypoint", "must not be empty (expected a path inside the LibOS)")
        argv = self.argv()
        argv0_override = self.opt_str("loader.argv0_override")
        log_level = _default(self.opt_str("loader.log_level"), "error")
        if log_level not in LOG_LEVELS:
            raise self.fail("loader.log_level", f"unknown log level {_q(log_level)} "
                                                f"(expected one of: {', '.join(LOG_LEVELS)})")
        env = self.env()
        keys = self.keys()
        root = self.root()
        start_dir = _default(self.opt_str("fs.start_dir"), "/")
        if not start_dir.startswith("/"):
            raise self.fail("fs.start_dir", f"path {_q(start_dir)} is relative (expected an absolute path)")
        mounts = self.mounts()
        self.check_encrypted_overlaps(mounts, root)
        needed = [m.key_name for m in [root, *mounts] if m is not None and m.type == "encrypted"]
        keys_missing = list(dict.fromkeys(
            n for n in needed if n is not None and n not in keys and n not in SPECIAL_KEY_NAMES))
        trusted_files = self.trusted_files()
        allowed_files = self.allowed_files()
        policy = _default(self.opt_str("sgx.file_check_policy"), "strict")
        if policy not in FILE_CHECK_POLICIES:
            raise self.fail("sgx.file_check_policy", f"unknown policy {_q(policy)} "
                                                     f"(expected one of: {', '.join(FILE_CHECK_POLICIES)})")
        return Manifest(
            entrypoint=entrypoint, loader_entrypoint=loader_entrypoint, argv=argv, argv0_override=argv0_override,
            env=env, root=root, start_dir=_normalize_inside_path(start_dir), mounts=mounts, keys=keys,
            trusted_files=trusted_files, allowed_files=allowed_files, file_check_policy=policy,
            log_level=log_level, raw=self.raw, warnings=self.warnings, keys_missing=keys_missing,
            source=self.source)

    def check_unknown(self, table: dict[str, Any], prefix: str) -> None:
        for k, v in table.items():
            dotted = prefix + k
            if dotted in _LEGACY_KEYS:
                self.warn(f"{dotted}: {_LEGACY_KEYS[dotted]} (ignored)")
            elif dotted in _KNOWN:
                continue
            elif isinstance(v, dict) and any(name.startswith(dotted + ".") for name in _KNOWN):
                self.check_unknown(v, dotted + ".")
            else:
                self.warn(f"{dotted}: unknown manifest key (ignored)")

    def check_other_types(self) -> None:
        for key, kind in _OTHER_KEYS.items():
            value = self.get(key)
            if value is None or kind == "any":
                continue
            if kind == "bool":
                self.expect(key, value, bool, "a boolean (true or false)")
            elif kind == "int":
                self.expect(key, value, int, "an integer")
            elif kind == "str":
                self.expect(key, value, str, "a string")
            elif kind == "size":
                self.expect(key, value, (str, int), 'a size such as "512M"')
                if isinstance(value, str) and not _SIZE.fullmatch(value):
                    raise self.fail(key, f'invalid size {_q(value)} (expected a number with an optional '
                                         'K, M or G suffix, such as "512M")')
        for key in ("sys.mock_syscalls", "sys.disallowed_syscalls", "sys.allowed_ioctls", "sgx.allowed_ioctls"):
            value = self.get(key)
            if value is not None:
                self.expect(key, value, list, "an array")

    def loader_entrypoint(self) -> str | None:
        key = "loader.entrypoint"
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, dict):  # Gramine >= 1.8: loader.entrypoint.uri (+ .sha256 after signing)
            self.check_table_keys(key, value, ("uri", "sha256"))
            if "uri" not in value:
                raise self.fail(f"{key}.uri", 'missing (expected a "file:" URI)')
            if "sha256" in value:
                self.sha256(f"{key}.sha256", value["sha256"])
            return self.file_uri(f"{key}.uri", value["uri"])
        return self.file_uri(key, value)

    def argv(self) -> list[str] | None:
        key = "loader.argv"
        value = self.get(key)
        if value is None:
            return None
        self.expect(key, value, list, "an array of strings")
        for i, arg in enumerate(value):
            self.expect(f"{key}[{i}]", arg, str, "a string")
        return list(value)

    def env(self) -> dict[str, str]:
        use_host = self.get("loader.insecure__use_host_env") is True
        env: dict[str, str] = dict(self.host_env) if use_host else {}
        table = self.get("loader.env")
        if table is None:
            return env
        self.expect("loader.env", table, dict, "a table of environment variables")
        for name, value in table.items():
            key = f"loader.env.{name}"
            if isinstance(value, str):
                env[name] = value
                continue
            self.expect(key, value, (str, dict), 'a string, {value = "..."} or {passthrough = true}')
            self.check_table_keys(key, value, ("value", "passthrough"))
            if "value" in value and "passthrough" in value:
                raise self.fail(key, "has both value and passthrough (expected exactly one)")
            if "value" in value:
                self.expect(f"{key}.value", value["value"], str, "a string")
                env[name] = value["value"]
            elif "passthrough" in value:
                self.expect(f"{key}.passthrough", value["passthrough"], bool, "true")
                if value["passthrough"] is not True:
                    raise self.fail(f"{key}.passthrough", "false is not allowed (expected true; "
                                                          "omit the variable to leave it unset)")
                if name in self.host_env:
                    env[name] = self.host_env[name]
            else:
                raise self.fail(key, 'has neither value nor passthrough (expected {value = "..."} '
                                     "or {passthrough = true})")
        return env

    def keys(self) -> dict[str, bytes]:
        key = "fs.insecure__keys"
        table = self.get(key)
        if table is None:
            return {}
        self.expect(key, table, dict, "a table of key names to 32 hex characters")
        keys: dict[str, bytes] = {}
        for name, value in table.items():
            k = f"{key}.{name}"
            self.expect(k, value, str, "a string of 32 hex characters")
            if not _HEX32.fullmatch(value):
                # never echo the value: it is (supposed to be) a secret
                raise self.fail(k, f"invalid key ({len(value)} characters; expected 32 hex characters = 16 bytes)")
            keys[name] = bytes.fromhex(value)
        return keys

    def sha256(self, key: str, value: Any) -> bytes:
        self.expect(key, value, str, "a string of 64 hex characters")
        if not _HEX64.fullmatch(value):
            raise self.fail(key, f"invalid SHA-256 {_q(value)} (expected 64 hex characters)")
        return bytes.fromhex(value)

    def mount(self, key: str, entry: Any, *, is_root: bool = False) -> MountSpec:
        self.expect(key, entry, dict, "a table {type, path, uri}")
        allowed = ("type", "path", "uri", "key_name", "enable_recovery", "readonly")
        self.check_table_keys(key, entry, allowed)
        mtype = entry.get("type", "chroot")
        self.expect(f"{key}.type", mtype, str, "a string")
        if mtype not in MOUNT_TYPES:
            raise self.fail(f"{key}.type", f"unknown mount type {_q(mtype)} "
                                           f"(expected one of: {', '.join(MOUNT_TYPES)})")
        if is_root:
            path = entry.get("path", "/")
            self.expect(f"{key}.path", path, str, "a string")
            if _normalize_inside_path(path) != "/" or not path.startswith("/"):
                raise self.fail(f"{key}.path", f'the root is always mounted at "/" (got {_q(path)})')
            path = "/"
        else:
            if "path" not in entry:
                raise self.fail(f"{key}.path", "missing (expected an absolute path inside the LibOS)")
            path = entry["path"]
            self.expect(f"{key}.path", path, str, "a string")
            if not path.startswith("/"):
                raise self.fail(f"{key}.path", f"path {_q(path)} is relative (expected an absolute path "
                                                'starting with "/")')
            path = _normalize_inside_path(path)
        uri: str | None
        written = entry.get("uri", "file:." if is_root else None)  # Gramine's default root
        if mtype == "tmpfs":
            uri = None  # Gramine ignores the uri of a tmpfs mount
        elif written is not None:
            uri = self.file_uri(f"{key}.uri", written)
        else:
            raise self.fail(f"{key}.uri", f'missing (a {mtype} mount needs a "file:" URI)')
        key_name: str | None = None
        if "key_name" in entry:
            if mtype != "encrypted":
                raise self.fail(f"{key}.key_name", f"only encrypted mounts take a key (this mount is {mtype})")
            key_name = entry["key_name"]
            self.expect(f"{key}.key_name", key_name, str, "a string")
            if not key_name:
                raise self.fail(f"{key}.key_name", "must not be empty (expected a key name)")
        elif mtype == "encrypted":
            key_name = "default"
        enable_recovery = entry.get("enable_recovery", False)
        self.expect(f"{key}.enable_recovery", enable_recovery, bool, "a boolean")
        if enable_recovery and mtype != "encrypted":
            raise self.fail(f"{key}.enable_recovery", f"only encrypted mounts support recovery (this mount is {mtype})")
        readonly = entry.get("readonly", False)
        self.expect(f"{key}.readonly", readonly, bool, "a boolean")
        if readonly and mtype != "chroot":
            raise self.fail(f"{key}.readonly", f"readonly is supported on chroot mounts only (this mount is {mtype})")
        return MountSpec(type=mtype, path=path, uri=uri, key_name=key_name, enable_recovery=enable_recovery,
                         readonly=readonly, uri_path=None if uri is None else written[len("file:"):], key=key)

    def root(self) -> MountSpec | None:
        entry = self.get("fs.root")
        return None if entry is None else self.mount("fs.root", entry, is_root=True)

    def mounts(self) -> list[MountSpec]:
        items: list[tuple[str, Any]] = []
        legacy = self.get("fs.mount")
        if legacy is not None:  # pre-1.0: fs.mount.NAME = {type, path, uri}; Gramine mounted these first
            self.expect("fs.mount", legacy, dict, "a table of named mounts")
            self.warn("fs.mount: deprecated syntax (use the fs.mounts array)")
            items += [(f"fs.mount.{name}", entry) for name, entry in legacy.items()]
        array = self.get("fs.mounts")
        if array is not None:
            self.expect("fs.mounts", array, list, "an array of mount tables")
            items += [(f"fs.mounts[{i}]", entry) for i, entry in enumerate(array)]
        mounts: list[MountSpec] = []
        seen: dict[str, str] = {}
        for key, entry in items:
            spec = self.mount(key, entry)
            if spec.path == "/":
                raise self.fail(f"{key}.path", 'cannot mount over "/" (expected the root in fs.root)')
            if spec.path in seen:
                raise self.fail(f"{key}.path", f"duplicate mount path {_q(spec.path)} "
                                               f"(already mounted by {seen[spec.path]})")
            seen[spec.path] = key
            mounts.append(spec)
        self._mount_keys = [key for key, _ in items]
        return mounts

    def check_encrypted_overlaps(self, mounts: list[MountSpec], root: MountSpec | None) -> None:
        """Encrypted mounts must not nest inside each other, in the LibOS or on the host."""
        named = [(k, m) for k, m in zip(self._mount_keys, mounts, strict=True) if m.type == "encrypted"]
        if root is not None and root.type == "encrypted":
            named.insert(0, ("fs.root", root))
        for j, (key, m) in enumerate(named):
            for other_key, other in named[:j]:
                if _is_within(m.path, other.path) or _is_within(other.path, m.path):
                    raise self.fail(f"{key}.path", f"encrypted mount {_q(m.path)} overlaps encrypted mount "
                                                   f"{_q(other.path)} ({other_key}); encrypted mounts must not nest")
                assert m.uri is not None and other.uri is not None
                a, b = m.uri.rstrip("/") or "/", other.uri.rstrip("/") or "/"
                if _is_within(a, b) or _is_within(b, a):
                    what = "the same host path as" if a == b else "a host path overlapping"
                    raise self.fail(f"{key}.uri", f"encrypted mount uses {what} {other_key} ({_q(other.uri)}); "
                                                  "host files must be reachable through one encrypted mount only")

    def file_list(self, key: str) -> list[tuple[str, Any]]:
        value = self.get(key)
        if value is None:
            return []
        if isinstance(value, dict):  # pre-1.0: sgx.trusted_files.NAME = "file:..."
            self.warn(f"{key}: deprecated table syntax (use an array)")
            return [(f"{key}.{name}", v) for name, v in value.items()]
        self.expect(key, value, list, "an array")
        return [(f"{key}[{i}]", v) for i, v in enumerate(value)]

    def trusted_files(self) -> list[TrustedFile]:
        result = []
        for key, entry in self.file_list("sgx.trusted_files"):
            if isinstance(entry, dict):
                self.check_table_keys(key, entry, ("uri", "sha256"))
                if "uri" not in entry:
                    raise self.fail(f"{key}.uri", 'missing (expected a "file:" URI)')
                path = self.file_uri(f"{key}.uri", entry["uri"])
                digest = self.sha256(f"{key}.sha256", entry["sha256"]) if "sha256" in entry else None
                if digest is not None and path.endswith("/"):
                    raise self.fail(f"{key}.sha256", "a directory URI cannot have a sha256 (expected a file URI)")
                result.append(TrustedFile(path=path, sha256=digest, uri=entry["uri"]))
            else:
                self.expect(key, entry, (str, dict), 'a "file:" URI string or a table {uri, sha256}')
                result.append(TrustedFile(path=self.file_uri(key, entry), uri=entry))
        return result

    def allowed_files(self) -> list[str]:
        return [self.file_uri(key, entry) for key, entry in self.file_list("sgx.allowed_files")]


def _default(value: str | None, default: str) -> str:
    return default if value is None else value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
