extension Message {
    /// Decodes a whole message. Throws `DNSError`; never traps, work is bounded by
    /// the packet size. Bytes after the last record are `.trailingGarbage`.
    public init(decoding bytes: [UInt8]) throws {
        self = try bytes.withUnsafeBytes { try Message(decoding: $0) }
    }

    public init(decoding buf: UnsafeRawBufferPointer) throws {
        try self.init(decoding: buf, allowTrailingBytes: false)
    }

    /// As `init(decoding:)`, optionally ignoring bytes after the last record.
    public init(decoding buf: UnsafeRawBufferPointer, allowTrailingBytes: Bool) throws {
        var r = WireReader(buf)
        let id = try r.u16()
        let flags = try r.u16()
        let qd = Int(try r.u16())
        let an = Int(try r.u16())
        let ns = Int(try r.u16())
        let ar = Int(try r.u16())
        // A question takes at least 5 bytes, a record at least 11.
        if qd * 5 + (an + ns + ar) * 11 > r.remaining {
            throw DNSError(.tooManyRecords, offset: 4)
        }
        var questions: [Question] = []
        questions.reserveCapacity(qd)
        for _ in 0..<qd {
            let name = try r.name()
            let type = try r.u16()
            let klass = try r.u16()
            questions.append(Question(name: name, type: RRType(type), klass: klass))
        }
        let answers = try Message.records(an, &r)
        let authorities = try Message.records(ns, &r)
        let additionals = try Message.records(ar, &r)
        if !allowTrailingBytes && r.remaining != 0 {
            throw DNSError(.trailingGarbage, offset: r.pos)
        }
        self.init(header: Header(id: id, flags: flags), questions: questions, answers: answers,
                  authorities: authorities, additionals: additionals)
    }

    static func records(_ n: Int, _ r: inout WireReader) throws -> [ResourceRecord] {
        var out: [ResourceRecord] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try record(&r)) }
        return out
    }

    static func record(_ r: inout WireReader) throws -> ResourceRecord {
        let name = try r.name()
        let type = RRType(try r.u16())
        let klass = try r.u16()
        let ttl = try r.u32()
        let lengthAt = r.pos
        let length = Int(try r.u16())
        guard r.remaining >= length else { throw DNSError(.truncated, offset: lengthAt) }
        let start = r.pos
        let end = start + length
        let rdata = try Message.rdata(type: type, klass: klass, start: start, end: end, &r)
        r.pos = end
        return ResourceRecord(name: name, type: type, klass: klass, ttl: ttl, rdata: rdata)
    }

    /// Parses the rdata in [start, end). A typed rdata that does not fill exactly
    /// its RDLENGTH is `.badRDataLength`.
    static func rdata(type: RRType, klass: UInt16, start: Int, end: Int, _ r: inout WireReader) throws -> RData {
        let length = end - start
        func bad() -> DNSError { DNSError(.badRDataLength, offset: start) }
        // Sub-reader that cannot read past the rdata, but whose names may point anywhere before.
        var s = WireReader(UnsafeRawBufferPointer(rebasing: r.buf[0..<end]), pos: start, minPointer: r.minPointer)
        func wrap<T>(_ body: (inout WireReader) throws -> T) throws -> T {
            do {
                let v = try body(&s)
                guard s.pos == end else { throw bad() }
                return v
            } catch let e as DNSError where e.kind == .truncated {
                throw bad()
            }
        }
        // Empty rdata in class NONE/ANY (dynamic update) carries no data at all.
        if length == 0 && (klass == 254 || klass == 255) && type != .opt { return .unknown([]) }
        switch type {
        case .a where klass == 1:
            return try wrap { s in
                guard length == 4 else { throw bad() }
                return .a(IPv4Address(try s.u8(), try s.u8(), try s.u8(), try s.u8()))
            }
        case .aaaa where klass == 1:
            return try wrap { s in
                guard length == 16 else { throw bad() }
                let hi = UInt64(try s.u32()) << 32 | UInt64(try s.u32())
                let lo = UInt64(try s.u32()) << 32 | UInt64(try s.u32())
                return .aaaa(IPv6Address(high: hi, low: lo))
            }
        case .cname: return try wrap { s in .cname(try s.name()) }
        case .ns: return try wrap { s in .ns(try s.name()) }
        case .ptr: return try wrap { s in .ptr(try s.name()) }
        case .mx: return try wrap { s in .mx(preference: try s.u16(), exchange: try s.name()) }
        case .txt:
            return try wrap { s in
                var strings: [[UInt8]] = []
                while s.pos < end {
                    let n = Int(try s.u8())
                    strings.append(try s.bytes(n))
                }
                return .txt(strings)
            }
        case .soa:
            return try wrap { s in
                .soa(SOA(mname: try s.name(), rname: try s.name(), serial: try s.u32(), refresh: try s.u32(),
                         retry: try s.u32(), expire: try s.u32(), minimum: try s.u32()))
            }
        case .srv:
            return try wrap { s in
                .srv(SRV(priority: try s.u16(), weight: try s.u16(), port: try s.u16(), target: try s.name()))
            }
        case .opt:
            return try wrap { s in
                var options: [EDNSOption] = []
                while s.pos < end {
                    let code = try s.u16()
                    let n = Int(try s.u16())
                    options.append(EDNSOption(code: code, data: try s.bytes(n)))
                }
                return .opt(options)
            }
        default:
            return .unknown(try wrap { s in try s.bytes(length) })
        }
    }
}
