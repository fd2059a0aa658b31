import XCTest
@testable import Sim

final class LoadGeneratorTests: XCTestCase {
    func testSteadyLoadIsAllAnswered() throws {
        let up = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
        defer { up.stop() }
        let load = try LoadGenerator(names: ["hat.com", "mail.hat.com"], server: up.endpoint, rate: 100, duration: 0.3,
                                     client: QueryClient(timeout: 2), concurrency: 4)
        XCTAssertEqual(load.plannedCount, 30)
        try load.start()
        XCTAssertTrue(load.wait(timeout: 30))
        let s = load.summary
        XCTAssertEqual(s.sent, 30, "\(s)")
        XCTAssertEqual(s.noError, 30, "\(s)")
        XCTAssertEqual(s.failed, 0)
        XCTAssertEqual(up.queries.count, 30)
        XCTAssertEqual(up.queryCount, 30)
        let samples = load.samples.snapshot()
        XCTAssertEqual(Set(samples.map { $0.index }), Set(0..<30))
        XCTAssertEqual(samples.filter { $0.result.name == "mail.hat.com" }.count, 15)
        XCTAssertTrue(samples.allSatisfy { s in
            s.result.answers == (s.result.name == "hat.com" ? ["192.168.122.203"] : ["192.168.122.25"])
        })
    }

    func testFailuresAreCountedByKind() throws {
        let up = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone, behaviour: .servfail)
        defer { up.stop() }
        let load = try LoadGenerator(names: ["hat.com"], server: up.endpoint, rate: 200, duration: 0.05)
        try load.start()
        XCTAssertTrue(load.wait(timeout: 30))
        XCTAssertEqual(load.summary.failed, 10)
        XCTAssertEqual(load.summary.failures, ["SERVFAIL": 10])
    }

    /// With too few workers for a silent upstream, the schedule slips, and the samples say so.
    func testLagShowsWhenWorkersAreAllBusy() throws {
        let up = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone, behaviour: .silent)
        defer { up.stop() }
        let load = try LoadGenerator(names: ["hat.com"], server: up.endpoint, rate: 100, duration: 0.04,
                                     client: QueryClient(timeout: 0.2), concurrency: 1)
        try load.start()
        XCTAssertTrue(load.wait(timeout: 30))
        let s = load.summary
        XCTAssertEqual(s.failures, ["timeout": 4])
        XCTAssertGreaterThanOrEqual(s.maxLag, 0.5, "the 4th query waits behind three 0.2 s timeouts")
    }

    func testStopEndsTheLoadEarly() throws {
        let up = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
        defer { up.stop() }
        let load = try LoadGenerator(names: ["hat.com"], server: up.endpoint, rate: 10, duration: 3600,
                                     concurrency: 2)
        try load.start()
        XCTAssertTrue(load.samples.wait(forCount: 2, timeout: 10))
        load.stop()
        XCTAssertTrue(load.wait(timeout: 10))
        XCTAssertLessThan(load.summary.sent, load.plannedCount)
    }

    /// Dropping the generator stops its workers (they do not keep it alive).
    func testDroppingTheGeneratorStopsIt() throws {
        let up = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
        defer { up.stop() }
        var load: LoadGenerator? = try LoadGenerator(names: ["hat.com"], server: up.endpoint, rate: 20, duration: 3600)
        try load!.start()
        XCTAssertTrue(up.queries.wait(forCount: 1, timeout: 10))
        weak let weakLoad = load
        load = nil
        XCTAssertNil(weakLoad)
        let seen = up.queryCount
        // Nothing new is scheduled: the count stays put across a few more periods.
        XCTAssertFalse(up.queries.wait(timeout: 0.3) { $0.count > seen })
    }

    func testBounds() throws {
        let server = try Endpoint(ip: "127.0.0.1", port: 53)
        XCTAssertThrowsError(try LoadGenerator(names: [], server: server, rate: 1, duration: 1))
        XCTAssertThrowsError(try LoadGenerator(names: ["a"], server: server, rate: 0, duration: 1))
        XCTAssertThrowsError(try LoadGenerator(names: ["a"], server: server, rate: 1, duration: -1))
        XCTAssertThrowsError(try LoadGenerator(names: ["a"], server: server, rate: 5000, duration: 3600)) {
            XCTAssertTrue("\($0)".contains("out of range"), "\($0)")
        }
    }
}
