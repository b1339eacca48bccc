"""Real FUSE mounts: ``pfs mount`` and ``libos mount`` daemons run as separate processes, and
ordinary programs (cp, dd, sqlite3, tar, git, rsync, python with mmap) work through them.

Every test mounts below its own ``tmp_path``; the ``mounter`` fixture unmounts (``fusermount3 -u``,
lazily if busy) and kills the daemon at teardown, so no mount is left behind even on failure.
The whole module is skipped when /dev/fuse or fusermount3 is missing (under CI=true it fails).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuse_helpers import (
    FUSERMOUNT,
    LIBFUSE3,
    LIBFUSE_MAJOR,
    LIBOS,
    PFS,
    SLOW,
    Mounter,
    exercise,
    fuse_unavailable,
    fusermount_u,
    make_tree,
    mount_line,
    mounted,
    one_line_error,
    run,
    sha,
    tree_files,
)
from helpers import require

_why = fuse_unavailable()
require(_why is None, f"real FUSE mounts unavailable: {_why}")

HERE = Path(__file__).resolve().parent
LIBFUSE2 = next((p for p in ("/usr/lib/x86_64-linux-gnu/libfuse.so.2", "/usr/lib/aarch64-linux-gnu/libfuse.so.2",
                             "/usr/lib64/libfuse.so.2") if os.path.exists(p)), None)
ROUND_TRIP_SIZES = [0, 1, 3072, 3073, 4096 * 97, 5 * 1024 * 1024]


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "wrap.key"
    run([PFS, "gen-key", "-w", path], check=True)
    assert path.stat().st_size == 16
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    enc, mnt = tmp_path / "enc", tmp_path / "mnt"
    enc.mkdir()
    mnt.mkdir()
    return enc, mnt


def decrypt(key: Path, src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run([PFS, "decrypt", "-q", "-w", key, "-i", src, "-o", out, *extra])



def os_error(fn, *args) -> int:
    """The errno ``fn(*args)`` fails with (fails the test if it succeeds)."""
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    raise AssertionError(f"{fn.__name__}{args} succeeded")


# ---------------------------------------------------------------------- round trips


def test_round_trip_cp_and_dd(tmp_path: Path, key: Path, dirs, mounter: Mounter) -> None:
    """Files copied in with cp and dd come out identical through the mount and via pfs decrypt."""
    enc, mnt = dirs
    src = tmp_path / "src"
    src.mkdir()
    plain = {}
    for size in ROUND_TRIP_SIZES:
        data = os.urandom(size)
        (src / f"s{size}").write_bytes(data)
        plain[size] = data
    # background mode: `pfs mount` returns once the mount is up
    m = mounter.pfs(key, enc, mnt, "--rw", background=True)
    for size in ROUND_TRIP_SIZES:
        run(["cp", src / f"s{size}", mnt / f"cp{size}"], check=True)
        run(["dd", f"if={src / f's{size}'}", f"of={mnt / f'dd{size}'}", "bs=7000", "status=none"], check=True)
        run(["dd", f"if={src / f's{size}'}", f"of={mnt / f'dds{size}'}", "bs=65536", "conv=fsync",
             "status=none"], check=True)
    for size, data in plain.items():
        for name in (f"cp{size}", f"dd{size}", f"dds{size}"):
            assert os.stat(mnt / name).st_size == size, name
            assert (mnt / name).read_bytes() == data, name
            # the host file is ciphertext, a whole number of 4 KiB nodes
            host = (enc / name).read_bytes()
            assert len(host) % 4096 == 0 and len(host) >= 4096
            if size >= 64:
                assert data[:64] not in host
    pids = m.pids()
    proc = run([PFS, "umount", mnt])
    assert proc.returncode == 0, proc.stderr
    assert not mounted(mnt)
    m.wait_exit(pids)
    out = tmp_path / "out"
    out.mkdir()
    for size, data in plain.items():
        for name in (f"cp{size}", f"dd{size}", f"dds{size}"):
            proc = decrypt(key, enc / name, out / name, "--expect-path", str(enc / name))
            assert proc.returncode == 0, proc.stderr
            assert (out / name).read_bytes() == data, name
    # a fresh read-only mount (no page cache left) reads them too
    mounter.pfs(key, enc, mnt)
    for size, data in plain.items():
        assert sha((mnt / f"dd{size}").read_bytes()) == sha(data)


def test_round_trip_bind_prefix(tmp_path: Path, key: Path, dirs, mounter: Mounter) -> None:
    """`pfs encrypt --bind-prefix` trees mount with the same --bind-prefix; files written through
    the mount are bound to PREFIX/<path>."""
    enc, mnt = dirs
    src = tmp_path / "src"
    src.mkdir()
    tree = make_tree(src, 5, files=12)
    proc = run([PFS, "encrypt", "-q", "-w", key, "-i", src, "-o", enc / "t", "--bind-prefix", "/data/t"])
    assert proc.returncode == 0, proc.stderr
    m = mounter.pfs(key, enc, mnt, "--rw", "--bind-prefix", "/data")
    assert tree_files(mnt / "t") == tree
    (mnt / "t" / "new.txt").write_bytes(b"new\n" * 5000)
    m.unmount()
    proc = decrypt(key, enc / "t", tmp_path / "out", "--bind-prefix", "/data/t")
    assert proc.returncode == 0, proc.stderr
    assert tree_files(tmp_path / "out") == {**tree, "new.txt": b"new\n" * 5000}


@pytest.fixture(scope="module")
def vector_set(vectors_dir: Path) -> Path:
    return vectors_dir


@pytest.mark.parametrize("sub", ["enc", "enc_v1"])
def test_gramine_vectors_read(tmp_path: Path, vector_set: Path, mounter: Mounter, sub: str) -> None:
    """Gramine's reference files (bound to enc/NAME) read byte-exactly through a read-only mount."""
    require((vector_set / sub).is_dir(), f"no {sub}/ in the vectors")
    work = tmp_path / "set"
    shutil.copytree(vector_set / sub, work / sub)
    (work / "mnt").mkdir()
    m = mounter.pfs(vector_set / "wrap_key.bin", sub, "mnt", cwd=work)
    names = sorted(os.listdir(vector_set / sub))
    assert sorted(os.listdir(work / "mnt")) == names
    for name in names:
        want = (vector_set / "plain" / name).read_bytes()
        assert os.stat(work / "mnt" / name).st_size == len(want), name
        assert (work / "mnt" / name).read_bytes() == want, name
    assert "Traceback" not in m.log()
    # a read-only mount leaves the ciphertext untouched (v1 files are not migrated on disk)
    m.unmount()
    for name in names:
        assert (work / sub / name).read_bytes() == (vector_set / sub / name).read_bytes()


