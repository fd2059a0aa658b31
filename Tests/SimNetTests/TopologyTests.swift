import Glibc
import XCTest
@testable import SimNet

final class TopologyTests: XCTestCase {
    func testTwoHostsVethUDPCrosses() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a"), b = try net.addHost("b")
        try net.connect(a, "eth0", b, "eth0")
        try a.addAddress("10.9.0.1/24", dev: "eth0")
        try b.addAddress("10.9.0.2/24", dev: "eth0")
        try a.addAddress("fd00:9::1/64", dev: "eth0")
        try b.addAddress("fd00:9::2/64", dev: "eth0")
        XCTAssertTrue(try a.isLinkUp("eth0"))
        XCTAssertTrue(try b.isLinkUp("eth0"))

        let server = try UDP.bound(b, "10.9.0.2", port: 5300)
        defer { close(server) }
        let client = try UDP.bound(a, "0.0.0.0")
        defer { close(client) }
        try UDP.send(client, "hello", to: "10.9.0.2", port: 5300)
        let got = UDP.receive(server, timeout: 5)
        XCTAssertEqual(got?.text, "hello")
        XCTAssertEqual(got?.from, "10.9.0.1")

        // IPv6 without DAD: usable at once.
        let server6 = try UDP.bound(b, "fd00:9::2", port: 5300)
        defer { close(server6) }
        let client6 = try UDP.bound(a, "::")
        defer { close(client6) }
        try UDP.send(client6, "hello6", to: "fd00:9::2", port: 5300)
        let got6 = UDP.receive(server6, timeout: 5)
        XCTAssertEqual(got6?.text, "hello6")
        XCTAssertEqual(got6?.from, "fd00:9::1")
    }

    func testLinkDownStopsTraffic() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a"), b = try net.addHost("b")
        try net.connect(a, "eth0", b, "eth0")
        try a.addAddress("10.9.1.1/24", dev: "eth0")
        try b.addAddress("10.9.1.2/24", dev: "eth0")
        try b.setLink("eth0", up: false)
        XCTAssertFalse(try b.isLinkUp("eth0"))
        let server = try UDP.bound(b, "0.0.0.0", port: 5301)
        defer { close(server) }
        let client = try UDP.bound(a, "0.0.0.0")
        defer { close(client) }
        try? UDP.send(client, "lost", to: "10.9.1.2", port: 5301)
        XCTAssertNil(UDP.receive(server, timeout: 0.3))
        try b.setLink("eth0", up: true)
        XCTAssertTrue(eventually { (try? a.isLinkUp("eth0")) == true && (try? b.isLinkUp("eth0")) == true })
        // Carrier may take a moment after up: retry sends until one arrives.
        // ("lost" may arrive too: it waited in a's neighbour queue.)
        var got: (text: String, from: String)?
        _ = eventually(timeout: 5) {
            try? UDP.send(client, "back", to: "10.9.1.2", port: 5301)
            got = UDP.receive(server, timeout: 0.1)
            while got != nil && got?.text != "back" { got = UDP.receive(server, timeout: 0.1) }
            return got != nil
        }
        XCTAssertEqual(got?.text, "back")
    }

    func testBridgeWithThreeHosts() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let sw = try net.addHost("switch")
        var hosts: [SimHost] = []
        for i in 1...3 {
            let h = try net.addHost("h\(i)")
            try net.connect(sw, "p\(i)", h, "eth0")
            try h.addAddress("10.9.2.\(i)/24", dev: "eth0")
            hosts.append(h)
        }
        try sw.addBridge("br0", ports: ["p1", "p2", "p3"])
        XCTAssertTrue(try sw.isLinkUp("br0"))
        let s3 = try UDP.bound(hosts[2], "10.9.2.3", port: 5302)
        defer { close(s3) }
        for i in 0..<2 {
            let c = try UDP.bound(hosts[i], "0.0.0.0")
            defer { close(c) }
            var got: (text: String, from: String)?
            // The bridge forwards once its ports leave the learning state.
            _ = eventually(timeout: 10) {
                try? UDP.send(c, "from h\(i + 1)", to: "10.9.2.3", port: 5302)
                got = UDP.receive(s3, timeout: 0.1)
                return got != nil
            }
            XCTAssertEqual(got?.text, "from h\(i + 1)")
            XCTAssertEqual(got?.from, "10.9.2.\(i + 1)")
        }
    }

    func testRoutesThroughRouterWithForwarding() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let left = try net.addHost("left"), router = try net.addHost("router"), right = try net.addHost("right")
        try net.connect(left, "eth0", router, "l0")
        try net.connect(router, "r0", right, "eth0")
        try left.addAddress("10.9.3.2/24", dev: "eth0")
        try router.addAddress("10.9.3.1/24", dev: "l0")
        try router.addAddress("10.9.4.1/24", dev: "r0")
        try right.addAddress("10.9.4.2/24", dev: "eth0")
        try left.addRoute("default", via: "10.9.3.1")
        try right.addRoute("10.9.3.0/24", via: "10.9.4.1", dev: "eth0")

        let server = try UDP.bound(right, "10.9.4.2", port: 5303)
        defer { close(server) }
        let client = try UDP.bound(left, "0.0.0.0")
        defer { close(client) }

        // Without forwarding the router drops it.
        XCTAssertEqual(try router.readSysctl("net.ipv4.ip_forward"), "0")
        try UDP.send(client, "blocked", to: "10.9.4.2", port: 5303)
        XCTAssertNil(UDP.receive(server, timeout: 0.3))

        try router.enableForwarding()
        XCTAssertEqual(try router.readSysctl("net.ipv4.ip_forward"), "1")
        try UDP.send(client, "routed", to: "10.9.4.2", port: 5303)
        let got = UDP.receive(server, timeout: 5)
        XCTAssertEqual(got?.text, "routed")
        XCTAssertEqual(got?.from, "10.9.3.2")
    }

    func testBadInputGivesClearErrors() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a")
        XCTAssertThrowsError(try a.addAddress("10.0.0.300/24", dev: "lo")) {
            XCTAssertTrue("\($0)".contains("10.0.0.300"), "\($0)")
        }
        XCTAssertThrowsError(try a.addAddress("10.0.0.1/24", dev: "nosuchdev")) {
            XCTAssertTrue("\($0)".contains("nosuchdev"), "\($0)")
        }
        XCTAssertThrowsError(try a.addRoute("10.1.0.0/16", via: "fd00::1"))
        XCTAssertThrowsError(try a.addRoute("10.1.0.0/16")) {
            XCTAssertTrue("\($0)".contains("via"), "\($0)")
        }
        XCTAssertThrowsError(try a.sysctl("kernel.panic", "1")) {
            XCTAssertTrue("\($0)".contains("kernel.panic"), "\($0)")
        }
        XCTAssertThrowsError(try net.addHost("a"))
        XCTAssertThrowsError(try net.addHost("bad/name"))
        XCTAssertThrowsError(try net.connect(a, "this-name-is-too-long", a, "x"))
    }

    func testSocketLivesInHostNamespace() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a")
        // Only `lo` exists in a fresh host; /proc/net/dev read inside says so.
        let dev = try a.readFile("/proc/net/dev")
        XCTAssertTrue(dev.contains("lo:"))
        XCTAssertFalse(dev.contains("eth0:"))
        // An address only this host has can be bound only by a socket made in it.
        try a.addAddress("10.9.5.1/32", dev: "lo")
        let fd = try UDP.bound(a, "10.9.5.1")
        close(fd)
        // SIOCGSKNS tells which namespace a socket belongs to: the host's,
        // not the test's own.
        let inHost = try a.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(inHost) }
        let here = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(here) }
        func namespaceInode(ofSocket fd: Int32) -> UInt? {
            let ns = ioctl(fd, 0x894C /* SIOCGSKNS */)
            guard ns >= 0 else { return nil }
            defer { close(ns) }
            return inode(ofFD: ns)
        }
        XCTAssertEqual(namespaceInode(ofSocket: inHost), inode(ofFD: a.nsFD))
        XCTAssertNotNil(namespaceInode(ofSocket: here))
        XCTAssertNotEqual(namespaceInode(ofSocket: here), inode(ofFD: a.nsFD))
    }
}

