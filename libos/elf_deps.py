"""The shared-library closure of an ELF program, found as glibc's ``ld.so`` finds it (``--trusted-deps``).

Read with pyelftools, nothing is run: the interpreter (``PT_INTERP``), then breadth first every
``DT_NEEDED`` name not yet loaded (matched by name or ``DT_SONAME``, then by file identity),
searched as ``elf/dl-load.c`` does: a name with ``/`` is a path; otherwise ``DT_RPATH`` of the
object and of each object that loaded it up to the program (only when the object has no
``DT_RUNPATH``; an object's ``DT_RPATH`` is ignored when it has a ``DT_RUNPATH``), then its
``DT_RUNPATH``, then ``/etc/ld.so.cache`` (the ``glibc-ld.so.cache1.1`` format), then the default
folders (unless ``DF_1_NODEFLIB``). ``$ORIGIN`` expands to the object's folder. A candidate of
another ELF class or machine is passed over, as ``ld.so`` does.

Not modelled (documented in docs/manifest.md): ``LD_LIBRARY_PATH`` and ``LD_PRELOAD`` (the signer's
environment is not the enclave's), ``glibc-hwcaps`` and legacy hwcap subfolders, ``dlopen()``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import struct
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import SgxManifestError

__all__ = ["CacheEntry", "ElfDepsError", "ElfObject", "LdCache", "Resolver", "closure", "default_dirs", "read_elf"]

CACHE_MAGIC_NEW = b"glibc-ld.so.cache1.1"
CACHE_MAGIC_OLD = b"ld.so-1.7.0"
_NEW_HEADER = struct.Struct("<20sIIB3xI12x")  # magic+version, nlibs, len_strings, flags, extension offset
_NEW_ENTRY = struct.Struct("<iIIIQ")           # flags, key, value, osversion, hwcap
_OLD_ENTRY_SIZE = 12
_HWCAP_EXTENSION = 1 << 62
_FLAG_TYPE_MASK, _FLAG_ELF_LIBC6 = 0x00FF, 0x0003
_FLAG_REQUIRED_MASK = 0xFF00
# ld.so.cache's required flags per (e_machine, ELF class), from glibc's dl-cache.h
_REQUIRED_FLAGS = {("EM_X86_64", 64): 0x0300, ("EM_AARCH64", 64): 0x0A00, ("EM_386", 32): 0x0000,
                   ("EM_X86_64", 32): 0x0800, ("EM_RISCV", 64): 0x1000, ("EM_PPC64", 64): 0x0500,
                   ("EM_S390", 64): 0x0400}
_DF_1_NODEFLIB = 0x800
_MAX_LINKS = 40


class ElfDepsError(SgxManifestError):
    """The closure can't be computed: a file is missing or not an ELF object, a library not found."""


@dataclass
class ElfObject:
    """What ``ld.so`` reads of one loaded object."""

    path: str
    machine: str
    elfclass: int
    interp: str | None = None
    soname: str | None = None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] | None = None
    runpath: list[str] | None = None
    nodeflib: bool = False
    loader: ElfObject | None = None
    origin: str = ""


