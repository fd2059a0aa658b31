import XCTest
@testable import Forwarder

/// --local-service (issue 9, section 4): only clients on attached networks, on a fake interface list.
final class LocalServiceTests: XCTestCase {
    func ep(_ s: String) -> Endpoint { Endpoint(address: s, port: 5353)! }

    func testPrefixMatching() {
        let p = LocalPrefix("172.16.99.5/24")!
        XCTAssertTrue(p.contains(ep("172.16.99.21")))
        XCTAssertFalse(p.contains(ep("172.16.98.21")))
        XCTAssertFalse(p.contains(ep("::1")))
        let p6 = LocalPrefix("fd00:1:2:3::5/64")!
        XCTAssertTrue(p6.contains(ep("fd00:1:2:3:aaaa::9")))
        XCTAssertFalse(p6.contains(ep("fd00:1:2:4::9")))
        let p70 = LocalPrefix("fd00::/70")!
        XCTAssertTrue(p70.contains(ep("fd00::3ff:ffff:ffff:ffff")))
        XCTAssertFalse(p70.contains(ep("fd00:0:0:0:400::")))
        XCTAssertTrue(LocalPrefix("0.0.0.0/0")!.contains(ep("8.8.8.8")))
        XCTAssertNil(LocalPrefix("10.0.0.1/33"))
        XCTAssertNil(LocalPrefix("10.0.0.1"))
        XCTAssertEqual(LocalPrefix("10.1.2.3/8")!.description, "10.1.2.3/8")
    }

    func testDropsOthersLogsOnceAMinuteAndSeesAddressesAddedLater() {
        var nets = [LocalPrefix("172.16.99.5/24")!]
        var reads = 0
        let f = LocalServiceFilter(reader: { reads += 1; return nets })
        var logs: [String] = []
        let s: UInt64 = 1_000_000_000
        XCTAssertTrue(f.allows(ep("172.16.99.21"), now: 10 * s) { logs.append($0) })
        XCTAssertTrue(f.allows(ep("127.0.0.1"), now: 10 * s) { logs.append($0) }, "loopback always")
        XCTAssertTrue(f.allows(ep("::1"), now: 10 * s) { logs.append($0) })
        XCTAssertFalse(f.allows(ep("10.9.0.2"), now: 10 * s) { logs.append($0) })
        XCTAssertFalse(f.allows(ep("10.9.0.3"), now: 20 * s) { logs.append($0) })
        XCTAssertEqual(f.dropped, 2)
        XCTAssertEqual(logs.count, 1, "at most one line a minute")
        XCTAssertTrue(logs[0].hasPrefix("ignoring query from non-local network 10.9.0.2"))
        // An address added later counts within a second of the next miss.
        nets.append(LocalPrefix("10.9.0.5/24")!)
        let before = reads
        XCTAssertTrue(f.allows(ep("10.9.0.2"), now: 22 * s) { logs.append($0) })
        XCTAssertEqual(reads, before + 1)
        // A removed one stops counting within maxAge.
        nets.removeLast()
        XCTAssertTrue(f.allows(ep("10.9.0.2"), now: 23 * s) { logs.append($0) })
        XCTAssertFalse(f.allows(ep("10.9.0.2"), now: 40 * s) { logs.append($0) })
        // Hits do not re-read the interfaces.
        let r = reads
        for i in 0..<100 { _ = f.allows(ep("172.16.99.21"), now: 40 * s + UInt64(i)) { logs.append($0) } }
        XCTAssertEqual(reads, r)
    }

    func testReadsTheHostsInterfaces() {
        let list = LocalServiceFilter.interfacePrefixes()
        XCTAssertTrue(list.contains { !$0.isV6 && $0.bytes.0 >> 56 == 127 && $0.length == 8 }, "\(list)")
    }

    func testOptionIsAccepted() throws {
        let o = try Options.parse(["--local-service"], readFile: { _ in "" })
        XCTAssertTrue(o.localService)
    }
}
