import DNSWire

/// The data a fake upstream serves: records by name, and an SOA for negative
/// answers.
///
/// Built from plain strings so the runner can fill it from YAML:
/// `try Zone(["hat.com": [.init("A", "192.168.122.203", ttl: 60)]])`, or
/// `try Zone(simple: ["hat.com": ["A": ["192.168.122.203"]]])`.
/// Values: A/AAAA an address, CNAME/NS/PTR a name, MX "10 mail.hat.com" (or
/// just the exchange: preference 10), TXT the text (split into 255-byte
/// strings), SRV "prio weight port target", SOA "mname rname serial refresh
/// retry expire minimum".
public struct Zone: Sendable, CustomStringConvertible {
    /// One record as text.
    public struct Entry: Hashable, Sendable {
        public var type: String
        public var value: String
        /// nil: the zone's default TTL.
        public var ttl: UInt32?

        public init(_ type: String, _ value: String, ttl: UInt32? = nil) {
            self.type = type
            self.value = value
            self.ttl = ttl
        }
    }

    /// What the zone says about one question.
    public struct Answer: Equatable, Sendable {
        public var rcode: RCode
        public var answers: [ResourceRecord]
        public var authorities: [ResourceRecord]
    }

    /// The apex: owner of the SOA. Given, or the longest common suffix of the names.
    public let origin: DNSName
    public let soa: ResourceRecord
    private var records: [DNSName: [ResourceRecord]] = [:]

    /// - Parameters:
    ///   - entries: owner name -> records.
    ///   - defaultTTL: for entries without a TTL.
    ///   - origin: the apex; default: the longest common suffix of the names.
    ///   - negativeTTL: SOA minimum and TTL of the synthesized SOA (when the
    ///     entries hold no SOA at the origin).
    /// - Throws: `ActorError` naming the name, type and value that is wrong.
    public init(_ entries: [String: [Entry]], defaultTTL: UInt32 = 300,
                origin: String? = nil, negativeTTL: UInt32 = 60) throws {
        var parsed: [DNSName: [ResourceRecord]] = [:]
        // Sorted, so the record order (and error messages) are deterministic.
        for (nameText, list) in entries.sorted(by: { $0.key < $1.key }) {
            let name: DNSName
            do { name = try DNSName(nameText) } catch {
                throw ActorError("zone: bad name \"\(nameText)\": \(error)")
            }
            for e in list {
                let rr = try Zone.record(name: name, nameText: nameText, entry: e, defaultTTL: defaultTTL)
                parsed[name, default: []].append(rr)
            }
        }
        let apex: DNSName
        if let origin {
            do { apex = try DNSName(origin) } catch {
                throw ActorError("zone: bad origin \"\(origin)\": \(error)")
            }
        } else {
            apex = Zone.commonSuffix(Array(parsed.keys))
        }
        self.origin = apex
        if let given = parsed[apex]?.first(where: { $0.type == .soa }) {
            self.soa = given
        } else {
            let host = apex.labels.isEmpty ? "" : "." + apex.description
            // Names built from a valid apex plus one short label: cannot fail.
            let soa = SOA(mname: try DNSName("ns" + host), rname: try DNSName("hostmaster" + host),
                          serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: negativeTTL)
            self.soa = ResourceRecord(name: apex, type: .soa, klass: 1, ttl: negativeTTL, rdata: .soa(soa))
            parsed[apex, default: []].append(self.soa)
        }
        self.records = parsed
    }

    /// `["hat.com": ["A": ["192.168.122.203"], "MX": ["10 mail.hat.com"]]]`, all with `ttl`.
    public init(simple: [String: [String: [String]]], ttl: UInt32 = 300, origin: String? = nil) throws {
        var entries: [String: [Entry]] = [:]
        for (name, byType) in simple {
            for (type, values) in byType.sorted(by: { $0.key < $1.key }) {
                for v in values { entries[name, default: []].append(Entry(type, v, ttl: ttl)) }
            }
        }
        try self.init(entries, defaultTTL: ttl, origin: origin)
    }

    /// An empty zone (every name NXDOMAIN).
    public static let empty: Zone = try! Zone([:])

    /// Answer logic: exact name and type; CNAME chains inside the zone;
    /// NXDOMAIN with the SOA in authority; NODATA (NOERROR, no answers) with the SOA.
    /// The first owner name keeps the question's spelling (case).
    /// Records of the nearest `*.` owner above `name` (a simple wildcard: the
    /// closest enclosing `*.parent` that exists), for names with none of their own.
    func wildcardRecords(for name: DNSName) -> [ResourceRecord]? {
        var labels = name.labels
        while !labels.isEmpty {
            labels.removeFirst()
            if let star = try? DNSName(labels: [[0x2A]] + labels), let rrs = records[star] { return rrs }
        }
        return nil
    }

    public func answer(name: DNSName, type: RRType) -> Answer {
        var answers: [ResourceRecord] = []
        var current = name
        var seen: Set<DNSName> = []
        while true {
            guard let here = records[current] ?? wildcardRecords(for: current) else {
                // The name does not exist. After a CNAME pointing outside the
                // zone the chain is all we know: NOERROR.
                if !answers.isEmpty && !current.isSubdomain(of: origin) {
                    return Answer(rcode: .noError, answers: answers, authorities: [])
                }
                return Answer(rcode: .nxDomain, answers: answers, authorities: [soa])
            }
            let owner = answers.isEmpty ? name : current
            let matching = here.filter { $0.type == type || type == .any }
            if !matching.isEmpty {
                answers += matching.map { var r = $0; r.name = owner; return r }
                return Answer(rcode: .noError, answers: answers, authorities: [])
            }
            if let cname = here.first(where: { $0.type == .cname }), case .cname(let target) = cname.rdata {
                var r = cname
                r.name = owner
                answers.append(r)
                seen.insert(current)
                if seen.contains(target) || seen.count > 16 {
                    return Answer(rcode: .noError, answers: answers, authorities: [])
                }
                current = target
                continue
            }
            return Answer(rcode: .noError, answers: answers, authorities: [soa])
        }
    }

