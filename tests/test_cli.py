"""The ``pfs`` command, run for real (subprocess) and through click's CliRunner."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import require, vectors_path

from pal import HostFile
from pfs import PathMismatchError, ProtectedFile, WrongKeyError
from pfs.inspect import read_full_info
from tools.pfs_cli import cli
from tools.pfs_commands.encrypt import encrypt_standalone

VECTORS = vectors_path()


def _find_tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    require(found, f"'{name}' command not installed")
    return found


PFS = _find_tool("pfs")
PFS_ENCRYPT = _find_tool("pfs-encrypt")


def run(*args: str | os.PathLike[str], cwd: Path | str | None = None,
        tool: str = PFS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *, code: int | None = None,
                          secrets: tuple[bytes, ...] = ()) -> str:
    """The command failed with exactly one ``pfs: error:`` line and no traceback; return it."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pfs: error: "), lines[0]
    for secret in secrets:
        assert secret.hex() not in proc.stdout + proc.stderr
        assert secret.hex().upper() not in proc.stdout + proc.stderr
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "wrap.key"
    path.parent.mkdir()
    assert_ok(run("gen-key", "-w", path))
    return path


@pytest.fixture
def key(key_file: Path) -> bytes:
    return key_file.read_bytes()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working folder with a plaintext tree: plain/{a.txt, big.bin, sub/c.txt, empty}."""
    root = tmp_path / "work"
    (root / "plain" / "sub").mkdir(parents=True)
    (root / "plain" / "a.txt").write_text("hello, enclave\n")
    (root / "plain" / "big.bin").write_bytes(os.urandom(500_000))
    (root / "plain" / "sub" / "c.txt").write_bytes(b"x" * 3073)
    (root / "plain" / "empty").write_bytes(b"")
    return root


def bound_path_of(path: Path, key: bytes) -> str:
    with HostFile(path) as storage:
        return read_full_info(storage, key)["bound_path"]


def read_plain(path: Path, key: bytes, expected: str | None = None) -> bytes:
    with ProtectedFile.open(HostFile(path), key, expected) as pf:
        return pf.read(0, pf.size)


# ---------------------------------------------------------------------- gen-key

def test_gen_key_mode_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.bin"
    proc = run("gen-key", "-w", path)
    assert_ok(proc)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert len(first) == 16
    assert first.hex() not in proc.stdout + proc.stderr
    line = assert_one_line_error(run("gen-key", "-w", path), secrets=(first,))
    assert "already exists" in line and "--force" in line
    assert path.read_bytes() == first
    assert_ok(run("gen-key", "-w", path, "--force"))
    assert path.read_bytes() != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert listing(tmp_path) == ["k.bin"]  # no temp file left


def test_gen_key_cli_runner(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "r.key"
    result = runner.invoke(cli, ["gen-key", "-w", str(path)])
    assert result.exit_code == 0, result.output
    assert len(path.read_bytes()) == 16
    result = runner.invoke(cli, ["gen-key", "-w", str(path)])
    assert result.exit_code == 1
    assert "already exists" in result.output


# ---------------------------------------------------------------------- encrypt / decrypt

def test_encrypt_single_file_prints_bound_path(work: Path, key_file: Path, key: bytes) -> None:
    proc = run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "./enc//a.txt", cwd=work)
    assert_ok(proc)
    assert proc.stdout.strip() == "./enc//a.txt -> bound to enc/a.txt"
    assert bound_path_of(work / "enc" / "a.txt", key) == "enc/a.txt"
    assert read_plain(work / "enc" / "a.txt", key, "enc/a.txt") == b"hello, enclave\n"
    assert listing(work / "enc") == ["a.txt"]


def test_encrypt_bind_path_and_prefix_for_a_file(work: Path, key_file: Path, key: bytes) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "e1", "--bind-path", "/data/x",
                  cwd=work))
    assert bound_path_of(work / "e1", key) == "/data/x"
    proc = run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "out/e2", "--bind-prefix", "/mnt/enc",
               cwd=work)
    assert_ok(proc)
    assert "-> bound to /mnt/enc/e2" in proc.stdout
    assert bound_path_of(work / "out" / "e2", key) == "/mnt/enc/e2"


def test_encrypt_decrypt_tree(work: Path, key_file: Path, key: bytes) -> None:
    proc = run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", cwd=work)
    assert_ok(proc)
    files = ["a.txt", "big.bin", "empty", "sub/c.txt"]
    for name in files:
        assert f"enc/{name} -> bound to enc/{name}" in proc.stdout
        assert bound_path_of(work / "enc" / name, key) == f"enc/{name}"
    assert listing(work / "enc") == ["a.txt", "big.bin", "empty", "sub", "sub/c.txt"]
    proc = run("decrypt", "-w", key_file, "-i", "enc", "-o", "dec", "-V", cwd=work)
    assert_ok(proc)
    for name in files:
        assert (work / "dec" / name).read_bytes() == (work / "plain" / name).read_bytes()


def test_encrypt_tree_bind_prefix_and_jobs(work: Path, key_file: Path, key: bytes) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", "--bind-prefix", "/srv/data",
                  "--jobs", "3", cwd=work))
    assert bound_path_of(work / "enc" / "sub" / "c.txt", key) == "/srv/data/sub/c.txt"
    assert bound_path_of(work / "enc" / "a.txt", key) == "/srv/data/a.txt"
    proc = run("decrypt", "-w", key_file, "-i", "enc", "-o", "dec", "--jobs", "3", cwd=work)
    assert_ok(proc)
    assert (work / "dec" / "big.bin").read_bytes() == (work / "plain" / "big.bin").read_bytes()
    # -V checks each file's own input path, which differs from the prefix: every file fails
    proc = run("decrypt", "-w", key_file, "-i", "enc", "-o", "dec2", "-V", "--jobs", "2", cwd=work)
    assert proc.returncode == 1
    assert proc.stderr.count("path mismatch") == 4
    assert not (work / "dec2").exists()


def test_bind_path_with_a_tree_is_a_usage_error(work: Path, key_file: Path) -> None:
    proc = run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", "--bind-path", "/x", cwd=work)
    line = assert_one_line_error(proc, code=2)
    assert "--bind-prefix" in line
    assert not (work / "enc").exists()


def test_single_file_jobs_passes_through(work: Path, key_file: Path) -> None:
    big = work / "plain" / "huge.bin"
    big.write_bytes(os.urandom(8 * 96 * 4096 + 12345))
    assert_ok(run("encrypt", "-w", key_file, "-i", big, "-o", work / "huge.enc", "--jobs", "4"))
    assert_ok(run("decrypt", "-w", key_file, "-i", work / "huge.enc", "-o", work / "huge.out", "--jobs", "4"))
    assert (work / "huge.out").read_bytes() == big.read_bytes()


def test_pfs_encrypt_entry_point(work: Path, key_file: Path, key: bytes) -> None:
    proc = run("-w", key_file, "-i", "plain/a.txt", "-o", "x.enc", cwd=work, tool=PFS_ENCRYPT)
    assert_ok(proc)
    assert proc.stdout.strip() == "x.enc -> bound to x.enc"
    assert read_plain(work / "x.enc", key, "x.enc") == b"hello, enclave\n"
    line = assert_one_line_error(run("-w", key_file, "-i", "plain/a.txt", "-o", "x.enc", cwd=work,
                                     tool=PFS_ENCRYPT))
    assert "already exists" in line


def test_encrypt_standalone_cli_runner(work: Path, key_file: Path, key: bytes) -> None:
    result = CliRunner().invoke(encrypt_standalone, ["-w", str(key_file), "-i", str(work / "plain" / "a.txt"),
                                                     "-o", str(work / "y.enc"), "--bind-path", "y"])
    assert result.exit_code == 0, result.output
    assert bound_path_of(work / "y.enc", key) == "y"


def test_decrypt_expect_path(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "e", "--bind-path", "/data/a",
                  cwd=work))
    assert_ok(run("decrypt", "-w", key_file, "-i", "e", "-o", "d", "--expect-path", "/data/a", cwd=work))
    assert (work / "d").read_text() == "hello, enclave\n"


# ---------------------------------------------------------------------- bad inputs

def test_missing_key_file(work: Path, key_file: Path) -> None:
    before = listing(work)
    line = assert_one_line_error(run("encrypt", "-w", "nope.key", "-i", "plain/a.txt", "-o", "e", cwd=work),
                                 code=2)
    assert "nope.key" in line and "does not exist" in line
    assert listing(work) == before


def test_wrong_size_key_file(work: Path) -> None:
    (work / "short.key").write_bytes(os.urandom(15))
    before = listing(work)
    line = assert_one_line_error(run("encrypt", "-w", "short.key", "-i", "plain/a.txt", "-o", "e", cwd=work),
                                 secrets=((work / "short.key").read_bytes(),))
    assert "'short.key' holds 15 bytes" in line and "16 raw bytes or 32 hex characters" in line
    assert listing(work) == before


def test_hex_key_file_works(work: Path, key_file: Path, key: bytes) -> None:
    (work / "hex.key").write_text(key.hex() + "\n")
    assert_ok(run("encrypt", "-w", "hex.key", "-i", "plain/a.txt", "-o", "e", cwd=work))
    assert_ok(run("decrypt", "-w", key_file, "-i", "e", "-o", "d", "-V", cwd=work))
    assert (work / "d").read_text() == "hello, enclave\n"


def test_wrong_key(work: Path, key_file: Path, tmp_path: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "e", cwd=work))
    other = tmp_path / "other.key"
    assert_ok(run("gen-key", "-w", other))
    before = listing(work)
    line = assert_one_line_error(run("decrypt", "-w", other, "-i", "e", "-o", "d", cwd=work), code=1,
                                 secrets=(other.read_bytes(), key_file.read_bytes()))
    assert "wrong key" in line and "'e'" not in line and line.startswith("pfs: error: e:")
    assert listing(work) == before


def test_not_encrypted_input(work: Path, key_file: Path) -> None:
    before = listing(work)
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "d", cwd=work))
    assert "not an encrypted file" in line and "plain/a.txt" in line
    assert listing(work) == before


def test_path_mismatch_shows_expected_and_found(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "enc/a.txt", cwd=work))
    os.rename(work / "enc" / "a.txt", work / "enc" / "moved.txt")
    before = listing(work)
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "enc/moved.txt", "-o", "out/d", "-V",
                                     cwd=work))
    assert "path mismatch" in line and "'enc/a.txt'" in line and "'enc/moved.txt'" in line
    assert listing(work) == before  # no output, no output folder
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "enc/moved.txt", "-o", "d",
                                     "--expect-path", "/elsewhere", cwd=work))
    assert "'enc/a.txt'" in line and "'/elsewhere'" in line


@pytest.fixture
def unwritable_dir(tmp_path: Path):
    """A folder this process can't create files in (``/sys`` when running as root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_bytes(b"")
        except OSError:
            yield folder
            return
        probe.unlink()
        sys_dir = Path("/sys")
        try:
            fd = os.open(sys_dir / "pfs-probe", os.O_CREAT | os.O_WRONLY, 0o600)
        except OSError:
            yield sys_dir
            return
        os.close(fd)
        pytest.skip("no unwritable folder available (running as root without a read-only /sys)")
    finally:
        folder.chmod(0o755)


