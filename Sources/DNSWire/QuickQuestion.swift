/// Cheap, allocation-free look at a packet's header and first question, for the
/// forwarder's hot path.
public struct QuickQuestion: Sendable {
    public var id: UInt16
    public var flags: UInt16
    public var qdcount: UInt16
    /// Offset just past the question name.
    public var nameEnd: Int
    public var type: UInt16
    public var klass: UInt16
    /// Offset just past QTYPE/QCLASS.
    public var questionEnd: Int

    /// Parses the header and the first question (its name must be uncompressed,
    /// as in queries). Errors: `.truncated` (also for QDCOUNT 0: there is no
    /// question), `.badPointer` (a compression pointer in the name),
    /// `.badLabelType`, `.nameTooLong`.
    public init(parsing buf: UnsafeRawBufferPointer) throws {
        guard buf.count >= 12 else { throw DNSError(.truncated, offset: buf.count) }
        id = UInt16(buf[0]) << 8 | UInt16(buf[1])
        flags = UInt16(buf[2]) << 8 | UInt16(buf[3])
        qdcount = UInt16(buf[4]) << 8 | UInt16(buf[5])
        guard qdcount > 0 else { throw DNSError(.truncated, offset: 12) }
        var p = 12
        var wire = 1
        while true {
            guard p < buf.count else { throw DNSError(.truncated, offset: p) }
            let len = buf[p]
            if len == 0 { p += 1; break }
            switch len & 0xC0 {
            case 0x00:
                let n = Int(len)
                wire += n + 1
                guard wire <= DNSName.maxWireLength else { throw DNSError(.nameTooLong, offset: p) }
                guard buf.count - (p + 1) >= n else { throw DNSError(.truncated, offset: p) }
                p += 1 + n
            case 0xC0:
                throw DNSError(.badPointer, offset: p)
            default:
                throw DNSError(.badLabelType, offset: p)
            }
        }
        nameEnd = p
        guard buf.count - p >= 4 else { throw DNSError(.truncated, offset: p) }
        type = UInt16(buf[p]) << 8 | UInt16(buf[p + 1])
        klass = UInt16(buf[p + 2]) << 8 | UInt16(buf[p + 3])
        questionEnd = p + 4
    }

    public init(parsing bytes: [UInt8]) throws {
        self = try bytes.withUnsafeBytes { try QuickQuestion(parsing: $0) }
    }

    public var isResponse: Bool { flags & 0x8000 != 0 }
    public var opcode: UInt8 { UInt8(truncatingIfNeeded: flags >> 11) & 0x0F }
}

/// Lower-cased wire-form name of the question at offset 12, followed by QTYPE and
/// QCLASS (big-endian): a cache key. `q` must come from the same buffer; if it
/// does not fit the buffer, the key holds only what does.
public func canonicalQuestionKey(_ buf: UnsafeRawBufferPointer, _ q: QuickQuestion) -> [UInt8] {
    let end = min(q.nameEnd, buf.count)
    var key: [UInt8] = []
    key.reserveCapacity(max(0, end - 12) + 4)
    if end > 12 {
        for i in 12..<end { key.append(asciiLower(buf[i])) }
    }
    key.append(UInt8(truncatingIfNeeded: q.type >> 8))
    key.append(UInt8(truncatingIfNeeded: q.type))
    key.append(UInt8(truncatingIfNeeded: q.klass >> 8))
    key.append(UInt8(truncatingIfNeeded: q.klass))
    return key
}

public func canonicalQuestionKey(_ bytes: [UInt8], _ q: QuickQuestion) -> [UInt8] {
    bytes.withUnsafeBytes { canonicalQuestionKey($0, q) }
}
