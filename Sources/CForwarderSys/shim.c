#define _GNU_SOURCE
#include "CForwarderSys.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

static socklen_t to_sockaddr(const fwd_addr *a, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof(*ss));
    if (a->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        memcpy(&s6->sin6_addr, a->addr, 16);
        s6->sin6_scope_id = a->scope;
        return sizeof(*s6);
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(a->port);
    memcpy(&s4->sin_addr, a->addr, 4);
    return sizeof(*s4);
}

static void from_sockaddr(const struct sockaddr_storage *ss, fwd_addr *a) {
    memset(a, 0, sizeof(*a));
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        // Present v4-mapped addresses as IPv4.
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            a->family = 4;
            memcpy(a->addr, ((const uint8_t *)&s6->sin6_addr) + 12, 4);
        } else {
            a->family = 6;
            memcpy(a->addr, &s6->sin6_addr, 16);
            a->scope = s6->sin6_scope_id;
        }
        a->port = ntohs(s6->sin6_port);
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        a->family = 4;
        memcpy(a->addr, &s4->sin_addr, 4);
        a->port = ntohs(s4->sin_port);
    }
}

static int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    return 0;
}

static int fail_close(int fd) { int e = errno; close(fd); return -e; }

int fwd_udp_listen(const fwd_addr *local) {
    int af = local->family == 6 ? AF_INET6 : AF_INET;
    int fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (af == AF_INET6) {
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) return fail_close(fd);
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) < 0) return fail_close(fd);
    } else {
        if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0) return fail_close(fd);
    }
    int rcv = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    struct sockaddr_storage ss;
    socklen_t sl = to_sockaddr(local, &ss);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0) return fail_close(fd);
    return fd;
}

int fwd_tcp_listen(const fwd_addr *local, int backlog) {
    int af = local->family == 6 ? AF_INET6 : AF_INET;
    int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (af == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) return fail_close(fd);
    struct sockaddr_storage ss;
    socklen_t sl = to_sockaddr(local, &ss);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0) return fail_close(fd);
    if (listen(fd, backlog) < 0) return fail_close(fd);
    return fd;
}

#define CTL_SIZE 64

struct fwd_batch {
    int count, bufsize;
    struct mmsghdr *rx, *tx;
    struct iovec *rxiov, *txiov;
    struct sockaddr_storage *rxname, *txname;
    uint8_t *rxctl, *txctl;
    uint8_t *rxbuf, *txbuf;
};

fwd_batch *fwd_batch_new(int count, int bufsize) {
    fwd_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->count = count; b->bufsize = bufsize;
    b->rx = calloc(count, sizeof *b->rx); b->tx = calloc(count, sizeof *b->tx);
    b->rxiov = calloc(count, sizeof *b->rxiov); b->txiov = calloc(count, sizeof *b->txiov);
    b->rxname = calloc(count, sizeof *b->rxname); b->txname = calloc(count, sizeof *b->txname);
    b->rxctl = calloc(count, CTL_SIZE); b->txctl = calloc(count, CTL_SIZE);
    b->rxbuf = calloc(count, bufsize); b->txbuf = calloc(count, bufsize);
    if (!b->rx || !b->tx || !b->rxiov || !b->txiov || !b->rxname || !b->txname ||
        !b->rxctl || !b->txctl || !b->rxbuf || !b->txbuf) { fwd_batch_free(b); return NULL; }
    return b;
}

void fwd_batch_free(fwd_batch *b) {
    if (!b) return;
    free(b->rx); free(b->tx); free(b->rxiov); free(b->txiov); free(b->rxname); free(b->txname);
    free(b->rxctl); free(b->txctl); free(b->rxbuf); free(b->txbuf); free(b);
}

int fwd_batch_count(const fwd_batch *b) { return b->count; }
int fwd_batch_bufsize(const fwd_batch *b) { return b->bufsize; }