# ---------------------------------------------------------------------- real programs


@pytest.fixture
def rw_mount(key: Path, dirs, mounter: Mounter):
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw")
    return enc, mnt, m


@pytest.mark.require(shutil.which("sqlite3"), "sqlite3 CLI not installed")
def test_sqlite3(key: Path, rw_mount, mounter: Mounter) -> None:
    enc, mnt, m = rw_mount
    db = mnt / "app.db"
    script = ["CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, val REAL, blob BLOB);"]
    for batch in range(10):
        script.append("BEGIN;")
        script.append(
            f"WITH RECURSIVE c(i) AS (SELECT {batch * 1000 + 1} UNION ALL SELECT i + 1 FROM c "
            f"WHERE i < {(batch + 1) * 1000}) INSERT INTO t SELECT i, 'row-' || i, i * 0.5, randomblob(i % 300) "
            "FROM c;")
        script.append("COMMIT;")
    script.append("CREATE INDEX t_name ON t(name);")
    script.append("UPDATE t SET val = -val WHERE id % 7 = 0;")
    script.append("DELETE FROM t WHERE id % 1000 = 999;")
    proc = run(["sqlite3", db], input="\n".join(script) + "\n")
    assert proc.returncode == 0, proc.stderr
    query = ("SELECT count(*), sum(id), sum(val), sum(length(blob)) FROM t;\n"
             "SELECT name FROM t WHERE name = 'row-4242';\nPRAGMA integrity_check;\n")
    first = run(["sqlite3", db], input=query, check=True).stdout
    kept = [i for i in range(1, 10001) if i % 1000 != 999]
    assert first.splitlines()[0].split("|")[:2] == [str(len(kept)), str(sum(kept))]
    assert first.splitlines()[1:] == ["row-4242", "ok"]
    m.unmount()
    assert b"row-4242" not in (enc / "app.db").read_bytes()
    mounter.pfs(key, enc, mnt, "--rw")
    assert run(["sqlite3", db], input=query, check=True).stdout == first
    # Python's sqlite3 module on the same mount: WAL mode, more writes
    import sqlite3

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    with con:
        con.executemany("INSERT INTO t (id, name) VALUES (?, ?)", [(20000 + i, f"w{i}") for i in range(500)])
    assert con.execute("SELECT count(*) FROM t WHERE id >= 20000").fetchone()[0] == 500
    con.close()
    assert run(["sqlite3", db], input="PRAGMA integrity_check;\n", check=True).stdout.strip() == "ok"


def test_tar_extract_and_create(tmp_path: Path, rw_mount) -> None:
    mnt = rw_mount[1]
    src = tmp_path / "src"
    src.mkdir()
    tree = make_tree(src, 11, files=40)
    private = sorted(tree)[0]
    os.chmod(src / private, 0o600)
    run(["tar", "-cf", tmp_path / "in.tar", "-C", src, "."], check=True)
    (mnt / "x").mkdir()
    run(["tar", "-xf", tmp_path / "in.tar", "-C", mnt / "x"], check=True)
    assert tree_files(mnt / "x") == tree
    assert os.stat(mnt / "x" / private).st_mode & 0o777 == 0o600
    run(["tar", "-cf", tmp_path / "out.tar", "-C", mnt / "x", "."], check=True)
    back = tmp_path / "back"
    back.mkdir()
    run(["tar", "-xf", tmp_path / "out.tar", "-C", back], check=True)
    assert tree_files(back) == tree
    # tar straight into the mount (the archive itself lives on the mount)
    run(["tar", "-czf", mnt / "again.tgz", "-C", src, "."], check=True)
    back2 = tmp_path / "back2"
    back2.mkdir()
    run(["tar", "-xzf", mnt / "again.tgz", "-C", back2], check=True)
    assert tree_files(back2) == tree


def test_git_init_add_commit(tmp_path: Path, rw_mount) -> None:
    mnt = rw_mount[1]
    repo = mnt / "repo"
    git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]
    run([*git, "init", "-q", repo], check=True)
    tree = make_tree(repo, 21, files=25)
    run([*git, "-C", repo, "add", "-A"], check=True)
    run([*git, "-C", repo, "commit", "-q", "-m", "first"], check=True)
    first, second = sorted(k for k in tree if "/" not in k)[:2]
    (repo / first).write_bytes(b"changed\n")
    run([*git, "-C", repo, "mv", second, "moved.bin"], check=True)
    run([*git, "-C", repo, "commit", "-q", "-am", "second"], check=True)
    log = run([*git, "-C", repo, "log", "--format=%s"], check=True).stdout.split()
    assert log == ["second", "first"]
    fsck = run([*git, "-C", repo, "fsck", "--strict"])
    assert fsck.returncode == 0, fsck.stderr
    assert run([*git, "-C", repo, "status", "--porcelain"], check=True).stdout == ""
    run([*git, "gc", "-q"], cwd=repo, check=True)
    clone = tmp_path / "clone"
    run([*git, "clone", "-q", repo, clone], check=True)
    expected = dict(tree)
    expected[first] = b"changed\n"
    expected["moved.bin"] = expected.pop(second)
    got = {k: v for k, v in tree_files(clone).items() if not k.startswith(".git/")}
    assert got == expected


@pytest.mark.require(shutil.which("rsync"), "rsync not installed")
def test_rsync(tmp_path: Path, rw_mount) -> None:
    mnt = rw_mount[1]
    src = tmp_path / "src"
    src.mkdir()
    tree = make_tree(src, 31, files=40)
    run(["rsync", "-a", f"{src}/", f"{mnt / 'r'}/"], check=True)
    assert tree_files(mnt / "r") == tree
    assert {n: os.stat(mnt / "r" / n).st_size for n in tree} == {n: len(d) for n, d in tree.items()}
    # change some files, rsync with checksums and deletions
    changed, removed = sorted(tree)[:2]
    (src / changed).write_bytes(b"different")
    (src / removed).unlink()
    tree[changed] = b"different"
    del tree[removed]
    run(["rsync", "-a", "--delete", "-c", f"{src}/", f"{mnt / 'r'}/"], check=True)
    assert tree_files(mnt / "r") == tree
    out = tmp_path / "out"
    run(["rsync", "-a", f"{mnt / 'r'}/", f"{out}/"], check=True)
    assert tree_files(out) == tree


@pytest.mark.require(shutil.which("rsync"), "rsync not installed")
def test_rsync_second_run_transfers_nothing(tmp_path: Path, rw_mount) -> None:
    mnt = rw_mount[1]
    src = tmp_path / "src"
    src.mkdir()
    tree = make_tree(src, 32, files=10)
    for name in tree:
        os.utime(src / name, (1_000_000_000, 1_000_000_000))
    run(["rsync", "-a", f"{src}/", f"{mnt / 'r'}/"], check=True)
    again = run(["rsync", "-a", "--itemize-changes", f"{src}/", f"{mnt / 'r'}/"], check=True)
    assert again.stdout.strip() == ""


