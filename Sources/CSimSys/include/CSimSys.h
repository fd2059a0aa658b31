#pragma once
// C shims for the test-bed: things that are awkward or unsafe from Swift
// (fork/exec in a multi-threaded process, setns/unshare on a dedicated
// thread, prctl, mounts). All functions return 0 or a positive errno value
// unless documented otherwise; they never abort.

#include <sys/types.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Creates a new, anonymous network namespace on a short-lived thread and
/// returns an O_CLOEXEC fd that holds it in *out_fd. The calling thread's
/// namespace is untouched.
int simsys_netns_new(int *out_fd);

/// Opens the calling thread's current network namespace (O_CLOEXEC).
int simsys_netns_current(int *out_fd);

/// Runs fn(ctx) on a fresh thread that first joins the network namespace
/// `nsfd` (setns). The thread ends afterwards, so no other thread ever
/// changes namespace. Returns the setns/pthread error, or 0 once fn ran.
int simsys_run_in_netns(int nsfd, void (*fn)(void *), void *ctx);

/// Describes one process to start. Arrays are NULL-terminated.
typedef struct simsys_spawn_req {
    const char *path;        ///< absolute path of the executable (already resolved)
    char *const *argv;
    char *const *envp;
    const char *cwd;         ///< NULL: inherit
    int nsfd;                ///< network namespace to join, -1: stay
    int stdin_fd;            ///< -1: /dev/null
    int stdout_fd;           ///< -1: /dev/null
    int stderr_fd;           ///< -1: /dev/null
    int new_pgrp;            ///< 1: setpgid(0, 0) in the child
} simsys_spawn_req;

/// Forks and execs on the long-lived spawner thread (so PR_SET_PDEATHSIG,
/// which follows the forking *thread*, fires only when the process dies).
/// The child joins nsfd, sets PDEATHSIG=SIGKILL, resets signals, closes all
/// fds but 0-2 and execs. On success *out_pid is set and 0 is returned; if
/// the child could not exec, the child's errno is returned and *out_stage
/// (if non-NULL) names the failing step ("setns", "chdir", "exec", ...).
int simsys_spawn(const simsys_spawn_req *req, pid_t *out_pid, const char **out_stage);

/// prctl(PR_SET_PDEATHSIG, sig); returns 0 or errno.
int simsys_set_pdeathsig(int sig);

/// pipe2(fds, O_CLOEXEC); returns 0 or errno.
int simsys_pipe_cloexec(int fds[2]);

/// pidfd_open(2); returns fd or -errno.
int simsys_pidfd_open(pid_t pid);

/// Bind-mounts the namespace fd onto /run/netns/<name> (creating
/// /run/netns as a shared mount like iproute2 does).
int simsys_netns_pin(int nsfd, const char *name);

/// Unmounts (detach) and removes /run/netns/<name>.
int simsys_netns_unpin(const char *name);

/// Rootless mode: forks a child that unshares CLONE_NEWUSER|CLONE_NEWNET,
/// maps uid/gid to 0, and execs /proc/self/exe with argv. The parent waits
/// and returns the child's exit status (>= 0, 128+signal if killed).
/// Returns -errno on failure before the exec, with *out_stage naming the
/// step ("unshare", "uid_map", "setgroups", "gid_map", "exec", "fork").
int simsys_rootless_reexec(char *const *argv, const char **out_stage);

#ifdef __cplusplus
}
#endif
