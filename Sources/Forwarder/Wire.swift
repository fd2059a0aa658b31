import DNSWire

/// Minimal, allocation-free reads of DNS packets for the forwarder's hot path:
/// the header, the first question, and a walk over the records to find the
/// TTL fields, the rcode, the SOA minimum and the OPT record. Everything else
/// (typed records, encoding) belongs to DNSWire; this only ever skips bytes,
/// never trusts a count, and is bounded by the packet length.
enum Wire {
    static func u16(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt16 {
        UInt16(b[o]) << 8 | UInt16(b[o + 1])
    }
    static func u32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }
    static func put16(_ b: UnsafeMutableRawBufferPointer, _ o: Int, _ v: UInt16) {
        b[o] = UInt8(v >> 8); b[o + 1] = UInt8(v & 0xff)
    }
    static func put32(_ b: UnsafeMutableRawBufferPointer, _ o: Int, _ v: UInt32) {
        b[o] = UInt8(v >> 24); b[o + 1] = UInt8((v >> 16) & 0xff)
        b[o + 2] = UInt8((v >> 8) & 0xff); b[o + 3] = UInt8(v & 0xff)
    }

    @inline(__always) static func lower(_ c: UInt8) -> UInt8 {
        (c >= 65 && c <= 90) ? c | 0x20 : c
    }

    /// Skips a (possibly compressed) name starting at `o`; returns the offset after it, or nil.
    static func skipName(_ b: UnsafeRawBufferPointer, _ o: Int) -> Int? {
        var p = o
        var total = 0
        while p < b.count {
            let len = Int(b[p])
            if len == 0 { return p + 1 }
            if len & 0xC0 == 0xC0 { return p + 2 <= b.count ? p + 2 : nil }
            if len & 0xC0 != 0 { return nil }
            total += len + 1
            if total > 255 { return nil }
            p += len + 1
        }
        return nil
    }

    /// An uncompressed name at `o` (as in a query's question): returns its end, or nil.
    static func plainNameEnd(_ b: UnsafeRawBufferPointer, _ o: Int) -> Int? {
        var p = o
        while p < b.count {
            let len = Int(b[p])
            if len == 0 { return (p + 1 - o) <= 255 ? p + 1 : nil }
            if len > 63 { return nil }
            p += len + 1
        }
        return nil
    }

    /// Reads a name for display (follows pointers, bounded), dnsmasq style: `a.b.c`, `.` for root... dnsmasq logs root as "<root>"? we print ".".
    static func nameText(_ b: UnsafeRawBufferPointer, _ o: Int) -> String? {
        var p = o
        var out: [UInt8] = []
        var jumps = 0
        while p < b.count {
            let len = Int(b[p])
            if len == 0 { break }
            if len & 0xC0 == 0xC0 {
                guard p + 1 < b.count else { return nil }
                jumps += 1
                if jumps > 64 { return nil }
                p = (len & 0x3F) << 8 | Int(b[p + 1])
                continue
            }
            if len & 0xC0 != 0 || p + 1 + len > b.count { return nil }
            if !out.isEmpty { out.append(UInt8(ascii: ".")) }
            for i in 0..<len {
                let c = b[p + 1 + i]
                if c == UInt8(ascii: ".") || c == UInt8(ascii: "\\") {
                    out.append(UInt8(ascii: "\\")); out.append(c)
                } else if c > 32 && c < 127 {
                    out.append(c)
                } else {
                    out.append(UInt8(ascii: "\\"))
                    out.append(48 + c / 100); out.append(48 + (c / 10) % 10); out.append(48 + c % 10)
                }
            }
            if out.count > 1100 { return nil }
            p += 1 + len
        }
        if p >= b.count { return nil }
        return out.isEmpty ? "." : String(decoding: out, as: UTF8.self)
    }

    /// The header and first question of a query.
    struct Query {
        var id: UInt16
        var flags: UInt16
        var qdcount: UInt16
        var nameEnd: Int
        var qtype: UInt16
        var qclass: UInt16
        var questionEnd: Int
        var hasEDNS = false
        var ednsSize: Int = 0
        var dnssecOK = false
        var isResponse: Bool { flags & 0x8000 != 0 }
        var opcode: Int { Int(flags >> 11) & 0xF }
        var checkingDisabled: Bool { flags & 0x0010 != 0 }
    }

    enum QueryParse {
        case ok(Query)
        case formErr       // header readable, body malformed
        case drop          // not even a header
    }