def read_elf(path: str | os.PathLike[str], *, real: str | os.PathLike[str] | None = None) -> ElfObject:
    """The interpreter, needed names, SONAME, RPATH/RUNPATH and flags of the ELF file at ``path``
    (read from ``real`` if given: the file in a chroot). Raises :class:`ElfDepsError`."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(real if real is not None else path, "rb") as file:
            elf = ELFFile(file)
            obj = ElfObject(os.fspath(path), elf["e_machine"], elf.elfclass)
            for segment in elf.iter_segments():
                if segment["p_type"] == "PT_INTERP":
                    obj.interp = segment.get_interp_name()
                elif segment["p_type"] == "PT_DYNAMIC":
                    for tag in segment.iter_tags():
                        kind = tag.entry.d_tag
                        if kind == "DT_NEEDED":
                            obj.needed.append(tag.needed)
                        elif kind == "DT_SONAME":
                            obj.soname = tag.soname
                        elif kind == "DT_RPATH":
                            obj.rpath = tag.rpath.split(":")
                        elif kind == "DT_RUNPATH":
                            obj.runpath = tag.runpath.split(":")
                        elif kind == "DT_FLAGS_1":
                            obj.nodeflib = bool(tag.entry.d_val & _DF_1_NODEFLIB)
    except OSError as exc:
        raise ElfDepsError(f"{path}: can't read it: {exc.strerror}", errno=exc.errno) from None
    except (ELFError, struct.error, ValueError) as exc:
        raise ElfDepsError(f"{path}: not a valid ELF file ({exc})", errno=errno.ENOEXEC) from None
    if obj.runpath is not None:
        obj.rpath = None  # glibc's get-dynamic-info.h: DT_RUNPATH hides DT_RPATH
    return obj


@dataclass(frozen=True)
class CacheEntry:
    """One library of ``ld.so.cache``."""

    name: str
    path: str
    flags: int
    hwcap: int


class LdCache:
    """``/etc/ld.so.cache`` (the new format, alone or after the old one), entries in file order."""

    def __init__(self, entries: list[CacheEntry]) -> None:
        self.entries = entries

    @classmethod
    def parse(cls, data: bytes) -> LdCache:
        """Decode the bytes of an ``ld.so.cache`` file; raise ``ValueError`` if they are not one."""
        base = 0
        if data.startswith(CACHE_MAGIC_OLD):
            (count,) = struct.unpack_from("<I", data, len(CACHE_MAGIC_OLD) + 1)
            base = len(CACHE_MAGIC_OLD) + 1 + 4 + count * _OLD_ENTRY_SIZE
            base = (base + 7) & ~7
        if data[base:base + len(CACHE_MAGIC_NEW)] != CACHE_MAGIC_NEW:
            raise ValueError("not a glibc-ld.so.cache1.1 file")
        _magic, count, _strings, _flags, _ext = _NEW_HEADER.unpack_from(data, base)
        entries = []
        offset = base + _NEW_HEADER.size
        for _ in range(count):
            flags, key, value, _osv, hwcap = _NEW_ENTRY.unpack_from(data, offset)
            offset += _NEW_ENTRY.size
            entries.append(CacheEntry(_cstring(data, base + key), _cstring(data, base + value), flags, hwcap))
        return cls(entries)

    @classmethod
    def load(cls, path: str | os.PathLike[str] = "/etc/ld.so.cache") -> LdCache:
        """The cache at ``path``; an empty one if the file is missing or unreadable (as ``ld.so``)."""
        try:
            return cls.parse(Path(path).read_bytes())
        except (OSError, ValueError, struct.error):
            return cls([])

    def lookup(self, name: str, machine: str, elfclass: int) -> str | None:
        """The path the cache gives for ``name`` for objects of this machine and class, or None."""
        required = _REQUIRED_FLAGS.get((machine, elfclass))
        for entry in self.entries:
            if entry.name != name or entry.flags & _FLAG_TYPE_MASK != _FLAG_ELF_LIBC6:
                continue
            if required is not None and entry.flags & _FLAG_REQUIRED_MASK != required:
                continue
            if entry.hwcap & _HWCAP_EXTENSION:
                continue  # a glibc-hwcaps subfolder entry: not modelled
            return entry.path
        return None


def _cstring(data: bytes, offset: int) -> str:
    end = data.index(b"\0", offset)
    return os.fsdecode(data[offset:end])


def default_dirs(elfclass: int = 64, *, root: Path | None = None) -> list[str]:
    """``ld.so``'s built-in search folders: Debian's multiarch list where that layout exists."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    base = root or Path("/")
    if (base / "lib" / multiarch).is_dir() or (base / "usr" / "lib" / multiarch).is_dir():
        return [f"/lib/{multiarch}", f"/usr/lib/{multiarch}", "/lib", "/usr/lib"]
    return ["/lib64", "/usr/lib64"] if elfclass == 64 else ["/lib", "/usr/lib"]


class Resolver:
    """Where the files a program names are read: on this machine, or inside a chroot folder."""

    def __init__(self, root: Path | None, cache: LdCache | None) -> None:
        self.root = root
        self.cache = cache if cache is not None else LdCache.load(self.real("/etc/ld.so.cache"))
        self._defaults: list[str] | None = None

    def real(self, path: str) -> str:
        """Where ``path`` (as the program sees it) is read here: itself, or inside the chroot."""
        if self.root is None:
            return path
        from .trusted_files import resolve_in_chroot

        try:
            inner = resolve_in_chroot(PurePosixPath(posixpath.abspath(path)), self.root, key="--trusted-deps")
        except SgxManifestError:
            return os.fspath(self.root / "nonexistent")
        return os.fspath(self.root / inner.relative_to("/"))

    def resolved(self, path: str) -> str:
        """``path`` with its symbolic links resolved (inside the chroot, if any)."""
        path = posixpath.abspath(path)
        if self.root is None:
            return os.path.realpath(path)
        from .trusted_files import resolve_in_chroot

        try:
            return str(resolve_in_chroot(PurePosixPath(path), self.root, key="--trusted-deps"))
        except SgxManifestError:
            return path

    def aliases(self, path: str) -> list[str]:
        """``path``, each name its chain of symbolic links leads to (as written, joined to the
        link's folder), and its real path."""
        names = [path]
        current = posixpath.abspath(path)
        for _ in range(_MAX_LINKS):
            head, tail = posixpath.split(current)
            outer = os.path.join(self.real(head), tail)
            if not os.path.islink(outer):
                break
            current = posixpath.normpath(posixpath.join(head, os.readlink(outer)))
            names.append(current)
        names.append(self.resolved(path))
        return list(dict.fromkeys(names))

    def is_file(self, path: str) -> bool:
        return os.path.isfile(self.real(path))

    def identity(self, path: str) -> tuple[int, int]:
        st = os.stat(self.real(path))
        return st.st_dev, st.st_ino

    def read(self, path: str) -> ElfObject:
        return read_elf(path, real=self.real(path))

    def defaults(self, elfclass: int) -> list[str]:
        if self._defaults is None:
            self._defaults = default_dirs(elfclass, root=self.root)
        return self._defaults