final class SnapshotTests: XCTestCase {
    func testSnapshotShowsLinksAddressesRoutesAndRules() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a"), b = try net.addHost("b")
        try net.connect(a, "eth0", b, "eth0")
        try a.addAddress("10.9.10.1/24", dev: "eth0")
        try a.addRoute("10.99.0.0/16", via: "10.9.10.2")
        try a.applyNftables("table inet snap {\n chain c {\n type filter hook input priority 0;\n udp dport 1 counter drop\n }\n}\n")
        let text = net.snapshot()
        XCTAssertTrue(text.contains("## host a") && text.contains("## host b"), text)
        XCTAssertTrue(text.contains("10.9.10.1/24"), text)
        XCTAssertTrue(text.contains("10.99.0.0/16 via 10.9.10.2"), text)
        XCTAssertTrue(text.contains("udp dport 1 counter packets 0 bytes 0 drop"), text)
    }
}

final class RootNamespaceTests: XCTestCase {
    /// Links of the test's own namespace (the machine's, when run as root).
    private func ownLinks() throws -> Set<String> {
        let text = try FileIO.read("/proc/thread-self/net/dev")
        return Set(text.split(separator: "\n").dropFirst(2).compactMap {
            $0.split(separator: ":").first.map { $0.simTrimmed(" ") }
        })
    }

    func testNothingIsCreatedInTheCallersNamespace() throws {
        try requireRoot()
        let names: Set<String> = ["snprobe-a", "snprobe-b", "snprobe-br", "snprobe-c"]
        let before = try ownLinks()
        XCTAssertTrue(before.isDisjoint(with: names))
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a"), b = try net.addHost("b"), c = try net.addHost("c")
        try net.connect(a, "snprobe-a", b, "snprobe-b")
        try net.connect(c, "snprobe-c", b, "snprobe-c")
        try b.addBridge("snprobe-br", ports: ["snprobe-b", "snprobe-c"])
        XCTAssertTrue(a.hasLink("snprobe-a") && b.hasLink("snprobe-br") && c.hasLink("snprobe-c"))
        XCTAssertTrue(try ownLinks().isDisjoint(with: names))
        net.teardown()
        XCTAssertTrue(try ownLinks().isDisjoint(with: names))
    }
}
