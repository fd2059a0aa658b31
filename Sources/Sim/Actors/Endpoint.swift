import Glibc

/// An IP address and port, IPv4 or IPv6, in canonical text form.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public enum Family: Sendable { case v4, v6 }

    /// Canonical text of the address ("127.0.0.1", "::1").
    public let ip: String
    public let port: UInt16
    public let family: Family

    /// Validates and canonicalises `ip` (no zone index, no brackets).
    public init(ip: String, port: UInt16) throws {
        var a4 = in_addr()
        var a6 = in6_addr()
        if inet_pton(AF_INET, ip, &a4) == 1 {
            self.family = .v4
            self.ip = Endpoint.text(v4: a4)
        } else if inet_pton(AF_INET6, ip, &a6) == 1 {
            self.family = .v6
            self.ip = Endpoint.text(v6: a6)
        } else {
            throw ActorError("not an IP address: \"\(ip)\"")
        }
        self.port = port
    }

    /// Parses "1.2.3.4:53", "[::1]:53", or a bare address (then `defaultPort`).
    public init(parsing text: String, defaultPort: UInt16 = 53) throws {
        var host = text
        var port = defaultPort
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ActorError("bad address \"\(text)\": missing ]")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = UInt16(rest.dropFirst()) else {
                    throw ActorError("bad port in \"\(text)\"")
                }
                port = p
            }
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            host = String(text[..<colon])
            guard let p = UInt16(text[text.index(after: colon)...]) else {
                throw ActorError("bad port in \"\(text)\"")
            }
            port = p
        }
        try self.init(ip: host, port: port)
    }

    public var description: String {
        family == .v4 ? "\(ip):\(port)" : "[\(ip)]:\(port)"
    }

    /// The wildcard address of this family on `port`.
    static func wildcard(_ family: Family, port: UInt16) -> Endpoint {
        // Both literals are valid, so this cannot throw.
        try! Endpoint(ip: family == .v4 ? "0.0.0.0" : "::", port: port)
    }

    var domain: Int32 { family == .v4 ? AF_INET : AF_INET6 }

    /// Calls `body` with this endpoint as a sockaddr.
    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        var storage = sockaddr_storage()
        let len: socklen_t
        switch family {
        case .v4:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            inet_pton(AF_INET, ip, &sin.sin_addr)
            withUnsafeMutableBytes(of: &storage) { dst in
                withUnsafeBytes(of: &sin) { dst.copyMemory(from: $0) }
            }
            len = socklen_t(MemoryLayout<sockaddr_in>.size)
        case .v6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            inet_pton(AF_INET6, ip, &sin6.sin6_addr)
            withUnsafeMutableBytes(of: &storage) { dst in
                withUnsafeBytes(of: &sin6) { dst.copyMemory(from: $0) }
            }
            len = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
        return try withUnsafePointer(to: &storage) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, len) }
        }
    }

    /// Reads a sockaddr_in / sockaddr_in6 from `storage`.
    init?(storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let sin = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            self.ip = Endpoint.text(v4: sin.sin_addr)
            self.port = UInt16(bigEndian: sin.sin_port)
            self.family = .v4
        case AF_INET6:
            let sin6 = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
            self.ip = Endpoint.text(v6: sin6.sin6_addr)
            self.port = UInt16(bigEndian: sin6.sin6_port)
            self.family = .v6
        default:
            return nil
        }
    }

    /// The raw address bytes (4 or 16).
    var addressBytes: [UInt8] {
        if family == .v4 {
            var a = in_addr()
            inet_pton(AF_INET, ip, &a)
            return withUnsafeBytes(of: &a) { Array($0) }
        }
        var a = in6_addr()
        inet_pton(AF_INET6, ip, &a)
        return withUnsafeBytes(of: &a) { Array($0) }
    }

    private static func text(v4: in_addr) -> String {
        var a = v4
        var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
        return String(cString: buf)
    }

    private static func text(v6: in6_addr) -> String {
        var a = v6
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
        return String(cString: buf)
    }
}