def _expand_tokens(text: str, obj: ElfObject) -> str:
    for token in ("${ORIGIN}", "$ORIGIN"):
        text = text.replace(token, obj.origin)
    return text


def _chain(obj: ElfObject) -> Iterator[ElfObject]:
    current: ElfObject | None = obj
    while current is not None:
        yield current
        current = current.loader


_CLASSES = {1: 32, 2: 64}


def _fits(res: Resolver, path: str, want: ElfObject) -> ElfObject | None:
    """The object at ``path`` if ld.so would take it for ``want``: None when there is no file or
    it is an ELF file of another class or machine (ld.so passes over those); anything else that
    is not a valid ELF file is an error, as for ld.so ("file too short", "invalid ELF header")."""
    if not res.is_file(path):
        return None
    try:
        with open(res.real(path), "rb") as file:
            head = file.read(20)
    except OSError as exc:
        raise ElfDepsError(f"{path}: can't read it: {exc.strerror}", errno=exc.errno) from None
    if len(head) == 20 and head[:4] == b"\x7fELF":
        if _CLASSES.get(head[4]) != want.elfclass:
            return None
        from elftools.elf.enums import ENUM_E_MACHINE

        machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
        if ENUM_E_MACHINE.get(want.machine) != machine:
            return None
    found = res.read(path)
    return found if (found.machine, found.elfclass) == (want.machine, want.elfclass) else None


def _in_folder(folder: str, name: str) -> str:
    folder = folder.rstrip("/") or "/"
    if not folder.startswith("/"):
        folder = posixpath.join(os.getcwd(), folder)
    return posixpath.join(folder, name)


def _search(res: Resolver, name: str, obj: ElfObject) -> ElfObject | None:
    if "/" in name:
        path = _in_folder(*posixpath.split(_expand_tokens(name, obj)))
        return _fits(res, path, obj)
    dirs: list[str] = []
    if obj.runpath is None:
        for holder in _chain(obj):
            dirs += [_expand_tokens(d, holder) for d in holder.rpath or ()]
    dirs += [_expand_tokens(d, obj) for d in obj.runpath or ()]
    for folder in dirs:  # names kept as ld.so forms them: "$ORIGIN/../lib" stays unnormalized
        if folder and (found := _fits(res, _in_folder(folder, name), obj)):
            return found
    cached = res.cache.lookup(name, obj.machine, obj.elfclass)
    if cached and (found := _fits(res, cached, obj)):
        return found
    if not obj.nodeflib:
        for folder in res.defaults(obj.elfclass):
            if found := _fits(res, posixpath.join(folder, name), obj):
                return found
    return None


def closure(program: str | os.PathLike[str], *, root: Path | None = None, cache: LdCache | None = None) -> list[str]:
    """Every file ``ld.so`` loads for ``program``: its interpreter and all shared libraries (the
    program itself not included), as absolute paths the program sees, sorted.

    ``root``: look the files up inside that folder (``--chroot``). Raises :class:`ElfDepsError`
    when the program is no ELF file or a needed library is not found.
    """
    res = Resolver(Path(root) if root is not None else None, cache)
    path = posixpath.abspath(os.fspath(program))
    main = res.read(path)
    # an exec'd program's $ORIGIN is its real folder (/proc/self/exe); inside a chroot, as given
    main.origin = posixpath.dirname(os.path.realpath(path) if root is None else path)
    loaded: list[ElfObject] = []
    names: dict[str, ElfObject] = {}
    identities: set[tuple[int, int]] = {res.identity(path)}
    if main.interp:
        interp = _fits(res, main.interp, main)
        if interp is None:
            raise ElfDepsError(f"{path}: its interpreter {main.interp} is missing or not a {main.machine} ELF file",
                               errno=errno.ENOENT)
        interp.origin = posixpath.dirname(main.interp)
        loaded.append(interp)
        names[main.interp] = interp
        if interp.soname:
            names[interp.soname] = interp
        identities.add(res.identity(main.interp))
    queue = [main]
    while queue:
        obj = queue.pop(0)
        for name in obj.needed:
            if name in names:
                continue
            found = _search(res, name, obj)
            if found is None:
                raise ElfDepsError(f"{path}: {name} (needed by {obj.path}) not found in its RPATH/RUNPATH, "
                                   "ld.so.cache or the default folders", errno=errno.ENOENT)
            names[name] = found
            ident = res.identity(found.path)
            if ident in identities:
                continue
            identities.add(ident)
            found.loader = obj
            found.origin = posixpath.dirname(found.path)
            if found.soname:
                names.setdefault(found.soname, found)
            loaded.append(found)
            queue.append(found)
    return sorted({o.path for o in loaded})

