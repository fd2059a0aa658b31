/// How a fake upstream treats the queries it gets. A scenario switches it per
/// step or time window with `FakeUpstream.setBehaviour(_:)`.
public enum UpstreamBehaviour: Hashable, Sendable, CustomStringConvertible {
    /// What the TCP side does while UDP answers are truncated.
    public enum TCPMode: String, Hashable, Sendable {
        case answer, reset, hang
    }

    /// Answer from the zone.
    case answer
    /// Answer from the zone after `ms` milliseconds (other queries are not held up).
    case delay(ms: Int)
    /// Read the query, never reply (TCP: keep the connection open, silent).
    case silent
    /// Reply REFUSED / SERVFAIL / NXDOMAIN (question copied, no records).
    case refused, servfail, nxdomain
    /// UDP: reply with TC set and no records. TCP: answer, reset the
    /// connection (RST), or hang (never reply, keep it open).
    case truncate(tcp: TCPMode)
    /// The zone's answer with a different message ID.
    case wrongID
    /// The zone's answer with a different question name.
    case wrongQuestion
    /// The zone's answer with the question name in lower case (an upstream that does not
    /// keep the letter case of the query, which breaks DNS 0x20).
    case lowercaseQuestion
    /// Bytes that are not a DNS message (they begin with the query's ID, so a
    /// forwarder that matches IDs must still reject them on parsing).
    case garbage
    /// UDP: the zone's answer sent from another local address of the same
    /// family (IP_PKTINFO / IPV6_PKTINFO). TCP: answers normally.
    case fromOtherAddress(String)

    public var description: String {
        switch self {
        case .answer: return "answer"
        case .delay(let ms): return "delay \(ms)"
        case .silent: return "silent"
        case .refused: return "refused"
        case .servfail: return "servfail"
        case .nxdomain: return "nxdomain"
        case .truncate(let mode): return "truncate tcp=\(mode.rawValue)"
        case .wrongID: return "wrong-id"
        case .wrongQuestion: return "wrong-question"
        case .lowercaseQuestion: return "lowercase-question"
        case .garbage: return "garbage"
        case .fromOtherAddress(let ip): return "from-other-address \(ip)"
        }
    }

    /// Parses the text form (the inverse of `description`), for scenario files:
    /// "answer", "delay 3000" (or "delay 3000ms", "delay 3s"), "silent", "refused",
    /// "servfail", "nxdomain", "truncate" (tcp=answer), "truncate tcp=reset|hang|answer",
    /// "wrong-id", "wrong-question", "garbage", "from-other-address 127.0.0.2".
    /// Underscores, camelCase and "truncate reset" are accepted too.
    public init(parsing text: String) throws {
        // Words split on blanks, parentheses and commas; "delay:" -> "delay"; the
        // filler words of the Swift spelling ("truncate(tcp: reset)", "delay(ms: 300)") dropped.
        // ":" is not a separator: IPv6 addresses contain it.
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "(" || $0 == ")" || $0 == "," })
            .map { w -> String in
                if w.hasSuffix(":") && !w.hasSuffix("::") && w.dropLast().allSatisfy({ $0.isLetter || $0 == "-" || $0 == "_" }) {
                    return String(w.dropLast())
                }
                return String(w)
            }
            .filter { $0.lowercased() != "tcp" && $0.lowercased() != "ms" }
        guard let head = words.first else {
            throw ActorError("upstream behaviour: empty")
        }
        let key = head.lowercased().replacingActorChars()
        let rest = Array(words.dropFirst())
        func noArgs(_ b: UpstreamBehaviour) throws -> UpstreamBehaviour {
            guard rest.isEmpty else { throw ActorError("upstream behaviour \"\(text)\": \(head) takes no argument") }
            return b
        }
        switch key {
        case "answer", "ok", "healthy": self = try noArgs(.answer)
        case "silent", "drop": self = try noArgs(.silent)
        case "refused": self = try noArgs(.refused)
        case "servfail": self = try noArgs(.servfail)
        case "nxdomain": self = try noArgs(.nxdomain)
        case "wrongid": self = try noArgs(.wrongID)
        case "wrongquestion": self = try noArgs(.wrongQuestion)
        case "lowercasequestion": self = try noArgs(.lowercaseQuestion)
        case "garbage": self = try noArgs(.garbage)
        case "delay", "slow":
            guard rest.count == 1, let ms = UpstreamBehaviour.milliseconds(rest[0]) else {
                throw ActorError("upstream behaviour \"\(text)\": expected \"delay <ms>\" (e.g. delay 3000, delay 3s)")
            }
            self = .delay(ms: ms)
        case "truncate", "tc":
            var mode = TCPMode.answer
            if rest.count == 1 {
                let m = rest[0].lowercased().replacingOccurrencesOfTCP()
                guard let parsed = TCPMode(rawValue: m) else {
                    throw ActorError("upstream behaviour \"\(text)\": TCP side must be answer, reset or hang")
                }
                mode = parsed
            } else if rest.count > 1 {
                throw ActorError("upstream behaviour \"\(text)\": expected \"truncate tcp=answer|reset|hang\"")
            }
            self = .truncate(tcp: mode)
        case "fromotheraddress", "fromaddress", "otheraddress":
            guard rest.count == 1 else {
                throw ActorError("upstream behaviour \"\(text)\": expected \"from-other-address <ip>\"")
            }
            guard (try? Endpoint(ip: rest[0], port: 0)) != nil else {
                throw ActorError("upstream behaviour \"\(text)\": \"\(rest[0])\" is not an IP address")
            }
            self = .fromOtherAddress(rest[0])
        default:
            throw ActorError("upstream behaviour \"\(text)\": unknown; expected one of answer, delay <ms>, silent, refused, servfail, nxdomain, truncate tcp=answer|reset|hang, wrong-id, wrong-question, lowercase-question, garbage, from-other-address <ip>")
        }
    }

    private static func milliseconds(_ s: String) -> Int? {
        let t = s.lowercased()
        if t.hasSuffix("ms"), let v = Int(t.dropLast(2)), v >= 0 { return v }
        if t.hasSuffix("s"), let v = Double(t.dropLast()), v >= 0, v < 1e6 { return Int((v * 1000).rounded()) }
        if let v = Int(t), v >= 0 { return v }
        return nil
    }
}

private extension String {
    /// "wrong-id", "wrong_id", "wrongId" -> "wrongid"
    func replacingActorChars() -> String {
        String(self.filter { $0 != "-" && $0 != "_" })
    }

    /// "tcp=reset" -> "reset"
    func replacingOccurrencesOfTCP() -> String {
        hasPrefix("tcp=") ? String(dropFirst(4)) : self
    }
}
