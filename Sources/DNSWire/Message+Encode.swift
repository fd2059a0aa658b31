extension Message {
    /// Encodes the message; with `compress`, names in questions, owners and the
    /// rdata of CNAME, NS, PTR, MX and SOA are compressed (never SRV targets).
    /// Section counts above 65535 are cut to 65535 records.
    public func encode(compress: Bool = true) -> [UInt8] {
        var w = WireWriter(compress: compress)
        let qd = min(questions.count, 0xFFFF)
        let an = min(answers.count, 0xFFFF)
        let ns = min(authorities.count, 0xFFFF)
        let ar = min(additionals.count, 0xFFFF)
        w.u16(header.id)
        w.u16(header.flags)
        w.u16(UInt16(qd)); w.u16(UInt16(an)); w.u16(UInt16(ns)); w.u16(UInt16(ar))
        for q in questions.prefix(qd) { w.question(q) }
        for rr in answers.prefix(an) { w.record(rr) }
        for rr in authorities.prefix(ns) { w.record(rr) }
        for rr in additionals.prefix(ar) { w.record(rr) }
        return w.bytes
    }

    /// Encodes within `maxSize` bytes (for UDP). Whole records are dropped from the
    /// end (additional, then authority, then answer); OPT records are kept (moved to
    /// the end of the additional section) while they fit. `truncated` (and the TC
    /// bit) is set if any record other than OPT had to go. If even the header and
    /// questions do not fit, the result is the header alone with TC set.
    public func encode(maxSize: Int) -> (bytes: [UInt8], truncated: Bool) {
        var w = WireWriter(compress: true, capacity: min(max(maxSize, 12), 4096))
        var h = header
        let qd = min(questions.count, 0xFFFF)
        w.u16(h.id)
        w.u16(h.flags)
        w.u16(UInt16(qd)); w.u16(0); w.u16(0); w.u16(0)
        for q in questions.prefix(qd) { w.question(q) }
        if w.count > maxSize {
            h.truncated = true
            var out = WireWriter(compress: false, capacity: 12)
            out.u16(h.id); out.u16(h.flags); out.u16(0); out.u16(0); out.u16(0); out.u16(0)
            return (out.bytes, true)
        }
        // OPT records, encoded on their own (owner is the root: nothing to compress).
        var opt = WireWriter(compress: false, capacity: 64)
        var optCount = 0
        for rr in additionals where rr.type == .opt && optCount < 0xFFFF {
            opt.record(rr)
            optCount += 1
        }
        let sections: [[ResourceRecord]] = [answers, authorities, additionals.filter { $0.type != .opt }]
        var counts = [0, 0, 0]
        var truncated = false
        outer: for (si, section) in sections.enumerated() {
            for rr in section {
                let before = w.count
                if counts[si] == 0xFFFF || (si == 2 && counts[2] + optCount >= 0xFFFF) {
                    truncated = true
                    break outer
                }
                w.record(rr)
                if w.count + opt.count > maxSize {
                    w.truncate(to: before)
                    truncated = true
                    break outer
                }
                counts[si] += 1
            }
        }
        if optCount > 0 && w.count + opt.count <= maxSize {
            w.append(opt.bytes)
            counts[2] += optCount
        }
        if truncated { h.truncated = true }
        w.set16(h.flags, at: 2)
        w.set16(UInt16(counts[0]), at: 6)
        w.set16(UInt16(counts[1]), at: 8)
        w.set16(UInt16(counts[2]), at: 10)
        return (w.bytes, truncated)
    }
}
