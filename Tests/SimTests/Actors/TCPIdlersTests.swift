import XCTest
@testable import Sim

final class TCPIdlersTests: XCTestCase {
    func testIdlersHoldConnectionsWhileTheServerStillAnswers() throws {
        let fdsBefore = ActorTestSupport.openFDCount()
        let up = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
        defer { up.stop() }
        let idlers = try TCPIdlers(target: up.endpoint, connections: 50)
        try idlers.start()
        XCTAssertTrue(idlers.settled.wait(forCount: 50, timeout: 10))
        XCTAssertEqual(idlers.status, TCPIdlers.Status(connected: 50, failed: 0, closedByPeer: 0, open: 50))
        // Fifty half-sent length prefixes do not stop a TCP answer.
        XCTAssertEqual(QueryClient(transport: .tcp).query("hat.com", server: up.endpoint).answers, ["192.168.122.203"])
        idlers.stop()
        XCTAssertEqual(idlers.status.open, 50, "stopping is not the server closing them")
        XCTAssertTrue(up.queries.wait(forCount: 1, timeout: 5))
        up.stop()
        XCTAssertEqual(ActorTestSupport.openFDCount(), fdsBefore, "the idlers' and the server's sockets are closed")
    }

    func testServerClosingIsRecorded() throws {
        let up = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
        let idlers = try TCPIdlers(target: up.endpoint, connections: 10, firstBytes: [])
        defer { idlers.stop() }
        try idlers.start()
        XCTAssertTrue(idlers.settled.wait(forCount: 10, timeout: 10))
        up.stop()   // closes every connection it holds
        XCTAssertTrue(idlers.closures.wait(forCount: 10, timeout: 10))
        XCTAssertEqual(idlers.status.closedByPeer, 10)
        XCTAssertEqual(idlers.status.open, 0)
        XCTAssertEqual(Set(idlers.closures.snapshot().map { $0.index }), Set(0..<10))
    }

    func testRefusedConnectionsAreCountedAsFailed() throws {
        let port = try ActorTestSupport.unusedUDPPort()
        let idlers = try TCPIdlers(target: try Endpoint(ip: "127.0.0.1", port: port), connections: 3)
        defer { idlers.stop() }
        try idlers.start()
        XCTAssertTrue(idlers.settled.wait(forCount: 3, timeout: 10))
        XCTAssertEqual(idlers.status.failed, 3)
        XCTAssertThrowsError(try TCPIdlers(target: try Endpoint(ip: "127.0.0.1", port: 1), connections: 0))
    }
}
