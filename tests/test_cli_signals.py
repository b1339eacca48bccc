"""SIGTERM, SIGHUP and SIGINT stop ``pfs encrypt/decrypt/rekey`` with the same clean-up: no
temporary output left (it may hold plaintext), exit status 128 + the signal number.

Real processes and real signals. To hit a run in the middle without timing anything, a run is
caught while its temporary output exists and frozen with SIGSTOP; if the temporary file is still
there once the process is stopped, the run is certainly unfinished when the signal is sent.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import test_cli
from test_cli import PFS, assert_ok, read_plain, run

from pfs import WrongKeyError

key_file, key = test_cli.key_file, test_cli.key  # the same fixtures

STATUS = {signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGINT: 130}
MESSAGE = {signal.SIGTERM: "stopped by SIGTERM; no partial output left",
           signal.SIGHUP: "stopped by SIGHUP; no partial output left", signal.SIGINT: "interrupted"}


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".pfs-tmp-" in p.name]


def _stop_when_writing(proc: subprocess.Popen[bytes], watch: Path) -> bool:
    """Freeze ``proc`` while it has a temporary output under ``watch``; False if it ended first."""
    while proc.poll() is None:
        if temps(watch):
            os.kill(proc.pid, signal.SIGSTOP)
            _, status = os.waitpid(proc.pid, os.WUNTRACED)
            if os.WIFSTOPPED(status) and temps(watch):
                return True
            os.kill(proc.pid, signal.SIGCONT)
    return False


def signal_mid_run(cmd: list[str], cwd: Path, watch: Path, sig: int) -> subprocess.CompletedProcess[bytes] | None:
    """Run ``pfs CMD``, send ``sig`` while it writes a temporary output; None if it ended first."""
    proc = subprocess.Popen([PFS, *cmd], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if not _stop_when_writing(proc, watch):
            proc.communicate(timeout=300)
            return None
        os.kill(proc.pid, sig)
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_stopped(proc: subprocess.CompletedProcess[bytes], sig: int) -> None:
    assert proc.returncode == STATUS[sig], proc.stderr
    assert proc.stderr.decode().strip() == f"pfs: error: {MESSAGE[sig]}"


def make_plain(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))


SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_during_encrypt_from_a_pipe(tmp_path: Path, key_file: Path, sig: int) -> None:
    """Deterministic: the command waits for more input on its pipe when the signal comes."""
    work = tmp_path / "w"
    work.mkdir()
    proc = subprocess.Popen([PFS, "encrypt", "-w", str(key_file), "-i", "-", "-o", "s.enc"], cwd=work,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None
        proc.stdin.write(os.urandom(3 << 20))
        proc.stdin.flush()
        while not temps(work):
            assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_stopped(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), sig)
    assert sorted(os.listdir(work)) == []


@pytest.mark.parametrize("jobs", ["1", "4"])
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_during_decrypt_leaves_no_plaintext(tmp_path: Path, key_file: Path, sig: int, jobs: str) -> None:
    for size in (16 << 20, 64 << 20, 160 << 20):
        make_plain(tmp_path / "p", size)
        assert_ok(run("encrypt", "-w", key_file, "-i", tmp_path / "p", "-o", tmp_path / "e", "--force"))
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        proc = signal_mid_run(["decrypt", "-w", str(key_file), "-i", "e", "-o", "out/d", "--jobs", jobs], tmp_path,
                              out, sig)
        if proc is not None:
            break
        (out / "d").unlink()  # it finished before it could be caught: try a larger file
    else:
        pytest.fail("every decryption ended before it could be signalled")
    assert_stopped(proc, sig)
    assert temps(tmp_path) == []
    assert not (out / "d").exists() or (out / "d").read_bytes() == (tmp_path / "p").read_bytes()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_rekey_keeps_the_original(tmp_path: Path, key_file: Path, key: bytes, sig: int) -> None:
    new = tmp_path / "new.key"
    assert_ok(run("gen-key", "-w", new))
    folder = tmp_path / "enc"
    folder.mkdir()
    for size in (16 << 20, 64 << 20, 160 << 20):
        make_plain(tmp_path / "p", size)
        assert_ok(run("encrypt", "-w", key_file, "-i", tmp_path / "p", "-o", folder / "f", "--force",
                      "--bind-path", "f"))
        proc = signal_mid_run(["rekey", "-w", str(key_file), "--new-key", str(new), "enc/f"], tmp_path, folder, sig)
        if proc is not None:
            break
    else:
        pytest.fail("every rekey ended before it could be signalled")
    assert_stopped(proc, sig)
    assert sorted(os.listdir(folder)) == ["f"]
    try:
        got = read_plain(folder / "f", key, "f")
    except WrongKeyError:  # the signal came just after the rename: the file is complete under the new key
        got = read_plain(folder / "f", new.read_bytes(), "f")
    assert got == (tmp_path / "p").read_bytes()


def test_sigterm_of_a_tree_run_with_workers(tmp_path: Path, key_file: Path) -> None:
    """The parent alone gets the signal and passes it on to its --jobs worker processes."""
    plain = tmp_path / "plain"
    plain.mkdir()
    for i in range(6):
        make_plain(plain / f"f{i}", 24 << 20)
    for _attempt in range(3):
        out = tmp_path / "enc"
        proc = subprocess.Popen([PFS, "encrypt", "-w", str(key_file), "-i", "plain", "-o", "enc", "--jobs", "3"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while proc.poll() is None and not (out.exists() and temps(out)):
                pass
            os.kill(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            break
        subprocess.run(["rm", "-rf", str(out)], check=True)  # finished before the signal: again
    assert proc.returncode == 143, err
    assert err.decode().splitlines()[-1] == "pfs: error: stopped by SIGTERM; no partial output left"
    assert temps(tmp_path) == []
    assert _processes_mentioning(str(key_file)) == []  # the workers are gone too


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry))
    return found
