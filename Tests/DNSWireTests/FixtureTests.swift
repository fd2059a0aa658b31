import XCTest
@testable import DNSWire

final class FixtureTests: XCTestCase {
    func n(_ s: String) -> DNSName { try! DNSName(s) }

    func reply(_ name: String) throws -> Message { try Message(decoding: try Fixtures.load("\(name)-reply")) }
    func query(_ name: String) throws -> Message { try Message(decoding: try Fixtures.load("\(name)-query")) }

    func testEveryFixtureDecodesAndReencodesStably() throws {
        for (name, bytes) in try Fixtures.all {
            let m = try Message(decoding: bytes)
            let again = try Message(decoding: m.encode())
            XCTAssertEqual(again, m, name)
            XCTAssertEqual(again.encode(), m.encode(), name)
            // Our compressed encoding is never larger than what dig/dnsmasq sent.
            XCTAssertLessThanOrEqual(m.encode().count, bytes.count, name)
            // Uncompressed encoding decodes to the same message.
            XCTAssertEqual(try Message(decoding: m.encode(compress: false)), m, name)
        }
    }

    func testQueryFromDig() throws {
        let q = try query("a")
        XCTAssertFalse(q.header.isResponse)
        XCTAssertTrue(q.header.recursionDesired)
        XCTAssertTrue(q.header.authenticData) // dig sets AD in queries
        XCTAssertEqual(q.questions, [Question(name: n("a.test"), type: .a, klass: 1)])
        XCTAssertEqual(q.edns?.udpSize, 1232)
        XCTAssertEqual(q.edns?.dnssecOK, false)
        XCTAssertEqual(q.edns?.options.first?.code, 10) // COOKIE
        XCTAssertEqual(q.edns?.options.first?.data.count, 8)

        XCTAssertNil(try query("a-noedns").edns)
        XCTAssertEqual(try query("a-dnssec").edns?.dnssecOK, true)

        let bytes = try Fixtures.load("a-query")
        let quick = try QuickQuestion(parsing: bytes)
        XCTAssertEqual(quick.id, q.header.id)
        XCTAssertEqual(quick.flags, q.header.flags)
        XCTAssertEqual(quick.type, 1)
        XCTAssertEqual(quick.klass, 1)
        XCTAssertEqual(quick.nameEnd, 12 + n("a.test").wireLength)
        XCTAssertEqual(canonicalQuestionKey(bytes, quick), n("a.test").wireBytes + [0, 1, 0, 1])
    }

    func testAReply() throws {
        let q = try query("a"), r = try reply("a")
        XCTAssertEqual(r.header.id, q.header.id)
        XCTAssertTrue(r.header.isResponse)
        XCTAssertTrue(r.header.recursionDesired)
        XCTAssertTrue(r.header.recursionAvailable)
        XCTAssertFalse(r.header.truncated)
        XCTAssertEqual(r.rcode, .noError)
        XCTAssertEqual(r.answers, [ResourceRecord(name: n("a.test"), type: .a, ttl: 300,
                                                  rdata: .a(IPv4Address("192.0.2.1")!))])
        XCTAssertEqual(r.answers.first?.rdata.description, "192.0.2.1")
        XCTAssertNotNil(r.edns)
        XCTAssertNil(try reply("a-noedns").edns)
        XCTAssertEqual(try reply("a-dnssec").edns?.dnssecOK, true)
    }

    func testTypedReplies() throws {
        XCTAssertEqual(try reply("aaaa").answers.first?.rdata, .aaaa(IPv6Address("2001:db8::7")!))
        XCTAssertEqual(try reply("aaaa").answers.first?.rdata.description, "2001:db8::7")
        XCTAssertEqual(try reply("mx").answers.first?.rdata, .mx(preference: 10, exchange: n("mail.m.test")))
        XCTAssertEqual(try reply("txt").answers.first?.rdata, .txt([Array("hello world".utf8)]))
        XCTAssertEqual(try reply("srv").answers.first?.rdata,
                       .srv(SRV(priority: 0, weight: 0, port: 5060, target: n("sip.s.test"))))
        XCTAssertEqual(try reply("ptr").answers.first?.rdata, .ptr(n("h.test")))
        XCTAssertEqual(try reply("ptr").questions.first?.name, n("7.2.0.192.in-addr.arpa"))
        let c = try reply("cname")
        XCTAssertEqual(c.answers.map(\.rdata), [.cname(n("h.test")), .a(IPv4Address(192, 0, 2, 7))])
        XCTAssertEqual(c.answers.map(\.name), [n("c.test"), n("h.test")])
    }

    func testNegativeReplies() throws {
        let nx = try reply("nxdomain")
        XCTAssertEqual(nx.rcode, .nxDomain)
        XCTAssertTrue(nx.answers.isEmpty)
        XCTAssertEqual(try reply("refused").rcode, .refused)

        let soaNX = try reply("nxdomain-soa")
        XCTAssertEqual(soaNX.rcode, .nxDomain)
        XCTAssertTrue(soaNX.header.authoritative)
        let soa = SOA(mname: n("ns.z.test"), rname: n("hostmaster.z.test"), serial: 2026112201, refresh: 1200,
                      retry: 120, expire: 604800, minimum: 600)
        XCTAssertEqual(soaNX.authorities.first?.name, n("z.test"))
        XCTAssertEqual(soaNX.authorities.first?.rdata, .soa(soa))

        let nodata = try reply("nodata-soa")
        XCTAssertEqual(nodata.rcode, .noError)
        XCTAssertTrue(nodata.answers.isEmpty)
        XCTAssertEqual(nodata.authorities.first?.type, .soa)
    }

    func testBigAndTruncatedReplies() throws {
        let big = try reply("big")
        XCTAssertEqual(big.answers.count, 12)
        XCTAssertFalse(big.header.truncated)
        let tc = try reply("big-tc")
        XCTAssertTrue(tc.header.truncated)
        XCTAssertLessThanOrEqual(try Fixtures.load("big-tc-reply").count, 512)
        XCTAssertLessThan(tc.answers.count, 12)

        // Our own truncation of the full answer to 512 bytes.
        let (bytes, truncated) = big.encode(maxSize: 512)
        XCTAssertTrue(truncated)
        XCTAssertLessThanOrEqual(bytes.count, 512)
        let ours = try Message(decoding: bytes)
        XCTAssertTrue(ours.header.truncated)
        XCTAssertEqual(ours.answers, Array(big.answers.prefix(ours.answers.count)))
        XCTAssertGreaterThan(ours.answers.count, 0)
        XCTAssertNotNil(ours.edns, "OPT is kept while it fits")
        // Not one more record would have fitted.
        var plusOne = ours
        plusOne.answers = Array(big.answers.prefix(ours.answers.count + 1))
        XCTAssertGreaterThan(plusOne.encode().count, 512)

        // It all fits in 1232.
        let (full, t2) = big.encode(maxSize: 1232)
        XCTAssertFalse(t2)
        XCTAssertEqual(try Message(decoding: full), big)
    }
}