def test_unwritable_output_dir(work: Path, key_file: Path, unwritable_dir: Path) -> None:
    before = os.listdir(unwritable_dir)
    line = assert_one_line_error(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o",
                                     unwritable_dir / "a.enc", cwd=work))
    assert "can't write in output folder" in line and str(unwritable_dir) in line
    assert os.listdir(unwritable_dir) == before
    line = assert_one_line_error(run("encrypt", "-w", key_file, "-i", "plain", "-o",
                                     unwritable_dir / "tree", cwd=work))
    assert "can't create output folder" in line and str(unwritable_dir / "tree") in line
    assert os.listdir(unwritable_dir) == before
    line = assert_one_line_error(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o",
                                     unwritable_dir / "new" / "deeper" / "a.enc", cwd=work))
    assert "can't create output folder" in line
    assert os.listdir(unwritable_dir) == before


def test_folder_given_where_a_file_is_expected(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", cwd=work))
    before = listing(work)
    line = assert_one_line_error(run("tamper", "-w", key_file, "-i", "enc", "-o", "t", cwd=work), code=2)
    assert "'enc' is a folder" in line
    line = assert_one_line_error(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "enc", cwd=work),
                                 code=2)
    assert "'enc' is a folder" in line
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "enc", "-o", "plain/a.txt", cwd=work),
                                 code=2)
    assert "is a file but the input 'enc' is a folder" in line
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "enc", "-o", "d", "--expect-path", "x",
                                     cwd=work), code=2)
    assert "--expect-path" in line
    assert listing(work) == before


