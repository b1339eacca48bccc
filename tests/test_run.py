"""``libos run``: real programs in a manifest's view, real namespaces and FUSE (as root).

Each test writes a manifest with the host's /usr, /lib*, /bin and /etc as chroot mounts, an
encrypted /data and a tmpfs /tmp, runs ``libos run`` as a subprocess, and checks what the
program did from outside (``pfs decrypt`` of /data, exit statuses, the host's mount table).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import require

BIN = Path(sys.executable).parent
LIBOS, PFS = str(BIN / "libos"), str(BIN / "pfs")
KEY_HEX = "00112233445566778899aabbccddeeff"

pytestmark = pytest.mark.usefixtures("no_leftovers")


def _can_run() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/fuse")


require(_can_run(), "libos run needs root and /dev/fuse")


def _host_mounts() -> set[tuple[str, str, str]]:
    """(mount point, type, source) of the host's mounts."""
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    return {(r[4], r[r.index("-") + 1], r[r.index("-") + 2]) for r in rows}


@pytest.fixture
def no_leftovers(tmp_path):
    """After each test: no mount of a run on the host (a plain "fuse" one, as the view is, or
    the /proc, /dev parts), nothing mounted under the test's folder, no folder of ours in /tmp.
    (Other mounts may come and go: other test runs share the machine.)"""
    before, tmp_before = _host_mounts(), set(os.listdir("/tmp"))
    yield
    new = _host_mounts() - before
    assert not [m for m in new if m[1] in ("fuse", "proc", "devpts", "tmpfs") or m[0].startswith(str(tmp_path))]
    assert not {n for n in set(os.listdir("/tmp")) - tmp_before if "libos" in n}


def manifest(tmp: Path, body: str = "", *, cmdline: bool = True, entry: str = "/bin/sh", key: bool = True,
             mounts: str = "") -> Path:
    libs = "".join(f'  {{ path = "/{d}", uri = "file:/{d}" }},\n' for d in ("lib", "lib64") if os.path.exists(f"/{d}"))
    (tmp / "enc").mkdir(exist_ok=True)
    text = f'''libos.entrypoint = "{entry}"
{"loader.insecure__use_cmdline_argv = true" if cmdline else ""}
loader.env.PATH = "/usr/bin:/bin"
loader.env.LANG = "C"
fs.mounts = [
  {{ path = "/usr", uri = "file:/usr" }},
  {{ path = "/bin", uri = "file:/bin" }},
  {{ path = "/etc", uri = "file:/etc" }},
{libs}  {{ type = "encrypted", path = "/data", uri = "file:enc/" }},
  {{ type = "tmpfs", path = "/tmp" }},
{mounts}]
{f'fs.insecure__keys.default = "{KEY_HEX}"' if key else ""}
{body}
'''
    path = tmp / "m.toml"
    path.write_text(text)
    return path


