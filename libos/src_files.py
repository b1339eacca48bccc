"""``loader.argv_src_file`` and ``loader.env_src_file``: argv or environment from a host file.

Gramine's rules (pal/src/pal_main.c, ``load_cstring_array`` and ``build_envs``):

- the key is a ``file:`` URI of a host file (opened by the PAL, not through the LibOS's mounts)
  holding NUL-terminated strings, as ``gramine-argv-serializer`` writes them; a file that is not
  empty must end with a NUL (else "Invalid argument");
- ``argv_src_file`` gives the whole argv, argv[0] included; it excludes ``loader.argv`` and
  ``loader.insecure__use_cmdline_argv``;
- ``env_src_file`` gives ``NAME=value`` entries (one without ``=`` is "Invalid argument"; one
  with an empty name is refused here too, Gramine passes it on); it
  excludes ``loader.insecure__use_host_env``; every entry is kept unless ``loader.env`` names the
  variable: a ``loader.env`` value then replaces it, and ``{ passthrough = true }`` keeps the
  file's entry (the host's environment is not used at all).

Where the manifest lists file rules (``sgx.trusted_files`` / ``sgx.allowed_files`` /
``sgx.file_check_policy``), the file is held to them as Gramine's SGX PAL holds every file it
opens: a trusted file must match its ``sha256``; one neither trusted nor allowed is refused under
the ``strict`` policy and logged under ``allow_all_but_log``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
from typing import Any

from .manifest import Manifest, ManifestError

__all__ = ["argv_from_file", "env_from_file"]

log = logging.getLogger("libos.loader")


def _fail(manifest: Manifest, key: str, what: str) -> ManifestError:
    return ManifestError(key, f"{key}: {what}", source=manifest.source)


def _host_path(manifest: Manifest, key: str, uri: Any) -> str:
    """The host path of the key's ``file:`` URI (relative: against the manifest's folder, as every
    ``file:`` URI of the manifest)."""
    if not isinstance(uri, str) or not uri.startswith("file:") or uri == "file:":
        raise _fail(manifest, key, f'expected a "file:" URI of a host file, got {uri!r}')
    base = posixpath.dirname(manifest.source) if manifest.source else "."
    return posixpath.normpath(posixpath.join(base or ".", uri[len("file:"):]))


def _check_rules(manifest: Manifest, key: str, path: str, data: bytes) -> None:
    sgx = manifest.raw.get("sgx", {}) if isinstance(manifest.raw, dict) else {}
    if not (manifest.trusted_files or manifest.allowed_files or "file_check_policy" in sgx):
        return
    real = os.path.abspath(path)
    for t in manifest.trusted_files:
        if t.path == real or (t.is_dir and real.startswith(t.path)):
            if t.sha256 is not None and hashlib.sha256(data).digest() != t.sha256:
                raise _fail(manifest, key, f"{path} does not match its sha256 in sgx.trusted_files "
                                           "(the file was changed; update the manifest's hash)")
            return
    if any(a == real or (a.endswith("/") and real.startswith(a)) for a in manifest.allowed_files):
        return
    if manifest.file_check_policy == "strict":
        raise _fail(manifest, key, f"{path} is neither a trusted nor an allowed file (list it in "
                                   'sgx.trusted_files, or set sgx.file_check_policy = "allow_all_but_log")')
    log.warning("%s: %s is neither a trusted nor an allowed file (allowed by allow_all_but_log)", key, path)


def _strings(manifest: Manifest, key: str) -> list[str]:
    """The NUL-terminated strings of the key's file."""
    path = _host_path(manifest, key, manifest.raw["loader"][key.split(".", 1)[1]])
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise _fail(manifest, key, f"can't read {path}: {exc.strerror} (expected a file of NUL-terminated "
                                   "strings, as gramine-argv-serializer writes)") from None
    _check_rules(manifest, key, path, data)
    if data and not data.endswith(b"\0"):
        raise _fail(manifest, key, f"{path} does not end with a NUL byte (expected NUL-terminated strings, "
                                   "as gramine-argv-serializer writes)")
    try:
        return [os.fsdecode(s) for s in data[:-1].split(b"\0")] if data else []
    except UnicodeDecodeError:  # pragma: no cover - fsdecode escapes undecodable bytes
        raise _fail(manifest, key, f"{path} is not text") from None


def argv_from_file(manifest: Manifest) -> list[str]:
    """argv from ``loader.argv_src_file`` (argv[0] included)."""
    key = "loader.argv_src_file"
    argv = _strings(manifest, key)
    if not argv:
        raise _fail(manifest, key, "the file holds no argument (expected at least argv[0], the program's name)")
    return argv


def env_from_file(manifest: Manifest) -> dict[str, str]:
    """The environment from ``loader.env_src_file`` combined with ``loader.env`` (its values win;
    its ``passthrough`` entries keep the file's values)."""
    key = "loader.env_src_file"
    env: dict[str, str] = {}
    for n, entry in enumerate(_strings(manifest, key)):
        name, sep, value = entry.partition("=")
        if not sep:  # the entry is not echoed: an environment may hold secrets
            raise _fail(manifest, key, f"entry {n + 1} has no '=' (expected NAME=value entries)")
        if not name:  # Gramine passes it on; execve() from here can't
            raise _fail(manifest, key, f"entry {n + 1} has an empty name (expected NAME=value entries)")
        env.setdefault(name, value)  # a repeated name: the first one, which getenv() finds
    table = manifest.raw.get("loader", {}).get("env", {})
    for name, value in table.items():
        if isinstance(value, str):
            env[name] = value
        elif "value" in value:
            env[name] = value["value"]
    return env