int fwd_recv_batch(int fd, fwd_batch *b) {
    for (int i = 0; i < b->count; i++) {
        b->rxiov[i].iov_base = b->rxbuf + (size_t)i * b->bufsize;
        b->rxiov[i].iov_len = b->bufsize;
        struct msghdr *m = &b->rx[i].msg_hdr;
        m->msg_name = &b->rxname[i]; m->msg_namelen = sizeof b->rxname[i];
        m->msg_iov = &b->rxiov[i]; m->msg_iovlen = 1;
        m->msg_control = b->rxctl + (size_t)i * CTL_SIZE; m->msg_controllen = CTL_SIZE;
        m->msg_flags = 0;
        b->rx[i].msg_len = 0;
    }
    int n = recvmmsg(fd, b->rx, b->count, MSG_DONTWAIT, NULL);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    return n;
}

uint8_t *fwd_batch_rx(fwd_batch *b, int i, int *len, fwd_addr *peer, fwd_addr *local, int *ifindex) {
    struct msghdr *m = &b->rx[i].msg_hdr;
    *len = (m->msg_flags & MSG_TRUNC) ? -1 : (int)b->rx[i].msg_len;
    from_sockaddr(&b->rxname[i], peer);
    memset(local, 0, sizeof *local);
    *ifindex = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi; memcpy(&pi, CMSG_DATA(c), sizeof pi);
            local->family = 4; memcpy(local->addr, &pi.ipi_addr, 4);
            *ifindex = pi.ipi_ifindex;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi; memcpy(&pi, CMSG_DATA(c), sizeof pi);
            local->family = 6; memcpy(local->addr, &pi.ipi6_addr, 16);
            *ifindex = pi.ipi6_ifindex;
        }
    }
    return b->rxbuf + (size_t)i * b->bufsize;
}

uint8_t *fwd_batch_tx_buf(fwd_batch *b, int i) { return b->txbuf + (size_t)i * b->bufsize; }

static size_t build_pktinfo(uint8_t *ctl, const fwd_addr *local, int ifindex, int peer_family) {
    if (!local || local->family == 0) return 0;
    memset(ctl, 0, CTL_SIZE);
    struct msghdr m; memset(&m, 0, sizeof m);
    m.msg_control = ctl;
    if (local->family == 6 && peer_family == 6) {
        m.msg_controllen = CMSG_SPACE(sizeof(struct in6_pktinfo));
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = IPPROTO_IPV6; c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
        struct in6_pktinfo pi; memset(&pi, 0, sizeof pi);
        memcpy(&pi.ipi6_addr, local->addr, 16); pi.ipi6_ifindex = ifindex;
        memcpy(CMSG_DATA(c), &pi, sizeof pi);
        return m.msg_controllen;
    } else if (local->family == 4 && peer_family == 4) {
        m.msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = IPPROTO_IP; c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        struct in_pktinfo pi; memset(&pi, 0, sizeof pi);
        memcpy(&pi.ipi_spec_dst, local->addr, 4); pi.ipi_ifindex = ifindex;
        memcpy(CMSG_DATA(c), &pi, sizeof pi);
        return m.msg_controllen;
    }
    return 0;
}

void fwd_batch_tx_set(fwd_batch *b, int i, int len, const fwd_addr *peer, const fwd_addr *local, int ifindex) {
    b->txiov[i].iov_base = b->txbuf + (size_t)i * b->bufsize;
    b->txiov[i].iov_len = len;
    struct msghdr *m = &b->tx[i].msg_hdr;
    memset(m, 0, sizeof *m);
    m->msg_name = &b->txname[i];
    m->msg_namelen = to_sockaddr(peer, &b->txname[i]);
    m->msg_iov = &b->txiov[i]; m->msg_iovlen = 1;
    uint8_t *ctl = b->txctl + (size_t)i * CTL_SIZE;
    size_t cl = build_pktinfo(ctl, local, ifindex, peer->family);
    m->msg_control = cl ? ctl : NULL; m->msg_controllen = cl;
}

