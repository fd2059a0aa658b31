import DNSWire
import Glibc
import SimNet
import XCTest
@testable import Sim

/// Floods of datagrams (the soak's malformed packets) and their bounds.
final class PacketFloodTests: XCTestCase {
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
}
