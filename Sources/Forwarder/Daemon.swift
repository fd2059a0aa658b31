#if canImport(Glibc)
import Glibc
#endif
import CForwarderSys

/// The thin I/O shell: one epoll loop thread that owns every socket, the
/// signalfd and the clock, feeds events into `ForwarderCore` and performs its
/// actions.
///
/// - UDP listeners: wildcard 0.0.0.0 and :: (IPV6_V6ONLY) unless --listen-address;
///   IP_PKTINFO/IPV6_RECVPKTINFO; batches of recvmmsg, cache hits and local answers
///   go back in one sendmmsg, each with a PKTINFO source = the address asked.
/// - Upstream UDP: a socket connect()ed to the server (so the kernel picks a random
///   source port and filters other sources; the core checks again) carries one attempt
///   at a time. When the attempt ends the socket goes to a small idle pool for that
///   server and is reused by a later attempt, at most `udpSocketUses` times
///   (`--query-port-reuse`, default 1: every query gets a new socket and port), then
///   closed, so that the source port keeps changing (like dnsmasq's pool of random-port
///   sockets: the port is random per socket, not per query; a spoofer still has to
///   guess a port among the sockets in use and the 16-bit ID). A reply carrying the ID
///   of one of the socket's earlier attempts is a late one and is dropped here; any
///   other datagram goes to the current attempt's checks in the core. Idle sockets
///   are closed after `udpSocketIdle`. This saves socket/connect/epoll_ctl/close, 4 of
///   the 7 system calls of a cache miss.
/// - Replies that come later than the query (misses) are collected during one pass of
///   the loop and sent with sendmmsg at its end.
/// - TCP: listeners on the same addresses; several length-prefixed queries per
///   connection; idle timeout; a cap on connections (the oldest idle is closed).
///   Queries that came over TCP go upstream over TCP.
public final class Daemon {
    enum Kind: UInt64 { case udpListener = 1, tcpListener, tcpClient, upstream, signal, inotify, udpUpstream }

    struct TCPClient {
        var fd: Int32
        var peer: Endpoint
        var local: Endpoint
        var inbuf: [UInt8] = []
        var outbuf: [UInt8] = []
        var lastActive: UInt64
        var wantWrite = false
        var inFlight = 0
    }

    struct UpstreamConn {
        var fd: Int32
        var transport: Transport
        var server: Endpoint
        var outbuf: [UInt8] = []
        var inbuf: [UInt8] = []
        var connected = false
    }

    /// A connected upstream UDP socket (see the type's notes); keyed by fd.
    struct UDPSock {
        var server: Endpoint
        var attempt: Int = -1          // -1: idle
        var queryID: UInt16 = 0
        var uses = 0
        var lastUsed: UInt64 = 0
        /// IDs of the socket's last attempts (late replies to them are dropped).
        var recent: (UInt16, UInt16, UInt16, UInt16) = (0, 0, 0, 0)
        func isRecent(_ id: UInt16) -> Bool {
            uses > 0 && (id == recent.0 || (uses > 1 && id == recent.1) || (uses > 2 && id == recent.2) || (uses > 3 && id == recent.3))
        }
    }

    public let options: Options
    public let core: ForwarderCore
    let pid: Int32
    var epfd: Int32 = -1
    var sigfd: Int32 = -1
    var udpFDs: [Int32] = []
    var tcpFDs: [Int32] = []
    var tcpClients: [Int: TCPClient] = [:]
    var nextClientID = 1
    var upstreams: [Int: UpstreamConn] = [:]
    var udpSocks: [Int32: UDPSock] = [:]
    var idleUDP: [Endpoint: [Int32]] = [:]
    /// Uses of one upstream UDP socket before it is closed (a new one gets a new port).
    public var udpSocketUses = 1
    /// Idle upstream UDP sockets kept per server.
    public var udpSocketsIdlePerServer = 256
    /// Idle upstream UDP sockets are closed after this long unused.
    public var udpSocketIdle: UInt64 = 5_000_000_000
    var lastIdleSweep: UInt64 = 0
    /// Client replies waiting for the end of the loop pass (one sendmmsg).
    var replyBatch: OpaquePointer?
    var replyCount: Int32 = 0
    var replyFD: Int32 = -1
    var batch: OpaquePointer?
    var scratch = [UInt8](repeating: 0, count: 65536 + 2)
    var running = true
    var peakInFlight = 0
    var exitSignal = "SIGTERM"
    var inotifyFD: Int32 = -1
    var watchDescriptors: [Int32] = []
    var watchNames: [String] = []
    /// Servers read from the resolv-file last time (to detect a change).
    var resolvServers: [Endpoint] = []
    /// Open-resolver safety (--local-service), on whenever no --listen-address is given.
    public let localFilter: LocalServiceFilter?
    public var tcpIdleTimeout: UInt64 = 10_000_000_000
    public var maxTCPClients = 64
    let batchSize = 64
    let udpBufSize = 4096

