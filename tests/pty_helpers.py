"""A user's terminal for tests: an interactive shell as the session leader of a real pseudo-terminal.

:class:`ShellTerminal` starts ``bash -i`` (no rc files, no line editing) in a new session whose
controlling terminal is a pty, as a terminal emulator does; the test types into the pty's master
side (``send``, control characters included: Ctrl-C is ``\\x03``, Ctrl-Z ``\\x1a``, Ctrl-\\
``\\x1c``) and reads what the terminal shows (``expect``). Nothing is timed: ``expect`` waits for
text, with a generous hang guard.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import signal
import time

PROMPT = b"OUTER$ "
GUARD = 90.0  # seconds: a hang guard only


class ShellTerminal:
    """``bash -i`` on a new pty, its job control on (``set -b``: job changes reported at once)."""

    def __init__(self, env: dict[str, str] | None = None, cwd: str | None = None, *,
                 _attach: tuple[int, int] | None = None) -> None:
        self.buf = bytearray()
        self.seen = bytearray()  # everything shown, for failure messages
        if _attach is not None:
            self.pid, self.master = _attach
            return
        bash = shutil.which("bash") or "/bin/bash"
        environ = dict(env if env is not None else os.environ)
        environ.update(PS1=PROMPT.decode(), TERM="dumb", PROMPT_COMMAND="", HISTFILE="/dev/null")
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # the session leader, the pty its controlling terminal
            try:
                if cwd is not None:
                    os.chdir(cwd)
                os.execve(bash, [bash, "--norc", "--noprofile", "--noediting", "-i"], environ)
            finally:
                os._exit(127)
        self.expect(PROMPT)
        self.line("set -b")

    @classmethod
    def attach(cls, pid: int, master: int) -> ShellTerminal:
        """The terminal of a session already started with ``pty.fork`` (``pid`` its leader)."""
        return cls(_attach=(pid, master))

    def wait(self, guard: float = GUARD) -> int:
        """The session leader's exit status, the terminal drained meanwhile."""
        deadline = time.monotonic() + guard
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                raise AssertionError(f"the session leader did not exit; last shown: {bytes(self.seen[-800:])!r}")
            try:
                if select.select([self.master], [], [], 0.2)[0]:
                    chunk = os.read(self.master, 4096)
                    self.buf += chunk
                    self.seen += chunk
            except OSError:
                time.sleep(0.05)

    def send(self, data: bytes | str) -> None:
        """Type ``data`` at the terminal."""
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def line(self, text: str, until: bytes = PROMPT) -> bytes:
        """Type ``text`` and Enter; what the terminal showed up to ``until`` (default: the prompt)."""
        self.send(text + "\n")
        return self.expect(until)

    def expect(self, needle: bytes, guard: float = GUARD) -> bytes:
        """Wait until the terminal shows ``needle``; what it showed up to it (consumed)."""
        deadline = time.monotonic() + guard
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the terminal never showed {needle!r}; last shown: {bytes(self.seen[-800:])!r}")
            if not select.select([self.master], [], [], left)[0]:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the session is gone
                chunk = b""
            if not chunk:
                raise AssertionError(f"the terminal closed before {needle!r}; last shown: {bytes(self.seen[-800:])!r}")
            self.buf += chunk
            self.seen += chunk
        end = self.buf.index(needle) + len(needle)
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out

    def status(self) -> int:
        """``$?`` of the last command, as the shell reports it."""
        out = self.line("echo rc=$?")
        start = out.rindex(b"rc=") + 3
        return int(out[start:out.index(b"\r", start)])

    def close(self) -> None:
        """End the shell (and what it still runs) and the pty."""
        if not self.pid:
            os.close(self.master)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + GUARD
        while True:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            try:  # keep draining so nothing blocks on output
                if select.select([self.master], [], [], 0.2)[0]:
                    os.read(self.master, 4096)
            except OSError:
                time.sleep(0.05)
        os.close(self.master)

    def __enter__(self) -> ShellTerminal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
