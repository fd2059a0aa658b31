import Glibc
import XCTest
@testable import SimNet

final class NftParserTests: XCTestCase {
    func testParsesRulesHandlesAndCounters() {
        let listing = """
        table inet filter { # handle 1
        \tset blocked { # handle 3
        \t\ttype ipv4_addr
        \t\telements = { 10.0.0.1, 10.0.0.2 }
        \t}

        \tchain input { # handle 1
        \t\ttype filter hook input priority filter; policy accept;
        \t\tmeta nftrace set 1 # handle 2
        \t\tudp dport 53 counter packets 3 bytes 252 drop # handle 7
        \t\tip saddr { 10.1.0.1, 10.1.0.2 } accept # handle 8
        \t}
        }
        table ip nat { # handle 2
        \tchain post { # handle 1
        \t\ttype nat hook postrouting priority srcnat; policy accept;
        \t\toifname "eth0" masquerade # handle 4
        \t}
        }
        """
        let rules = NftParser.parseRules(listing)
        XCTAssertEqual(rules.map(\.handle), [2, 7, 8, 4])
        XCTAssertEqual(rules[1], NftRule(family: "inet", table: "filter", chain: "input", handle: 7,
                                         text: "udp dport 53 counter drop", packets: 3, bytes: 252))
        XCTAssertEqual(rules[2].text, "ip saddr { 10.1.0.1, 10.1.0.2 } accept")
        XCTAssertNil(rules[2].packets)
        XCTAssertEqual(rules[3].family, "ip")
        XCTAssertEqual(rules[3].table, "nat")
        XCTAssertEqual(rules[3].chain, "post")
        XCTAssertEqual(rules[3].text, "oifname \"eth0\" masquerade")
    }

    func testParsesTraceLines() {
        var packets: [String: PacketSummary] = [:]
        let lines = [
            "trace id 1786b005 inet filter input packet: iif \"eth0\" @ll,0,112 0x800 ip saddr 10.0.0.1 ip daddr 10.0.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 54240 ip protocol udp ip length 31 udp sport 33441 udp dport 9999 udp length 11 @th,64,24 0x68690a ",
            "trace id 1786b005 inet filter input rule meta nftrace set 1 # handle 2 (verdict continue)",
            "trace id 1786b005 inet filter input rule udp dport 9999 counter packets 2 bytes 62 drop # handle 3 (verdict drop)",
            "trace id 45740253 inet filter input policy drop ",
            "not a trace line",
        ]
        let evs = lines.compactMap { NftParser.parseTraceLine($0, packets: &packets) }
        XCTAssertEqual(evs.count, 4)
        XCTAssertEqual(evs[0].kind, .packet)
        XCTAssertEqual(evs[0].packet, PacketSummary(iif: "eth0", oif: nil, saddr: "10.0.0.1", daddr: "10.0.0.2",
                                                    l4proto: "udp", sport: 33441, dport: 9999, icmpType: nil))
        XCTAssertEqual(evs[1].verdict, "continue")
        XCTAssertFalse(evs[1].isDrop)
        XCTAssertEqual(evs[2].kind, .rule)
        XCTAssertEqual(evs[2].handle, 3)
        XCTAssertEqual(evs[2].ruleText, "udp dport 9999 counter drop")
        XCTAssertEqual(evs[2].verdict, "drop")
        XCTAssertTrue(evs[2].isDrop)
        XCTAssertEqual(evs[2].packet?.dport, 9999)
        XCTAssertEqual(evs[3].kind, .policy)
        XCTAssertEqual(evs[3].verdict, "drop")
        XCTAssertTrue(evs[3].isDrop)
        XCTAssertNil(evs[3].packet)
    }
}

