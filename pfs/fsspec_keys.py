"""The wrap key of a ``pfs`` fsspec file system: where it comes from, and how it is hidden.

fsspec caches file system instances under a token, the MD5 of ``str()`` of their arguments, and
keeps those arguments on the instance (``storage_options``). :class:`WrapKey` is what stands for
a key there: its ``str``/``repr`` is a fingerprint (HMAC-SHA256 of the key under a random
per-process secret), so neither the token nor any text reachable from the cache holds the key.
Pickling it (a Dask task graph) carries the key bytes, as any in-memory copy would.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from pal import random_bytes

from .errors import KeyFormatError
from .keys import load_key, parse_key_hex
from .layout import KEY_SIZE

__all__ = ["WrapKey", "resolve_key"]

_PROCESS_SECRET = random_bytes(32)


class WrapKey:
    """A 16-byte wrap key whose text forms never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes | bytearray | memoryview | WrapKey):
        if isinstance(value, WrapKey):
            value = value._value
        if not isinstance(value, bytes | bytearray | memoryview):
            raise KeyFormatError(f"pfs key must be {KEY_SIZE} bytes, not {type(value).__name__}")
        value = bytes(value)
        if len(value) != KEY_SIZE:
            raise KeyFormatError(f"pfs key has {len(value)} bytes; expected {KEY_SIZE}")
        self._value = value

    @property
    def value(self) -> bytes:
        """The key bytes."""
        return self._value

    def fingerprint(self) -> str:
        """A keyed hash of the key, stable within this process only."""
        return hmac.new(_PROCESS_SECRET, self._value, hashlib.sha256).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"WrapKey(<{self.fingerprint()}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WrapKey) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __reduce__(self):
        return (WrapKey, (self._value,))


def resolve_key(key: bytes | WrapKey | None, key_file: str | os.PathLike[str] | None,
                key_env: str | None) -> bytes:
    """The key bytes from exactly one of ``key``, ``key_file`` (raw or hex, as ``pfs`` commands
    read key files) and ``key_env`` (the name of an environment variable holding 32 hex digits)."""
    given = [name for name, value in (("key", key), ("key_file", key_file), ("key_env", key_env))
             if value is not None]
    if len(given) != 1:
        raise KeyFormatError("pfs file system: give exactly one of key, key_file or key_env "
                             f"(got {', '.join(given) or 'none'})")
    if key is not None:
        return WrapKey(key).value
    if key_file is not None:
        return load_key(key_file)
    assert key_env is not None
    text = os.environ.get(key_env)
    if text is None:
        raise KeyFormatError(f"pfs file system: environment variable {key_env} (key_env) is not set")
    return parse_key_hex(text, what=f"environment variable {key_env}")