def test_missing_input(work: Path, key_file: Path) -> None:
    line = assert_one_line_error(run("encrypt", "-w", key_file, "-i", "nothing", "-o", "e", cwd=work), code=2)
    assert "input 'nothing' does not exist" in line


def test_output_exists_refused_without_force(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "e", cwd=work))
    (work / "d").write_text("keep me")
    before = listing(work)
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "e", "-o", "d", cwd=work))
    assert "'d' already exists" in line and "--force" in line
    assert (work / "d").read_text() == "keep me"
    original = (work / "e").read_bytes()
    line = assert_one_line_error(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "e", cwd=work))
    assert (work / "e").read_bytes() == original
    assert listing(work) == before
    assert_ok(run("decrypt", "-w", key_file, "-i", "e", "-o", "d", "--force", cwd=work))
    assert (work / "d").read_text() == "hello, enclave\n"


def test_usage_errors_are_one_line(work: Path, key_file: Path) -> None:
    line = assert_one_line_error(run("encrypt", "-i", "plain/a.txt", "-o", "e", cwd=work), code=2)
    assert "--wrap-key" in line
    assert_one_line_error(run("nonsense", cwd=work), code=2)
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "x", "-o", "y", "-V", "--expect-path",
                                     "z", cwd=work), code=2)
    assert "only one of" in line


