import DNSWire
import Glibc

/// One query a fake upstream saw, and what it did with it.
public struct UpstreamQuery: Sendable, CustomStringConvertible {
    /// The upstream's name (as given to `FakeUpstream`).
    public var upstream: String
    /// `SimClock.now()` when the query was read.
    public var time: Double
    public var source: Endpoint
    public var transport: DNSTransport
    /// The question name as sent (case kept); "" when the query did not decode.
    public var name: String
    /// "A", "MX", ...; "" when the query did not decode.
    public var type: String
    public var id: UInt16
    /// The behaviour in force when the query arrived.
    public var behaviour: UpstreamBehaviour
    /// What was done: "answered NOERROR with 1 record", "REFUSED", "silent",
    /// "TCP reset", "garbage bytes", "... send failed: ..." etc.
    public var outcome: String

    public var description: String {
        let t = (time * 1000).rounded() / 1000
        return "\(t)s \(upstream) \(transport.rawValue) from \(source) id \(id): \(name) \(type) -> \(behaviour): \(outcome)"
    }
}

/// One window of an upstream's script: from `from` (seconds, `SimClock.now()`
/// scale) on, `behaviour` applies.
public struct BehaviourWindow: Hashable, Sendable {
    public var from: Double
    public var behaviour: UpstreamBehaviour

    public init(from: Double, _ behaviour: UpstreamBehaviour) {
        self.from = from
        self.behaviour = behaviour
    }
}

/// An ICMP error that came back for a reply a fake upstream sent (the
/// Docker-bridge symptom: the client's host rejects a reply from the wrong
/// source address with "port unreachable").
public struct UpstreamICMPError: Sendable, CustomStringConvertible {
    public var upstream: String
    /// `SimClock.now()` when it was read.
    public var time: Double
    /// Where the bounced reply was going.
    public var destination: Endpoint?
    /// The address of the host that sent the ICMP error.
    public var reporter: String?
    /// ICMP (or ICMPv6) type and code: 3/3 (v6: 1/4) is port unreachable.
    public var type: UInt8
    public var code: UInt8
    /// ECONNREFUSED for port unreachable.
    public var errno: Int32

    public var isPortUnreachable: Bool { errno == ECONNREFUSED }

    public var description: String {
        let what = isPortUnreachable ? "port unreachable" : "\(String(cString: strerror(errno))) (type \(type) code \(code))"
        return "\((time * 1000).rounded() / 1000)s \(upstream): ICMP \(what) from \(reporter ?? "?") for reply to \(destination.map { "\($0)" } ?? "?")"
    }
}

/// A scripted DNS server served by the harness process: UDP and TCP on one
/// address and port, from a zone, with a switchable behaviour.
///
/// Sockets come from the factory (so the runner can make them inside a host's
/// namespace); the server runs on its own thread (a poll loop with a wake pipe)
/// until `stop()` or deinit.
///
/// `naive: true` reproduces the Docker-bridge mistake: the UDP socket is bound
/// to the wildcard address (0.0.0.0 or ::) and answered with recvfrom/sendto,
/// so the kernel picks each reply's source address by route. Normal mode binds
/// the given address.
public final class FakeUpstream: @unchecked Sendable {
    public let name: String
    /// The address and port served (the actual port when 0 was asked for).
    public let endpoint: Endpoint
    public let naive: Bool
    /// Every query seen, in order. Wait on it for "the upstream saw X".
    public let queries: EventLog<UpstreamQuery>
    /// Queries read so far (counted even when `recordQueries` is off).
    public var queryCount: Int { shared.mutex.locked { shared.queryCount } }
    /// ICMP errors about UDP replies sent (IP_RECVERR), in order.
    public let icmpErrors: EventLog<UpstreamICMPError>

    private let shared: UpstreamShared
    private let server: UpstreamServer
    private var thread: ActorThread?
    private let stopLock = ActorMutex()

