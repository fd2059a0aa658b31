/// `--address=/DOMAIN/IP` (and `/DOMAIN/` = NXDOMAIN, `/DOMAIN/#` = 0.0.0.0 and ::).
public struct AddressRule: Hashable, Sendable {
    public var domains: [String]        // lower-case, no trailing dot
    public var v4: [[UInt8]] = []
    public var v6: [[UInt8]] = []
    public var nxdomain: Bool { v4.isEmpty && v6.isEmpty }

    public init(domains: [String], v4: [[UInt8]] = [], v6: [[UInt8]] = []) {
        self.domains = domains; self.v4 = v4; self.v6 = v6
    }
}

/// Names from hosts files.
public struct HostsTable: Sendable {
    public struct Entry: Sendable {
        public var v4: [[UInt8]] = []
        public var v6: [[UInt8]] = []
        public var source: String = ""
    }
    public var names: [String: Entry] = [:]
    public init() {}

    public var isEmpty: Bool { names.isEmpty }

    /// Parses hosts-file text ("IP name [alias...]", '#' comments) and adds it.
    public mutating func add(text: String, source: String) {
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: true) {
            var line = Substring(rawLine)
            if let h = line.firstIndex(of: "#") { line = line[..<h] }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard fields.count >= 2, let ep = Endpoint(address: String(fields[0]), port: 0) else { continue }
            for name in fields.dropFirst() {
                var n = name.lowercased()
                if n.hasSuffix(".") { n.removeLast() }
                guard !n.isEmpty else { continue }
                var e = names[n] ?? Entry(source: source)
                if ep.isV6 { if !e.v6.contains(ep.addressBytes) { e.v6.append(ep.addressBytes) } }
                else { if !e.v4.contains(ep.addressBytes) { e.v4.append(ep.addressBytes) } }
                names[n] = e
            }
        }
    }
}

/// Builds small authoritative replies for local data, straight into a buffer.
enum LocalReply {
    /// Writes header + question copied from the query, then `answers` (rdata for qtype)
    /// with a pointer to the question name. Returns the length or 0 if it does not fit.
    static func write(query: UnsafeRawBufferPointer, questionEnd: Int, rcode: UInt8, qtype: UInt16, ttl: UInt32,
                      answers: [[UInt8]], aa: Bool, into out: UnsafeMutableRawBufferPointer) -> Int {
        var need = questionEnd
        for a in answers { need += 12 + a.count }
        guard need <= out.count, questionEnd <= query.count else { return 0 }
        for i in 0..<questionEnd { out[i] = query[i] }
        let opcode = query[2] & 0x78
        out[2] = 0x80 | opcode | (aa ? 0x04 : 0) | (query[2] & 0x01)
        out[3] = 0x80 | (rcode & 0x0F)
        out[4] = 0; out[5] = 1
        Wire.put16(out, 6, UInt16(answers.count))
        out[8] = 0; out[9] = 0; out[10] = 0; out[11] = 0
        var p = questionEnd
        for a in answers {
            out[p] = 0xC0; out[p + 1] = 0x0C
            Wire.put16(out, p + 2, qtype)
            Wire.put16(out, p + 4, 1)
            Wire.put32(out, p + 6, ttl)
            Wire.put16(out, p + 10, UInt16(a.count))
            p += 12
            for b in a { out[p] = b; p += 1 }
        }
        return p
    }

    /// Header-only error reply (FORMERR, NOTIMP) for a query whose question cannot be used.
    static func headerOnly(query: UnsafeRawBufferPointer, rcode: UInt8, into out: UnsafeMutableRawBufferPointer) -> Int {
        guard query.count >= 12, out.count >= 12 else { return 0 }
        out[0] = query[0]; out[1] = query[1]
        out[2] = 0x80 | (query[2] & 0x79)
        out[3] = 0x80 | (rcode & 0x0F)
        for i in 4..<12 { out[i] = 0 }
        return 12
    }
}
