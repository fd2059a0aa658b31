import Glibc
import XCTest
@testable import SimNet

final class PinAndScaleTests: XCTestCase {
    func testPinAndUnpin() throws {
        try requireRealRoot()
        let prefix = "sim-simnettest\(getpid())-"
        let net = Network()
        defer { net.teardown(); _ = try? Pinned.removeAll(prefix: prefix) }
        let a = try net.addHost("a"), b = try net.addHost("b")
        try net.pinAll(prefix: prefix)
        XCTAssertEqual(Pinned.list(prefix: prefix), [prefix + "a", prefix + "b"])
        // The pinned file is the host's namespace (what `ip netns exec` enters).
        let fd = open("/run/netns/\(prefix)a", O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(inode(ofFD: fd), inode(ofFD: a.nsFD))
        close(fd)
        XCTAssertThrowsError(try b.pin(as: prefix + "again"))
        let c = try net.addHost("c")
        XCTAssertThrowsError(try c.pin(as: prefix + "a")) { XCTAssertTrue("\($0)".contains("sim clean"), "\($0)") }
        XCTAssertThrowsError(try c.pin(as: prefix + "x/y")) { XCTAssertTrue("\($0)".contains("no '/'"), "\($0)") }
        XCTAssertNil(c.pinnedName)

        // Teardown keeping pins: the namespace outlives its fd.
        let aIno = inode(ofFD: a.nsFD)
        net.teardown(keepPinned: true)
        XCTAssertEqual(Pinned.list(prefix: prefix).count, 2) // c was never pinned
        var st = stat()
        XCTAssertEqual(stat("/run/netns/\(prefix)a", &st), 0)
        XCTAssertEqual(UInt(st.st_ino), aIno)

        XCTAssertEqual(try Pinned.removeAll(prefix: prefix), [prefix + "a", prefix + "b"])
        XCTAssertEqual(Pinned.list(prefix: prefix), [])
        XCTAssertThrowsError(try Pinned.removeAll(prefix: ""))
    }

    func testTeardownUnpinsByDefault() throws {
        try requireRealRoot()
        let prefix = "sim-simnettest\(getpid())u-"
        let net = Network()
        try net.addHost("x").pin(as: prefix + "x")
        XCTAssertEqual(Pinned.list(prefix: prefix), [prefix + "x"])
        net.teardown()
        XCTAssertEqual(Pinned.list(prefix: prefix), [])
    }

    /// Ten hosts on a bridge, each with addresses and a default route,
    /// built and torn down; prints the time (the goal is well under 1 s).
    /// An observer host outside the timed network, linked to each host,
    /// shows when the kernel has really freed the namespaces (their veth
    /// peers vanish), which happens asynchronously after teardown returns.
    func testTenHostTopologyTiming() throws {
        try requireRoot()
        let observerNet = Network()
        defer { observerNet.teardown() }
        let observer = try observerNet.addHost("observer")

        let t0 = MonotonicClock.now
        let net = Network()
        let sw = try net.addHost("sw")
        try sw.addBridge("br0")
        try sw.addAddress("10.77.0.254/24", dev: "br0")
        for i in 1...9 {
            let h = try net.addHost("h\(i)")
            try net.connect(sw, "p\(i)", h, "eth0")
            try sw.addBridgePort("p\(i)", bridge: "br0")
            try h.addAddress("10.77.0.\(i)/24", dev: "eth0")
            try h.addAddress("fd77::\(i)/64", dev: "eth0")
            try h.addRoute("default", via: "10.77.0.254")
        }
        let built = MonotonicClock.now
        XCTAssertEqual(net.hosts.count, 10)
        for (i, name) in net.hostOrder.enumerated() {
            try observerNet.connect(observer, "o\(i)", net.hosts[name]!, "obs")
        }
        let t1 = MonotonicClock.now
        net.teardown()
        let done = MonotonicClock.now
        XCTAssertTrue(eventually(timeout: 10) { (0..<10).allSatisfy { !observer.hasLink("o\($0)") } })
        let freed = MonotonicClock.now
        print(String(format: "ten-host topology: built in %.1f ms, teardown returned in %.1f ms, kernel freed all in %.1f ms",
                     (built - t0) * 1000, (done - t1) * 1000, (freed - t1) * 1000))
        XCTAssertLessThan((built - t0) + (freed - t1), 10, "sanity bound only")
    }
}
