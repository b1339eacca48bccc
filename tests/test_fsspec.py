"""The ``pfs`` fsspec file system (pfs/fsspec_fs.py): chained URLs through the entry point, keys
kept out of fsspec's cache, path binding, random reads, writes in Gramine's format (``pfs
decrypt`` and the spec reader in tests/helpers.py read them), file operations, bounded memory."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from helpers import decode, require

try:
    import fsspec
except ImportError:  # pragma: no cover
    fsspec = None
require(fsspec is not None, "fsspec is not installed (pip install -e '.[data]')")

from pfs.errors import KeyFormatError, PathMismatchError, WrongKeyError  # noqa: E402
from pfs.fsspec_fs import PfsFileSystem  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PFS = [sys.executable, "-m", "tools.pfs_cli"]


def run_pfs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PFS, *args], cwd=REPO, capture_output=True, text=True, check=True)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "wrap.key"
    run_pfs("gen-key", "-w", str(path))
    return path


@pytest.fixture(autouse=True)
def _fresh_instances():
    PfsFileSystem.clear_instance_cache()
    yield
    PfsFileSystem.clear_instance_cache()
    fsspec.filesystem("memory").store.clear()


def encrypt(key_file: Path, plain: Path, out: Path, *extra: str) -> None:
    run_pfs("encrypt", "-q", "-w", str(key_file), "-i", str(plain), "-o", str(out), *extra)


def memfs_put(path: str, data: bytes) -> None:
    fsspec.filesystem("memory").pipe_file(path, data)


def memfs_get(path: str) -> bytes:
    return fsspec.filesystem("memory").cat_file(path)


def test_importing_pfs_imports_no_data_stack():
    code = ("import sys, pfs, pfs.fsspec_storage, pfs.fsspec_keys; pfs.open; pfs.ProtectedFile; pfs.encrypt_stream\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fsspec', 'pandas', 'pyarrow', 'dask', 'distributed', 'numpy'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_chained_urls_through_the_entry_point(tmp_path: Path, key_file: Path):
    require(__import__("importlib").util.find_spec("pandas"), "pandas is not installed")
    (tmp_path / "plain").mkdir()
    (tmp_path / "enc").mkdir()
    (tmp_path / "plain" / "in.csv").write_text("a,b\n1,x\n2,y\n")
    encrypt(key_file, tmp_path / "plain" / "in.csv", tmp_path / "enc" / "in.csv", "--bind-prefix", "/data")
    url = f"pfs::file://{tmp_path}/enc/in.csv"
    code = f"""
import sys, fsspec
opts = {{"key_file": {str(key_file)!r}, "bind_prefix": "/data"}}
with fsspec.open({url!r}, "rt", pfs=opts) as f:
    text = f.read()
assert text == "a,b\\n1,x\\n2,y\\n", text
import pandas as pd
df = pd.read_csv({url!r}, storage_options={{"pfs": opts}})
assert df["b"].tolist() == ["x", "y"], df
fs = fsspec.filesystem("pfs", target_protocol="file", key_file=opts["key_file"], bind_prefix="/data",
                       root={str(tmp_path / "enc")!r})