    /// Binds and starts serving.
    /// - Parameters:
    ///   - listen: address and port; port 0 picks a free port (the same for UDP and TCP).
    ///   - tcp: also serve TCP on the same port.
    ///   - recordQueries: keep every query in `queries`; turn off for long
    ///     benchmarks (the log grows without bound), `queryCount` still counts.
    /// - Throws: `ActorError` naming the address when a socket cannot be made or bound.
    public init(name: String = "upstream", listen: Endpoint, zone: Zone,
                behaviour: UpstreamBehaviour = .answer, naive: Bool = false, tcp: Bool = true,
                recordQueries: Bool = true, socketFactory: SocketFactory = loopbackSocketFactory) throws {
        self.name = name
        self.naive = naive
        self.queries = EventLog()
        self.icmpErrors = EventLog()
        self.shared = UpstreamShared(behaviour: behaviour, zone: zone)
        self.shared.recordQueries = recordQueries
        let fds = try UpstreamServer.openSockets(listen: listen, naive: naive, tcp: tcp, factory: socketFactory)
        self.endpoint = try Endpoint(ip: listen.ip, port: fds.port)
        self.server = try UpstreamServer(name: name, endpoint: endpoint, naive: naive, udp: fds.udp, tcp: fds.tcp,
                                         shared: shared, log: queries, icmpLog: icmpErrors)
        let server = self.server
        do {
            thread = try ActorThread(name: "upstream \(name)") { server.run() }
        } catch {
            server.closeAll()
            throw error
        }
    }

    /// `FakeUpstream(address: "127.0.0.1", port: 5353, zone: z)`.
    public convenience init(name: String = "upstream", address: String, port: UInt16 = 53, zone: Zone,
                            behaviour: UpstreamBehaviour = .answer, naive: Bool = false, tcp: Bool = true,
                            recordQueries: Bool = true, socketFactory: SocketFactory = loopbackSocketFactory) throws {
        try self.init(name: name, listen: try Endpoint(ip: address, port: port), zone: zone, behaviour: behaviour,
                      naive: naive, tcp: tcp, recordQueries: recordQueries, socketFactory: socketFactory)
    }

    deinit {
        stop()
    }

    /// The behaviour in force now (the script's window, if one has begun).
    public var behaviour: UpstreamBehaviour {
        shared.mutex.locked { shared.current(at: SimClock.now()) }
    }

    /// Switches the behaviour and drops any script; takes effect for the next
    /// query read. Thread-safe.
    public func setBehaviour(_ behaviour: UpstreamBehaviour) {
        shared.mutex.locked {
            shared.behaviour = behaviour
            shared.script = []
        }
    }

    /// Time windows, Deckard-style: from each window's `from` (`SimClock.now()`
    /// scale) its behaviour applies, until the next window begins. Before the
    /// first window the behaviour set last (`setBehaviour` / init) applies.
    /// Chosen per query when it is read, on the server's thread: no runner
    /// thread has to be on time. Thread-safe.
    public func setScript(_ windows: [BehaviourWindow]) {
        shared.mutex.locked { shared.script = windows.sorted { $0.from < $1.from } }
    }

    public var zone: Zone {
        shared.mutex.locked { shared.zone }
    }

    /// Replaces the zone; takes effect for the next query read. Thread-safe.
    public func setZone(_ zone: Zone) {
        shared.mutex.locked { shared.zone = zone }
    }

    /// Stops serving, closes every socket and joins the thread. Idempotent.
    public func stop() {
        let t: ActorThread? = stopLock.locked {
            let t = thread
            thread = nil
            return t
        }
        guard let t else { return }
        server.requestStop()
        t.join()
        server.closeWakePipe()
    }

    /// Queries seen for `name` (case-insensitive), optionally after a time.
    public func queries(for name: String, after time: Double = -.infinity) -> [UpstreamQuery] {
        queries.snapshot().filter { $0.time >= time && $0.name.lowercased() == name.lowercased() }
    }
}

/// State the runner changes while the server thread reads it.
final class UpstreamShared: @unchecked Sendable {
    let mutex = ActorMutex()
    var behaviour: UpstreamBehaviour
    var zone: Zone
    var recordQueries = true
    var queryCount = 0

