"""``libos run`` on a terminal is a job like any foreground command of the user's shell.

A real pseudo-terminal whose session leader is an interactive ``bash`` (tests/pty_helpers.py),
the way a terminal emulator starts one; the test types at it. The run's program gets the terminal
(Ctrl-C, Ctrl-Z and Ctrl-\\ reach it as they would natively), the runner follows its stops (the
outer shell sees a stopped job; ``fg`` continues the program), an interactive ``sh`` inside has
working job control and gives the terminal back at its exit (its ``exit N`` is the run's status).
Each test runs as root and as an unprivileged user (``setpriv``, a user namespace).
"""

from __future__ import annotations

import os
import pty
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import require
from pty_helpers import PROMPT, ShellTerminal
from run_helpers import ENV, PYTHON, TIMEOUT, View, runner_state

INNER = b"INNER$ "


@pytest.fixture(scope="module", autouse=True)
def _runner() -> None:
    from fuse_helpers import fuse_unavailable

    why = fuse_unavailable()
    require(why is None, f"libos run needs FUSE: {why}")
    why = runner_state()
    require(why is None, f"libos run unavailable: {why}")
    require(shutil.which("bash"), "bash is the test's interactive shell on the terminal")


@pytest.fixture(params=[None, 65534], ids=["root", "nobody"])
def view(request, tmp_path: Path):
    """A view whose entry point is /bin/sh (argv from the command line), run by root or by uid
    65534; the test fails if anything of it is still mounted on the host afterwards."""
    user = request.param
    if user is None:
        base = tmp_path
    else:
        require(shutil.which("setpriv"), "setpriv (util-linux) runs libos run as another user")
        base = Path(tempfile.mkdtemp(prefix="run-jobctl-", dir="/tmp"))
        base.chmod(0o755)
    try:
        yield View(base / "view", "/bin/sh", env={**ENV, "PS1": INNER.decode()}, start_dir="/tmp", user=user)
        with open("/proc/self/mountinfo") as f:
            left = [line for line in f if str(base) in line]
        assert not left, f"still mounted on the host after libos run: {left}"
    finally:
        if user is not None:
            shutil.rmtree(base, ignore_errors=True)


def command(view: View, *args: str) -> str:
    """The shell command line of ``libos run`` on ``view`` with ``args``."""
    return shlex.join(view.cmd(*args))


def terminal(view: View) -> ShellTerminal:
    return ShellTerminal(env=view.env_run or dict(os.environ), cwd=str(view.root))


def test_ctrl_z_fg_ctrl_c_ctrl_backslash(view: View) -> None:
    with terminal(view) as t:
        t.line(command(view, "-c", "echo ready; read line; echo got:$line; exit 5"), until=b"ready\r\n")
        t.send(b"\x1a")  # Ctrl-Z: the program stops, and so does the job the outer shell sees
        assert b"Stopped" in t.expect(PROMPT)
        assert b"Stopped" in t.line("jobs")
        t.send("fg\n")  # the program continues, in the foreground: it reads the terminal
        t.expect(b"exit 5'\r\n")  # bash echoes the job's command line
        t.send("hello\n")
        t.expect(b"got:hello\r\n")
        t.expect(PROMPT)
        assert t.status() == 5
        assert t.line("jobs") == b"jobs\r\n" + PROMPT  # no job left

        for key, sig in ((b"\x03", 2), (b"\x1c", 3)):  # Ctrl-C, Ctrl-\ : the program dies of them
            t.line(command(view, "-c", "echo ready; exec sleep 100"), until=b"ready\r\n")
            t.send(key)
            t.expect(PROMPT)
            assert t.status() == 128 + sig


def test_runner_follows_program_stops(view: View) -> None:
    with terminal(view) as t:
        # started in the background, the program reads the terminal: stopped by SIGTTIN, as a
        # native background job is; fg gives it the terminal and continues it
        t.send(command(view, "-c", "read line; echo got:$line; exit 5") + " &\n")
        t.expect(b"Stopped")
        t.send("fg\n")
        t.expect(b"exit 5'\r\n")
        t.send("hello\n")
        t.expect(b"got:hello\r\n")
        t.expect(PROMPT)
        assert t.status() == 5
        # the program stops itself (SIGSTOP): the job stops; fg continues it
        t.line(command(view, "-c", "echo ready; kill -STOP $$; echo resumed; exit 4"), until=b"ready\r\n")
        assert b"Stopped" in t.expect(PROMPT)
        t.send("fg\n")
        t.expect(b"resumed\r\n")
        t.expect(PROMPT)
        assert t.status() == 4


# the inner shell's job: one process (no fork for the terminal's stop to catch half-way: a vfork
# parent can't stop until its child execs) that says when it is ready and when it is continued
JOB = ("import os, signal; signal.signal(signal.SIGCONT, lambda *a: os.write(1, b'continued\\n')); "
       "print('armed', flush=True); [signal.pause() for _ in iter(int, 1)]")


