"""ProcFs through the VFS, with formats checked against the real kernel's /proc."""

from __future__ import annotations

import errno
import os
import re
import stat as st
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import pytest

from vfs.dev import DevFs
from vfs.proc import ProcessInfo, ProcFs
from vfs.tmpfs import TmpFs
from vfs.vfs import VFS

IS_ROOT = os.geteuid() == 0


class DictProvider:
    """A plain ProcProvider over dicts (test data: the LibOS implements the same protocol)."""

    def __init__(self) -> None:
        self.current = 7
        self.procs: dict[int, ProcessInfo] = {}
        self.mounts: list[tuple] = [("tmpfs", "/", "tmpfs", "rw,relatime"), ("proc", "/proc", "proc", "rw,nosuid"),
                                    ("devtmpfs", "/dev", "devtmpfs", "rw"),
                                    ("/host data", "/jail/data", "chroot", "ro,nodev,uid=3")]

    def add(self, pid: int, **fields) -> ProcessInfo:
        base = dict(pid=pid, ppid=1, comm="python3", cmdline=["python3", "-c", "pass"], cwd="/tmp",
                    exe="/usr/bin/python3", root="/", fds={0: "/dev/null", 1: "pipe:[42]", 2: "/tmp/log"},
                    uid=0, gid=0, umask=0o022, state="R", threads=1, start_time_ns=time.time_ns(),
                    environ={"HOME": "/root", "LANG": "C"})
        base.update(fields)
        info = self.procs[pid] = ProcessInfo(**base)
        return info

    def current_pid(self) -> int:
        return self.current

    def pids(self) -> list[int]:
        return sorted(self.procs)

    def process(self, pid: int) -> ProcessInfo | None:
        return self.procs.get(pid)

    def mount_lines(self) -> list[tuple]:
        return list(self.mounts)


@pytest.fixture
def env():
    provider = DictProvider()
    provider.add(1, ppid=0, comm="init", cmdline=["/sbin/init"])
    provider.add(7, fdinfo={0: (0, os.O_RDONLY), 1: (0, os.O_WRONLY), 2: (123, os.O_RDWR | os.O_APPEND)})
    vfs = VFS()
    vfs.mounts.mount("/", TmpFs())
    vfs.mounts.mount("/proc", ProcFs(provider))
    vfs.mounts.mount("/dev", DevFs(None))
    ctx = vfs.context()
    vfs.mkdir(ctx, "/tmp")
    return vfs, ctx, provider


def read(vfs, ctx, path: str) -> bytes:
    f = vfs.open(ctx, path, os.O_RDONLY)
    try:
        out = b""
        while chunk := f.read(7):  # small reads: offsets must advance correctly
            out += chunk
        return out
    finally:
        f.decref()