    /// All records, in a stable order.
    public var allRecords: [ResourceRecord] {
        records.keys.sorted { $0.description < $1.description }.flatMap { records[$0]! }
    }

    public var description: String {
        allRecords.map { "\($0.name) \($0.ttl) \($0.type) \(Zone.text(of: $0.rdata))" }.joined(separator: "\n")
    }

    // MARK: - Text <-> RData

    /// RData as the short text a person (and a scenario) writes: "192.168.122.203",
    /// "mail.hat.com", "10 mail.hat.com", "some text".
    public static func text(of rdata: RData) -> String {
        switch rdata {
        case .a(let a): return a.description
        case .aaaa(let a): return a.description
        case .cname(let n), .ns(let n), .ptr(let n): return n.description
        case .mx(let pref, let ex): return "\(pref) \(ex)"
        case .txt(let strings): return strings.map { String(decoding: $0, as: UTF8.self) }.joined()
        case .soa(let s):
            return "\(s.mname) \(s.rname) \(s.serial) \(s.refresh) \(s.retry) \(s.expire) \(s.minimum)"
        case .srv(let s): return "\(s.priority) \(s.weight) \(s.port) \(s.target)"
        case .opt: return "OPT"
        case .unknown(let bytes): return "\\# \(bytes.count)"
        }
    }

    static func record(name: DNSName, nameText: String, entry: Entry, defaultTTL: UInt32) throws -> ResourceRecord {
        let where_ = "zone: \(nameText) \(entry.type) \"\(entry.value)\""
        guard let type = RRType(name: entry.type.uppercased()) else {
            throw ActorError("\(where_): unknown type \"\(entry.type)\"")
        }
        let fields = entry.value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        func dnsName(_ s: String) throws -> DNSName {
            do { return try DNSName(s) } catch { throw ActorError("\(where_): bad name \"\(s)\": \(error)") }
        }
        func number<T: FixedWidthInteger>(_ s: String, _: T.Type) throws -> T {
            guard let v = T(s) else { throw ActorError("\(where_): \"\(s)\" is not a number in range") }
            return v
        }
        func need(_ n: Int, _ shape: String) throws {
            if fields.count != n { throw ActorError("\(where_): expected \(shape)") }
        }
        let rdata: RData
        switch type {
        case .a:
            guard let a = IPv4Address(entry.value.actorTrimmed) else { throw ActorError("\(where_): not an IPv4 address") }
            rdata = .a(a)
        case .aaaa:
            guard let a = IPv6Address(entry.value.actorTrimmed) else { throw ActorError("\(where_): not an IPv6 address") }
            rdata = .aaaa(a)
        case .cname:
            try need(1, "one name"); rdata = .cname(try dnsName(fields[0]))
        case .ns:
            try need(1, "one name"); rdata = .ns(try dnsName(fields[0]))
        case .ptr:
            try need(1, "one name"); rdata = .ptr(try dnsName(fields[0]))
        case .mx:
            if fields.count == 1 {
                rdata = .mx(preference: 10, exchange: try dnsName(fields[0]))
            } else {
                try need(2, "\"preference exchange\"")
                rdata = .mx(preference: try number(fields[0], UInt16.self), exchange: try dnsName(fields[1]))
            }
        case .txt:
            let bytes = Array(entry.value.utf8)
            var chunks: [[UInt8]] = []
            var i = 0
            repeat {
                chunks.append(Array(bytes[i..<min(i + 255, bytes.count)]))
                i += 255
            } while i < bytes.count
            rdata = .txt(chunks)
        case .srv:
            try need(4, "\"priority weight port target\"")
            rdata = .srv(SRV(priority: try number(fields[0], UInt16.self), weight: try number(fields[1], UInt16.self),
                             port: try number(fields[2], UInt16.self), target: try dnsName(fields[3])))
        case .soa:
            try need(7, "\"mname rname serial refresh retry expire minimum\"")
            rdata = .soa(SOA(mname: try dnsName(fields[0]), rname: try dnsName(fields[1]),
                             serial: try number(fields[2], UInt32.self), refresh: try number(fields[3], UInt32.self),
                             retry: try number(fields[4], UInt32.self), expire: try number(fields[5], UInt32.self),
                             minimum: try number(fields[6], UInt32.self)))
        default:
            throw ActorError("\(where_): type \(type) is not supported in zones (A, AAAA, CNAME, NS, PTR, MX, TXT, SRV, SOA)")
        }
        return ResourceRecord(name: name, type: type, klass: 1, ttl: entry.ttl ?? defaultTTL, rdata: rdata)
    }

    /// The longest common suffix (in labels, case-insensitive) of the names.
    static func commonSuffix(_ names: [DNSName]) -> DNSName {
        guard var suffix = names.first?.labels.map({ $0.map(lowerASCII) }) else { return .root }
        for n in names.dropFirst() {
            let labels = n.labels.map { $0.map(lowerASCII) }
            var k = 0
            while k < suffix.count && k < labels.count && suffix[suffix.count - 1 - k] == labels[labels.count - 1 - k] {
                k += 1
            }
            suffix = Array(suffix.suffix(k))
        }
        return (try? DNSName(labels: suffix)) ?? .root
    }
}

private func lowerASCII(_ b: UInt8) -> UInt8 {
    (b >= 65 && b <= 90) ? b + 32 : b
}

extension String {
    var actorTrimmed: String {
        String(self.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}
