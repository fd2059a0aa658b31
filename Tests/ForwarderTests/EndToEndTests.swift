import XCTest
import Foundation
import DNSWire
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `forwarder` binary against a fake upstream, all on loopback.
final class EndToEndTests: XCTestCase {
    var upstream: FakeUpstream!
    var fwd: ForwarderProcess!

    func start(_ extra: [String] = [], listen: [String] = ["--listen-address=127.0.0.1"]) throws {
        upstream = try XCTUnwrap(FakeUpstream(ip: "127.0.0.1"))
        let port = Sock.freePort()
        fwd = try ForwarderProcess(arguments: ["--no-resolv", "--no-hosts", "--server=127.0.0.1#\(upstream.port)",
                                               "--port=\(port)", "--log-queries"] + listen + extra, port: port)
        XCTAssertTrue(fwd.waitReady(), "forwarder did not answer: \(fwd.log)")
    }

    override func tearDown() {
        if let f = fwd { f.stop() }
        upstream?.stop()
        fwd = nil; upstream = nil
    }

    func q(_ name: String, _ type: RRType = .a, id: UInt16 = 0x5151, edns: EDNS? = nil) -> [UInt8] {
        Message.query(id: id, name: try! DNSName(name), type: type, edns: edns).encode()
    }

    func testForwardsOverUDPAndTCPAndCaches() throws {
        try start()
        let r = try Message(decoding: try XCTUnwrap(Sock.udpQuery(q("www.example.test", id: 77), ip: "127.0.0.1", port: fwd.port)))
        XCTAssertEqual(r.header.id, 77)
        XCTAssertEqual(r.answers.first?.rdata, .a(IPv4Address("192.0.2.10")!))
        let r6 = try Message(decoding: try XCTUnwrap(Sock.tcpQuery(q("www.example.test", .aaaa), ip: "127.0.0.1", port: fwd.port)))
        XCTAssertEqual(r6.answers.first?.rdata, .aaaa(IPv6Address("2001:db8::10")!))
        XCTAssertGreaterThanOrEqual(upstream.tcpQueries, 1, "a TCP query goes upstream over TCP")
        let before = upstream.udpQueries
        let again = try Message(decoding: try XCTUnwrap(Sock.udpQuery(q("www.example.test"), ip: "127.0.0.1", port: fwd.port)))
        XCTAssertEqual(again.answers.first?.rdata, .a(IPv4Address("192.0.2.10")!))
        XCTAssertEqual(upstream.udpQueries, before, "second ask comes from the cache")
        XCTAssertTrue(fwd.waitForLog("cached www.example.test is 192.0.2.10"), fwd.log)
        XCTAssertTrue(fwd.log.contains("forwarded www.example.test to 127.0.0.1#\(upstream.port)"), fwd.log)
        XCTAssertTrue(fwd.log.contains("reply www.example.test is 2001:db8::10"), fwd.log)
    }

    func testDNS0x20AgainstARealSocketUpstream() throws {
        try start(["--dns-0x20"])
        // 40 letters: the chance that all come out in lower case is 2^-40.
        let name = "abcdefghij.klmnopqrst.uvwxyzabcd.efghijklmn.example"
        for (i, asked) in [name, name.uppercased()].enumerated() {
            let r = try Message(decoding: try XCTUnwrap(Sock.udpQuery(q(asked, id: UInt16(90 + i)), ip: "127.0.0.1", port: fwd.port)))
            XCTAssertEqual(r.header.id, UInt16(90 + i))
            XCTAssertEqual(r.questions.first?.name.description, asked, "the client gets its own letter case back")
            XCTAssertEqual(r.answers.first?.rdata, .a(IPv4Address("192.0.2.99")!))
        }
        let seen = upstream.names.filter { $0.lowercased() == name }   // not the readiness probe
        XCTAssertEqual(seen.count, 1, "the second ask is a cache hit: \(seen)")
        XCTAssertEqual(seen.first?.lowercased(), name)
        XCTAssertNotEqual(seen.first, name, "the upstream saw mixed case")
        XCTAssertNotEqual(seen.first, name.uppercased())
    }

