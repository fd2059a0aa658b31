/// Bounds-checked cursor over a packet. Every read checks its bounds and throws
/// `.truncated`; nothing here can trap on any input.
struct WireReader {
    let buf: UnsafeRawBufferPointer
    var pos: Int
    /// Compression pointers below this offset are `.badPointer` (the header).
    let minPointer: Int

    /// Bound on pointer follows within one name (a valid name needs at most 127).
    static let maxPointerFollows = 128

    init(_ buf: UnsafeRawBufferPointer, pos: Int = 0, minPointer: Int = 12) {
        self.buf = buf
        self.pos = pos
        self.minPointer = minPointer
    }

    var remaining: Int { buf.count - pos }

    @inline(__always)
    mutating func u8() throws -> UInt8 {
        guard pos >= 0, pos < buf.count else { throw DNSError(.truncated, offset: pos) }
        let v = buf[pos]
        pos += 1
        return v
    }

    @inline(__always)
    mutating func u16() throws -> UInt16 {
        guard pos >= 0, buf.count - pos >= 2 else { throw DNSError(.truncated, offset: pos) }
        let v = UInt16(buf[pos]) << 8 | UInt16(buf[pos + 1])
        pos += 2
        return v
    }

    @inline(__always)
    mutating func u32() throws -> UInt32 {
        guard pos >= 0, buf.count - pos >= 4 else { throw DNSError(.truncated, offset: pos) }
        let v = UInt32(buf[pos]) << 24 | UInt32(buf[pos + 1]) << 16 | UInt32(buf[pos + 2]) << 8 | UInt32(buf[pos + 3])
        pos += 4
        return v
    }

    mutating func bytes(_ n: Int) throws -> [UInt8] {
        guard n >= 0, pos >= 0, buf.count - pos >= n else { throw DNSError(.truncated, offset: pos) }
        let out = [UInt8](UnsafeRawBufferPointer(rebasing: buf[pos..<(pos + n)]))
        pos += n
        return out
    }

    /// Reads a possibly compressed name at `pos` and moves `pos` past it.
    /// A pointer must point strictly before the start of the segment being read
    /// (so chains strictly decrease): a target inside the current segment is a
    /// `.pointerLoop`, one after the pointer itself a `.forwardPointer`, one into
    /// the header a `.badPointer`.
    mutating func name() throws -> DNSName {
        var labels: [[UInt8]] = []
        var p = pos
        var segmentStart = pos
        var end = -1
        var wire = 1
        var follows = 0
        while true {
            guard p >= 0, p < buf.count else { throw DNSError(.truncated, offset: p) }
            let len = buf[p]
            switch len & 0xC0 {
            case 0x00:
                if len == 0 {
                    if end < 0 { end = p + 1 }
                    pos = end
                    return DNSName(unchecked: labels)
                }
                let n = Int(len)
                guard buf.count - (p + 1) >= n else { throw DNSError(.truncated, offset: p) }
                wire += n + 1
                guard wire <= DNSName.maxWireLength else { throw DNSError(.nameTooLong, offset: p) }
                labels.append([UInt8](UnsafeRawBufferPointer(rebasing: buf[(p + 1)..<(p + 1 + n)])))
                p += 1 + n
            case 0xC0:
                guard buf.count - p >= 2 else { throw DNSError(.truncated, offset: p) }
                let target = Int(len & 0x3F) << 8 | Int(buf[p + 1])
                if end < 0 { end = p + 2 }
                if target > p { throw DNSError(.forwardPointer, offset: p) }
                if target >= segmentStart { throw DNSError(.pointerLoop, offset: p) }
                if target < minPointer { throw DNSError(.badPointer, offset: p) }
                follows += 1
                guard follows <= WireReader.maxPointerFollows else { throw DNSError(.pointerLoop, offset: p) }
                segmentStart = target
                p = target
            default:
                // 0x40 (extended label, RFC 6891 deprecated) and 0x80 (reserved).
                throw DNSError(.badLabelType, offset: p)
            }
        }
    }
}
