import XCTest
@testable import DNSWire

final class NameAndAddressTests: XCTestCase {
    func testNameText() throws {
        let n = try DNSName("www.Example.com.")
        XCTAssertEqual(n.labels, [Array("www".utf8), Array("Example".utf8), Array("com".utf8)])
        XCTAssertEqual(n.description, "www.Example.com")
        XCTAssertEqual(try DNSName("www.Example.com"), n)
        XCTAssertEqual(try DNSName("."), .root)
        XCTAssertEqual(DNSName.root.description, ".")
        XCTAssertEqual(n.wireLength, 17)
        XCTAssertEqual(n.wireBytes.count, 17)
    }

    func testEscapes() throws {
        let n = try DNSName(labels: [Array("a.b".utf8), [0, 32, 0x5C, 200], Array("com".utf8)])
        XCTAssertEqual(n.description, "a\\.b.\\000\\032\\\\\\200.com")
        XCTAssertEqual(try DNSName(n.description).labels, n.labels)
        XCTAssertEqual(try DNSName("a\\.b").labels, [Array("a.b".utf8)])
        XCTAssertEqual(try DNSName("\\065x").labels, [Array("Ax".utf8)])
    }

    func testCaseInsensitiveEqualityAndHash() throws {
        let a = try DNSName("WWW.example.COM"), b = try DNSName("www.EXAMPLE.com")
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.hashValue, b.hashValue)
        XCTAssertEqual(Set([a, b]).count, 1)
        XCTAssertNotEqual(a, try DNSName("www.example.org"))
        XCTAssertNotEqual(try DNSName("a.b"), try DNSName("ab"))
        XCTAssertEqual(a.lowercased().description, "www.example.com")
        // Only ASCII letters fold.
        XCTAssertNotEqual(try DNSName(labels: [[0xC4]]), try DNSName(labels: [[0xE4]]))
    }

    func testSubdomain() throws {
        let zone = try DNSName("Example.com")
        XCTAssertTrue(try DNSName("a.b.example.COM").isSubdomain(of: zone))
        XCTAssertTrue(zone.isSubdomain(of: zone))
        XCTAssertFalse(try DNSName("badexample.com").isSubdomain(of: zone))
        XCTAssertFalse(try DNSName("com").isSubdomain(of: zone))
        XCTAssertTrue(zone.isSubdomain(of: .root))
    }

    func testRRTypeAndRCode() {
        XCTAssertEqual(RRType(name: "aaaa"), .aaaa)
        XCTAssertEqual(RRType(name: "MX"), .mx)
        XCTAssertEqual(RRType(name: "TYPE65")?.rawValue, 65)
        XCTAssertNil(RRType(name: "TYPE70000"))
        XCTAssertNil(RRType(name: "BOGUS"))
        XCTAssertEqual(RRType(999).description, "TYPE999")
        XCTAssertEqual(RRType.srv.description, "SRV")
        XCTAssertEqual([RRType.a, .ns, .cname, .soa, .ptr, .mx, .txt, .aaaa, .srv, .opt, .any].map(\.rawValue),
                       [1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 255])
        XCTAssertEqual([RCode.noError, .formErr, .servFail, .nxDomain, .notImp, .refused].map(\.rawValue), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(RCode.nxDomain.description, "NXDOMAIN")
    }

    func testIPv4() {
        XCTAssertEqual(IPv4Address("192.0.2.1")?.array, [192, 0, 2, 1])
        XCTAssertEqual(IPv4Address("0.0.0.0")?.uint32, 0)
        XCTAssertEqual(IPv4Address("255.255.255.255")?.description, "255.255.255.255")
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", "a.b.c.d", "1.2.3.4 ", "-1.2.3.4"] {
            XCTAssertNil(IPv4Address(bad), bad)
        }
    }

    func testIPv6() {
        let cases: [(String, String)] = [
            ("2001:db8::7", "2001:db8::7"),
            ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),     // first of equal runs
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // a single zero group stays
            ("0:0:1:0:0:0:1:0", "0:0:1::1:0"),                 // longest run wins
            ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
            ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        ]
        for (input, expected) in cases {
            XCTAssertEqual(IPv6Address(input)?.description, expected, input)
            if let a = IPv6Address(input) { XCTAssertEqual(IPv6Address(a.description), a) }
        }
        XCTAssertEqual(IPv6Address("::1"), IPv6Address.loopback)
        XCTAssertEqual(IPv6Address("2001:db8::7")?.bytes, [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [7])
        for bad in ["", ":", ":::", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "g::", "1:2:3:4:5:6:7", ":1::",
                    "1:", "::1.2.3", "1:2:3:4:5:6:7:1.2.3.4", "fe80::1%eth0"] {
            XCTAssertNil(IPv6Address(bad), bad)
        }
    }

    func testHeaderFlags() {
        var h = Header(id: 1, flags: 0xFFFF)
        XCTAssertTrue(h.isResponse && h.authoritative && h.truncated && h.recursionDesired && h.recursionAvailable
                      && h.z && h.authenticData && h.checkingDisabled)
        XCTAssertEqual(h.opcode, 15)
        XCTAssertEqual(h.rcodeLow, 15)
        XCTAssertEqual(h.flags, 0xFFFF)
        h.flags = 0x8180
        XCTAssertEqual(h, Header(id: 1, isResponse: true, recursionDesired: true, recursionAvailable: true))
    }

    func testReplySkeleton() throws {
        var q = Message.query(id: 99, name: try DNSName("x.test"), type: .mx, edns: EDNS(udpSize: 4096, dnssecOK: true))
        q.header.checkingDisabled = true
        let r = Message.reply(to: q, rcode: .servFail)
        XCTAssertEqual(r.header.id, 99)
        XCTAssertTrue(r.header.isResponse)
        XCTAssertTrue(r.header.recursionDesired)
        XCTAssertTrue(r.header.recursionAvailable)
        XCTAssertTrue(r.header.checkingDisabled)
        XCTAssertEqual(r.questions, q.questions)
        XCTAssertEqual(r.rcode, .servFail)
        XCTAssertEqual(r.edns?.dnssecOK, true)
        let plain = Message.reply(to: Message.query(id: 1, name: .root, type: .ns), rcode: .refused)
        XCTAssertNil(plain.edns)
        XCTAssertEqual(try Message(decoding: plain.encode()).rcode, .refused)
    }

    func testEncodeMaxSizeKeepsOPTAndSetsTC() throws {
        var m = Message.reply(to: Message.query(id: 5, name: try DNSName("t.test"), type: .txt, edns: EDNS()),
                              rcode: .noError)
        for i in 0..<20 {
            m.answers.append(ResourceRecord(name: try DNSName("t.test"), type: .txt, ttl: 60,
                                            rdata: .txt([Array("record number \(i) with some text".utf8)])))
        }
        m.additionals.insert(ResourceRecord(name: try DNSName("extra.test"), type: .a, ttl: 1,
                                            rdata: .a(IPv4Address(10, 0, 0, 1))), at: 0)
        let (full, t0) = m.encode(maxSize: 65535)
        XCTAssertFalse(t0)
        XCTAssertEqual(full, m.encode())
        for limit in [512, 300, 100, 60, 40] {
            let (b, t) = m.encode(maxSize: limit)
            XCTAssertTrue(t, "\(limit)")
            XCTAssertLessThanOrEqual(b.count, limit)
            let d = try Message(decoding: b)
            XCTAssertTrue(d.header.truncated)
            XCTAssertEqual(d.questions, m.questions)
            XCTAssertEqual(d.answers, Array(m.answers.prefix(d.answers.count)))
            XCTAssertTrue(d.additionals.allSatisfy { $0.type == .opt }, "additional A dropped first")
            XCTAssertNotNil(d.edns, "\(limit): OPT kept")
        }
        // Only the additional A has to go: TC is set (it was not OPT).
        let fullSize = m.encode().count
        let (b1, t1) = m.encode(maxSize: fullSize - 1)
        XCTAssertTrue(t1)
        XCTAssertEqual(try Message(decoding: b1).answers.count, 20)
        // Too small for anything: header only, TC.
        let (tiny, t2) = m.encode(maxSize: 5)
        XCTAssertTrue(t2)
        XCTAssertEqual(tiny.count, 12)
        XCTAssertTrue(try Message(decoding: tiny).header.truncated)
        // Only OPT does not fit: dropped without TC.
        let q = Message.query(id: 1, name: try DNSName("a.test"), type: .a, edns: EDNS())
        let (noOpt, t3) = q.encode(maxSize: q.encode().count - 1)
        XCTAssertFalse(t3)
        XCTAssertNil(try Message(decoding: noOpt).edns)
    }
}
