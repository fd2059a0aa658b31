import XCTest
import DNSWire
@testable import Forwarder

/// DNS 0x20 (`--dns-0x20`) and where upstream IDs come from.
final class SpoofDefenceTests: XCTestCase {
    typealias H = CoreHarness

    func testApplyCaseAndCaseMatches() {
        var q = H.query("www.example-1.test")
        let nameEnd = q.count - 4
        let bits: UInt64 = 0b1010_0110_0101
        q.withUnsafeMutableBytes { Wire.applyCase($0, nameEnd: nameEnd, bits: bits) }
        // Label lengths, the digit and the hyphen are untouched; letters follow the bits.
        let name = q.withUnsafeBytes { Wire.nameText($0, 12) }
        XCTAssertEqual(name, "WwW.exAMplE-1.tEst")   // bit k (from the lowest) sets letter k
        XCTAssertEqual(q[12], 3)
        XCTAssertTrue(q.withUnsafeBytes { Wire.caseMatches($0, nameEnd: nameEnd, bits: bits) })
        // One letter in the other case: no match.
        var other = q
        other[13] ^= 0x20
        XCTAssertFalse(other.withUnsafeBytes { Wire.caseMatches($0, nameEnd: nameEnd, bits: bits) })
        XCTAssertFalse(H.query("www.example-1.test").withUnsafeBytes { Wire.caseMatches($0, nameEnd: nameEnd, bits: bits) })
    }

    func testCaseRandomisedQuestionMustBeEchoedExactly() throws {
        let h = H { $0.caseRandomization = true }
        XCTAssertNil(h.ask("www.example-long-name.test", id: 7))
        let sent = h.sends[0].message.questions[0].name.description
        XCTAssertEqual(sent.lowercased(), "www.example-long-name.test")
        XCTAssertNotEqual(sent, "www.example-long-name.test", "the upstream question has mixed case")
        // A reply with the right ID but the question in lower case (as a forger that did not
        // see the query would send): dropped and counted, the client is not answered.
        let good = h.reply(to: 0, answers: [H.a("www.example-long-name.test", "192.0.2.1")])
        var lower = good
        for i in 12..<(good.count) where i < 12 + sent.utf8.count + 2 { lower[i] = lower[i] | (lower[i] >= 0x41 && lower[i] <= 0x5A ? 0x20 : 0) }
        h.deliver(lower, attempt: h.sends[0].attempt, from: h.sends[0].server)
        XCTAssertTrue(h.replies.isEmpty)
        XCTAssertEqual(h.core.stats.droppedSpoofed, 1)
        // The genuine reply echoes the case: the client gets it, in its own letter case.
        h.deliver(good, attempt: h.sends[0].attempt, from: h.sends[0].server)
        XCTAssertEqual(h.replies.count, 1)
        XCTAssertEqual(h.replies[0].1.header.id, 7)
        XCTAssertEqual(h.replies[0].1.questions[0].name.description, "www.example-long-name.test")
        XCTAssertEqual(h.replies[0].1.answers.count, 1)
        // Cached, and served in the asker's case.
        let hit = try XCTUnwrap(h.ask("WWW.example-long-name.TEST", id: 8))
        XCTAssertEqual(hit.questions[0].name.description, "WWW.example-long-name.TEST")
        XCTAssertEqual(hit.answers.count, 1)
    }

    func testWithoutCaseRandomisationTheQuestionGoesAsAsked() {
        let h = H()
        XCTAssertNil(h.ask("Www.Example.test"))
        XCTAssertEqual(h.sends[0].message.questions[0].name.description, "Www.Example.test")
    }

    func testUpstreamIDsComeFromTheInstalledEntropy() {
        let h = H()
        var counter: UInt64 = 0x1234_5678_9ABC_DEF0
        var fills = 0
        h.core.entropy = { buf in
            fills += 1
            let words = buf.bindMemory(to: UInt64.self)
            for i in words.indices { words[i] = counter; counter &+= 0x0101_0101_0101_0101 }
        }
        XCTAssertNil(h.ask("a.example.test"))
        XCTAssertNil(h.ask("b.example.test"))
        XCTAssertEqual(fills, 1, "one 512-byte draw serves many queries")
        let first: UInt64 = 0x1234_5678_9ABC_DEF0
        XCTAssertEqual(h.sends[0].message.header.id, UInt16(truncatingIfNeeded: first >> 17))
        XCTAssertEqual(h.sends[1].message.header.id, UInt16(truncatingIfNeeded: (first &+ 0x0101_0101_0101_0101) >> 17))
    }
}