int fwd_send_batch(int fd, fwd_batch *b, int n) {
    int sent = 0;
    while (sent < n) {
        int r = sendmmsg(fd, b->tx + sent, n - sent, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR) continue;
            // Skip the datagram that failed (e.g. EPERM/ENETUNREACH to one client) and go on.
            if (sent + 1 < n) { sent++; continue; }
            return sent ? sent : -errno;
        }
        sent += r;
    }
    return sent;
}

int fwd_send_one(int fd, const uint8_t *data, int len, const fwd_addr *peer, const fwd_addr *local, int ifindex) {
    struct sockaddr_storage ss; socklen_t sl = to_sockaddr(peer, &ss);
    struct iovec iov = { (void *)data, (size_t)len };
    uint8_t ctl[CTL_SIZE];
    struct msghdr m; memset(&m, 0, sizeof m);
    m.msg_name = &ss; m.msg_namelen = sl; m.msg_iov = &iov; m.msg_iovlen = 1;
    size_t cl = build_pktinfo(ctl, local, ifindex, peer->family);
    m.msg_control = cl ? ctl : NULL; m.msg_controllen = cl;
    ssize_t r = sendmsg(fd, &m, MSG_DONTWAIT);
    return r < 0 ? -errno : (int)r;
}

int fwd_udp_connect(const fwd_addr *to) {
    int af = to->family == 6 ? AF_INET6 : AF_INET;
    int fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_storage ss; socklen_t sl = to_sockaddr(to, &ss);
    // connect() on an unbound UDP socket binds a random ephemeral port.
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0) return fail_close(fd);
    return fd;
}

int fwd_tcp_connect(const fwd_addr *to) {
    int af = to->family == 6 ? AF_INET6 : AF_INET;
    int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_storage ss; socklen_t sl = to_sockaddr(to, &ss);
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) return fail_close(fd);
    return fd;
}

int fwd_send(int fd, const uint8_t *data, int len) {
    ssize_t r = send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return r < 0 ? -errno : (int)r;
}

int fwd_recv_from(int fd, uint8_t *buf, int cap, fwd_addr *from) {
    struct sockaddr_storage ss; socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    ssize_t r = recvfrom(fd, buf, cap, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&ss, &sl);
    if (r < 0) return -errno;
    from_sockaddr(&ss, from);
    return (int)r;
}

int fwd_read(int fd, uint8_t *buf, int cap) {
    ssize_t r = recv(fd, buf, cap, MSG_DONTWAIT);
    return r < 0 ? -errno : (int)r;
}

int fwd_write(int fd, const uint8_t *data, int len) {
    ssize_t r = send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return r < 0 ? -errno : (int)r;
}

int fwd_accept(int fd, fwd_addr *peer, fwd_addr *local) {
    struct sockaddr_storage ss; socklen_t sl = sizeof ss;
    int c = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return -errno;
    from_sockaddr(&ss, peer);
    struct sockaddr_storage ls; socklen_t ll = sizeof ls;
    if (getsockname(c, (struct sockaddr *)&ls, &ll) == 0) from_sockaddr(&ls, local);
    else memset(local, 0, sizeof *local);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

int fwd_sock_error(int fd) {
    int e = 0; socklen_t l = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0) return errno;
    return e;
}

void fwd_close(int fd) { if (fd >= 0) close(fd); }

int fwd_epoll_create(void) { int r = epoll_create1(EPOLL_CLOEXEC); return r < 0 ? -errno : r; }

int fwd_epoll_ctl(int ep, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event ev; memset(&ev, 0, sizeof ev);
    ev.events = events; ev.data.u64 = token;
    int o = op == 1 ? EPOLL_CTL_ADD : op == 2 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    return epoll_ctl(ep, o, fd, &ev) < 0 ? -errno : 0;
}

int fwd_epoll_wait(int ep, uint64_t *tokens, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(ep, evs, max, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) { tokens[i] = evs[i].data.u64; events[i] = evs[i].events; }
    return n;
}

