"""``pfs`` tree runs say what they skip: links, FIFOs, unreadable folders, journals, leftovers;
empty folders are recreated; bound-path warnings and ``--strict``; atomic ``pfs tamper``."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
import test_cli
from test_cli import PFS, assert_ok, assert_one_line_error, listing, read_plain, run

from pfs.layout import FLAG_UPDATE_PENDING, OFF_FLAGS

key_file, key, work = test_cli.key_file, test_cli.key, test_cli.work  # the same fixtures

def warnings(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("pfs: warning: ")]


# ---------------------------------------------------------------------- item 18: what a walk leaves out

def test_links_out_of_the_tree_are_not_followed(work: Path, key_file: Path, key: bytes, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("root:x:0:0\n")
    (work / "plain" / "passwd").symlink_to(outside)
    (work / "plain" / "inside").symlink_to("a.txt")  # a link to a file of the tree counts as that file
    proc = run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", cwd=work)
    assert_ok(proc)
    assert "passwd" not in listing(work / "enc")
    (line,) = warnings(proc)
    assert "plain/passwd: symbolic link to" in line and "outside the tree; not followed" in line
    assert "--follow-symlinks" in line
    assert read_plain(work / "enc" / "inside", key) == b"hello, enclave\n"
    proc = run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc2", "--follow-symlinks", cwd=work)
    assert_ok(proc)
    assert read_plain(work / "enc2" / "passwd", key, "enc2/passwd") == b"root:x:0:0\n"


def test_every_skipped_entry_is_reported_and_empty_folders_recreated(work: Path, key_file: Path) -> None:
    plain = work / "plain"
    os.mkfifo(plain / "fifo")
    (plain / "dangling").symlink_to("nowhere")
    (plain / "linked").symlink_to("sub", target_is_directory=True)
    (plain / "hollow" / "deeper").mkdir(parents=True)
    proc = run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", cwd=work)
    assert_ok(proc)
    found = warnings(proc)
    assert len(found) == 3, proc.stderr
    assert any("plain/fifo: a FIFO, not a regular file; skipped" in w for w in found)
    assert any("plain/dangling: dangling symbolic link" in w for w in found)
    assert any("plain/linked: symbolic link to the folder" in w and "not followed" in w for w in found)
    assert (work / "enc" / "hollow" / "deeper").is_dir()
    assert_ok(run("decrypt", "-w", key_file, "-i", "enc", "-o", "dec", cwd=work))
    assert (work / "dec" / "hollow" / "deeper").is_dir()
    assert listing(work / "dec") == listing(work / "enc")


def run_without_dac_override(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``pfs ARGS`` as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so that mode bits bind
    (tests run as root, which passes them otherwise)."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop root's file-permission override"
    return subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", PFS, *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_unreadable_folders_are_errors(work: Path, key_file: Path) -> None:
    (work / "plain" / "locked").mkdir()
    (work / "plain" / "locked" / "b").write_text("b")
    (work / "plain" / "locked").chmod(0)
    try:
        proc = run_without_dac_override("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", cwd=work)
        assert proc.returncode == 1, proc.stderr
        assert "pfs: error: plain/locked: can't read folder: Permission denied" in proc.stderr
        assert "1 entry of the tree could not be read" in proc.stderr and "Traceback" not in proc.stderr
        assert (work / "enc" / "a.txt").is_file()  # the rest was done
        proc = run_without_dac_override("verify", "-w", key_file, "enc", "plain", cwd=work)
        assert proc.returncode == 1 and "plain/locked: can't read folder" in proc.stderr
        # a whole unreadable input folder is an error, not "nothing to do"
        (work / "enc").chmod(0)
        proc = run_without_dac_override("decrypt", "-w", key_file, "-i", "enc", "-o", "dec", cwd=work)
        assert proc.returncode == 1, proc.stderr
        assert "pfs: error: enc: can't read folder: Permission denied" in proc.stderr
        assert "nothing to do" not in proc.stderr
    finally:
        for folder in (work / "enc", work / "plain" / "locked"):
            if folder.exists():
                folder.chmod(0o755)


# ---------------------------------------------------------------------- item 5: journals

def test_journals_are_not_inputs_and_one_needing_recovery_is_reported(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", cwd=work))
    enc = work / "enc"
    (enc / "a.txt.gramine.recovery").write_bytes(os.urandom(4104))  # the journal of a clean file
    proc = run("verify", "-w", key_file, "enc", "-V", cwd=work)
    assert_ok(proc)
    assert proc.stdout.splitlines()[-1] == "4 files ok"
    assert not warnings(proc)
    # an interrupted write leaves node 0 flagged "update pending", and the journal rolls it back
    data = bytearray((enc / "big.bin").read_bytes())
    data[OFF_FLAGS] |= FLAG_UPDATE_PENDING
    (enc / "big.bin").write_bytes(bytes(data))
    (enc / "big.bin.gramine.recovery").write_bytes(os.urandom(4104))
    (enc / "gone.gramine.recovery").write_bytes(os.urandom(4104))
    for cmd in (["verify", "-w", key_file, "enc"], ["decrypt", "-w", key_file, "-i", "enc", "-o", "dec"],
                ["rekey", "-w", key_file, "--new-key", key_file, "enc"]):
        proc = run(*cmd, cwd=work)
        assert proc.returncode == 1, (cmd, proc.stderr)
        text = proc.stdout + proc.stderr
        assert "gramine.recovery: not an encrypted file" not in text
        assert "1 of 4 files" in text or "3 files ok, 1 bad" in text, text
        found = warnings(proc)
        assert any("enc/big.bin.gramine.recovery: recovery journal of 'enc/big.bin', which an interrupted write "
                   "left needing recovery" in w for w in found), found
        assert any("enc/gone.gramine.recovery: recovery journal of 'enc/gone', which does not exist" in w
                   for w in found), found
        assert "an earlier write was interrupted" in text and "pfs mount --rw --recovery" in text
    assert not (work / "dec" / "big.bin").exists()
    (enc / "big.bin.gramine.recovery").unlink()
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "enc/big.bin", "-o", "one", cwd=work))
    assert "recovery journal 'enc/big.bin.gramine.recovery' is missing" in line


# ---------------------------------------------------------------------- item 13: leftovers of a SIGKILL

def test_leftover_temporary_outputs_are_reported(work: Path, key_file: Path) -> None:
    leftover = work / "plain" / "sub" / ".c.txt.pfs-tmp-k2j4h1"
    leftover.write_bytes(b"partial plaintext")
    proc = run("encrypt", "-w", key_file, "-i", "plain", "-o", "enc", cwd=work)
    assert_ok(proc)
    (line,) = warnings(proc)
    assert "plain/sub/.c.txt.pfs-tmp-k2j4h1: leftover temporary output of an interrupted pfs run" in line
    assert "may hold plaintext" in line and "rm -- plain/sub/.c.txt.pfs-tmp-k2j4h1" in line
    assert not any(".pfs-tmp-" in p for p in listing(work / "enc"))
    assert leftover.exists()  # reported, not deleted: a run going on may own it


# ---------------------------------------------------------------------- item 11: bound-path warnings

def test_decrypt_and_verify_warn_about_a_file_bound_elsewhere(work: Path, key_file: Path) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/a.txt", "-o", "enc/a.txt", cwd=work))
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/sub/c.txt", "-o", "enc/c.txt", cwd=work))
    os.rename(work / "enc" / "a.txt", work / "enc" / "x")  # two files swapped under one key
    os.rename(work / "enc" / "c.txt", work / "enc" / "a.txt")
    os.rename(work / "enc" / "x", work / "enc" / "c.txt")
    proc = run("decrypt", "-w", key_file, "-i", "enc/a.txt", "-o", "out", cwd=work)
    assert_ok(proc)
    (line,) = warnings(proc)
    assert line == ("pfs: warning: enc/a.txt is bound to 'enc/c.txt', not to its own path 'enc/a.txt': "
                    "Gramine opens it only as 'enc/c.txt' (-V or --strict makes this an error)")
    proc = run("verify", "-w", key_file, "enc", cwd=work)
    assert_ok(proc)
    assert len(warnings(proc)) == 2
    line = assert_one_line_error(run("decrypt", "-w", key_file, "-i", "enc/a.txt", "-o", "out2", "--strict",
                                     cwd=work))
    assert "path mismatch" in line and "'enc/c.txt'" in line
    assert not (work / "out2").exists()
    proc = run("verify", "-w", key_file, "enc", "--strict", cwd=work)
    assert proc.returncode == 1 and "0 files ok, 2 bad" in proc.stdout
    # a file bound to its own path, or checked explicitly, gets no warning
    proc = run("decrypt", "-w", key_file, "-i", "enc/a.txt", "-o", "out3", "--expect-path", "enc/c.txt", cwd=work)
    assert_ok(proc)
    assert not warnings(proc)


# ---------------------------------------------------------------------- item 6: tamper is all or nothing

def _limit_file_size(limit: int):
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


@pytest.mark.parametrize("existing", [False, True])
def test_tamper_failing_part_way_leaves_nothing(work: Path, key_file: Path, existing: bool) -> None:
    assert_ok(run("encrypt", "-w", key_file, "-i", "plain/big.bin", "-o", "big", cwd=work))
    if existing:
        (work / "t").mkdir()
        (work / "t" / "mine").write_text("keep")
    before = listing(work)
    # Files past 100 kB can't be written (EFBIG): the small truncated variants succeed, the
    # first full-size one fails.
    proc = subprocess.run([PFS, "tamper", "-w", key_file, "-i", "big", "-o", "t"], cwd=work, capture_output=True,
                          text=True, timeout=300, preexec_fn=_limit_file_size(100_000))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert listing(work) == before  # no variant, no temporary folder
    proc = run("tamper", "-w", key_file, "-i", "big", "-o", "t", "-q", cwd=work)
    assert_ok(proc)
    assert len([n for n in os.listdir(work / "t") if n.startswith("big.")]) > 50
    assert not [n for n in os.listdir(work) if ".pfs-tmp-" in n]
