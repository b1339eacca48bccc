/* A seccomp user-notification supervisor (SECCOMP_RET_USER_NOTIF) for the open and stat calls
 * of common.h; runs PROG under it and exits with its status.
 *
 *   notif continue -- PROG ARGS   read each call's path, check the notification is still
 *                                 valid, answer SECCOMP_USER_NOTIF_FLAG_CONTINUE
 *   notif addfd -- PROG ARGS      do each call itself: open the file and inject the descriptor
 *                                 (SECCOMP_IOCTL_NOTIF_ADDFD + SECCOMP_ADDFD_FLAG_SEND); stat it
 *                                 and write the result into the tracee's memory
 *   notif vfs PREFIX DIR -- PROG  as addfd, with the files under PREFIX (absent from the host)
 *                                 served from DIR; execve and chdir intercepted too
 *
 * Relative paths are resolved through /proc/PID/cwd and /proc/PID/fd/N (the tracee's). At the
 * end it prints "mech-intercepted N" on stderr (and how many O_PATH opens had to be let through
 * to the host: ADDFD cannot inject an O_PATH descriptor). */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

const char *prog_name = "notif";

enum { CONTINUE, ADDFD, VFS } mode;
static const char *vfs_prefix, *vfs_dir;
static long intercepted, o_path;

static void send_fd(int sock, int fd) {
    char data = 0, ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {&data, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    CHECK(sendmsg(sock, &msg, 0));
}

static int recv_fd(int sock) {
    char data, ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&data, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    if (CHECK(recvmsg(sock, &msg, 0)) != 1) DIE("the child sent no listener");
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) DIE("the child sent no listener");
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* The NUL-terminated string at addr in pid's memory, a page at a time (a path may end just
 * before an unmapped page). Length, or -1 with errno (EFAULT, ESRCH, ENAMETOOLONG). */
static ssize_t read_path(pid_t pid, unsigned long addr, char *buf, size_t size) {
    size_t got = 0;
    while (got < size - 1) {
        unsigned long at = addr + got;
        size_t chunk = 4096 - (at & 4095);
        if (chunk > size - 1 - got) chunk = size - 1 - got;
        struct iovec local = {buf + got, chunk}, remote = {(void *)at, chunk};
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n <= 0) {
            if (n == 0) errno = EFAULT;
            return -1;
        }
        char *end = memchr(buf + got, 0, (size_t)n);
        if (end) return end - buf;
        got += (size_t)n;
    }
    errno = ENAMETOOLONG;
    return -1;
}

/* The supervisor's name for the tracee's (dirfd, path); 0, or an errno. */
static int resolve(pid_t pid, int dirfd, const char *path, char *out, size_t size) {
    int n;
    if (mode == VFS && !strncmp(path, vfs_prefix, strlen(vfs_prefix))
        && (path[strlen(vfs_prefix)] == '/' || !path[strlen(vfs_prefix)]))
        n = snprintf(out, size, "%s%s", vfs_dir, path + strlen(vfs_prefix));
    else if (path[0] == '/')
        n = snprintf(out, size, "%s", path);
    else if (dirfd == AT_FDCWD)
        n = snprintf(out, size, "/proc/%d/cwd/%s", pid, path);
    else
        n = snprintf(out, size, "/proc/%d/fd/%d/%s", pid, dirfd, path);
    return n < 0 || (size_t)n >= size ? ENAMETOOLONG : 0;
}

/* Answers: CONTINUE, a value, or an error. False when the tracee's call is gone (the tracee
 * was killed, or a signal interrupted the call). */
static int respond(int lfd, struct seccomp_notif_resp *resp, __u64 id, int cont, long val, int error) {
    resp->id = id;
    resp->flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
    resp->val = val;
    resp->error = error ? -error : 0;
    if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, resp) == 0) return 1;
    if (errno == ENOENT) return 0;
    DIE("SECCOMP_IOCTL_NOTIF_SEND: %s", strerror(errno));
}

static void write_back(int lfd, struct seccomp_notif_resp *resp, pid_t pid, __u64 id, unsigned long addr,
                       const void *data, size_t len) {
    struct iovec local = {(void *)data, len}, remote = {(void *)addr, len};
    ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (n == (ssize_t)len) {
        respond(lfd, resp, id, 0, 0, 0);
    } else if (n >= 0 || errno == EFAULT) {
        respond(lfd, resp, id, 0, 0, EFAULT);
    } else if (errno != ESRCH) {
        DIE("process_vm_writev: %s", strerror(errno));
    }
}

