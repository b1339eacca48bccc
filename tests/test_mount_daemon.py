"""The life of the mount daemons (``pfs mount``, ``libos mount``), through real FUSE mounts:
stopping on signals without losing writes, where their messages go, what ``pfs umount`` reports,
stale mounts after a crash, the key files of ``libos mount``, and errors of unprivileged users.

Every test has its own state folder (``XDG_STATE_HOME``: the default log and the status files).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fuse_helpers import LIBOS, PFS, Mounter, fuse_unavailable, mounted, one_line_error, run, sha
from helpers import require

_why = fuse_unavailable()
require(_why is None, f"real FUSE mounts unavailable: {_why}")

NOBODY = 65534
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "wrap.key"
    run([PFS, "gen-key", "-w", path], check=True)
    return path


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The daemons' state folder for this test (inherited by every command it runs)."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home / "pfskit"


@pytest.fixture
def public(tmp_path: Path):
    """A folder every user can reach (tmp_path is root's only), removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="pfskit-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    enc, mnt = tmp_path / "enc", tmp_path / "mnt"
    enc.mkdir()
    mnt.mkdir()
    return enc, mnt


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` at ``path`` (a disk that fills up), unmounted at the end."""
    require(os.geteuid() == 0, "mounting a small tmpfs needs root")
    path.mkdir(exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=True)
    try:
        yield path
    finally:
        run(["umount", "-l", path])



def decrypted(key: Path, src: Path, tmp_path: Path) -> str:
    """sha256 of the plaintext of ``src`` (compared with :func:`sha` of what was written)."""
    out = tmp_path / f"plain-{src.name}"
    run([PFS, "decrypt", "-q", "-w", key, "-i", src, "-o", out, "--force"], check=True)
    return sha(out.read_bytes())


HOLDER = r"""
import sys
data = open(sys.argv[2], "rb").read()
f = open(sys.argv[1], "wb")
f.write(data)
f.flush()
print("ready", flush=True)
sys.stdin.read()  # keeps the file open until the test closes our stdin
"""


class Holders:
    """Programs that write a file, ``flush()`` it and keep it open."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def hold(self, path: Path, data: bytes) -> None:
        src = self.tmp_path / f"src-{len(self.procs)}"
        src.write_bytes(data)
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(src)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        assert proc.stdout.readline() == b"ready\n"

    def release(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def holders(tmp_path: Path):
    h = Holders(tmp_path)
    try:
        yield h
    finally:
        h.release()


def assert_quiet(log: str) -> None:
    """A clean stop: nothing that looks like a failure."""
    assert "Traceback" not in log and "error" not in log.lower(), log


# ---------------------------------------------------------------------- stop signals (items 1, 19)


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_stop_signal_encrypts_files_still_open(tmp_path: Path, key: Path, dirs, mounter: Mounter, holders: Holders,
                                               sig: signal.Signals, background: bool) -> None:
    """SIGTERM/SIGINT of `pfs mount`: what programs wrote and flush()ed into files they still
    hold open is encrypted before the daemon exits; a foreground daemon exits 0 without a word."""
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw", background=background)
    (mnt / "sub").mkdir()
    big, small = os.urandom(3 * 1024 * 1024), b"a small file still open\n" * 7
    holders.hold(mnt / "big", big)
    holders.hold(mnt / "sub" / "small", small)
    pids = m.pids()
    os.kill(pids[0], sig)
    code = m.wait_exit(pids, timeout=60)
    assert not mounted(mnt)
    if not background:
        assert code == 0, m.log()
        assert_quiet(m.log())
    holders.release()
    proc = run([PFS, "verify", "-q", "-w", key, enc])
    assert proc.returncode == 0, proc.stderr
    assert decrypted(key, enc / "big", tmp_path) == sha(big)
    assert decrypted(key, enc / "sub" / "small", tmp_path) == sha(small)


@pytest.fixture
def libos_manifest(tmp_path: Path, key: Path) -> Path:
    (tmp_path / "enc").mkdir()
    (tmp_path / "mnt").mkdir()
    (tmp_path / "m.toml").write_text(f'''
libos.entrypoint = "/app/main.py"
fs.mounts = [
  {{ type = "tmpfs", path = "/scratch" }},
  {{ type = "encrypted", path = "/data", uri = "file:enc/", key_name = "default" }},
]
fs.insecure__keys.default = "{key.read_bytes().hex()}"
''')
    return tmp_path / "m.toml"


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_libos_mount_stops_cleanly_on_signal(tmp_path: Path, key: Path, libos_manifest: Path, mounter: Mounter,
                                             holders: Holders, sig: signal.Signals) -> None:
    """`libos mount -f` stopped by SIGTERM/SIGINT: exit 0, no traceback, open files encrypted."""
    m = mounter.foreground([LIBOS, "mount", "m.toml", "mnt"], "mnt", cwd=tmp_path)
    data = os.urandom(1024 * 1024 + 5)
    holders.hold(tmp_path / "mnt" / "data" / "out.bin", data)
    m.proc.send_signal(sig)
    assert m.wait_exit(timeout=60) == 0, m.log()
    assert "Traceback" not in m.log() and "error:" not in m.log(), m.log()
    assert not mounted(tmp_path / "mnt")
    holders.release()
    assert decrypted(key, tmp_path / "enc" / "out.bin", tmp_path) == sha(data)


def test_clean_unmount_of_foreground_mount_exits_0(key: Path, dirs, mounter: Mounter) -> None:
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw")
    (mnt / "f").write_bytes(b"x" * 10000)
    proc = run([PFS, "umount", mnt])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert m.wait_exit() == 0
    assert_quiet(m.log())


# ---------------------------------------------------------------------- renames (item 2)


def test_user_rename_of_closed_file_to_hidden_name_is_a_rename(tmp_path: Path, key: Path, dirs,
                                                                mounter: Mounter) -> None:
    """Only libfuse's hiding of an open file becomes an unlink; `mv important.txt .fuse_hidden...` is a rename."""
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw")
    (mnt / "important.txt").write_bytes(b"precious")
    (mnt / "other").write_bytes(b"other")
    hidden = ".fuse_hidden0123456789abcdef"
    fd = os.open(mnt / "other", os.O_RDONLY)  # another file open: doesn't make this one "open"
    try:
        run(["mv", mnt / "important.txt", mnt / hidden], check=True)
    finally:
        os.close(fd)
    assert (mnt / hidden).read_bytes() == b"precious"
    assert sorted(os.listdir(mnt)) == [hidden, "other"]
    assert sorted(os.listdir(enc)) == [hidden, "other"]
    os.rename(mnt / hidden, mnt / "back.txt")
    assert (mnt / "back.txt").read_bytes() == b"precious"
    m.unmount()
    assert decrypted(key, enc / "back.txt", tmp_path) == sha(b"precious")


# ---------------------------------------------------------------------- messages and results (items 4, 13)


def _tampered(key: Path, tmp_path: Path, enc: Path) -> None:
    """``enc/bad.bin``, bound to the path as given (relative to ``tmp_path`` for a relative ``enc``:
    as a manifest's ``file:enc/`` makes Gramine open it), with a data node tampered with."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.bin").write_bytes(b"b" * 50_000)
    run([PFS, "encrypt", "-q", "-w", key, "-i", src, "-o", enc, "--force"], check=True, cwd=tmp_path)
    enc = tmp_path / enc
    raw = bytearray((enc / "bad.bin").read_bytes())
    raw[3 * 4096 + 7] ^= 0x80
    (enc / "bad.bin").write_bytes(raw)


def _eio(path: Path) -> None:
    with pytest.raises(OSError) as info:
        path.read_bytes()
    assert info.value.errno == errno.EIO


def test_background_pfs_mount_logs_to_the_default_log(tmp_path: Path, key: Path, dirs, mounter: Mounter,
                                                      state_home: Path) -> None:
    enc, mnt = dirs
    _tampered(key, tmp_path, enc)
    assert "mount.log" in run([PFS, "mount", "--help"]).stdout
    m = mounter.background([PFS, "mount", "-w", key, enc, mnt], mnt)
    log = state_home / "mount.log"
    assert str(log) in m.start_stderr  # the user is told where to look
    _eio(mnt / "bad.bin")
    assert run([PFS, "umount", mnt]).returncode == 0
    text = log.read_text()
    assert "bad.bin" in text and str(mnt) in text, text
    assert os.stat(log).st_mode & 0o777 == 0o600


def test_background_libos_mount_logs_to_the_default_log(tmp_path: Path, key: Path, libos_manifest: Path,
                                                        mounter: Mounter, state_home: Path) -> None:
    _tampered(key, tmp_path, Path("enc"))
    m = mounter.background([LIBOS, "mount", "m.toml", tmp_path / "mnt"], tmp_path / "mnt", cwd=tmp_path)
    _eio(tmp_path / "mnt" / "data" / "bad.bin")
    proc = run([PFS, "umount", tmp_path / "mnt"])
    assert proc.returncode == 0, proc.stderr
    m.wait_exit()
    assert "bad.bin" in (state_home / "mount.log").read_text()


def test_umount_fails_when_writes_were_lost(tmp_path: Path, key: Path, mounter: Mounter, state_home: Path) -> None:
    """A write the daemon could not make (a full disk, found in the kernel's write-back) makes
    `pfs umount` fail, naming the file; the log has it too."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with small_tmpfs(tmp_path / "enc", "1m") as enc:
        mounter.pfs(key, enc, mnt, "--rw", background=True)
        with pytest.raises(OSError), open(mnt / "big.bin", "wb") as f:
            f.write(os.urandom(3 * 1024 * 1024))
        proc = run([PFS, "umount", mnt])
        line = one_line_error(proc, "unmounted", "big.bin", str(state_home / "mount.log"))
        assert "No space left on device" in line or "are free" in line, line
        assert proc.returncode == 1, line
        assert not mounted(mnt)
        assert "big.bin" in (state_home / "mount.log").read_text()


def test_log_file_symlink_is_refused(tmp_path: Path, key: Path, dirs, mounter: Mounter) -> None:
    enc, mnt = dirs
    target = tmp_path / "victim"
    target.write_text("not a log\n")
    link = tmp_path / "daemon.log"
    link.symlink_to(target)
    proc = run([PFS, "mount", "-w", key, enc, mnt, "--log", link])
    try:
        one_line_error(proc, "symbolic link", str(link))
        assert not mounted(mnt)
    finally:
        if mounted(mnt):
            run(["fusermount3", "-u", "-z", mnt])
    assert target.read_text() == "not a log\n"
    log = tmp_path / "real.log"
    mounter.pfs(key, enc, mnt, "--log", str(log), background=True)
    assert os.stat(log).st_mode & 0o777 == 0o600


# ---------------------------------------------------------------------- a dead daemon (item 20)


def test_stale_mount_after_kill_9_is_explained_and_cleaned_up(key: Path, dirs, mounter: Mounter) -> None:
    enc, mnt = dirs
    m = mounter.pfs(key, enc, mnt, "--rw", background=True)
    m.kill9()
    with pytest.raises(OSError) as info:
        os.statvfs(mnt)  # (a stat may be answered from the attribute cache for a second)
    assert info.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    one_line_error(run([PFS, "mount", "-w", key, enc, mnt]), "has died", f"pfs umount {mnt}")
    one_line_error(run([PFS, "umount", mnt]), "has died", "removed its stale mount")
    assert not mounted(mnt)
    one_line_error(run([PFS, "umount", mnt]), "not mounted")
    mounter.pfs(key, enc, mnt, "--rw", background=True)  # mounts again
    assert run([PFS, "umount", mnt]).returncode == 0


# ---------------------------------------------------------------------- /dev/attestation/keys (item 8)


AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


OPEN_AS = r"""
import os, sys
try:
    fd = os.open(sys.argv[1], int(sys.argv[2]))
    if int(sys.argv[2]) == os.O_RDONLY:
        os.read(fd, 16)
    else:
        os.write(fd, b"k" * 16)
    print("ok")
except OSError as exc:
    print(exc.errno)
"""


def _need_root_and_setpriv() -> None:
    require(os.geteuid() == 0, "running a program as another user needs root")
    require(shutil.which("setpriv"), "setpriv (util-linux) is needed to run a program as another user")


def _open_as_nobody(path: Path, flags: int) -> str:
    _need_root_and_setpriv()
    proc = subprocess.run([*AS_NOBODY, sys.executable, "-c", OPEN_AS, str(path), str(flags)], capture_output=True,
                          text=True, timeout=60)
    return proc.stdout.strip()


def _libos_in(public: Path, key: Path) -> Path:
    (public / "enc").mkdir()
    (public / "mnt").mkdir()
    (public / "m.toml").write_text(f'''
libos.entrypoint = "/app/main.py"
fs.mounts = [{{ type = "encrypted", path = "/data", uri = "file:enc/", key_name = "default" }}]
fs.insecure__keys.default = "{key.read_bytes().hex()}"
''')
    return public / "mnt"


def test_libos_mount_hides_keys_by_default(public: Path, key: Path, mounter: Mounter) -> None:
    view = _libos_in(public, key)
    mounter.foreground([LIBOS, "mount", "m.toml", "mnt", "--allow-other"], "mnt", cwd=public)
    assert (view / "dev" / "null").exists()
    assert "keys" not in os.listdir(view / "dev" / "attestation")
    with pytest.raises(OSError) as info:
        (view / "dev" / "attestation" / "keys" / "default").read_bytes()
    assert info.value.errno in (errno.ENOENT, errno.EACCES)
    assert _open_as_nobody(view / "dev" / "attestation" / "keys" / "default", os.O_RDONLY) != "ok"


def test_libos_mount_expose_keys_for_the_owner_only(public: Path, key: Path, mounter: Mounter) -> None:
    view = _libos_in(public, key)
    mounter.foreground([LIBOS, "mount", "m.toml", "mnt", "--allow-other", "--expose-keys"], "mnt", cwd=public)
    path = view / "dev" / "attestation" / "keys" / "default"
    st = os.stat(path)
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, os.geteuid())
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert path.read_bytes() == key.read_bytes()
    assert _open_as_nobody(path, os.O_RDONLY) == str(errno.EACCES)
    assert _open_as_nobody(path, os.O_WRONLY) == str(errno.EACCES)
    assert path.read_bytes() == key.read_bytes()  # nobody's write did nothing
    new = os.urandom(16)
    with open(path, "r+b", buffering=0) as f:  # the owner may replace it
        f.write(new)
    assert path.read_bytes() == new


# ---------------------------------------------------------------------- no FUSE access (item 21)


@pytest.mark.parametrize("foreground", [False, True], ids=["background", "foreground"])
def test_mount_without_fuse_access_says_so(public: Path, key: Path, foreground: bool) -> None:
    """A user who can't open /dev/fuse gets one line saying so (it gave `pfs: error: 4`)."""
    _need_root_and_setpriv()
    for name in ("enc", "mnt", "state"):
        (public / name).mkdir()
        os.chown(public / name, NOBODY, NOBODY)
    shutil.copy(key, public / "k.key")
    os.chown(public / "k.key", NOBODY, NOBODY)
    argv = [str(PFS), "mount", "-w", "k.key", "enc", "mnt", "--rw", *(["-f"] if foreground else [])]
    env = {**os.environ, "HOME": str(public / "state"), "XDG_STATE_HOME": str(public / "state")}
    if os.stat("/dev/fuse").st_mode & 0o006:
        # /dev/fuse is open to everyone here: take that away in a private mount namespace
        blocker = public / "no-fuse"
        blocker.touch(mode=0o600)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /dev/fuse && exec "$@"', str(blocker), *AS_NOBODY, *argv]
    else:
        argv = [*AS_NOBODY, *argv]
    proc = subprocess.run(argv, cwd=public, capture_output=True, text=True, timeout=60, env=env)
    try:
        line = one_line_error(proc, "/dev/fuse", "Permission denied", "root")
        assert line.startswith("pfs: error: can't use FUSE"), line
    finally:
        if mounted(public / "mnt"):
            run(["fusermount3", "-u", "-z", public / "mnt"])


def test_bridge_opens_exposed_keys_for_the_owner_uid_only() -> None:
    """The daemon's own rule, for a request the kernel lets through (root, when the mount's owner
    isn't root): the uid of the FUSE request must be the owner's."""
    from vfs.dev import DevFs
    from vfs.encrypted import KeyStore
    from vfs.fuse import FuseBridge
    from vfs.mount import MountTable
    from vfs.vfs import VFS

    secret = os.urandom(16)
    dev = DevFs(KeyStore({"default": secret}), stdio=False)
    dev.host_view(expose=True, owner=(1000, 1000))
    vfs = VFS(MountTable())
    vfs.mounts.mount("/", dev)
    bridge = FuseBridge(vfs)
    bridge.owner = 1000
    bridge.caller_uid = lambda: 0
    for call in (lambda: bridge.open("/attestation/keys/default", os.O_RDONLY),
                 lambda: bridge.open("/attestation/keys/default", os.O_WRONLY),
                 lambda: bridge.create("/attestation/keys/new", 0o600, os.O_WRONLY),
                 lambda: bridge.opendir("/attestation/keys")):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EACCES
    assert "new" not in [name for name, _, _ in vfs.listdir(bridge.ctx, "/attestation/keys")]
    bridge.caller_uid = lambda: 1000
    fh = bridge.open("/attestation/keys/default", os.O_RDONLY)
    assert bridge.read(None, 16, 0, fh) == secret
    bridge.release(None, fh)
    assert bridge.stat("/attestation/keys/default").st_mode & 0o777 == 0o600
