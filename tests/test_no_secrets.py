"""No repr, str, log line or error message contains a key or plaintext (issue 8, item 9).

Each test opens files with known keys and known plaintext, then walks every object reachable
from the objects a user holds (attributes, properties, dataclass fields, containers, to a bounded
depth) and checks the ``repr()`` and ``str()`` of every project object met on the way. Raw
``bytes`` values are the data themselves (``pf.metadata.root_key`` *is* a key) and are not
checked; what is checked is that no object prints them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import weakref
from collections.abc import Mapping
from pathlib import Path

import pytest

import pfs
from libos import LibOS
from pal import HostFile
from pfs import CorruptedNodeError, PathMismatchError, ProtectedFile, WrongKeyError, tamper
from pfs.layout import data_physical
from pfs.storage import BorrowedStorage
from vfs.encrypted import KeyStore

KEY = b"K3y-0f-16-bytes!"  # printable, so that a repr of the bytes would show it as it is
OTHER_KEY = bytes.fromhex("8899aabbccddeeff0011223344556677")
MARKER = b"TOP-SECRET-PLAINTEXT-MARKER"
PROJECT = {"pfs", "vfs", "libos", "pal", "tools"}
LEAVES = (bytes, bytearray, memoryview, str, int, float, bool, complex, type(None))


def _is_project(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] in PROJECT


def _children(obj: object) -> list[object]:
    if isinstance(obj, Mapping | weakref.WeakValueDictionary | weakref.WeakKeyDictionary):
        return [x for kv in list(obj.items()) for x in kv]
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    if not (_is_project(obj) or isinstance(obj, BaseException)):
        return []  # the internals of threads, locks, files... hold no project state worth a walk
    out: list[object] = []
    if dataclasses.is_dataclass(obj):
        out += [getattr(obj, f.name, None) for f in dataclasses.fields(obj)]
    if hasattr(obj, "__dict__"):
        out += list(vars(obj).values())
    for klass in type(obj).__mro__:
        for name in getattr(klass, "__slots__", ()):
            if hasattr(obj, name):
                out.append(getattr(obj, name))
        for name, attr in vars(klass).items():
            if isinstance(attr, property):
                with contextlib.suppress(Exception):  # a property that can't be read here holds nothing
                    out.append(getattr(obj, name))
    return out


def walk(*roots: object, depth: int = 10, limit: int = 100_000) -> list[object]:
    """Every project object (and exception) reachable from ``roots``."""
    seen: set[int] = set()
    found: list[object] = []
    keep: list[object] = []  # keeps property results alive, so ids stay unique
    stack = [(r, 0) for r in roots]
    while stack and len(seen) < limit:
        obj, d = stack.pop()
        if isinstance(obj, LEAVES) or (callable(obj) and not _is_project(obj)) or id(obj) in seen:
            continue
        seen.add(id(obj))
        keep.append(obj)
        if _is_project(obj) or isinstance(obj, BaseException):
            found.append(obj)
        if d < depth:
            stack.extend((c, d + 1) for c in _children(obj))
    return found


def secret_forms(secret: bytes) -> list[str]:
    """How a secret could show in text: its hex (both cases), the body of its bytes repr, as is."""
    forms = [secret.hex(), secret.hex().upper(), repr(secret)[2:-1]]
    text = secret.decode("latin-1")
    if text.isprintable():
        forms.append(text)
    return forms


def assert_clean(objects: list[object], secrets: list[bytes], *, at_least: int = 1) -> None:
    assert len(objects) >= at_least, f"the walk found only {len(objects)} objects"
    forms = [f for s in secrets for f in secret_forms(s)]
    for obj in objects:
        for text in (repr(obj), str(obj)):
            for form in forms:
                assert form not in text, f"{type(obj).__qualname__} shows a secret: {text[:300]}"


def _content(n: int) -> bytes:
    return (MARKER + b"." * 5) * (n // (len(MARKER) + 5) + 1)


@pytest.fixture
def protected(tmp_path: Path) -> tuple[Path, bytes]:
    """A protected file with a depth-one tree (two MHT nodes) whose plaintext is the marker."""
    data = _content(500_000)[:500_000]
    path = tmp_path / "f.pfs"
    with ProtectedFile.create(HostFile(path, writable=True, create=True), KEY, "bound/f") as pf:
        pf.write(0, data)
    return path, data


def test_protected_file_and_its_metadata(protected: tuple[Path, bytes]) -> None:
    path, data = protected
    pf = ProtectedFile.open(HostFile(path, writable=True), KEY, "bound/f", writable=True)
    assert pf.read(0, len(data)) == data  # fills the node cache with plaintext
    pf.write(100, MARKER)
    secrets = [KEY, pf.metadata.root_key, bytes(pf.metadata.data[:64]), MARKER]
    objects = walk(pf)
    assert pf.metadata in objects
    assert_clean(objects, secrets, at_least=3)
    pf.flush()
    assert_clean(walk(pf), [KEY, pf.metadata.root_key, MARKER])
    pf.close()


def test_pfs_open_file_objects(protected: tuple[Path, bytes]) -> None:
    path, _ = protected
    with pfs.open(path, "r+b", key=KEY, bind_path="bound/f") as f:
        f.read(5000)
        assert_clean([f, *walk(f.raw)], [KEY, MARKER], at_least=3)
    with pfs.open(path, "r", key=KEY, bind_path="bound/f", encoding="latin-1") as f:
        f.read(100)
        assert_clean([f, f.buffer, *walk(f.buffer.raw)], [KEY, MARKER], at_least=3)


def test_tamper_source_and_variants(protected: tuple[Path, bytes]) -> None:
    path, _ = protected
    with HostFile(path) as storage:
        source = tamper._load_source(storage, KEY)
        variants = tamper.plan_variants(storage, KEY)
    assert source.root_mht is not None
    secrets = [KEY, source.meta.root_key, source.root_mht[:16], MARKER]
    assert_clean(walk(source, variants), secrets, at_least=3)


def test_errors_name_no_secret(protected: tuple[Path, bytes]) -> None:
    path, data = protected
    errors: list[BaseException] = []
    for key, bound in ((OTHER_KEY, "bound/f"), (KEY, "elsewhere")):
        with pytest.raises((WrongKeyError, PathMismatchError)) as info:
            ProtectedFile.open(HostFile(path), key, bound)
        errors.append(info.value)
    raw = bytearray(path.read_bytes())
    raw[data_physical(10) * 4096 + 5] ^= 1
    path.write_bytes(raw)
    with ProtectedFile.open(HostFile(path), KEY, "bound/f") as pf, pytest.raises(CorruptedNodeError) as info:
        pf.read(0, len(data))
    errors.append(info.value)
    assert_clean(walk(*errors), [KEY, OTHER_KEY, MARKER], at_least=3)


def test_keystore() -> None:
    store = KeyStore({"default": KEY, "other": OTHER_KEY})
    store.declare("late")
    assert_clean(walk(store), [KEY, OTHER_KEY])


def test_libos_encrypted_mount(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A booted LibOS with an encrypted mount, a file open with plaintext in its cache, the key
    store, /dev/attestation/keys open, and the log of a failed open: none shows a key or plaintext."""
    (tmp_path / "enc").mkdir()
    (tmp_path / "m.toml").write_text(f'''
fs.mounts = [
  {{ type = "encrypted", path = "/data", uri = "file:{tmp_path}/enc/", key_name = "default" }},
  {{ type = "tmpfs", path = "/tmp" }},
]
fs.insecure__keys.default = "{KEY.hex()}"
fs.insecure__keys.other = "{OTHER_KEY.hex()}"
''')
    lo = LibOS.boot(tmp_path / "m.toml")
    p = lo.process()
    content = _content(300_000)
    fd = p.open("/data/secret.txt", os.O_CREAT | os.O_RDWR, 0o600)
    p.write(fd, content)
    p.fsync(fd)  # the root MHT key is set at a flush
    p.write(fd, MARKER)  # and a change pending in the cache
    assert p.pread(fd, 1000, 200_000) == content[200_000:201_000]
    tmp_fd = p.open("/tmp/scratch", os.O_CREAT | os.O_RDWR, 0o600)
    p.write(tmp_fd, content[:10_000])
    key_fd = p.open("/dev/attestation/keys/default", os.O_RDONLY)
    assert p.read(key_fd, 16) == KEY
    # a file under another key: its open fails and is logged
    with HostFile(tmp_path / "enc" / "foreign", writable=True, create=True) as host, \
            ProtectedFile.create(BorrowedStorage(host), OTHER_KEY, "x") as pf:
        pf.write(0, MARKER * 10)
    with caplog.at_level(logging.DEBUG), pytest.raises(OSError):
        p.open("/data/foreign", os.O_RDONLY)
    inode = lo.vfs.mounts.at("/data").fs.lookup_host(str(tmp_path / "enc" / "secret.txt"))
    assert inode is not None and inode.pf is not None
    root_key = inode.pf.metadata.root_key
    assert root_key != bytes(16)
    secrets = [KEY, OTHER_KEY, MARKER, root_key]
    objects = walk(lo, p, lo.keys, lo.manifest)
    kinds = {type(o).__name__ for o in objects}
    assert {"KeyStore", "EncryptedFs", "ProtectedFile", "Metadata", "Manifest"} <= kinds, kinds
    assert_clean(objects, secrets, at_least=20)
    assert caplog.records, "the failed open was not logged"
    for record in caplog.records:
        for form in [f for s in secrets for f in secret_forms(s)]:
            assert form not in record.getMessage()
    for fd_ in (fd, tmp_fd, key_fd):
        p.close(fd_)
    lo.shutdown()


