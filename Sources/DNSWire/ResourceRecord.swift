public struct ResourceRecord: Hashable, CustomStringConvertible, Sendable {
    public var name: DNSName
    public var type: RRType
    /// CLASS (1 = IN); for OPT, the UDP payload size.
    public var klass: UInt16
    public var ttl: UInt32
    public var rdata: RData

    public init(name: DNSName, type: RRType, klass: UInt16 = 1, ttl: UInt32, rdata: RData) {
        self.name = name
        self.type = type
        self.klass = klass
        self.ttl = ttl
        self.rdata = rdata
    }

    /// Type taken from the rdata (`.unknown` rdata gets TYPE0; use the other init for it).
    public init(name: DNSName, klass: UInt16 = 1, ttl: UInt32, rdata: RData) {
        self.init(name: name, type: rdata.type ?? RRType(0), klass: klass, ttl: ttl, rdata: rdata)
    }

    public var description: String { "\(name) \(ttl) \(classDescription(klass)) \(type) \(rdata)" }
}
