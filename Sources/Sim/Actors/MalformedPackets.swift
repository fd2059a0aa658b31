import DNSWire

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
