import Glibc

/// A TCP slowloris: many connections to a DNS server that send a first byte
/// (half a length prefix) or nothing, and then sit idle, holding the server's
/// connection slots. Records when the server closes or resets each one, so a
/// scenario can check the server sheds idle connections and still answers.
public final class TCPIdlers: @unchecked Sendable {
    public static let maxConnections = 20_000

    public struct Status: Equatable, Sendable, CustomStringConvertible {
        /// Connections whose handshake completed.
        public var connected = 0
        /// Connections that failed to open (refused, timed out, no fd).
        public var failed = 0
        /// Connected ones the server closed (EOF) or reset since.
        public var closedByPeer = 0
        /// Connected and still open.
        public var open = 0

        public var description: String {
            "\(connected) connected, \(failed) failed, \(closedByPeer) closed by the server, \(open) open"
        }
    }

    /// One connection the server ended.
    public struct Closure: Sendable {
        public var index: Int
        /// `SimClock.now()` when it was seen.
        public var time: Double
        /// Seconds it was open.
        public var openFor: Double
        /// "closed" (EOF) or "reset".
        public var how: String
    }

    public let target: Endpoint
    public let connections: Int
    public let firstBytes: [UInt8]
    /// Connections the server ended, in order.
    public let closures = EventLog<Closure>()
    /// One entry per connection attempt settled (connected or failed): wait on it.
    public let settled = EventLog<Bool>()

    private let source: Endpoint?
    private let connectTimeout: Double
    private let factory: SocketFactory
    private let stopSignal = StopSignal()
    private let mutex = ActorMutex()
    private var thread: ActorThread?
    private let state = IdlerState()

    /// - Parameters:
    ///   - connections: how many to open (at most `maxConnections`; the fd
    ///     limit is raised toward its hard limit when needed).
    ///   - firstBytes: sent once connected; the default, one zero byte, is half
    ///     a TCP DNS length prefix: the server waits for the rest.
    ///   - source: local address to bind.
    /// - Throws: `ActorError` for bounds or a bad source address.
    public init(target: Endpoint, connections: Int, firstBytes: [UInt8] = [0x00], source: String? = nil,
                connectTimeout: Double = 5, socketFactory: @escaping SocketFactory = loopbackSocketFactory) throws {
        guard connections >= 1, connections <= TCPIdlers.maxConnections else {
            throw ActorError("tcp idlers: \(connections) connections out of range [1, \(TCPIdlers.maxConnections)]")
        }
        var src: Endpoint?
        if let source {
            let ep = try Endpoint(ip: source, port: 0)
            guard ep.family == target.family else { throw ActorError("tcp idlers: source \(source) is not of the target's family") }
            src = ep
        }
        self.target = target
        self.connections = connections
        self.firstBytes = firstBytes
        self.source = src
        self.connectTimeout = connectTimeout
        self.factory = socketFactory
    }

    deinit {
        stop()
    }

    public var status: Status {
        state.mutex.locked { state.status }
    }

    /// Opens the connections and watches them on a thread of its own.
    public func start() throws {
        try mutex.locked {
            guard thread == nil, !stopSignal.isStopped else { return }
            TCPIdlers.raiseFileLimit(toAtLeast: connections + 256)
            let job = IdlerJob(target: target, connections: connections, firstBytes: firstBytes, source: source,
                               connectTimeout: connectTimeout, factory: factory, stopSignal: stopSignal, state: state,
                               closures: closures, settled: settled)
            thread = try ActorThread(name: "tcp idlers") { job.run() }
        }
    }

    /// Closes every connection and joins the thread. Idempotent.
    public func stop() {
        stopSignal.stop()
        let t: ActorThread? = mutex.locked {
            let t = thread
            thread = nil
            return t
        }
        t?.join()
    }

