"""``libos run``: a program inside a manifest's file view, in its own mount and PID namespaces.

How the view is built (docs/run.md has the whole story):

1. The runner boots the LibOS (the VFS of the manifest) and makes a FUSE mount of it *detached*
   (``fsopen``/``fsmount``: attached nowhere, so the host never sees it and a SIGKILL of the
   runner leaves nothing mounted), then serves it from a thread (:func:`vfs.fuse.serve` on
   ``/dev/fd/N``) for every process of the run: one daemon, one view.
2. A child unshares a mount and a PID namespace and forks the namespace's pid 1 (:func:`_init`),
   which takes the host parts while the view's session starts, then attaches the view, puts
   host bind mounts over the chroot mounts that need no check at open
   (:func:`libos.loader.mount_plan`), mounts a real ``/proc`` and a small ``/dev``,
   ``pivot_root``s into the view and forks the program, which takes its uid/gid, cwd and limits
   and ``execve``s the entry point.
3. pid 1 reaps, forwards the signals the runner passes on, and exits with the program's status
   (128+N for a signal) when the program exits; the kernel then kills what is left in the
   namespace, the namespace's mounts go, the FUSE session ends, and the runner flushes and
   closes every file still open before it returns the status.

On a terminal the run is a job of its own (:mod:`libos.jobctl`): pid 1 leads the run's process
group, the terminal's foreground group while the runner's is, and reports the program's stops,
which the runner follows.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import signal
import stat as st
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import LibosError

if TYPE_CHECKING:
    from .jobctl import Terminal
    from .loader import LaunchPlan
    from .manifest import Manifest, MountSpec

__all__ = ["RunError", "run"]

STAGE = "/proc"  # where pid 1 attaches the view before pivot_root (always there; hidden from then on)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
SI_KERNEL = 0x80  # a signal the kernel sent (the terminal's Ctrl-C reaches the program's group itself)
WAITED = (*FORWARDED, signal.SIGCHLD, signal.SIGCONT)  # what the runner waits for
#: the FUSE device (``LIBOS_FUSE_DEVICE`` names another node of it, e.g. one of mode 0666 where
#: /dev/fuse is 0600 and an unprivileged user should run)
FUSE_DEVICE = os.environ.get("LIBOS_FUSE_DEVICE", "/dev/fuse")
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty", "ptmx")


class RunError(LibosError):
    """The program can't be started (before it runs): one line that says why."""


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def enter_namespaces(plan: LaunchPlan) -> bool:
    """For an unprivileged user: a user namespace (this user as its uid 0) and a mount namespace,
    entered before anything starts a thread. True when entered; RunError when the system refuses
    it or the manifest asks for an identity that can't be mapped."""
    if os.geteuid() == 0:
        return False
    from pal import namespaces as ns
    from vfs.fuse_session import check_fuse_device

    check_fuse_device(FUSE_DEVICE)
    if (plan.uid, plan.gid) != (0, 0):
        raise RunError(f"loader.uid/loader.gid = {plan.uid}/{plan.gid}: an unprivileged run has only uid/gid 0 "
                       "(yourself); remove them, or run libos run as root", errno=errno.EINVAL)
    try:
        ns.enter_user_namespace()
    except OSError as exc:
        raise RunError(f"can't make a user namespace ({exc.strerror}): allow unprivileged user namespaces "
                       "(sysctl kernel.unprivileged_userns_clone=1, and on Ubuntu "
                       "kernel.apparmor_restrict_unprivileged_userns=0), or run libos run as root",
                       errno=exc.errno) from None
    return True


def check_entrypoint(lo, plan: LaunchPlan) -> None:
    """RunError unless the entry point is an executable regular file inside the view."""
    ctx = lo.vfs.context("/", uid=plan.uid, gid=plan.gid)
    try:
        inode = lo.vfs.lookup(ctx, plan.exe).inode
        mode = inode.stat().st_mode
    except OSError as exc:
        what = "is not in the manifest's file view" if exc.errno == errno.ENOENT else os.strerror(exc.errno or 0)
        raise RunError(f"libos.entrypoint: {plan.exe} {what} (mount its folder in fs.mounts)",
                       errno=exc.errno) from None
    if not st.S_ISREG(mode) or not mode & 0o111:
        raise RunError(f"libos.entrypoint: {plan.exe} is not an executable file in the view", errno=errno.EACCES)
    if plan.cwd != "/":
        try:
            if not st.S_ISDIR(lo.vfs.lookup(ctx, plan.cwd).inode.stat().st_mode):
                raise OSError(errno.ENOTDIR, "not a folder")
        except OSError as exc:
            raise RunError(f"fs.start_dir: {plan.cwd} is not a folder in the view ({os.strerror(exc.errno or 0)})",
                           errno=exc.errno) from None


