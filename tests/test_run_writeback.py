"""What the writeback cache of ``libos run``'s view changes in the kernel's requests, served with
the caller's rights as Linux grants them (compared with the real kernel on a scratch folder).

With the writeback cache (on in ``libos run``, off in ``libos mount``) the kernel reads pages of
files opened write-only, so the bridge opens them read-write, and it keeps a regular file's mtime
itself, so a touch (``utimensat`` with both times "now") arrives as "atime now" plus the kernel's
clock for mtime, and at an fsync or close it sends the mtime a write gave the file (atime
omitted). These came back as the caller's refusals: a write-only open of a file the caller may
write but not read gave EACCES, a touch by a writer who isn't the owner EPERM (pjdfstest open/06
and utimensat/06 inside ``libos run``), and so did the fsync (or, at times, the close) after such
a writer's write.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fuse_helpers import fuse_unavailable
from helpers import require
from run_helpers import ENV, View, host_mounts, runner_state

NOBODY = 65534
SETPRIV = shutil.which("setpriv")

# as root: the folder open to all, a file of root's that everyone may write, with an old mtime
SETUP = """
import os
os.chmod('.', 0o1777)
fd = os.open('other', os.O_CREAT | os.O_WRONLY, 0o666)
os.close(fd)
os.chmod('other', 0o666)
os.utime('other', ns=(10**9, 10**9))
"""

# as nobody: a write-only file of its own, and root's file touched
OPS = """
import errno, json, os
out = {}
def do(name, fn):
    try:
        r = fn()
        out[name] = 'ok' if r is None else r
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
def write(path, data, flags):
    fd = os.open(path, flags)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)
fd = os.open('wo', os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o200)
os.write(fd, b'first ')
os.close(fd)
do('open wo O_WRONLY', lambda: write('wo', b'second', os.O_WRONLY))
do('open wo O_WRONLY|O_APPEND', lambda: write('wo', b'+', os.O_WRONLY | os.O_APPEND))
do('open wo O_RDWR', lambda: write('wo', b'x', os.O_RDWR))
do('open wo O_RDONLY', lambda: os.close(os.open('wo', os.O_RDONLY)))
do('size wo', lambda: os.stat('wo').st_size)
do('touch other', lambda: os.utime('other'))
do('other touched', lambda: os.stat('other').st_mtime_ns > 10**9 and os.stat('other').st_atime_ns > 10**9)
do('set times of other', lambda: os.utime('other', ns=(5 * 10**17, 5 * 10**17)))
do('write other', lambda: write('other', b'y', os.O_WRONLY))
def write_fsync(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
        os.fsync(fd)  # the kernel flushes the mtime its write gave the file, as this caller
    finally:
        os.close(fd)
do('write and fsync other', lambda: write_fsync('other', b'z'))
do('size other', lambda: os.stat('other').st_size)
print(json.dumps(out))
"""


def script() -> str:
    return (f"python3 -c {_quote(SETUP)} && "
            f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups python3 -c {_quote(OPS)}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.mark.parametrize("kind", ["chroot", "tmpfs"])
def test_write_only_opens_and_touches_as_the_kernel_grants(tmp_path: Path, kind: str) -> None:
    why = runner_state() or fuse_unavailable()
    require(why is None, f"libos run unavailable: {why}")
    require(os.geteuid() == 0, "the test changes users: it needs root")
    require(SETPRIV is not None, "setpriv (util-linux) not found")
    served, scratch = tmp_path / "served", tmp_path / "scratch"
    served.mkdir()
    scratch.mkdir()
    mount = ({"type": "chroot", "path": "/m", "uri": f"file:{served}"} if kind == "chroot"
             else {"type": "tmpfs", "path": "/m"})
    # a file policy serves the chroot /m through the view's FUSE bridge (else: a host bind mount)
    extra = {"sgx.file_check_policy": "allow_all_but_log",
             "sgx.allowed_files": [m["uri"] + "/" for m in host_mounts()]}
    view = View(tmp_path / "view", "/bin/sh", start_dir="/m", extra_mounts=[mount], extra=extra)
    proc = view.run("-c", script())
    assert proc.returncode == 0, proc.stderr[-2000:]
    inside = json.loads(proc.stdout)
    native = subprocess.run(["sh", "-c", script()], cwd=scratch, capture_output=True, text=True,
                            env=dict(ENV), timeout=120)
    assert native.returncode == 0, native.stderr
    kernel = json.loads(native.stdout)
    assert kernel["open wo O_WRONLY"] == 6 and kernel["open wo O_RDWR"] == "EACCES"  # the claim is the kernel's
    assert kernel["touch other"] == "ok" and kernel["set times of other"] == "EPERM"
    assert kernel["write and fsync other"] == "ok"
    assert inside == kernel
    if kind == "chroot":
        assert (served / "wo").read_bytes() == b"second+"
