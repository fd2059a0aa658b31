#if canImport(Glibc)
import Glibc
#endif

/// One directly attached network: an interface address and its prefix length.
public struct LocalPrefix: Hashable, Sendable, CustomStringConvertible {
    public var isV6: Bool
    /// The address, as `Endpoint.bytes` (IPv4 in the top 32 bits of the first word).
    public var bytes: (UInt64, UInt64)
    public var length: Int

    public init(isV6: Bool, bytes: (UInt64, UInt64), length: Int) {
        self.isV6 = isV6; self.bytes = bytes; self.length = max(0, min(length, isV6 ? 128 : 32))
    }

    /// "10.0.0.1/24" or "fd00::1/64".
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let len = Int(parts[1]), let ep = Endpoint(address: String(parts[0]), port: 0) else { return nil }
        guard len >= 0, len <= (ep.isV6 ? 128 : 32) else { return nil }
        self.init(isV6: ep.isV6, bytes: ep.bytes, length: len)
    }

    public func contains(_ ep: Endpoint) -> Bool {
        guard ep.isV6 == isV6 else { return false }
        func mask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? ~0 : ~0 << UInt64(64 - bits) }
        let m0 = mask(length), m1 = mask(length - 64)
        return (ep.bytes.0 & m0) == (bytes.0 & m0) && (ep.bytes.1 & m1) == (bytes.1 & m1)
    }

    public static func == (a: LocalPrefix, b: LocalPrefix) -> Bool {
        a.isV6 == b.isV6 && a.bytes == b.bytes && a.length == b.length
    }
    public func hash(into h: inout Hasher) { h.combine(isV6); h.combine(bytes.0); h.combine(bytes.1); h.combine(length) }

    public var description: String {
        "\(Endpoint(isV6: isV6, bytes: bytes, port: 0).addressText)/\(length)"
    }
}

/// `--local-service` (dnsmasq's open-resolver safety): with no --listen-address, only
/// clients on a directly attached network (an interface's address and prefix, a
/// point-to-point peer, loopback) are answered; queries from anywhere else (behind a
/// router: the forwarder would be an open resolver) are dropped, with a log line at most
/// once a minute, as dnsmasq drops them.
///
/// The set is read with getifaddrs(3): again whenever a query comes from an address not
/// in it and the last reading is over `refreshAfterMiss` old (so an address added later
/// is honoured within that), and at least every `maxAge` (so a removed one stops counting).
public final class LocalServiceFilter {
    public private(set) var prefixes: [LocalPrefix] = []
    public var refreshAfterMiss: UInt64 = 1_000_000_000
    public var maxAge: UInt64 = 10_000_000_000
    public private(set) var dropped = 0
    var readAt: UInt64 = 0
    var loggedAt: UInt64 = 0
    var droppedSinceLog = 0
    let reader: () -> [LocalPrefix]

    /// `reader` lists the attached networks (tests give a fixed list).
    public init(reader: @escaping () -> [LocalPrefix] = LocalServiceFilter.interfacePrefixes) {
        self.reader = reader
    }

    /// Whether a query from `peer` may be answered. `log` gets the rate-limited drop line.
    public func allows(_ peer: Endpoint, now: UInt64, log: (String) -> Void) -> Bool {
        if readAt == 0 || now &- readAt > maxAge { refresh(now) }
        if matches(peer) { return true }
        if now &- readAt > refreshAfterMiss {
            refresh(now)
            if matches(peer) { return true }
        }
        dropped += 1
        droppedSinceLog += 1
        if loggedAt == 0 || now &- loggedAt >= 60_000_000_000 {
            log("ignoring query from non-local network \(peer.addressText) (--local-service: no --listen-address given); \(droppedSinceLog) dropped since the last such line")
            loggedAt = now
            droppedSinceLog = 0
        }
        return false
    }

    public func matches(_ peer: Endpoint) -> Bool {
        if peer.isV6 {
            // ::1, and IPv4-mapped loopback
            if peer.bytes.0 == 0 && peer.bytes.1 == 1 { return true }
        } else if peer.bytes.0 >> 56 == 127 {
            return true
        }
        for p in prefixes where p.contains(peer) { return true }
        return false
    }

    public func refresh(_ now: UInt64) {
        prefixes = reader()
        readAt = now == 0 ? 1 : now
    }

    /// Every interface address with its prefix, and point-to-point peers as /32 or /128.
    public static func interfacePrefixes() -> [LocalPrefix] {
        var out: [LocalPrefix] = []
        var head: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&head) == 0 else { return out }
        defer { freeifaddrs(head) }
        var cur = head
        while let ifa = cur {
            defer { cur = ifa.pointee.ifa_next }
            guard let addr = ifa.pointee.ifa_addr else { continue }
            let family = Int32(addr.pointee.sa_family)
            guard family == AF_INET || family == AF_INET6 else { continue }
            guard let a = endpoint(addr) else { continue }
            var len = family == AF_INET ? 32 : 128
            if let nm = ifa.pointee.ifa_netmask, let m = endpoint(nm) {
                len = m.bytes.0.nonzeroBitCount + m.bytes.1.nonzeroBitCount
            }
            out.append(LocalPrefix(isV6: a.isV6, bytes: a.bytes, length: len))
            if ifa.pointee.ifa_flags & UInt32(IFF_POINTOPOINT) != 0, let peer = ifa.pointee.ifa_ifu.ifu_dstaddr, let p = endpoint(peer) {
                out.append(LocalPrefix(isV6: p.isV6, bytes: p.bytes, length: p.isV6 ? 128 : 32))
            }
        }
        return out
    }

    static func endpoint(_ sa: UnsafeMutablePointer<sockaddr>) -> Endpoint? {
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                let b = withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) }
                return Endpoint(v4: b[0], b[1], b[2], b[3], port: 0)
            }
        case AF_INET6:
            return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                let b = withUnsafeBytes(of: sin.pointee.sin6_addr) { Array($0) }
                var hi: UInt64 = 0, lo: UInt64 = 0
                for i in 0..<8 { hi = hi << 8 | UInt64(b[i]) }
                for i in 8..<16 { lo = lo << 8 | UInt64(b[i]) }
                return Endpoint(isV6: true, bytes: (hi, lo), port: 0)
            }
        default:
            return nil
        }
    }
}
