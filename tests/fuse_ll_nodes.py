"""Run by tests/test_fuse_lowlevel.py: serve a tmpfs VFS through the low-level bridge in this
process (``python fuse_ll_nodes.py MOUNTPOINT``), work through the mount, and check the bridge's
node table against what the kernel holds; prints ``ok`` (an AssertionError otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

FUSERMOUNT = shutil.which("fusermount3") or "fusermount3"


def _drop_dentries() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")  # dentries and inodes: the kernel FORGETs the nodes it no longer holds


def _check_nodes(mnt: Path) -> None:
    from vfs.fuse_ll_serve import serve_lowlevel
    from vfs.fuse_nodes import ROOT
    from vfs.tmpfs import TmpFs
    from vfs.vfs import VFS

    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    got: list = []
    up = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            serve_lowlevel(vfs, str(mnt), writable=True, multithreaded=True, ready=up.set, on_bridge=got.append)
        except BaseException as exc:
            failure.append(exc)
            up.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert up.wait(30) and not failure, failure
    ll = got[0]
    try:
        (mnt / "d").mkdir()
        for i in range(40):
            (mnt / "d" / f"f{i}").write_bytes(b"x" * i)
        os.link(mnt / "d" / "f1", mnt / "d" / "g1")
        assert os.stat(mnt / "d" / "g1").st_nlink == 2
        assert len(ll.table.nodes) == 1 + 1 + 40  # root, d, 40 files (f1 and g1 are one node)
        ctx = vfs.context()
        keys = {name: (s.st_dev, s.st_ino) for name in ("f1", "f2") for s in [vfs.stat(ctx, f"/d/{name}")]}
        assert sorted(name for _, name in ll.table.nodes[ll.table.by_key[keys["f1"]]].names) == ["f1", "g1"]
        fd = os.open(mnt / "d" / "f2", os.O_RDONLY)  # open: its node must outlive its name
        try:
            for i in range(40):
                os.unlink(mnt / "d" / f"f{i}")
            _drop_dentries()
            deadline = time.monotonic() + 30
            while len(ll.table.nodes) > 4 and time.monotonic() < deadline:  # root, d, g1's file, the open f2
                _drop_dentries()
                time.sleep(0.05)
            assert len(ll.table.nodes) <= 4
            # open: the kernel holds it, so does the table (no longer under its inode number: a
            # new file given that number would be another node)
            assert [n.key for n in ll.table.nodes.values()].count(keys["f2"]) == 1 and keys["f2"] not in ll.table.by_key
            assert os.fstat(fd).st_size == 2 and os.pread(fd, 10, 0) == b"xx"
        finally:
            os.close(fd)
        os.unlink(mnt / "d" / "g1")
        os.rmdir(mnt / "d")
        deadline = time.monotonic() + 30
        while len(ll.table.nodes) > 1 and time.monotonic() < deadline:
            _drop_dentries()
            time.sleep(0.05)
        assert list(ll.table.nodes) == [ROOT] and ll.table.entries == {} and ll.table.by_key == {}
    finally:
        subprocess.run([FUSERMOUNT, "-u", str(mnt)], capture_output=True)
        thread.join(30)
    assert not thread.is_alive() and not failure and not os.path.ismount(mnt), failure



if __name__ == "__main__":
    _check_nodes(Path(sys.argv[1]))
    print("ok")
