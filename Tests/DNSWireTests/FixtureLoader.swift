import Foundation
import XCTest

enum Fixtures {
    static let names = ["a", "a-noedns", "a-dnssec", "aaaa", "mx", "txt", "srv", "cname", "ptr", "nxdomain",
                        "refused", "big", "big-tc", "nxdomain-soa", "nodata-soa"]

    static var all: [(String, [UInt8])] {
        get throws {
            var out: [(String, [UInt8])] = []
            for n in names {
                out.append(("\(n)-query", try load("\(n)-query")))
                out.append(("\(n)-reply", try load("\(n)-reply")))
            }
            return out
        }
    }

    static func load(_ name: String) throws -> [UInt8] {
        guard let url = Bundle.module.url(forResource: name, withExtension: "hex", subdirectory: "Fixtures") else {
            throw FixtureError.missing(name)
        }
        let text = try String(contentsOf: url, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = hexBytes(text) else { throw FixtureError.badHex(name) }
        return bytes
    }

    enum FixtureError: Error { case missing(String), badHex(String) }
}

func hexBytes(_ text: String) -> [UInt8]? {
    let chars = Array(text.utf8)
    guard chars.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    var i = 0
    while i < chars.count {
        guard let hi = hexNibble(chars[i]), let lo = hexNibble(chars[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
        i += 2
    }
    return out
}

private func hexNibble(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x61...0x66: return c - 0x61 + 10
    case 0x41...0x46: return c - 0x41 + 10
    default: return nil
    }
}
