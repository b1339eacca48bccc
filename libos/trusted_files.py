"""Expansion of ``sgx.trusted_files`` as Gramine's ``Manifest.expand_all_trusted_files`` does it.

Rules (docs/manifest.md, Gramine's ``TrustedFile``):

- an entry is ``"file:PATH"`` or ``{uri = "file:PATH", sha256 = "HEX"}``; other keys and other
  URI schemes are errors; relative paths stay relative (to the current folder);
- a URI ending in ``/`` names a folder (it must be one and carry no ``sha256``), expanded
  recursively in code-point order of the names (dotfiles included); entries that are neither a
  regular file nor a folder (FIFOs, sockets, devices, dangling links) or that fail
  ``access(R_OK)`` are skipped; symbolic links to folders are not descended; a link to a file is
  kept under the link's name and hashed through it. A folder named without ``/`` is an error;
- duplicates (same URI string) keep the first position; a hashed entry wins over an unhashed
  one; two different hashes for one URI are an error;
- with a ``chroot``, paths must be absolute and are resolved inside it (``..`` stops at its top,
  absolute links point inside it), so nothing outside the chroot is ever read; URIs are unchanged.

Hashes (SHA-256 of the whole file, lowercase hex) are computed in parallel threads
(:func:`hash_files`); a given ``sha256`` is trusted and never recomputed.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import SgxManifestError

__all__ = ["TrustedEntry", "collect", "default_jobs", "expand_entries", "hash_files", "resolve_in_chroot",
           "sha256_file"]

_KEY = "sgx.trusted_files"
_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS


@dataclass
class TrustedEntry:
    """One trusted file: its URI as the manifest will carry it, its hash, and where it is read."""

    uri: str
    sha256: str | None
    realpath: str | Path  # (a str for the files a folder expands to: no pathlib cost per file)
    key: str = _KEY

    def to_manifest(self) -> dict[str, str] | str:
        """The manifest form: ``{uri, sha256}``, or the bare URI while unhashed."""
        return self.uri if self.sha256 is None else {"uri": self.uri, "sha256": self.sha256}


def _uri_path(uri: object, key: str) -> PurePosixPath:
    if not isinstance(uri, str):
        raise SgxManifestError(f"{key}: uri must be a string, got {type(uri).__name__}", key=key)
    if not uri.startswith("file:"):
        raise SgxManifestError(f"{key}: unsupported URI {uri!r} (trusted files must be file: URIs)", key=key)
    return PurePosixPath(uri[len("file:"):])


def resolve_in_chroot(path: PurePosixPath, chroot: Path, *, key: str = _KEY) -> PurePosixPath:
    """``path`` (absolute) with every symbolic link resolved as if ``chroot`` were ``/``.

    ``..`` never climbs above the chroot's top and absolute link targets start at the chroot, so
    the result always names something inside it. Raises :class:`SgxManifestError` for a relative
    path, a component that is not a folder (ENOTDIR) and link loops (ELOOP).
    """
    if not path.is_absolute():
        raise SgxManifestError(f"{key}: {path} is relative: with --chroot, trusted files must be absolute paths",
                               key=key)
    done = PurePosixPath("/")
    todo = list(path.parts[1:])
    links = 0
    while todo:
        part = todo.pop(0)
        if not (chroot / done.relative_to("/")).is_dir():
            raise SgxManifestError(f"{key}: {done} is not a folder inside the chroot {chroot} (resolving {path})",
                                   errno=errno.ENOTDIR, key=key)
        if part in (".", ""):
            continue
        if part == "..":
            done = done.parent
            continue
        outer = chroot / (done / part).relative_to("/")
        if not outer.is_symlink():
            done = done / part
            continue
        links += 1
        if links > _MAX_LINKS:
            raise SgxManifestError(f"{key}: too many levels of symbolic links resolving {path} in {chroot}",
                                   errno=errno.ELOOP, key=key)
        target = PurePosixPath(os.readlink(outer))
        if target.is_absolute():
            done = PurePosixPath("/")
            todo[:0] = target.parts[1:]
        else:
            todo[:0] = target.parts
    return done


def _realpath(path: PurePosixPath, chroot: Path | None, key: str) -> Path:
    if chroot is None:
        return Path(path)
    return chroot / resolve_in_chroot(path, chroot, key=key).relative_to("/")


def _entry(item: object, chroot: Path | None, key: str) -> TrustedEntry:
    if isinstance(item, str):
        uri, sha256 = item, None
    elif isinstance(item, dict):
        rest = dict(item)
        if "uri" not in rest:
            raise SgxManifestError(f"{key}: a trusted-file table needs a uri", key=key)
        uri, sha256 = rest.pop("uri"), rest.pop("sha256", None)
        if rest:
            raise SgxManifestError(f"{key}: unknown keys {', '.join(sorted(rest))} (only uri and sha256)", key=key)
        if sha256 is not None and not isinstance(sha256, str):
            raise SgxManifestError(f"{key}: sha256 must be a string of 64 hex digits", key=key)
    else:
        raise SgxManifestError(f"{key}: a trusted file is a \"file:...\" string or a {{uri, sha256}} table, "
                               f"not {type(item).__name__}", key=key)
    return TrustedEntry(uri, sha256, _realpath(_uri_path(uri, key), chroot, key), key)


def _child_prefix(entry: TrustedEntry, chroot: Path | None) -> str:
    """What a child's URI path starts with: the folder's path as pathlib writes it, then "/"."""
    inner = PurePosixPath(entry.realpath) if chroot is None else "/" / PurePosixPath(entry.realpath).relative_to(chroot)
    text = str(inner)
    return "" if text == "." else "/" if text == "/" else text + "/"


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except PermissionError:  # as pathlib's glob: an unlistable folder has no entries
        return []


def _expand(entry: TrustedEntry, chroot: Path | None) -> Iterator[TrustedEntry]:
    if not entry.uri.endswith("/"):
        if os.path.isdir(entry.realpath):
            raise SgxManifestError(f"{entry.key}: {entry.uri!r} is a folder: write it with a trailing \"/\"",
                                   errno=errno.EISDIR, key=entry.key)
        yield entry
        return
    if not os.path.isdir(entry.realpath):
        raise SgxManifestError(f"{entry.key}: {entry.uri!r} ends with \"/\" but is not a folder",
                               errno=errno.ENOTDIR, key=entry.key)
    if entry.sha256 is not None:
        raise SgxManifestError(f"{entry.key}: {entry.uri!r} is a folder and can't have a sha256", key=entry.key)
    prefix = _child_prefix(entry, chroot)
    for item in _listing(entry.realpath):
        # the checks of Gramine's expand_directory, on the same path (links followed, as there)
        is_dir = item.is_dir()
        if not (is_dir or item.is_file()) or not os.access(item.path, os.R_OK):
            continue
        link = item.is_symlink()
        if is_dir and link:
            continue  # symbolic links to folders are not descended
        inner = prefix + item.name
        if link and chroot is not None:
            real = chroot / resolve_in_chroot(PurePosixPath(inner), chroot, key=entry.key).relative_to("/")
        else:  # no link: the path in the chroot is already resolved
            real = item.path
        child = TrustedEntry(f"file:{inner}/" if is_dir else f"file:{inner}", None, real, entry.key)
        if is_dir:
            yield from _expand(child, chroot)
        else:
            yield child


def expand_entries(items: Sequence[object], *, chroot: Path | None = None) -> list[TrustedEntry]:
    """Every file that ``items`` (the ``sgx.trusted_files`` list) names, folders expanded, deduplicated."""
    chroot = Path(chroot) if chroot is not None else None
    found: dict[str, TrustedEntry] = {}
    for index, item in enumerate(items):
        for entry in _expand(_entry(item, chroot, f"{_KEY}[{index}]"), chroot):
            old = found.get(entry.uri)
            if old is not None and old.sha256 is not None:
                if entry.sha256 is not None and entry.sha256 != old.sha256:
                    raise SgxManifestError(f"{entry.key}: two different sha256 values ({old.sha256} and "
                                           f"{entry.sha256}) for {entry.uri!r}", key=entry.key)
                continue
            found[entry.uri] = entry  # an existing key keeps its position
    return list(found.values())


_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the whole file at ``path``, lowercase hex."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        digest = hashlib.sha256()
        # a small file in one read (sized by fstat: no buffer to allocate and clear per file)
        size = os.fstat(fd).st_size
        while chunk := os.read(fd, min(max(size + 1, 4096), _CHUNK)):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def default_jobs() -> int:
    """Hashing threads by default: the CPUs this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


