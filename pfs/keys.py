"""Wrap-key files: loading (16 raw bytes or 32 hex characters) and generating (mode 0600).

A key file holds the 16-byte wrap key (key-derivation key) either as raw bytes, as
``pf_crypt gen-key`` writes it, or as 32 hexadecimal characters (optionally followed by
trailing whitespace such as a newline), as a Gramine manifest spells keys. Error messages name
the file and describe what it holds, never its contents.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import string

from pal import random_bytes

from .errors import KeyFormatError, PfsError
from .layout import KEY_SIZE

__all__ = [
    "KEY_SIZE",
    "KeyFileError",
    "KeyFileExistsError",
    "generate_key_file",
    "load_key",
    "parse_key_hex",
]

HEX_KEY_CHARS = 2 * KEY_SIZE
_MAX_KEY_FILE = 256  # a key file is tiny; never read more than this
_HEX_DIGITS = frozenset(string.hexdigits)


class KeyFileError(PfsError):
    """A key file can't be read (missing, a folder, no permission): carries the OS errno."""

    default_errno = _errno.ENOENT


class KeyFileExistsError(KeyFileError):
    """A new key file would overwrite an existing file (errno EEXIST)."""

    default_errno = _errno.EEXIST


def parse_key_hex(text: str | bytes, *, what: str = "key") -> bytes:
    """Decode a key written as 32 hex characters (surrounding whitespace allowed).

    Raises :class:`~pfs.errors.KeyFormatError` otherwise; the message never repeats the text.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise KeyFormatError(
                f"{what} is not text; expected {HEX_KEY_CHARS} hex characters") from None
    value = text.strip()
    if len(value) != HEX_KEY_CHARS:
        raise KeyFormatError(
            f"{what} has {len(value)} characters; expected {HEX_KEY_CHARS} hex characters")
    if not all(c in _HEX_DIGITS for c in value):
        raise KeyFormatError(
            f"{what} contains characters that are not hex digits; expected {HEX_KEY_CHARS} hex characters")
    return bytes.fromhex(value)


def _describe_os_error(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def load_key(path: str | os.PathLike[str], *, what: str = "wrap key") -> bytes:
    """Read a 16-byte key from the file at ``path``.

    The file holds 16 raw bytes, or 32 hex characters optionally followed by whitespace.
    Raises :class:`KeyFileError` (errno ENOENT, EISDIR, EACCES, ...) when the file can't be read
    and :class:`~pfs.errors.KeyFormatError` when its contents are not a key. ``what`` names the
    key in messages (e.g. "wrap key", "new key").
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(
            f"{what} file '{name}' does not exist (create one with 'pfs gen-key -w {name}')",
            path=name, errno=_errno.ENOENT) from None
    except OSError as exc:
        raise KeyFileError(f"{what} file '{name}' can't be opened: {_describe_os_error(exc)}",
                           path=name, errno=exc.errno) from None
    try:
        try:
            data = os.read(fd, _MAX_KEY_FILE + 1)
        except IsADirectoryError:
            raise KeyFileError(f"{what} file '{name}' is a folder, not a key file",
                               path=name, errno=_errno.EISDIR) from None
        except OSError as exc:
            raise KeyFileError(f"{what} file '{name}' can't be read: {_describe_os_error(exc)}",
                               path=name, errno=exc.errno) from None
    finally:
        os.close(fd)
    if len(data) == KEY_SIZE:
        return data
    expected = f"expected {KEY_SIZE} raw bytes or {HEX_KEY_CHARS} hex characters"
    if len(data) > _MAX_KEY_FILE:
        raise KeyFormatError(f"{what} file '{name}' holds more than {_MAX_KEY_FILE} bytes; {expected}",
                             path=name)
    stripped = data.rstrip(b" \t\r\n")
    if len(stripped) == HEX_KEY_CHARS and not data[:1].isspace():
        try:
            return parse_key_hex(stripped, what=f"{what} file '{name}'")
        except KeyFormatError as exc:
            raise KeyFormatError(
                f"{what} file '{name}' holds {HEX_KEY_CHARS} characters that are not all hex digits; "
                f"{expected}", path=name) from exc
    raise KeyFormatError(f"{what} file '{name}' holds {len(data)} bytes; {expected}", path=name)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _create_exclusive(path: str) -> int:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)  # whatever the umask
    return fd


def generate_key_file(path: str | os.PathLike[str], *, force: bool = False) -> None:
    """Write a new random 16-byte key to ``path``, created with mode 0600.

    Without ``force`` an existing file is never touched (:class:`KeyFileExistsError`, errno
    EEXIST). With ``force`` the key goes to a temporary file in the same folder that then
    replaces ``path`` atomically. Other failures raise :class:`KeyFileError` with the OS errno;
    nothing is left behind.
    """
    name = os.fspath(path)
    if os.path.isdir(name):
        raise KeyFileError(f"key file '{name}' is a folder; give the path of the file to create",
                           path=name, errno=_errno.EISDIR)
    key = random_bytes(KEY_SIZE)
    if not force:
        try:
            fd = _create_exclusive(name)
        except FileExistsError:
            raise KeyFileExistsError(
                f"key file '{name}' already exists; not overwriting it (use --force to replace it)",
                path=name, errno=_errno.EEXIST) from None
        except OSError as exc:
            raise KeyFileError(f"can't create key file '{name}': {_describe_os_error(exc)}",
                               path=name, errno=exc.errno) from None
        try:
            _write_all(fd, key)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            _unlink_quietly(name)
            raise KeyFileError(f"can't write key file '{name}': {_describe_os_error(exc)}",
                               path=name, errno=exc.errno) from None
        os.close(fd)
        return

    folder, base = os.path.split(name)
    tmp = os.path.join(folder, f".{base}.pfs-tmp-{random_bytes(6).hex()}")
    try:
        fd = _create_exclusive(tmp)
    except OSError as exc:
        raise KeyFileError(f"can't create key file '{name}': {_describe_os_error(exc)}",
                           path=name, errno=exc.errno) from None
    try:
        try:
            _write_all(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise KeyFileError(f"can't write key file '{name}': {_describe_os_error(exc)}",
                           path=name, errno=exc.errno) from None


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
