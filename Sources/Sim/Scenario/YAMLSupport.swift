import Foundation
import Yams

/// A scenario file that cannot be used, with the place and the reason.
/// Printed as `FILE:LINE: reason`, the way compilers report errors.
public struct ScenarioError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int
    public var reason: String

    public init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String { "\(file):\(line): \(reason)" }
}

/// A YAML node that remembers which file it came from, so that every
/// complaint about it can name the file and the line.
struct YNode {
    let node: Node
    let file: String
    /// Path of keys from the root, for messages ("steps[3].query").
    let path: String

    var line: Int { node.mark?.line ?? 1 }

    func error(_ reason: String) -> ScenarioError {
        ScenarioError(file: file, line: line, reason: path.isEmpty ? reason : "\(path): \(reason)")
    }

    var isMapping: Bool { if case .mapping = node { return true } else { return false } }
    var isSequence: Bool { if case .sequence = node { return true } else { return false } }
    var isNull: Bool {
        if case .scalar(let s) = node { return s.tag.description == "tag:yaml.org,2002:null" || (s.string.isEmpty && s.style == .plain) || s.string == "~" }
        return false
    }

    /// The pairs of a mapping, in file order. Duplicate keys are an error
    /// (YAML parsers keep the last one silently, which hides typos).
    func pairs() throws -> [(key: String, value: YNode)] {
        guard case .mapping(let m) = node else { throw error("expected a mapping (key: value)") }
        var seen = Set<String>()
        var out: [(String, YNode)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else {
                throw YNode(node: k, file: file, path: path).error("a key must be a plain string")
            }
            if !seen.insert(ks.string).inserted {
                throw YNode(node: k, file: file, path: path).error("duplicate key '\(ks.string)'")
            }
            out.append((ks.string, YNode(node: v, file: file, path: path.isEmpty ? ks.string : "\(path).\(ks.string)")))
        }
        return out
    }

    /// A mapping read field by field; `finish()` rejects keys nobody asked for.
    func fields(_ what: String) throws -> Fields {
        guard isMapping else { throw error("expected a mapping for \(what)") }
        return Fields(owner: self, pairs: try pairs(), what: what)
    }

    func items() throws -> [YNode] {
        guard case .sequence(let s) = node else { throw error("expected a list") }
        return s.enumerated().map { YNode(node: $0.element, file: file, path: "\(path)[\($0.offset)]") }
    }

    /// A list, or a single value taken as a one-element list.
    func itemsOrOne() throws -> [YNode] {
        if isSequence { return try items() }
        return [self]
    }

    func string() throws -> String {
        guard case .scalar(let s) = node else { throw error("expected a single value, not a list or mapping") }
        return s.string
    }

    func strings() throws -> [String] { try itemsOrOne().map { try $0.string() } }

    func int() throws -> Int {
        let s = try string()
        guard let v = Int(s) else { throw error("expected a whole number, got '\(s)'") }
        return v
    }

    func bool() throws -> Bool {
        switch try string().lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        case let s: throw error("expected true or false, got '\(s)'")
        }
    }

    /// Durations: `2s`, `150ms`, `1.5s`, `2m`, or a bare number of seconds.
    func duration() throws -> Double {
        let s = try string().trimmingCharacters(in: .whitespaces)
        if let d = parseDuration(s) { return d }
        throw error("expected a duration such as 2s or 150ms, got '\(s)'")
    }
}

func parseDuration(_ s: String) -> Double? {
    let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000001), ("s", 1), ("m", 60)]
    for (suffix, factor) in units where s.hasSuffix(suffix) {
        let num = s.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
        if let v = Double(num), v >= 0, v.isFinite { return v * factor }
        return nil
    }
    if let v = Double(s), v >= 0, v.isFinite { return v }
    return nil
}

/// Field-by-field reader for one mapping. Every key must be consumed or
/// `finish()` names the first unknown one, with its line.
final class Fields {
    let owner: YNode
    let what: String
    private var remaining: [(key: String, value: YNode)]

    init(owner: YNode, pairs: [(key: String, value: YNode)], what: String) {
        self.owner = owner
        self.remaining = pairs
        self.what = what
    }

    var keys: [String] { remaining.map(\.key) }

    func optional(_ key: String) -> YNode? {
        guard let i = remaining.firstIndex(where: { $0.key == key }) else { return nil }
        return remaining.remove(at: i).value
    }

    func required(_ key: String) throws -> YNode {
        guard let v = optional(key) else { throw owner.error("\(what) needs '\(key)'") }
        return v
    }

    func finish(allowed: [String]) throws {
        if let extra = remaining.first {
            let hint = allowed.isEmpty ? "" : " (known: \(allowed.joined(separator: ", ")))"
            throw extra.value.error("unknown key '\(extra.key)' in \(what)\(hint)")
        }
    }

    func finish() throws { try finish(allowed: []) }
}
