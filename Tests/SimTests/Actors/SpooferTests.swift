import DNSWire
import Glibc
import SimNet
import XCTest
@testable import Sim

final class SpooferTests: XCTestCase {
    /// A plain UDP socket standing in for a resolver's upstream-side port.
    private final class Victim {
        let fd: Int32
        let endpoint: Endpoint
        init(_ ip: String, factory: SocketFactory = loopbackSocketFactory) throws {
            let ep = try Endpoint(ip: ip, port: 0)
            fd = try ActorSocket.open(factory, ep.family, ActorSocket.udp)
            try ActorSocket.bind(fd, ep, "victim")
            endpoint = ActorSocket.localEndpoint(fd)!
        }
        deinit { close(fd) }

        /// Reads datagrams until `count` arrived or the deadline passed.
        func receive(_ count: Int, timeout: Double) -> [(bytes: [UInt8], from: Endpoint)] {
            var got: [([UInt8], Endpoint)] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            let deadline = SimClock.monotonic() + timeout
            while got.count < count, ActorSocket.wait(fd, Int16(POLLIN), until: deadline) != 0 {
                let (n, from) = ActorSocket.receive(fd, &buffer)
                if n >= 0, let from { got.append((Array(buffer[0..<n]), from)) }
            }
            return got
        }
    }

    func testForgedRepliesCarryTheUpstreamSourceTheQuestionAndThePoison() throws {
        let victim = try Victim("127.0.0.1")
        let upstream = try Endpoint(ip: "127.0.0.5", port: try ActorTestSupport.unusedUDPPort("127.0.0.5"))
        let names = ["n1.example.test", "n2.example.test"]
        let flood = try Spoofer.flood(upstream: upstream, resolver: "127.0.0.1",
                                      ports: victim.endpoint.port...victim.endpoint.port,
                                      names: names, poison: "6.6.6.6", rate: 10_000, count: 50)
        try flood.start()
        let got = victim.receive(50, timeout: 10)
        XCTAssertTrue(flood.wait(timeout: 10))
        XCTAssertEqual(flood.sent, 50)
        XCTAssertEqual(got.count, 50)
        var ids = Set<UInt16>()
        for (bytes, from) in got {
            XCTAssertEqual(from, upstream)
            let m = try Message(decoding: bytes)
            XCTAssertTrue(m.header.isResponse)
            XCTAssertTrue(names.contains(m.questions[0].name.description))
            XCTAssertEqual(m.answers.map { Zone.text(of: $0.rdata) }, ["6.6.6.6"])
            ids.insert(m.header.id)
        }
        XCTAssertGreaterThan(ids.count, 1, "IDs are random")
    }

    /// With IP_TRANSPARENT the source need not be an address of the sender's host.
    func testForgedSourceThatIsNotLocal() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root for a network namespace and IP_TRANSPARENT")
        let host = try SimHost(name: "spoofer")
        defer { host.teardown() }
        let factory: SocketFactory = { try host.socket(domain: $0, type: $1, protocol: $2) }
        let victim = try Victim("127.0.0.1", factory: factory)
        let upstream = try Endpoint(ip: "192.0.2.53", port: 53)
        let flood = try Spoofer.flood(upstream: upstream, resolver: "127.0.0.1",
                                      ports: victim.endpoint.port...victim.endpoint.port,
                                      names: ["x.example.test"], poison: "6.6.6.6", rate: 1000, count: 5,
                                      socketFactory: factory)
        try flood.start()
        let got = victim.receive(5, timeout: 10)
        flood.stop()
        XCTAssertEqual(got.count, 5)
        XCTAssertTrue(got.allSatisfy { $0.from == upstream }, "\(got.map { $0.from })")
    }

    func testMalformedPacketsDoNotStopAnUpstream() throws {
        let up = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
        defer { up.stop() }
        let n = MalformedPackets.catalog.count * 3
        let flood = try MalformedPackets.flood(target: up.endpoint, rate: 5000, count: n)
        try flood.start()
        XCTAssertTrue(flood.wait(timeout: 10))
        XCTAssertEqual(flood.sent, n)
        XCTAssertTrue(up.queries.wait(forCount: n, timeout: 10), "\(up.queries.count) of \(n) seen")
        XCTAssertGreaterThan(up.queries.snapshot().filter { $0.outcome.hasPrefix("malformed") }.count, 0)
        XCTAssertEqual(QueryClient().query("hat.com", server: up.endpoint).answers, ["192.168.122.203"])
    }

    func testStopEndsALongFlood() throws {
        let victim = try Victim("127.0.0.1")
        let flood = try PacketFlood(target: victim.endpoint, payloads: [[1, 2, 3]], rate: 100, count: 1_000_000)
        try flood.start()
        XCTAssertEqual(victim.receive(3, timeout: 10).count, 3)
        flood.stop()
        XCTAssertTrue(flood.wait(timeout: 10))
        XCTAssertLessThan(flood.sent, 1_000_000)
    }

    func testBadInput() throws {
        let ep = try Endpoint(ip: "127.0.0.1", port: 9)
        XCTAssertThrowsError(try PacketFlood(target: ep, payloads: [], rate: 1, count: 1))
        XCTAssertThrowsError(try PacketFlood(target: ep, payloads: [[1]], rate: 0, count: 1))
        XCTAssertThrowsError(try PacketFlood(target: ep, payloads: [[1]], rate: 1, count: 0))
        XCTAssertThrowsError(try PacketFlood(target: ep, payloads: [[1]], randomizeID: true, rate: 1, count: 1))
        XCTAssertThrowsError(try Spoofer.forgedReplies(names: ["a.test"], poison: "::1")) {
            XCTAssertTrue("\($0)".contains("IPv4"), "\($0)")
        }
        XCTAssertThrowsError(try Spoofer.forgedReplies(names: ["a.test"], type: "MX", poison: "1.2.3.4"))
        XCTAssertThrowsError(try PacketFlood(target: ep, payloads: [[1]], rate: 1, count: 1,
                                             source: try Endpoint(ip: "::1", port: 0)))
    }
}
