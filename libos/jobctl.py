"""Job control for ``libos run`` on a terminal: the run as a foreground job of the user's shell.

When ``libos run`` has a controlling terminal and leads its own process group (a job-control
shell made it a job), the run's pid 1 leads a process group of its own (visible inside the PID
namespace as group 1, so a shell run inside can give the terminal back to it at exit), made the
terminal's foreground group when the runner's group is. The runner then follows the program:

- the program stopped (Ctrl-Z, a background read or write, SIGSTOP): pid 1 reports it, the
  runner takes the terminal back for its own group and stops that group with the same signal, so
  the user's shell sees a stopped job (not when the group is orphaned: there the kernel would have
  discarded the terminal's stop, and the program is continued at once);
- the runner continued (``fg``, ``bg``, SIGCONT): the run's group gets the terminal back when the
  runner's group is in the foreground, then SIGCONT;
- the runner's group made the foreground group while the run runs in the background (a shell's
  ``fg`` of a running job sends no SIGCONT): the run's group gets the terminal at once if the
  program then reads or writes it (its SIGTTIN/SIGTTOU stop becomes a continue), else within
  :data:`POLL` seconds (a thread watches the terminal, only while the run is in the background);
- the run's end (and any error): the terminal goes back to the runner's group if the run had it.

Without a terminal, or as a process that shares its parent's group, nothing of this happens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

__all__ = ["POLL", "Terminal", "give_terminal"]

POLL = 0.1  # seconds between looks at the terminal's foreground group while the run is in the background


def give_terminal(fd: int, pgrp: int) -> bool:
    """Make ``pgrp`` the foreground group of the terminal ``fd`` (SIGTTOU held off in this thread,
    as shells do when they hand the terminal on); False if the terminal refused (hung up, gone)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(fd, pgrp)
        return True
    except OSError:
        return False
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _group_orphaned() -> bool:
    """True when this process's group looks orphaned (its parent is not in another group of the
    same session): the kernel discards the terminal's stop signals for such groups."""
    parent = os.getppid()
    try:
        return os.getsid(parent) != os.getsid(0) or os.getpgid(parent) == os.getpgrp()
    except OSError:
        return True


class Terminal:
    """The runner's controlling terminal and the run's process group on it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.own = os.getpgrp()
        self.group: int | None = None  # the run's group (pid 1's pid, as the runner sees it)
        self.held: int | None = None  # the run's foreground group, while the run is stopped
        self.given = False  # the run has the terminal (the runner gave it)
        self.suspended = False  # the program stopped, the runner stopping or stopped: until SIGCONT
        self._lock = threading.Lock()
        self._background = threading.Event()  # the run is in the background: watch the terminal
        self._ended = False

    @classmethod
    def open(cls) -> Terminal | None:
        """The runner's terminal when job control applies (a controlling terminal, and the runner
        leads its process group), else None."""
        if os.getpgrp() != os.getpid():
            return None
        try:
            return cls(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC))
        except OSError:  # no controlling terminal
            return None

    def foreground(self) -> bool:
        """True when the runner's group is the terminal's foreground group."""
        try:
            return os.tcgetpgrp(self.fd) == self.own
        except OSError:
            return False

    def _foreground_group(self) -> int | None:
        try:
            return os.tcgetpgrp(self.fd)
        except OSError:
            return None

    def _in_run(self, pgrp: int) -> bool:
        """True when ``pgrp`` is the run's group or one led by a process of the run's PID namespace."""
        if pgrp == self.group:
            return True
        try:
            return os.readlink(f"/proc/{pgrp}/ns/pid") == os.readlink(f"/proc/{self.group}/ns/pid")
        except OSError:
            return False

    def started(self, group: int, given: bool) -> None:
        """The run's group exists (``given``: it was made the foreground group)."""
        with self._lock:
            self.group, self.given = group, given
            self._update()
        threading.Thread(target=self._watch, name="libos-run-terminal", daemon=True).start()

    def _update(self) -> None:
        if self.group is not None and not self.given and not self.suspended and not self._ended:
            self._background.set()
        else:
            self._background.clear()

    def _watch(self) -> None:
        """While the run is in the background: give it the terminal once the runner's group has it."""
        while True:
            self._background.wait()
            with self._lock:
                if self._ended:
                    return
                if self._background.is_set() and self.foreground():
                    self._take_foreground()
            time.sleep(POLL)

    def _take_foreground(self) -> None:
        assert self.group is not None
        target = self.held if self.held is not None and self._in_run(self.held) else self.group
        self.given = give_terminal(self.fd, target)
        self.held = None
        self._update()

    def stopped(self, sig: int) -> None:
        """The program stopped with ``sig``: stop the runner's group the same way (the terminal back
        to it first), or continue the program when that stop would be discarded."""
        with self._lock:
            if self.group is None:
                return
            if sig in (signal.SIGTTIN, signal.SIGTTOU):
                if self.foreground():
                    # brought to the foreground while running (no SIGCONT told us): the program's
                    # group gets the terminal and goes on, as it would have natively
                    self._take_foreground()
                if self.given and self._foreground_group() == self.group:
                    # (or given it by the watcher since the stop): the stop is stale
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.group, signal.SIGCONT)
                    return
            if self.given:
                fg = self._foreground_group()
                if fg is not None and self._in_run(fg):  # not the user's shell's, or nobody's
                    self.held = fg
                    give_terminal(self.fd, self.own)
                self.given = False
            if sig != signal.SIGSTOP and _group_orphaned():
                self._resume()
                return
            self.suspended = True
            self._update()
        os.killpg(self.own, sig)  # continued by SIGCONT: :meth:`continued`

    def continued(self) -> None:
        """The runner got SIGCONT (``fg``, ``bg``, ``kill -CONT``): the run's group gets the
        terminal if the runner's is in the foreground, then SIGCONT, as a shell's ``fg`` does."""
        with self._lock:
            if self.group is not None:
                self._resume()

    def _resume(self) -> None:
        assert self.group is not None
        self.suspended = False
        if self.foreground():  # fg: whatever the run had before, it is the run's now
            self._take_foreground()
        self.held = None
        self._update()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.group, signal.SIGCONT)

    def release(self) -> None:
        """The run ended: the terminal back to the runner's group if the run had it (once)."""
        with self._lock:
            if self._ended:
                return
            fg = self._foreground_group()
            # the run's group, or one of it now gone with the run; never a live group of someone else
            if self.given and fg is not None and fg != self.own and (fg == self.group or not _alive(fg)):
                give_terminal(self.fd, self.own)
            self.given = False
            self.group = None
            self._ended = True
            self._background.set()  # the watcher sees the end and returns
            with contextlib.suppress(OSError):
                os.close(self.fd)


def _alive(pgrp: int) -> bool:
    try:
        os.killpg(pgrp, 0)
        return True
    except ProcessLookupError:
        return False
    except OSError:
        return True