    public init(options: Options) {
        self.options = options
        var cfg = ForwarderCore.Config()
        cfg.policy = options.policy
        cfg.cacheSize = options.cacheSize
        cfg.negativeCache = !options.noNegcache
        cfg.logQueries = options.logQueries
        cfg.forwardMax = options.dnsForwardMax
        cfg.addressRules = options.addressRules
        cfg.localDomains = options.localDomains
        cfg.seed = fwd_random_u64()
        cfg.caseRandomization = options.caseRandomization
        cfg.holdWithoutServers = UInt64(options.holdQueriesMs) * 1_000_000
        self.pid = getpid()
        self.udpSocketUses = options.queryPortReuse
        self.core = ForwarderCore(config: cfg)
        // Upstream IDs (and 0x20 bits) from the kernel's CSPRNG, not the seeded generator.
        self.core.entropy = { fwd_random_fill($0.baseAddress, Int32($0.count)) }
        self.localFilter = options.listenAddresses.isEmpty ? LocalServiceFilter() : nil
    }

    // MARK: logging

    public func log(_ s: String) {
        let line = "forwarder[\(pid)]: \(s)\n"
        var bytes = Array(line.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + off, $0.count - off) }
            if n <= 0 { break }
            off += n
        }
        bytes.removeAll()
    }

    // MARK: files

    public static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
            if out.count > 64 << 20 { break }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Reads --resolv-file; nil when it is missing or has no nameserver.
    func readResolvFile() -> [Endpoint]? {
        log("reading \(options.resolvFile)")
        guard let text = Daemon.readFile(options.resolvFile) else {
            log("failed to access \(options.resolvFile): \(Daemon.errnoText(errno))")
            return nil
        }
        let eps = Options.parseResolvConf(text)
        if eps.isEmpty {
            log("no servers found in \(options.resolvFile), will retry")
            return nil
        }
        return eps
    }

    /// The full upstream list: --server entries, then the resolv-file's.
    func composeServers(_ resolv: [Endpoint]) -> [ServerSpec] {
        var specs = options.servers
        for ep in resolv { specs.append(ServerSpec(endpoint: ep, fromResolvFile: true)) }
        return specs
    }

    func logServers(_ specs: [ServerSpec]) {
        for d in options.localDomains { log("using only locally-known addresses for domain \(d)") }
        for s in specs {
            if s.domains.isEmpty { log("using nameserver \(s.endpoint.fullText)") }
            else { for d in s.domains { log("using nameserver \(s.endpoint.fullText) for domain \(d)") } }
        }
    }

    /// Start-up and SIGHUP: read everything.
    func loadServers() -> [ServerSpec] {
        if !options.noResolv, let eps = readResolvFile() { resolvServers = eps }
        let specs = composeServers(resolvServers)
        logServers(specs)
        return specs
    }

    /// inotify said the resolv-file may have changed: re-read it, and switch the
    /// upstream set atomically if its servers changed. A missing or empty file keeps
    /// the current servers (a rewrite often deletes or truncates first).
    func resolvFileChanged() {
        setupResolvWatch()
        guard let eps = readResolvFile() else { return }
        guard eps != resolvServers else { return }
        resolvServers = eps
        let specs = composeServers(eps)
        logServers(specs)
        if options.clearOnReload { core.clearCache() }
        core.setServers(specs, now: fwd_monotonic_ns())
        flushActions()
    }

    static func splitPath(_ path: String) -> (dir: String, base: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    /// Watches the resolv-file's directory and, when it is a symlink, its target's.
    func setupResolvWatch() {
        guard !options.noResolv else { return }
        if inotifyFD < 0 {
            inotifyFD = fwd_inotify_init()
            guard inotifyFD >= 0 else { log("inotify: \(Daemon.errnoText(-inotifyFD))"); return }
            _ = fwd_epoll_ctl(epfd, 1, inotifyFD, UInt32(FWD_EPOLLIN), token(.inotify, 0))
        }
        var targets: [(String, String)] = [Daemon.splitPath(options.resolvFile)]
        var buf = [CChar](repeating: 0, count: 4096)
        var path = options.resolvFile
        for _ in 0..<8 {   // follow a chain of symlinks
            let n = fwd_readlink(path, &buf, 4096)
            guard n > 0 else { break }
            var target = String(cString: buf)
            if !target.hasPrefix("/") { target = Daemon.splitPath(path).dir + "/" + target }
            targets.append(Daemon.splitPath(target))
            path = target
        }
        let names = targets.map { $0.1 }
        let dirs = targets.map { $0.0 }
        if names == watchNames && !watchDescriptors.isEmpty { return }
        for wd in watchDescriptors { _ = fwd_inotify_unwatch(inotifyFD, wd) }
        watchDescriptors = []
        for d in Set(dirs) {
            let wd = fwd_inotify_watch_dir(inotifyFD, d)
            if wd >= 0 { watchDescriptors.append(wd) }
            else { log("cannot watch \(d) for changes to \(options.resolvFile): \(Daemon.errnoText(-wd))") }
        }
        watchNames = names
    }

    func readInotify() {
        let r = watchNames.joined(separator: "/").withCString { fwd_inotify_drain(inotifyFD, $0) }
        if r > 0 { resolvFileChanged() }
    }

    func loadHosts() -> HostsTable {
        var t = HostsTable()
        var files: [String] = []
        if !options.noHosts { files.append("/etc/hosts") }
        files += options.addnHosts
        for f in files {
            if let text = Daemon.readFile(f) {
                let before = t.names.count
                t.add(text: text, source: f)
                log("read \(f) - \(t.names.count - before) names")
            } else {
                log("failed to load names from \(f): \(Daemon.errnoText(errno))")
            }
        }
        return t
    }

    static func errnoText(_ e: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 128)
        fwd_strerror(e, &buf, 128)
        return String(cString: buf)
    }

    // MARK: setup

    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    func token(_ k: Kind, _ id: Int) -> UInt64 { k.rawValue << 56 | UInt64(id) }

    public func start() throws {
        // One socket per upstream attempt: make room for many in flight.
        _ = fwd_raise_nofile()
        epfd = fwd_epoll_create()
        guard epfd >= 0 else { throw StartError(description: "epoll_create: \(Daemon.errnoText(-epfd))") }
        sigfd = fwd_signalfd()
        guard sigfd >= 0 else { throw StartError(description: "signalfd: \(Daemon.errnoText(-sigfd))") }
        _ = fwd_epoll_ctl(epfd, 1, sigfd, UInt32(FWD_EPOLLIN), token(.signal, 0))

        var addrs = options.listenAddresses
        let wildcard = addrs.isEmpty
        if wildcard {
            addrs = [Endpoint(v4: 0, 0, 0, 0, port: 0), Endpoint(isV6: true, bytes: (0, 0), port: 0)]
        }
        for var a in addrs {
            a.port = options.port
            var ca = a.cValue
            let u = fwd_udp_listen(&ca)
            if u < 0 {
                if wildcard && a.isV6 { log("warning: no IPv6 listener: \(Daemon.errnoText(-u))"); continue }
                throw StartError(description: "failed to create listening socket for \(a.addressText) port \(options.port): \(Daemon.errnoText(-u))")
            }
            let t = fwd_tcp_listen(&ca, 128)
            if t < 0 {
                fwd_close(u)
                if wildcard && a.isV6 { log("warning: no IPv6 listener: \(Daemon.errnoText(-t))"); continue }
                throw StartError(description: "failed to create TCP listening socket for \(a.addressText) port \(options.port): \(Daemon.errnoText(-t))")
            }
            udpFDs.append(u)
            tcpFDs.append(t)
            _ = fwd_epoll_ctl(epfd, 1, u, UInt32(FWD_EPOLLIN), token(.udpListener, udpFDs.count - 1))
            _ = fwd_epoll_ctl(epfd, 1, t, UInt32(FWD_EPOLLIN), token(.tcpListener, tcpFDs.count - 1))
        }
        batch = fwd_batch_new(Int32(batchSize), Int32(udpBufSize))
        replyBatch = fwd_batch_new(Int32(batchSize), Int32(udpBufSize))
        log("started, version \(Daemon.version) cachesize \(options.cacheSize)")
        if options.dnsForwardMax > 0 {
            log("at most \(options.dnsForwardMax) queries in flight; past that, clients get SERVFAIL")
        }
        core.setHosts(loadHosts())
        core.setServers(loadServers(), now: fwd_monotonic_ns())
        setupResolvWatch()
        if let pf = options.pidFile {
            let text = "\(pid)\n"
            let fd = open(pf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd < 0 { throw StartError(description: "cannot write --pid-file \(pf): \(Daemon.errnoText(errno))") }
            _ = text.withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        flushActions()
    }

    public static let version = "0.1.0"

    // MARK: the loop

    public func run() -> Int32 {
        var tokens = [UInt64](repeating: 0, count: 256)
        var events = [UInt32](repeating: 0, count: 256)
        while running {
            var timeout: Int32 = 1000
            let now = fwd_monotonic_ns()
            if let d = core.nextDeadline() {
                let ms = d > now ? (d - now + 999_999) / 1_000_000 : 0
                timeout = Int32(min(ms, 1000))
            }
            let n = fwd_epoll_wait(epfd, &tokens, &events, 256, timeout)
            if n < 0 { log("epoll_wait: \(Daemon.errnoText(-n))"); return 1 }
            for i in 0..<Int(n) {
                let t = tokens[i]
                let kind = Kind(rawValue: t >> 56)
                let id = Int(t & 0x00FF_FFFF_FFFF_FFFF)
                switch kind {
                case .udpListener: readUDP(id)
                case .tcpListener: acceptTCP(id)
                case .tcpClient: serviceTCPClient(id, events: events[i])
                case .upstream: serviceUpstream(id, events: events[i])
                case .udpUpstream: serviceUDPUpstream(Int32(truncatingIfNeeded: id))
                case .signal: readSignals()
                case .inotify: readInotify()
                case .none: break
                }
                flushActions()
            }
            core.handleTimers(now: fwd_monotonic_ns())
            flushActions()
            flushReplies()
            sweepTCPClients(now: fwd_monotonic_ns())
            sweepIdleUDP(now: fwd_monotonic_ns())
            // After a burst (many queries in flight, now none), give memory back.
            let inflight = core.inFlight
            if inflight > peakInFlight { peakInFlight = inflight }
            if inflight == 0 && peakInFlight >= 256 && upstreams.isEmpty {
                core.compactIfIdle()
                fwd_malloc_trim()
                peakInFlight = 0
            }
        }
        shutdown()
        return 0
    }

    func shutdown() {
        flushReplies()
        for (_, c) in tcpClients { fwd_close(c.fd) }
        for (_, u) in upstreams where u.transport == .tcp { fwd_close(u.fd) }
        for (fd, _) in udpSocks { fwd_close(fd) }
        tcpClients.removeAll(); upstreams.removeAll(); udpSocks.removeAll(); idleUDP.removeAll()
        if let b = replyBatch { fwd_batch_free(b); replyBatch = nil }
        for fd in udpFDs + tcpFDs { fwd_close(fd) }
        if inotifyFD >= 0 { fwd_close(inotifyFD) }
        if let pf = options.pidFile { unlink(pf) }
        if let b = batch { fwd_batch_free(b); batch = nil }
        log("exiting on receipt of \(exitSignal)")
    }

    func readSignals() {
        while true {
            let s = fwd_signalfd_read(sigfd)
            if s <= 0 { return }
            switch s {
            case SIGTERM, SIGINT:
                exitSignal = s == SIGTERM ? "SIGTERM" : "SIGINT"
                running = false
            case SIGHUP:
                core.clearCache()
                core.setHosts(loadHosts())
                core.setServers(loadServers(), now: fwd_monotonic_ns())
                setupResolvWatch()
                log("cache cleared")
            case SIGUSR1:
                for l in core.statisticsLines() { log(l) }
                if let f = localFilter { log("local service: \(f.prefixes.count) attached networks, queries from elsewhere dropped \(f.dropped)") }
            default: break
            }
        }
    }

    // MARK: UDP clients

    func readUDP(_ idx: Int) {
        guard let b = batch else { return }
        let fd = udpFDs[idx]
        // Bounded (4 batches of 64), so that upstream replies get their turn: in a burst,
        // reading 1024 new queries per pass against at most 127 replies made the replies
        // queue up (hundreds of ms of latency).
        for _ in 0..<4 {
            let n = Int(fwd_recv_batch(fd, b))
            if n <= 0 { return }
            var outCount: Int32 = 0
            let now = fwd_monotonic_ns()
            for i in 0..<n {
                var len: Int32 = 0
                var peer = fwd_addr(), local = fwd_addr()
                var ifindex: Int32 = 0
                guard let data = fwd_batch_rx(b, Int32(i), &len, &peer, &local, &ifindex), len >= 0 else { continue }
                let client = ClientRef(transport: .udp, peer: Endpoint(peer), local: Endpoint(local), ifindex: ifindex, handle: idx)
                if let f = localFilter, !f.allows(client.peer, now: now, log: log) { continue }
                let slot = fwd_batch_tx_buf(b, outCount)!
                let r = core.handleQuery(UnsafeRawBufferPointer(start: data, count: Int(len)), from: client, now: now,
                                         replyInto: UnsafeMutableRawBufferPointer(start: slot, count: udpBufSize))
                if r > 0 {
                    fwd_batch_tx_set(b, outCount, Int32(r), &peer, &local, ifindex)
                    outCount += 1
                }
            }
            if outCount > 0 { _ = fwd_send_batch(fd, b, outCount) }
            flushActions()
            if n < batchSize { return }
        }
    }

    // MARK: actions

    func flushActions() {
        core.drainActions { a in
            switch a {
            case .log(let s): log(s)
            case .reply(let client, let bytes): sendReply(client, bytes)
            case .send(let aid, let server, let transport, let bytes): startUpstream(aid, server, transport, bytes)
            case .cancel(let aid): closeUpstream(aid)
            }
        }
    }

    func sendReply(_ c: ClientRef, _ bytes: [UInt8]) {
        switch c.transport {
        case .udp:
            guard c.handle < udpFDs.count else { return }
            var peer = c.peer.cValue
            var local = c.local.cValue
            let fd = udpFDs[c.handle]
            if let rb = replyBatch, bytes.count <= udpBufSize {
                if replyCount > 0 && (replyFD != fd || replyCount >= Int32(batchSize)) { flushReplies() }
                let slot = fwd_batch_tx_buf(rb, replyCount)!
                bytes.withUnsafeBufferPointer { slot.update(from: $0.baseAddress!, count: $0.count) }
                fwd_batch_tx_set(rb, replyCount, Int32(bytes.count), &peer, &local, c.ifindex)
                replyFD = fd
                replyCount += 1
                return
            }
            _ = bytes.withUnsafeBufferPointer { fwd_send_one(fd, $0.baseAddress, Int32($0.count), &peer, &local, c.ifindex) }
        case .tcp:
            guard var conn = tcpClients[c.handle] else { return }
            conn.inFlight = max(0, conn.inFlight - 1)
            conn.outbuf.append(UInt8(bytes.count >> 8))
            conn.outbuf.append(UInt8(bytes.count & 0xff))
            conn.outbuf.append(contentsOf: bytes)
            tcpClients[c.handle] = conn
            flushTCPClient(c.handle)
        }
    }

    func startUpstream(_ aid: Int, _ server: Endpoint, _ transport: Transport, _ bytes: [UInt8]) {
        var ca = server.cValue
        let now = fwd_monotonic_ns()
        switch transport {
        case .udp:
            guard bytes.count >= 2 else { core.handleSendFailure(attempt: aid, errno: EINVAL, now: now); return }
            var fd: Int32 = -1
            if let f = idleUDP[server]?.popLast() {   // in place (no copy of the pool)
                fd = f
            } else {
                fd = fwd_udp_connect(&ca)
                if fd < 0 { core.handleSendFailure(attempt: aid, errno: -fd, now: now); return }
                if fwd_epoll_ctl(epfd, 1, fd, UInt32(FWD_EPOLLIN), token(.udpUpstream, Int(fd))) < 0 {
                    fwd_close(fd)
                    core.handleSendFailure(attempt: aid, errno: EMFILE, now: now)
                    return
                }
                udpSocks[fd] = UDPSock(server: server)
            }
            udpSocks[fd]!.attempt = aid
            udpSocks[fd]!.queryID = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
            upstreams[aid] = UpstreamConn(fd: fd, transport: .udp, server: server, connected: true)
            let r = bytes.withUnsafeBufferPointer { fwd_send(fd, $0.baseAddress, Int32($0.count)) }
            if r < 0 {
                // The socket may be in error (e.g. a pending ICMP error): not reused.
                upstreams.removeValue(forKey: aid)
                udpSocks.removeValue(forKey: fd)
                fwd_close(fd)
                core.handleSendFailure(attempt: aid, errno: -r, now: now)
                return
            }
        case .tcp:
            let fd = fwd_tcp_connect(&ca)
            if fd < 0 { core.handleSendFailure(attempt: aid, errno: -fd, now: now); return }
            var out: [UInt8] = [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xff)]
            out.append(contentsOf: bytes)
            upstreams[aid] = UpstreamConn(fd: fd, transport: .tcp, server: server, outbuf: out)
            _ = fwd_epoll_ctl(epfd, 1, fd, UInt32(FWD_EPOLLOUT | FWD_EPOLLIN), token(.upstream, aid))
        }
    }

    func closeUpstream(_ aid: Int) {
        guard let u = upstreams.removeValue(forKey: aid) else { return }
        if u.transport == .udp { releaseUDP(u.fd, attempt: aid); return }
        fwd_close(u.fd)
    }

    /// The attempt on `fd` is over: the socket goes idle for reuse, or is closed
    /// when it has been used enough or the server's idle pool is full.
    func releaseUDP(_ fd: Int32, attempt aid: Int) {
        guard var s = udpSocks[fd], s.attempt == aid else { return }
        s.attempt = -1
        s.recent = (s.queryID, s.recent.0, s.recent.1, s.recent.2)
        s.uses += 1
        s.lastUsed = fwd_monotonic_ns()
        let pool = idleUDP[s.server]?.count ?? 0
        if s.uses >= udpSocketUses || pool >= udpSocketsIdlePerServer || !running {
            udpSocks.removeValue(forKey: fd)
            fwd_close(fd)
            return
        }
        udpSocks[fd] = s
        idleUDP[s.server, default: []].append(fd)
    }

    func closeIdleUDP(_ fd: Int32) {
        guard let s = udpSocks[fd], s.attempt < 0 else { return }
        udpSocks.removeValue(forKey: fd)
        if var l = idleUDP[s.server], let i = l.firstIndex(of: fd) {
            l.remove(at: i)
            idleUDP[s.server] = l.isEmpty ? nil : l
        }
        fwd_close(fd)
    }

    /// Closes idle upstream sockets unused for `udpSocketIdle` (checked once a second).
    func sweepIdleUDP(now: UInt64) {
        guard !idleUDP.isEmpty, now &- lastIdleSweep >= 1_000_000_000 else { return }
        lastIdleSweep = now
        var old: [Int32] = []
        for (_, l) in idleUDP { for fd in l where now &- (udpSocks[fd]?.lastUsed ?? 0) >= udpSocketIdle { old.append(fd) } }
        for fd in old { closeIdleUDP(fd) }
        for (server, l) in idleUDP where l.isEmpty { idleUDP.removeValue(forKey: server) }
    }

    /// Sends the client replies collected by `sendReply`.
    func flushReplies() {
        guard replyCount > 0, let rb = replyBatch else { return }
        _ = fwd_send_batch(replyFD, rb, replyCount)
        replyCount = 0
    }

    /// Datagrams (or an ICMP error) on a connected upstream UDP socket.
    func serviceUDPUpstream(_ fd: Int32) {
        for _ in 0..<64 {
            guard let s = udpSocks[fd] else { return }
            var from = fwd_addr()
            let n = scratch.withUnsafeMutableBytes { fwd_recv_from(fd, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), 65536, &from) }
            if n == -EAGAIN || n == -EWOULDBLOCK { return }
            let now = fwd_monotonic_ns()
            if s.attempt < 0 {
                // Idle: a late reply, or an error for an earlier attempt. Dropped; a socket
                // in error is not reused.
                if n < 0 { closeIdleUDP(fd); return }
                continue
            }
            if n < 0 {
                // ICMP port/host unreachable reported on the connected socket.
                core.handleSendFailure(attempt: s.attempt, errno: -n, now: now)
                flushActions()
                continue
            }
            let len = min(Int(n), 65536)
            if len >= 2 {
                let id = UInt16(scratch[0]) << 8 | UInt16(scratch[1])
                if id != s.queryID && s.isRecent(id) { continue }   // late reply to an earlier attempt
            }
            scratch.withUnsafeBytes { core.handleUpstreamReply(attempt: s.attempt, bytes: UnsafeRawBufferPointer(rebasing: $0[0..<len]), from: Endpoint(from), now: now) }
            flushActions()
            // The attempt is over (the usual case: its reply came): no second read that
            // would only say EAGAIN; anything still queued wakes epoll again.
            if udpSocks[fd]?.attempt != s.attempt { return }
        }
    }

    func serviceUpstream(_ aid: Int, events: UInt32) {
        guard var u = upstreams[aid] else { return }
        let now = fwd_monotonic_ns()
        switch u.transport {
        case .udp:
            for _ in 0..<8 {
                guard let cur = upstreams[aid], cur.fd == u.fd else { return }
                var from = fwd_addr()
                let n = scratch.withUnsafeMutableBytes { fwd_recv_from(u.fd, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), 65536, &from) }
                if n == -EAGAIN || n == -EWOULDBLOCK { return }
                if n < 0 {
                    // ICMP port/host unreachable reported on the connected socket.
                    core.handleSendFailure(attempt: aid, errno: -n, now: now)
                    return
                }
                let len = min(Int(n), 65536)
                scratch.withUnsafeBytes { core.handleUpstreamReply(attempt: aid, bytes: UnsafeRawBufferPointer(rebasing: $0[0..<len]), from: Endpoint(from), now: now) }
                flushActions()
            }
        case .tcp:
            if !u.connected && (events & UInt32(FWD_EPOLLOUT | FWD_EPOLLERR | FWD_EPOLLHUP)) != 0 {
                let e = fwd_sock_error(u.fd)
                if e != 0 { core.handleSendFailure(attempt: aid, errno: e, now: now); return }
                u.connected = true
            }
            if u.connected && !u.outbuf.isEmpty {
                let r = u.outbuf.withUnsafeBufferPointer { fwd_write(u.fd, $0.baseAddress, Int32($0.count)) }
                if r < 0 && r != -EAGAIN { core.handleSendFailure(attempt: aid, errno: -r, now: now); return }
                if r > 0 { u.outbuf.removeFirst(Int(r)) }
                if u.outbuf.isEmpty { _ = fwd_epoll_ctl(epfd, 3, u.fd, UInt32(FWD_EPOLLIN), token(.upstream, aid)) }
            }
            if events & UInt32(FWD_EPOLLIN | FWD_EPOLLHUP | FWD_EPOLLERR) != 0 && u.connected {
                while true {
                    let r = scratch.withUnsafeMutableBytes { fwd_read(u.fd, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), 65536) }
                    if r == -EAGAIN { break }
                    if r <= 0 {
                        upstreams[aid] = u
                        core.handleSendFailure(attempt: aid, errno: r == 0 ? ECONNRESET : -r, now: now)
                        return
                    }
                    u.inbuf.append(contentsOf: scratch[0..<Int(r)])
                    if u.inbuf.count >= 2 {
                        let need = Int(u.inbuf[0]) << 8 | Int(u.inbuf[1])
                        if u.inbuf.count >= need + 2 {
                            upstreams[aid] = u
                            let msg = Array(u.inbuf[2..<(2 + need)])
                            msg.withUnsafeBytes { core.handleUpstreamReply(attempt: aid, bytes: $0, from: u.server, now: now) }
                            if core.hasAttempt(aid) {
                                // Not accepted (spoofed/mismatched): treat as a failed exchange.
                                core.handleSendFailure(attempt: aid, errno: EPROTO, now: now)
                            }
                            return
                        }
                    }
                    if u.inbuf.count > 70000 { break }
                }
            }
            if upstreams[aid] != nil { upstreams[aid] = u }
        }
    }

    // MARK: TCP clients

    func acceptTCP(_ idx: Int) {
        let lfd = tcpFDs[idx]
        for _ in 0..<32 {
            var peer = fwd_addr(), local = fwd_addr()
            let fd = fwd_accept(lfd, &peer, &local)
            if fd < 0 { return }
            let now = fwd_monotonic_ns()
            if let f = localFilter, !f.allows(Endpoint(peer), now: now, log: log) { fwd_close(fd); continue }
            if tcpClients.count >= maxTCPClients {
                // Full: close the connection idle the longest (the oldest activity).
                if let victim = tcpClients.min(by: { $0.value.lastActive < $1.value.lastActive })?.key {
                    closeTCPClient(victim)
                }
            }
            let id = nextClientID
            nextClientID += 1
            var l = Endpoint(local); l.port = 0
            tcpClients[id] = TCPClient(fd: fd, peer: Endpoint(peer), local: l, lastActive: now)
            _ = fwd_epoll_ctl(epfd, 1, fd, UInt32(FWD_EPOLLIN), token(.tcpClient, id))
        }
    }

    func closeTCPClient(_ id: Int) {
        guard let c = tcpClients.removeValue(forKey: id) else { return }
        fwd_close(c.fd)
    }

    func serviceTCPClient(_ id: Int, events: UInt32) {
        guard var c = tcpClients[id] else { return }
        let now = fwd_monotonic_ns()
        c.lastActive = now
        if events & UInt32(FWD_EPOLLOUT) != 0 {
            tcpClients[id] = c
            flushTCPClient(id)
            guard let c2 = tcpClients[id] else { return }
            c = c2
        }
        if events & UInt32(FWD_EPOLLIN | FWD_EPOLLHUP | FWD_EPOLLERR) != 0 {
            while true {
                let r = scratch.withUnsafeMutableBytes { fwd_read(c.fd, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), 65536) }
                if r == -EAGAIN { break }
                if r <= 0 { closeTCPClient(id); return }
                c.inbuf.append(contentsOf: scratch[0..<Int(r)])
                // Frames
                var consumed = 0
                while c.inbuf.count - consumed >= 2 {
                    let need = Int(c.inbuf[consumed]) << 8 | Int(c.inbuf[consumed + 1])
                    guard c.inbuf.count - consumed - 2 >= need else { break }
                    let msg = Array(c.inbuf[(consumed + 2)..<(consumed + 2 + need)])
                    consumed += 2 + need
                    tcpClients[id] = c
                    let client = ClientRef(transport: .tcp, peer: c.peer, local: c.local, ifindex: 0, handle: id)
                    let n = msg.withUnsafeBytes { m in
                        scratch.withUnsafeMutableBytes { s in
                            core.handleQuery(m, from: client, now: now, replyInto: UnsafeMutableRawBufferPointer(rebasing: s[2...]))
                        }
                    }
                    guard var cc = tcpClients[id] else { return }
                    if n > 0 {
                        cc.outbuf.append(UInt8(n >> 8)); cc.outbuf.append(UInt8(n & 0xff))
                        cc.outbuf.append(contentsOf: scratch[2..<(2 + n)])
                    } else {
                        cc.inFlight += 1
                    }
                    c = cc
                }
                if consumed > 0 { c.inbuf.removeFirst(consumed) }
                tcpClients[id] = c
                flushActions()
                guard let c3 = tcpClients[id] else { return }
                c = c3
            }
            tcpClients[id] = c
            flushTCPClient(id)
        } else {
            tcpClients[id] = c
        }
    }

    func flushTCPClient(_ id: Int) {
        guard var c = tcpClients[id] else { return }
        while !c.outbuf.isEmpty {
            let r = c.outbuf.withUnsafeBufferPointer { fwd_write(c.fd, $0.baseAddress, Int32($0.count)) }
            if r == -EAGAIN { break }
            if r <= 0 { closeTCPClient(id); return }
            c.outbuf.removeFirst(Int(r))
        }
        let want = !c.outbuf.isEmpty
        if want != c.wantWrite {
            c.wantWrite = want
            _ = fwd_epoll_ctl(epfd, 3, c.fd, UInt32(FWD_EPOLLIN | (want ? FWD_EPOLLOUT : 0)), token(.tcpClient, id))
        }
        if c.outbuf.count > 1 << 20 { closeTCPClient(id); return }
        tcpClients[id] = c
    }

    func sweepTCPClients(now: UInt64) {
        guard !tcpClients.isEmpty else { return }
        var idle: [Int] = []
        for (id, c) in tcpClients where now &- c.lastActive > tcpIdleTimeout { idle.append(id) }
        for id in idle { closeTCPClient(id) }
    }
}
