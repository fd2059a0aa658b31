import DNSWire
import Foundation

/// What the runner needs to know of one client query.
struct QueryOutcome {
    var name: String
    var start: Double
    var latency: Double
    /// "NOERROR", "NXDOMAIN", ... (nil when there was no reply).
    var rcode: String?
    var answers: [String]
    var replySource: String?
    var truncated: Bool
    /// "timeout", "connection-refused", "connection-reset", or another failure text.
    var error: String?

    var summary: String {
        let ms = String(format: "%.1f ms", latency * 1000)
        if let e = error { return "\(e) after \(ms)" }
        var s = rcode ?? "?"
        if !answers.isEmpty { s += " " + answers.joined(separator: ", ") }
        if truncated { s += " (TC)" }
        if let src = replySource { s += " from \(src)" }
        return s + " in \(ms)"
    }
}

struct StubObservation {
    var time: Double
    var server: String
    var answers: [String]
    var error: String?
}

/// Translates scenario specs into the test-bed's actors (fake upstreams,
/// clients, load, legacy stub) and their results back into runner terms.
enum ActorBridge {
    static func behaviour(_ b: BehaviourSpec) -> UpstreamBehaviour {
        switch b {
        case .answer: return .answer
        case .delay(let s): return .delay(ms: Int((s * 1000).rounded()))
        case .silent: return .silent
        case .refused: return .refused
        case .servfail: return .servfail
        case .nxdomain: return .nxdomain
        case .truncate(let tcp): return .truncate(tcp: UpstreamBehaviour.TCPMode(rawValue: tcp) ?? .answer)
        case .wrongID: return .wrongID
        case .wrongQuestion: return .wrongQuestion
        case .lowercaseQuestion: return .lowercaseQuestion
        case .garbage: return .garbage
        case .fromOtherAddress(let ip): return .fromOtherAddress(ip)
        }
    }

    static func makeUpstream(_ u: UpstreamSpec, factory: @escaping SocketFactory) throws -> FakeUpstream {
        var entries: [String: [Zone.Entry]] = [:]
        for e in u.zone { entries[e.name, default: []].append(Zone.Entry(e.type, e.value, ttl: e.ttl)) }
        let zone = try Zone(entries, origin: u.soa)
        return try FakeUpstream(name: u.name, address: u.address, port: UInt16(u.port), zone: zone,
                                behaviour: behaviour(u.behaviour), naive: u.naive, tcp: u.tcp, socketFactory: factory)
    }

    static func client(transport: String, timeout: Double, attempts: Int, source: String?,
                       factory: @escaping SocketFactory) -> QueryClient {
        let t: QueryClient.Transport
        switch transport {
        case "tcp": t = .tcp
        case "udp-unconnected": t = .udpUnconnected
        default: t = .udpConnected
        }
        return QueryClient(transport: t, timeout: timeout, attempts: max(1, attempts), source: source, socketFactory: factory)
    }

    static func outcome(_ r: QueryResult) -> QueryOutcome {
        var error: String?
        if let e = r.error {
            switch e {
            case .timeout: error = "timeout"
            case .refusedByICMP, .connectionRefused: error = "connection-refused"
            case .connectionReset: error = "connection-reset"
            default: error = e.description
            }
        }
        return QueryOutcome(name: r.name, start: r.startTime, latency: r.latency, rcode: r.rcode.map(\.description),
                            answers: r.answers, replySource: r.replySource?.ip, truncated: r.truncated, error: error)
    }

    static func query(_ q: QuerySpec, factory: @escaping SocketFactory) -> QueryOutcome {
        let c = client(transport: q.transport, timeout: q.timeout, attempts: q.attempts, source: q.source, factory: factory)
        guard let server = try? Endpoint(ip: q.to, port: UInt16(q.port)) else {
            return QueryOutcome(name: q.name, start: SimClock.now(), latency: 0, rcode: nil, answers: [], replySource: nil,
                                truncated: false, error: "bad server address \(q.to)")
        }
        return outcome(c.query(q.name, type: q.type, server: server))
    }

    /// Runs the load to its end (bounded by its own rate x duration) and returns every result.
    static func load(_ l: LoadSpec, factory: @escaping SocketFactory) -> [QueryOutcome] {
        let planned = Int((l.rate * l.duration).rounded(.down))
        var names: [String] = []
        for pattern in l.names {
            if pattern.contains("{i}") {
                names += (0..<planned).map { pattern.replacingOccurrences(of: "{i}", with: String($0)) }
            } else {
                names.append(pattern)
            }
        }
        let c = client(transport: "udp", timeout: l.timeout, attempts: 1, source: nil, factory: factory)
        do {
            let gen = try LoadGenerator(names: names, type: l.type, server: try Endpoint(ip: l.to, port: UInt16(l.port)),
                                        rate: l.rate, duration: l.duration, client: c,
                                        concurrency: min(256, max(4, Int(l.rate * l.timeout) + 1)))
            try gen.start()
            _ = gen.wait(timeout: l.duration + l.timeout + 10)
            gen.stop()
            return gen.samples.snapshot().map { outcome($0.result) }
        } catch {
            return [QueryOutcome(name: "load", start: SimClock.now(), latency: 0, rcode: nil, answers: [], replySource: nil,
                                 truncated: false, error: "load could not start: \(error)")]
        }
    }

    static func summarize(_ outcomes: [QueryOutcome]) -> String {
        guard !outcomes.isEmpty else { return "no queries" }
        let lat = outcomes.filter { $0.error == nil }.map(\.latency).sorted()
        func pct(_ p: Double) -> String {
            guard !lat.isEmpty else { return "-" }
            return String(format: "%.1f ms", lat[min(lat.count - 1, Int(Double(lat.count - 1) * p))] * 1000)
        }
        var byKind: [String: Int] = [:]
        for o in outcomes { byKind[o.error ?? o.rcode ?? "?", default: 0] += 1 }
        let kinds = byKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return "\(outcomes.count) queries (\(kinds)); latency p50 \(pct(0.5)), p90 \(pct(0.9)), max \(pct(1.0))"
    }

    static func startStub(_ s: StubSpec, resolvPath: String, factory: @escaping SocketFactory) throws -> LegacyStub {
        let stub = try LegacyStub(resolvConf: resolvPath, name: s.name, interval: s.interval, timeout: s.timeout,
                                  socketFactory: factory)
        try stub.start()
        return stub
    }

    static func stopStub(_ s: LegacyStub) { s.stop() }

    static func stubObservations(_ s: LegacyStub) -> [StubObservation] {
        s.lookups.snapshot().map { l in
            let o = outcome(l.result)
            return StubObservation(time: l.time, server: l.server.ip, answers: o.answers, error: o.error)
        }
    }
}
