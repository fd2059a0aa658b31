import CForwarderSys

/// An IPv4 or IPv6 address with a port, as plain value bytes (no sockaddr).
public struct Endpoint: Hashable, CustomStringConvertible, Sendable {
    public var isV6: Bool
    /// IPv4 uses the first 4 bytes.
    public var bytes: (UInt64, UInt64)
    public var port: UInt16

    public init(isV6: Bool, bytes: (UInt64, UInt64), port: UInt16) {
        self.isV6 = isV6; self.bytes = bytes; self.port = port
    }

    public init(v4 a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) {
        isV6 = false
        bytes = (UInt64(a) << 56 | UInt64(b) << 48 | UInt64(c) << 40 | UInt64(d) << 32, 0)
        self.port = port
    }

    /// Parses "1.2.3.4" or "::1" (no port).
    public init?(address text: String, port: UInt16) {
        var a = fwd_addr()
        let ok = text.withCString { fwd_addr_parse($0, &a) }
        guard ok == 1 else { return nil }
        a.port = port
        self.init(a)
    }

    public init(_ a: fwd_addr) {
        isV6 = a.family == 6
        var hi: UInt64 = 0, lo: UInt64 = 0
        withUnsafeBytes(of: a.addr) { raw in
            for i in 0..<8 { hi = hi << 8 | UInt64(raw[i]) }
            for i in 8..<16 { lo = lo << 8 | UInt64(raw[i]) }
        }
        bytes = (hi, lo)
        port = a.port
    }

    public var addressBytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: isV6 ? 16 : 4)
        for i in 0..<out.count {
            let word = i < 8 ? bytes.0 : bytes.1
            out[i] = UInt8((word >> UInt64(56 - 8 * (i % 8))) & 0xff)
        }
        return out
    }

    public var cValue: fwd_addr {
        var a = fwd_addr()
        a.family = isV6 ? 6 : 4
        a.port = port
        // Big-endian words straight into the address (no array: this runs per packet).
        let (hi, lo) = (bytes.0.bigEndian, bytes.1.bigEndian)
        withUnsafeMutableBytes(of: &a.addr) { raw in
            raw.storeBytes(of: hi, toByteOffset: 0, as: UInt64.self)
            if isV6 { raw.storeBytes(of: lo, toByteOffset: 8, as: UInt64.self) }
        }
        return a
    }

    public var isUnspecified: Bool { bytes.0 == 0 && bytes.1 == 0 }

    /// Address only, as dnsmasq prints it.
    public var addressText: String { isV6 ? IPText.v6(addressBytes) : IPText.v4(addressBytes) }
    /// dnsmasq's "IP" or "IP#PORT" when the port is not 53.
    public var serverText: String { port == 53 ? addressText : "\(addressText)#\(port)" }
    /// Always "IP#PORT" (statistics lines).
    public var fullText: String { "\(addressText)#\(port)" }
    public var description: String { fullText }

    public static func == (l: Endpoint, r: Endpoint) -> Bool {
        l.isV6 == r.isV6 && l.bytes.0 == r.bytes.0 && l.bytes.1 == r.bytes.1 && l.port == r.port
    }
    public func hash(into h: inout Hasher) {
        h.combine(isV6); h.combine(bytes.0); h.combine(bytes.1); h.combine(port)
    }
}

public enum Transport: Sendable { case udp, tcp }

/// Who asked: enough for the shell to send the reply back the way it came.
public struct ClientRef: Hashable, Sendable {
    public var transport: Transport
    public var peer: Endpoint
    /// The address the query was sent to (reply source), port ignored.
    public var local: Endpoint
    public var ifindex: Int32
    /// Shell's handle: the UDP listener index or the TCP connection id.
    public var handle: Int

    public init(transport: Transport, peer: Endpoint, local: Endpoint, ifindex: Int32, handle: Int) {
        self.transport = transport; self.peer = peer; self.local = local; self.ifindex = ifindex; self.handle = handle
    }
}
