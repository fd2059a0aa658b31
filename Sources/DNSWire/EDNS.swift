/// One EDNS0 option (code, data), kept as-is.
public struct EDNSOption: Hashable, Sendable {
    public var code: UInt16
    public var data: [UInt8]

    public init(code: UInt16, data: [UInt8]) {
        self.code = code
        self.data = data
    }
}

/// The EDNS0 pseudo-header carried by an OPT record (RFC 6891): the UDP payload
/// size lives in the CLASS field, extended RCODE / version / DO in the TTL.
public struct EDNS: Hashable, Sendable {
    public var udpSize: UInt16
    /// Upper 8 bits of the 12-bit RCODE.
    public var extendedRCode: UInt8
    public var version: UInt8
    public var dnssecOK: Bool
    public var options: [EDNSOption]

    public init(udpSize: UInt16 = 1232, extendedRCode: UInt8 = 0, version: UInt8 = 0, dnssecOK: Bool = false,
                options: [EDNSOption] = []) {
        self.udpSize = udpSize
        self.extendedRCode = extendedRCode
        self.version = version
        self.dnssecOK = dnssecOK
        self.options = options
    }

    /// Reads the pseudo-header from an OPT record (nil if `record` is not OPT).
    public init?(record: ResourceRecord) {
        guard record.type == .opt else { return nil }
        udpSize = record.klass
        extendedRCode = UInt8(truncatingIfNeeded: record.ttl >> 24)
        version = UInt8(truncatingIfNeeded: record.ttl >> 16)
        dnssecOK = record.ttl & 0x8000 != 0
        if case .opt(let opts) = record.rdata {
            options = opts
        } else {
            options = []
        }
    }

    /// The OPT record (owner: root) carrying this pseudo-header.
    public var record: ResourceRecord {
        let ttl = UInt32(extendedRCode) << 24 | UInt32(version) << 16 | (dnssecOK ? 0x8000 : 0)
        return ResourceRecord(name: .root, type: .opt, klass: udpSize, ttl: ttl, rdata: .opt(options))
    }
}
