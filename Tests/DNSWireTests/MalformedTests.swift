import XCTest
@testable import DNSWire

/// Every malformed case gives its DNSError.Kind (and never traps).
final class MalformedTests: XCTestCase {
    func header(qd: UInt16 = 0, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) -> [UInt8] {
        [0x12, 0x34, 0x81, 0x80,
         UInt8(qd >> 8), UInt8(qd & 0xFF), UInt8(an >> 8), UInt8(an & 0xFF),
         UInt8(ns >> 8), UInt8(ns & 0xFF), UInt8(ar >> 8), UInt8(ar & 0xFF)]
    }

    /// "a.test" A IN question.
    let question: [UInt8] = [1, 0x61, 4, 0x74, 0x65, 0x73, 0x74, 0, 0, 1, 0, 1]

    func label(_ n: Int, _ c: UInt8 = 0x78) -> [UInt8] { [UInt8(n)] + [UInt8](repeating: c, count: n) }

    func expect(_ bytes: [UInt8], _ kind: DNSError.Kind, offset: Int? = nil,
                file: StaticString = #filePath, line: UInt = #line) {
        do {
            let m = try Message(decoding: bytes)
            XCTFail("decoded, expected \(kind): \(m)", file: file, line: line)
        } catch let e as DNSError {
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            if let offset { XCTAssertEqual(e.offset, offset, "\(e)", file: file, line: line) }
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    /// An answer record "a.test" (pointer to the question) of `type` with `rdata`.
    func answer(type: UInt16, rdata: [UInt8], rdlength: Int? = nil) -> [UInt8] {
        let len = rdlength ?? rdata.count
        return header(qd: 1, an: 1) + question
            + [0xC0, 12, UInt8(type >> 8), UInt8(type & 0xFF), 0, 1, 0, 0, 1, 0, UInt8(len >> 8), UInt8(len & 0xFF)]
            + rdata
    }

    func testValidBaseline() throws {
        // The helpers build valid packets; the cases below break exactly one thing.
        let m = try Message(decoding: answer(type: 1, rdata: [192, 0, 2, 1]))
        XCTAssertEqual(m.answers.first?.rdata, .a(IPv4Address(192, 0, 2, 1)))
        XCTAssertEqual(m.answers.first?.ttl, 256)
    }

    func testTruncated() {
        expect([], .truncated, offset: 0)
        expect(Array(header().prefix(11)), .truncated)
        expect(header(qd: 1) + Array(question.prefix(10)), .truncated, offset: 22) // QCLASS cut
        expect(header(qd: 1) + [3, 0x61, 0x62, 0x63, 0, 0], .truncated, offset: 17) // QTYPE/QCLASS cut
        expect(header(qd: 1) + [9, 0x61, 0x62, 0x63, 0x64, 0x65], .truncated, offset: 12) // label runs off
        // Every proper prefix of a real packet is an error, never a trap.
        let full = answer(type: 1, rdata: [192, 0, 2, 1])
        for n in 0..<full.count {
            XCTAssertThrowsError(try Message(decoding: Array(full.prefix(n))), "prefix \(n)")
        }
        // RDLENGTH past the end.
        expect(answer(type: 1, rdata: [192, 0, 2, 1], rdlength: 5), .truncated)
    }

    func testPointerLoop() {
        expect(header(qd: 1) + [0xC0, 12, 0, 1, 0, 1], .pointerLoop, offset: 12)        // to itself
        expect(header(qd: 1) + [1, 0x61, 0xC0, 12, 0, 1, 0, 1], .pointerLoop, offset: 14) // back to own start
    }

    func testForwardPointer() {
        expect(header(qd: 1) + [0xC0, 16, 0, 1, 0, 1, 1, 0x61, 0], .forwardPointer, offset: 12)
        // In an answer: points at a name that comes later.
        let p = header(qd: 1, an: 1) + question + [0xC0, 40, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]
            + [1, 0x62, 0]
        expect(p, .forwardPointer, offset: 24)
    }

    func testBadPointer() {
        expect(header(qd: 1) + [0xC0, 2, 0, 1, 0, 1], .badPointer, offset: 12) // into the header
    }

    func testNameTooLong() {
        // Uncompressed: 4 labels of 63 = 257 wire bytes.
        var name: [UInt8] = []
        for _ in 0..<4 { name += label(63) }
        expect(header(qd: 1) + name + [0, 0, 1, 0, 1], .nameTooLong)
        // Exactly 255 is fine: 3*64 + 62 + 1 = 255.
        let ok = label(63) + label(63) + label(63) + label(61) + [0]
        XCTAssertEqual(ok.count, 255)
        XCTAssertNoThrow(try Message(decoding: header(qd: 1) + ok + [0, 1, 0, 1]))
        // Compressed: 2*64 labels + pointer to a 193-byte name = 321.
        let first = label(63) + label(63) + label(63) + [0, 0, 1, 0, 1]
        let second = label(63) + label(63) + [0xC0, 12, 0, 1, 0, 1]
        expect(header(qd: 2) + first + second, .nameTooLong)
    }

    func testBadLabelType() {
        expect(header(qd: 1) + [0x41, 0x61, 0, 0, 1, 0, 1], .badLabelType, offset: 12)
        expect(header(qd: 1) + [0x80, 0x61, 0, 0, 1, 0, 1], .badLabelType, offset: 12)
        expect(header(qd: 1) + [1, 0x61, 0x7F] + [UInt8](repeating: 0, count: 130), .badLabelType, offset: 14)
    }

    func testBadRDataLength() {
        expect(answer(type: 1, rdata: [192, 0, 2]), .badRDataLength)                     // A, 3 bytes
        expect(answer(type: 1, rdata: [192, 0, 2, 1, 0]), .badRDataLength)               // A, 5 bytes
        expect(answer(type: 28, rdata: [UInt8](repeating: 0, count: 4)), .badRDataLength) // AAAA, 4 bytes
        expect(answer(type: 5, rdata: [1, 0x62, 0, 0]), .badRDataLength)                  // CNAME + junk
        expect(answer(type: 5, rdata: [1, 0x62]), .badRDataLength)                        // name runs out
        expect(answer(type: 15, rdata: [0]), .badRDataLength)                             // MX, no name
        expect(answer(type: 16, rdata: [5, 0x61]), .badRDataLength)                       // TXT string too long
        expect(answer(type: 6, rdata: [0, 0] + [UInt8](repeating: 0, count: 19)), .badRDataLength) // SOA short
        expect(answer(type: 33, rdata: [0, 1, 0, 2]), .badRDataLength)                    // SRV short
        expect(answer(type: 41, rdata: [0, 10, 0, 9, 1, 2]), .badRDataLength)            // OPT option overruns
        // A name in rdata that runs past RDLENGTH into the next bytes of the packet.
        let p = header(qd: 1, an: 1) + question + [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 0, 0, 2, 1, 0x62, 0]
        expect(p, .badRDataLength)
        // Unknown types are opaque: any length is fine.
        XCTAssertNoThrow(try Message(decoding: answer(type: 99, rdata: [1, 2, 3])))
        // A in class CH is not an IPv4 address: kept opaque.
        var ch = answer(type: 1, rdata: [1, 2, 3])
        ch[12 + question.count + 5] = 3
        XCTAssertEqual(try Message(decoding: ch).answers.first?.rdata, .unknown([1, 2, 3]))
    }

    func testTooManyRecords() {
        expect(header(qd: 1, an: 0xFFFF) + question, .tooManyRecords, offset: 4)
        expect(header(qd: 0xFFFF), .tooManyRecords)
        expect(header(qd: 1, ar: 2) + question + [0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0], .tooManyRecords)
    }

    func testTrailingGarbage() throws {
        let good = header(qd: 1) + question
        XCTAssertNoThrow(try Message(decoding: good))
        expect(good + [0], .trailingGarbage, offset: good.count)
        let lenient = try (good + [0, 1]).withUnsafeBytes { try Message(decoding: $0, allowTrailingBytes: true) }
        XCTAssertEqual(lenient.questions.count, 1)
    }

    func testInvalidTextAndNames() {
        func text(_ s: String, _ kind: DNSError.Kind, line: UInt = #line) {
            XCTAssertThrowsError(try DNSName(s), line: line) { XCTAssertEqual(($0 as? DNSError)?.kind, kind, line: line) }
        }
        text("", .invalidText)
        text("a..b", .invalidText)
        text("..", .invalidText)
        text(".a", .invalidText)
        text("a\\", .invalidText)
        text("a\\25", .invalidText)
        text("a\\256", .invalidText)
        text("a\\2x5", .invalidText)
        text(String(repeating: "x", count: 64) + ".com", .labelTooLong)
        text(Array(repeating: String(repeating: "x", count: 63), count: 4).joined(separator: "."), .nameTooLong)
        XCTAssertThrowsError(try DNSName(labels: [[UInt8](repeating: 1, count: 64)])) {
            XCTAssertEqual(($0 as? DNSError)?.kind, .labelTooLong)
        }
        XCTAssertThrowsError(try DNSName(labels: [[]])) { XCTAssertEqual(($0 as? DNSError)?.kind, .invalidText) }
        XCTAssertThrowsError(try DNSName(labels: Array(repeating: [UInt8](repeating: 1, count: 63), count: 4))) {
            XCTAssertEqual(($0 as? DNSError)?.kind, .nameTooLong)
        }
    }

    func testQuickQuestionErrors() {
        func quick(_ b: [UInt8], _ kind: DNSError.Kind, line: UInt = #line) {
            XCTAssertThrowsError(try QuickQuestion(parsing: b), line: line) {
                XCTAssertEqual(($0 as? DNSError)?.kind, kind, line: line)
            }
        }
        XCTAssertNoThrow(try QuickQuestion(parsing: header(qd: 1) + question))
        quick([], .truncated)
        quick(header(qd: 0) + question, .truncated)
        quick(header(qd: 1) + Array(question.prefix(9)), .truncated)
        quick(header(qd: 1) + [0xC0, 12, 0, 1, 0, 1], .badPointer)
        quick(header(qd: 1) + [0x40, 0, 0, 1, 0, 1], .badLabelType)
        var long: [UInt8] = []
        for _ in 0..<5 { long += label(63) }
        quick(header(qd: 1) + long + [0, 0, 1, 0, 1], .nameTooLong)
    }
}
