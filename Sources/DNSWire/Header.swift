/// The fixed 12-byte header without the section counts (those come from the
/// `Message` arrays).
public struct Header: Equatable, Sendable {
    public var id: UInt16
    public var isResponse: Bool
    public var opcode: UInt8
    public var authoritative: Bool
    public var truncated: Bool
    public var recursionDesired: Bool
    public var recursionAvailable: Bool
    /// The reserved Z bit (kept so that decode/encode is faithful).
    public var z: Bool
    public var authenticData: Bool
    public var checkingDisabled: Bool
    /// 4-bit RCODE from the header; see `Message.rcode` for the extended one.
    public var rcodeLow: UInt8

    public init(id: UInt16 = 0, isResponse: Bool = false, opcode: UInt8 = 0, authoritative: Bool = false,
                truncated: Bool = false, recursionDesired: Bool = false, recursionAvailable: Bool = false,
                z: Bool = false, authenticData: Bool = false, checkingDisabled: Bool = false, rcodeLow: UInt8 = 0) {
        self.id = id
        self.isResponse = isResponse
        self.opcode = opcode & 0x0F
        self.authoritative = authoritative
        self.truncated = truncated
        self.recursionDesired = recursionDesired
        self.recursionAvailable = recursionAvailable
        self.z = z
        self.authenticData = authenticData
        self.checkingDisabled = checkingDisabled
        self.rcodeLow = rcodeLow & 0x0F
    }

    /// From the 16-bit flags word (second header field).
    public init(id: UInt16, flags: UInt16) {
        self.init(id: id)
        self.flags = flags
    }

    /// The 16-bit flags word: QR, OPCODE, AA, TC, RD, RA, Z, AD, CD, RCODE.
    public var flags: UInt16 {
        get {
            var f: UInt16 = 0
            if isResponse { f |= 0x8000 }
            f |= UInt16(opcode & 0x0F) << 11
            if authoritative { f |= 0x0400 }
            if truncated { f |= 0x0200 }
            if recursionDesired { f |= 0x0100 }
            if recursionAvailable { f |= 0x0080 }
            if z { f |= 0x0040 }
            if authenticData { f |= 0x0020 }
            if checkingDisabled { f |= 0x0010 }
            f |= UInt16(rcodeLow & 0x0F)
            return f
        }
        set {
            isResponse = newValue & 0x8000 != 0
            opcode = UInt8(truncatingIfNeeded: newValue >> 11) & 0x0F
            authoritative = newValue & 0x0400 != 0
            truncated = newValue & 0x0200 != 0
            recursionDesired = newValue & 0x0100 != 0
            recursionAvailable = newValue & 0x0080 != 0
            z = newValue & 0x0040 != 0
            authenticData = newValue & 0x0020 != 0
            checkingDisabled = newValue & 0x0010 != 0
            rcodeLow = UInt8(truncatingIfNeeded: newValue) & 0x0F
        }
    }
}