def run(manifest: Manifest, plan: LaunchPlan, *, debug: bool = False,
        lo=None, on_error: Callable[[str], None] | None = None) -> int:
    """Run ``plan`` in the view of ``manifest`` (booted as ``lo`` if given); the program's exit
    status (128+N for death by signal N). Raises :class:`RunError` (or ``OSError``,
    :class:`~libos.errors.MountError`) for what stops the program from starting."""
    from pal import namespaces as ns
    from vfs.fuse import load_mfusepy, serve
    from vfs.fuse_session import check_fuse_device

    from .jobctl import Terminal
    from .libos import LibOS
    from .loader import mount_plan

    if lo is None:
        lo = LibOS.boot(manifest)
    check_entrypoint(lo, plan)
    binds, _ = mount_plan(manifest)
    load_mfusepy()
    check_fuse_device(FUSE_DEVICE)
    fuse_fd = os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        view = ns.fs_mount("fuse", {"fd": str(fuse_fd), "rootmode": "40000", "user_id": "0", "group_id": "0",
                                    "default_permissions": True, "allow_other": True}, attrs=0x4)  # nodev
    except OSError as exc:
        os.close(fuse_fd)
        raise RunError(f"can't make the FUSE mount of the view ({exc.strerror})", errno=exc.errno) from None
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    term = Terminal.open()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*WAITED})
    try:
        foreground = term is not None and term.foreground()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            _child(fuse_fd, view, go_r, go_w, status_r, status_w, plan, binds,
                   None if term is None else term.fd, foreground)
        os.close(go_r)
        os.close(status_w)
        return _supervise(lo.vfs, serve, fuse_fd, view, child, go_w, status_r, term, debug=debug,
                          on_error=on_error)
    finally:
        if term is not None:
            term.release()  # the terminal back to the runner's group, whatever ended the run
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _supervise(vfs, serve, fuse_fd: int, view: int, child: int, go_w: int, status_r: int, term: Terminal | None,
               *, debug: bool, on_error: Callable[[str], None] | None) -> int:
    """The runner's side: serve the view, pass signals on to pid 1, follow the program's stops
    on a terminal (``term``), wait for the run to end. ``view`` (the runner's handle on the mount)
    is closed once the view is up: the mount then lives only in the run's namespace and goes with it."""
    from .view_session import end_session, libfuse_start_messages, raise_read_ahead

    ready, settled = threading.Event(), threading.Event()
    served: list[BaseException] = []
    messages: list[str] = []
    init_pid: list[int] = []

    def serve_view() -> None:
        try:
            serve(vfs, f"/dev/fd/{fuse_fd}", writable=True, foreground=True, debug=debug, fsname="libos-run",
                  subtype="libos", multithreaded=True, ready=lambda: (ready.set(), settled.set(), os.write(go_w, b"1")))
        except BaseException as exc:
            served.append(exc)
        finally:
            settled.set()
            with contextlib.suppress(OSError):
                os.close(go_w)  # EOF: the child gives up if the view never came up

    def read_status() -> None:
        with os.fdopen(status_r, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                kind, _, rest = line.rstrip("\n").partition(" ")
                if kind == "pid":
                    pid, _, given = rest.partition(" ")
                    init_pid.append(int(pid))
                    if term is not None:
                        term.started(int(pid), given == "1")
                elif kind == "stop":
                    if term is not None:
                        term.stopped(int(rest))
                else:
                    messages.append(rest)

    server = threading.Thread(target=serve_view, name="libos-run-fuse", daemon=True)
    with libfuse_start_messages():
        server.start()
        settled.wait()  # the view is up, or serving it failed
    reader = threading.Thread(target=read_status, name="libos-run-status", daemon=True)
    reader.start()
    dev = raise_read_ahead(view) if ready.is_set() else None
    os.close(view)
    code = 1
    while True:
        info = signal.sigwaitinfo(set(WAITED))
        if info.si_signo == signal.SIGCHLD:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid == child:
                code = _exit_code(status)
                break
        elif info.si_signo == signal.SIGCONT:
            if term is not None:
                term.continued()
        # the terminal's signals reach the program's group itself, unless the run is a job of its
        # own and they came to the runner's group (before the run had the terminal)
        elif (info.si_code != SI_KERNEL or term is not None) and init_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid[0], info.si_signo)
    if term is not None:
        term.release()  # before the view's session ends (which may take END_GRACE)
    reader.join()
    if not end_session(server, dev, on_error):
        return code or 1
    if messages:
        raise RunError(messages[0])
    if served:
        exc = served[0]
        if not ready.is_set():
            raise RunError(f"can't serve the view: {exc}")
        if on_error is not None:
            on_error(f"the view's files were not all flushed: {exc}")
        return code or 1
    return code


