/// A DNS RR type (QTYPE/TYPE). Unknown values are kept and shown as `TYPEnnn`.
public struct RRType: RawRepresentable, Hashable, CustomStringConvertible, Sendable {
    public var rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    public static let a = RRType(1)
    public static let ns = RRType(2)
    public static let cname = RRType(5)
    public static let soa = RRType(6)
    public static let ptr = RRType(12)
    public static let hinfo = RRType(13)
    public static let mx = RRType(15)
    public static let txt = RRType(16)
    public static let aaaa = RRType(28)
    public static let srv = RRType(33)
    public static let naptr = RRType(35)
    public static let opt = RRType(41)
    public static let ds = RRType(43)
    public static let rrsig = RRType(46)
    public static let nsec = RRType(47)
    public static let dnskey = RRType(48)
    public static let svcb = RRType(64)
    public static let https = RRType(65)
    public static let axfr = RRType(252)
    public static let any = RRType(255)
    public static let caa = RRType(257)

    static let names: [(UInt16, String)] = [
        (1, "A"), (2, "NS"), (5, "CNAME"), (6, "SOA"), (12, "PTR"), (13, "HINFO"), (15, "MX"),
        (16, "TXT"), (28, "AAAA"), (33, "SRV"), (35, "NAPTR"), (41, "OPT"), (43, "DS"),
        (46, "RRSIG"), (47, "NSEC"), (48, "DNSKEY"), (64, "SVCB"), (65, "HTTPS"),
        (252, "AXFR"), (255, "ANY"), (257, "CAA"),
    ]

    /// "A", "aaaa", "MX", "TYPE65" ... (case-insensitive). Nil for anything else.
    public init?(name: String) {
        let upper = name.uppercased()
        for (value, text) in RRType.names where text == upper {
            self.rawValue = value
            return
        }
        guard upper.hasPrefix("TYPE"), let value = parseDecimalUInt16(upper.dropFirst(4)) else { return nil }
        self.rawValue = value
    }

    public var description: String {
        for (value, text) in RRType.names where value == rawValue { return text }
        return "TYPE\(rawValue)"
    }
}

/// Response code, 12 bits wide (4 from the header, 8 more from EDNS).
public struct RCode: RawRepresentable, Hashable, CustomStringConvertible, Sendable {
    public var rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue & 0x0FFF }
    public init(_ rawValue: UInt16) { self.init(rawValue: rawValue) }

    public static let noError = RCode(0)
    public static let formErr = RCode(1)
    public static let servFail = RCode(2)
    public static let nxDomain = RCode(3)
    public static let notImp = RCode(4)
    public static let refused = RCode(5)
    public static let badVers = RCode(16)

    public var description: String {
        switch rawValue {
        case 0: return "NOERROR"
        case 1: return "FORMERR"
        case 2: return "SERVFAIL"
        case 3: return "NXDOMAIN"
        case 4: return "NOTIMP"
        case 5: return "REFUSED"
        case 16: return "BADVERS"
        default: return "RCODE\(rawValue)"
        }
    }
}

/// Decimal digits only, no sign, value must fit in UInt16.
func parseDecimalUInt16<S: StringProtocol>(_ s: S) -> UInt16? {
    guard !s.isEmpty, s.utf8.count <= 5 else { return nil }
    var value = 0
    for c in s.utf8 {
        guard c >= 0x30, c <= 0x39 else { return nil }
        value = value * 10 + Int(c - 0x30)
    }
    return value <= 0xFFFF ? UInt16(value) : nil
}
