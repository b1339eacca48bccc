"""The schema ``gramine-manifest --check`` applies to a manifest (Gramine's ``manifest_check.py``).

Gramine validates with voluptuous; this is the same schema written as plain data and checked by a
small validator of its own: the same keys are known (any other key is an error, as voluptuous
refuses extra keys), the same ones required, the same types and literal values allowed. An error
names the offending key as a dotted path (``fs.mounts[1].type``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEMA", "Required", "SchemaViolation", "one_of", "validate"]


@dataclass(frozen=True)
class Required:
    """A key that must be present."""

    name: str


@dataclass(frozen=True)
class one_of:
    """Any of the alternatives (values), or, as a key, any of these key names."""

    options: tuple[Any, ...]

    def __init__(self, *options: Any) -> None:
        object.__setattr__(self, "options", options)


class SchemaViolation(Exception):
    """``key`` (a dotted path, "" for the top) breaks the schema: ``what`` says how."""

    def __init__(self, key: str, what: str, *, expected: tuple[Any, ...] = ()) -> None:
        super().__init__(f"{key or '(top level)'}: {what}")
        self.key = key
        self.what = what
        self.expected = expected  # for a wrong literal value: the values allowed there


_size = str
_mask = str
_uri = str

_FS_BASE: tuple[dict, ...] = (
    {"type": "chroot", Required("uri"): _uri},
    {Required("type"): "encrypted", Required("uri"): _uri, "key_name": str, "enable_recovery": bool},
    {Required("type"): "tmpfs", "uri": str},
    {Required("type"): "untrusted_shm", Required("uri"): _uri},
)

#: Gramine's ``GramineManifestSchema`` (python/graminelibos/manifest_check.py), key for key.
SCHEMA: dict = {
    Required("fs"): {
        Required("mounts"): [one_of(*({**d, Required("path"): str} for d in _FS_BASE))],
        "root": one_of(*_FS_BASE),
        "start_dir": str,
        "insecure__keys": {str: str},
    },
    Required("libos"): {
        Required("entrypoint"): str,
        "check_invalid_pointers": bool,
    },
    Required("loader"): {
        Required("entrypoint"): {Required("uri"): _uri, "sha256": str},
        "argv": [str],
        "argv_src_file": str,
        "env": {str: one_of(str, {"value": str}, {"passthrough": True})},
        "env_src_file": str,
        "gid": int,
        "insecure__use_cmdline_argv": bool,
        "insecure__use_host_env": bool,
        "insecure__disable_aslr": bool,
        "log_file": str,
        "log_level": one_of("none", "error", "warning", "debug", "trace", "all"),
        "uid": int,
    },
    "sgx": {
        "allowed_files": [str],
        "cpu_features": {
            one_of("avx", "avx512", "amx"): one_of("unspecified", "disabled", "required"),
            one_of("mpx", "pkru"): one_of("disabled", "required"),
        },
        "debug": bool,
        "edmm_enable": bool,
        "enable_stats": bool,
        "enclave_size": _size,
        "file_check_policy": one_of("strict", "allow_all_but_log"),
        "insecure__allow_memfaults_without_exinfo": bool,
        "insecure__rpc_thread_num": int,
        "isvprodid": int,
        "isvsvn": int,
        "max_threads": int,
        "preheat_enclave": bool,
        "profile": {
            "enable": one_of("none", "main", "all"),
            "mode": one_of("aex", "ocall_inner", "ocall_outer"),
            "with_stack": bool,
            "frequency": int,
        },
        "remote_attestation": one_of("none", "dcap"),
        "seal_key": {"flags_mask": _mask, "xfrm_mask": _mask, "misc_mask": _mask},
        "trusted_files": [one_of(str, {"uri": _uri, "sha256": str})],
        "use_exinfo": bool,
        "vtune_profile": bool,
    },
    "sys": {
        "allowed_ioctls": [{Required("request_code"): int, "struct": str}],
        "brk": {"max_size": _size},
        "disallow_subprocesses": bool,
        "enable_extra_runtime_domain_names_conf": bool,
        "enable_sigterm_injection": bool,
        "experimental__enable_flock": bool,
        "insecure__allow_eventfd": bool,
        "ioctl_structs": {str: object},
        "debug__mock_syscalls": [{Required("name"): str, "return": int}],
        "stack": {"size": _size},
        "fds": {"limit": int},
    },
}

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "a table", list: "an array"}


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _key_matches(schema_key: Any, key: str) -> bool:
    if isinstance(schema_key, Required):
        return schema_key.name == key
    if isinstance(schema_key, one_of):
        return key in schema_key.options
    if isinstance(schema_key, type):
        return isinstance(key, schema_key)
    return schema_key == key


def _check_table(schema: dict, value: object, path: str) -> None:
    if not isinstance(value, dict):
        raise SchemaViolation(path, f"expected a table, got {_type_name(value)}")
    for key, item in value.items():
        for schema_key, sub in schema.items():
            if _key_matches(schema_key, key):
                _check(sub, item, _join(path, key))
                break
        else:
            raise SchemaViolation(_join(path, key), "unknown key (not in Gramine's manifest schema)")
    for schema_key in schema:
        if isinstance(schema_key, Required) and schema_key.name not in value:
            raise SchemaViolation(_join(path, schema_key.name), "required key is missing")


def _check_any(alternatives: one_of, value: object, path: str) -> None:
    failures: list[SchemaViolation] = []
    for option in alternatives.options:
        try:
            _check(option, value, path)
            return
        except SchemaViolation as exc:
            failures.append(exc)
    if all(isinstance(o, str | bool | int) for o in alternatives.options):
        allowed = ", ".join(repr(o).replace("'", '"') for o in alternatives.options)
        raise SchemaViolation(path, f"{_show(value)} is not allowed (expected one of: {allowed})",
                              expected=alternatives.options)
    # the alternative whose literal fields (a mount's type) match, else the one that got
    # furthest (the deepest key), says best what is wrong
    def fit(pair: tuple[Any, SchemaViolation]) -> tuple[int, int]:
        option, exc = pair
        literals = 0
        if isinstance(option, dict) and isinstance(value, dict):
            literals = sum(1 for k, v in option.items() if isinstance(v, str | bool)
                           and value.get(k.name if isinstance(k, Required) else k) == v)
        return literals, exc.key.count(".") + exc.key.count("[")

    best = max(zip(alternatives.options, failures, strict=True), key=fit)[1]
    if best.expected:
        allowed = tuple(v for e in failures if e.key == best.key for v in e.expected)
        if len(allowed) > 1:
            raise SchemaViolation(best.key, best.what.split(" (expected")[0] +
                                  f" (expected one of: {', '.join(_show(v) for v in allowed)})", expected=allowed)
    raise best


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value).lower() if isinstance(value, bool) else repr(value)


def _check(schema: Any, value: object, path: str) -> None:
    if isinstance(schema, dict):
        _check_table(schema, value, path)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise SchemaViolation(path, f"expected an array, got {_type_name(value)}")
        for index, item in enumerate(value):
            _check(schema[0] if len(schema) == 1 else one_of(*schema), item, f"{path}[{index}]")
    elif isinstance(schema, one_of):
        _check_any(schema, value, path)
    elif schema is object:
        return
    elif isinstance(schema, type):
        if not isinstance(value, schema):
            raise SchemaViolation(path, f"expected {_TYPE_NAMES.get(schema, schema.__name__)}, got {_type_name(value)}")
    elif value != schema or type(value) is not type(schema):
        raise SchemaViolation(path, f"{_show(value)} is not allowed (expected {_show(schema)})", expected=(schema,))


def validate(data: dict, schema: dict | None = None) -> None:
    """Check ``data`` against ``schema`` (default :data:`SCHEMA`); raise :class:`SchemaViolation`
    for the first key that breaks it."""
    _check(SCHEMA if schema is None else schema, data, "")