def run(tmp: Path, *args: str, input: bytes | None = None, timeout: float = 60,
        opts: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([LIBOS, "run", *opts, "m.toml", *args], cwd=tmp, input=input, capture_output=True,
                          timeout=timeout)


def decrypt(tmp: Path, name: str) -> bytes:
    (tmp / "key.bin").write_bytes(bytes.fromhex(KEY_HEX))
    out = tmp / "dec" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    proc = subprocess.run([PFS, "decrypt", "-w", "key.bin", "-i", f"enc/{name}", "-o", str(out),
                           "--expect-path", f"enc/{name}"], cwd=tmp, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def sh(tmp: Path, script: str, **kw) -> subprocess.CompletedProcess:
    return run(tmp, "--", "-c", script, **kw)


# ---------------------------------------------------------------------- programs

SCRIPT = """import collections, sys
words = collections.Counter(open(sys.argv[1]).read().split())
with open(sys.argv[2], "w") as f:
    for word, n in sorted(words.items()):
        f.write(f"{word} {n}\\n")
"""


def test_python_reads_encrypted_input_and_writes_encrypted_result(tmp_path):
    manifest(tmp_path, entry="/usr/bin/python3", key=False,
             mounts='  { path = "/app", uri = "file:app" },\n')
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "count.py").write_text(SCRIPT)
    (tmp_path / "plain").mkdir()
    text = " ".join(f"w{i % 37}" for i in range(20000))
    (tmp_path / "plain" / "input.txt").write_text(text)
    (tmp_path / "key.bin").write_bytes(bytes.fromhex(KEY_HEX))
    enc = subprocess.run([PFS, "encrypt", "-w", "key.bin", "-i", "plain", "-o", "enc", "--manifest", "m.toml"],
                         cwd=tmp_path, capture_output=True)
    assert enc.returncode == 0, enc.stderr
    proc = run(tmp_path, "--", "/app/count.py", "/data/input.txt", "/data/out.txt", opts=("-k", "default=key.bin"))
    assert proc.returncode == 0, proc.stderr
    subprocess.run([sys.executable, str(tmp_path / "app" / "count.py"), str(tmp_path / "plain" / "input.txt"),
                    str(tmp_path / "native.txt")], check=True)
    assert decrypt(tmp_path, "out.txt") == (tmp_path / "native.txt").read_bytes()
    assert b"w1 " not in (tmp_path / "enc" / "out.txt").read_bytes()


def test_shell_pipeline_into_encrypted_data(tmp_path):
    manifest(tmp_path)
    data = b"".join(f"line {i % 13}\n".encode() for i in range(3000))
    proc = sh(tmp_path, "cat > /tmp/in && cat /tmp/in | sort | uniq -c > /data/out", input=data)
    assert proc.returncode == 0, proc.stderr
    native = subprocess.run("sort | uniq -c", shell=True, input=data, capture_output=True, check=True).stdout
    assert decrypt(tmp_path, "out") == native


def test_stdin_stdout_stderr_pass_through(tmp_path):
    manifest(tmp_path)
    proc = sh(tmp_path, "wc -c; echo to-err >&2", input=b"hello")
    assert (proc.returncode, proc.stdout.split(), proc.stderr) == (0, [b"5"], b"to-err\n")


def test_exit_status_is_the_programs(tmp_path):
    manifest(tmp_path)
    assert sh(tmp_path, "exit 7").returncode == 7


def test_death_by_signal_gives_128_plus_n(tmp_path):
    manifest(tmp_path)
    assert sh(tmp_path, "kill -TERM $$").returncode == 143


def _start(tmp: Path, script: str) -> subprocess.Popen:
    proc = subprocess.Popen([LIBOS, "run", "m.toml", "--", "-c", script], cwd=tmp, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    return proc


def test_sigterm_to_the_runner_reaches_the_program(tmp_path):
    manifest(tmp_path)
    proc = _start(tmp_path, 'trap "echo got-term; exit 5" TERM; echo ready; while :; do sleep 0.05; done')
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (5, b"got-term\n"), err
    proc = _start(tmp_path, "echo ready; exec sleep 1000")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143


def test_every_process_is_gone_when_the_program_exits(tmp_path):
    manifest(tmp_path)
    proc = sh(tmp_path, "sleep 987654 & sleep 987655 & echo started")
    assert proc.stdout == b"started\n"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 98765" not in ps


def test_a_host_path_outside_the_view_does_not_exist(tmp_path):
    manifest(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("host only")
    proc = sh(tmp_path, f"cat {secret}; test -e {tmp_path} || echo gone; test -e /work || echo no-work")
    assert proc.stdout == b"gone\nno-work\n"
    assert b"No such file or directory" in proc.stderr


def test_processes_share_one_encrypted_view(tmp_path):
    """Two background jobs append to one encrypted file while a third reads it: no record lost,
    and what one process wrote another reads at once."""
    manifest(tmp_path)
    script = ("(for i in $(seq 300); do echo \"a $i\" >> /data/log; done) & "
              "(for i in $(seq 300); do echo \"b $i\" >> /data/log; done) & wait; "
              "echo shared > /data/s & wait; cat /data/s; echo t > /tmp/t & wait; cat /tmp/t")
    proc = sh(tmp_path, script)
    assert (proc.returncode, proc.stdout) == (0, b"shared\nt\n"), proc.stderr
    lines = decrypt(tmp_path, "log").decode().splitlines()
    assert sorted(lines) == sorted([f"a {i}" for i in range(1, 301)] + [f"b {i}" for i in range(1, 301)])


def test_trusted_files_are_checked_at_open(tmp_path):
    import hashlib

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "good").write_text("good\n")
    (tmp_path / "app" / "bad").write_text("evil\n")
    digest = hashlib.sha256(b"good\n").hexdigest()
    manifest(tmp_path, mounts='  { path = "/app", uri = "file:app" },\n',
             body=f'sgx.trusted_files = [{{ uri = "file:app/good", sha256 = "{digest}" }}, '
                  f'{{ uri = "file:app/bad", sha256 = "{digest}" }}]\n'
                  'sgx.allowed_files = ["file:/usr/", "file:/bin/", "file:/etc/", "file:/lib/", "file:/lib64/"]')
    proc = sh(tmp_path, "cat /app/good; cat /app/bad")
    assert proc.stdout == b"good\n"
    assert b"Permission denied" in proc.stderr


def test_runner_sigkill_leaves_nothing_and_keeps_synced_files(tmp_path):
    manifest(tmp_path)
    proc = _start(tmp_path, "echo kept > /data/f && sync /data/f && echo ready && exec sleep 1000")
    proc.kill()
    proc.communicate(timeout=30)
    for _ in range(100):  # the run's processes go with the runner (parent-death signals)
        if "sleep 1000" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the program outlived its killed runner")
    assert decrypt(tmp_path, "f") == b"kept\n"


# ---------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("setup", "args", "code", "words"), [
    ("missing-manifest", [], 1, "not found"),
    ("bad-key-type", [], 1, "fs.mounts[0].type"),
    ("args-not-taken", ["x"], 2, "loader.insecure__use_cmdline_argv"),
    ("entry-missing", [], 1, "libos.entrypoint: /nowhere/prog is not in the manifest's file view"),
    ("entry-not-exec", [], 1, "not an executable file"),
    ("host-folder-missing", [], 1, "host path"),
    ("key-not-set", [], 1, "key 'default'"),
    ("argv-twice", [], 1, "mutually exclusive"),
    ("entry-not-a-program", [], 1, "libos.entrypoint: can't execute /app/bad: Exec format error"),
    ("start-dir-missing", [], 1, "fs.start_dir: /nowhere is not a folder in the view"),
])
def test_bad_input_is_one_line_before_the_program_starts(tmp_path, setup, args, code, words):
    entry = {"entry-missing": "/nowhere/prog", "entry-not-exec": "/etc/passwd",
             "entry-not-a-program": "/app/bad"}.get(setup, "/bin/sh")
    mounts = {"host-folder-missing": '  { path = "/gone", uri = "file:gone" },\n',
              "entry-not-a-program": '  { path = "/app", uri = "file:app" },\n'}.get(setup, "")
    body = {"argv-twice": 'loader.argv = ["sh"]', "start-dir-missing": 'fs.start_dir = "/nowhere"'}.get(setup, "")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "bad").write_bytes(b"\x00\x01 not a program\n")
    (tmp_path / "app" / "bad").chmod(0o755)
    m = manifest(tmp_path, entry=entry, cmdline=setup != "args-not-taken", key=setup != "key-not-set",
                 mounts=mounts, body=body)
    if setup == "missing-manifest":
        m.unlink()
    if setup == "bad-key-type":
        m.write_text(m.read_text().replace('{ path = "/usr"', '{ type = "ramfs", path = "/usr"'))
    proc = run(tmp_path, *args)
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert words in err and err.startswith("libos: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_unimplemented_keys_are_warned_about_once(tmp_path):
    manifest(tmp_path, body='sys.disallowed_syscalls = ["ptrace"]\nsgx.enclave_size = "1G"\nsgx.max_threads = 4')
    proc = sh(tmp_path, "true")
    err = proc.stderr.decode().splitlines()
    assert proc.returncode == 0
    assert err == ["libos: warning: sys.disallowed_syscalls: not implemented by libos run (system calls go to "
                   "the host)",
                   "libos: warning: sgx.enclave_size, sgx.max_threads: SGX settings, not used without SGX "
                   "(as in gramine-direct)"]


def test_cwd_uid_gid_env_from_the_manifest(tmp_path):
    manifest(tmp_path, body='fs.start_dir = "/tmp"\nloader.uid = 65534\nloader.gid = 65534\n'
                            'loader.env.FROM_HOST = { passthrough = true }\nloader.env.SET = "yes"')
    env = dict(os.environ, FROM_HOST="passed", NOT_PASSED="x")
    proc = subprocess.run([LIBOS, "run", "m.toml", "--", "-c", 'pwd; id -u; id -g; echo "$FROM_HOST $SET '
                           '${NOT_PASSED:-unset}"'], cwd=tmp_path, env=env, capture_output=True)
    assert proc.stdout.decode().split("\n") == ["/tmp", "65534", "65534", "passed yes unset", ""], proc.stderr


def _read_until(fd: int, marker: bytes, timeout: float = 30) -> bytes:
    import select

    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            pytest.fail(f"no {marker!r} from the program; it said {got!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        got += chunk
    return got


def test_interactive_python_in_a_terminal_with_ctrl_c(tmp_path):
    """python3 -i on a pseudo-terminal: it reads lines, Ctrl-C interrupts it once (the terminal's
    signal is not also forwarded), and its exit status comes back."""
    import pty

    manifest(tmp_path, entry="/usr/bin/python3")
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(tmp_path)
        os.execv(LIBOS, [LIBOS, "run", "m.toml", "--", "-q", "-i"])
    try:
        _read_until(fd, b">>> ")
        os.write(fd, b"import os, sys; print(6 * 7, os.isatty(0), os.getpid())\n")
        assert b"42 True 2" in _read_until(fd, b">>> ")
        os.write(fd, b"import time; n = 0\n")
        _read_until(fd, b">>> ")
        os.write(fd, b"try:\n  time.sleep(60)\nexcept KeyboardInterrupt:\n  n += 1\n  time.sleep(0.5)\n  n += 10\n\n")
        time.sleep(1)
        os.write(fd, b"\x03")
        _read_until(fd, b">>> ")
        os.write(fd, b"print('interrupts', n)\n")
        assert b"interrupts 11" in _read_until(fd, b">>> ")
        os.write(fd, b"sys.exit(3)\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 3
    finally:
        os.close(fd)
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_exec_of_a_binary_stored_in_tmpfs_and_encrypted_mounts(tmp_path):
    manifest(tmp_path)
    proc = sh(tmp_path, "cp /bin/echo /tmp/e && /tmp/e from-tmpfs && cp /bin/echo /data/e && /data/e from-data")
    assert (proc.returncode, proc.stdout) == (0, b"from-tmpfs\nfrom-data\n"), proc.stderr


def test_multiprocessing_appenders_and_a_reader_share_an_encrypted_log(tmp_path):
    manifest(tmp_path, entry="/usr/bin/python3", mounts='  { path = "/app", uri = "file:app" },\n')
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "mp.py").write_text('''import multiprocessing as mp, os

def writer(tag):
    for i in range(500):
        fd = os.open("/data/log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{tag} {i:04d}\\n".encode())
        os.close(fd)

if __name__ == "__main__":
    open("/data/log", "w").close()
    procs = [mp.Process(target=writer, args=(t,)) for t in "ab"]
    for p in procs:
        p.start()
    seen = 0
    while any(p.is_alive() for p in procs) or seen < 1000:
        lines = open("/data/log").read().splitlines()
        assert all(len(x) == 6 for x in lines), lines  # never a torn record
        seen = len(lines)
    for p in procs:
        p.join()
    print(seen)
''')
    proc = run(tmp_path, "--", "/app/mp.py")
    assert (proc.returncode, proc.stdout) == (0, b"1000\n"), proc.stderr
    lines = decrypt(tmp_path, "log").decode().splitlines()
    assert sorted(lines) == sorted(f"{t} {i:04d}" for t in "ab" for i in range(500))


def test_a_trusted_file_changed_during_the_run_is_refused(tmp_path):
    import hashlib

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "t").write_text("v1\n")
    digest = hashlib.sha256(b"v1\n").hexdigest()
    manifest(tmp_path, mounts='  { path = "/app", uri = "file:app" },\n',
             body=f'sgx.trusted_files = [{{ uri = "file:app/t", sha256 = "{digest}" }}]\n'
                  'sgx.allowed_files = ["file:/usr/", "file:/bin/", "file:/etc/", "file:/lib/", "file:/lib64/"]')
    proc = _start(tmp_path, "cat /app/t >/dev/null && echo ready; read x; cat /app/t || echo refused")
    (tmp_path / "app" / "t").write_text("v2\n")
    out, err = proc.communicate(b"go\n", timeout=30)
    assert out == b"refused\n" and b"Permission denied" in err, (out, err)


def _as_nobody(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import shutil

    require(shutil.which("setpriv"), "setpriv (util-linux) runs the command as another user")
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", LIBOS, "run", "m.toml",
                           *args], cwd=tmp, capture_output=True, env=env)