    func testSeveralQueriesOnOneTCPConnection() throws {
        try start()
        let fd = try XCTUnwrap(Sock.tcpConnect(ip: "127.0.0.1", port: fwd.port))
        defer { close(fd) }
        for i in 0..<5 {
            let r = try Message(decoding: try XCTUnwrap(Sock.tcpExchange(fd, q("host\(i).example.test", id: UInt16(100 + i)))))
            XCTAssertEqual(r.header.id, UInt16(100 + i))
            XCTAssertEqual(r.answers.count, 1)
        }
    }

    func testBigAnswerTruncatedOverUDPWholeOverTCP() throws {
        try start()
        let udp = try Message(decoding: try XCTUnwrap(Sock.udpQuery(q("big.example.test", .txt), ip: "127.0.0.1", port: fwd.port)))
        XCTAssertTrue(udp.header.truncated)
        XCTAssertEqual(udp.answers.count, 0)
        let tcp = try Message(decoding: try XCTUnwrap(Sock.tcpQuery(q("big.example.test", .txt), ip: "127.0.0.1", port: fwd.port)))
        XCTAssertFalse(tcp.header.truncated)
        XCTAssertEqual(tcp.answers.count, 8)
        let edns = try Message(decoding: try XCTUnwrap(Sock.udpQuery(q("big.example.test", .txt, edns: EDNS(udpSize: 4096)), ip: "127.0.0.1", port: fwd.port)))
        XCTAssertFalse(edns.header.truncated)
        XCTAssertEqual(edns.answers.count, 8)
    }

    func testWildcardRepliesFromTheAddressAsked() throws {
        try start(listen: [])
        // A connected socket to 127.0.0.2 only accepts a reply whose source is 127.0.0.2.
        let r = try XCTUnwrap(Sock.udpQuery(q("www.example.test"), ip: "127.0.0.2", port: fwd.port), fwd.log)
        XCTAssertEqual(try Message(decoding: r).answers.count, 1)
        let r3 = try XCTUnwrap(Sock.udpQuery(q("www.example.test"), ip: "127.0.0.3", port: fwd.port), fwd.log)
        XCTAssertEqual(try Message(decoding: r3).answers.count, 1)
    }