    /// Parses a query: header, exactly one question with an uncompressed name, and
    /// an optional OPT record in the additional section.
    static func parseQuery(_ b: UnsafeRawBufferPointer) -> QueryParse {
        guard b.count >= 12 else { return .drop }
        let id = u16(b, 0), flags = u16(b, 2), qd = u16(b, 4)
        guard qd == 1, let ne = plainNameEnd(b, 12), ne + 4 <= b.count else { return .formErr }
        var q = Query(id: id, flags: flags, qdcount: qd, nameEnd: ne, qtype: u16(b, ne), qclass: u16(b, ne + 2), questionEnd: ne + 4)
        let an = Int(u16(b, 6)), ns = Int(u16(b, 8)), ar = Int(u16(b, 10))
        if an + ns + ar > 0 {
            var p = q.questionEnd
            var i = 0
            while i < an + ns + ar {
                guard let e = skipName(b, p), e + 10 <= b.count else { return .formErr }
                let type = u16(b, e)
                let rdlen = Int(u16(b, e + 8))
                guard e + 10 + rdlen <= b.count else { return .formErr }
                if type == 41 && i >= an + ns {
                    q.hasEDNS = true
                    q.ednsSize = Int(u16(b, e + 2))
                    q.dnssecOK = u16(b, e + 6) & 0x8000 != 0
                }
                p = e + 10 + rdlen
                i += 1
            }
        }
        return .ok(q)
    }

    /// What the forwarder needs from a reply.
    struct ReplyInfo {
        var rcode: Int = 0
        var truncated = false
        var answerCount = 0
        /// Smallest TTL over answer/authority/additional records (OPT excluded); nil if no records.
        var minTTL: UInt32? = nil
        /// min(SOA TTL, SOA minimum) of an SOA in the authority section, if any.
        var negativeTTL: UInt32? = nil
        var ttlOffsets: [UInt16] = []
    }

    /// Walks a reply's records. Returns nil when the packet is malformed.
    static func scanReply(_ b: UnsafeRawBufferPointer, collectOffsets: Bool) -> ReplyInfo? {
        guard b.count >= 12 else { return nil }
        var info = ReplyInfo()
        let flags = u16(b, 2)
        info.rcode = Int(flags & 0xF)
        info.truncated = flags & 0x0200 != 0
        let qd = Int(u16(b, 4)), an = Int(u16(b, 6)), ns = Int(u16(b, 8)), ar = Int(u16(b, 10))
        var p = 12
        for _ in 0..<qd {
            guard let e = skipName(b, p), e + 4 <= b.count else { return nil }
            p = e + 4
        }
        info.answerCount = an
        let total = an + ns + ar
        if collectOffsets { info.ttlOffsets.reserveCapacity(total) }
        var i = 0
        while i < total {
            guard let e = skipName(b, p), e + 10 <= b.count else { return nil }
            let type = u16(b, e)
            let ttl = u32(b, e + 4)
            let rdlen = Int(u16(b, e + 8))
            guard e + 10 + rdlen <= b.count else { return nil }
            if type == 41 {
                if i >= an + ns { info.rcode |= Int(b[e + 4]) << 4 }
            } else {
                info.minTTL = min(info.minTTL ?? ttl, ttl)
                if collectOffsets && e + 4 <= Int(UInt16.max) { info.ttlOffsets.append(UInt16(e + 4)) }
                if type == 6 && i >= an && i < an + ns {
                    // SOA: mname, rname, serial, refresh, retry, expire, minimum
                    if let m1 = skipName(b, e + 10), let m2 = skipName(b, m1), m2 + 20 <= e + 10 + rdlen {
                        let minimum = u32(b, m2 + 16)
                        info.negativeTTL = min(ttl, minimum)
                    }
                }
            }
            p = e + 10 + rdlen
            i += 1
        }
        return info
    }

    /// Compares the question of `reply` to `query`'s (name case-insensitively, type, class).
    static func sameQuestion(_ reply: UnsafeRawBufferPointer, _ query: UnsafeRawBufferPointer, queryNameEnd: Int) -> Bool {
        guard reply.count >= 12, u16(reply, 4) == 1 else { return false }
        let qlen = queryNameEnd + 4 - 12
        guard reply.count >= 12 + qlen, query.count >= 12 + qlen else { return false }
        // The reply's question name must be uncompressed and the same length.
        guard let rne = plainNameEnd(reply, 12), rne == queryNameEnd else { return false }
        var i = 12
        while i < 12 + qlen {
            if lower(reply[i]) != lower(query[i]) { return false }
            i += 1
        }
        return true
    }

