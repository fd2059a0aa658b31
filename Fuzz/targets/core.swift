// libFuzzer target for the forwarder's sans-IO core (Sources/Forwarder/ForwarderCore.swift):
// the code that reads untrusted packets from clients AND from upstreams (parse, anti-spoofing
// checks, reply scan, cache insert and cache answers, logging of answers).
// Built by ci/fuzz against the Forwarder module from a sanitized `swift build`.
//
// Input: CTL LEN_HI LEN_LO QUERY[LEN] REPLY[rest]
//   CTL bit 0: the client came over TCP; bit 1: --log-queries (formats names and answers);
//   bit 2: give the reply the upstream query's ID; bit 3: give it the upstream query's
//   question (so it passes the anti-spoofing checks and reaches the reply scan and the cache);
//   bit 4: --no-negcache; bit 5: cache size 0; bit 6: --dns-0x20 (with bit 3 the reply
//   carries the sent question, random case included, so it passes the case check).
// The query goes in; every upstream send gets REPLY (also the TCP retry); the same query is
// asked again (cache path); then all timers run out.
// Checked: no crash, hang or runaway allocation; at the end nothing is in flight.
import Forwarder

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCore(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 3 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let ctl = input[0]
    let qlen = min(Int(input[1]) << 8 | Int(input[2]), size - 3)
    let query = Array(input[3..<(3 + qlen)])
    let reply = Array(input[(3 + qlen)...])

    var config = ForwarderCore.Config()
    let server = Endpoint(v4: 10, 0, 0, 53, port: 53)
    config.servers = [ServerSpec(endpoint: server)]
    config.logQueries = ctl & 2 != 0
    config.negativeCache = ctl & 16 == 0
    config.cacheSize = ctl & 32 != 0 ? 0 : 150
    config.caseRandomization = ctl & 64 != 0
    config.seed = 1
    let core = ForwarderCore(config: config)
    let client = ClientRef(transport: ctl & 1 != 0 ? .tcp : .udp, peer: Endpoint(v4: 127, 0, 0, 1, port: 40000),
                           local: Endpoint(v4: 127, 0, 0, 1, port: 53), ifindex: 1, handle: 0)
    var out = [UInt8](repeating: 0, count: 65535)
    var now: UInt64 = 1_000_000_000

    func ask() {
        _ = query.withUnsafeBytes { q in out.withUnsafeMutableBytes { o in core.handleQuery(q, from: client, now: now, replyInto: o) } }
    }
    func answerSends() {
        // A few rounds: a truncated UDP reply makes the core retry over TCP.
        for _ in 0..<4 {
            var sends: [(Int, [UInt8])] = []
            for a in core.takeActions() {
                if case .send(let aid, _, _, let bytes) = a { sends.append((aid, bytes)) }
            }
            if sends.isEmpty { return }
            for (aid, sent) in sends {
                var r = reply
                if ctl & 4 != 0, r.count >= 2, sent.count >= 2 { r[0] = sent[0]; r[1] = sent[1] }
                if ctl & 8 != 0, sent.count > 12, r.count >= 12 {
                    // Replace the reply's question by the one sent (its name, type and class).
                    var end = 12
                    while end < sent.count, sent[end] != 0 { end += Int(sent[end]) + 1 }
                    end = min(end + 5, sent.count)
                    var qdEnd = 12
                    while qdEnd < r.count, r[qdEnd] != 0, r[qdEnd] & 0xC0 == 0 { qdEnd += Int(r[qdEnd]) + 1 }
                    qdEnd = min(qdEnd + 5, r.count)
                    r.replaceSubrange(12..<qdEnd, with: sent[12..<end])
                    r[4] = 0; r[5] = 1
                }
                now += 1_000_000
                r.withUnsafeBytes { core.handleUpstreamReply(attempt: aid, bytes: $0, from: server, now: now) }
            }
        }
    }

    ask()
    answerSends()
    now += 1_000_000
    ask()
    answerSends()
    for _ in 0..<16 {   // every deadline passes; new attempts get no reply
        now += 10_000_000_000
        core.handleTimers(now: now)
        _ = core.takeActions()
    }
    precondition(core.inFlight == 0, "\(core.inFlight) queries still in flight after every deadline passed")
    _ = core.statisticsLines()
    return 0
}
