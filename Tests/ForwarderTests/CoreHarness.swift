import XCTest
import DNSWire
@testable import Forwarder

/// Drives a ForwarderCore on a virtual clock: no sockets, no real time.
final class CoreHarness {
    let core: ForwarderCore
    var now: UInt64 = 1_000_000_000_000
    var out = [UInt8](repeating: 0, count: 65536)
    var logs: [String] = []
    var replies: [(ClientRef, Message, [UInt8])] = []
    var sends: [(attempt: Int, server: Endpoint, transport: Transport, message: Message)] = []
    var cancels: [Int] = []

    static let serverA = Endpoint(v4: 10, 0, 0, 1, port: 53)
    static let serverB = Endpoint(v4: 10, 0, 0, 2, port: 5353)
    static let serverC = Endpoint(v4: 10, 0, 0, 3, port: 53)

    init(servers: [Endpoint] = [CoreHarness.serverA], configure: (inout ForwarderCore.Config) -> Void = { _ in }) {
        var cfg = ForwarderCore.Config()
        cfg.servers = servers.map { ServerSpec(endpoint: $0) }
        cfg.logQueries = true
        cfg.seed = 12345
        configure(&cfg)
        core = ForwarderCore(config: cfg)
    }

    static func client(_ last: UInt8 = 10, port: UInt16 = 40000, transport: Transport = .udp) -> ClientRef {
        ClientRef(transport: transport, peer: Endpoint(v4: 127, 0, 0, last, port: port),
                  local: Endpoint(v4: 127, 0, 0, 1, port: 0), ifindex: 1, handle: 0)
    }

    static func query(_ name: String, _ type: RRType = .a, id: UInt16 = 0x1234, edns: EDNS? = nil) -> [UInt8] {
        Message.query(id: id, name: try! DNSName(name), type: type, edns: edns).encode()
    }

    /// Sends raw bytes as a query; returns the immediate reply bytes, if any.
    @discardableResult
    func ask(_ bytes: [UInt8], from client: ClientRef = CoreHarness.client()) -> [UInt8]? {
        let n = bytes.withUnsafeBytes { b in
            out.withUnsafeMutableBytes { o in core.handleQuery(b, from: client, now: now, replyInto: o) }
        }
        drain()
        return n > 0 ? Array(out[0..<n]) : nil
    }

    func ask(_ name: String, _ type: RRType = .a, id: UInt16 = 0x1234, from client: ClientRef = CoreHarness.client(), edns: EDNS? = nil) -> Message? {
        guard let r = ask(CoreHarness.query(name, type, id: id, edns: edns), from: client) else { return nil }
        return try! Message(decoding: r)
    }

    func drain() {
        for a in core.takeActions() {
            switch a {
            case .log(let s): logs.append(s)
            case .reply(let c, let b): replies.append((c, (try? Message(decoding: b)) ?? Message(), b))
            case .send(let aid, let server, let transport, let bytes):
                sends.append((aid, server, transport, (try? Message(decoding: bytes)) ?? Message()))
            case .cancel(let aid): cancels.append(aid)
            }
        }
    }

    func advance(ms: UInt64) {
        now += ms * 1_000_000
        core.handleTimers(now: now)
        drain()
    }

    /// Advances to each deadline in turn until `until` ms have passed.
    func run(forMs total: UInt64) {
        let end = now + total * 1_000_000
        while let d = core.nextDeadline(), d <= end {
            now = max(now, d)
            core.handleTimers(now: now)
            drain()
        }
        now = end
    }

    /// Builds an upstream reply to send number `i`.
    func reply(to i: Int, rcode: RCode = .noError, answers: [ResourceRecord] = [], authorities: [ResourceRecord] = [],
               edit: (inout Message) -> Void = { _ in }) -> [UInt8] {
        var m = Message.reply(to: sends[i].message, rcode: rcode)
        m.answers = answers
        m.authorities = authorities
        edit(&m)
        return m.encode()
    }

    func deliver(_ bytes: [UInt8], attempt: Int, from: Endpoint, afterMs: UInt64 = 5) {
        now += afterMs * 1_000_000
        bytes.withUnsafeBytes { core.handleUpstreamReply(attempt: attempt, bytes: $0, from: from, now: now) }
        drain()
    }

    func answer(_ i: Int, rcode: RCode = .noError, answers: [ResourceRecord] = [], authorities: [ResourceRecord] = [], afterMs: UInt64 = 5) {
        deliver(reply(to: i, rcode: rcode, answers: answers, authorities: authorities), attempt: sends[i].attempt, from: sends[i].server, afterMs: afterMs)
    }

    static func a(_ name: String, _ ip: String, ttl: UInt32 = 300) -> ResourceRecord {
        ResourceRecord(name: try! DNSName(name), ttl: ttl, rdata: .a(IPv4Address(ip)!))
    }

    static func soa(_ zone: String, ttl: UInt32, minimum: UInt32) -> ResourceRecord {
        ResourceRecord(name: try! DNSName(zone), ttl: ttl,
                       rdata: .soa(SOA(mname: try! DNSName("ns.\(zone)"), rname: try! DNSName("host.\(zone)"),
                                       serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: minimum)))
    }
}
