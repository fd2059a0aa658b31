/// Typed rdata. Types without a case here (and A/AAAA outside class IN) are kept
/// as `.unknown(bytes)`.
public enum RData: Hashable, CustomStringConvertible, Sendable {
    case a(IPv4Address)
    case aaaa(IPv6Address)
    case cname(DNSName)
    case ns(DNSName)
    case ptr(DNSName)
    case mx(preference: UInt16, exchange: DNSName)
    case txt([[UInt8]])
    case soa(SOA)
    case srv(SRV)
    case opt([EDNSOption])
    case unknown([UInt8])

    /// The RR type this rdata belongs to (nil for `.unknown`, whose type lives in the record).
    public var type: RRType? {
        switch self {
        case .a: return .a
        case .aaaa: return .aaaa
        case .cname: return .cname
        case .ns: return .ns
        case .ptr: return .ptr
        case .mx: return .mx
        case .txt: return .txt
        case .soa: return .soa
        case .srv: return .srv
        case .opt: return .opt
        case .unknown: return nil
        }
    }

    /// Presentation-like text, e.g. "192.0.2.1", "10 mail.example", "\"hello world\"".
    public var description: String {
        switch self {
        case .a(let ip): return ip.description
        case .aaaa(let ip): return ip.description
        case .cname(let n), .ns(let n), .ptr(let n): return n.description
        case .mx(let pref, let exchange): return "\(pref) \(exchange)"
        case .txt(let strings): return strings.map(quotedText).joined(separator: " ")
        case .soa(let s):
            return "\(s.mname) \(s.rname) \(s.serial) \(s.refresh) \(s.retry) \(s.expire) \(s.minimum)"
        case .srv(let s): return "\(s.priority) \(s.weight) \(s.port) \(s.target)"
        case .opt(let opts): return opts.map { "OPT\($0.code):\(hexString($0.data))" }.joined(separator: " ")
        case .unknown(let bytes): return "\\# \(bytes.count) \(hexString(bytes))"
        }
    }
}

func quotedText(_ s: [UInt8]) -> String {
    var out: [UInt8] = [0x22]
    for b in s {
        if b == 0x22 || b == 0x5C {
            out.append(0x5C); out.append(b)
        } else if b < 0x20 || b >= 0x7F {
            out.append(0x5C)
            out.append(0x30 + b / 100)
            out.append(0x30 + (b / 10) % 10)
            out.append(0x30 + b % 10)
        } else {
            out.append(b)
        }
    }
    out.append(0x22)
    return String(decoding: out, as: UTF8.self)
}

func hexString(_ bytes: [UInt8]) -> String {
    let digits: [UInt8] = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
