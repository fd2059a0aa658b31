#define _GNU_SOURCE
#include "CSimSys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// ---------------------------------------------------------------------------
// Namespaces on dedicated threads

struct netns_new_ctx { int fd; int err; };

static void *netns_new_thread(void *arg) {
    struct netns_new_ctx *c = arg;
    if (unshare(CLONE_NEWNET) != 0) { c->err = errno; return NULL; }
    c->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (c->fd < 0) c->err = errno;
    return NULL;
}

int simsys_netns_new(int *out_fd) {
    struct netns_new_ctx c = { -1, 0 };
    pthread_t t;
    int rc = pthread_create(&t, NULL, netns_new_thread, &c);
    if (rc != 0) return rc;
    pthread_join(t, NULL);
    if (c.err != 0) return c.err;
    *out_fd = c.fd;
    return 0;
}

int simsys_netns_current(int *out_fd) {
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    *out_fd = fd;
    return 0;
}

struct run_ctx { int nsfd; void (*fn)(void *); void *ctx; int err; };

static void *run_thread(void *arg) {
    struct run_ctx *c = arg;
    if (setns(c->nsfd, CLONE_NEWNET) != 0) { c->err = errno; return NULL; }
    c->fn(c->ctx);
    return NULL;
}

int simsys_run_in_netns(int nsfd, void (*fn)(void *), void *ctx) {
    struct run_ctx c = { nsfd, fn, ctx, 0 };
    pthread_t t;
    int rc = pthread_create(&t, NULL, run_thread, &c);
    if (rc != 0) return rc;
    pthread_join(t, NULL);
    return c.err;
}

// ---------------------------------------------------------------------------
// Spawning: fork + setns + exec from one long-lived thread

static const char *const stage_names[] = {
    "pdeathsig", "setpgid", "setns", "stdio", "chdir", "exec",
};

struct spawn_slot {
    pthread_mutex_t lock;        // protects everything below
    pthread_cond_t cond;
    pthread_mutex_t callers;     // serialises callers of simsys_spawn
    const simsys_spawn_req *req; // non-NULL: a request is pending
    int done;
    int err;
    int stage;
    pid_t pid;
};

static struct spawn_slot slot = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    NULL, 0, 0, -1, -1,
};
static void *spawner_thread(void *arg);

// The spawner thread exists once per process. After fork() the child has
// none, so it is (re)started whenever the pid differs from the one that
// started it.
static pthread_mutex_t spawner_start_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t spawner_pid = 0;

static int spawner_ensure(void) {
    pid_t me = getpid();
    pthread_mutex_lock(&spawner_start_lock);
    if (spawner_pid == me) { pthread_mutex_unlock(&spawner_start_lock); return 0; }
    // Fresh state (after fork the old thread and any waiters are gone).
    pthread_mutex_init(&slot.lock, NULL);
    pthread_cond_init(&slot.cond, NULL);
    pthread_mutex_init(&slot.callers, NULL);
    slot.req = NULL; slot.done = 0;
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    // Block all signals on the spawner thread so handlers never run on it.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t, &a, spawner_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    if (rc == 0) spawner_pid = me;
    pthread_mutex_unlock(&spawner_start_lock);
    return rc;
}

static void child_fail(int pipefd, int stage) {
    int msg[2] = { errno, stage };
    ssize_t w = write(pipefd, msg, sizeof msg);
    (void)w;
    _exit(127);
}