    func testServfailWhenUpstreamSilent() throws {
        // An upstream port where nothing answers (bound, never read).
        let silent = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(silent) }
        let sport = Sock.freePort()
        XCTAssertEqual(Sock.withSockaddr(Sock.addr("127.0.0.1", sport)) { bind(silent, $0, $1) }, 0)
        let port = Sock.freePort()
        fwd = try ForwarderProcess(arguments: ["--no-resolv", "--no-hosts", "--server=127.0.0.1#\(sport)", "--port=\(port)",
                                               "--listen-address=127.0.0.1"], port: port)
        // Readiness: any answer (SERVFAIL included) within the deadline.
        let start = Date()
        var reply: [UInt8]? = nil
        while reply == nil && Date().timeIntervalSince(start) < 15 {
            reply = Sock.udpQuery(q("www.example.test"), ip: "127.0.0.1", port: port, timeoutMs: 4500, report: false)
        }
        let m = try Message(decoding: try XCTUnwrap(reply, fwd.log))
        XCTAssertEqual(m.rcode, .servFail)
    }

    func testSignalsStatisticsAndCleanExit() throws {
        try start()
        _ = Sock.udpQuery(q("www.example.test"), ip: "127.0.0.1", port: fwd.port)
        fwd.signal(SIGUSR1)
        XCTAssertTrue(fwd.waitForLog("server 127.0.0.1#\(upstream.port): queries sent"), fwd.log)
        XCTAssertTrue(fwd.waitForLog("queries in flight 0"), fwd.log)
        fwd.signal(SIGHUP)
        XCTAssertTrue(fwd.waitForLog("cache cleared"), fwd.log)
        let before = upstream.udpQueries
        _ = Sock.udpQuery(q("www.example.test"), ip: "127.0.0.1", port: fwd.port)
        XCTAssertEqual(upstream.udpQueries, before + 1, "cache was cleared by SIGHUP")
        XCTAssertEqual(fwd.stop(), 0)
        fwd = nil
    }

    func testBadOptionExitsTwo() throws {
        let p = try ForwarderProcess(arguments: ["--no-resolv", "--frobnicate"], port: 0)
        p.expectExit = true
        p.process.waitUntilExit()
        XCTAssertEqual(p.process.terminationStatus, 2)
        XCTAssertTrue(p.log.contains("--frobnicate"), p.log)
        p.stop()
    }

    func testSurvivesStormOfRandomAndCraftedPackets() throws {
        try start()
        var rng = SystemRandomNumberGenerator()
        let base = q("www.example.test")
        var crafted: [[UInt8]] = [
            [],                                              // empty
            [0x12],                                          // 1 byte
            Array(base[0..<12]),                              // header only, QDCOUNT 1
            Array(base[0..<20]),                              // cut in the name
            [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1],    // pointer loop in question
            [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 200, 0, 1, 0, 1],   // forward pointer
            [0, 1, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],   // huge counts
            [0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0] + Array(base[12...]),    // a response
            [0, 1, 0x78, 0, 0, 1, 0, 0, 0, 0, 0, 0] + Array(base[12...]),    // opcode 15
            [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1] + Array(base[12...]) + [0, 0, 41, 0xFF, 0xFF],  // cut OPT
            [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0] + [63] + [UInt8](repeating: 65, count: 63) + [64] + [UInt8](repeating: 66, count: 64) + [0, 0, 1, 0, 1],  // bad label length
        ]
        var longName: [UInt8] = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        for _ in 0..<60 { longName += [5, 97, 98, 99, 100, 101] }
        crafted.append(longName + [0, 0, 1, 0, 1])
        for _ in 0..<3 { for c in crafted { Sock.udpSend(c, ip: "127.0.0.1", port: fwd.port) } }
        for i in 0..<3000 {
            let n = Int.random(in: 0..<600, using: &rng)
            var b = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if i % 2 == 0 && n > 12 { b[2] &= 0x7F; b[4] = 0; b[5] = 1 }   // looks like a query
            Sock.udpSend(b, ip: "127.0.0.1", port: fwd.port)
        }
        // TCP: garbage, frames cut short, huge length prefixes, many connections.
        var open: [Int32] = []
        for i in 0..<100 {
            guard let fd = Sock.tcpConnect(ip: "127.0.0.1", port: fwd.port) else { continue }
            let n = Int.random(in: 0..<400, using: &rng)
            var b = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            switch i % 4 {
            case 0: break
            case 1: b = [0xFF, 0xFF] + b                         // promises 65535 bytes, never sends them
            case 2: if let c = crafted.randomElement(using: &rng) { b = [UInt8(c.count >> 8), UInt8(c.count & 0xff)] + c }
            default: b = [0, 0]                                  // zero-length frame
            }
            _ = Sock.writeAll(fd, b)
            open.append(fd)
        }
        // The daemon still answers, over UDP and TCP.
        let end = Date().addingTimeInterval(10)
        var udpOK = false
        while !udpOK && Date() < end { udpOK = Sock.udpQuery(q("after.example.test", id: 9), ip: "127.0.0.1", port: fwd.port, timeoutMs: 500) != nil }
        XCTAssertTrue(udpOK, fwd.log)
        let tcp = Sock.tcpQuery(q("after-tcp.example.test"), ip: "127.0.0.1", port: fwd.port)
        XCTAssertNotNil(tcp, "TCP still served with \(open.count) junk connections open")
        for fd in open { close(fd) }
        // FORMERR for a readable header with a broken question.
        let fe = try XCTUnwrap(Sock.udpQuery(Array(base[0..<20]), ip: "127.0.0.1", port: fwd.port))
        XCTAssertEqual(fe[3] & 0x0F, 1)
        XCTAssertTrue(fwd.process.isRunning)
    }
}