/* Does the call itself (addfd and vfs modes). */
static void emulate(int lfd, struct seccomp_notif *req, struct seccomp_notif_resp *resp, const char *path) {
    const __u64 *a = req->data.args;
    int nr = req->data.nr;
    char full[8192];
    if (nr == __NR_execve || nr == __NR_chdir) {  /* no answer can do these with our file */
        respond(lfd, resp, req->id, 1, 0, 0);
        return;
    }
    int at_empty = (nr == __NR_newfstatat && (a[3] & AT_EMPTY_PATH)) || (nr == __NR_statx && (a[2] & AT_EMPTY_PATH));
    if (!path[0] && at_empty) {  /* fstat of a descriptor: the tracee's own, a real one */
        respond(lfd, resp, req->id, 1, 0, 0);
        return;
    }
    int dirfd = (nr == __NR_openat || nr == __NR_newfstatat || nr == __NR_statx) ? (int)a[0] : AT_FDCWD;
    int err = resolve(req->pid, dirfd, path, full, sizeof full);
    if (err) {
        respond(lfd, resp, req->id, 0, 0, err);
        return;
    }
    if (nr == __NR_open || nr == __NR_openat) {
        int flags = (int)(nr == __NR_openat ? a[2] : a[1]);
        mode_t perm = (mode_t)(nr == __NR_openat ? a[3] : a[2]);
        if (flags & O_PATH) {  /* ADDFD refuses O_PATH descriptors (EBADF): only the host can */
            o_path++;
            respond(lfd, resp, req->id, 1, 0, 0);
            return;
        }
        int src = open(full, flags & ~O_CLOEXEC, perm);
        if (src < 0) {
            respond(lfd, resp, req->id, 0, 0, errno);
            return;
        }
        struct seccomp_notif_addfd add = {.id = req->id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = (__u32)src,
                                          .newfd = 0, .newfd_flags = (__u32)(flags & O_CLOEXEC)};
        if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0 && errno != ENOENT)
            DIE("SECCOMP_IOCTL_NOTIF_ADDFD (flags %#o, %s): %s", flags, full, strerror(errno));
        CHECK(close(src));
    } else if (nr == __NR_statx) {
        struct statx stx;
        if (statx(AT_FDCWD, full, (int)a[2] & ~AT_EMPTY_PATH, (unsigned)a[3], &stx) < 0)
            respond(lfd, resp, req->id, 0, 0, errno);
        else
            write_back(lfd, resp, req->pid, req->id, a[4], &stx, sizeof stx);
    } else {
        int flags = nr == __NR_lstat ? AT_SYMLINK_NOFOLLOW : nr == __NR_stat ? 0 : (int)a[3] & ~AT_EMPTY_PATH;
        struct stat st;
        if (fstatat(AT_FDCWD, full, &st, flags) < 0)
            respond(lfd, resp, req->id, 0, 0, errno);
        else
            write_back(lfd, resp, req->pid, req->id, nr == __NR_newfstatat ? a[2] : a[1], &st, sizeof st);
    }
}

static void handle(int lfd, struct seccomp_notif *req, struct seccomp_notif_resp *resp) {
    char path[4096];
    intercepted++;
    if (read_path(req->pid, req->data.args[path_arg(req->data.nr)], path, sizeof path) < 0) {
        if (errno == ESRCH) return;  /* the tracee is gone */
        if (errno != EFAULT && errno != ENAMETOOLONG) DIE("process_vm_readv: %s", strerror(errno));
        respond(lfd, resp, req->id, 1, 0, 0);  /* the kernel gives the tracee its error */
        return;
    }
    /* the path was read from a live tracee still in this call (not a recycled pid's memory) */
    if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) < 0) {
        if (errno == ENOENT) return;
        DIE("SECCOMP_IOCTL_NOTIF_ID_VALID: %s", strerror(errno));
    }
    if (mode == CONTINUE)
        respond(lfd, resp, req->id, 1, 0, 0);
    else
        emulate(lfd, req, resp, path);
}

int main(int argc, char **argv) {
    int i = 2;
    if (argc > 1 && !strcmp(argv[1], "continue")) {
        mode = CONTINUE;
    } else if (argc > 1 && !strcmp(argv[1], "addfd")) {
        mode = ADDFD;
    } else if (argc > 3 && !strcmp(argv[1], "vfs")) {
        mode = VFS;
        vfs_prefix = argv[2];
        vfs_dir = argv[3];
        i = 4;
    } else {
        DIE("usage: notif continue|addfd|vfs PREFIX DIR -- PROG ARGS");
    }
    if (i >= argc - 1 || strcmp(argv[i], "--")) DIE("usage: notif MODE -- PROG ARGS");
    char **cmd = argv + i + 1;
    static const int vfs_extra[] = {__NR_execve, __NR_chdir};

    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp));
    pid_t child = CHECK(fork());
    if (child == 0) {
        CHECK(close(sp[0]));
        int lfd = install_filter(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER, vfs_extra,
                                 mode == VFS ? 2 : 0);
        send_fd(sp[1], lfd);
        CHECK(close(lfd));
        CHECK(close(sp[1]));
        execvp(cmd[0], cmd);
        DIE("exec %s: %s", cmd[0], strerror(errno));
    }
    CHECK(close(sp[1]));
    int pidfd = CHECK(pidfd_open(child, 0));
    int lfd = recv_fd(sp[0]);
    CHECK(close(sp[0]));

    struct seccomp_notif_sizes sizes;
    CHECK((int)syscall(__NR_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes));
    struct seccomp_notif *req = malloc(sizes.seccomp_notif > sizeof *req ? sizes.seccomp_notif : sizeof *req);
    struct seccomp_notif_resp *resp = malloc(sizes.seccomp_notif_resp > sizeof *resp ? sizes.seccomp_notif_resp
                                                                                   : sizeof *resp);
    if (!req || !resp) DIE("out of memory");
    /* until the program exits (what it left running loses its supervisor: ENOSYS) */
    for (;;) {
        struct pollfd p[2] = {{lfd, POLLIN, 0}, {pidfd, POLLIN, 0}};
        CHECK(poll(p, 2, -1));
        if (p[0].revents & POLLIN) {
            memset(req, 0, sizes.seccomp_notif);
            if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, req) < 0) {
                if (errno == ENOENT || errno == EINTR) continue;  /* the tracee's call went away */
                DIE("SECCOMP_IOCTL_NOTIF_RECV: %s", strerror(errno));
            }
            memset(resp, 0, sizes.seccomp_notif_resp);
            handle(lfd, req, resp);
        } else if (p[1].revents & POLLIN) {
            break;
        } else if (p[0].revents & (POLLHUP | POLLERR)) {
            break;
        }
    }
    int status;
    CHECK(waitpid(child, &status, 0));
    fprintf(stderr, "mech-intercepted %ld\n", intercepted);
    if (mode != CONTINUE) fprintf(stderr, "mech-o-path-continued %ld\n", o_path);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
