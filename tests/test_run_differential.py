"""The differential file-system programs of tests/test_differential.py, run by a real process
inside ``libos run`` and compared with the real kernel.

Hypothesis draws a program as test_differential does. It runs first on the kernel, in a forked
child chroot-ed into a scratch folder (``test_differential.run_on_kernel``: the same steering,
so the calls both sides make are the same), then inside ``libos run``: ``/usr/bin/python3`` in a
view whose ``/m`` is the mount under test (a chroot mount served through the view's FUSE bridge,
an encrypted mount, a tmpfs), executing the same calls with ``test_differential.KernelSide`` (real
system calls, this time through the view) with its descriptors renumbered from 0 as the kernel
child does. Every call's result and the final snapshot of ``/m`` must be equal.

The code the process runs is test_differential's own (its source, sent along with the calls), so
the two sides can't drift apart. Encrypted mounts: files and folders only (no symlinks, hard
links or FIFOs), as in test_differential.
"""

from __future__ import annotations

import inspect
import os
import pickle
from pathlib import Path

import pytest
import test_differential as td
from helpers import examples, require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_
from run_helpers import PYTHON, View, host_mounts, runner_state

# what the process in the view runs: test_differential's executor, then the calls from stdin
_PARTS = [td.StatResult, td.stat_result, td.outcome, td.KernelSide, td.snapshot, td._kernel_read_file]
EXECUTOR = "\n".join([
    "from __future__ import annotations",
    "import ctypes, errno, fcntl, hashlib, os, pickle, resource, stat as st, sys, traceback",
    "from collections.abc import Callable",
    "from dataclasses import dataclass",
    "from typing import Any",
    f"MOUNT = {td.MOUNT!r}",
    f"RESULT_FD = {td.RESULT_FD!r}",
    f"O_PATH = {td.O_PATH!r}",
    f"KINDS = {{{', '.join(f'{k!r}: {v!r}' for k, v in td.KINDS.items())}}}",
    *(inspect.getsource(part) for part in _PARTS),
    """
class RunSide(KernelSide):
    # the view's interpreter is the system's python3, whose os.dup2 with a negative fd raises an
    # OSError without errno (the venv's raises EBADF): the libc call gives the kernel's answer
    def call(self, op):
        if op[0] in ("dup2", "dup3") and min(op[1], op[2]) < 0:
            if op[0] == "dup2":
                return self.sys("dup2", op[1], op[2])
            return self.sys("dup3", op[1], op[2], os.O_CLOEXEC)
        return super().call(op)

def _norm(result):
    # an unexpected exception: its type and message only (tracebacks differ between the sides)
    return repr(result if result is None or result[0] != "exc" else result[:2])

calls = pickle.loads(sys.stdin.buffer.read())
os.dup2(1, RESULT_FD)
os.closerange(0, RESULT_FD)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
side = RunSide()
os.chdir(MOUNT)
os.umask(0o022)
results = [_norm(outcome(lambda op=op: side.call(op))) if op else None for op in calls]

def snap_call(op):
    if op[0] == "lstat_raw":
        return os.lstat(op[1])
    if op[0] == "fstat_raw":
        return os.fstat(op[1])
    if op[0] == "getcwd":
        return os.getcwd()
    return side.call(op)

snap = repr(outcome(lambda: snapshot(snap_call, _kernel_read_file)))
data = memoryview(pickle.dumps((results, snap)))
while data:
    data = data[os.write(RESULT_FD, data):]
"""])


def _norm(result: tuple | None) -> str | None:
    return None if result is None else repr(result if result[0] != "exc" else result[:2])


@pytest.fixture(scope="module", autouse=True)
def _runner() -> None:
    from fuse_helpers import fuse_unavailable

    require(os.geteuid() == 0, "the kernel side runs in a chroot: needs root")
    why = fuse_unavailable()
    require(why is None, f"libos run needs FUSE: {why}")
    why = runner_state()
    require(why is None, f"libos run unavailable: {why}")


def _view(base: Path, kind: str) -> View:
    """A view with the mount under test at /m, its root mode 0755 as on the kernel side."""
    folder = base / "m-host"
    folder.mkdir()
    folder.chmod(0o755)
    if kind == "tmpfs":
        mount = {"type": "tmpfs", "path": "/m"}
    elif kind == "chroot":
        mount = {"type": "chroot", "path": "/m", "uri": f"file:{folder}"}
    else:
        mount = {"type": "encrypted", "path": "/m", "uri": f"file:{folder}", "key_name": "k"}
    # a file policy makes the runner serve /m through the view's FUSE bridge (an unchecked chroot
    # mount would be a bind mount of the host folder: the kernel against itself); the host parts
    # are all allowed, so they stay bind mounts
    extra = {"sgx.file_check_policy": "allow_all_but_log",
             "sgx.allowed_files": [m["uri"] + "/" for m in host_mounts()]}
    return View(base / "view", PYTHON, start_dir="/m", extra_mounts=[mount], extra=extra)


def check_in_run(kind: str, program: list[tuple], base: Path) -> None:
    view = _view(base, kind)
    root_mode = 0o1777 if kind == "tmpfs" else 0o755  # the view's tmpfs root is a /tmp-like folder
    calls_results, ksnap = td.run_on_kernel(program, root_mode, kind=kind)
    calls = [c for c, _ in calls_results]
    kres = [_norm(r) for _, r in calls_results]
    proc = view.run("-c", EXECUTOR, input=pickle.dumps(calls))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    lres, lsnap = pickle.loads(proc.stdout)
    for i, (k, lo) in enumerate(zip(kres, lres, strict=True)):
        if k != lo:
            lines = [f"{kind} mount inside libos run differs from the kernel at call {i}:"]
            for j, op in enumerate(calls[:i + 1]):
                if op is not None:
                    theirs = f" / run {lres[j]}" if j == i else ""
                    lines.append(f"  {j:2} {td.describe(op)}  kernel {kres[j]}{theirs}")
            raise AssertionError("\n".join(lines))
    assert repr(("ok", ksnap[1]) if ksnap[0] == "ok" else ksnap) == lsnap, "final state differs"


VARIANTS = {"tmpfs": (30, 20, True), "chroot": (30, 20, True), "encrypted": (20, 15, False)}


def _make_test(kind: str):
    n_examples, steps, links = VARIANTS[kind]
    setup = td.setup_program(links=links)

    @settings(max_examples=examples(n_examples), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(program=st_.lists(td.operations(links=links, fifos=links), min_size=1, max_size=steps))
    def test(program, tmp_path):
        import tempfile

        check_in_run(kind, setup + program, Path(tempfile.mkdtemp(prefix="run-diff-", dir=tmp_path)))

    test.__name__ = f"test_run_differential_{kind}"
    return test


test_run_differential_tmpfs = _make_test("tmpfs")
test_run_differential_chroot = _make_test("chroot")
test_run_differential_encrypted = _make_test("encrypted")


def test_executor_matches_the_kernel_on_a_fixed_program(tmp_path: Path) -> None:
    """The setup program alone (files, a folder, descriptors 0-2, a symlink) on a tmpfs /m: the
    harness itself agrees with the kernel."""
    check_in_run("tmpfs", [*td.setup_program(links=True), ("fstat", 0), ("listdir", ".")], tmp_path)