    /// Sorted by `from`.
    var script: [BehaviourWindow] = []

    /// Call with `mutex` held.
    func current(at time: Double) -> UpstreamBehaviour {
        script.last(where: { $0.from <= time })?.behaviour ?? behaviour
    }

    init(behaviour: UpstreamBehaviour, zone: Zone) {
        self.behaviour = behaviour
        self.zone = zone
    }
}

/// The server thread's state: sockets, TCP connections, delayed replies.
final class UpstreamServer: @unchecked Sendable {
    private final class Connection {
        let fd: Int32
        let peer: Endpoint
        var input: [UInt8] = []
        var output: [UInt8] = []
        /// After a reset was scheduled or done: ignore it.
        var dead = false
        init(fd: Int32, peer: Endpoint) { self.fd = fd; self.peer = peer }
    }

    private enum Deferred {
        case udp([UInt8], to: Endpoint, from: String?, logEntry: Int)
        case tcp([UInt8], connection: Int)
        case reset(connection: Int)
    }

    private let name: String
    private let endpoint: Endpoint
    private let naive: Bool
    private let udpFd: Int32
    private let tcpFd: Int32?
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let shared: UpstreamShared
    private let log: EventLog<UpstreamQuery>
    private let icmpLog: EventLog<UpstreamICMPError>
    private let stopFlag = StopSignal()

    private var connections: [Int: Connection] = [:]
    private var nextConnection = 0
    private var deferred: [(due: Double, what: Deferred)] = []
    private var buffer = [UInt8](repeating: 0, count: 65536)