MMAP_SCRIPT = r"""
import mmap, os, sys
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(bytes(range(256)) * 64)                  # 16 KiB
fd = os.open(path, os.O_RDWR)
os.ftruncate(fd, 5 * 4096 + 100)                      # grow through the fd, then map it all
with mmap.mmap(fd, 5 * 4096 + 100) as m:
    m[3000:3200] = b"A" * 200                         # across the metadata/first data node boundary
    m[4096 * 4:4096 * 4 + 50] = b"B" * 50             # in the grown region
    m[-1:] = b"Z"
    m.flush()
os.close(fd)
with open(path, "rb") as f:
    data = f.read()
print(len(data), data[2999:3201].count(b"A"), data[4096 * 4:4096 * 4 + 51].count(b"B"), data[-1:].decode())
"""


def test_python_mmap_subprocess(tmp_path: Path, key: Path, rw_mount, mounter: Mounter) -> None:
    enc, mnt, m = rw_mount
    proc = run([sys.executable, "-c", MMAP_SCRIPT, mnt / "mapped.bin"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(5 * 4096 + 100), "200", "50", "Z"]
    want = bytearray(bytes(range(256)) * 64)
    want.extend(bytes(5 * 4096 + 100 - len(want)))
    want[3000:3200] = b"A" * 200
    want[4096 * 4:4096 * 4 + 50] = b"B" * 50
    want[-1:] = b"Z"
    m.unmount()
    proc = decrypt(key, enc / "mapped.bin", tmp_path / "mapped.out", "--expect-path", str(enc / "mapped.bin"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mapped.out").read_bytes() == want


# ---------------------------------------------------------------------- the exerciser


EXERCISE_SEEDS = [101, 202, 303] + ([404, 505, 606, 707] if SLOW else [])
EXERCISE_OPS = 3000 if SLOW else 800


def _decrypted_hashes(key: Path, enc: Path, out: Path) -> dict[str, str]:
    proc = decrypt(key, enc, out, "-V")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {name: sha(data) for name, data in tree_files(out).items()}


def test_exerciser_random_ops(tmp_path: Path, key: Path, rw_mount) -> None:
    """Random write/read/truncate/rename/fsync/mmap/append/unlink and held descriptors through
    the mount, every read checked against an in-memory model; then the final files again after
    unmount via pfs decrypt."""
    enc, mnt, m = rw_mount
    expected = {}
    for seed in EXERCISE_SEEDS:
        (mnt / f"s{seed}").mkdir()
        for name, digest in exercise(str(mnt / f"s{seed}"), seed, EXERCISE_OPS).items():
            expected[f"s{seed}/{name}"] = digest
    assert "Traceback" not in m.log()
    m.unmount()
    assert _decrypted_hashes(key, enc, tmp_path / "out") == expected


def test_exerciser_two_processes(tmp_path: Path, key: Path, rw_mount, mounter: Mounter) -> None:
    """Two exerciser processes at once, each on its own files in the same folder."""
    enc, mnt, m = rw_mount
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    procs = [subprocess.Popen([sys.executable, HERE / "fuse_helpers.py", "exercise", mnt, str(seed),
                               str(EXERCISE_OPS), f"p{i}_"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
             for i, seed in enumerate([7, 8])]
    expected = {}
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        expected.update(json.loads(out))
    # through the mount
    assert {n: sha((mnt / n).read_bytes()) for n in os.listdir(mnt)} == expected
    m.unmount()
    assert _decrypted_hashes(key, enc, tmp_path / "out") == expected
    # and through a fresh mount
    mounter.pfs(key, enc, mnt)
    assert {n: sha((mnt / n).read_bytes()) for n in os.listdir(mnt)} == expected


# ---------------------------------------------------------------------- POSIX details


def test_rename_over_existing_file(rw_mount) -> None:
    enc, mnt, _ = rw_mount
    (mnt / "a").write_bytes(b"A" * 10000)
    (mnt / "b").write_bytes(b"B" * 5000)
    os.rename(mnt / "a", mnt / "b")
    assert sorted(os.listdir(mnt)) == ["b"]
    assert (mnt / "b").read_bytes() == b"A" * 10000
    assert os.stat(mnt / "b").st_size == 10000
    # the replaced file, held open, lives on through its descriptor
    (mnt / "c").write_bytes(b"C" * 7000)
    fd = os.open(mnt / "b", os.O_RDONLY)
    try:
        os.rename(mnt / "c", mnt / "b")
        assert (mnt / "b").read_bytes() == b"C" * 7000
        assert os.pread(fd, 20000, 0) == b"A" * 10000
    finally:
        os.close(fd)
    assert (mnt / "b").read_bytes() == b"C" * 7000
    assert sorted(os.listdir(enc)) == ["b"]


@pytest.mark.parametrize("how", ["unlink", "rename_over"])
def test_open_replaced_file_leaves_no_hidden_entry(rw_mount, how: str) -> None:
    enc, mnt, _ = rw_mount
    (mnt / "a").write_bytes(b"A" * 100)
    (mnt / "b").write_bytes(b"B" * 100)
    fd = os.open(mnt / "b", os.O_RDONLY)
    try:
        if how == "unlink":
            os.unlink(mnt / "b")
        else:
            os.rename(mnt / "a", mnt / "b")
        assert os.pread(fd, 200, 0) == b"B" * 100
        assert os.fstat(fd).st_size == 100
        left = {"a"} if how == "unlink" else {"b"}
        assert set(os.listdir(mnt)) == left
        assert set(os.listdir(enc)) == left
        if how == "rename_over":
            assert os.stat(mnt / "b").st_size == 100 and (mnt / "b").read_bytes() == b"A" * 100
        else:
            assert os_error(os.stat, mnt / "b") == errno.ENOENT
    finally:
        os.close(fd)
    assert set(os.listdir(enc)) == left


def test_unlinked_open_file_takes_fchmod_ftruncate_futimens(rw_mount) -> None:
    enc, mnt, _ = rw_mount
    (mnt / "f").write_bytes(b"x" * 9000)
    fd = os.open(mnt / "f", os.O_RDWR)
    try:
        os.unlink(mnt / "f")
        os.fchmod(fd, 0o600)
        assert os.fstat(fd).st_mode & 0o777 == 0o600
        os.ftruncate(fd, 100)
        assert os.fstat(fd).st_size == 100
        assert os.pread(fd, 9000, 0) == b"x" * 100
        os.utime(fd, ns=(10**18, 10**18))
        assert os.fstat(fd).st_mtime_ns == 10**18
        os.pwrite(fd, b"tail", 100)
        os.fsync(fd)
        assert os.fstat(fd).st_size == 104
        assert os.listdir(mnt) == [] and os.listdir(enc) == []
    finally:
        os.close(fd)
    assert os.listdir(mnt) == [] and os.listdir(enc) == []


def test_user_file_named_like_a_hidden_one_is_a_normal_file(rw_mount) -> None:
    """Only libfuse's own renames to a free hidden name of an open file are taken as removals."""
    enc, mnt, _ = rw_mount
    name = ".fuse_hidden0000000a00000001"
    (mnt / name).write_bytes(b"mine")
    assert (mnt / name).read_bytes() == b"mine"
    (mnt / "b").write_bytes(b"b")
    os.rename(mnt / "b", mnt / name)  # over an existing name: a plain rename
    assert (mnt / name).read_bytes() == b"b"
    assert sorted(os.listdir(mnt)) == [name]
    os.unlink(mnt / name)
    assert os.listdir(mnt) == [] and os.listdir(enc) == []


def test_kill9_with_unlinked_open_file_leaves_nothing_behind(key: Path, dirs, mounter: Mounter) -> None:
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw")
    (mnt / "keep").write_bytes(b"k" * 5000)
    (mnt / "tmp").write_bytes(b"t" * 5000)
    fd = os.open(mnt / "tmp", os.O_RDWR)
    try:
        os.unlink(mnt / "tmp")
        assert os.fstat(fd).st_size == 5000
        m.kill9()
    finally:
        with contextlib.suppress(OSError):  # ENOTCONN once the daemon is gone
            os.close(fd)
    fusermount_u(mnt, lazy=True)
    assert sorted(os.listdir(enc)) == ["keep"]


def test_inode_numbers_are_stable(rw_mount) -> None:
    """``use_ino``: st_ino through the mount is the host file's, so it survives a rename."""
    enc, mnt, _ = rw_mount
    (mnt / "a").write_bytes(b"x")
    before = os.stat(mnt / "a").st_ino
    os.rename(mnt / "a", mnt / "b")
    assert os.stat(mnt / "b").st_ino == before
    assert before == os.stat(enc / "b").st_ino


def test_unlink_open_file(rw_mount) -> None:
    enc, mnt, _ = rw_mount
    data = os.urandom(50000)
    (mnt / "gone").write_bytes(data)
    fd = os.open(mnt / "gone", os.O_RDWR)
    try:
        os.unlink(mnt / "gone")
        assert "gone" not in os.listdir(mnt)
        assert os_error(os.stat, mnt / "gone") == errno.ENOENT
        assert os.pread(fd, 60000, 0) == data
        os.pwrite(fd, b"more", 50000)
        assert os.fstat(fd).st_size == 50004
        assert os.pread(fd, 10, 49998) == data[-2:] + b"more"
        # a new file with the same name is a different file
        (mnt / "gone").write_bytes(b"new")
        assert os.pread(fd, 4, 0) == data[:4]
    finally:
        os.close(fd)
    assert (mnt / "gone").read_bytes() == b"new"
    assert os.listdir(enc) == ["gone"]


APPEND_SCRIPT = r"""
import os, sys
path, tag, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(n):
    rec = tag + b"%05d" % i + b"." * 57 + b"\n"   # 64-byte records
    assert os.write(fd, rec) == 64
os.close(fd)
"""


def test_append_from_two_processes(rw_mount) -> None:
    mnt = rw_mount[1]
    path = mnt / "log"
    n = 1500
    procs = [subprocess.Popen([sys.executable, "-c", APPEND_SCRIPT, path, tag, str(n)], stderr=subprocess.PIPE)
             for tag in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    data = path.read_bytes()
    assert len(data) == 2 * n * 64
    records = [data[i:i + 64] for i in range(0, len(data), 64)]
    for tag in (b"a", b"b"):
        mine = [r for r in records if r.startswith(tag)]
        assert mine == [tag + b"%05d" % i + b"." * 57 + b"\n" for i in range(n)]


def test_stat_size_and_mtime(rw_mount) -> None:
    enc, mnt, _ = rw_mount
    path = mnt / "f"
    path.write_bytes(b"x" * 5000)
    s1 = os.stat(path)
    assert s1.st_size == 5000
    assert os.stat(enc / "f").st_size == 3 * 4096  # metadata + MHT + 1 data node on the host
    time.sleep(1.1)
    with open(path, "r+b") as f:
        f.seek(7000)
        f.write(b"y")
    s2 = os.stat(path)
    assert s2.st_size == 7001
    assert s2.st_mtime_ns > s1.st_mtime_ns
    os.truncate(path, 10)
    assert os.stat(path).st_size == 10
    with open(path, "ab") as f:
        f.write(b"z" * 3)
        f.flush()
        assert os.fstat(f.fileno()).st_size == 13
    assert os.stat(path).st_size == 13
    # a directory listing stats the same sizes
    with os.scandir(mnt) as it:
        assert {e.name: e.stat().st_size for e in it} == {"f": 13}


TIMES = 1_000_000_000_123_456_789


def test_rename_keeps_mtime(rw_mount) -> None:
    enc, mnt, _ = rw_mount
    (mnt / "a").write_bytes(b"data")
    os.utime(mnt / "a", ns=(TIMES, TIMES))
    time.sleep(0.05)
    os.rename(mnt / "a", mnt / "b")
    assert os.stat(enc / "b").st_mtime_ns == TIMES  # the host file, past any kernel attribute cache
    time.sleep(1.1)
    assert os.stat(mnt / "b").st_mtime_ns == TIMES


@pytest.mark.parametrize("how", ["futimens", "cp_p", "tar"])
def test_times_set_before_close_survive(tmp_path: Path, key: Path, rw_mount, mounter: Mounter, how: str) -> None:
    enc, mnt, m = rw_mount
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(20000))
    os.utime(src, ns=(TIMES, TIMES))
    if how == "futimens":
        fd = os.open(mnt / "src.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, src.read_bytes())
        os.utime(fd, ns=(TIMES, TIMES))
        os.close(fd)
    elif how == "cp_p":
        run(["cp", "-p", src, mnt / "src.bin"], check=True)
    else:
        # pax keeps the nanoseconds (tar's default format stores whole seconds only)
        run(["tar", "--format=posix", "-cf", tmp_path / "t.tar", "-C", tmp_path, "src.bin"], check=True)
        run(["tar", "-xf", tmp_path / "t.tar", "-C", mnt], check=True)
    m.unmount()  # past every cache: what the host file says
    mounter.pfs(key, enc, mnt)
    assert os.stat(mnt / "src.bin").st_mtime_ns == TIMES


def test_links_refused_with_eperm(rw_mount) -> None:
    enc, mnt, _ = rw_mount
    (mnt / "a").write_bytes(b"a")
    assert os_error(os.link, mnt / "a", mnt / "hard") == errno.EPERM
    assert os_error(os.symlink, "a", mnt / "soft") == errno.EPERM
    assert os_error(os.mkfifo, mnt / "fifo") == errno.EPERM
    assert sorted(os.listdir(mnt)) == ["a"]
    assert sorted(os.listdir(enc)) == ["a"]


def test_read_only_mount_refuses_writes(tmp_path: Path, key: Path, dirs, mounter: Mounter) -> None:
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw")
    (mnt / "f").write_bytes(b"data")
    (mnt / "d").mkdir()
    m.unmount()
    before = {p.name: p.read_bytes() for p in enc.iterdir() if p.is_file()}
    mounter.pfs(key, enc, mnt)  # read-only is the default
    assert "ro" in mount_line(mnt).split()[3].split(",")
    assert (mnt / "f").read_bytes() == b"data"
    assert os_error(os.open, mnt / "f", os.O_WRONLY) == errno.EROFS
    assert os_error(os.open, mnt / "f", os.O_RDWR) == errno.EROFS
    assert os_error(os.open, mnt / "new", os.O_WRONLY | os.O_CREAT) == errno.EROFS
    assert os_error(os.truncate, mnt / "f", 0) == errno.EROFS
    assert os_error(os.unlink, mnt / "f") == errno.EROFS
    assert os_error(os.mkdir, mnt / "e") == errno.EROFS
    assert os_error(os.rmdir, mnt / "d") == errno.EROFS
    assert os_error(os.rename, mnt / "f", mnt / "g") == errno.EROFS
    assert os_error(os.chmod, mnt / "f", 0o600) == errno.EROFS
    assert os_error(os.utime, mnt / "f", (0, 0)) == errno.EROFS
    assert {p.name: p.read_bytes() for p in enc.iterdir() if p.is_file()} == before


def test_wrong_key_refuses_to_mount(tmp_path: Path, key: Path, dirs, mounter: Mounter) -> None:
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw")
    (mnt / "f").write_bytes(b"secret")
    m.unmount()
    other = tmp_path / "other.key"
    run([PFS, "gen-key", "-w", other], check=True)
    for fg in ([], ["-f"]):
        proc = run([PFS, "mount", "-w", other, enc, mnt, *fg], timeout=30)
        line = one_line_error(proc, "wrong key")
        assert line.startswith("pfs: error:")
        assert not mounted(mnt)


def test_mountpoint_errors(tmp_path: Path, key: Path, dirs, mounter: Mounter) -> None:
    enc, mnt = dirs
    missing = tmp_path / "missing"
    one_line_error(run([PFS, "mount", "-w", key, enc, missing]), "does not exist", str(missing))
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    one_line_error(run([PFS, "mount", "-w", key, enc, full]), "not empty")
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(run([PFS, "mount", "-w", key, enc, afile]), "not a folder")
    one_line_error(run([PFS, "mount", "-w", key, tmp_path / "noenc", mnt]), "noenc")
    mounter.pfs(key, enc, mnt, "--rw")
    one_line_error(run([PFS, "mount", "-w", key, enc, mnt]), "already a mount point")
    # umount errors too
    one_line_error(run([PFS, "umount", full]), "not mounted")
    assert mounted(mnt)


def test_umount_of_busy_mount_is_refused(rw_mount) -> None:
    _, mnt, m = rw_mount
    with open(mnt / "busy", "wb") as f:
        f.write(b"x")
        one_line_error(run([PFS, "umount", mnt]), "can't unmount")
        assert mounted(mnt)
    proc = run([PFS, "umount", mnt])
    assert proc.returncode == 0, proc.stderr
    m.wait_exit()


def test_daemons_run_on_libfuse3() -> None:
    """load_mfusepy picks libfuse3 even where libfuse2 is installed beside it (mfusepy's first choice)."""
    assert LIBFUSE_MAJOR == 3


@pytest.mark.require(LIBFUSE2, "libfuse2 not installed")
def test_libfuse2_is_refused_with_a_clear_error() -> None:
    code = "from vfs.fuse import load_mfusepy; load_mfusepy()"
    proc = run([sys.executable, "-c", code], env={**os.environ, "FUSE_LIBRARY_PATH": LIBFUSE2})
    assert proc.returncode == 1
    assert "OSError: [Errno 38] libfuse 2 was loaded" in proc.stderr and "needs libfuse3" in proc.stderr


@pytest.mark.parametrize("env", [{}, {"FUSE_LIBRARY_NAME": "fuse3"}], ids=["default", "FUSE_LIBRARY_NAME"])
def test_libfuse3_is_loaded_with_ctypes_util_only_when_needed(env: dict[str, str]) -> None:
    """mfusepy gets libfuse3 by its soname, ctypes.util (subprocess, tempfile) left unloaded; a
    library named by FUSE_LIBRARY_NAME is still found (ctypes.util's find_library, loaded then)
    and ctypes.util is the real module afterwards."""
    code = ("import sys; from vfs.fuse import load_mfusepy; m = load_mfusepy()\n"
            "loaded = 'ctypes.util' in sys.modules\n"
            "import ctypes.util; assert ctypes.util.find_library('c')\n"
            "print(m.fuse_version_major, loaded, 'subprocess' in sys.modules)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FUSE_LIBRARY")}
    proc = run([sys.executable, "-c", code], env={**clean, **env})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == (["3", "True", "True"] if env else ["3", "False", "True"])


@pytest.mark.require(LIBFUSE3, "libfuse3 not installed")
def test_libfuse3_mount_basics(tmp_path: Path, key: Path, dirs, mounter: Mounter) -> None:
    enc, mnt = dirs
    env = {**os.environ, "FUSE_LIBRARY_PATH": str(LIBFUSE3)}
    m = mounter.pfs(key, enc, mnt, "--rw", env=env)
    (mnt / "d").mkdir()
    (mnt / "d" / "f").write_bytes(b"x" * 5000)
    fd = os.open(mnt / "d" / "f", os.O_RDONLY)
    os.unlink(mnt / "d" / "f")
    try:
        assert os.listdir(mnt / "d") == []
        assert os.listdir(enc / "d") == []  # no .fuse_hidden file
        assert os.fstat(fd).st_size == 5000
        assert os.pread(fd, 10000, 0) == b"x" * 5000
    finally:
        os.close(fd)
    assert os.listdir(mnt) == ["d"]
    assert "Traceback" not in m.log()


# ---------------------------------------------------------------------- tampering


def test_tampered_file_gives_eio_for_that_file_only(tmp_path: Path, key: Path, dirs, mounter: Mounter) -> None:
    enc, mnt = dirs
    good = os.urandom(100_000)
    bad = os.urandom(100_000)
    m = mounter.pfs(key, enc, mnt, "--rw")
    (mnt / "good.bin").write_bytes(good)
    (mnt / "bad.bin").write_bytes(bad)
    m.unmount()
    # node 0 metadata, node 1 the root MHT node, node 2 the first data node (plaintext 3072..7167)
    raw = bytearray((enc / "bad.bin").read_bytes())
    raw[2 * 4096 + 100] ^= 0x01
    (enc / "bad.bin").write_bytes(raw)
    m = mounter.pfs(key, enc, mnt)
    assert (mnt / "good.bin").read_bytes() == good
    assert os.stat(mnt / "bad.bin").st_size == 100_000  # metadata is intact
    fd = os.open(mnt / "bad.bin", os.O_RDONLY)
    try:
        # the kernel reads ahead from 0, so a read of the first page asks for the bad node too
        assert os_error(os.pread, fd, 4096, 4096) == errno.EIO
        assert os.pread(fd, 4096, 65536) == bad[65536:65536 + 4096]  # nodes past it still read
    finally:
        os.close(fd)
    assert os_error((mnt / "bad.bin").read_bytes) == errno.EIO
    assert (mnt / "good.bin").read_bytes() == good
    time.sleep(0.2)
    log = m.log()
    assert "Traceback" not in log
    assert "good.bin" not in log
    lines = [line for line in log.splitlines() if "bad.bin" in line]
    assert lines, f"no log line names the file:\n{log}"
    # one line per failed request (the kernel retries a failed read-ahead page by page), all the
    # same: the file and the node
    assert len(set(lines)) == 1, log
    assert str(enc / "bad.bin") in lines[0] and "node 2" in lines[0], lines[0]


def test_tampered_file_in_background_mode_keeps_daemon_alive(tmp_path: Path, key: Path, dirs,
                                                             mounter: Mounter) -> None:
    """The background daemon's stderr is a pipe its parent closed: logging the failure must not kill it."""
    enc, mnt = dirs
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"a" * 50_000)
    (src / "b.bin").write_bytes(b"b" * 50_000)
    run([PFS, "encrypt", "-q", "-w", key, "-i", src, "-o", enc, "--force"], check=True)
    raw = bytearray((enc / "b.bin").read_bytes())
    raw[3 * 4096 + 7] ^= 0x80
    (enc / "b.bin").write_bytes(raw)
    m = mounter.pfs(key, enc, mnt, background=True)
    for _ in range(3):
        assert os_error((mnt / "b.bin").read_bytes) == errno.EIO
    assert m.alive()
    assert (mnt / "a.bin").read_bytes() == b"a" * 50_000


# ---------------------------------------------------------------------- crash


BIG_WRITER = r"""
import os, random, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
chunk = random.Random(1).randbytes(1 << 20)
print("started", flush=True)
try:
    for i in range(400):
        os.write(fd, chunk)
        if i % 8 == 7:
            os.fsync(fd)
except OSError as exc:
    print("error", exc.errno, flush=True)
"""


@pytest.mark.parametrize("recovery", [False, True], ids=["plain", "recovery"])
def test_kill_9_mid_write_keeps_synced_files(tmp_path: Path, key: Path, dirs, mounter: Mounter,
                                             recovery: bool) -> None:
    enc, mnt = dirs
    opts = ["--recovery"] if recovery else []
    m = mounter.pfs(key, enc, mnt, "--rw", *opts)
    synced = {}
    for i, size in enumerate([0, 1, 3073, 100_000, 2_000_000]):
        data = os.urandom(size)
        fd = os.open(mnt / f"a{i}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        synced[f"a{i}"] = data
    (mnt / "sub").mkdir()
    with open(mnt / "sub" / "s", "wb") as f:
        f.write(b"in a folder" * 1000)
        f.flush()
        os.fsync(f.fileno())
    synced["sub/s"] = b"in a folder" * 1000
    writer = subprocess.Popen([sys.executable, "-c", BIG_WRITER, mnt / "zz_big"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while (not (enc / "zz_big").exists() or (enc / "zz_big").stat().st_size < 4 << 20) and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.poll() is None, "the writer finished before the daemon could be killed"
        m.kill9()
    finally:
        try:
            writer.wait(30)
        except subprocess.TimeoutExpired:
            writer.kill()
            writer.wait(10)
    assert mounted(mnt)  # a dead mount stays in the table until unmounted
    assert os_error(os.stat, mnt / "a1") == errno.ENOTCONN
    proc = fusermount_u(mnt, lazy=True)
    assert proc.returncode == 0, proc.stderr
    assert not mounted(mnt)
    files = [enc / name for name in synced]
    proc = run([PFS, "verify", "-q", "-w", key, "-V", *files])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "out"
    for name, data in synced.items():
        proc = decrypt(key, enc / name, out / name, "--expect-path", str(enc / name))
        assert proc.returncode == 0, proc.stderr
        assert (out / name).read_bytes() == data, name
    # the mount comes back (without the journal the half-written file may be damaged; the others read)
    m = mounter.pfs(key, enc, mnt, *opts)
    for name, data in synced.items():
        assert (mnt / name).read_bytes() == data
    if recovery:
        # Gramine's journal rolls the interrupted flush back: the big file opens and reads in full
        # (its content after the crash is not checked: it was never fsynced past the first 8 MiB)
        m.unmount()
        m = mounter.pfs(key, enc, mnt, "--rw", *opts)
        big = (mnt / "zz_big").read_bytes()
        assert len(big) == os.stat(mnt / "zz_big").st_size
        os.close(os.open(mnt / "zz_big", os.O_RDWR))  # a writable open applies the rollback on disk
        m.unmount()
        assert not list(enc.glob("*.gramine.recovery"))
        proc = run([PFS, "verify", "-q", "-w", key, "-V", enc])
        assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------- libos mount


@pytest.fixture
def libos_view(tmp_path: Path, key: Path, mounter: Mounter):
    """``libos mount`` of a manifest with a chroot mount, a tmpfs and an encrypted mount."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print('hello')\n")
    (tmp_path / "enc").mkdir()
    (tmp_path / "mnt").mkdir()
    (tmp_path / "m.toml").write_text(f'''
libos.entrypoint = "/app/main.py"
loader.argv = ["python3", "/app/main.py"]
fs.mounts = [
  {{ type = "chroot", path = "/app", uri = "file:app/" }},
  {{ type = "tmpfs", path = "/scratch" }},
  {{ type = "encrypted", path = "/data", uri = "file:enc/", key_name = "default" }},
]
fs.insecure__keys.default = "{key.read_bytes().hex()}"
''')
    m = mounter.foreground([LIBOS, "mount", "m.toml", "mnt"], "mnt", cwd=tmp_path)
    return tmp_path / "mnt", m


def test_libos_mount_manifest_view(tmp_path: Path, key: Path, libos_view) -> None:
    view, m = libos_view
    app = tmp_path / "app"
    assert {"app", "scratch", "data", "proc", "dev"} <= set(os.listdir(view))
    assert (view / "app" / "main.py").read_text() == "print('hello')\n"
    (view / "app" / "out.txt").write_text("through chroot\n")
    assert (app / "out.txt").read_text() == "through chroot\n"
    (view / "scratch" / "tmp.bin").write_bytes(b"t" * 10000)
    assert (view / "scratch" / "tmp.bin").read_bytes() == b"t" * 10000
    secret = b"secret result\n" * 1000
    (view / "data" / "out").mkdir()
    (view / "data" / "out" / "result.txt").write_bytes(secret)
    assert (view / "data" / "out" / "result.txt").read_bytes() == secret
    assert os.stat(view / "data" / "out" / "result.txt").st_size == len(secret)
    assert {"self", "mounts"} <= set(os.listdir(view / "proc"))
    assert {"cmdline", "mounts", "status"} <= set(os.listdir(view / "proc" / "self"))
    assert os.readlink(view / "proc" / "self" / "exe") == "/app/main.py"
    assert "libos" in mount_line(view).split()[2]
    m.unmount()
    assert not list(tmp_path.rglob("tmp.bin"))  # the tmpfs lived in the daemon only
    host = tmp_path / "enc" / "out" / "result.txt"
    assert b"secret result" not in host.read_bytes()
    proc = decrypt(key, host, tmp_path / "result.txt", "--expect-path", "enc/out/result.txt")  # the URI as written
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "result.txt").read_bytes() == secret


def test_libos_mount_removed_files_leave_nothing(tmp_path: Path, libos_view) -> None:
    """Files created, written, closed and removed at once (as sqlite does with its journals) are
    gone from the folder and the host, though the mount is multithreaded and libfuse still counts
    a file open while its RELEASE is served: libfuse hides it, and the bridge must take that
    rename to ``.fuse_hidden...`` for the unlink it is (it took it for a user's rename)."""
    view, m = libos_view
    data = view / "data"
    for n in range(200):
        journal = data / "db-journal"
        fd = os.open(journal, os.O_CREAT | os.O_RDWR, 0o644)
        os.write(fd, b"j" * (512 + n))
        os.close(fd)
        os.unlink(journal)
        assert os.listdir(data) == [], n
    assert os.listdir(tmp_path / "enc") == []
    # a user's rename to a name of libfuse's form stays a rename, of a file just closed or still open
    hidden = [".fuse_hidden0123456789abcdef", ".fuse_hiddenfedcba9876543210"]
    (data / "closed").write_bytes(b"closed")
    fd = os.open(data / "open", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"open")
        os.rename(data / "closed", data / hidden[0])
        run(["mv", data / "open", data / hidden[1]], check=True)
        assert os.fstat(fd).st_nlink == 1
    finally:
        os.close(fd)
    assert [(data / name).read_bytes() for name in hidden] == [b"closed", b"open"]
    assert sorted(os.listdir(data)) == sorted(os.listdir(tmp_path / "enc")) == hidden
    m.unmount()
    assert sorted(os.listdir(tmp_path / "enc")) == hidden


def test_libos_mount_host_file_changed_on_the_host_reads_new_content(tmp_path: Path, libos_view) -> None:
    # the same size, changed at once: only the change of mtime tells (libfuse's auto_cache, used
    # before, trusted its stat of the last second and kept the stale pages)
    view, _ = libos_view
    host = tmp_path / "app" / "main.py"
    for _ in range(3):  # opened again unchanged: its data kept
        assert (view / "app" / "main.py").read_text() == "print('hello')\n"
    host.write_text("print('HELLO')\n")
    assert (view / "app" / "main.py").read_text() == "print('HELLO')\n"
    assert (view / "app" / "main.py").read_text() == "print('HELLO')\n"  # kept now: unchanged


def test_bridge_keeps_cached_data_of_host_files_only_while_unchanged(tmp_path: Path) -> None:
    from vfs.chroot import ChrootFs
    from vfs.fuse import FuseBridge
    from vfs.tmpfs import TmpFs
    from vfs.vfs import VFS

    (tmp_path / "h").write_text("host")
    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    vfs.mkdir(vfs.context(), "/host")
    vfs.mounts.mount("/host", ChrootFs(str(tmp_path)))
    bridge = FuseBridge(vfs)

    def kept(path: str) -> bool:
        fh = bridge.open(path, os.O_RDONLY)
        try:
            return bridge.keep_cache_at_open(fh, path)
        finally:
            bridge.release(path, fh)

    bridge.release("/t", bridge.create("/t", 0o644, os.O_WRONLY))
    assert kept("/t") and kept("/t")  # only the daemon changes a tmpfs file
    assert [kept("/host/h"), kept("/host/h")] == [False, True]
    st = os.stat(tmp_path / "h")
    (tmp_path / "h").write_text("HOST")
    os.utime(tmp_path / "h", ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime: the ctime moved
    assert [kept("/host/h"), kept("/host/h")] == [False, True]


def test_libos_mount_proc_contents(libos_view) -> None:
    view, _ = libos_view
    mounts = (view / "proc" / "self" / "mounts").read_text()
    for path in ("/app", "/scratch", "/data"):
        assert f" {path} " in mounts, mounts
    assert (view / "proc" / "self" / "cmdline").read_bytes() == b"python3\0/app/main.py\0"


def test_no_mount_left_behind(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every earlier test of this session cleaned up: nothing of ours is still mounted below the
    session's temporary folder (mounts of other sessions or programs are theirs)."""
    assert FUSERMOUNT
    base = str(tmp_path_factory.getbasetemp()) + "/"
    with open("/proc/self/mounts") as f:
        ours = [line for line in f if line.split()[2] in ("fuse.pfs", "fuse.libos")]
    assert not [line for line in ours if line.split()[1].startswith(base)], ours


# ---------------------------------------------------------------------- read-ahead


def test_fuse_device_reads_only_fuse_mounts(tmp_path: Path) -> None:
    from vfs.fuse import fuse_device

    info = tmp_path / "mountinfo"
    odd = tmp_path / "a b\\c"
    info.write_text(
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        f"40 22 0:51 / {tmp_path}/m rw,nosuid - fuse.pfs /enc rw,user_id=0\n"
        f"41 22 0:52 / {str(odd).replace(' ', chr(92) + '040').replace(chr(92) + 'c', chr(92) + '134c')}"
        " rw shared:5 master:2 - fuse /enc2 rw\n"
        f"42 22 0:53 / {tmp_path}/over rw - fuse.pfs /enc rw\n"
        f"43 42 0:54 / {tmp_path}/over rw - tmpfs tmpfs rw\n")
    for name in ("m", "over", "not-mounted"):
        (tmp_path / name).mkdir()
    odd.mkdir()
    assert fuse_device(str(tmp_path / "m"), str(info)) == "0:51"
    assert fuse_device(str(odd), str(info)) == "0:52"
    assert fuse_device(str(tmp_path / "over"), str(info)) is None  # a tmpfs mounted on top
    assert fuse_device(str(tmp_path / "not-mounted"), str(info)) is None
    assert fuse_device("/", str(info)) is None  # the disk itself is never touched
    assert fuse_device(str(tmp_path / "m"), str(tmp_path / "missing")) is None


@pytest.mark.require(os.geteuid() == 0, "setting a mount's read-ahead needs root")
def test_mount_raises_its_read_ahead_and_leaves_the_disk_alone(key: Path, dirs, mounter: Mounter) -> None:
    from vfs.fuse import READ_AHEAD_KB, fuse_device

    enc, mnt = dirs
    disk = os.stat(enc).st_dev
    disk_setting = Path(f"/sys/class/bdi/{os.major(disk)}:{os.minor(disk)}/read_ahead_kb")
    before = disk_setting.read_text() if disk_setting.exists() else None
    m = mounter.pfs(key, enc, mnt, background=True)
    dev = os.stat(mnt).st_dev
    assert fuse_device(str(mnt)) == f"{os.major(dev)}:{os.minor(dev)}"
    assert int(Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb").read_text()) == READ_AHEAD_KB
    m.unmount()
    assert fuse_device(str(mnt)) is None
    if before is not None:
        assert disk_setting.read_text() == before


# ---------------------------------------------------------------------- listings


def test_large_listing_has_every_entry_with_its_attributes(rw_mount) -> None:
    """Listings are served in chunks with offsets (and READDIRPLUS attributes): nothing lost or
    doubled across chunks, plaintext sizes in the attributes, changes seen by the next listing."""
    enc, mnt, _ = rw_mount
    sizes = {f"file-{i:04d}-{'x' * (i % 40)}": (i * 37) % 9000 for i in range(700)}
    for name, size in sizes.items():
        (mnt / name).write_bytes(b"z" * size)
    os.mkdir(mnt / "sub")
    with os.scandir(mnt) as it:
        entries = {e.name: e.stat(follow_symlinks=False) for e in it}
    assert set(entries) == set(sizes) | {"sub"}
    for name, size in sizes.items():
        assert entries[name].st_size == size, name
        assert entries[name].st_mode & 0o170000 == 0o100000
        assert entries[name].st_ino == os.stat(enc / name).st_ino
    assert os.path.isdir(mnt / "sub")
    listing = subprocess.run(["ls", "-l", str(mnt)], capture_output=True, text=True, check=True).stdout
    assert len(listing.splitlines()) == len(sizes) + 2  # "total" and sub
    for name in list(sizes)[:300]:
        os.unlink(mnt / name)
    (mnt / "late").write_bytes(b"late")
    assert sorted(os.listdir(mnt)) == sorted([*list(sizes)[300:], "sub", "late"])


def test_listing_needs_no_lookup_per_file_and_ro_mount_no_flush(tmp_path: Path, key: Path, dirs,
                                                                mounter: Mounter) -> None:
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw")
    for i in range(300):
        (mnt / f"f{i}").write_bytes(b"x" * i)
    m.unmount()
    m = mounter.pfs(key, enc, mnt, "--debug")  # libfuse prints every request it gets
    out = subprocess.run(["ls", "-l", str(mnt)], capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) == 301
    for i in range(0, 300, 30):
        assert (mnt / f"f{i}").read_bytes() == b"x" * i
    m.unmount()
    log = m.log()
    assert log.count("opcode: READDIRPLUS") >= 1
    assert log.count("opcode: LOOKUP") < 10, "a LOOKUP per listed file: READDIRPLUS attributes were dropped"
    assert log.count("opcode: FLUSH") <= 1  # the first close learns that a read-only mount has none


def test_missing_names_are_cached_and_creating_one_shows_at_once(key: Path, dirs, mounter: Mounter) -> None:
    """sqlite looks for its journal before every query: a name that doesn't exist is cached by
    the kernel (one LOOKUP, not one per query), and creating it through the mount is seen at once."""
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw", "--debug")
    for _ in range(50):
        assert os_error(os.stat, mnt / "db-journal") == errno.ENOENT
    (mnt / "db-journal").write_bytes(b"j")
    assert os.stat(mnt / "db-journal").st_size == 1
    os.unlink(mnt / "db-journal")
    assert os_error(os.stat, mnt / "db-journal") == errno.ENOENT
    m.unmount()
    assert m.log().count("LOOKUP /db-journal") <= 3


@pytest.mark.require(os.geteuid() == 0, "the read-ahead setting is root's to change")
def test_raise_read_ahead_leaves_a_folder_that_is_not_a_mount_alone(tmp_path: Path) -> None:
    """A daemon that checks too late (its mount already gone) must not set the host disk's."""
    from vfs.fuse import raise_read_ahead

    dev = os.stat(tmp_path).st_dev
    setting = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    if not setting.exists():
        pytest.skip(f"no read-ahead setting for the disk of {tmp_path}")
    before = setting.read_text()
    try:
        raise_read_ahead(str(tmp_path), kb=int(before) + 4)
        assert setting.read_text() == before
    finally:
        setting.write_text(before)


def test_unlinked_open_file_reopens_through_proc_fd(rw_mount) -> None:
    """``cp /proc/PID/fd/N saved`` recovers a removed file that a process still holds open."""
    enc, mnt, _ = rw_mount
    data = os.urandom(30000)
    (mnt / "gone").write_bytes(data)
    fd = os.open(mnt / "gone", os.O_RDWR)
    try:
        os.unlink(mnt / "gone")
        with open(f"/proc/self/fd/{fd}", "rb") as again:
            assert again.read() == data
        with open(f"/proc/self/fd/{fd}", "r+b") as again:
            again.write(b"NEW")
        assert os.pread(fd, 5, 0) == b"NEW" + data[3:5]
        shutil.copy(f"/proc/self/fd/{fd}", mnt / "saved")
    finally:
        os.close(fd)
    assert (mnt / "saved").read_bytes() == b"NEW" + data[3:]
    assert sorted(os.listdir(mnt)) == ["saved"] and sorted(os.listdir(enc)) == ["saved"]
