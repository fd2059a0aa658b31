// forwarder-bench: feeds queries and upstream replies straight into ForwarderCore
// (no sockets, no kernel) and prints nanoseconds per cache hit and per cache miss.
// This separates the core's own cost (codec, cache, bookkeeping) from system calls.
// A benchmark, not a test: figures vary with the machine and its load.
//
//   swift build -c release --product forwarder-bench && .build/release/forwarder-bench [--hits N] [--misses N] [--names N]
#if canImport(Glibc)
import Glibc
#endif
import DNSWire
import Forwarder

func nowNS() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func cpuNS() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

var hitsN = 2_000_000, missesN = 200_000, namesN = 1000
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    guard let v = args.popFirst(), let n = Int(v), n > 0 else {
        FileHandleless.fail("usage: forwarder-bench [--hits N] [--misses N] [--names N] (\(a) needs a positive number)")
    }
    switch a {
    case "--hits": hitsN = n
    case "--misses": missesN = n
    case "--names": namesN = n
    default: FileHandleless.fail("forwarder-bench: unknown option \(a)")
    }
}

enum FileHandleless {
    static func fail(_ s: String) -> Never {
        fputs(s + "\n", stderr)
        exit(2)
    }
}

let server = Endpoint(v4: 10, 0, 0, 1, port: 53)
let client = ClientRef(transport: .udp, peer: Endpoint(v4: 127, 0, 0, 10, port: 40000),
                       local: Endpoint(v4: 127, 0, 0, 1, port: 0), ifindex: 1, handle: 0)

func makeCore(cacheSize: Int) -> ForwarderCore {
    var cfg = ForwarderCore.Config()
    cfg.servers = [ServerSpec(endpoint: server)]
    cfg.cacheSize = cacheSize
    cfg.forwardMax = 1 << 20
    cfg.seed = 12345
    return ForwarderCore(config: cfg)
}

func query(_ name: String, id: UInt16) -> [UInt8] {
    Message.query(id: id, name: try! DNSName(name), type: .a, edns: nil).encode()
}

/// The upstream's reply to `sent` (a query): QR set, one A record 192.0.2.1, TTL 300.
func answer(_ sent: [UInt8], into r: inout [UInt8]) {
    r.removeAll(keepingCapacity: true)
    r.append(contentsOf: sent)
    r[2] |= 0x80; r[3] = 0x80
    r[6] = 0; r[7] = 1
    r.append(contentsOf: [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0x01, 0x2C, 0, 4, 192, 0, 2, 1])
}

var out = [UInt8](repeating: 0, count: 4096)
var replyBuf = [UInt8](); replyBuf.reserveCapacity(512)
var clock: UInt64 = 1_000_000_000_000

/// One miss, all the way: query in, send out, reply in, reply to the client out.
@inline(never) func roundTrip(_ core: ForwarderCore, _ q: [UInt8]) -> Int {
    let n = q.withUnsafeBytes { b in out.withUnsafeMutableBytes { core.handleQuery(b, from: client, now: clock, replyInto: $0) } }
    if n > 0 { return n }
    var delivered = 0
    for a in core.takeActions() {
        if case .send(let aid, let ep, _, let bytes) = a {
            answer(bytes, into: &replyBuf)
            replyBuf.withUnsafeBytes { core.handleUpstreamReply(attempt: aid, bytes: $0, from: ep, now: clock) }
        }
    }
    for a in core.takeActions() { if case .reply(_, let r) = a { delivered += r.count } }
    return delivered
}

// Hits: namesN names cached, then hitsN queries over them (IDs vary).
let hitCore = makeCore(cacheSize: 10 * namesN)
let names = (0..<namesN).map { "host\($0).example.test" }
var hitQueries = names.map { query($0, id: 1) }
for q in hitQueries { _ = roundTrip(hitCore, q) }
guard hitCore.cacheCount == namesN else { FileHandleless.fail("warm-up cached \(hitCore.cacheCount) of \(namesN) names") }
var sink = 0
let h0 = nowNS(), hc0 = cpuNS()
for i in 0..<hitsN {
    let k = i % namesN
    hitQueries[k][0] = UInt8(truncatingIfNeeded: i >> 8); hitQueries[k][1] = UInt8(truncatingIfNeeded: i)
    sink &+= hitQueries[k].withUnsafeBytes { b in out.withUnsafeMutableBytes { hitCore.handleQuery(b, from: client, now: clock, replyInto: $0) } }
}
let h1 = nowNS(), hc1 = cpuNS()
guard hitCore.cacheHits >= hitsN else { FileHandleless.fail("only \(hitCore.cacheHits) hits of \(hitsN)") }

// Misses: missesN unique names, each query -> send -> upstream reply -> client reply.
let missCore = makeCore(cacheSize: missesN + 1000)
let missQueries = (0..<missesN).map { query("miss\($0).example.test", id: UInt16(truncatingIfNeeded: $0)) }
let m0 = nowNS(), mc0 = cpuNS()
for q in missQueries { sink &+= roundTrip(missCore, q) }
let m1 = nowNS(), mc1 = cpuNS()
guard missCore.cacheCount == missesN, missCore.inFlight == 0 else {
    FileHandleless.fail("misses: cached \(missCore.cacheCount) of \(missesN), \(missCore.inFlight) still in flight")
}

func per(_ a: UInt64, _ b: UInt64, _ n: Int) -> String {
    let v = Double(b - a) / Double(n)
    return v < 100 ? String(Int((v * 10).rounded()) / 10) + "." + String(Int((v * 10).rounded()) % 10) : String(Int(v.rounded()))
}
print("forwarder-bench: ForwarderCore only, no sockets (\(names.count) cached names)")
print("  hit : \(per(h0, h1, hitsN)) ns/query wall, \(per(hc0, hc1, hitsN)) ns CPU  (\(hitsN) queries)")
print("  miss: \(per(m0, m1, missesN)) ns/query wall, \(per(mc0, mc1, missesN)) ns CPU  (\(missesN) queries: query, send, reply, cache insert, client reply)")
if sink == 42 { print("") }
