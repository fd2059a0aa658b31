/// A domain name as a list of labels (without the root label).
/// `==` and `hash(into:)` are case-insensitive (ASCII), as DNS requires.
public struct DNSName: Hashable, CustomStringConvertible, Sendable {
    public var labels: [[UInt8]]

    public static let maxWireLength = 255
    public static let maxLabelLength = 63

    public static let root = DNSName(unchecked: [])

    init(unchecked labels: [[UInt8]]) { self.labels = labels }

    /// Validates label (1...63 bytes) and total wire length (<= 255).
    public init(labels: [[UInt8]]) throws {
        var wire = 1
        for label in labels {
            guard !label.isEmpty else { throw DNSError(.invalidText, offset: 0) }
            guard label.count <= DNSName.maxLabelLength else { throw DNSError(.labelTooLong, offset: 0) }
            wire += label.count + 1
        }
        guard wire <= DNSName.maxWireLength else { throw DNSError(.nameTooLong, offset: 0) }
        self.labels = labels
    }

    /// Presentation format: "example.com" or "example.com."; "." is the root.
    /// `\.` is a dot inside a label, `\\` a backslash, `\DDD` a byte in decimal.
    /// Errors: `.invalidText` (empty label, bad escape), `.labelTooLong`, `.nameTooLong`;
    /// the offset is the UTF-8 offset in `text`.
    public init(_ text: String) throws {
        let utf8 = Array(text.utf8)
        if utf8 == [0x2E] { self.labels = []; return }
        guard !utf8.isEmpty else { throw DNSError(.invalidText, offset: 0) }
        var labels: [[UInt8]] = []
        var current: [UInt8] = []
        var wire = 1
        var i = 0
        var endsWithDot = false
        func finishLabel(at offset: Int) throws {
            guard !current.isEmpty else { throw DNSError(.invalidText, offset: offset) }
            guard current.count <= DNSName.maxLabelLength else { throw DNSError(.labelTooLong, offset: offset) }
            wire += current.count + 1
            guard wire <= DNSName.maxWireLength else { throw DNSError(.nameTooLong, offset: offset) }
            labels.append(current)
            current = []
        }
        while i < utf8.count {
            let c = utf8[i]
            endsWithDot = false
            if c == 0x5C { // backslash
                guard i + 1 < utf8.count else { throw DNSError(.invalidText, offset: i) }
                let d0 = utf8[i + 1]
                if d0 >= 0x30 && d0 <= 0x39 {
                    guard i + 3 < utf8.count else { throw DNSError(.invalidText, offset: i) }
                    let d1 = utf8[i + 2], d2 = utf8[i + 3]
                    guard d1 >= 0x30, d1 <= 0x39, d2 >= 0x30, d2 <= 0x39 else {
                        throw DNSError(.invalidText, offset: i)
                    }
                    let value = Int(d0 - 0x30) * 100 + Int(d1 - 0x30) * 10 + Int(d2 - 0x30)
                    guard value <= 255 else { throw DNSError(.invalidText, offset: i) }
                    current.append(UInt8(value))
                    i += 4
                } else {
                    current.append(d0)
                    i += 2
                }
                // Guard against absurd input before the final length check.
                if current.count > DNSName.maxLabelLength { throw DNSError(.labelTooLong, offset: i) }
            } else if c == 0x2E { // dot
                try finishLabel(at: i)
                endsWithDot = true
                i += 1
            } else {
                current.append(c)
                if current.count > DNSName.maxLabelLength { throw DNSError(.labelTooLong, offset: i) }
                i += 1
            }
        }
        if !endsWithDot { try finishLabel(at: utf8.count) }
        self.labels = labels
    }

    /// Number of bytes of the uncompressed wire form (including the root byte).
    public var wireLength: Int {
        var n = 1
        for l in labels { n += l.count + 1 }
        return n
    }

    public var isRoot: Bool { labels.isEmpty }

    /// Uncompressed wire form.
    public var wireBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(wireLength)
        for l in labels {
            out.append(UInt8(truncatingIfNeeded: l.count))
            out.append(contentsOf: l)
        }
        out.append(0)
        return out
    }

    public func lowercased() -> DNSName {
        DNSName(unchecked: labels.map { $0.map(asciiLower) })
    }

    /// True if `self` equals `other` or lies below it (case-insensitive).
    public func isSubdomain(of other: DNSName) -> Bool {
        guard other.labels.count <= labels.count else { return false }
        let skip = labels.count - other.labels.count
        for (i, label) in other.labels.enumerated() where !labelsEqual(labels[skip + i], label) {
            return false
        }
        return true
    }

    /// The name with the first label removed (nil for the root).
    public var parent: DNSName? {
        labels.isEmpty ? nil : DNSName(unchecked: Array(labels.dropFirst()))
    }

    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        guard lhs.labels.count == rhs.labels.count else { return false }
        for i in 0..<lhs.labels.count where !labelsEqual(lhs.labels[i], rhs.labels[i]) {
            return false
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(labels.count)
        for l in labels {
            hasher.combine(l.count)
            for b in l { hasher.combine(asciiLower(b)) }
        }
    }

    /// "example.com" (no trailing dot), "." for the root. Dots inside labels are
    /// written `\.`, backslashes `\\`, bytes outside 0x21...0x7E as `\DDD`.
    public var description: String {
        if labels.isEmpty { return "." }
        var out: [UInt8] = []
        out.reserveCapacity(wireLength)
        for (i, label) in labels.enumerated() {
            if i > 0 { out.append(0x2E) }
            for b in label {
                if b == 0x2E || b == 0x5C {
                    out.append(0x5C); out.append(b)
                } else if b <= 0x20 || b >= 0x7F {
                    out.append(0x5C)
                    out.append(0x30 + b / 100)
                    out.append(0x30 + (b / 10) % 10)
                    out.append(0x30 + b % 10)
                } else {
                    out.append(b)
                }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

@inline(__always)
func asciiLower(_ b: UInt8) -> UInt8 {
    (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
}

@inline(__always)
func labelsEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    for i in 0..<a.count where asciiLower(a[i]) != asciiLower(b[i]) { return false }
    return true
}
