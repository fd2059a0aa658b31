// Actors overview (kept as a comment so the target has no unhandled files).
//
// # The test-bed's DNS actors
//
// Fake upstreams, clients, steady load and the legacy stub: everything in a
// scenario that speaks DNS and is not the subject under test. They never create
// namespaces: each takes a `SocketFactory`, so the runner makes their sockets
// inside a host (`{ try host.socket(domain: $0, type: $1, protocol: $2) }`) and
// tests use `loopbackSocketFactory` on 127.0.0.x.
//
// ```swift
// SimClock.setEpoch()                                 // t = 0 for every record
// let zone = try Zone(["hat.com": [.init("A", "192.168.122.203", ttl: 60)]])
// let a = try FakeUpstream(name: "A", address: "10.0.0.53", port: 53, zone: zone,
//                          socketFactory: factory)  // UDP + TCP, own thread
// a.setBehaviour(.truncate(tcp: .reset))             // any time, any thread
// a.setBehaviour(try UpstreamBehaviour(parsing: "delay 3s"))
// a.setScript([BehaviourWindow(from: 5, .silent), BehaviourWindow(from: 10, .answer)])
// let r = QueryClient(transport: .udpConnected, timeout: 1, socketFactory: factory)
//     .query("hat.com", type: "A", server: a.endpoint)
// r.answers; r.rcode; r.replySource; r.latency; r.error   // .timeout, .refusedByICMP, ...
// a.queries.wait(timeout: 5) { $0.contains { $0.name == "hat.com" && $0.transport == .tcp } }
// a.icmpErrors.first(timeout: 5) { $0.isPortUnreachable }   // naive mode's symptom
// let load = try LoadGenerator(names: ["hat.com"], server: a.endpoint, rate: 50, duration: 4,
//                              client: QueryClient(timeout: 1, socketFactory: factory), concurrency: 50)
// try load.start(); load.wait(timeout: 20); load.summary   // "200/200 sent, 200 NOERROR, ..."
// let stub = try LegacyStub(resolvConf: path, name: "hat.com", interval: 1, socketFactory: factory)
// try stub.start(); stub.lookups.wait(forCount: 3, timeout: 10); stub.stop()
// a.stop()                                           // closes every socket: do it before host teardown
// ```
//
// Facts worth knowing:
//
// - Every record is stamped with `SimClock.now()` (monotonic seconds since the
//   epoch the runner sets), so upstream logs, client results and the runner's
//   timeline share one axis.
// - An upstream logs a query *before* it replies: once a client has the reply,
//   the query is in `queries`. `EventLog.wait(timeout:where:)` waits on a
//   condition variable; nothing polls or sleeps.
// - Naive mode binds UDP (and TCP) to 0.0.0.0 / :: and replies with
//   recvfrom/sendto: the kernel picks the source by route. Even on loopback a
//   query to 127.0.0.3 is answered from 127.0.0.1, and a connected client times
//   out. The upstream's UDP socket has IP_RECVERR on (it changes reporting
//   only), so the port unreachable that comes back is in `icmpErrors`.
// - `.fromOtherAddress(ip)` sets the reply's source with IP_PKTINFO /
//   IPV6_PKTINFO; the address must be local to the upstream's host.
// - The client ignores replies whose ID or question does not match (counted in
//   `mismatchedReplies`) and keeps waiting, as a stub does; bytes with the right
//   ID that do not decode are `.malformed`.
// - LoadGenerator: `concurrency` workers; to keep the schedule while an
//   upstream swallows queries, use concurrency >= rate x timeout x attempts
//   (`summary.maxLag` shows any slip). Bounded: rate <= 5000/s, duration
//   <= 1 h, at most 100 000 queries.
// - Long benchmarks: `FakeUpstream(recordQueries: false)` keeps only `queryCount`.
//
// Hostile actors (issue 9):
//
// - `RawSpoofer`: forged replies from a raw IPv4 socket (IP_HDRINCL): the
//   upstream's address and port as source, the right question, random ID,
//   guessed port, poisoned answer; bounded by count, rate and duration.
// - `MalformedPackets.catalog` (named broken datagrams) and
//   `MalformedPackets.flood(target:rate:count:)`.
// - `TCPIdlers(target:connections:)`: a slowloris of N idle connections (half a
//   length prefix sent); `status`, `closures` (when the server shed each one).
// - All bounded (count / connections caps) and stopped by `stop()` or deinit.