// Runs in the child after fork: async-signal-safe calls only.
static void child_exec(const simsys_spawn_req *r, int pipefd, pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(pipefd, 0);
    if (getppid() != parent) _exit(127); // the spawner thread already died

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        sigaction(s, &dfl, NULL);
    }

    if (r->new_pgrp && setpgid(0, 0) != 0) child_fail(pipefd, 1);
    if (r->nsfd >= 0 && setns(r->nsfd, CLONE_NEWNET) != 0) child_fail(pipefd, 2);

    // stdio: move sources above 2 first so dup2 never clobbers a later source.
    int src[3] = { r->stdin_fd, r->stdout_fd, r->stderr_fd };
    int tmp[3];
    for (int i = 0; i < 3; i++) {
        int fd = src[i];
        if (fd < 0) {
            fd = open("/dev/null", i == 0 ? O_RDONLY : O_WRONLY);
            if (fd < 0) child_fail(pipefd, 3);
        }
        tmp[i] = fcntl(fd, F_DUPFD, 3);
        if (tmp[i] < 0) child_fail(pipefd, 3);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(tmp[i], i) < 0) child_fail(pipefd, 3);
    }
    // Everything else must not leak into the child (sockets of fake
    // upstreams, namespace fds): mark close-on-exec; the error pipe is
    // already close-on-exec and stays usable until exec.
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd < 65536; fd++) {
            if (fd != pipefd) fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }

    if (r->cwd && chdir(r->cwd) != 0) child_fail(pipefd, 4);
    execve(r->path, r->argv, r->envp);
    child_fail(pipefd, 5);
}

static void do_spawn(const simsys_spawn_req *r, pid_t *out_pid, int *out_err, int *out_stage) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { *out_err = errno; *out_stage = -1; return; }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        *out_err = errno; *out_stage = -1;
        close(p[0]); close(p[1]);
        return;
    }
    if (pid == 0) {
        close(p[0]);
        child_exec(r, p[1], parent);
    }
    close(p[1]);
    int msg[2];
    ssize_t n;
    do { n = read(p[0], msg, sizeof msg); } while (n < 0 && errno == EINTR);
    close(p[0]);
    if (n == (ssize_t)sizeof msg) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        *out_err = msg[0] ? msg[0] : EIO;
        *out_stage = msg[1];
        return;
    }
    *out_pid = pid;
    *out_err = 0;
    *out_stage = -1;
}

static void *spawner_thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&slot.lock);
    for (;;) {
        while (slot.req == NULL) pthread_cond_wait(&slot.cond, &slot.lock);
        const simsys_spawn_req *r = slot.req;
        pid_t pid = -1; int err = 0, stage = -1;
        do_spawn(r, &pid, &err, &stage);
        slot.pid = pid; slot.err = err; slot.stage = stage;
        slot.req = NULL;
        slot.done = 1;
        pthread_cond_broadcast(&slot.cond);
    }
    return NULL;
}

int simsys_spawn(const simsys_spawn_req *req, pid_t *out_pid, const char **out_stage) {
    int started = spawner_ensure();
    if (started != 0) {
        if (out_stage) *out_stage = "thread";
        return started;
    }
    pthread_mutex_lock(&slot.callers);
    pthread_mutex_lock(&slot.lock);
    slot.req = req;
    slot.done = 0;
    pthread_cond_broadcast(&slot.cond);
    while (!slot.done) pthread_cond_wait(&slot.cond, &slot.lock);
    int err = slot.err, stage = slot.stage;
    pid_t pid = slot.pid;
    pthread_mutex_unlock(&slot.lock);
    pthread_mutex_unlock(&slot.callers);
    if (out_stage) *out_stage = (stage >= 0 && stage < 6) ? stage_names[stage] : "fork";
    if (err == 0) *out_pid = pid;
    return err;
}

int simsys_set_pdeathsig(int sig) {
    return prctl(PR_SET_PDEATHSIG, sig) == 0 ? 0 : errno;
}

int simsys_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : errno;
}

int simsys_pidfd_open(pid_t pid) {
    long fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) return -errno;
    return (int)fd;
}

// ---------------------------------------------------------------------------
// Pinning under /run/netns (as `ip netns add` does)

#define NETNS_RUN_DIR "/run/netns"

static int prepare_run_dir(void) {
    if (mkdir(NETNS_RUN_DIR, 0755) != 0 && errno != EEXIST) return errno;
    // Make the directory a shared mount point so a pin made here is seen in
    // other mount namespaces, as iproute2 does.
    if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) == 0) return 0;
    if (errno != EINVAL) return errno;
    if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) != 0) return errno;
    if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) != 0) return errno;
    return 0;
}

