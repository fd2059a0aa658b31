public struct SOA: Hashable, Sendable {
    public var mname: DNSName
    public var rname: DNSName
    public var serial: UInt32
    public var refresh: UInt32
    public var retry: UInt32
    public var expire: UInt32
    /// Negative-caching TTL (RFC 2308).
    public var minimum: UInt32

    public init(mname: DNSName, rname: DNSName, serial: UInt32, refresh: UInt32, retry: UInt32,
                expire: UInt32, minimum: UInt32) {
        self.mname = mname
        self.rname = rname
        self.serial = serial
        self.refresh = refresh
        self.retry = retry
        self.expire = expire
        self.minimum = minimum
    }
}