def test_signed_libos_platform_and_seal_keys(tmp_path: Path) -> None:
    """A LibOS booted as an enclave: its platform's root key and its seal keys show nowhere
    (objects, platform errors), while the keys are readable where Gramine shows them."""
    from sgx_helpers import sign

    from pal.sgx.platform import PlatformError, load_platform

    (tmp_path / "sealed").mkdir()
    data = {"libos": {"entrypoint": "/x"},
            "fs": {"mounts": [{"type": "encrypted", "path": "/sealed", "uri": f"file:{tmp_path}/sealed/",
                               "key_name": "_sgx_mrenclave"}]},
            "sgx": {"remote_attestation": "dcap", "enclave_size": "64M"}}
    platform = load_platform(tmp_path / "plat")
    lo = LibOS.boot(sign(data, tmp_path), platform=platform)
    p = lo.process()
    seal = [lo.keys.get("_sgx_mrenclave"), lo.keys.get("_sgx_mrsigner")]
    fd = p.open("/dev/attestation/keys/_sgx_mrenclave", os.O_RDONLY)
    assert p.read(fd, 16) == seal[0]
    quote_fd = p.open("/dev/attestation/quote", os.O_RDONLY)
    objects = walk(lo, p, lo.enclave, platform)
    assert {"Enclave", "Platform", "EnclaveIdentity", "AttestationState"} <= {type(o).__name__ for o in objects}
    assert_clean(objects, [platform.root_key, *seal], at_least=20)
    (tmp_path / "plat").chmod(0o644)
    with pytest.raises(PlatformError) as info:
        load_platform(tmp_path / "plat")
    assert_clean([info.value], [platform.root_key])
    for fd_ in (fd, quote_fd):
        p.close(fd_)
    lo.shutdown()
