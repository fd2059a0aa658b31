#pragma once
// Thin C shims for the forwarder's I/O shell: things Swift cannot import
// (CMSG_* macros, the packed epoll_event, signalfd masks) or that are simply
// clearer in C. No policy lives here.
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// An IPv4 or IPv6 socket address in a plain, Swift-friendly form.
typedef struct fwd_addr {
    uint8_t family;     // 4 or 6 (0 = unset)
    uint8_t addr[16];   // IPv4 uses the first 4 bytes
    uint16_t port;      // host byte order
    uint32_t scope;     // IPv6 scope id
} fwd_addr;

/// Listening sockets. Return fd >= 0, or -errno.
int fwd_udp_listen(const fwd_addr *local);
int fwd_tcp_listen(const fwd_addr *local, int backlog);

/// A batch of datagrams for recvmmsg/sendmmsg with PKTINFO control messages.
typedef struct fwd_batch fwd_batch;
fwd_batch *fwd_batch_new(int count, int bufsize);
void fwd_batch_free(fwd_batch *b);
int fwd_batch_count(const fwd_batch *b);
int fwd_batch_bufsize(const fwd_batch *b);

/// Receives up to count datagrams; returns how many, 0 when none (EAGAIN), or -errno.
int fwd_recv_batch(int fd, fwd_batch *b);
/// Received datagram i: data pointer, length, peer, local (destination) address and ifindex.
uint8_t *fwd_batch_rx(fwd_batch *b, int i, int *len, fwd_addr *peer, fwd_addr *local, int *ifindex);
/// Output slot i's buffer (bufsize bytes).
uint8_t *fwd_batch_tx_buf(fwd_batch *b, int i);
/// Fills output slot i: length, destination peer, source address (family 0 = kernel's choice) and ifindex.
void fwd_batch_tx_set(fwd_batch *b, int i, int len, const fwd_addr *peer, const fwd_addr *local, int ifindex);
/// Sends output slots 0..<n with sendmmsg; returns how many were sent or -errno.
int fwd_send_batch(int fd, fwd_batch *b, int n);
/// Sends one datagram from an arbitrary buffer with PKTINFO. Returns bytes sent or -errno.
int fwd_send_one(int fd, const uint8_t *data, int len, const fwd_addr *peer, const fwd_addr *local, int ifindex);

/// Upstream sockets (non-blocking). UDP: bound to port 0 (kernel picks a random port), connected.
/// TCP: non-blocking connect started. Return fd or -errno.
int fwd_udp_connect(const fwd_addr *to);
int fwd_tcp_connect(const fwd_addr *to);
/// send/recv wrappers returning -errno on failure.
int fwd_send(int fd, const uint8_t *data, int len);
int fwd_recv_from(int fd, uint8_t *buf, int cap, fwd_addr *from);
int fwd_read(int fd, uint8_t *buf, int cap);
int fwd_write(int fd, const uint8_t *data, int len);
int fwd_accept(int fd, fwd_addr *peer, fwd_addr *local);
int fwd_sock_error(int fd);
void fwd_close(int fd);

/// epoll helpers (epoll_event is packed on x86-64, awkward from Swift).
int fwd_epoll_create(void);
int fwd_epoll_ctl(int ep, int op, int fd, uint32_t events, uint64_t token);  // op: 1 add, 2 del, 3 mod
int fwd_epoll_wait(int ep, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);
enum { FWD_EPOLLIN = 1, FWD_EPOLLOUT = 4, FWD_EPOLLERR = 8, FWD_EPOLLHUP = 16 };

/// Blocks SIGTERM, SIGINT, SIGHUP, SIGUSR1 and returns a signalfd for them; ignores SIGPIPE.
int fwd_signalfd(void);
/// Reads one signal from the signalfd: its number, 0 when none, -errno on error.
int fwd_signalfd_read(int fd);

/// Monotonic time in nanoseconds.
uint64_t fwd_monotonic_ns(void);
/// Random seed from getrandom.
uint64_t fwd_random_u64(void);
/// Fills buf with len bytes from the kernel's CSPRNG (getrandom).
void fwd_random_fill(void *buf, int len);
/// strerror text for errno e, copied into buf.
void fwd_strerror(int e, char *buf, int cap);
/// Formats an address (without port) into buf (>= 64 bytes). Returns length.
int fwd_addr_format(const fwd_addr *a, char *buf, int cap);
/// Parses text as an IPv4 or IPv6 address into a (port untouched). Returns 1 on success.
int fwd_addr_parse(const char *text, fwd_addr *a);

/// inotify: a non-blocking instance, and a watch on a directory for entries being
/// written, moved in or out, created or deleted. Return fd / watch descriptor or -errno.
int fwd_inotify_init(void);
int fwd_inotify_watch_dir(int fd, const char *dir);
int fwd_inotify_unwatch(int fd, int wd);
/// Drains pending events; returns how many name one of `names` ('/'-separated list of
/// file names), plus 1 for a queue overflow; 0 if none matched; -errno on error.
int fwd_inotify_drain(int fd, const char *names);
/// readlink into buf; returns length or -errno.
int fwd_readlink(const char *path, char *buf, int cap);

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
long fwd_raise_nofile(void);

/// Returns free heap memory to the system (glibc malloc_trim).
void fwd_malloc_trim(void);
