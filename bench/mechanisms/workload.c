/* The traced program of the mechanism benchmark.
 *
 *   workload open PATH N       N x (openat + close) of PATH; prints "ns TOTAL" (the loop only)
 *   workload stat PATH N       N x stat of PATH; prints "ns TOTAL"
 *   workload threads PATH T M  T threads, each M x (openat + close); prints "opens T*M"
 *   workload vfork PATH N      vfork, the child execs "workload open PATH N"; prints "vfork ok"
 *   workload vfs PREFIX        tries what a VFS-only file needs: open PREFIX/hello.txt and read
 *                              it, execve PREFIX/hello.sh, chdir PREFIX/sub; prints each result
 *                              (these may fail: their failures are the result, not an error)
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

const char *prog_name = "workload";

static long parse(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) DIE("not a count: %s", s);
    return v;
}

static long long now_ns(void) {
    struct timespec t;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &t));
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void open_loop(const char *path, long n) {
    for (long i = 0; i < n; i++) {
        int fd = CHECK(openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
        CHECK(close(fd));
    }
}

struct job { const char *path; long n; };

static void *thread_main(void *arg) {
    struct job *j = arg;
    open_loop(j->path, j->n);
    return NULL;
}

static void vfs(const char *prefix) {
    char path[4096], buf[64];
    snprintf(path, sizeof path, "%s/hello.txt", prefix);
    int fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("open %s: %s\n", path, strerror(errno));
    } else {
        ssize_t got = CHECK(read(fd, buf, sizeof buf - 1));
        buf[got] = 0;
        buf[strcspn(buf, "\n")] = 0;
        printf("open %s: ok, read \"%s\"\n", path, buf);
        CHECK(close(fd));
    }
    snprintf(path, sizeof path, "%s/sub", prefix);
    if (chdir(path) < 0) {
        printf("chdir %s: %s\n", path, strerror(errno));
    } else {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) DIE("getcwd: %s", strerror(errno));
        printf("chdir %s: ok, cwd %s\n", path, cwd);
    }
    snprintf(path, sizeof path, "%s/hello.sh", prefix);
    fflush(stdout);
    char *argv[] = {path, NULL}, *envp[] = {NULL};
    execve(path, argv, envp);
    printf("execve %s: %s\n", path, strerror(errno));
}

int main(int argc, char **argv) {
    if (argc < 3) DIE("usage: workload open|stat|threads|vfork|vfs ARGS");
    const char *mode = argv[1], *path = argv[2];
    if (!strcmp(mode, "open") && argc == 4) {
        long n = parse(argv[3]);
        long long t = now_ns();
        open_loop(path, n);
        printf("ns %lld\n", now_ns() - t);
    } else if (!strcmp(mode, "stat") && argc == 4) {
        long n = parse(argv[3]);
        struct stat st;
        long long t = now_ns();
        for (long i = 0; i < n; i++)
            CHECK(stat(path, &st));
        printf("ns %lld\n", now_ns() - t);
    } else if (!strcmp(mode, "threads") && argc == 5) {
        long t = parse(argv[3]), m = parse(argv[4]);
        if (t < 1 || t > 64) DIE("1 to 64 threads");
        pthread_t th[64];
        struct job j = {path, m};
        for (long i = 0; i < t; i++) {
            int e = pthread_create(&th[i], NULL, thread_main, &j);
            if (e) DIE("pthread_create: %s", strerror(e));
        }
        for (long i = 0; i < t; i++) {
            int e = pthread_join(th[i], NULL);
            if (e) DIE("pthread_join: %s", strerror(e));
        }
        printf("opens %ld\n", t * m);
    } else if (!strcmp(mode, "vfork") && argc == 4) {
        char *child[] = {"/proc/self/exe", "open", (char *)path, argv[3], NULL};
        fflush(stdout);
        pid_t pid = CHECK(vfork());
        if (pid == 0) {
            execv("/proc/self/exe", child);
            _exit(127);
        }
        int status;
        CHECK(waitpid(pid, &status, 0));
        if (!WIFEXITED(status) || WEXITSTATUS(status)) DIE("the vfork child failed (status %#x)", status);
        printf("vfork ok\n");
    } else if (!strcmp(mode, "vfs") && argc == 3) {
        vfs(path);
    } else {
        DIE("bad arguments for %s", mode);
    }
    if (fflush(stdout)) DIE("stdout: %s", strerror(errno));
    return 0;
}