def test_inner_shell_job_control_and_exit_status(view: View) -> None:
    with terminal(view) as t:
        t.line(command(view, "-i"), until=INNER)
        t.line(f"python3 -c {shlex.quote(JOB)} &", until=b"armed\r\n")
        assert b"Running" in t.line("jobs", until=INNER)
        t.send("fg\n")
        t.expect(b"continued\r\n")  # the job has the terminal
        t.send(b"\x1a")  # Ctrl-Z stops the inner shell's job, not the run
        assert b"Stopped" in t.expect(INNER)
        assert b"Stopped" in t.line("jobs", until=INNER)
        t.send("fg\n")
        t.expect(b"continued\r\n")
        t.send(b"\x03")  # Ctrl-C ends it
        t.expect(INNER)
        assert b"python3" not in t.line("jobs", until=INNER)
        out = t.line("exit 7")  # the inner shell gives the terminal back to its first group
        assert b"Cannot set tty process group" not in out, out
        assert t.status() == 7
        assert t.line("echo outer-shell-works").endswith(b"outer-shell-works\r\n" + PROMPT)


GROUPS = ("import os, sys, time; fd = os.open('/dev/tty', os.O_RDWR); "
          "print('foreground', os.tcgetpgrp(fd) == os.getpgrp(), 'group', os.getpgrp(), flush=True); "
          "sys.argv[1:] == ['wait'] and time.sleep(100)")


@pytest.mark.parametrize("end", ["exit", "sigterm"])
def test_the_run_holds_the_terminal_and_gives_it_back(tmp_path: Path, end: str) -> None:
    """A session leader that runs libos run as a job (its own group, given the terminal) gets the
    terminal back for that group when the run ends, by its program's exit or by a SIGTERM to the
    runner; the program had it meanwhile, in a group of its own."""
    v = View(tmp_path / "view", PYTHON, start_dir="/tmp")
    script = tmp_path / "leader.py"
    script.write_text(
        "import os, signal, subprocess, sys\n"
        "signal.signal(signal.SIGTTOU, signal.SIG_IGN)\n"
        f"p = subprocess.Popen({v.cmd('-c', GROUPS, *(['wait'] if end == 'sigterm' else []))!r}, "
        "process_group=0, stdout=subprocess.PIPE)\n"
        "os.tcsetpgrp(0, p.pid)\n"
        "print(p.stdout.readline().decode().strip(), flush=True)\n"
        f"{'p.send_signal(signal.SIGTERM)' if end == 'sigterm' else 'pass'}\n"
        "code = p.wait()\n"
        "print('after', os.tcgetpgrp(0) == p.pid, code, flush=True)\n")
    with ShellTerminal(cwd=str(tmp_path)) as t:
        out = t.line(shlex.join([PYTHON, str(script)]))
    assert b"foreground True group 1\r\n" in out, out  # pid 1 leads the program's group
    assert f"after True {143 if end == 'sigterm' else 0}\r\n".encode() in out, out


# waits in the background until its group has the terminal, then reads it
FOREGROUND = ("import os, time; fd = os.open('/dev/tty', os.O_RDWR); print('armed', flush=True); "
              "[time.sleep(0.05) for _ in iter(lambda: os.tcgetpgrp(fd) == os.getpgrp(), True)]; "
              "print('foreground', flush=True); print('got:' + input()); raise SystemExit(6)")


def test_fg_of_a_running_background_run_gives_it_the_terminal(view: View) -> None:
    """bash's fg of a running job only makes its group the foreground group (no SIGCONT): the
    program's group gets the terminal then, as a native job's would."""
    with terminal(view) as t:
        t.send(command(view, "-c", f"exec python3 -c {shlex.quote(FOREGROUND)}") + " &\n")
        t.expect(b"armed\r\n")
        t.send("fg\n")
        t.expect(b"foreground\r\n")
        t.send("hello\n")
        t.expect(b"got:hello\r\n")
        t.expect(PROMPT)
        assert t.status() == 6


def test_ctrl_z_in_an_orphaned_group_is_discarded_as_natively(tmp_path: Path) -> None:
    """libos run as the session leader itself (no shell to stop for): the terminal's stop would be
    discarded for a native program (an orphaned group), so the program goes on."""
    v = View(tmp_path / "view", PYTHON, start_dir="/tmp")
    cmd = v.cmd("-c", "print('ready', flush=True); print('got:' + input()); raise SystemExit(3)")
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execve(cmd[0], cmd, dict(os.environ))
        finally:
            os._exit(127)
    t = ShellTerminal.attach(pid, master)
    try:
        t.expect(b"ready\r\n")
        t.send(b"\x1a")
        t.send("hello\n")
        t.expect(b"got:hello\r\n")
        assert t.wait() == 3
    finally:
        t.close()


def test_without_a_terminal_nothing_changes(tmp_path: Path) -> None:
    """No controlling terminal (pipes, CI): the program stays in the runner's process group
    (outside its PID namespace, so it sees group 0) and no stop is followed."""
    v = View(tmp_path / "view", PYTHON, start_dir="/tmp")
    proc = subprocess.run(v.cmd("-c", "import os; print(os.getpgrp())"), capture_output=True, text=True,
                          timeout=TIMEOUT, start_new_session=True)
    assert (proc.returncode, proc.stdout) == (0, "0\n"), proc.stderr