def test_cli_runner_error_is_one_line(work: Path, key_file: Path) -> None:
    result = CliRunner().invoke(cli, ["decrypt", "-w", str(key_file), "-i", str(work / "plain" / "a.txt"),
                                      "-o", str(work / "out")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("pfs: error: ")
    assert not (work / "out").exists()


def test_debug_shows_traceback(work: Path, key_file: Path) -> None:
    proc = run("--debug", "decrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "d", cwd=work)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "NotEncryptedError" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("pfs: error: ")


# ---------------------------------------------------------------------- tree runs go on past failures

def test_tree_decrypt_goes_on_past_a_bad_file(work: Path, key_file: Path, key: bytes) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", cwd=work))
    bad = work / "enc" / "big.bin"
    data = bytearray(bad.read_bytes())
    data[5 * 4096 + 7] ^= 1  # a data node in the middle
    bad.write_bytes(bytes(data))
    proc = run("decrypt", "-w", key_file, "-i", "enc", "-o", "dec", "-V", cwd=work)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("pfs: error: ") for line in lines)
    assert "enc/big.bin: corrupted node 5" in lines[0]
    assert "1 of 4 files failed" in lines[1]
    assert listing(work / "dec") == ["a.txt", "empty", "sub", "sub/c.txt"]  # no partial big.bin


# ---------------------------------------------------------------------- info / verify / tamper / rekey

def test_info_with_and_without_key(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/big.bin", "-o", "big.enc", "--bind-path", "/b",
                  cwd=work))
    proc = run("info", "big.enc", cwd=work)
    assert_ok(proc)
    assert "format version   2.0" in proc.stdout and "plaintext of" in proc.stdout
    assert "/b" not in proc.stdout  # the bound path is encrypted
    proc = run("info", "-w", key_file, "big.enc", "--json", cwd=work)
    assert_ok(proc)
    (record,) = json.loads(proc.stdout)
    assert record["bound_path"] == "/b"
    assert record["plaintext_size"] == 500_000
    assert record["format_version"] == "2.0" and record["update_pending"] is False
    assert record["data_nodes"] == 122 and record["mht_nodes"] == 2 and record["tree_depth"] == 1
    line = assert_one_line_error(run("info", "plain/a.txt", cwd=work))
    assert "not an encrypted file" in line


def test_verify_reports_first_bad_node(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", cwd=work))
    proc = run("verify", "-w", key_file, "enc", "-V", cwd=work)
    assert_ok(proc)
    assert proc.stdout.strip().splitlines()[-1] == "4 files ok"
    bad = work / "enc" / "big.bin"
    data = bytearray(bad.read_bytes())
    for node in (40, 9):  # two bad data nodes: node 9 comes first
        data[node * 4096] ^= 0x80
    bad.write_bytes(bytes(data))
    proc = run("verify", "-w", key_file, "enc", "--jobs", "2", cwd=work)
    assert proc.returncode == 1
    bad_lines = [line for line in proc.stdout.splitlines() if line.startswith("BAD")]
    assert len(bad_lines) == 1
    assert "enc/big.bin" in bad_lines[0] and "corrupted node 9 " in bad_lines[0]
    assert proc.stdout.splitlines()[-1] == "3 files ok, 1 bad"
    assert proc.stderr.strip() == "pfs: error: 1 of 4 files failed verification"


def test_verify_tampered_variant(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/big.bin", "-o", "big", cwd=work))
    proc = run("tamper", "-w", key_file, "-i", "big", "-o", "t", cwd=work)
    assert_ok(proc)
    names = sorted(os.listdir(work / "t"))
    assert "big.data_0" in names and "big.mht_0" in names and "big.meta_enc_filename_1" in names
    assert f"wrote {len(names)} variants to t" in proc.stdout
    proc = run("verify", "-w", key_file, "t/big.mht_0", cwd=work)
    assert proc.returncode == 1
    assert "BAD  t/big.mht_0: corrupted node 2 " in proc.stdout
    # every variant fails verification against the original's bound path
    for name in names:
        proc = run("verify", "-w", key_file, f"t/{name}", "--expect-path", "big", cwd=work)
        assert proc.returncode == 1, name
        assert "0 files ok, 1 bad" in proc.stdout
    # refuses to overwrite the variants without --force
    assert_one_line_error(run("tamper", "-w", key_file, "-i", "big", "-o", "t", cwd=work))
    assert_ok(run("tamper", "-w", key_file, "-i", "big", "-o", "t", "--force", "-q", cwd=work))


def test_rekey(work: Path, key_file: Path, key: bytes, tmp_path: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", "--bind-prefix", "/data", cwd=work))
    (work / "enc" / "a.txt").chmod(0o640)
    new_file = tmp_path / "new.key"
    assert_ok(run("gen-key", "-w", new_file))
    new = new_file.read_bytes()
    proc = run("rekey", "-w", key_file, "--new-key", new_file, "enc", cwd=work)
    assert_ok(proc)
    assert "enc/sub/c.txt: re-encrypted under the new key (bound to /data/sub/c.txt)" in proc.stdout
    assert listing(work / "enc") == ["a.txt", "big.bin", "empty", "sub", "sub/c.txt"]  # no temp files
    assert stat.S_IMODE((work / "enc" / "a.txt").stat().st_mode) == 0o640
    for name in ("a.txt", "big.bin", "empty", "sub/c.txt"):
        path = work / "enc" / name
        with pytest.raises(WrongKeyError):
            read_plain(path, key)
        assert read_plain(path, new, f"/data/{name}") == (work / "plain" / name).read_bytes()
        assert bound_path_of(path, new) == f"/data/{name}"
    # a wrong old key changes nothing
    before = (work / "enc" / "a.txt").read_bytes()
    proc = run("rekey", "-w", key_file, "--new-key", new_file, "enc/a.txt", cwd=work)
    assert "wrong key" in assert_one_line_error(proc)
    assert (work / "enc" / "a.txt").read_bytes() == before


def test_path_mismatch_error_type_from_library(work: Path, key_file: Path, key: bytes) -> None:
    """Sanity check of the test helpers: the library rejects the wrong expected path."""
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "e", cwd=work))
    with pytest.raises(PathMismatchError):
        read_plain(work / "e", key, "not-e")


# ---------------------------------------------------------------------- Gramine's vectors

def _vector_names() -> list[str]:
    manifest = VECTORS / "MANIFEST.json"
    if not manifest.is_file():
        return []
    doc = json.loads(manifest.read_text())
    return [v["encrypted_file"] for v in doc["vectors"] + doc["v1_vectors"]]


@pytest.mark.usefixtures("vectors_dir")
@pytest.mark.parametrize("name", _vector_names())
def test_decrypt_vector_with_path_check(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run("decrypt", "-w", "wrap_key.bin", "-i", name, "-o", out, "-V", cwd=VECTORS)
    assert_ok(proc)
    assert f"(bound path '{name}' verified)" in proc.stdout
    assert out.read_bytes() == (VECTORS / "plain" / Path(name).name).read_bytes()


@pytest.mark.usefixtures("vectors_dir")
def test_decrypt_vector_moved_fails_path_check(tmp_path: Path) -> None:
    shutil.copy(VECTORS / "enc" / "size_100", tmp_path / "size_100")
    shutil.copy(VECTORS / "wrap_key.bin", tmp_path / "k")
    line = assert_one_line_error(run("decrypt", "-w", "k", "-i", "size_100", "-o", "out", "-V", cwd=tmp_path))
    assert "'enc/size_100'" in line and "'size_100'" in line
    assert sorted(os.listdir(tmp_path)) == ["k", "size_100"]


@pytest.mark.usefixtures("vectors_dir")
def test_rekey_second_level_mht_vector(tmp_path: Path) -> None:
    """Re-encrypting Gramine's 13 MB vector (MHT depth 2) keeps every byte and the bound path."""
    shutil.copy(VECTORS / "enc" / "size_12979205", tmp_path / "f")
    new_file = tmp_path / "new.key"
    assert_ok(run("gen-key", "-w", new_file))
    assert_ok(run("rekey", "-w", VECTORS / "wrap_key.bin", "--new-key", new_file, tmp_path / "f"))
    assert_ok(run("decrypt", "-w", new_file, "-i", tmp_path / "f", "-o", tmp_path / "out",
                  "--expect-path", "enc/size_12979205"))
    assert (tmp_path / "out").read_bytes() == (VECTORS / "plain" / "size_12979205").read_bytes()


@pytest.mark.usefixtures("vectors_dir")
@pytest.mark.parametrize("jobs", ["1", "4"])
def test_verify_first_bad_node_in_file_order(tmp_path: Path, jobs: str) -> None:
    """Node 3203 sits under MHT node 33 (a child of MHT 1, visited early depth-first); node 2000 is
    under MHT 20. verify must name node 2000, the first bad node in file order."""
    data = bytearray((VECTORS / "enc" / "size_12979205").read_bytes())
    for node in (3203, 2000):
        data[node * 4096 + 5] ^= 1
    (tmp_path / "f").write_bytes(bytes(data))
    proc = run("verify", "-w", VECTORS / "wrap_key.bin", tmp_path / "f", "--jobs", jobs)
    assert proc.returncode == 1
    assert f"BAD  {tmp_path / 'f'}: corrupted node 2000 " in proc.stdout


def test_tree_bind_prefix_checked_on_decrypt_and_verify(tmp_path: Path, key_file: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    (plain / "a.txt").write_bytes(b"alpha" * 1000)
    (plain / "sub" / "b.bin").write_bytes(os.urandom(500_000))
    assert_ok(run("encrypt", "-w", key_file, "-i", plain, "-o", tmp_path / "enc", "--bind-prefix", "/data"))
    assert_ok(run("verify", "-w", key_file, tmp_path / "enc", "--bind-prefix", "/data"))
    assert_ok(run("decrypt", "-w", key_file, "-i", tmp_path / "enc", "-o", tmp_path / "dec",
                  "--bind-prefix", "/data", "--no-fsync"))
    assert (tmp_path / "dec" / "sub" / "b.bin").read_bytes() == (plain / "sub" / "b.bin").read_bytes()
    # the wrong prefix is a path mismatch for every file, and nothing is written
    bad = run("decrypt", "-w", key_file, "-i", tmp_path / "enc", "-o", tmp_path / "dec2", "--bind-prefix", "/other")
    assert bad.returncode == 1
    assert "'/data/sub/b.bin'" in bad.stdout + bad.stderr and "'/other/sub/b.bin'" in bad.stdout + bad.stderr
    assert not (tmp_path / "dec2").exists()
    bad = run("verify", "-w", key_file, tmp_path / "enc", "--bind-prefix", "/other")
    assert bad.returncode == 1
    assert "0 files ok, 2 bad" in bad.stdout