@pytest.fixture
def open_tmp():
    """A folder every user can reach (pytest's tmp_path is under a 0700 folder of root)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="run-nobody-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_an_unprivileged_user_runs_in_a_user_namespace(open_tmp):
    """As uid 65534: a user namespace whose uid 0 is that user; the encrypted files it writes
    belong to it on the host. (/dev/fuse may be 0600 here: a node of it with mode 0666 stands in.)"""
    tmp_path = open_tmp
    manifest(tmp_path)
    device = tmp_path / "fuse"
    os.mknod(device, 0o666 | 0o020000, os.makedev(10, 229))
    device.chmod(0o666)
    os.chown(tmp_path, 65534, 65534)
    os.chown(tmp_path / "enc", 65534, 65534)
    tmp_path.chmod(0o755)
    proc = _as_nobody(tmp_path, "--", "-c", "id -u; echo secret > /data/f; cat /data/f; cat /proc/self/uid_map; "
                                            "touch /usr/x 2>/dev/null || echo host-rules",
                      env=dict(os.environ, LIBOS_FUSE_DEVICE=str(device)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == ["0", "secret", "0", "65534", "1", "host-rules"]
    assert (tmp_path / "enc" / "f").stat().st_uid == 65534
    assert decrypt(tmp_path, "f") == b"secret\n"


def test_an_unprivileged_user_without_fuse_gets_one_line(open_tmp):
    manifest(open_tmp)
    missing = _as_nobody(open_tmp, "--", "-c", "true", env=dict(os.environ, LIBOS_FUSE_DEVICE=str(open_tmp / "no")))
    refused = _as_nobody(open_tmp, "--", "-c", "true", env=dict(os.environ, LIBOS_FUSE_DEVICE="/dev/fuse"))
    for proc, words in ((missing, "is missing"), (refused, "Permission denied for uid 65534")):
        err = proc.stderr.decode()
        if proc is refused and os.stat("/dev/fuse").st_mode & 0o006:
            continue  # /dev/fuse is open to everyone here
        assert proc.returncode == 1 and err.startswith("libos: error: ") and err.count("\n") == 1, err
        assert words in err, err


def test_a_file_held_open_by_a_killed_background_process_is_flushed(tmp_path):
    """The entry point exits while a background job still holds an encrypted file open (written,
    not closed): the kernel kills the job, and what it wrote is encrypted on disk when libos run
    returns."""
    manifest(tmp_path)
    proc = sh(tmp_path, "(echo held; : > /tmp/written; exec sleep 1000) > /data/held & "
                        "until [ -e /tmp/written ]; do sleep 0.01; done; exit 0")
    assert proc.returncode == 0, proc.stderr
    assert decrypt(tmp_path, "held") == b"held\n"


def test_dev_attestation_keys_and_mmap_in_the_view(tmp_path):
    """/dev/attestation/keys/NAME shows the run's key (Gramine's interface), and a shared mapping
    of an encrypted file writes through to it."""
    manifest(tmp_path, entry="/usr/bin/python3")
    code = ("import mmap; print(open('/dev/attestation/keys/default', 'rb').read().hex())\n"
            "f = open('/data/m', 'w+b'); f.write(bytes(4096)); f.flush()\n"
            "m = mmap.mmap(f.fileno(), 4096); m[:5] = b'hello'; m.flush(); m.close(); f.close()")
    proc = run(tmp_path, "--", "-c", code)
    assert (proc.returncode, proc.stdout) == (0, f"{KEY_HEX}\n".encode()), proc.stderr
    assert decrypt(tmp_path, "m")[:6] == b"hello\0"
