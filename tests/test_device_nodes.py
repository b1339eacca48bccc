"""Device nodes on chroot and tmpfs mounts: made by root with their numbers, kept, never opened.

A character or block device node made in a view is a name only: it can be stat'ed (type, mode,
``st_rdev``), chmod'ed, chown'ed, linked, renamed and removed, as on Linux, but opening it gives
EACCES, as on a ``nodev`` mount. The comparison is with the real kernel on a scratch tmpfs mounted
``nodev`` (Linux's own answer for the same calls): through the VFS API (``LibOS`` processes),
through ``libos mount`` and inside ``libos run`` (a real process in the view). Only root makes
them (EPERM for others, as Linux asks CAP_MKNOD); encrypted mounts refuse them (EPERM: files and
folders only, as Gramine).
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import shutil
import stat as st
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuse_helpers import LIBOS, Mounter, fuse_unavailable, mounted, run
from helpers import require
from run_helpers import PYTHON, View, host_mounts, runner_state

NOBODY = 65534
SETPRIV = shutil.which("setpriv")


def device_ops(folder: str) -> dict[str, object]:
    """Every call a program makes on device nodes in ``folder``: its result or its errno name.
    (Sent as source text to the process inside ``libos run``: standard library only.)"""
    import errno
    import os
    import stat

    out: dict[str, object] = {}

    def do(name, fn):
        try:
            result = fn()
            out[name] = "ok" if result is None else result
        except OSError as exc:
            out[name] = errno.errorcode[exc.errno]

    def lstat(path):
        s = os.lstat(path)
        return [stat.filemode(s.st_mode), os.major(s.st_rdev), os.minor(s.st_rdev), s.st_nlink, s.st_size]

    def opened(path, flags):
        os.close(os.open(path, flags))

    c, b, big = (os.path.join(folder, n) for n in ("c", "b", "big"))
    do("mknod c 1:3", lambda: os.mknod(c, 0o640 | stat.S_IFCHR, os.makedev(1, 3)))  # /dev/null's
    do("mknod b 7:0", lambda: os.mknod(b, 0o644 | stat.S_IFBLK, os.makedev(7, 0)))  # /dev/loop0's
    do("mknod c 511:70000", lambda: os.mknod(big, 0o600 | stat.S_IFCHR, os.makedev(511, 70000)))
    for path in (c, b, big):
        do(f"stat {os.path.basename(path)}", lambda p=path: lstat(p))
    do("mknod c again", lambda: os.mknod(c, 0o600 | stat.S_IFCHR, os.makedev(1, 3)))
    for name, flags in (("r", os.O_RDONLY), ("w", os.O_WRONLY), ("rw trunc", os.O_RDWR | os.O_TRUNC),
                        ("path", os.O_PATH)):
        do(f"open c {name}", lambda f=flags: opened(c, f))
    do("open b r", lambda: opened(b, os.O_RDONLY))
    do("chmod c", lambda: os.chmod(c, 0o606))
    do("chown c", lambda: os.chown(c, 65534, 65534))
    do("link c c2", lambda: os.link(c, c + "2"))
    do("stat c2", lambda: lstat(c + "2"))
    do("rename b b2", lambda: os.rename(b, b + "2"))
    do("stat b2", lambda: lstat(b + "2"))
    do("names", lambda: sorted(os.listdir(folder)))
    for name in ("c", "c2", "b2", "big"):
        do(f"unlink {name}", lambda n=name: os.unlink(os.path.join(folder, n)))
    do("names after", lambda: sorted(os.listdir(folder)))
    return out


def as_nobody(folder: Path) -> dict[str, object]:
    """mknod of a device by another user, in a folder it may write (a real subprocess)."""
    code = ("import errno, json, os, stat, sys\n"
            "out = {}\n"
            "for name, kind in (('c', stat.S_IFCHR), ('b', stat.S_IFBLK), ('fifo', stat.S_IFIFO)):\n"
            "    try:\n"
            "        os.mknod(os.path.join(sys.argv[1], name), 0o600 | kind, os.makedev(1, 3))\n"
            "        out[name] = 'ok'\n"
            "    except OSError as e:\n"
            "        out[name] = errno.errorcode[e.errno]\n"
            "print(json.dumps(out))\n")
    proc = subprocess.run([SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", PYTHON, "-c", code,
                           str(folder)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def kernel() -> Iterator[Path]:
    """A scratch tmpfs of the real kernel, mounted nodev (mode 1777): Linux's answers."""
    require(os.geteuid() == 0, "device nodes and mounts need root")
    folder = Path(tempfile.mkdtemp(prefix="pfskit-devnodes-kernel-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nodev,mode=1777", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


def expected(kernel_ops: dict[str, object]) -> None:
    """What the kernel side itself must show, so the comparison can't pass by both sides failing."""
    assert kernel_ops["mknod c 1:3"] == "ok" and kernel_ops["stat c"] == ["crw-r-----", 1, 3, 1, 0]
    assert kernel_ops["stat big"] == ["crw-------", 511, 70000, 1, 0]
    assert kernel_ops["stat b2"] == ["brw-r--r--", 7, 0, 1, 0]
    assert kernel_ops["open c r"] == kernel_ops["open c w"] == kernel_ops["open b r"] == "EACCES"
    assert kernel_ops["open c path"] == "ok" and kernel_ops["mknod c again"] == "EEXIST"
    assert kernel_ops["names after"] == []


# ---------------------------------------------------------------------- the VFS API


def _libos(tmp_path: Path):
    from libos import LibOS

    host = tmp_path / "host"
    (tmp_path / "enc").mkdir()
    host.mkdir()
    text = f'''
libos.entrypoint = "/h/none"
fs.mounts = [
  {{ type = "chroot", path = "/h", uri = "file:{host}/" }},
  {{ type = "tmpfs", path = "/t" }},
  {{ type = "encrypted", path = "/e", uri = "file:{tmp_path}/enc/", key_name = "k" }},
]
fs.insecure__keys.k = "{"ab" * 16}"
'''
    path = tmp_path / "m.toml"
    path.write_text(text)
    return LibOS.boot(path), host


@pytest.mark.parametrize("folder", ["/h", "/t"])
def test_vfs_keeps_device_nodes_and_never_opens_them(tmp_path: Path, folder: str) -> None:
    """``Process.mknod`` with a device number: stat shows it, open gives EACCES, others EPERM."""
    require(os.geteuid() == 0, "device nodes on the host need root")
    lo, host = _libos(tmp_path)
    p = lo.process()
    p.mknod(f"{folder}/c", 0o640 | st.S_IFCHR, os.makedev(1, 3))
    p.mknod(f"{folder}/b", 0o600 | st.S_IFBLK, os.makedev(7, 0))
    s = p.stat(f"{folder}/c")
    assert (st.S_ISCHR(s.st_mode), st.S_IMODE(s.st_mode), os.major(s.st_rdev), os.minor(s.st_rdev)) == \
        (True, 0o640, 1, 3)
    s = p.stat(f"{folder}/b")
    assert (st.S_ISBLK(s.st_mode), os.major(s.st_rdev), os.minor(s.st_rdev)) == (True, 7, 0)
    if folder == "/h":  # made on the host as asked
        assert (host / "c").lstat().st_rdev == os.makedev(1, 3) and st.S_ISBLK((host / "b").lstat().st_mode)
    for path, flags in ((f"{folder}/c", os.O_RDONLY), (f"{folder}/c", os.O_WRONLY), (f"{folder}/b", os.O_RDWR)):
        with pytest.raises(OSError) as info:
            p.open(path, flags)
        assert info.value.errno == errno.EACCES
    p.rename(f"{folder}/c", f"{folder}/c2")
    p.link(f"{folder}/c2", f"{folder}/c3")
    assert p.stat(f"{folder}/c3").st_nlink == 2
    p.chmod(f"{folder}/c3", 0o600)
    p.unlink(f"{folder}/c2")
    p.unlink(f"{folder}/c3")
    nobody = lo.process(uid=NOBODY, gid=NOBODY)
    p.chmod(folder, 0o1777)
    with pytest.raises(OSError) as info:
        nobody.mknod(f"{folder}/n", 0o600 | st.S_IFCHR, os.makedev(1, 3))
    assert info.value.errno == errno.EPERM
    p.chmod(folder, 0o755)
    with pytest.raises(OSError) as info:  # the folder's permission first, as Linux
        nobody.mknod(f"{folder}/n", 0o600 | st.S_IFCHR, os.makedev(1, 3))
    assert info.value.errno == errno.EACCES
    fd = p.open("/dev/null", os.O_WRONLY)  # the VFS's own devices still open
    assert p.write(fd, b"x") == 1


def test_vfs_encrypted_mount_refuses_device_nodes(tmp_path: Path) -> None:
    lo, _ = _libos(tmp_path)
    p = lo.process()
    for kind in (st.S_IFCHR, st.S_IFBLK):
        with pytest.raises(OSError) as info:
            p.mknod(f"/e/{kind}", 0o600 | kind, os.makedev(1, 3))
        assert info.value.errno == errno.EPERM
    assert not any((tmp_path / "enc").iterdir())


# ---------------------------------------------------------------------- through libos mount


@pytest.fixture
def mount_view(tmp_path: Path) -> Iterator[Path]:
    """A ``libos mount --allow-other`` of chroot /h, tmpfs /t and encrypted /e below a 0755 folder."""
    why = fuse_unavailable()
    require(why is None, f"real FUSE mounts unavailable: {why}")
    base = Path(tempfile.mkdtemp(prefix="pfskit-devnodes-", dir="/tmp"))
    base.chmod(0o755)
    for name in ("host", "enc", "mnt"):
        (base / name).mkdir()
    (base / "host").chmod(0o1777)
    (base / "m.toml").write_text(f'''
libos.entrypoint = "/h/none"
fs.mounts = [
  {{ type = "chroot", path = "/h", uri = "file:host/" }},
  {{ type = "tmpfs", path = "/t" }},
  {{ type = "encrypted", path = "/e", uri = "file:enc/", key_name = "k" }},
]
fs.insecure__keys.k = "{"cd" * 16}"
''')
    mounter = Mounter(tmp_path)
    try:
        mounter.foreground([LIBOS, "mount", "--allow-other", "m.toml", "mnt"], "mnt", cwd=base)
        os.chmod(base / "mnt" / "t", 0o1777)
        yield base
    finally:
        mounter.cleanup()
        for m in mounter.mounts:
            assert not mounted(m.mountpoint)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("folder", ["h", "t"])
def test_libos_mount_device_nodes_as_a_nodev_kernel_mount(mount_view: Path, kernel: Path, folder: str) -> None:
    """Through ``libos mount`` device nodes behave as on the kernel's nodev tmpfs, call by call."""
    require(SETPRIV is not None, "setpriv (util-linux) not found")
    kernel_ops = device_ops(str(kernel))
    expected(kernel_ops)
    assert device_ops(str(mount_view / "mnt" / folder)) == kernel_ops
    assert as_nobody(mount_view / "mnt" / folder) == as_nobody(kernel) == {"c": "EPERM", "b": "EPERM", "fifo": "ok"}
    assert "nodev" in run(["findmnt", "-no", "OPTIONS", str(mount_view / "mnt")]).stdout.split(",")


def test_libos_mount_encrypted_refuses_device_nodes(mount_view: Path) -> None:
    for kind in (st.S_IFCHR, st.S_IFBLK):
        with pytest.raises(PermissionError):
            os.mknod(mount_view / "mnt" / "e" / "d", 0o600 | kind, os.makedev(1, 3))
    assert not any((mount_view / "enc").iterdir())


# ---------------------------------------------------------------------- inside libos run


def test_libos_run_device_nodes_as_a_nodev_kernel_mount(tmp_path: Path, kernel: Path) -> None:
    """A real process inside ``libos run`` gets the kernel's answers on a served chroot mount (/m),
    a tmpfs (/t) and a host bind mount (/b, an unchecked chroot mount: nodev too); encrypted
    mounts refuse device nodes."""
    why = runner_state() or fuse_unavailable()
    require(why is None, f"libos run unavailable: {why}")
    require(os.geteuid() == 0, "device nodes need root")
    served, bound = tmp_path / "served", tmp_path / "bound"
    for d in (served, bound):
        d.mkdir()
    # a file policy serves /m through the view's FUSE bridge; /b and the host parts, all allowed,
    # stay bind mounts
    extra = {"sgx.file_check_policy": "allow_all_but_log",
             "sgx.allowed_files": [m["uri"] + "/" for m in host_mounts()] + [f"file:{bound}/"]}
    view = View(tmp_path / "view", PYTHON, start_dir="/", extra=extra, extra_mounts=[
        {"type": "chroot", "path": "/m", "uri": f"file:{served}"},
        {"type": "chroot", "path": "/b", "uri": f"file:{bound}"},
        {"type": "tmpfs", "path": "/t"}])
    program = "\n".join([
        "import json, os, stat",
        inspect.getsource(device_ops),
        "out = {f: device_ops(f) for f in ('/m', '/t', '/b')}",
        "mounts = [line.split()[4] for line in open('/proc/self/mountinfo')]",
        "out['own mounts'] = [f for f in ('/m', '/t', '/b') if f in mounts]",
        "enc = []",
        "for kind in (stat.S_IFCHR, stat.S_IFBLK):",
        "    try:",
        "        os.mknod('/data/d', 0o600 | kind, os.makedev(1, 3))",
        "    except OSError as e:",
        "        enc.append(e.errno)",
        "out['encrypted'] = enc",
        "print(json.dumps(out))",
    ])
    proc = view.run("-c", program)
    assert proc.returncode == 0, proc.stderr[-2000:]
    inside = json.loads(proc.stdout)
    kernel_ops = device_ops(str(kernel))
    expected(kernel_ops)
    assert inside["own mounts"] == ["/b"]  # /m and /t are the view's (served), /b a host bind
    for folder in ("/m", "/t", "/b"):
        assert inside[folder] == kernel_ops, folder
    assert inside["encrypted"] == [errno.EPERM, errno.EPERM]


def test_tar_extracts_device_nodes_inside_libos_run(tmp_path: Path, kernel: Path) -> None:
    """``tar -x`` of a root file system's /dev part inside ``libos run`` (chroot and tmpfs mounts):
    the nodes come out as the kernel's tar makes them, and none opens."""
    why = runner_state() or fuse_unavailable()
    require(why is None, f"libos run unavailable: {why}")
    require(shutil.which("tar") is not None, "tar not found")
    src = kernel / "dev"
    src.mkdir()
    os.mknod(src / "null", 0o666 | st.S_IFCHR, os.makedev(1, 3))
    os.mknod(src / "sda", 0o660 | st.S_IFBLK, os.makedev(8, 0))
    os.chown(src / "sda", 0, 6)
    for name, mode in (("null", 0o666), ("sda", 0o660)):
        os.chmod(src / name, mode)
    (src / "file").write_bytes(b"data")
    archive = tmp_path / "archive"
    archive.mkdir()
    subprocess.run(["tar", "-cpf", str(archive / "dev.tar"), "-C", str(kernel), "dev"], check=True)
    served = tmp_path / "served"
    served.mkdir()
    extra = {"sgx.file_check_policy": "allow_all_but_log",
             "sgx.allowed_files": [m["uri"] + "/" for m in host_mounts()] + [f"file:{archive}/"]}
    view = View(tmp_path / "view", "/bin/sh", start_dir="/", extra=extra, extra_mounts=[
        {"type": "chroot", "path": "/m", "uri": f"file:{served}"},
        {"type": "chroot", "path": "/archive", "uri": f"file:{archive}"},
        {"type": "tmpfs", "path": "/t"}])
    listing = "stat -c '%n %F %a %t:%T %u:%g %s' dev/null dev/sda dev/file"
    script = " && ".join(f"cd {d} && tar -xpf /archive/dev.tar && {listing} && (cat dev/null; echo open=$?)"
                         for d in ("/m", "/t"))
    proc = view.run("-c", script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    native = subprocess.run(["sh", "-c", f"{listing} && (cat dev/null; echo open=$?)"], cwd=kernel,
                            capture_output=True, text=True, check=True)
    assert "character special file 666 1:3 0:0 0" in native.stdout and "block special file 660 8:0 0:6" in native.stdout
    assert "open=1" in native.stdout
    assert proc.stdout == native.stdout * 2
    assert (served / "dev" / "sda").lstat().st_rdev == os.makedev(8, 0)
