import DNSWire
import XCTest
@testable import Sim

final class ZoneTests: XCTestCase {
    let zone = ActorTestSupport.zone

    func testExactNameAndType() throws {
        let a = zone.answer(name: try DNSName("HAT.com"), type: .a)
        XCTAssertEqual(a.rcode, .noError)
        XCTAssertEqual(a.answers.map { Zone.text(of: $0.rdata) }, ["192.168.122.203"])
        XCTAssertEqual(a.answers.first?.ttl, 60)
        XCTAssertEqual(a.answers.first?.name.description, "HAT.com", "the owner keeps the question's case")
        XCTAssertTrue(a.authorities.isEmpty)
        XCTAssertEqual(zone.answer(name: try DNSName("hat.com"), type: .mx).answers.map { Zone.text(of: $0.rdata) },
                       ["10 mail.hat.com"])
        XCTAssertEqual(zone.answer(name: try DNSName("hat.com"), type: .txt).answers.map { Zone.text(of: $0.rdata) },
                       ["v=spf1 -all"])
        XCTAssertEqual(zone.answer(name: try DNSName("v6.hat.com"), type: .aaaa).answers.map { Zone.text(of: $0.rdata) },
                       ["2001:db8::203"])
    }

    func testCNAMEChainInsideZone() throws {
        let a = zone.answer(name: try DNSName("www.hat.com"), type: .a)
        XCTAssertEqual(a.rcode, .noError)
        XCTAssertEqual(a.answers.map { $0.type }, [.cname, .a])
        XCTAssertEqual(a.answers.map { $0.name.description }, ["www.hat.com", "hat.com"])
        XCTAssertEqual(a.answers.map { Zone.text(of: $0.rdata) }, ["hat.com", "192.168.122.203"])
        // Asking for the CNAME itself does not follow it.
        XCTAssertEqual(zone.answer(name: try DNSName("www.hat.com"), type: .cname).answers.count, 1)
    }

    func testNXDOMAINAndNODATACarryTheSOA() throws {
        XCTAssertEqual(zone.origin.description, "hat.com")
        let nx = zone.answer(name: try DNSName("nope.hat.com"), type: .a)
        XCTAssertEqual(nx.rcode, .nxDomain)
        XCTAssertTrue(nx.answers.isEmpty)
        XCTAssertEqual(nx.authorities.map { $0.type }, [.soa])
        XCTAssertEqual(nx.authorities.first?.name.description, "hat.com")
        let nodata = zone.answer(name: try DNSName("mail.hat.com"), type: .aaaa)
        XCTAssertEqual(nodata.rcode, .noError)
        XCTAssertTrue(nodata.answers.isEmpty)
        XCTAssertEqual(nodata.authorities.map { $0.type }, [.soa])
        if case .soa(let soa) = nodata.authorities[0].rdata {
            XCTAssertEqual(soa.minimum, 60)
        } else {
            XCTFail("authority is not an SOA")
        }
    }

    func testCNAMELoopAndDanglingTarget() throws {
        let z = try Zone(["a.test": [.init("CNAME", "b.test")], "b.test": [.init("CNAME", "a.test")],
                          "c.test": [.init("CNAME", "gone.test")]])
        let loop = z.answer(name: try DNSName("a.test"), type: .a)
        XCTAssertEqual(loop.answers.count, 2, "a loop ends after one round")
        let dangling = z.answer(name: try DNSName("c.test"), type: .a)
        XCTAssertEqual(dangling.rcode, .nxDomain)
        XCTAssertEqual(dangling.answers.map { $0.type }, [.cname])
    }

    func testSimpleFormAndExplicitSOA() throws {
        let z = try Zone(simple: ["hat.com": ["A": ["192.168.122.204"]]], ttl: 30)
        XCTAssertEqual(z.answer(name: try DNSName("hat.com"), type: .a).answers.first?.ttl, 30)
        let withSOA = try Zone(["example.org": [.init("SOA", "ns1.example.org admin.example.org 7 1 2 3 42")],
                                "x.example.org": [.init("A", "10.0.0.1")]])
        XCTAssertEqual(withSOA.origin.description, "example.org")
        let nx = withSOA.answer(name: try DNSName("y.example.org"), type: .a)
        guard case .soa(let soa) = nx.authorities.first?.rdata else { return XCTFail("no SOA") }
        XCTAssertEqual(soa.serial, 7)
        XCTAssertEqual(soa.minimum, 42)
    }

    func testBadEntriesNameWhatIsWrong() {
        func message(_ entries: [String: [Zone.Entry]]) -> String {
            do {
                _ = try Zone(entries)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(message(["h.com": [.init("A", "300.1.1.1")]]).contains("h.com A \"300.1.1.1\""))
        XCTAssertTrue(message(["h.com": [.init("AAAA", "1.2.3.4")]]).contains("IPv6"))
        XCTAssertTrue(message(["h.com": [.init("MX", "ten mail.h.com")]]).contains("not a number"))
        XCTAssertTrue(message(["h.com": [.init("BOGUS", "x")]]).contains("unknown type"))
        XCTAssertTrue(message(["h.com": [.init("SOA", "a b 1")]]).contains("mname rname"))
        XCTAssertTrue(message(["bad..name": [.init("A", "1.2.3.4")]]).contains("bad..name"))
    }
}

final class ZoneWildcardTests: XCTestCase {
    func testWildcardAnswersNamesWithoutTheirOwnRecords() throws {
        let zone = try Zone(["*.hat.com": [Zone.Entry("A", "192.168.122.203")], "www.hat.com": [Zone.Entry("A", "10.0.0.1")]])
        let hit = zone.answer(name: try DNSName("n42.hat.com"), type: .a)
        XCTAssertEqual(hit.rcode, .noError)
        XCTAssertEqual(hit.answers.map(\.name.description), ["n42.hat.com"])
        XCTAssertEqual(hit.answers.map { Zone.text(of: $0.rdata) }, ["192.168.122.203"])
        XCTAssertEqual(zone.answer(name: try DNSName("a.b.hat.com"), type: .a).answers.count, 1)
        XCTAssertEqual(zone.answer(name: try DNSName("www.hat.com"), type: .a).answers.map { Zone.text(of: $0.rdata) }, ["10.0.0.1"])
        XCTAssertEqual(zone.answer(name: try DNSName("other.com"), type: .a).rcode, .nxDomain)
    }
}