def _child(fuse_fd: int, view: int, go_r: int, go_w: int, status_r: int, status_w: int, plan: LaunchPlan,
           binds: list[MountSpec], tty: int | None, foreground: bool) -> None:  # pragma: no cover - the child
    """The runner's child: new mount and PID namespaces, their pid 1, its exit status as ours.
    On a terminal (``tty``) pid 1 leads the run's process group, made the foreground group if the
    runner's was (``foreground``), before it starts anything."""
    from pal import namespaces as ns

    from .jobctl import give_terminal

    code = 1
    try:
        _die_with_parent()
        os.close(fuse_fd)
        os.close(go_w)
        os.close(status_r)
        ns.unshare(ns.CLONE_NEWNS | ns.CLONE_NEWPID)
        hold_r, hold_w = os.pipe2(os.O_CLOEXEC)  # pid 1 waits for its process group and our report
        pid = os.fork()
        if pid == 0:
            os.close(hold_w)
            if tty is not None:
                os.close(tty)
            if os.read(hold_r, 1) != b"1":
                os._exit(1)
            os.close(hold_r)
            _init(view, go_r, status_w, plan, binds, report_stops=tty is not None)
        os.close(hold_r)
        os.close(view)
        os.close(go_r)
        given = False
        if tty is not None:
            os.setpgid(pid, pid)
            given = foreground and give_terminal(tty, pid)
            os.close(tty)
        os.write(status_w, f"pid {pid} {int(given)}\n".encode())
        os.close(status_w)
        os.write(hold_w, b"1")
        os.close(hold_w)
        code = _exit_code(os.waitpid(pid, 0)[1])
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(status_w, f"error {exc}\n".encode())
    finally:
        os._exit(code)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child and in pid 1
    """SIGKILL when the parent dies: a killed runner takes the whole run with it."""
    parent = os.getppid()
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _init(view: int, go_r: int, status_w: int, plan: LaunchPlan, binds: list[MountSpec], *,
          report_stops: bool) -> None:  # pragma: no cover - runs as pid 1
    """pid 1 of the run's PID namespace: build the view, start the program, reap, pass signals on
    (and, on a terminal, tell the runner when the program stops)."""
    code = 1
    try:
        _die_with_parent()
        _build_view(view, binds, go_r)
        program = os.fork()
        if program == 0:
            _exec(plan, status_w)
        if not report_stops:
            os.close(status_w)
        code = _reap(program, status_w if report_stops else None)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(status_w, f"error {exc}\n".encode())
    finally:
        os._exit(code)


