import Glibc

/// One rule as `nft -a list ruleset` prints it, with its counter.
public struct NftRule: Equatable, CustomStringConvertible {
    public var family: String      // "inet", "ip", "ip6", "bridge", ...
    public var table: String
    public var chain: String
    public var handle: Int
    /// The rule as nft prints it, counter values removed ("... counter drop").
    public var text: String
    /// Packets and bytes of the rule's counter, nil if it has none.
    public var packets: Int64?
    public var bytes: Int64?

    public var description: String {
        "rule `\(text)` (handle \(handle)) in chain \(chain) of table \(family) \(table)"
            + (packets.map { ", \($0) packets" } ?? "")
    }
}

/// Text forms of nft output, parsed without Foundation.
public enum NftParser {
    /// Removes "packets N bytes M" after "counter", so the text of a rule
    /// is the same however often it matched.
    public static func normalizeRuleText(_ text: String) -> (text: String, packets: Int64?, bytes: Int64?) {
        var words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        var packets: Int64?, bytes: Int64?
        var i = 0
        while i < words.count {
            if words[i] == "counter", i + 4 < words.count, words[i + 1] == "packets", words[i + 3] == "bytes",
               let p = Int64(words[i + 2]), let b = Int64(words[i + 4]) {
                if packets == nil { packets = p; bytes = b }
                words.removeSubrange((i + 1)...(i + 4))
            }
            i += 1
        }
        return (words.joined(separator: " "), packets, bytes)
    }

    /// Rules of `nft -a list ruleset` output (tables, chains, handles,
    /// counters); sets, maps and flowtables are skipped.
    public static func parseRules(_ listing: String) -> [NftRule] {
        enum Block { case table(String, String), chain(String), other }
        var stack: [Block] = []
        var rules: [NftRule] = []
        for rawLine in listing.split(separator: "\n") {
            var line = rawLine.simTrimmed(" \t")
            var handle: Int?
            if let r = line.simRange(of: " # handle ", backwards: true) ?? (line.hasPrefix("# handle ") ? line.simRange(of: "# handle ") : nil) {
                handle = Int(line[r.upperBound...].simTrimmed(" \t"))
                line = String(line[..<r.lowerBound]).simTrimmed(" \t")
            }
            let opens = line.filter { $0 == "{" }.count, closes = line.filter { $0 == "}" }.count
            if line == "}" { if !stack.isEmpty { stack.removeLast() }; continue }
            if opens > closes {
                let words = line.split(separator: " ").map(String.init)
                if words.first == "table", words.count >= 3 {
                    // "table inet filter {" (or "table filter {" meaning ip)
                    if words.count >= 4 { stack.append(.table(words[1], words[2])) }
                    else { stack.append(.table("ip", words[1])) }
                } else if words.first == "chain", words.count >= 2, case .table? = stack.last {
                    stack.append(.chain(words[1]))
                } else {
                    stack.append(.other)
                }
                continue
            }
            if closes > opens {
                stack.removeLast(min(stack.count, closes - opens))
                continue
            }
            guard let h = handle, case .chain(let chain)? = stack.last, stack.count >= 2,
                  case .table(let family, let table) = stack[stack.count - 2] else { continue }
            let n = normalizeRuleText(line)
            rules.append(NftRule(family: family, table: table, chain: chain, handle: h,
                                 text: n.text, packets: n.packets, bytes: n.bytes))
        }
        return rules
    }
}

extension StringProtocol {
    func simTrimmed(_ set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }

    /// Minimal substring search (no Foundation).
    func simRange(of needle: String, backwards: Bool = false) -> Range<Index>? {
        let n = Array(needle.utf8)
        let hay = Array(utf8)
        guard !n.isEmpty, hay.count >= n.count else { return nil }
        let starts = Array(0...(hay.count - n.count))
        for i in backwards ? starts.reversed() : starts where hay[i..<(i + n.count)].elementsEqual(n) {
            let lo = utf8.index(startIndex, offsetBy: i)
            return lo..<utf8.index(lo, offsetBy: n.count)
        }
        return nil
    }
}

extension SimHost {
    /// Applies a ruleset text (as `nft -f` reads it) inside this host.
    /// nft's error (with line and column) is in the thrown error.
    public func applyNftables(_ ruleset: String) throws {
        try runChecked(["nft", "-f", "-"], input: ruleset)
    }

    /// Runs `nft <args>` inside the host and returns its stdout.
    @discardableResult
    public func nft(_ args: [String]) throws -> String {
        try runChecked(["nft"] + args).stdout
    }

    /// Every rule with its handle and counter.
    public func nftRules() throws -> [NftRule] {
        NftParser.parseRules(try nft(["-a", "list", "ruleset"]))
    }

    /// The rule with this handle in this table (nil if absent).
    public func nftRule(family: String, table: String, handle: Int) throws -> NftRule? {
        try nftRules().first { $0.family == family && $0.table == table && $0.handle == handle }
    }

    /// Adds (appends, or with `insert` prepends) a rule at run time and
    /// returns it with its handle, e.g.
    /// `addNftRule(family: "inet", table: "filter", chain: "input", rule: "udp dport 53 drop")`.
    @discardableResult
    public func addNftRule(family: String, table: String, chain: String, rule: String,
                           insert: Bool = false) throws -> NftRule {
        for (what, v) in [("family", family), ("table", table), ("chain", chain)] {
            guard !v.isEmpty, !v.contains(where: { $0 == " " || $0 == "\n" || $0 == ";" }) else {
                throw SimNetError.invalidArgument("nft rule: bad \(what) `\(v)`")
            }
        }
        guard !rule.contains("\n") else { throw SimNetError.invalidArgument("nft rule: one line only: `\(rule)`") }
        let verb = insert ? "insert" : "add"
        let echo = try runChecked(["nft", "-e", "-a", "-f", "-"],
                                  input: "\(verb) rule \(family) \(table) \(chain) \(rule)\n").stdout
        // Echo: "add rule inet filter input udp dport 53 drop # handle 7"
        guard let r = echo.simRange(of: "# handle ", backwards: true),
              let handle = Int(echo[r.upperBound...].prefix { $0.isNumber }) else {
            throw SimNetError.invalidArgument("nft did not echo a handle for `\(rule)`: \(echo)")
        }
        if let added = try nftRule(family: family, table: table, handle: handle) { return added }
        return NftRule(family: family, table: table, chain: chain, handle: handle,
                       text: NftParser.normalizeRuleText(rule).text, packets: nil, bytes: nil)
    }

    /// Deletes a rule by handle.
    public func deleteNftRule(family: String, table: String, chain: String, handle: Int) throws {
        try runChecked(["nft", "delete", "rule", family, table, chain, "handle", String(handle)])
    }

    /// Starts reading nftables trace events (`nft monitor trace`) in this
    /// host; returns once the monitor is subscribed, so no event is missed.
    public func startTrace(timeout: Double = 10) throws -> NftTrace {
        try NftTrace(host: self, timeout: timeout)
    }
}