    static func openSockets(listen: Endpoint, naive: Bool, tcp: Bool, factory: SocketFactory) throws
        -> (udp: Int32, tcp: Int32?, port: UInt16) {
        var attempt = 0
        while true {
            attempt += 1
            let udp = try ActorSocket.open(factory, listen.family, ActorSocket.udp)
            do {
                let bindAt = naive ? Endpoint.wildcard(listen.family, port: listen.port) : listen
                if listen.family == .v6 { ActorSocket.setOption(udp, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
                // Only changes error reporting, not how replies are sent: the naive mode stays naive.
                ActorSocket.enableErrorQueue(udp, listen.family)
                try ActorSocket.bind(udp, bindAt, "udp")
                guard let port = ActorSocket.localEndpoint(udp)?.port else {
                    throw ActorError.errno("getsockname \(bindAt)")
                }
                guard tcp else { return (udp, nil, port) }
                let t = try ActorSocket.open(factory, listen.family, ActorSocket.tcp)
                do {
                    ActorSocket.setOption(t, SOL_SOCKET, SO_REUSEADDR, 1)
                    if listen.family == .v6 { ActorSocket.setOption(t, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
                    let tcpAt = naive ? Endpoint.wildcard(listen.family, port: port) : try Endpoint(ip: listen.ip, port: port)
                    try ActorSocket.bind(t, tcpAt, "tcp")
                    if Glibc.listen(t, 1024) != 0 { throw ActorError.errno("listen \(tcpAt)") }
                    return (udp, t, port)
                } catch {
                    close(t)
                    throw error
                }
            } catch {
                close(udp)
                // With an ephemeral port, the TCP side may find it taken: try another.
                if listen.port == 0 && attempt < 20 { continue }
                throw error
            }
        }
    }

    init(name: String, endpoint: Endpoint, naive: Bool, udp: Int32, tcp: Int32?,
         shared: UpstreamShared, log: EventLog<UpstreamQuery>,
         icmpLog: EventLog<UpstreamICMPError>) throws {
        self.name = name
        self.endpoint = endpoint
        self.naive = naive
        self.udpFd = udp
        self.tcpFd = tcp
        self.shared = shared
        self.log = log
        self.icmpLog = icmpLog
        var pipeFds: [Int32] = [0, 0]
        if pipe(&pipeFds) != 0 {
            let e = ActorError.errno("pipe for upstream \(name)")
            close(udp)
            if let tcp { close(tcp) }
            throw e
        }
        wakeRead = pipeFds[0]
        wakeWrite = pipeFds[1]
        for fd in pipeFds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
    }

    func requestStop() {
        stopFlag.stop()
        var b: UInt8 = 1
        _ = write(wakeWrite, &b, 1)
    }

    /// Closes the sockets (the thread does this as it ends).
    private func closeSockets() {
        close(udpFd)
        if let tcpFd { close(tcpFd) }
        for c in connections.values { close(c.fd) }
        connections.removeAll()
    }

    /// Closes the wake pipe: only once the thread is joined, so `requestStop`
    /// never writes to a closed (or reused) descriptor.
    func closeWakePipe() {
        close(wakeRead)
        close(wakeWrite)
    }

    /// Everything, for when the thread never started.
    func closeAll() {
        closeSockets()
        closeWakePipe()
    }

    func run() {
        defer { closeSockets() }
        while !stopFlag.isStopped {
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: udpFd, events: Int16(POLLIN), revents: 0)]
            if let tcpFd { fds.append(pollfd(fd: tcpFd, events: Int16(POLLIN), revents: 0)) }
            let fixed = fds.count
            let ids = Array(connections.keys)
            for id in ids {
                let c = connections[id]!
                fds.append(pollfd(fd: c.fd, events: Int16(POLLIN) | (c.output.isEmpty ? 0 : Int16(POLLOUT)), revents: 0))
            }
            var timeout: Int32 = -1
            if let due = deferred.map({ $0.due }).min() {
                timeout = Int32(max(0, min((due - SimClock.monotonic()) * 1000, 60_000)).rounded(.up))
            }
            let rc = poll(&fds, nfds_t(fds.count), timeout)
            if rc < 0 && errno != EINTR { break }
            if rc > 0 {
                if fds[0].revents != 0 {
                    var sink = [UInt8](repeating: 0, count: 64)
                    while read(wakeRead, &sink, sink.count) > 0 {}
                }
                if fds[1].revents != 0 { readUDP() }
                if tcpFd != nil, fds[2].revents != 0 { acceptTCP() }
                for (i, id) in ids.enumerated() where fds[fixed + i].revents != 0 {
                    serviceConnection(id, fds[fixed + i].revents)
                }
            }
            runDeferred()
        }
    }

    // MARK: UDP

    private func readUDP() {
        for _ in 0..<256 {
            guard let e = ActorSocket.readErrorQueue(udpFd) else { break }
            icmpLog.append(UpstreamICMPError(upstream: name, time: SimClock.now(), destination: e.destination,
                                             reporter: e.reporter?.ip, type: e.type, code: e.code, errno: e.errno))
        }
        for _ in 0..<256 {
            let (n, from) = ActorSocket.receive(udpFd, &buffer)
            if n < 0 {
                let e = Int32(-n)
                if e == EAGAIN || e == EWOULDBLOCK { return }
                continue   // EINTR, or a pending ICMP error (already logged from the queue)
            }
            guard let from else { continue }
            handle(Array(buffer[0..<n]), transport: .udp, from: from, connection: nil)
        }
    }

    // MARK: TCP

    private func acceptTCP() {
        guard let tcpFd else { return }
        for _ in 0..<64 {
            var storage = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept(tcpFd, $0, &len)
                }
            }
            if fd < 0 { return }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            guard let peer = Endpoint(storage: storage) else { close(fd); continue }
            nextConnection += 1
            connections[nextConnection] = Connection(fd: fd, peer: peer)
        }
    }