int simsys_netns_pin(int nsfd, const char *name) {
    if (!name || !*name || strchr(name, '/') || strlen(name) > 200) return EINVAL;
    int rc = prepare_run_dir();
    if (rc) return rc;
    char path[256], src[64];
    snprintf(path, sizeof path, NETNS_RUN_DIR "/%s", name);
    snprintf(src, sizeof src, "/proc/self/fd/%d", nsfd);
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0) return errno;
    close(fd);
    if (mount(src, path, "none", MS_BIND, NULL) != 0) {
        int e = errno;
        unlink(path);
        return e;
    }
    return 0;
}

int simsys_netns_unpin(const char *name) {
    if (!name || !*name || strchr(name, '/') || strlen(name) > 200) return EINVAL;
    char path[256];
    snprintf(path, sizeof path, NETNS_RUN_DIR "/%s", name);
    int e = 0;
    if (umount2(path, MNT_DETACH) != 0 && errno != EINVAL) e = errno; // EINVAL: not mounted
    if (unlink(path) != 0) return errno;
    return e == ENOENT ? 0 : e;
}

// ---------------------------------------------------------------------------
// Rootless re-exec

static volatile pid_t rootless_child = -1;

static void forward_signal(int sig) {
    if (rootless_child > 0) kill(rootless_child, sig);
}

static int write_all_file(const char *path, const char *buf, size_t len) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    ssize_t w = write(fd, buf, len);
    int e = (w == (ssize_t)len) ? 0 : (w < 0 ? errno : EIO);
    close(fd);
    return e;
}

int simsys_rootless_reexec(char *const *argv, const char **out_stage) {
    static const char *const stages[] = { "fork", "unshare", "uid_map", "setgroups", "gid_map", "exec" };
    char uidmap[64], gidmap[64];
    snprintf(uidmap, sizeof uidmap, "0 %u 1\n", (unsigned)geteuid());
    snprintf(gidmap, sizeof gidmap, "0 %u 1\n", (unsigned)getegid());
    size_t ulen = strlen(uidmap), glen = strlen(gidmap);
    extern char **environ;

    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { if (out_stage) *out_stage = "pipe"; return -errno; }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) { int e = errno; close(p[0]); close(p[1]); if (out_stage) *out_stage = "fork"; return -e; }
    if (pid == 0) {
        close(p[0]);
        int stage = 0, e = 0;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) { e = errno; stage = 1; goto fail; }
        if ((e = write_all_file("/proc/self/uid_map", uidmap, ulen)) != 0) { stage = 2; goto fail; }
        if ((e = write_all_file("/proc/self/setgroups", "deny", 4)) != 0) { stage = 3; goto fail; }
        if ((e = write_all_file("/proc/self/gid_map", gidmap, glen)) != 0) { stage = 4; goto fail; }
        execve("/proc/self/exe", argv, environ);
        e = errno; stage = 5;
    fail:;
        int msg[2] = { e, stage };
        ssize_t w = write(p[1], msg, sizeof msg);
        (void)w;
        _exit(127);
    }
    close(p[1]);
    rootless_child = pid;
    struct sigaction fwd, ign;
    memset(&fwd, 0, sizeof fwd);
    fwd.sa_handler = forward_signal;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    // Ctrl-C reaches the whole foreground group: the child handles it.
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGQUIT, &ign, NULL);
    sigaction(SIGTERM, &fwd, NULL);
    sigaction(SIGHUP, &fwd, NULL);

    int msg[2];
    ssize_t n;
    do { n = read(p[0], msg, sizeof msg); } while (n < 0 && errno == EINTR);
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) { st = 127 << 8; break; }
    }
    if (n == (ssize_t)sizeof msg) {
        if (out_stage) *out_stage = (msg[1] >= 0 && msg[1] < 6) ? stages[msg[1]] : "fork";
        return -(msg[0] ? msg[0] : EIO);
    }
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return 1;
}
