import XCTest
@testable import DNSWire

final class RoundTripTests: XCTestCase {
    func name(_ s: String) -> DNSName { try! DNSName(s) }

    func sampleMessage() -> Message {
        var m = Message(header: Header(id: 0x1234, isResponse: true, authoritative: true, recursionDesired: true,
                                       recursionAvailable: true),
                        questions: [Question(name: name("www.Example.com"), type: .a)])
        let n = name("www.example.com")
        m.answers = [
            ResourceRecord(name: n, type: .cname, ttl: 300, rdata: .cname(name("host.example.com"))),
            ResourceRecord(name: name("host.example.com"), type: .a, ttl: 60, rdata: .a(IPv4Address(192, 0, 2, 1))),
            ResourceRecord(name: name("host.example.com"), type: .aaaa, ttl: 60,
                           rdata: .aaaa(IPv6Address("2001:db8::7")!)),
            ResourceRecord(name: name("example.com"), type: .mx, ttl: 3600,
                           rdata: .mx(preference: 10, exchange: name("mail.example.com"))),
            ResourceRecord(name: name("example.com"), type: .txt, ttl: 1,
                           rdata: .txt([Array("hello world".utf8), [], [0, 1, 255]])),
            ResourceRecord(name: name("_sip._udp.example.com"), type: .srv, ttl: 5,
                           rdata: .srv(SRV(priority: 1, weight: 2, port: 5060, target: name("sip.example.com")))),
            ResourceRecord(name: name("1.2.0.192.in-addr.arpa"), type: .ptr, ttl: 5,
                           rdata: .ptr(name("host.example.com"))),
            ResourceRecord(name: name("example.com"), type: RRType(65), ttl: 7, rdata: .unknown([1, 2, 3])),
        ]
        m.authorities = [
            ResourceRecord(name: name("example.com"), type: .ns, ttl: 86400, rdata: .ns(name("ns1.example.com"))),
            ResourceRecord(name: name("example.com"), type: .soa, ttl: 86400,
                           rdata: .soa(SOA(mname: name("ns1.example.com"), rname: name("hostmaster.example.com"),
                                           serial: 2024010101, refresh: 7200, retry: 900, expire: 1209600,
                                           minimum: 300))),
        ]
        m.edns = EDNS(udpSize: 4096, extendedRCode: 0, version: 0, dnssecOK: true,
                      options: [EDNSOption(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])])
        return m
    }

    func testRoundTripEveryType() throws {
        let m = sampleMessage()
        for compress in [true, false] {
            let bytes = m.encode(compress: compress)
            let d = try Message(decoding: bytes)
            XCTAssertEqual(d, m)
            // Byte-exact stability: decode -> encode gives the same bytes.
            XCTAssertEqual(d.encode(compress: compress), bytes)
            // Case is preserved on the wire even though == ignores it.
            XCTAssertEqual(d.questions.first?.name.labels[1], Array("Example".utf8))
        }
    }

    func testCompressionShrinks() throws {
        let m = sampleMessage()
        let c = m.encode(compress: true)
        let u = m.encode(compress: false)
        XCTAssertLessThan(c.count, u.count - 50, "compressed \(c.count) vs \(u.count)")
        // A pointer to the question name (offset 12) must appear.
        XCTAssertTrue(c.indices.dropLast().contains { c[$0] == 0xC0 && c[$0 + 1] == 12 })
        XCTAssertFalse(u.indices.dropLast().contains { u[$0] == 0xC0 && u[$0 + 1] == 12 })
    }

    func testSRVTargetNotCompressed() throws {
        let m = Message(questions: [Question(name: name("sip.example.com"), type: .srv)],
                        answers: [ResourceRecord(name: name("sip.example.com"), type: .srv, ttl: 1,
                                                 rdata: .srv(SRV(priority: 0, weight: 0, port: 1,
                                                                 target: name("sip.example.com"))))])
        let b = m.encode()
        // The SRV target (last 17 bytes) is written in full.
        XCTAssertEqual(Array(b.suffix(17)), name("sip.example.com").wireBytes)
        XCTAssertEqual(try Message(decoding: b), m)
    }

    func testEDNSFields() throws {
        var m = Message.query(id: 7, name: name("a.test"), type: .a,
                              edns: EDNS(udpSize: 1232, dnssecOK: true, options: [EDNSOption(code: 12, data: [0, 0])]))
        m.rcode = RCode(rawValue: 16 + 3) // extended: ext 1, low 3
        let d = try Message(decoding: m.encode())
        XCTAssertEqual(d.edns?.udpSize, 1232)
        XCTAssertEqual(d.edns?.dnssecOK, true)
        XCTAssertEqual(d.edns?.extendedRCode, 1)
        XCTAssertEqual(d.edns?.version, 0)
        XCTAssertEqual(d.edns?.options, [EDNSOption(code: 12, data: [0, 0])])
        XCTAssertEqual(d.header.rcodeLow, 3)
        XCTAssertEqual(d.rcode.rawValue, 19)
        let opt = d.additionals.first { $0.type == .opt }
        XCTAssertEqual(opt?.klass, 1232)
        XCTAssertEqual(opt?.ttl, 0x0100_8000)
        XCTAssertEqual(opt?.name, .root)
    }

    func testQuickQuestionAndKey() throws {
        let m = Message.query(id: 0xBEEF, name: name("WwW.ExAmple.COM"), type: .aaaa)
        let b = m.encode()
        let q = try QuickQuestion(parsing: b)
        XCTAssertEqual(q.id, 0xBEEF)
        XCTAssertEqual(q.qdcount, 1)
        XCTAssertEqual(q.type, 28)
        XCTAssertEqual(q.klass, 1)
        XCTAssertEqual(q.nameEnd, 12 + 17)
        XCTAssertEqual(q.questionEnd, b.count)
        XCTAssertEqual(canonicalQuestionKey(b, q), name("www.example.com").wireBytes + [0, 28, 0, 1])
    }
}