    /// DNS 0x20: sets the letter case of the question name (bytes 12..<nameEnd) from `bits`,
    /// one bit per letter (the 64 bits repeat on longer names). Label length bytes are
    /// below 64, so never letters, and are left alone.
    static func applyCase(_ b: UnsafeMutableRawBufferPointer, nameEnd: Int, bits: UInt64) {
        var k: UInt64 = 0
        for i in 12..<min(nameEnd, b.count) {
            let c = b[i] | 0x20
            guard c >= 0x61 && c <= 0x7A else { continue }
            b[i] = (bits >> (k & 63)) & 1 == 1 ? c & ~0x20 : c
            k += 1
        }
    }

    /// true if the reply's question name has exactly the letter case `applyCase` gave it
    /// (the rest of the question is checked by `sameQuestion`).
    static func caseMatches(_ b: UnsafeRawBufferPointer, nameEnd: Int, bits: UInt64) -> Bool {
        guard b.count >= nameEnd else { return false }
        var k: UInt64 = 0
        for i in 12..<nameEnd {
            let c = b[i]
            let l = c | 0x20
            guard l >= 0x61 && l <= 0x7A else { continue }
            let upper = (bits >> (k & 63)) & 1 == 1
            if (c & 0x20 == 0) != upper { return false }
            k += 1
        }
        return true
    }

    /// Log-friendly description of each answer record: (owner, text) like dnsmasq prints.
    static func answerTexts(_ b: UnsafeRawBufferPointer) -> [(String, String)] {
        guard b.count >= 12 else { return [] }
        let qd = Int(u16(b, 4)), an = Int(u16(b, 6))
        var p = 12
        for _ in 0..<qd {
            guard let e = skipName(b, p), e + 4 <= b.count else { return [] }
            p = e + 4
        }
        var out: [(String, String)] = []
        for _ in 0..<an {
            guard let e = skipName(b, p), e + 10 <= b.count else { return out }
            let type = u16(b, e)
            let rdlen = Int(u16(b, e + 8))
            guard e + 10 + rdlen <= b.count else { return out }
            let owner = nameText(b, p) ?? "?"
            let rd = e + 10
            switch type {
            case 1 where rdlen == 4:
                out.append((owner, "\(b[rd]).\(b[rd + 1]).\(b[rd + 2]).\(b[rd + 3])"))
            case 28 where rdlen == 16:
                var bytes = [UInt8](repeating: 0, count: 16)
                for k in 0..<16 { bytes[k] = b[rd + k] }
                out.append((owner, IPText.v6(bytes)))
            case 5:
                out.append((owner, "<CNAME>"))
            default:
                out.append((owner, "<\(typeName(type))>"))
            }
            p = e + 10 + rdlen
        }
        return out
    }

    static func typeName(_ t: UInt16) -> String {
        switch t {
        case 1: return "A"
        case 2: return "NS"
        case 5: return "CNAME"
        case 6: return "SOA"
        case 12: return "PTR"
        case 15: return "MX"
        case 16: return "TXT"
        case 28: return "AAAA"
        case 33: return "SRV"
        case 35: return "NAPTR"
        case 43: return "DS"
        case 46: return "RRSIG"
        case 47: return "NSEC"
        case 48: return "DNSKEY"
        case 64: return "SVCB"
        case 65: return "HTTPS"
        case 99: return "SPF"
        case 252: return "AXFR"
        case 255: return "ANY"
        case 257: return "CAA"
        default: return "TYPE\(t)"
        }
    }

    /// Lower-cased wire question key: name + type + class + a flags byte (EDNS, DO, CD).
    static func cacheKey(_ b: UnsafeRawBufferPointer, _ q: Query) -> [UInt8] {
        var k = [UInt8](repeating: 0, count: q.questionEnd - 12 + 1)
        for i in 12..<q.questionEnd { k[i - 12] = lower(b[i]) }
        k[k.count - 1] = keyFlags(q)
        return k
    }

    @inline(__always) static func keyFlags(_ q: Query) -> UInt8 {
        (q.hasEDNS ? 1 : 0) | (q.dnssecOK ? 2 : 0) | (q.checkingDisabled ? 4 : 0)
    }

    /// Header-only truncation: keeps header and question, sets TC, zeroes the other counts.
    /// Returns the new length.
    static func truncateInPlace(_ b: UnsafeMutableRawBufferPointer, questionEnd: Int) -> Int {
        b[2] |= 0x02
        b[6] = 0; b[7] = 0; b[8] = 0; b[9] = 0; b[10] = 0; b[11] = 0
        return questionEnd
    }
}

/// Address text, shared by the core and the shell.
enum IPText {
    static func v4(_ a: [UInt8]) -> String { "\(a[0]).\(a[1]).\(a[2]).\(a[3])" }

    /// RFC 5952 text for 16 bytes: DNSWire's formatting (log text only, not the hot path).
    static func v6(_ a: [UInt8]) -> String { IPv6Address(bytes: a)?.description ?? "?" }
}
