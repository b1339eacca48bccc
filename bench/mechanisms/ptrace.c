/* A ptrace supervisor with seccomp SECCOMP_RET_TRACE for the open and stat calls of common.h:
 * the tracee stops at each (PTRACE_O_TRACESECCOMP), the tracer reads the call's path with
 * process_vm_readv and lets it continue. Runs PROG and exits with its status.
 *
 *   ptrace [--no-follow] -- PROG ARGS
 *
 * Threads, forks and vforks are traced too (PTRACE_O_TRACECLONE/FORK/VFORK) unless --no-follow:
 * then a task the tracer does not trace gets ENOSYS from every filtered call (RET_TRACE with no
 * tracer). At the end it prints "mech-intercepted N" and "mech-tasks N" on stderr. */
#include "common.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

const char *prog_name = "ptrace";

#define MAX_PID (1 << 22)
static unsigned char seen[MAX_PID / 8];
static long intercepted, tasks;

static int first_stop(pid_t pid) {
    if (pid <= 0 || pid >= MAX_PID) DIE("pid %d out of range", pid);
    int was = seen[pid / 8] & (1 << (pid % 8));
    seen[pid / 8] |= (unsigned char)(1 << (pid % 8));
    return !was;
}

static void read_path(pid_t pid, unsigned long addr) {
    char buf[4096];
    size_t got = 0;
    while (got < sizeof buf - 1) {
        unsigned long at = addr + got;
        size_t chunk = 4096 - (at & 4095);
        if (chunk > sizeof buf - 1 - got) chunk = sizeof buf - 1 - got;
        struct iovec local = {buf + got, chunk}, remote = {(void *)at, chunk};
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n < 0 && (errno == EFAULT || errno == ESRCH)) return;  /* the kernel fails the call */
        if (n <= 0) DIE("process_vm_readv: %s", n ? strerror(errno) : "nothing read");
        if (memchr(buf + got, 0, (size_t)n)) return;
        got += (size_t)n;
    }
}

static void cont(pid_t pid, int sig) {
    if (ptrace(PTRACE_CONT, pid, 0, sig) < 0 && errno != ESRCH) DIE("PTRACE_CONT: %s", strerror(errno));
}

int main(int argc, char **argv) {
    int i = 1, follow = 1;
    if (argc > 1 && !strcmp(argv[1], "--no-follow")) {
        follow = 0;
        i = 2;
    }
    if (i >= argc - 1 || strcmp(argv[i], "--")) DIE("usage: ptrace [--no-follow] -- PROG ARGS");
    char **cmd = argv + i + 1;

    pid_t child = CHECK(fork());
    if (child == 0) {
        CHECK(ptrace(PTRACE_TRACEME, 0, 0, 0));
        CHECK(raise(SIGSTOP));  /* the tracer sets its options, then RET_TRACE has a tracer */
        install_filter(SECCOMP_RET_TRACE, 0, NULL, 0);
        execvp(cmd[0], cmd);
        DIE("exec %s: %s", cmd[0], strerror(errno));
    }
    int status;
    CHECK(waitpid(child, &status, 0));
    if (!WIFSTOPPED(status) || WSTOPSIG(status) != SIGSTOP) DIE("the child did not stop (status %#x)", status);
    first_stop(child);
    tasks = 1;
    long options = PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL | PTRACE_O_TRACEEXEC;
    if (follow) options |= PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK;
    CHECK(ptrace(PTRACE_SETOPTIONS, child, 0, options));
    cont(child, 0);

    int result = -1;
    for (;;) {
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid < 0) {
            if (errno == ECHILD) break;
            DIE("waitpid: %s", strerror(errno));
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (pid == child) result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            continue;
        }
        if (!WIFSTOPPED(status)) continue;
        int sig = WSTOPSIG(status), event = status >> 16;
        if (event == PTRACE_EVENT_SECCOMP) {
            struct __ptrace_syscall_info info;
            long n = CHECK(ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info));
            if (n < (long)offsetof(struct __ptrace_syscall_info, seccomp.ret_data)
                || info.op != PTRACE_SYSCALL_INFO_SECCOMP)
                DIE("PTRACE_GET_SYSCALL_INFO: not a seccomp stop");
            intercepted++;
            read_path(pid, info.seccomp.args[path_arg((int)info.seccomp.nr)]);
            cont(pid, 0);
        } else if (event) {  /* clone, fork, vfork, exec: nothing to do */
            cont(pid, 0);
        } else if (sig == SIGSTOP && first_stop(pid)) {  /* a new task's first stop */
            tasks++;
            cont(pid, 0);
        } else {
            cont(pid, sig);  /* a signal for the program */
        }
    }
    fprintf(stderr, "mech-intercepted %ld\nmech-tasks %ld\n", intercepted, tasks);
    if (result < 0) DIE("the program's exit was not seen");
    return result;
}