    static func raiseFileLimit(toAtLeast wanted: Int) {
        var lim = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lim) == 0, lim.rlim_cur < rlim_t(wanted) else { return }
        lim.rlim_cur = min(lim.rlim_max, rlim_t(wanted))
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lim)
    }
}

private final class IdlerState: @unchecked Sendable {
    let mutex = ActorMutex()
    var status = TCPIdlers.Status()
}

private struct IdlerJob: @unchecked Sendable {
    let target: Endpoint
    let connections: Int
    let firstBytes: [UInt8]
    let source: Endpoint?
    let connectTimeout: Double
    let factory: SocketFactory
    let stopSignal: StopSignal
    let state: IdlerState
    let closures: EventLog<TCPIdlers.Closure>
    let settled: EventLog<Bool>

    private enum Phase { case connecting, open, done }

    func run() {
        var fds = [Int32](repeating: -1, count: connections)
        var phase = [Phase](repeating: .done, count: connections)
        var openedAt = [Double](repeating: 0, count: connections)
        defer { for fd in fds where fd >= 0 { close(fd) } }

        func fail(_ i: Int) {
            if fds[i] >= 0 { close(fds[i]) }
            fds[i] = -1
            phase[i] = .done
            state.mutex.locked { state.status.failed += 1 }
            settled.append(false)
        }

        for i in 0..<connections {
            if stopSignal.isStopped { return }
            guard let fd = try? ActorSocket.open(factory, target.family, ActorSocket.tcp) else {
                fail(i)
                continue
            }
            fds[i] = fd
            if let source, (try? ActorSocket.bind(fd, source, "tcp idler")) == nil {
                fail(i)
                continue
            }
            let rc = target.withSockaddr { connect(fd, $0, $1) }
            if rc != 0 && errno != EINPROGRESS {
                fail(i)
                continue
            }
            phase[i] = .connecting
            openedAt[i] = SimClock.monotonic()
        }
        let deadline = SimClock.monotonic() + connectTimeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !stopSignal.isStopped {
            var pfds: [pollfd] = []
            var index: [Int] = []
            for i in 0..<connections where phase[i] != .done {
                pfds.append(pollfd(fd: fds[i], events: phase[i] == .connecting ? Int16(POLLOUT) : Int16(POLLIN), revents: 0))
                index.append(i)
            }
            if pfds.isEmpty {
                _ = stopSignal.wait(until: .infinity)
                return
            }
            // Short slices so that `stop()` is seen promptly.
            let rc = poll(&pfds, nfds_t(pfds.count), 50)
            let now = SimClock.monotonic()
            if rc > 0 {
                for (k, p) in pfds.enumerated() where p.revents != 0 {
                    let i = index[k]
                    if phase[i] == .connecting {
                        var err: Int32 = 0
                        var len = socklen_t(MemoryLayout<Int32>.size)
                        getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len)
                        if err != 0 {
                            fail(i)
                            continue
                        }
                        if !firstBytes.isEmpty {
                            _ = firstBytes.withUnsafeBytes { Glibc.send(fds[i], $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        }
                        phase[i] = .open
                        openedAt[i] = now
                        state.mutex.locked {
                            state.status.connected += 1
                            state.status.open += 1
                        }
                        settled.append(true)
                    } else {
                        let n = read(fds[i], &buffer, buffer.count)
                        if n > 0 { continue }   // the server said something; keep idling
                        if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                        let how = n == 0 ? "closed" : (errno == ECONNRESET ? "reset" : String(cString: strerror(errno)))
                        close(fds[i])
                        fds[i] = -1
                        phase[i] = .done
                        state.mutex.locked {
                            state.status.open -= 1
                            state.status.closedByPeer += 1
                        }
                        closures.append(TCPIdlers.Closure(index: i, time: SimClock.now(), openFor: now - openedAt[i], how: how))
                    }
                }
            }
            if now > deadline {
                for i in 0..<connections where phase[i] == .connecting { fail(i) }
            }
        }
    }
}
