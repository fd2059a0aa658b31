import DNSWire

/// The transport a query arrived on.
public enum DNSTransport: String, Hashable, Sendable {
    case udp, tcp
}

/// What a fake upstream does with one query: the pure part, no sockets.
struct UpstreamReply {
    enum Action: Equatable {
        /// Send nothing (UDP silence).
        case none
        case send([UInt8])
        /// TCP: close with RST.
        case reset
        /// TCP: keep the connection open, never reply.
        case hang
    }

    var action: Action
    /// Seconds to wait before acting.
    var delay: Double = 0
    /// UDP: send from this address instead of the listening one.
    var source: String?
    /// For the query log: what was done.
    var outcome: String
}

enum Responder {
    /// Decodes `bytes` and decides the reply under `behaviour`.
    /// Returns nil for the message when the query could not be decoded.
    static func respond(to bytes: [UInt8], behaviour: UpstreamBehaviour, zone: Zone,
                        transport: DNSTransport) -> (query: Message?, reply: UpstreamReply) {
        let query: Message
        do {
            query = try Message(decoding: bytes)
        } catch {
            return (nil, UpstreamReply(action: transport == .tcp ? .reset : .none,
                                       outcome: "malformed query (\(error)), dropped"))
        }
        guard !query.header.isResponse, let question = query.questions.first else {
            var r = Message.reply(to: query, rcode: .formErr)
            r.edns = nil
            return (query, UpstreamReply(action: .send(r.encode()), outcome: "FORMERR (no question or not a query)"))
        }
        let maxSize = transport == .tcp ? 65535 : max(512, min(Int(query.edns?.udpSize ?? 512), 4096))

        func zoneReply() -> Message {
            var r = Message.reply(to: query, rcode: .noError)
            let a = zone.answer(name: question.name, type: question.type)
            r.rcode = a.rcode
            r.answers = a.answers
            r.authorities = a.authorities
            r.header.authoritative = true
            r.header.recursionAvailable = true
            r.edns = replyEDNS(query)
            return r
        }
        func encoded(_ m: Message, _ what: String) -> UpstreamReply {
            let (bytes, tc) = m.encode(maxSize: maxSize)
            return UpstreamReply(action: .send(bytes), outcome: what + (tc ? " (truncated to \(maxSize) bytes)" : ""))
        }
        func answered(_ m: Message) -> String {
            "answered \(m.rcode) with \(m.answers.count) record\(m.answers.count == 1 ? "" : "s")"
        }
        func rcodeOnly(_ rcode: RCode) -> UpstreamReply {
            var r = Message.reply(to: query, rcode: rcode)
            r.header.recursionAvailable = true
            r.edns = replyEDNS(query)
            return encoded(r, "\(rcode)")
        }

        switch behaviour {
        case .answer:
            let r = zoneReply()
            return (query, encoded(r, answered(r)))
        case .delay(let ms):
            let r = zoneReply()
            var reply = encoded(r, answered(r) + " after \(ms) ms")
            reply.delay = Double(ms) / 1000
            return (query, reply)
        case .silent:
            return (query, UpstreamReply(action: transport == .tcp ? .hang : .none, outcome: "silent"))
        case .refused:
            return (query, rcodeOnly(.refused))
        case .servfail:
            return (query, rcodeOnly(.servFail))
        case .nxdomain:
            return (query, rcodeOnly(.nxDomain))
        case .truncate(let mode):
            if transport == .udp {
                var r = Message.reply(to: query, rcode: .noError)
                r.header.truncated = true
                r.header.recursionAvailable = true
                r.edns = replyEDNS(query)
                return (query, UpstreamReply(action: .send(r.encode()), outcome: "truncated (TC, no records)"))
            }
            switch mode {
            case .answer:
                let r = zoneReply()
                return (query, encoded(r, answered(r)))
            case .reset:
                return (query, UpstreamReply(action: .reset, outcome: "TCP reset"))
            case .hang:
                return (query, UpstreamReply(action: .hang, outcome: "TCP hang"))
            }
        case .wrongID:
            var r = zoneReply()
            r.header.id = query.header.id ^ 0x5A5A
            return (query, encoded(r, "answered with wrong id \(r.header.id)"))
        case .wrongQuestion:
            var r = zoneReply()
            if let wrong = try? DNSName(labels: [Array("wrong-question".utf8)] + question.name.labels) {
                r.questions[0].name = wrong
            } else {
                // The name is too long to prefix: change the type instead.
                r.questions[0].type = question.type == .a ? .aaaa : .a
            }
            return (query, encoded(r, "answered with wrong question \(r.questions[0].name) \(r.questions[0].type)"))
        case .lowercaseQuestion:
            var r = zoneReply()
            r.questions[0].name = question.name.lowercased()
            return (query, encoded(r, answered(r) + " (question in lower case)"))
        case .garbage:
            return (query, UpstreamReply(action: .send(garbage(id: query.header.id)), outcome: "garbage bytes"))
        case .fromOtherAddress(let ip):
            let r = zoneReply()
            var reply = encoded(r, answered(r) + (transport == .udp ? " from \(ip)" : ""))
            if transport == .udp { reply.source = ip }
            return (query, reply)
        }
    }

    /// An OPT for the reply when the query had one.
    static func replyEDNS(_ query: Message) -> EDNS? {
        guard var e = query.edns else { return nil }
        e.udpSize = 1232
        e.extendedRCode = 0
        e.version = 0
        e.dnssecOK = false
        e.options = []
        return e
    }

    /// The query's ID, response flags, absurd section counts, then bad
    /// compression pointers: no decoder can accept it.
    static func garbage(id: UInt16) -> [UInt8] {
        var b: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        for i in 0..<12 { b += [0xC0 | UInt8(i & 0x3f), 0xFF] }
        return b
    }
}
