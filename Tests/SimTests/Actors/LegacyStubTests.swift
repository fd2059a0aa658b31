import Foundation
import XCTest
@testable import Sim

/// Incident A: the stub reads resolv.conf once and keeps asking the first server.
final class LegacyStubTests: XCTestCase {
    private var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "legacy-stub-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func write(_ text: String, to name: String = "resolv.conf") throws -> String {
        let path = dir + "/" + name
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    func testKeepsTheFirstServerAfterTheFileChanges() throws {
        let a = try FakeUpstream(name: "A", address: "127.0.0.1", port: 0,
                                 zone: try Zone(simple: ["hat.com": ["A": ["192.168.122.203"]]]))
        defer { a.stop() }
        let b = try FakeUpstream(name: "B", address: "127.0.0.2", port: a.endpoint.port,
                                 zone: try Zone(simple: ["hat.com": ["A": ["192.168.122.204"]]]))
        defer { b.stop() }
        let path = try write("# generated\nsearch example\nnameserver 127.0.0.1\nnameserver 127.0.0.9\n")
        let stub = try LegacyStub(resolvConf: path, name: "hat.com", interval: 0.05, port: a.endpoint.port)
        defer { stub.stop() }
        XCTAssertEqual(stub.server, a.endpoint)
        try stub.start()
        XCTAssertTrue(stub.lookups.wait(forCount: 2, timeout: 10))

        // Switch the file to B, the way resolvconf does: rename() over it.
        let replacement = try write("nameserver 127.0.0.2\n", to: "resolv.conf.new")
        XCTAssertEqual(rename(replacement, path), 0)
        let switched = stub.lookups.count
        XCTAssertTrue(stub.lookups.wait(forCount: switched + 3, timeout: 10))
        stub.stop()

        let lookups = stub.lookups.snapshot()
        XCTAssertTrue(lookups.allSatisfy { $0.server == a.endpoint })
        XCTAssertTrue(lookups.allSatisfy { $0.result.answers == ["192.168.122.203"] }, "\(lookups)")
        XCTAssertEqual(a.queries.count, lookups.count)
        XCTAssertEqual(b.queries.count, 0, "B is never asked")
        XCTAssertTrue(a.queries.snapshot().allSatisfy { $0.transport == .udp && $0.name == "hat.com" })

        // A restarted stub reads the new file and gets B's answer.
        let restarted = try LegacyStub(resolvConf: path, name: "hat.com", interval: 0.05, port: a.endpoint.port)
        defer { restarted.stop() }
        try restarted.start()
        let first = restarted.lookups.first(timeout: 10) { _ in true }
        XCTAssertEqual(first?.server.ip, "127.0.0.2")
        XCTAssertEqual(first?.result.answers, ["192.168.122.204"])
    }

    func testStopInterruptsTheInterval() throws {
        let a = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
        defer { a.stop() }
        let stub = try LegacyStub(resolvConf: try write("nameserver 127.0.0.1\n"), name: "hat.com",
                                  interval: 3600, port: a.endpoint.port)
        try stub.start()
        XCTAssertTrue(stub.lookups.wait(forCount: 1, timeout: 10))
        let start = SimClock.monotonic()
        stub.stop()
        XCTAssertLessThan(SimClock.monotonic() - start, 60, "stop does not wait out the hour")
        XCTAssertEqual(stub.lookups.count, 1)
    }

    func testDroppingTheStubStopsIt() throws {
        let a = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
        defer { a.stop() }
        var stub: LegacyStub? = try LegacyStub(resolvConf: try write("nameserver 127.0.0.1\n"), name: "hat.com",
                                               interval: 0.05, port: a.endpoint.port)
        try stub!.start()
        XCTAssertTrue(a.queries.wait(forCount: 1, timeout: 10))
        weak let weakStub = stub
        stub = nil
        XCTAssertNil(weakStub)
        let seen = a.queryCount
        XCTAssertFalse(a.queries.wait(timeout: 0.3) { $0.count > seen }, "no lookups after the stub is gone")
    }

    func testBadFilesAreNamed() throws {
        XCTAssertThrowsError(try LegacyStub(resolvConf: dir + "/missing.conf", name: "x")) {
            XCTAssertTrue("\($0)".contains("missing.conf"), "\($0)")
        }
        let none = try write("search example\n", to: "none.conf")
        XCTAssertThrowsError(try LegacyStub(resolvConf: none, name: "x")) {
            XCTAssertTrue("\($0)".contains("names no nameserver"), "\($0)")
        }
        let bad = try write("search x\nnameserver banana\n", to: "bad.conf")
        XCTAssertThrowsError(try LegacyStub(resolvConf: bad, name: "x")) {
            XCTAssertTrue("\($0)".contains("bad.conf line 2"), "\($0)")
        }
    }
}
