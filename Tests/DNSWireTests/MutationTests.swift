import XCTest
@testable import DNSWire

/// Deterministic pseudo-random mutations of the fixtures: decoding must never trap,
/// and whatever decodes must re-encode to something that decodes to the same message.
final class MutationTests: XCTestCase {
    struct SplitMix64 {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }
        mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
    }

    func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var p = input
        for _ in 0...rng.below(4) {
            switch rng.below(9) {
            case 0, 1: // flip bits
                if !p.isEmpty { p[rng.below(p.count)] ^= UInt8(1) << UInt8(rng.below(8)) }
            case 2: // random byte
                if !p.isEmpty { p[rng.below(p.count)] = rng.byte() }
            case 3: // interesting byte: pointer / label types / lengths
                if !p.isEmpty {
                    let v: [UInt8] = [0xC0, 0xC0, 0x40, 0x80, 0x3F, 0xFF, 0, 1, 12]
                    p[rng.below(p.count)] = v[rng.below(v.count)]
                }
            case 4: // truncate
                p = Array(p.prefix(rng.below(p.count + 1)))
            case 5: // insert random bytes
                let at = rng.below(p.count + 1)
                p.insert(contentsOf: (0..<rng.below(8) + 1).map { _ in rng.byte() }, at: at)
            case 6: // delete a range
                if !p.isEmpty {
                    let at = rng.below(p.count)
                    p.removeSubrange(at..<min(p.count, at + rng.below(8) + 1))
                }
            case 7: // section counts
                if p.count >= 12 {
                    let field = 4 + 2 * rng.below(4)
                    p[field] = rng.below(4) == 0 ? rng.byte() : 0
                    p[field + 1] = rng.byte()
                }
            default: // compression pointer to a random offset
                if p.count >= 2 {
                    let at = rng.below(p.count - 1)
                    let target = rng.below(p.count + 4)
                    p[at] = 0xC0 | UInt8(truncatingIfNeeded: target >> 8) & 0x3F
                    p[at + 1] = UInt8(truncatingIfNeeded: target)
                }
            }
        }
        return p
    }

    func testMutatedFixturesNeverTrap() throws {
        let fixtures = try Fixtures.all.map(\.1)
        XCTAssertFalse(fixtures.isEmpty)
        var rng = SplitMix64(state: 0x5EED_D115)
        var decoded = 0, rejected = 0
        var kinds: Set<String> = []
        for i in 0..<100_000 {
            let packet = mutate(fixtures[i % fixtures.count], &rng)
            _ = try? QuickQuestion(parsing: packet)
            do {
                let m = try Message(decoding: packet)
                decoded += 1
                let bytes = m.encode()
                let again = try Message(decoding: bytes)
                XCTAssertEqual(again, m, "case \(i)")
                XCTAssertEqual(again.encode(), bytes, "case \(i)")
                let limit = rng.below(600)
                let (small, _) = m.encode(maxSize: limit)
                XCTAssertLessThanOrEqual(small.count, max(limit, 12), "case \(i)")
                XCTAssertNoThrow(try Message(decoding: small), "case \(i)")
            } catch let e as DNSError {
                rejected += 1
                kinds.insert("\(e.kind)")
                XCTAssertGreaterThanOrEqual(e.offset, 0)
                XCTAssertLessThanOrEqual(e.offset, packet.count)
            }
        }
        // The mutations exercise both paths and many error kinds.
        XCTAssertGreaterThan(decoded, 1000)
        XCTAssertGreaterThan(rejected, 10000)
        XCTAssertGreaterThanOrEqual(kinds.count, 7, "\(kinds)")
        print("mutation: \(decoded) decoded, \(rejected) rejected, kinds: \(kinds.sorted())")
    }

    func testRandomBytesNeverTrap() {
        var rng = SplitMix64(state: 42)
        for _ in 0..<20_000 {
            let packet = (0..<rng.below(300)).map { _ in rng.byte() }
            _ = try? Message(decoding: packet)
            _ = try? QuickQuestion(parsing: packet)
        }
    }
}