int fwd_signalfd(void) {
    sigset_t set; sigemptyset(&set);
    sigaddset(&set, SIGTERM); sigaddset(&set, SIGINT); sigaddset(&set, SIGHUP); sigaddset(&set, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) return -errno;
    signal(SIGPIPE, SIG_IGN);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int fwd_signalfd_read(int fd) {
    struct signalfd_siginfo si;
    ssize_t r = read(fd, &si, sizeof si);
    if (r < 0) return (errno == EAGAIN) ? 0 : -errno;
    if (r != sizeof si) return 0;
    return (int)si.ssi_signo;
}

uint64_t fwd_monotonic_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t fwd_random_u64(void) {
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != sizeof v) v = fwd_monotonic_ns() ^ ((uint64_t)getpid() << 32);
    return v;
}

void fwd_random_fill(void *buf, int len) {
    unsigned char *p = buf;
    int done = 0;
    while (done < len) {
        ssize_t r = getrandom(p + done, (size_t)(len - done), 0);
        if (r > 0) { done += (int)r; continue; }
        if (r < 0 && errno == EINTR) continue;
        // No getrandom (very old kernel): the best this can do is a time-seeded mix.
        uint64_t x = fwd_monotonic_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)p;
        for (; done < len; done++) {
            x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
            p[done] = (unsigned char)((x * 0x2545F4914F6CDD1Dull) >> 56);
        }
    }
}

void fwd_strerror(int e, char *buf, int cap) {
    if (cap <= 0) return;
    const char *s = strerror(e);
    strncpy(buf, s ? s : "unknown error", cap - 1);
    buf[cap - 1] = 0;
}

int fwd_addr_format(const fwd_addr *a, char *buf, int cap) {
    if (!inet_ntop(a->family == 6 ? AF_INET6 : AF_INET, a->addr, buf, cap)) { buf[0] = 0; return 0; }
    return (int)strlen(buf);
}

int fwd_addr_parse(const char *text, fwd_addr *a) {
    uint8_t tmp[16];
    if (inet_pton(AF_INET, text, tmp) == 1) { a->family = 4; memset(a->addr, 0, 16); memcpy(a->addr, tmp, 4); return 1; }
    if (inet_pton(AF_INET6, text, tmp) == 1) { a->family = 6; memcpy(a->addr, tmp, 16); return 1; }
    return 0;
}

#include <sys/inotify.h>

int fwd_inotify_init(void) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int fwd_inotify_watch_dir(int fd, const char *dir) {
    int wd = inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB);
    return wd < 0 ? -errno : wd;
}

int fwd_inotify_unwatch(int fd, int wd) { return inotify_rm_watch(fd, wd) < 0 ? -errno : 0; }

static int name_in_list(const char *name, const char *names) {
    size_t len = strlen(name);
    const char *p = names;
    while (p && *p) {
        const char *end = strchr(p, '/');
        size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l == len && strncmp(p, name, len) == 0) return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

int fwd_inotify_drain(int fd, const char *names) {
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int matched = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            return matched ? matched : -errno;
        }
        if (n == 0) break;
        for (char *p = buf; p < buf + n; ) {
            struct inotify_event *ev = (struct inotify_event *)p;
            if (ev->mask & IN_Q_OVERFLOW) matched++;
            else if (ev->len > 0) {
                if (name_in_list(ev->name, names)) matched++;
            }
            p += sizeof(struct inotify_event) + ev->len;
        }
    }
    return matched;
}

int fwd_readlink(const char *path, char *buf, int cap) {
    ssize_t n = readlink(path, buf, cap - 1);
    if (n < 0) return -errno;
    buf[n] = 0;
    return (int)n;
}

#include <sys/resource.h>

long fwd_raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        if (want == RLIM_INFINITY || want > 1048576) want = 1048576;
        rl.rlim_cur = want;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}

#include <malloc.h>

void fwd_malloc_trim(void) { malloc_trim(0); }
