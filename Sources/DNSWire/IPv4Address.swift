/// An IPv4 address (the rdata of an A record).
public struct IPv4Address: Hashable, CustomStringConvertible, Sendable {
    public var bytes: (UInt8, UInt8, UInt8, UInt8)

    public init(bytes: (UInt8, UInt8, UInt8, UInt8)) { self.bytes = bytes }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) { self.bytes = (a, b, c, d) }

    /// Nil unless exactly 4 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 else { return nil }
        self.bytes = (bytes[0], bytes[1], bytes[2], bytes[3])
    }

    /// Host-order value, e.g. 0xC0000201 for 192.0.2.1.
    public init(uint32 v: UInt32) {
        self.bytes = (UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16),
                      UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v))
    }

    /// Dotted quad, exactly four decimal parts 0...255 without leading zeros.
    public init?(_ text: String) {
        var parts: [UInt8] = []
        var value = 0
        var digits = 0
        var leadingZero = false
        for c in text.utf8 {
            if c == 0x2E {
                guard digits > 0, parts.count < 3 else { return nil }
                parts.append(UInt8(value))
                value = 0; digits = 0; leadingZero = false
            } else if c >= 0x30 && c <= 0x39 {
                if leadingZero { return nil }
                if digits == 0 && c == 0x30 { leadingZero = true }
                value = value * 10 + Int(c - 0x30)
                digits += 1
                guard digits <= 3, value <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, parts.count == 3 else { return nil }
        parts.append(UInt8(value))
        self.bytes = (parts[0], parts[1], parts[2], parts[3])
    }

    public var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3] }

    public var uint32: UInt32 {
        UInt32(bytes.0) << 24 | UInt32(bytes.1) << 16 | UInt32(bytes.2) << 8 | UInt32(bytes.3)
    }

    public var description: String { "\(bytes.0).\(bytes.1).\(bytes.2).\(bytes.3)" }

    public static func == (l: IPv4Address, r: IPv4Address) -> Bool { l.uint32 == r.uint32 }
    public func hash(into hasher: inout Hasher) { hasher.combine(uint32) }
}
