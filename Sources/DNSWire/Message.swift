/// A whole DNS message.
public struct Message: Equatable, Sendable {
    public var header: Header
    public var questions: [Question]
    public var answers: [ResourceRecord]
    public var authorities: [ResourceRecord]
    public var additionals: [ResourceRecord]

    public init(header: Header = Header(), questions: [Question] = [], answers: [ResourceRecord] = [],
                authorities: [ResourceRecord] = [], additionals: [ResourceRecord] = []) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
    }

    /// A query for one question (RD set by default), optionally with EDNS.
    public static func query(id: UInt16, name: DNSName, type: RRType, klass: UInt16 = 1,
                             recursionDesired: Bool = true, edns: EDNS? = nil) -> Message {
        var m = Message(header: Header(id: id, recursionDesired: recursionDesired),
                        questions: [Question(name: name, type: type, klass: klass)])
        m.edns = edns
        return m
    }

    /// The EDNS pseudo-header from the (first) OPT record in `additionals`.
    /// Setting it replaces every OPT record by one at the end of `additionals`
    /// (nil removes them).
    public var edns: EDNS? {
        get {
            for rr in additionals where rr.type == .opt { return EDNS(record: rr) }
            return nil
        }
        set {
            additionals.removeAll { $0.type == .opt }
            if let e = newValue { additionals.append(e.record) }
        }
    }

    /// The 12-bit RCODE: header RCODE plus EDNS extended RCODE. Setting a value
    /// above 15 without EDNS keeps only the low 4 bits (there is nowhere to put the rest).
    public var rcode: RCode {
        get {
            let ext = UInt16(edns?.extendedRCode ?? 0)
            return RCode(rawValue: ext << 4 | UInt16(header.rcodeLow & 0x0F))
        }
        set {
            header.rcodeLow = UInt8(truncatingIfNeeded: newValue.rawValue) & 0x0F
            if var e = edns {
                let ext = UInt8(truncatingIfNeeded: newValue.rawValue >> 4)
                if e.extendedRCode != ext {
                    e.extendedRCode = ext
                    // Keep the OPT record in place (and its Z bits) when possible.
                    if let i = additionals.firstIndex(where: { $0.type == .opt }) {
                        additionals[i].ttl = additionals[i].ttl & 0x00FF_FFFF | UInt32(ext) << 24
                    } else {
                        edns = e
                    }
                }
            }
        }
    }

    /// A reply skeleton: same ID, opcode, questions, RD and CD; QR and RA set; the
    /// given RCODE. If the query had EDNS, the reply has EDNS too (UDP size 1232, same DO).
    public static func reply(to query: Message, rcode: RCode) -> Message {
        var h = Header(id: query.header.id)
        h.isResponse = true
        h.opcode = query.header.opcode
        h.recursionDesired = query.header.recursionDesired
        h.recursionAvailable = true
        h.checkingDisabled = query.header.checkingDisabled
        var m = Message(header: h, questions: query.questions)
        if let qe = query.edns {
            m.edns = EDNS(udpSize: 1232, dnssecOK: qe.dnssecOK)
        }
        m.rcode = rcode
        return m
    }

    /// All records of the three sections, in order.
    public var allRecords: [ResourceRecord] { answers + authorities + additionals }
}
