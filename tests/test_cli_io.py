"""``pfs`` inputs and outputs that are not plain files: streams, standard input/output, FIFOs,
devices and links as outputs; output modes; files that change while they are read; odd names."""

from __future__ import annotations

import os
import select
import stat
import subprocess
from pathlib import Path

import pytest
import test_cli
from test_cli import PFS, assert_ok, assert_one_line_error, bound_path_of, listing, read_plain, run

from pal import HostFile
from pfs.stream import encrypt_stream
from tools.file_jobs import FileJob

key_file, key, work = test_cli.key_file, test_cli.key, test_cli.work  # the same fixtures


def run_input(*args: str | os.PathLike[str], data: bytes, cwd: Path | None = None,
              umask: int | None = None) -> subprocess.CompletedProcess[bytes]:
    """``pfs ARGS`` with ``data`` on its standard input (a pipe); output as bytes."""
    def pre() -> None:
        if umask is not None:
            os.umask(umask)
    return subprocess.run([PFS, *map(str, args)], input=data, cwd=cwd, capture_output=True, timeout=300,
                          preexec_fn=pre if umask is not None else None)


# ---------------------------------------------------------------------- item 3: streams in

@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
def test_encrypt_reads_a_pipe_to_its_end(work: Path, key_file: Path, key: bytes, name: str) -> None:
    data = os.urandom(5 * 1024 * 1024 + 77)  # several MHT groups, an odd tail
    proc = run_input("encrypt", "-w", key_file, "-i", name, "-o", "s.enc", data=data, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "s.enc -> bound to s.enc"
    assert read_plain(work / "s.enc", key, "s.enc") == data
    assert_ok(run("verify", "-w", key_file, "s.enc", "-V", cwd=work))


def test_encrypt_empty_pipe_is_an_empty_file(work: Path, key_file: Path, key: bytes) -> None:
    proc = run_input("encrypt", "-w", key_file, "-i", "-", "-o", "e.enc", data=b"", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert read_plain(work / "e.enc", key) == b""


def test_encrypt_fifo_says_it_waits_for_a_writer(work: Path, key_file: Path, key: bytes) -> None:
    fifo = work / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([PFS, "encrypt", "-w", str(key_file), "-i", "fifo", "-o", "f.enc"], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # the command must say that it waits (instead of hanging in open() without a word)
        ready, _, _ = select.select([proc.stderr], [], [], 120)
        assert ready, "no message while waiting for a writer"
        line = proc.stderr.readline().decode()
        assert "waiting for a program to write into the FIFO 'fifo'" in line
        with open(fifo, "wb") as writer:
            writer.write(b"through a fifo\n" * 1000)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert read_plain(work / "f.enc", key, "f.enc") == b"through a fifo\n" * 1000


def test_file_growing_while_encrypted_is_an_error_and_leaves_nothing(work: Path, key: bytes) -> None:
    from pfs.errors import InputChangedError
    from tools.file_ops import op_encrypt

    src = work / "plain" / "big.bin"
    out = work / "out"
    out.mkdir()
    grown = False

    def grow(_n: int) -> None:
        nonlocal grown
        if not grown:
            grown = True
            with open(src, "ab") as f:
                f.write(b"more data arriving")

    with pytest.raises(InputChangedError, match="changed while it was being encrypted"):
        op_encrypt(FileJob(str(src), str(out / "big.enc"), "big.enc"), progress=grow, key=key, force=False, jobs=1)
    assert listing(out) == []


def test_encrypt_stream_refuses_a_file_rewritten_meanwhile(tmp_path: Path, key: bytes) -> None:
    from pfs.errors import InputChangedError

    src = tmp_path / "p"
    src.write_bytes(b"a" * 10000)
    with HostFile(src) as s, HostFile(tmp_path / "e", writable=True, create=True) as d:
        def rewrite(_n: int) -> None:
            os.truncate(src, 4000)

        with pytest.raises(InputChangedError):
            encrypt_stream(s, d, key, "e", progress=rewrite)


# ---------------------------------------------------------------------- item 16: - and non-regular outputs

def test_decrypt_to_stdout_and_from_stdin(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/big.bin", "-o", "big.enc", cwd=work))
    plain = (work / "plain" / "big.bin").read_bytes()
    proc = subprocess.run([PFS, "decrypt", "-w", key_file, "-i", "big.enc", "-o", "-"], cwd=work,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == plain
    assert b"big.enc -> -" in proc.stderr  # the status line keeps out of the data
    enc = (work / "big.enc").read_bytes()
    proc = run_input("decrypt", "-w", key_file, "-i", "-", "-o", "-", "--expect-path", "big.enc", data=enc, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == plain
    assert not (work / "-").exists()


def test_decrypt_to_stdout_releases_nothing_of_a_bad_file(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/big.bin", "-o", "big.enc", cwd=work))
    data = bytearray((work / "big.enc").read_bytes())
    data[len(data) - 4096 + 9] ^= 1  # the last data node: everything before it is fine
    (work / "big.enc").write_bytes(bytes(data))
    proc = subprocess.run([PFS, "decrypt", "-w", key_file, "-i", "big.enc", "-o", "-"], cwd=work,
                          capture_output=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert b"corrupted node" in proc.stderr
    assert not (work / "-").exists()


def test_encrypt_to_stdout(work: Path, key_file: Path, key: bytes) -> None:
    proc = subprocess.run([PFS, "encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "-", "--bind-path", "/d/a"],
                          cwd=work, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (work / "x").write_bytes(proc.stdout)
    assert read_plain(work / "x", key, "/d/a") == b"hello, enclave\n"
    line = assert_one_line_error(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "-", cwd=work), code=2)
    assert "--bind-path" in line


@pytest.mark.parametrize("kind", ["symlink", "fifo", "device"])
def test_force_never_replaces_anything_but_a_regular_file(work: Path, key_file: Path, kind: str) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "a.enc", cwd=work))
    target = work / "target"
    target.write_text("precious")
    out = work / "out"
    if kind == "symlink":
        out.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(out)
    else:
        os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
    before = os.lstat(out)
    for cmd in (["decrypt", "-w", key_file, "-i", "a.enc", "-o", "out", "--force"],
                ["encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "out", "--force"]):
        line = assert_one_line_error(run(*cmd, cwd=work), code=1)
        assert "only ever replaces regular files" in line and "-o -" in line
        after = os.lstat(out)
        assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    assert target.read_text() == "precious"
    assert not [n for n in os.listdir(work) if ".pfs-tmp-" in n]


# ---------------------------------------------------------------------- item 10: modes

@pytest.mark.parametrize(("mode", "umask", "want"), [(0o600, 0o022, 0o600), (0o640, 0o022, 0o640),
                                                    (0o755, 0o077, 0o700), (0o644, 0o002, 0o644)])
def test_outputs_take_the_input_mode_within_the_umask(work: Path, key_file: Path, mode: int, umask: int,
                                                      want: int) -> None:
    secret = work / "secret"
    secret.write_bytes(b"s3cret")
    secret.chmod(mode)
    for args in (("encrypt", "-w", key_file, "-i", "secret", "-o", "secret.enc"),
                 ("decrypt", "-w", key_file, "-i", "secret.enc", "-o", "secret.out")):
        proc = run_input(*args, data=b"", cwd=work, umask=umask)
        assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((work / "secret.enc").stat().st_mode) == want
    assert stat.S_IMODE((work / "secret.out").stat().st_mode) == want
    # a tree keeps each file's mode too
    tree = work / "t"
    tree.mkdir()
    (tree / "f").write_bytes(b"x")
    (tree / "f").chmod(mode)
    assert run_input("encrypt", "-w", key_file, "-i", "t", "-o", "te", data=b"", cwd=work, umask=umask).returncode == 0
    assert run_input("decrypt", "-w", key_file, "-i", "te", "-o", "td", data=b"", cwd=work, umask=umask).returncode == 0
    assert stat.S_IMODE((work / "td" / "f").stat().st_mode) == want


# ---------------------------------------------------------------------- item 21: names and damaged files

def test_empty_paths_are_usage_errors(work: Path, key_file: Path) -> None:
    before = listing(work)
    for args in (["encrypt", "-i", "plain/a.txt", "-o", ""], ["encrypt", "-i", "", "-o", "x"],
                 ["decrypt", "-i", "plain/a.txt", "-o", ""], ["tamper", "-i", "plain/a.txt", "-o", ""]):
        line = assert_one_line_error(run(args[0], "-w", key_file, *args[1:], cwd=work), code=2)
        assert "must not be empty" in line
    assert listing(work) == before


def test_non_utf8_file_names(work: Path, key_file: Path, key: bytes) -> None:
    name = os.fsdecode(b"caf\xe9.txt")  # Latin-1, not UTF-8
    (work / "plain" / name).write_bytes(b"latin")
    proc = subprocess.run([PFS, "encrypt", "-w", key_file, "-i", "plain", "-o", "enc"], cwd=work,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert b"enc/caf\xe9.txt -> bound to enc/caf\xe9.txt" in proc.stdout  # the name's own bytes
    assert bound_path_of(work / "enc" / name, key) == "enc/caf\ufffd.txt"  # (decoded with replacement)
    with HostFile(work / "enc" / name) as s:
        from pfs.protected_file import ProtectedFile

        assert bytes(ProtectedFile.open(s, key, b"enc/caf\xe9.txt").metadata.path) == b"enc/caf\xe9.txt"
    proc = subprocess.run([PFS, "decrypt", "-w", key_file, "-i", "enc", "-o", "dec", "-V"], cwd=work,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (work / "dec" / name).read_bytes() == b"latin"


def test_file_cut_inside_a_node_is_called_truncated(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/big.bin", "-o", "big.enc", cwd=work))
    os.truncate(work / "big.enc", 5 * 4096 + 100)
    for cmd in (["decrypt", "-w", key_file, "-i", "big.enc", "-o", "out"], ["info", "-w", key_file, "big.enc"]):
        line = assert_one_line_error(run(*cmd, cwd=work))
        assert "truncated or extended encrypted file" in line and "100 bytes into node 5" in line
        assert "not an encrypted file" not in line and "plaintext file?" not in line
    proc = run("verify", "-w", key_file, "big.enc", cwd=work)
    assert proc.returncode == 1 and "truncated" in proc.stdout
    from pfs.errors import PartialNodeError
    from pfs.protected_file import ProtectedFile

    with HostFile(work / "big.enc") as s, pytest.raises(PartialNodeError):
        ProtectedFile.open(s, bytes(16), None)


def test_trailing_nodes_are_reported(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "a.enc", cwd=work))
    with open(work / "a.enc", "ab") as f:
        f.write(os.urandom(2 * 4096))
    proc = run("verify", "-w", key_file, "a.enc", cwd=work)
    assert_ok(proc)
    assert "pfs: warning: a.enc: 2 trailing nodes (8192 bytes) after the nodes its size needs" in proc.stderr
    proc = run("verify", "-w", key_file, "a.enc", "--strict", cwd=work)
    assert proc.returncode == 1
    assert "BAD  a.enc: 2 trailing nodes (8192 bytes) after the nodes its size needs" in proc.stdout
    proc = run("decrypt", "-w", key_file, "-i", "a.enc", "-o", "a.out", cwd=work)
    assert_ok(proc)
    assert "pfs: warning: a.enc: 2 trailing nodes" in proc.stderr
    assert (work / "a.out").read_text() == "hello, enclave\n"
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "a.enc", "-o", "b.out", "--strict", cwd=work))
    assert "trailing nodes" in line and "--strict" in line
    assert not (work / "b.out").exists()
    assert_ok(run("rekey", "-w", key_file, "--new-key", key_file, "a.enc", cwd=work))  # rewrites without them
    assert_ok(run("verify", "-w", key_file, "a.enc", cwd=work))


def test_stdin_redirected_from_a_file(work: Path, key_file: Path, key: bytes) -> None:
    with open(work / "plain" / "big.bin", "rb") as f:
        proc = subprocess.run([PFS, "encrypt", "-w", key_file, "-i", "-", "-o", "b.enc"], stdin=f, cwd=work,
                              capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert read_plain(work / "b.enc", key, "b.enc") == (work / "plain" / "big.bin").read_bytes()
    with open(work / "b.enc", "rb") as f:
        proc = subprocess.run([PFS, "decrypt", "-w", key_file, "-i", "-", "-o", "b.out", "--expect-path", "b.enc"],
                              stdin=f, cwd=work, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (work / "b.out").read_bytes() == (work / "plain" / "big.bin").read_bytes()
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "-", "-o", "x", "-V", cwd=work), code=2)
    assert "--expect-path" in line


def test_gen_key_force_never_replaces_a_link(work: Path) -> None:
    target = work / "target"
    target.write_text("precious")
    (work / "k").symlink_to(target)
    line = assert_one_line_error(run("gen-key", "-w", "k", "--force", cwd=work), code=2)
    assert "is a symbolic link" in line
    assert (work / "k").is_symlink() and target.read_text() == "precious"
