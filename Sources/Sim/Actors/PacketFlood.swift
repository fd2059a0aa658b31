import Glibc

/// A bounded UDP flood from one socket: payloads sent round-robin at a paced
/// rate, optionally with a random DNS ID and a guessed destination port each.
/// The engine under the malformed-packet nuisance of the soak (`MalformedPackets`).
public final class PacketFlood: @unchecked Sendable {
    public static let maxPackets = 10_000_000
    public static let maxRate = 1_000_000.0

    public let target: Endpoint
    /// Destination ports, one drawn at random per packet; nil: `target.port`.
    public let ports: ClosedRange<UInt16>?
    public let rate: Double
    public let count: Int
    /// The address the packets leave from (bound), if one was asked for.
    public let source: Endpoint?
    /// One entry when the flood is over (all sent, or stopped): the count sent.
    public let done = EventLog<Int>()

    private let fd: Int32
    private let payloads: [[UInt8]]
    private let randomizeID: Bool
    private let stopSignal = StopSignal()
    private let mutex = ActorMutex()
    private var thread: ActorThread?
    private let progress = FloodProgress()

    /// - Parameters:
    ///   - payloads: sent in turn; each at least 2 bytes when `randomizeID`.
    ///   - randomizeID: overwrite the first two bytes (the DNS ID) with a random value per packet.
    ///   - rate: packets per second, paced in 1 ms slices.
    ///   - count: packets in all.
    ///   - source: bind here first (address and port).
    ///   - transparent: set IP_TRANSPARENT / IPV6_TRANSPARENT, so `source` may
    ///     be an address the host does not have (a forged source; needs CAP_NET_ADMIN).
    /// - Throws: `ActorError` for bounds, or when the socket cannot be made or bound.
    public init(target: Endpoint, ports: ClosedRange<UInt16>? = nil, payloads: [[UInt8]], randomizeID: Bool = false,
                rate: Double, count: Int, source: Endpoint? = nil, transparent: Bool = false,
                socketFactory: SocketFactory = loopbackSocketFactory) throws {
        guard !payloads.isEmpty else { throw ActorError("packet flood: no payloads") }
        guard !randomizeID || payloads.allSatisfy({ $0.count >= 2 }) else {
            throw ActorError("packet flood: a payload shorter than 2 bytes cannot carry a DNS ID")
        }
        guard rate > 0, rate <= PacketFlood.maxRate else {
            throw ActorError("packet flood: rate \(rate)/s out of range (0, \(Int(PacketFlood.maxRate))]")
        }
        guard count >= 1, count <= PacketFlood.maxPackets else {
            throw ActorError("packet flood: count \(count) out of range [1, \(PacketFlood.maxPackets)]")
        }
        if let source, source.family != target.family {
            throw ActorError("packet flood: source \(source) and target \(target) are of different families")
        }
        let fd = try ActorSocket.open(socketFactory, target.family, ActorSocket.udp)
        if let source {
            var transparentErr: Int32 = 0
            if transparent {
                var on: Int32 = 1
                let (level, option) = source.family == .v4 ? (SOL_IP, IP_TRANSPARENT) : (SOL_IPV6, IPV6_TRANSPARENT)
                if setsockopt(fd, level, option, &on, socklen_t(MemoryLayout<Int32>.size)) != 0 { transparentErr = errno }
            }
            ActorSocket.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            if source.family == .v6 { ActorSocket.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
            do {
                try ActorSocket.bind(fd, source, transparent ? "forged source" : "source")
            } catch {
                close(fd)
                let why = transparentErr == 0 ? ""
                    : " (IP_TRANSPARENT refused: \(String(cString: strerror(transparentErr))); it needs CAP_NET_ADMIN in the sender's namespace)"
                throw ActorError("packet flood: \(error)\(why)")
            }
        }
        self.fd = fd
        self.target = target
        self.ports = ports
        self.rate = rate
        self.count = count
        self.source = source
        self.payloads = payloads
        self.randomizeID = randomizeID
    }

    deinit {
        stop()
        close(fd)
    }

    /// Packets sent so far.
    public var sent: Int { progress.mutex.locked { progress.sent } }
    /// Sends that failed for good (not counting waits for queue room).
    public var sendErrors: Int { progress.mutex.locked { progress.errors } }

    /// Starts the flood on its own thread. Calling it again does nothing.
    public func start() throws {
        try mutex.locked {
            guard thread == nil, !stopSignal.isStopped else { return }
            // The thread holds what it needs, not the flood: dropping the flood stops it.
            let job = FloodJob(fd: fd, payloads: payloads, target: target, ports: ports, randomizeID: randomizeID,
                               rate: rate, count: count, stopSignal: stopSignal, progress: progress)
            let done = self.done
            thread = try ActorThread(name: "flood") {
                job.run()
                done.append(job.progress.mutex.locked { job.progress.sent })
            }
        }
    }

    /// Waits until every packet was sent (or the flood stopped). Returns false on timeout.
    @discardableResult
    public func wait(timeout: Double) -> Bool {
        done.wait(forCount: 1, timeout: timeout)
    }

    /// Ends the flood and joins its thread. Idempotent.
    public func stop() {
        stopSignal.stop()
        let t: ActorThread? = mutex.locked {
            let t = thread
            thread = nil
            return t
        }
        t?.join()
    }
}

private final class FloodProgress: @unchecked Sendable {
    let mutex = ActorMutex()
    var sent = 0
    var errors = 0
}

private struct FloodJob: @unchecked Sendable {
    let fd: Int32
    let payloads: [[UInt8]]
    let target: Endpoint
    let ports: ClosedRange<UInt16>?
    let randomizeID: Bool
    let rate: Double
    let count: Int
    let stopSignal: StopSignal
    let progress: FloodProgress

    func run() {
        let start = SimClock.monotonic()
        var generator = SystemRandomNumberGenerator()
        var i = 0
        var sent = 0
        var errors = 0
        var storage = sockaddr_storage()
        let len: socklen_t = target.withSockaddr { sa, l in
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(l))) }
            return l
        }
        func publish() {
            progress.mutex.locked {
                progress.sent = sent
                progress.errors = errors
            }
        }
        outer: while i < count {
            // Everything due by now, then the next 1 ms slice.
            let due = min(count, Int((SimClock.monotonic() - start) * rate) + 1)
            while i < due {
                var packet = payloads[i % payloads.count]
                if randomizeID {
                    let id = UInt16.random(in: 0...UInt16.max, using: &generator)
                    packet[0] = UInt8(id >> 8)
                    packet[1] = UInt8(id & 0xff)
                }
                if let ports {
                    // sin_port and sin6_port are at the same offset.
                    let port = UInt16.random(in: ports, using: &generator).bigEndian
                    withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: port, toByteOffset: 2, as: UInt16.self) }
                }
                let n = packet.withUnsafeBytes { buf in
                    withUnsafePointer(to: &storage) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL), $0, len)
                        }
                    }
                }
                if n < 0 {
                    let e = errno
                    if e == EAGAIN || e == ENOBUFS || e == EINTR {
                        // The queue is full: wait for room rather than lose the packet.
                        _ = ActorSocket.wait(fd, Int16(POLLOUT), until: SimClock.monotonic() + 0.01)
                        if stopSignal.isStopped { break outer }
                        continue
                    }
                    // ECONNREFUSED etc. from an ICMP error about an earlier packet: counted, go on.
                    errors += 1
                } else {
                    sent += 1
                }
                i += 1
            }
            publish()
            if i >= count { break }
            if stopSignal.wait(until: SimClock.monotonic() + 0.001) { break }
        }
        publish()
    }
}