    private func serviceConnection(_ id: Int, _ revents: Int16) {
        guard let c = connections[id] else { return }
        if revents & Int16(POLLOUT) != 0 { flush(id) }
        guard connections[id] != nil else { return }
        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            while true {
                let n = read(c.fd, &buffer, buffer.count)
                if n > 0 {
                    c.input += buffer[0..<n]
                    continue
                }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { break }
                // EOF or error: the client is gone.
                drop(id)
                return
            }
            while c.input.count >= 2 {
                let len = Int(c.input[0]) << 8 | Int(c.input[1])
                guard c.input.count >= 2 + len else { break }
                let message = Array(c.input[2..<(2 + len)])
                c.input.removeFirst(2 + len)
                handle(message, transport: .tcp, from: c.peer, connection: id)
                if connections[id] == nil || c.dead { return }
            }
        }
    }

    private func flush(_ id: Int) {
        guard let c = connections[id] else { return }
        while !c.output.isEmpty {
            let n = c.output.withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                c.output.removeFirst(n)
            } else {
                if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
                drop(id)
                return
            }
        }
    }

    private func drop(_ id: Int) {
        if let c = connections.removeValue(forKey: id) { close(c.fd) }
    }

    // MARK: Replies

    private func handle(_ bytes: [UInt8], transport: DNSTransport, from: Endpoint, connection: Int?) {
        let time = SimClock.now()
        let (behaviour, zone, record) = shared.mutex.locked { () -> (UpstreamBehaviour, Zone, Bool) in
            shared.queryCount += 1
            return (shared.current(at: time), shared.zone, shared.recordQueries)
        }
        let (query, reply) = Responder.respond(to: bytes, behaviour: behaviour, zone: zone, transport: transport)
        // Logged before acting, so whoever sees the reply also finds the query in the log.
        let name = query?.questions.first.map { $0.name.description } ?? ""
        let type = query?.questions.first.map { $0.type.description } ?? ""
        let id = bytes.count >= 2 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : 0
        let entry = record ? log.append(UpstreamQuery(upstream: self.name, time: time, source: from, transport: transport,
                                                      name: name, type: type, id: id, behaviour: behaviour,
                                                      outcome: reply.outcome)) : -1

        if reply.delay > 0 {
            let due = SimClock.monotonic() + reply.delay
            switch reply.action {
            case .send(let b):
                if let connection { deferred.append((due, .tcp(b, connection: connection))) }
                else { deferred.append((due, .udp(b, to: from, from: reply.source, logEntry: entry))) }
            case .reset:
                if let connection { deferred.append((due, .reset(connection: connection))) }
            case .none, .hang:
                break
            }
            return
        }
        switch reply.action {
        case .send(let b):
            if let connection {
                enqueueTCP(b, connection)
            } else {
                sendUDP(b, to: from, from: reply.source, logEntry: entry)
            }
        case .reset:
            if let connection, let c = connections.removeValue(forKey: connection) {
                c.dead = true
                ActorSocket.reset(c.fd)
            }
        case .none, .hang:
            break
        }
    }

    /// Sends; a failure is added to the query's log entry.
    private func sendUDP(_ bytes: [UInt8], to: Endpoint, from source: String?, logEntry: Int) {
        let err: Int32
        if let source {
            guard let src = try? Endpoint(ip: source, port: 0) else {
                log.update(at: logEntry) { $0.outcome += ", send failed: bad source address \(source)" }
                return
            }
            err = ActorSocket.send(udpFd, bytes, to: to, from: src)
        } else {
            err = ActorSocket.send(udpFd, bytes, to: to)
        }
        if err != 0 {
            log.update(at: logEntry) { $0.outcome += ", send failed: \(String(cString: strerror(err)))" }
        }
    }

    private func enqueueTCP(_ bytes: [UInt8], _ id: Int) {
        guard let c = connections[id] else { return }
        c.output += [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xff)] + bytes
        flush(id)
    }

    private func runDeferred() {
        let now = SimClock.monotonic()
        guard deferred.contains(where: { $0.due <= now }) else { return }
        let due = deferred.filter { $0.due <= now }.sorted { $0.due < $1.due }
        deferred.removeAll { $0.due <= now }
        for d in due {
            switch d.what {
            case .udp(let b, let to, let from, let entry):
                sendUDP(b, to: to, from: from, logEntry: entry)
            case .tcp(let b, let id):
                enqueueTCP(b, id)
            case .reset(let id):
                if let c = connections.removeValue(forKey: id) { ActorSocket.reset(c.fd) }
            }
        }
    }
}
