import XCTest
@testable import Sim

final class EventLogTests: XCTestCase {
    func testWaitWakesOnAppendFromAnotherThread() throws {
        let log = EventLog<Int>()
        let t = try ActorThread(name: "appender") {
            for i in 1...5 { log.append(i) }
        }
        XCTAssertTrue(log.wait(timeout: 10) { $0.count == 5 })
        t.join()
        XCTAssertEqual(log.snapshot(), [1, 2, 3, 4, 5])
        XCTAssertEqual(log.first(timeout: 1) { $0 > 3 }, 4)
    }

    func testWaitTimesOutWhenPredicateNeverHolds() {
        let log = EventLog<String>()
        log.append("a")
        let start = SimClock.monotonic()
        XCTAssertFalse(log.wait(timeout: 0.05) { $0.contains("b") })
        XCTAssertGreaterThanOrEqual(SimClock.monotonic() - start, 0.05)
        XCTAssertNil(log.first(timeout: 0.01) { $0 == "b" })
        log.removeAll()
        XCTAssertEqual(log.count, 0)
    }

    func testClockEpoch() {
        let saved = SimClock.epoch
        defer { SimClock.setEpoch(saved) }
        SimClock.setEpoch(SimClock.monotonic() - 100)
        XCTAssertGreaterThanOrEqual(SimClock.now(), 100)
        XCTAssertLessThan(SimClock.now(), 200)
    }

    func testEndpointParsing() throws {
        XCTAssertEqual(try Endpoint(parsing: "127.0.0.1:5353").description, "127.0.0.1:5353")
        XCTAssertEqual(try Endpoint(parsing: "[::1]:53").description, "[::1]:53")
        XCTAssertEqual(try Endpoint(parsing: "2001:db8:0::1").ip, "2001:db8::1")
        XCTAssertEqual(try Endpoint(parsing: "10.0.0.1").port, 53)
        XCTAssertThrowsError(try Endpoint(parsing: "nonsense:53"))
        XCTAssertThrowsError(try Endpoint(parsing: "1.2.3.4:99999"))
        XCTAssertThrowsError(try Endpoint(parsing: "[::1"))
    }
}