def _hash_batch(paths: Sequence[str | Path]) -> list[str]:
    return [sha256_file(p) for p in paths]


def hash_files(paths: Sequence[str | Path], *, jobs: int | None = None) -> list[str]:
    """The SHA-256 of each path, in order, hashed by ``jobs`` threads (hashlib drops the GIL).

    The threads take batches of files: one task per file cost more than the hashing of a small
    file (bench/bench_sign.py)."""
    jobs = default_jobs() if jobs is None else jobs
    if jobs <= 1 or len(paths) <= 1:
        return _hash_batch(paths)
    from concurrent.futures import ThreadPoolExecutor

    size = max(1, min(64, len(paths) // (jobs * 4)))
    batches = [paths[i:i + size] for i in range(0, len(paths), size)]
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        return [digest for batch in pool.map(_hash_batch, batches) for digest in batch]
    finally:  # after an error or a stop signal, the batches not yet started are not hashed
        pool.shutdown(wait=True, cancel_futures=True)


def collect(entries: Iterable[TrustedEntry], *, jobs: int | None = None) -> None:
    """Hash every entry of ``entries`` that has no ``sha256`` yet (in place)."""
    todo = [e for e in entries if e.sha256 is None]
    try:
        digests = hash_files([e.realpath for e in todo], jobs=jobs)
    except OSError as exc:
        bad = next((e for e in todo if str(e.realpath) == str(exc.filename)), None)
        where = f"{bad.key}: {bad.uri!r}" if bad else _KEY
        raise SgxManifestError(f"{where}: can't read {exc.filename}: {exc.strerror}", errno=exc.errno,
                               key=bad.key if bad else _KEY) from None
    for entry, digest in zip(todo, digests, strict=True):
        entry.sha256 = digest
