/* Shared by the mechanism benchmark's programs: failure reporting and the seccomp filter.
 * Every system call's result is checked; any failure ends the program with a message and
 * exit status 1 (a benchmark of a failing call measures nothing). */
#ifndef MECH_COMMON_H
#define MECH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "the mechanism benchmark's seccomp filter is written for x86_64"
#endif

#define DIE(...) do { fprintf(stderr, "%s: ", prog_name); fprintf(stderr, __VA_ARGS__); \
                      fprintf(stderr, "\n"); exit(1); } while (0)
/* a call that returns -1 and sets errno on failure */
#define CHECK(expr) ({ __typeof__(expr) _r = (expr); \
                       if (_r == -1) \
                           DIE("%s: %s", #expr, strerror(errno)); \
                       _r; })

extern const char *prog_name;

/* The intercepted calls: the ones that take a path to open or stat. */
static const int path_calls[] = {
    __NR_open, __NR_openat, __NR_stat, __NR_lstat, __NR_newfstatat, __NR_statx,
};
#define N_PATH_CALLS (int)(sizeof(path_calls) / sizeof(path_calls[0]))

/* Which argument holds the path, for the calls above (and execve, chdir). */
static inline int path_arg(int nr) {
    switch (nr) {
    case __NR_openat: case __NR_newfstatat: case __NR_statx: return 1;
    default: return 0;
    }
}

/* Installs a filter that returns `action` for path_calls (and `extra`, -1 for none) and
 * allows everything else; NO_NEW_PRIVS first. Returns seccomp()'s result (the listener for
 * SECCOMP_FILTER_FLAG_NEW_LISTENER). */
static inline int install_filter(unsigned int action, unsigned int flags, const int *extra, int n_extra) {
    struct sock_filter f[64];
    int n = 0, calls = N_PATH_CALLS + n_extra;
    if (calls > 50) DIE("too many calls for the filter");
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    /* another architecture (x32, i386 through int 0x80): refused, never let through unseen */
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    /* x32 calls share the architecture number: refused too */
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    for (int i = 0; i < calls; i++) {
        int nr = i < N_PATH_CALLS ? path_calls[i] : extra[i - N_PATH_CALLS];
        /* jump to the "action" return after the last test and the "allow" return */
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, (unsigned char)(calls - i), 0);
    }
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action);
    struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    return CHECK((int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog));
}

#endif
