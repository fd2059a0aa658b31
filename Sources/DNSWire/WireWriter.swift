/// Appends wire data; compresses names through a dictionary of
/// lower-cased suffix (wire form) -> offset (offsets < 0x4000 only).
struct WireWriter {
    var bytes: [UInt8] = []
    var compression: Bool
    private var suffixes: [[UInt8]: Int] = [:]

    init(compress: Bool, capacity: Int = 512) {
        self.compression = compress
        bytes.reserveCapacity(capacity)
    }

    var count: Int { bytes.count }

    @inline(__always) mutating func u8(_ v: UInt8) { bytes.append(v) }

    @inline(__always) mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    @inline(__always) mutating func u32(_ v: UInt32) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 24))
        bytes.append(UInt8(truncatingIfNeeded: v >> 16))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    mutating func append(_ b: [UInt8]) { bytes.append(contentsOf: b) }

    mutating func set16(_ v: UInt16, at offset: Int) {
        guard offset >= 0, offset + 1 < bytes.count else { return }
        bytes[offset] = UInt8(truncatingIfNeeded: v >> 8)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: v)
    }

    /// Cuts back to `length` bytes (a record boundary); dictionary entries beyond
    /// it are dropped so no later name can point past the end.
    mutating func truncate(to length: Int) {
        guard length >= 0, length < bytes.count else { return }
        bytes.removeSubrange(length...)
        suffixes = suffixes.filter { $0.value < length }
    }

    /// Labels that can be written: empty labels skipped, longer ones cut to 63
    /// (a `DNSName` built through its initialisers never needs this).
    private static func sanitized(_ labels: [[UInt8]]) -> [[UInt8]] {
        if labels.allSatisfy({ !$0.isEmpty && $0.count <= DNSName.maxLabelLength }) { return labels }
        return labels.compactMap { $0.isEmpty ? nil : Array($0.prefix(DNSName.maxLabelLength)) }
    }

    mutating func name(_ name: DNSName, compress: Bool) {
        let labels = WireWriter.sanitized(name.labels)
        guard compression && compress && !labels.isEmpty else {
            for l in labels {
                bytes.append(UInt8(truncatingIfNeeded: l.count))
                bytes.append(contentsOf: l)
            }
            bytes.append(0)
            return
        }
        // Lower-cased wire form; suffix i starts at starts[i].
        var lower: [UInt8] = []
        lower.reserveCapacity(256)
        var starts: [Int] = []
        starts.reserveCapacity(labels.count)
        for l in labels {
            starts.append(lower.count)
            lower.append(UInt8(truncatingIfNeeded: l.count))
            for b in l { lower.append(asciiLower(b)) }
        }
        var pointer: Int? = nil
        var written = labels.count
        for i in 0..<labels.count {
            if let off = suffixes[Array(lower[starts[i]...])] {
                pointer = off
                written = i
                break
            }
        }
        for i in 0..<written {
            let off = bytes.count
            if off < 0x4000 { suffixes[Array(lower[starts[i]...])] = off }
            bytes.append(UInt8(truncatingIfNeeded: labels[i].count))
            bytes.append(contentsOf: labels[i])
        }
        if let off = pointer {
            u16(0xC000 | UInt16(truncatingIfNeeded: off))
        } else {
            bytes.append(0)
        }
    }

    mutating func rdata(_ rdata: RData) {
        switch rdata {
        case .a(let ip):
            bytes.append(ip.bytes.0); bytes.append(ip.bytes.1); bytes.append(ip.bytes.2); bytes.append(ip.bytes.3)
        case .aaaa(let ip):
            u32(UInt32(truncatingIfNeeded: ip.high >> 32)); u32(UInt32(truncatingIfNeeded: ip.high))
            u32(UInt32(truncatingIfNeeded: ip.low >> 32)); u32(UInt32(truncatingIfNeeded: ip.low))
        case .cname(let n), .ns(let n), .ptr(let n):
            name(n, compress: true)
        case .mx(let pref, let exchange):
            u16(pref)
            name(exchange, compress: true)
        case .txt(let strings):
            for s in strings {
                if s.isEmpty { u8(0); continue }
                // Character-strings hold at most 255 bytes: longer ones are split.
                var i = 0
                while i < s.count {
                    let n = min(255, s.count - i)
                    u8(UInt8(n))
                    bytes.append(contentsOf: s[i..<(i + n)])
                    i += n
                }
            }
        case .soa(let s):
            name(s.mname, compress: true)
            name(s.rname, compress: true)
            u32(s.serial); u32(s.refresh); u32(s.retry); u32(s.expire); u32(s.minimum)
        case .srv(let s):
            u16(s.priority); u16(s.weight); u16(s.port)
            name(s.target, compress: false)
        case .opt(let options):
            for o in options {
                let n = min(o.data.count, 0xFFFF)
                u16(o.code)
                u16(UInt16(n))
                bytes.append(contentsOf: o.data.prefix(n))
            }
        case .unknown(let b):
            append(b)
        }
    }

    mutating func record(_ rr: ResourceRecord) {
        name(rr.name, compress: rr.type != .opt)
        u16(rr.type.rawValue)
        u16(rr.klass)
        u32(rr.ttl)
        let lengthAt = bytes.count
        u16(0)
        let start = bytes.count
        rdata(rr.rdata)
        var length = bytes.count - start
        if length > 0xFFFF {
            // Cannot be represented: keep the packet well-formed by cutting the rdata.
            bytes.removeSubrange((start + 0xFFFF)...)
            length = 0xFFFF
        }
        set16(UInt16(length), at: lengthAt)
    }

    mutating func question(_ q: Question) {
        name(q.name, compress: true)
        u16(q.type.rawValue)
        u16(q.klass)
    }
}