def _build_view(view: int, binds: list[MountSpec], go_r: int) -> None:  # pragma: no cover - runs as pid 1
    """The run's root: the view, the host binds, /dev and /proc over it, pivoted into. The host
    parts are taken while the runner's FUSE session starts; ``go_r`` says when the view is served
    (b"1"; EOF: serving failed, pid 1 gives up), before the first look into it."""
    from pal import namespaces as ns

    ns.mount(None, "/", None, ns.MS_REC | ns.MS_PRIVATE)  # nothing propagates to the host
    sources = []
    for spec in binds:  # the host folders first: the view covers STAGE next
        try:
            sources.append((spec, ns.open_tree(spec.uri.rstrip("/") or "/")))
        except OSError as exc:
            raise OSError(exc.errno, f"{spec.key}: host path {spec.uri}: {os.strerror(exc.errno)}") from None
    nodes = {name: ns.open_tree(f"/dev/{name}", recursive=False) for name in DEV_NODES
             if os.path.exists(f"/dev/{name}")}
    pts = ns.open_tree("/dev/pts", recursive=False) if os.path.isdir("/dev/pts") else None
    if os.read(go_r, 1) != b"1":
        os._exit(1)
    os.close(go_r)
    ns.move_mount(view, STAGE)
    os.close(view)
    attestation = ns.open_tree(f"{STAGE}/dev/attestation", recursive=False)
    for spec, fd in sources:
        # nodev as the view: a device node made in a host folder never opens a host device
        ns.set_attrs(fd, ns.MOUNT_ATTR_NODEV | (ns.MOUNT_ATTR_RDONLY if spec.readonly else 0))
        ns.move_mount(fd, STAGE + spec.path)
        os.close(fd)
    dev = STAGE + "/dev"
    ns.mount("tmpfs", dev, "tmpfs", ns.MS_NOSUID | ns.MS_NODEV | ns.MS_NOEXEC, "mode=755,size=64k")
    for name, fd in nodes.items():
        os.close(os.open(f"{dev}/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
        ns.move_mount(fd, f"{dev}/{name}")
        os.close(fd)
    for name in ("pts", "shm", "attestation"):
        os.mkdir(f"{dev}/{name}", 0o755)
    if pts is not None:
        ns.move_mount(pts, f"{dev}/pts")
    ns.mount("tmpfs", f"{dev}/shm", "tmpfs", ns.MS_NOSUID | ns.MS_NODEV, "mode=1777")
    ns.move_mount(attestation, f"{dev}/attestation")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    ns.mount(None, dev, None, ns.MS_REMOUNT | ns.MS_NOSUID | ns.MS_NODEV | ns.MS_NOEXEC | ns.MS_RDONLY,
             "mode=755,size=64k")
    ns.mount("proc", STAGE + "/proc", "proc", ns.MS_NOSUID | ns.MS_NODEV | ns.MS_NOEXEC)
    os.chdir(STAGE)
    ns.pivot_root(".", ".")  # the old root lands on top of the new one...
    ns.umount2(".", ns.MNT_DETACH)  # ...and goes, with every host mount under it
    os.chdir("/")


def _exec(plan: LaunchPlan, status_w: int) -> None:  # pragma: no cover - runs as the program
    try:
        for sig in range(1, signal.NSIG):
            with contextlib.suppress(OSError, ValueError):
                if signal.getsignal(sig) is not signal.SIG_DFL:
                    signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if plan.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (plan.nofile, plan.nofile))
        if plan.stack is not None:
            resource.setrlimit(resource.RLIMIT_STACK, (plan.stack, resource.getrlimit(resource.RLIMIT_STACK)[1]))
        if plan.no_aslr:
            ctypes.CDLL(None).personality(0x0040000)  # ADDR_NO_RANDOMIZE
        with contextlib.suppress(PermissionError):  # refused in an unprivileged run's user namespace
            os.setgroups([])
        os.setgid(plan.gid)
        os.setuid(plan.uid)
        try:
            os.chdir(plan.cwd)
        except OSError as exc:
            raise OSError(exc.errno, f"fs.start_dir: {plan.cwd}: {exc.strerror}") from None
        try:
            os.execve(plan.exe, plan.argv, plan.env)
        except OSError as exc:
            raise OSError(exc.errno, f"libos.entrypoint: can't execute {plan.exe}: {exc.strerror}") from None
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(status_w, f"error {exc.strerror if isinstance(exc, OSError) else exc}\n".encode())
    os._exit(127)


def _reap(program: int, stops: int | None) -> int:  # pragma: no cover - runs as pid 1
    """Reap every process until ``program`` exits; pass the runner's signals on to it; write
    ``stop N`` to ``stops`` when the program is stopped by signal N."""
    code: int | None = None
    while code is None:
        info = signal.sigwaitinfo({*FORWARDED, signal.SIGCHLD})
        if info.si_signo != signal.SIGCHLD:
            if info.si_code != SI_KERNEL:  # the terminal's reach the program's process group already
                with contextlib.suppress(ProcessLookupError):
                    os.kill(program, info.si_signo)
            continue
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | os.WUNTRACED)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == program and os.WIFSTOPPED(status):
                if stops is not None:
                    with contextlib.suppress(OSError):
                        os.write(stops, f"stop {os.WSTOPSIG(status)}\n".encode())
            elif pid == program:
                code = _exit_code(status)
    return code