assert fs.cat_file({str(tmp_path / "enc" / "in.csv")!r}) == text.encode()
print(type(fs).__module__)
"""
    # a fresh interpreter: fsspec finds the class through the entry point, with no import of ours
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pfs.fsspec_fs"


def test_key_sources_agree_and_bad_keys_are_clear(tmp_path: Path, key_file: Path, monkeypatch):
    plain = tmp_path / "p.bin"
    plain.write_bytes(os.urandom(10000))
    encrypt(key_file, plain, tmp_path / "e.bin")
    key = key_file.read_bytes()
    hex_file = tmp_path / "hex.key"
    hex_file.write_text(key.hex() + "\n")
    monkeypatch.setenv("PFS_TEST_KEY", key.hex())
    target = str(tmp_path / "e.bin")
    for opts in ({"key": key}, {"key_file": str(key_file)}, {"key_file": str(hex_file)},
                 {"key_env": "PFS_TEST_KEY"}):
        fs = PfsFileSystem(target_protocol="file", check_path=False, **opts)
        assert fs.cat_file(target) == plain.read_bytes()
    wrong = PfsFileSystem(target_protocol="file", key=os.urandom(16), check_path=False)
    with pytest.raises(WrongKeyError):
        wrong.cat_file(target)
    with pytest.raises(KeyFormatError, match="PFS_NOT_SET"):
        PfsFileSystem(target_protocol="file", key_env="PFS_NOT_SET")
    with pytest.raises(KeyFormatError, match="exactly one"):
        PfsFileSystem(target_protocol="file", key=key, key_file=str(key_file))
    monkeypatch.setenv("PFS_BAD_KEY", key.hex()[:-2] + "zz")
    with pytest.raises(KeyFormatError) as err:
        PfsFileSystem(target_protocol="file", key_env="PFS_BAD_KEY")
    assert key.hex()[:-2] not in str(err.value)


def _reachable_text(obj, seen: set[int], depth: int = 0):
    """Every str/bytes reachable from ``obj`` through containers and instance attributes
    (WrapKey's own slot excepted: it is where the key is kept, as bytes)."""
    from pfs.fsspec_keys import WrapKey

    if id(obj) in seen or depth > 12:
        return
    seen.add(id(obj))
    if isinstance(obj, str | bytes | bytearray):
        yield obj
    elif isinstance(obj, WrapKey):
        yield repr(obj)
        yield str(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _reachable_text(k, seen, depth + 1)
            yield from _reachable_text(v, seen, depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            yield from _reachable_text(v, seen, depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type) and type(obj).__module__ != "builtins":
        yield repr(obj)
        yield from _reachable_text(vars(obj), seen, depth + 1)


def test_key_not_reachable_as_text_from_the_instance_cache(tmp_path: Path, key_file: Path, monkeypatch):
    key = key_file.read_bytes()
    monkeypatch.setenv("PFS_TEST_KEY", key.hex())
    forms = [key.hex(), key.hex().upper(), repr(key), str(key)]
    fs1 = fsspec.filesystem("pfs", target_protocol="memory", key=key)
    fs2 = fsspec.filesystem("pfs", target_protocol="memory", key_env="PFS_TEST_KEY")
    fs3 = fsspec.filesystem("pfs", target_protocol="memory", key_file=str(key_file))
    with fs1.open("/x", "wb") as f:
        f.write(b"data")
    assert fsspec.filesystem("pfs", target_protocol="memory", key=key) is fs1  # still cached by its token
    assert fsspec.filesystem("pfs", target_protocol="memory", key=os.urandom(16)) is not fs1
    cache = PfsFileSystem._cache
    assert {id(fs1), id(fs2), id(fs3)} <= {id(v) for v in cache.values()}
    texts = list(_reachable_text(cache, set()))
    texts += [repr(fs) for fs in (fs1, fs2, fs3)] + [str(fs.storage_options) for fs in (fs1, fs2, fs3)]
    assert len(texts) > 10
    for text in texts:
        if isinstance(text, bytes | bytearray):
            assert key not in text
        else:
            assert not any(form in text for form in forms), text
    # and the instance still works after a pickle round trip (Dask ships file systems that way)
    import pickle

    assert pickle.loads(pickle.dumps(fs1)).cat_file("/x") == b"data"


def test_path_binding_as_the_command(tmp_path: Path, key_file: Path):
    (tmp_path / "plain" / "sub").mkdir(parents=True)
    (tmp_path / "plain" / "sub" / "t.txt").write_text("tree file")
    (tmp_path / "one.txt").write_text("single file")
    encrypt(key_file, tmp_path / "plain", tmp_path / "enc", "--bind-prefix", "/data")
    encrypt(key_file, tmp_path / "one.txt", tmp_path / "enc" / "one.txt", "--bind-prefix", "/data")
    tree_file = f"{tmp_path}/enc/sub/t.txt"
    opts = {"key_file": str(key_file), "bind_prefix": "/data"}
    # a single file's URL: PREFIX/<basename>, as pfs encrypt binds a single file
    with fsspec.open(f"pfs::file://{tmp_path}/enc/one.txt", "rt", pfs=opts) as f:
        assert f.read() == "single file"
    # a tree: PREFIX/<path under root>
    with fsspec.open(f"pfs::file://{tree_file}", "rt", pfs={**opts, "root": f"{tmp_path}/enc"}) as f:
        assert f.read() == "tree file"
    with pytest.raises(PathMismatchError) as err:  # root defaults to the URL's folder: /data/t.txt
        fsspec.open(f"pfs::file://{tree_file}", "rt", pfs=opts).open()
    assert "/data/sub/t.txt" in str(err.value) and "'/data/t.txt'" in str(err.value)
    host = PfsFileSystem(target_protocol="file", key_file=str(key_file))  # no prefix: the host path
    with pytest.raises(PathMismatchError) as err:
        host.cat_file(tree_file)
    assert "/data/sub/t.txt" in str(err.value) and tree_file in str(err.value)
    assert PfsFileSystem(target_protocol="file", key_file=str(key_file), check_path=False).cat_file(
        tree_file) == b"tree file"
    # files written through the file system carry the host path, which pfs decrypt checks
    with host.open(f"{tmp_path}/w.txt", "wb") as f:
        f.write(b"written")
    assert decode((tmp_path / "w.txt").read_bytes(), key_file.read_bytes()).path == f"{tmp_path}/w.txt".encode()


@pytest.mark.parametrize("target", ["file", "memory"])
def test_random_reads(tmp_path: Path, key_file: Path, target: str):
    data = random.Random(7).randbytes(3_500_000)  # several of the read-ahead's 1 MiB chunks
    (tmp_path / "p.bin").write_bytes(data)
    encrypt(key_file, tmp_path / "p.bin", tmp_path / "e.bin", "--bind-prefix", "/data")
    path = f"{tmp_path}/e.bin"
    if target == "memory":
        path = "/enc/e.bin"
        memfs_put(path, (tmp_path / "e.bin").read_bytes())
    fs = PfsFileSystem(target_protocol=target, key_file=str(key_file), bind_prefix="/data",
                       root=os.path.dirname(path))
    assert fs.size(path) == len(data)
    assert fs.info(path)["encrypted_size"] == (tmp_path / "e.bin").stat().st_size
    rng = random.Random(3)
    with fs.open(path, "rb") as f:
        assert f.size == len(data)
        for _ in range(200):
            lo = rng.randrange(len(data) + 10)
            n = rng.randrange(20000)
            f.seek(lo)
            assert f.read(n) == data[lo:lo + n]
        f.seek(-8, io.SEEK_END)
        assert f.read() == data[-8:]
    with fs.open(path, "rb") as f:  # sequential: decrypted ahead in a thread; then a seek back
        pieces = []
        while piece := f.read(100_003):
            pieces.append(piece)
        assert b"".join(pieces) == data
        f.seek(1_234_567)
        assert f.read(70_000) == data[1_234_567:1_304_567]
        for _ in range(5):
            pieces.append(f.read(300_000))
        assert b"".join(pieces[-5:]) == data[1_304_567:2_804_567]
        f.seek(10)
        assert f.read() == data[10:]
    for start, end in ((None, None), (-8, None), (100, 5000), (-20000, -8), (5000, 100), (None, 4096)):
        assert fs.cat_file(path, start, end) == data[start:end]
    assert fs.cat_ranges([path, path], [0, 3_490_000], [10, 3_500_000]) == [data[:10], data[3_490_000:]]


@pytest.mark.parametrize("target", ["file", "memory"])
def test_writes_are_pfs_encrypt_format(tmp_path: Path, key_file: Path, target: str):
    key = key_file.read_bytes()
    fs = PfsFileSystem(target_protocol=target, key_file=str(key_file), bind_prefix="/data", root="/w"
                       if target == "memory" else str(tmp_path))
    path = "/w/out.bin" if target == "memory" else f"{tmp_path}/out.bin"
    data = random.Random(1).randbytes(300_000)

    def raw() -> bytes:
        return memfs_get(path) if target == "memory" else Path(path).read_bytes()

    with fs.open(path, "wb") as f:  # create
        for i in range(0, len(data), 7000):
            f.write(data[i:i + 7000])
    got = decode(raw(), key)
    assert got.plaintext == data and got.path == b"/data/out.bin"
    (tmp_path / "c.bin").write_bytes(raw())
    run_pfs("decrypt", "-q", "-w", str(key_file), "--expect-path", "/data/out.bin", "-i", str(tmp_path / "c.bin"),
            "-o", str(tmp_path / "d.bin"))
    assert (tmp_path / "d.bin").read_bytes() == data
    with fs.open(path, "wb") as f:  # overwrite with less
        f.write(b"short")
    assert decode(raw(), key).plaintext == b"short"
    with fs.open(path, "ab") as f:  # append
        f.write(b" and more")
    assert fs.cat_file(path) == b"short and more"
    model = bytearray(b"short and more")
    if target == "file":  # true random writes in place
        rng = random.Random(5)
        with fs.open(path, "r+b") as f:
            for _ in range(50):
                off, chunk = rng.randrange(20000), rng.randbytes(rng.randrange(1, 9000))
                f.seek(off)
                f.write(chunk)
                if off > len(model):
                    model.extend(bytes(off - len(model)))
                model[off:off + len(chunk)] = chunk
        assert decode(raw(), key).plaintext == bytes(model)
    with pytest.raises(FileExistsError):
        fs.open(path, "xb")
    with pytest.raises(RuntimeError), fs.open(path, "wb") as f:  # an exception: nothing replaced
        f.write(b"half")
        raise RuntimeError("stop")
    assert decode(raw(), key).plaintext == bytes(model)
    if target == "file":
        assert sorted(os.listdir(tmp_path)) == ["c.bin", "d.bin", "out.bin", "wrap.key"]  # no temp left


@pytest.mark.parametrize("target", ["file", "memory"])
def test_file_operations_rebind_and_give_plaintext_sizes(tmp_path: Path, key_file: Path, target: str):
    key = key_file.read_bytes()
    base = "/ops" if target == "memory" else str(tmp_path / "ops")
    fs = PfsFileSystem(target_protocol=target, key_file=str(key_file), bind_prefix="/data", root=base)
    fs.mkdir(f"{base}/d")
    assert fs.exists(f"{base}/d") and fs.isdir(f"{base}/d")
    fs.pipe_file(f"{base}/d/a.txt", b"x" * 5000)
    fs.pipe_file(f"{base}/d/b.txt", b"")
    entries = {os.path.basename(e["name"]): e for e in fs.ls(f"{base}/d")}
    assert {k: (e["size"], e["type"]) for k, e in entries.items()} == {"a.txt": (5000, "file"), "b.txt": (0, "file")}
    assert entries["a.txt"]["encrypted_size"] == 3 * 4096  # metadata (3072 bytes of data), MHT, one data node
    assert fs.size(f"{base}/d/a.txt") == 5000 and fs.isfile(f"{base}/d/a.txt")
    assert sorted(fs.find(base)) == [f"{base}/d/a.txt", f"{base}/d/b.txt"]

    def raw(p: str) -> bytes:
        return memfs_get(p) if target == "memory" else Path(p).read_bytes()

    fs.mv(f"{base}/d/a.txt", f"{base}/e/moved.txt")  # rebinds the path
    assert not fs.exists(f"{base}/d/a.txt")
    assert decode(raw(f"{base}/e/moved.txt"), key).path == b"/data/e/moved.txt"
    assert fs.cat_file(f"{base}/e/moved.txt") == b"x" * 5000
    fs.cp_file(f"{base}/e/moved.txt", f"{base}/copy.txt")
    assert decode(raw(f"{base}/copy.txt"), key).path == b"/data/copy.txt"
    assert fs.cat_file(f"{base}/e/moved.txt") == fs.cat_file(f"{base}/copy.txt")
    fs.mv(f"{base}/e", f"{base}/f", recursive=True)
    assert fs.cat_file(f"{base}/f/moved.txt") == b"x" * 5000 and not fs.exists(f"{base}/e/moved.txt")
    fs.rm(f"{base}/copy.txt")
    assert not fs.exists(f"{base}/copy.txt")
    fs.rm(f"{base}/d", recursive=True)
    assert not fs.exists(f"{base}/d/b.txt")


def _fds_under(folder: Path) -> list[int]:
    """This process's descriptors open on files in ``folder`` (also unlinked ones)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith(str(folder) + "/"):
                found.append(int(name))
        except FileNotFoundError:  # the listing's own descriptor
            pass
    return found


def test_object_store_writes_spill_ciphertext_with_bounded_memory(tmp_path: Path, key_file: Path):
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    fs = PfsFileSystem(target_protocol="memory", key_file=str(key_file), spill_threshold=1 << 20,
                       spill_dir=str(spill_dir))
    chunk = random.Random(2).randbytes(1 << 16)
    total = 12 << 20
    tracemalloc.start()
    try:
        f = fs.open("/big/file.bin", "wb")
        for _ in range(total // len(chunk)):
            f.write(chunk)
        f.flush()
        _current, peak = tracemalloc.get_traced_memory()
        spilled = _fds_under(spill_dir)
        assert spilled, "the ciphertext was not spilled to a temporary file"
        fd = spilled[0]
        on_disk = os.pread(fd, total + (1 << 20), 0)
        assert len(on_disk) > total and chunk[:64] not in on_disk  # ciphertext only
        f.close()
    finally:
        tracemalloc.stop()
    assert peak < 6 << 20, f"peak {peak} bytes while writing {total}"
    assert os.listdir(spill_dir) == []
    assert decode(memfs_get("/big/file.bin"), key_file.read_bytes()).plaintext == chunk * (total // len(chunk))
