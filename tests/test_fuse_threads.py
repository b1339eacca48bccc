"""A multithreaded FUSE mount (``libos run``, ``libos mount``): libfuse's worker threads keep one
Python thread state each, instead of ctypes making and freeing one per request.

Structural, not timed: a real mount of a tmpfs VFS, served multithreaded in a subprocess, whose
VFS lookups note whether the calling thread's ``threading.local`` still holds what an earlier
request on that thread put there (it doesn't when the thread state is new).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fuse_helpers import fuse_unavailable
from helpers import require

ROOT = Path(__file__).resolve().parent.parent
_why = fuse_unavailable()
require(_why is None, f"real FUSE mounts unavailable: {_why}")

DRIVER = r"""
import json, os, subprocess, sys, threading
from vfs.fuse import serve
from vfs.mount import MountTable
from vfs.tmpfs import TmpFs
from vfs.vfs import VFS

mnt = sys.argv[1]
vfs = VFS(MountTable())
vfs.mounts.mount("/", TmpFs())
local = threading.local()
calls = []  # (thread, whether this thread's state was seen before)
lookup = vfs.lookup

def noting(*args, **kwargs):
    calls.append((threading.get_ident(), getattr(local, "seen", False)))
    local.seen = True
    return lookup(*args, **kwargs)

vfs.lookup = noting
up = threading.Event()
server = threading.Thread(target=serve, args=(vfs, mnt), daemon=True,
                          kwargs={"writable": True, "multithreaded": True, "ready": up.set})
server.start()
if not up.wait(30):
    sys.exit("not mounted")
for n in range(300):
    try:
        os.stat(os.path.join(mnt, f"missing-{n}"))
    except FileNotFoundError:
        pass
subprocess.run(["fusermount3", "-u", mnt], check=True)
server.join(30)
print(json.dumps({"calls": len(calls), "threads": len({t for t, _ in calls}),
                  "new_states": sum(1 for _, seen in calls if not seen)}))
"""


def test_libfuse_threads_keep_their_python_thread_state(tmp_path: Path) -> None:
    """300 lookups on a multithreaded mount: one new thread state per libfuse thread, not per request."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(mnt)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["calls"] >= 300
    assert seen["new_states"] == seen["threads"], seen


VIEW_DRIVER = r"""
import json, os, sys, threading
from pal import namespaces as ns
from vfs.fuse import serve
from vfs.mount import MountTable
from vfs.tmpfs import TmpFs
from vfs.vfs import VFS

vfs = VFS(MountTable())
vfs.mounts.mount("/", TmpFs())
fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
view = ns.fs_mount("fuse", {"fd": str(fd), "rootmode": "40000", "user_id": "0", "group_id": "0"})
up, names = threading.Event(), []
def ready():
    names.extend(t.name for t in threading.enumerate())
    up.set()
server = threading.Thread(target=serve, args=(vfs, f"/dev/fd/{fd}"), daemon=True,
                          kwargs={"writable": True, "multithreaded": True, "ready": ready})
server.start()
if not up.wait(30):
    sys.exit("not served")
os.close(view)  # the detached mount's only reference: the session ends
server.join(30)
print(json.dumps({"threads": names, "ended": not server.is_alive()}))
"""


def test_a_mount_served_on_its_device_fd_is_not_watched_for(tmp_path: Path) -> None:
    """``libos run`` serves a detached mount it made (``/dev/fd/N``) and sets its read-ahead
    itself: no thread reads the mount table looking for it (one did, every 20 ms for 10 s of
    every run, its parsing competing with the requests for the GIL)."""
    proc = subprocess.run([sys.executable, "-c", VIEW_DRIVER], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["ended"]
    assert [n for n in seen["threads"] if "read_ahead" in n or "read-ahead" in n] == []