final class NftablesTests: XCTestCase {
    /// left -- router -- right; the router masquerades out of r0.
    func testMasqueradeShowsRouterAddressAtFarSide() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let left = try net.addHost("left"), router = try net.addHost("router"), right = try net.addHost("right")
        try net.connect(left, "eth0", router, "l0")
        try net.connect(router, "r0", right, "eth0")
        try left.addAddress("172.17.0.3/16", dev: "eth0")
        try router.addAddress("172.17.0.1/16", dev: "l0")
        try router.addAddress("198.51.100.1/24", dev: "r0")
        try right.addAddress("198.51.100.2/24", dev: "eth0")
        try left.addRoute("default", via: "172.17.0.1")
        // right has no route back to 172.17.0.0/16: only NAT makes replies work.
        try router.enableForwarding()
        try router.applyNftables("""
        table ip nat {
          chain postrouting {
            type nat hook postrouting priority srcnat; policy accept;
            ip saddr 172.17.0.0/16 oifname != "l0" counter masquerade
          }
        }
        """)
        let server = try UDP.bound(right, "198.51.100.2", port: 5400)
        defer { close(server) }
        let client = try UDP.bound(left, "0.0.0.0")
        defer { close(client) }
        try UDP.send(client, "natted", to: "198.51.100.2", port: 5400)
        let got = UDP.receiveWithPort(server, timeout: 5)
        XCTAssertEqual(got?.text, "natted")
        XCTAssertEqual(got?.from, "198.51.100.1")
        // The reply is un-NATed by conntrack back to the client.
        let srcPort = try XCTUnwrap(got?.port)
        try UDP.send(server, "reply", to: "198.51.100.1", port: srcPort)
        let back = UDP.receive(client, timeout: 5)
        XCTAssertEqual(back?.text, "reply")
        XCTAssertEqual(back?.from, "198.51.100.2")
        let masq = try router.nftRules().first { $0.text.contains("masquerade") }
        XCTAssertEqual(masq?.packets, 1) // the first packet of the flow only
    }

    func testDropRuleTraceNamesRuleAndCounterCounts() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a"), b = try net.addHost("b")
        try net.connect(a, "eth0", b, "eth0")
        try a.addAddress("10.9.6.1/24", dev: "eth0")
        try b.addAddress("10.9.6.2/24", dev: "eth0")
        try b.applyNftables("""
        table inet filter {
          chain input {
            type filter hook input priority filter; policy accept;
            meta nftrace set 1
            udp dport 5555 counter drop
          }
        }
        """)
        let drop = try XCTUnwrap(try b.nftRules().first { $0.text == "udp dport 5555 counter drop" })
        XCTAssertEqual(drop.packets, 0)
        let trace = try b.startTrace()
        defer { trace.stop() }

        let server = try UDP.bound(b, "10.9.6.2", port: 5555)
        defer { close(server) }
        let client = try UDP.bound(a, "0.0.0.0")
        defer { close(client) }
        for i in 0..<3 { try UDP.send(client, "x\(i)", to: "10.9.6.2", port: 5555) }
        XCTAssertTrue(trace.wait(timeout: 10) { $0.filter(\.isDrop).count >= 3 }, "\(trace.lines)")
        XCTAssertNil(UDP.receive(server, timeout: 0.05))
        let drops = trace.drops
        XCTAssertEqual(drops.count, 3)
        XCTAssertEqual(drops.first?.handle, drop.handle)
        XCTAssertEqual(drops.first?.packet?.saddr, "10.9.6.1")
        XCTAssertEqual(drops.first?.packet?.dport, 5555)
        XCTAssertEqual(trace.dropSummary(), [
            "rule `udp dport 5555 counter drop` (handle \(drop.handle)) in chain input of table inet filter on host b dropped 3 packets",
        ])
        XCTAssertEqual(try b.nftRule(family: "inet", table: "filter", handle: drop.handle)?.packets, 3)

        // Run-time change: delete the drop, the next packet arrives.
        try b.deleteNftRule(family: "inet", table: "filter", chain: "input", handle: drop.handle)
        XCTAssertNil(try b.nftRule(family: "inet", table: "filter", handle: drop.handle))
        try UDP.send(client, "through", to: "10.9.6.2", port: 5555)
        XCTAssertEqual(UDP.receive(server, timeout: 5)?.text, "through")

        // And add one back at run time.
        let added = try b.addNftRule(family: "inet", table: "filter", chain: "input", rule: "udp dport 5555 counter drop")
        XCTAssertNotEqual(added.handle, drop.handle)
        XCTAssertEqual(added.text, "udp dport 5555 counter drop")
        try UDP.send(client, "dropped again", to: "10.9.6.2", port: 5555)
        XCTAssertTrue(eventually { (try? b.nftRule(family: "inet", table: "filter", handle: added.handle)?.packets) == 1 })
        XCTAssertNil(UDP.receive(server, timeout: 0.05))
    }

    func testBadRulesetIsAClearError() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a")
        XCTAssertThrowsError(try a.applyNftables("table inet t {\n chain c {\n bogus stuff\n }\n}\n")) {
            let text = "\($0)"
            XCTAssertTrue(text.contains("nft -f -") && text.contains("host a") && text.contains(":3:"), text)
        }
        XCTAssertThrowsError(try a.addNftRule(family: "inet", table: "nope", chain: "input", rule: "drop"))
        XCTAssertThrowsError(try a.addNftRule(family: "inet", table: "x;y", chain: "input", rule: "drop"))
    }

    func testICMPPortUnreachableCounted() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a"), b = try net.addHost("b")
        try net.connect(a, "eth0", b, "eth0")
        try a.addAddress("10.9.7.1/24", dev: "eth0")
        try b.addAddress("10.9.7.2/24", dev: "eth0")
        try a.addAddress("fd00:7::1/64", dev: "eth0")
        try b.addAddress("fd00:7::2/64", dev: "eth0")
        let before = try b.netStats()
        XCTAssertEqual(before["Icmp.OutDestUnreachs"], 0)
        let client = try UDP.bound(a, "0.0.0.0")
        defer { close(client) }
        try UDP.send(client, "nobody home", to: "10.9.7.2", port: 5999)
        XCTAssertTrue(eventually { (try? b.netStats()["Icmp.OutDestUnreachs"]) == 1 })
        XCTAssertEqual(try b.netStats()["Udp.NoPorts"], 1)
        let client6 = try UDP.bound(a, "::")
        defer { close(client6) }
        try UDP.send(client6, "nobody home", to: "fd00:7::2", port: 5999)
        XCTAssertTrue(eventually { (try? b.netStats()["Icmp6OutDestUnreachs"]) == 1 })
        // a's own counters are separate.
        XCTAssertEqual(try a.netStats()["Icmp.OutDestUnreachs"], 0)
    }
}
