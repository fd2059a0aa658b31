public struct Question: Hashable, CustomStringConvertible, Sendable {
    public var name: DNSName
    public var type: RRType
    /// QCLASS; 1 = IN.
    public var klass: UInt16

    public init(name: DNSName, type: RRType, klass: UInt16 = 1) {
        self.name = name
        self.type = type
        self.klass = klass
    }

    public var description: String { "\(name) \(classDescription(klass)) \(type)" }
}

func classDescription(_ klass: UInt16) -> String {
    switch klass {
    case 1: return "IN"
    case 3: return "CH"
    case 4: return "HS"
    case 254: return "NONE"
    case 255: return "ANY"
    default: return "CLASS\(klass)"
    }
}
