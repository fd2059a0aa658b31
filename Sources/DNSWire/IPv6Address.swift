/// An IPv6 address (the rdata of an AAAA record). Text form per RFC 5952.
public struct IPv6Address: Hashable, CustomStringConvertible, Sendable {
    /// The 16 bytes as two big-endian halves.
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Nil unless exactly 16 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<8 { h = h << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { l = l << 8 | UInt64(bytes[i]) }
        self.high = h
        self.low = l
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * i))
            out[8 + i] = UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * i))
        }
        return out
    }

    /// The eight 16-bit groups.
    public var groups: [UInt16] {
        var g = [UInt16](repeating: 0, count: 8)
        for i in 0..<4 {
            g[i] = UInt16(truncatingIfNeeded: high >> UInt64(48 - 16 * i))
            g[4 + i] = UInt16(truncatingIfNeeded: low >> UInt64(48 - 16 * i))
        }
        return g
    }

    init(groups g: [UInt16]) {
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<4 { h = h << 16 | UInt64(g[i]) }
        for i in 4..<8 { l = l << 16 | UInt64(g[i]) }
        self.high = h
        self.low = l
    }

    /// Accepts the usual forms: full, "::"-compressed, and a trailing dotted IPv4
    /// part ("::ffff:192.0.2.1"). No zone ids, no brackets.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8.count <= 45 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var seenDoubleColon = false
        var i = 0
        // Leading "::"
        if utf8[0] == 0x3A {
            guard utf8[1] == 0x3A else { return nil }
            seenDoubleColon = true
            i = 2
            if i == utf8.count { self.init(groups: [UInt16](repeating: 0, count: 8)); return }
        }
        while i < utf8.count {
            // Parse one group (or a trailing IPv4).
            var j = i
            var value = 0
            while j < utf8.count, let d = hexValue(utf8[j]) {
                value = value * 16 + d
                j += 1
                guard j - i <= 4 else { return nil }
            }
            if j < utf8.count && utf8[j] == 0x2E {
                // Embedded IPv4: must be last, and needs room for 2 groups.
                guard let v4 = IPv4Address(String(decoding: utf8[i...], as: UTF8.self)) else { return nil }
                let g1 = UInt16(v4.bytes.0) << 8 | UInt16(v4.bytes.1)
                let g2 = UInt16(v4.bytes.2) << 8 | UInt16(v4.bytes.3)
                if seenDoubleColon { tail += [g1, g2] } else { head += [g1, g2] }
                i = utf8.count
                break
            }
            guard j > i else { return nil }
            if seenDoubleColon { tail.append(UInt16(value)) } else { head.append(UInt16(value)) }
            guard head.count + tail.count <= 8 else { return nil }
            i = j
            if i == utf8.count { break }
            guard utf8[i] == 0x3A else { return nil }
            i += 1
            if i < utf8.count && utf8[i] == 0x3A {
                guard !seenDoubleColon else { return nil }
                seenDoubleColon = true
                i += 1
                if i == utf8.count { break }
            } else if i == utf8.count {
                return nil // trailing single colon
            }
        }
        let n = head.count + tail.count
        if seenDoubleColon {
            guard n <= 7 else { return nil }
            self.init(groups: head + [UInt16](repeating: 0, count: 8 - n) + tail)
        } else {
            guard n == 8 else { return nil }
            self.init(groups: head)
        }
    }

    public static let loopback = IPv6Address(high: 0, low: 1)

    /// RFC 5952: lower case, no leading zeros, the longest run (>= 2) of zero groups
    /// as "::" (the first if tied); IPv4-mapped addresses as ::ffff:a.b.c.d.
    public var description: String {
        let g = groups
        if high == 0 && (low >> 32) == 0xFFFF {
            let v4 = IPv4Address(uint32: UInt32(truncatingIfNeeded: low))
            return "::ffff:\(v4)"
        }
        var bestStart = -1, bestLen = 0
        var i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else {
                i += 1
            }
        }
        var out = ""
        i = 0
        while i < 8 {
            if i == bestStart {
                out += "::"
                i += bestLen
                continue
            }
            if !out.isEmpty && !out.hasSuffix(":") { out += ":" }
            out += String(g[i], radix: 16)
            i += 1
        }
        return out
    }
}

@inline(__always)
func hexValue(_ c: UInt8) -> Int? {
    switch c {
    case 0x30...0x39: return Int(c - 0x30)
    case 0x41...0x46: return Int(c - 0x41 + 10)
    case 0x61...0x66: return Int(c - 0x61 + 10)
    default: return nil
    }
}
