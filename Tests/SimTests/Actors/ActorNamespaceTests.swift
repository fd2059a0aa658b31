import Glibc
import SimNet
import XCTest
@testable import Sim

/// The actors with sockets from a host's namespace (the runner's way), and the
/// IPv6 source-address path that loopback in the root namespace cannot show.
final class ActorNamespaceTests: XCTestCase {
    func testIPv6ReplyFromOtherAddressInsideAHost() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root for a network namespace")
        let host = try SimHost(name: "actors-v6")
        defer { host.teardown() }
        try host.addAddress("fd00:53::1/128", dev: "lo")
        try host.addAddress("fd00:53::2/128", dev: "lo")
        let factory: SocketFactory = { try host.socket(domain: $0, type: $1, protocol: $2) }

        let up = try FakeUpstream(name: "v6", address: "fd00:53::1", port: 53, zone: ActorTestSupport.zone,
                                  socketFactory: factory)
        defer { up.stop() }
        XCTAssertEqual(up.endpoint.description, "[fd00:53::1]:53")
        let normal = QueryClient(transport: .udpConnected, socketFactory: factory).query("v6.hat.com", type: "AAAA", server: up.endpoint)
        XCTAssertEqual(normal.answers, ["2001:db8::203"], "\(normal)")
        XCTAssertEqual(normal.replySource, up.endpoint)

        up.setBehaviour(.fromOtherAddress("fd00:53::2"))
        let unconnected = QueryClient(transport: .udpUnconnected, socketFactory: factory).query("hat.com", server: up.endpoint)
        XCTAssertEqual(unconnected.replySource?.ip, "fd00:53::2", "\(unconnected)")
        XCTAssertEqual(unconnected.answers, ["192.168.122.203"])
        let connected = QueryClient(transport: .udpConnected, timeout: 0.3, socketFactory: factory)
            .query("hat.com", server: up.endpoint)
        XCTAssertEqual(connected.error, .timeout)
        XCTAssertEqual(up.queries.count, 3)
    }
}