def host(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def oserror(fn) -> int:
    with pytest.raises(OSError) as info:
        fn()
    return info.value.errno


# ---------------------------------------------------------------------------------------------- self, pids


def test_self_resolves_to_current_pid(env):
    vfs, ctx, provider = env
    assert vfs.readlink(ctx, "/proc/self") == "7"
    assert vfs.lookup(ctx, "/proc/self").path == "/proc/7"
    assert read(vfs, ctx, "/proc/self/comm") == b"python3\n"
    provider.current = 1
    assert vfs.readlink(ctx, "/proc/self") == "1"
    assert read(vfs, ctx, "/proc/self/comm") == b"init\n"
    assert st.S_ISLNK(vfs.stat(ctx, "/proc/self", follow=False).st_mode)


def test_root_lists_exactly_live_pids(env):
    vfs, ctx, provider = env
    names = [n for n, _, _ in vfs.listdir(ctx, "/proc")]
    assert [n for n in names if n.isdigit()] == ["1", "7"]
    for name in ("self", "mounts", "meminfo", "cpuinfo", "stat", "uptime", "version", "loadavg", "sys"):
        assert name in names
    provider.add(31)
    del provider.procs[1]
    names = [n for n, _, _ in vfs.listdir(ctx, "/proc")]
    assert [n for n in names if n.isdigit()] == ["7", "31"]
    assert oserror(lambda: vfs.lookup(ctx, "/proc/1")) == errno.ENOENT
    assert oserror(lambda: vfs.lookup(ctx, "/proc/007")) == errno.ENOENT  # Linux: no leading zeros
    assert oserror(lambda: vfs.lookup(ctx, "/proc/7/nope")) == errno.ENOENT


def test_pid_dir_entries_like_linux(env):
    vfs, ctx, _ = env
    ours = [n for n, _, _ in vfs.listdir(ctx, "/proc/7")][2:]
    real = os.listdir("/proc/self")
    assert set(ours) <= set(real)
    assert [n for n in real if n in ours] == ours  # the kernel's order
    for name in ("cmdline", "comm", "cwd", "exe", "root", "fd", "fdinfo", "status", "stat", "environ", "mounts",
                 "mountinfo", "maps"):
        assert name in ours
    for name in ("status", "stat", "cmdline", "environ", "comm", "maps", "mounts", "mountinfo"):
        assert st.S_IMODE(vfs.stat(ctx, f"/proc/7/{name}").st_mode) == st.S_IMODE(os.stat(f"/proc/self/{name}").st_mode)
    assert st.S_IMODE(vfs.stat(ctx, "/proc/7/fd").st_mode) == st.S_IMODE(os.stat("/proc/self/fd").st_mode)


# ---------------------------------------------------------------------------------------------- formats


def _status_fields(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        key, sep, value = line.partition(":\t")
        assert sep, line
        out.append((key, value))
    return out


def test_status_format_matches_kernel(env):
    vfs, ctx, provider = env
    provider.add(7, uid=1000, gid=100, umask=0o027, threads=3, state="S", groups=(100, 27), vm_rss_kb=2048,
                 vm_size_kb=9000)
    ours = _status_fields(read(vfs, ctx, "/proc/self/status").decode())
    real = _status_fields(host("/proc/self/status").decode())
    real_keys = [k for k, _ in real]
    our_keys = [k for k, _ in ours]
    assert len(set(our_keys)) == len(our_keys)
    assert set(our_keys) <= set(real_keys), set(our_keys) - set(real_keys)
    assert [k for k in real_keys if k in our_keys] == our_keys  # same relative order as the kernel's
    for required in ("Name", "Umask", "State", "Tgid", "Pid", "PPid", "Uid", "Gid", "Threads", "VmRSS", "VmSize",
                     "FDSize", "Groups", "CapEff", "Cpus_allowed_list"):
        assert required in our_keys
    o, r = dict(ours), dict(real)
    # the shapes of the values are the kernel's
    for key in our_keys:
        if r[key].endswith(" kB"):
            assert re.fullmatch(r"[ \d]{8} kB", r[key]) and re.fullmatch(r"[ \d]{8} kB", o[key]), key
        assert len(o[key].split("\t")) == len(r[key].split("\t")), key
    assert re.fullmatch(r"[A-Z] \([a-z ]+\)", r["State"]) and o["State"] == "S (sleeping)"
    assert o["Umask"] == "0027" and len(o["Umask"]) == len(r["Umask"])
    assert o["Pid"] == o["Tgid"] == "7" and o["PPid"] == "1"
    assert o["Uid"] == "1000\t1000\t1000\t1000" and o["Gid"] == "100\t100\t100\t100"
    assert o["Groups"] == "100 27 " and r["Groups"].endswith(" ")  # the kernel's trailing space
    assert o["Threads"] == "3" and o["VmRSS"] == "    2048 kB" and o["VmSize"] == "    9000 kB"
    assert o["Cpus_allowed_list"] == ("0" if os.cpu_count() == 1 else f"0-{os.cpu_count() - 1}")
    assert o["CapEff"] == "0" * 16  # not root


def _stat_fields(text: str) -> list[str]:
    head, _, tail = text.rstrip("\n").rpartition(")")
    pid, _, comm = head.partition(" (")
    return [pid, comm, *tail.split()]


def test_stat_layout_matches_kernel(env):
    vfs, ctx, _ = env
    ours = _stat_fields(read(vfs, ctx, "/proc/self/stat").decode())
    real = _stat_fields(host("/proc/self/stat").decode())
    assert len(ours) == len(real) == 52
    assert ours[0] == "7" and ours[1] == "python3" and ours[2] == "R" and ours[3] == "1"
    assert ours[4] == ours[5] == "7"  # pgrp, session
    assert ours[19] == "1"  # num_threads
    # starttime: clock ticks since boot; a process started now began after this test process
    assert int(real[21]) <= int(ours[21]) <= int(real[21]) + 10 * os.sysconf("SC_CLK_TCK") * 3600
    assert all(re.fullmatch(r"-?\d+", f) for f in ours[3:])


@pytest.mark.parametrize("argv", [["python3", "-c", "pass"], ["a b", "ü", "", "--x=1"], ["only"]])
def test_cmdline_equals_kernel_for_same_argv(env, argv):
    vfs, ctx, provider = env
    script = "import sys; sys.stdout.buffer.write(open('/proc/self/cmdline', 'rb').read())"
    real = subprocess.run([sys.executable, "-c", script, *argv], check=True, capture_output=True).stdout
    real_argv = [os.fsdecode(a) for a in real.split(b"\0")[:-1]]
    provider.add(7, cmdline=real_argv)
    assert read(vfs, ctx, "/proc/self/cmdline") == real
    assert real.endswith(b"\0")
    # the test process itself
    mine = host("/proc/self/cmdline")
    provider.add(7, cmdline=[os.fsdecode(a) for a in mine.split(b"\0")[:-1]])
    assert read(vfs, ctx, "/proc/7/cmdline") == mine


def test_environ_equals_kernel(env):
    vfs, ctx, provider = env
    environ = {"A": "1", "B": "x y", "EMPTY": ""}
    script = "import sys; sys.stdout.buffer.write(open('/proc/self/environ', 'rb').read())"
    real = subprocess.run([sys.executable, "-c", script], env=environ, check=True, capture_output=True).stdout
    provider.add(7, environ=dict(item.split("=", 1) for item in os.fsdecode(real).split("\0")[:-1]))
    assert read(vfs, ctx, "/proc/self/environ") == real


def test_fd_dir_lists_exactly_the_provider_fds(env):
    vfs, ctx, provider = env
    names = [n for n, _, _ in vfs.listdir(ctx, "/proc/self/fd")][2:]
    assert names == ["0", "1", "2"]
    assert vfs.readlink(ctx, "/proc/self/fd/0") == "/dev/null"
    assert vfs.readlink(ctx, "/proc/self/fd/1") == "pipe:[42]"
    assert vfs.readlink(ctx, "/proc/self/fd/2") == "/tmp/log"
    assert oserror(lambda: vfs.lookup(ctx, "/proc/self/fd/3", follow=False)) == errno.ENOENT
    # link modes follow the access mode, as the kernel's (lr-x, l-wx, lrwx)
    modes = [st.S_IMODE(vfs.stat(ctx, f"/proc/self/fd/{n}", follow=False).st_mode) for n in names]
    assert modes == [0o500, 0o300, 0o700]
    # following a path target reaches the file
    assert vfs.lookup(ctx, "/proc/self/fd/0").path == "/dev/null"
    provider.procs[7].fds[9] = "/tmp"
    del provider.procs[7].fds[1]
    assert [n for n, _, _ in vfs.listdir(ctx, "/proc/self/fd")][2:] == ["0", "2", "9"]
    assert [n for n, _, _ in vfs.listdir(ctx, "/proc/self/fdinfo")][2:] == ["0", "2", "9"]


def test_fdinfo_format_matches_kernel(env):
    vfs, ctx, _ = env
    ours = read(vfs, ctx, "/proc/self/fdinfo/2").decode()
    assert ours == f"pos:\t123\nflags:\t0{os.O_RDWR | os.O_APPEND:o}\n"
    fd = os.open("/proc/self/status", os.O_RDONLY)
    try:
        real = host(f"/proc/self/fdinfo/{fd}").decode()
    finally:
        os.close(fd)
    real_lines = real.splitlines()
    assert real_lines[0].startswith("pos:\t") and real_lines[1].startswith("flags:\t0")
    assert [line.split("\t")[0] for line in ours.splitlines()] == ["pos:", "flags:"]


def test_cwd_exe_root_links(env):
    vfs, ctx, provider = env
    assert vfs.readlink(ctx, "/proc/self/cwd") == "/tmp"
    assert vfs.readlink(ctx, "/proc/self/exe") == "/usr/bin/python3"
    assert vfs.readlink(ctx, "/proc/self/root") == "/"
    assert vfs.lookup(ctx, "/proc/self/cwd").path == "/tmp"
    provider.add(7, exe="")
    assert oserror(lambda: vfs.readlink(ctx, "/proc/self/exe")) == errno.ENOENT


def _mount_fields(line: str) -> list[str]:
    fields = line.split(" ")
    assert len(fields) == 6, line
    return fields


def test_mounts_format_matches_kernel(env):
    vfs, ctx, _ = env
    ours = read(vfs, ctx, "/proc/self/mounts").decode().splitlines()
    real = host("/proc/self/mounts").decode().splitlines()
    for line in real + ours:
        fields = _mount_fields(line)
        assert fields[4:] == ["0", "0"]
        assert fields[3].split(",")[0] in ("rw", "ro")
    assert ours[0] == "tmpfs / tmpfs rw,relatime 0 0"
    assert ours[3] == "/host\\040data /jail/data chroot ro,nodev,uid=3 0 0"  # the kernel's escaping
    assert vfs.readlink(ctx, "/proc/mounts") == os.readlink("/proc/mounts") == "self/mounts"
    assert read(vfs, ctx, "/proc/mounts") == read(vfs, ctx, "/proc/self/mounts")


def _parse_mountinfo(line: str) -> dict:
    fields = line.split(" ")
    sep = fields.index("-", 6)
    return {"id": int(fields[0]), "parent": int(fields[1]), "dev": fields[2], "root": fields[3],
            "mp": fields[4], "opts": fields[5], "optional": fields[6:sep], "type": fields[sep + 1],
            "source": fields[sep + 2], "super": fields[sep + 3], "n": len(fields) - sep}


def test_mountinfo_format_matches_kernel(env):
    vfs, ctx, _ = env
    real = [_parse_mountinfo(line) for line in host("/proc/self/mountinfo").decode().splitlines()]
    ours = [_parse_mountinfo(line) for line in read(vfs, ctx, "/proc/self/mountinfo").decode().splitlines()]
    assert {r["n"] for r in real} == {r["n"] for r in ours} == {4}
    assert all(re.fullmatch(r"\d+:\d+", r["dev"]) for r in real + ours)
    assert [r["mp"] for r in ours] == ["/", "/proc", "/dev", "/jail/data"]
    ids = {r["id"] for r in ours}
    assert len(ids) == len(ours)
    root, proc, dev, data = ours
    assert root["parent"] not in ids  # as for a chrooted process: the parent of / isn't shown
    assert proc["parent"] == dev["parent"] == data["parent"] == root["id"]
    assert data["opts"] == "ro,nodev" and data["super"] == "ro,uid=3" and data["source"] == "/host\\040data"
    assert proc["opts"] == "rw,nosuid" and proc["type"] == "proc"


def test_mounts_of_a_chrooted_process(env):
    vfs, ctx, provider = env
    provider.add(7, root="/jail")
    assert read(vfs, ctx, "/proc/self/mounts") == b"/host\\040data /data chroot ro,nodev,uid=3 0 0\n"
    info = read(vfs, ctx, "/proc/self/mountinfo").decode().splitlines()
    assert len(info) == 1 and _parse_mountinfo(info[0])["mp"] == "/data"


def test_maps_is_empty(env):
    vfs, ctx, _ = env
    assert read(vfs, ctx, "/proc/self/maps") == b""


# ---------------------------------------------------------------------------------------------- machine files


def test_machine_files_from_the_host(env):
    vfs, ctx, provider = env
    meminfo = read(vfs, ctx, "/proc/meminfo").decode()
    assert re.search(r"^MemTotal:\s+\d+ kB$", meminfo, re.M)
    assert [line.split(":")[0] for line in meminfo.splitlines()] == \
        [line.split(":")[0] for line in host("/proc/meminfo").decode().splitlines()]
    cpuinfo = read(vfs, ctx, "/proc/cpuinfo").decode()
    assert len(re.findall(r"^processor\s*:", cpuinfo, re.M)) == os.cpu_count()
    assert read(vfs, ctx, "/proc/version").startswith(b"Linux version ")
    up = read(vfs, ctx, "/proc/uptime").split()
    assert len(up) == 2 and float(up[0]) > 0
    assert read(vfs, ctx, "/proc/stat").split(b"\n")[0].split()[0] == b"cpu"
    load = read(vfs, ctx, "/proc/loadavg").decode().split()
    assert len(load) == len(host("/proc/loadavg").split()) == 5
    assert load[3] == "2/2" and load[4] == "7"  # the LibOS's processes, not the host's
    provider.add(40, state="S")
    assert read(vfs, ctx, "/proc/loadavg").decode().split()[3:] == ["2/3", "40"]


def test_sys_kernel(env):
    vfs, ctx, _ = env
    assert read(vfs, ctx, "/proc/sys/kernel/ostype") == host("/proc/sys/kernel/ostype") == b"Linux\n"
    assert read(vfs, ctx, "/proc/sys/kernel/osrelease") == host("/proc/sys/kernel/osrelease")
    assert read(vfs, ctx, "/proc/sys/kernel/hostname") == (os.uname().nodename + "\n").encode()
    assert int(read(vfs, ctx, "/proc/sys/kernel/pid_max")) > 0
    boot = read(vfs, ctx, "/proc/sys/kernel/random/boot_id")
    assert boot == read(vfs, ctx, "/proc/sys/kernel/random/boot_id")
    assert str(uuid.UUID(boot.decode().strip())) == boot.decode().strip()
    for text in (boot, read(vfs, ctx, "/proc/sys/kernel/random/uuid")):  # random ones, as Linux's
        made = uuid.UUID(text.decode().strip())
        assert (made.version, made.variant) == (4, uuid.RFC_4122)
    u1, u2 = (read(vfs, ctx, "/proc/sys/kernel/random/uuid") for _ in range(2))
    assert u1 != u2 and len(u1) == len(host("/proc/sys/kernel/random/uuid")) == 37
    assert int(read(vfs, ctx, "/proc/sys/fs/pipe-max-size")) == int(host("/proc/sys/fs/pipe-max-size"))
    for path in ("/proc/sys/kernel/ostype", "/proc/sys/kernel/random/uuid", "/proc/sys/fs/pipe-max-size"):
        assert st.S_IMODE(vfs.stat(ctx, path).st_mode) == st.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------------------------------------- file behaviour


def test_snapshot_at_open_and_size_zero(env):
    vfs, ctx, provider = env
    assert vfs.stat(ctx, "/proc/self/status").st_size == 0 == os.stat("/proc/self/status").st_size
    f = vfs.open(ctx, "/proc/self/cmdline", os.O_RDONLY)
    try:
        provider.add(7, cmdline=["changed"])
        assert f.stat().st_size == 0
        assert f.lseek(0, os.SEEK_END) == len(b"python3\0-c\0pass\0")
        assert f.pread(4, 2) == b"thon"
        assert f.lseek(7, os.SEEK_SET) == 7 and f.read(100) == b"\0-c\0pass\0" and f.read(10) == b""
    finally:
        f.decref()
    assert read(vfs, ctx, "/proc/self/cmdline") == b"changed\0"


def test_inode_numbers_stable_per_pid_and_name(env):
    vfs, ctx, provider = env
    paths = ["/proc/7", "/proc/7/status", "/proc/7/fd", "/proc/7/fd/0", "/proc/7/fdinfo/0", "/proc/1/status",
             "/proc/meminfo", "/proc/sys/kernel/ostype", "/proc/self"]
    first = [vfs.stat(ctx, p, follow=False).st_ino for p in paths]
    assert len(set(first)) == len(first)
    provider.add(7, comm="other")
    assert [vfs.stat(ctx, p, follow=False).st_ino for p in paths] == first
    listed = {n: ino for n, ino, _ in vfs.listdir(ctx, "/proc/7")}
    assert listed["status"] == first[1]


def test_ended_process(env):
    vfs, ctx, provider = env
    f = vfs.open(ctx, "/proc/7/status", os.O_RDONLY)
    del provider.procs[7]
    assert f.read(5) == b"Name:"  # the snapshot outlives the process
    f.decref()
    assert oserror(lambda: vfs.open(ctx, "/proc/7/status", os.O_RDONLY)) == errno.ENOENT
    assert vfs.readlink(ctx, "/proc/self") == "7"
    assert oserror(lambda: vfs.lookup(ctx, "/proc/self")) == errno.ENOENT


@pytest.mark.require(IS_ROOT, "compares root's behaviour with the kernel's")
def test_writes_fail_like_linux_as_root(env):
    vfs, ctx, provider = env
    provider.add(7, fds={})
    for path in ("/proc/self/status", "/proc/self/cmdline", "/proc/self/environ", "/proc/self/mounts",
                 "/proc/meminfo", "/proc/uptime", "/proc/cpuinfo", "/proc/loadavg"):
        fd = os.open(path, os.O_WRONLY)  # the kernel lets root open them for writing
        try:
            real = oserror(lambda fd=fd: os.write(fd, b"x"))
        finally:
            os.close(fd)
        f = vfs.open(ctx, path, os.O_WRONLY)
        try:
            assert oserror(lambda f=f: f.write(b"x")) == real, path
        finally:
            f.decref()
    for path in ("/proc/sys/kernel/ostype", "/proc/sys/kernel/osrelease", "/proc/sys/kernel/random/uuid"):
        real = oserror(lambda path=path: os.open(path, os.O_WRONLY))
        assert oserror(lambda path=path: vfs.open(ctx, path, os.O_WRONLY)) == real == errno.EACCES
    # namespace changes: the kernel's errnos
    cases = [
        (lambda p: os.unlink(p), lambda p: vfs.unlink(ctx, p), "/proc/meminfo"),
        (lambda p: os.unlink(p), lambda p: vfs.unlink(ctx, p), "/proc/self/comm"),
        # (rmdir of a non-empty /proc dir: ENOTEMPTY here, EPERM on Linux; the VFS checks emptiness first)
        (lambda p: os.rmdir(p.replace("/7/", "/self/")), lambda p: vfs.rmdir(ctx, p), "/proc/7/fdinfo"),
        (lambda p: os.mkdir(p), lambda p: vfs.mkdir(ctx, p), "/proc/newdir"),
        (lambda p: os.open(p, os.O_WRONLY | os.O_CREAT, 0o600), lambda p: vfs.open(ctx, p, os.O_WRONLY | os.O_CREAT),
         "/proc/newfile"),
        (lambda p: os.open(p, os.O_WRONLY | os.O_CREAT, 0o600), lambda p: vfs.open(ctx, p, os.O_WRONLY | os.O_CREAT),
         "/proc/self/newfile"),
        (lambda p: os.symlink("x", p), lambda p: vfs.symlink(ctx, "x", p), "/proc/newlink"),
        (lambda p: os.rename("/proc/meminfo", p), lambda p: vfs.rename(ctx, "/proc/meminfo", p), "/proc/cpuinfo"),
        (lambda p: os.rename("/proc/meminfo", p), lambda p: vfs.rename(ctx, "/proc/meminfo", p), "/proc/other"),
        (lambda p: os.link("/proc/meminfo", p), lambda p: vfs.link(ctx, "/proc/meminfo", p), "/proc/other"),
    ]
    for real_op, our_op, path in cases:
        real = oserror(lambda real_op=real_op, path=path: real_op(path))
        assert oserror(lambda our_op=our_op, path=path: our_op(path)) == real, path
    assert oserror(lambda: vfs.open(ctx, "/proc/meminfo", os.O_RDONLY | os.O_DIRECTORY)) == errno.ENOTDIR


def test_non_root_gets_eacces(env):
    vfs, _, provider = env
    user = vfs.context(uid=1000, gid=1000)
    provider.add(7, uid=0, gid=0)
    for path in ("/proc/meminfo", "/proc/7/status", "/proc/sys/kernel/hostname"):
        assert oserror(lambda path=path: vfs.open(user, path, os.O_WRONLY)) == errno.EACCES
    assert oserror(lambda: vfs.open(user, "/proc/7/environ", os.O_RDONLY)) == errno.EACCES
    assert oserror(lambda: vfs.listdir(user, "/proc/7/fd")) == errno.EACCES
    assert read(vfs, user, "/proc/7/status").startswith(b"Name:\tpython3\n")
    provider.add(7, uid=1000, gid=1000)
    assert read(vfs, user, "/proc/7/environ") == b"HOME=/root\0LANG=C\0"
    assert vfs.stat(user, "/proc/7/status").st_uid == 1000


def test_libos_style_provider_fields_are_optional(env):
    vfs, ctx, provider = env
    info = provider.procs[7]
    provider.procs[7] = replace(info, fdinfo={})
    assert read(vfs, ctx, "/proc/self/fdinfo/1") == b"pos:\t0\nflags:\t02\n"
