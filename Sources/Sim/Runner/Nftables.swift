import Foundation
import SimNet

/// One nftables rule with its counter, as read back from a host.
public struct NftRule: CustomStringConvertible {
    public var family: String
    public var table: String
    public var chain: String
    public var handle: Int
    /// The rule as `nft -a list ruleset` prints it (without the handle).
    public var text: String
    public var comment: String?
    public var packets: Int64
    public var bytes: Int64

    public var description: String {
        "table \(family) \(table) chain \(chain) rule '\(text)' (handle \(handle)): \(packets) packets"
    }
}

extension SimHost {
    /// Applies a ruleset (or nft commands, one per line) inside the host with `nft -f -`.
    public func applyNftables(_ ruleset: String) throws {
        let r = try runCommand(["nft", "-f", "-"], input: ruleset, timeout: 10)
        guard r.status == 0 else {
            throw ScenarioError(file: "-", line: 0, reason: "nft on host \(name) refused the rules: \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// Every rule in the host's ruleset with its counter (0 for rules without one).
    public func nftRules() throws -> [NftRule] {
        let json = try runCommand(["nft", "-j", "list", "ruleset"], timeout: 10)
        let text = try runCommand(["nft", "-a", "list", "ruleset"], timeout: 10)
        guard json.status == 0, text.status == 0 else {
            throw ScenarioError(file: "-", line: 0, reason: "nft list ruleset failed on \(name): \(json.stderr)\(text.stderr)")
        }
        let texts = Self.ruleTexts(text.stdout)
        var rules: [NftRule] = []
        guard let obj = try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any],
              let items = obj["nftables"] as? [[String: Any]] else { return [] }
        for item in items {
            guard let r = item["rule"] as? [String: Any] else { continue }
            let family = r["family"] as? String ?? "?"
            let table = r["table"] as? String ?? "?"
            let chain = r["chain"] as? String ?? "?"
            let handle = r["handle"] as? Int ?? -1
            var packets: Int64 = 0
            var bytes: Int64 = 0
            for e in r["expr"] as? [[String: Any]] ?? [] {
                if let c = e["counter"] as? [String: Any] {
                    packets += (c["packets"] as? NSNumber)?.int64Value ?? 0
                    bytes += (c["bytes"] as? NSNumber)?.int64Value ?? 0
                }
            }
            rules.append(NftRule(family: family, table: table, chain: chain, handle: handle,
                                 text: texts["\(family) \(table) \(chain) \(handle)"] ?? "",
                                 comment: r["comment"] as? String, packets: packets, bytes: bytes))
        }
        return rules
    }

    /// "family table chain handle" -> rule text, from `nft -a list ruleset`.
    static func ruleTexts(_ listing: String) -> [String: String] {
        var out: [String: String] = [:]
        var table = ""
        var chain = ""
        for raw in listing.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            let words = line.split(separator: " ").map(String.init)
            if words.first == "table", words.count >= 3 { table = "\(words[1]) \(words[2])"; continue }
            if words.first == "chain", words.count >= 2 { chain = words[1]; continue }
            guard let hashRange = line.range(of: " # handle "), !table.isEmpty, !chain.isEmpty,
                  let handle = Int(line[hashRange.upperBound...].trimmingCharacters(in: .whitespaces)) else { continue }
            if line.hasPrefix("type ") { continue }
            out["\(table) \(chain) \(handle)"] = String(line[..<hashRange.lowerBound])
        }
        return out
    }

    /// Starts `nft monitor trace` inside the host, once it is subscribed.
    func startTrace(output: String) throws -> NftTrace {
        let p = try spawn(["nft", "monitor", "trace"], stdout: output, stderr: output)
        // Subscribed when its netfilter netlink socket (protocol 12) has groups.
        let ok = waitUntil(timeout: 3) {
            guard p.isRunning, let t = try? String(contentsOfFile: "/proc/\(p.pid)/net/netlink", encoding: .utf8) else { return false }
            return t.split(separator: "\n").dropFirst().contains { line in
                let c = line.split(separator: " ", omittingEmptySubsequences: true)
                return c.count > 3 && c[1] == "12" && c[2] == "\(p.pid)" && c[3] != "00000000"
            }
        }
        guard ok else { _ = p.terminate(grace: 0.5); throw ScenarioError(file: "-", line: 0, reason: "nft monitor trace did not start on \(name)") }
        return NftTrace(process: p, output: output, host: name)
    }
}

/// A running `nft monitor trace`: which rule gave which verdict to which packet.
public final class NftTrace {
    let process: ChildProcess
    let output: String
    let host: String

    init(process: ChildProcess, output: String, host: String) {
        self.process = process
        self.output = output
        self.host = host
    }

    func stop() { if process.isRunning { _ = process.terminate(grace: 0.5) } }

    /// Packets that ended in a drop, grouped by the rule that dropped them:
    /// "host client: table inet filter chain input rule 'counter drop comment "drop-all"' dropped 3 packet(s), e.g. ip saddr 10.0.0.53 ... udp sport 53".
    func diagnosis() -> [String] {
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        var packetOf: [String: String] = [:]
        var drops: [String: (count: Int, example: String)] = [:]
        var order: [String] = []
        for line in text.split(separator: "\n") {
            let w = line.split(separator: " ", maxSplits: 6).map(String.init)
            guard w.count >= 6, w[0] == "trace", w[1] == "id" else { continue }
            let id = w[2]
            let place = "table \(w[3]) \(w[4]) chain \(w[5])"
            let rest = w.count > 6 ? w[6] : ""
            if rest.hasPrefix("packet:") {
                packetOf[id] = Self.summary(rest)
            } else if rest.hasPrefix("rule "), rest.hasSuffix("(verdict drop)") {
                var rule = String(rest.dropFirst(5).dropLast(" (verdict drop)".count))
                rule = rule.replacingOccurrences(of: #"counter packets \d+ bytes \d+"#, with: "counter", options: .regularExpression)
                let key = "\(place) rule '\(rule)'"
                if drops[key] == nil { order.append(key) }
                drops[key, default: (0, packetOf[id] ?? "")].count += 1
            } else if rest.hasPrefix("policy drop") || rest.contains("(policy drop)") || rest.hasPrefix("verdict drop") {
                let key = "\(place) policy drop"
                if drops[key] == nil { order.append(key) }
                drops[key, default: (0, packetOf[id] ?? "")].count += 1
            }
        }
        return order.map { k in
            let d = drops[k]!
            return "host \(host): \(k) dropped \(d.count) packet(s)\(d.example.isEmpty ? "" : ", e.g. \(d.example)")"
        }
    }

    /// The addresses, protocol and ports of a traced packet.
    static func summary(_ packet: String) -> String {
        let w = packet.split(separator: " ").map(String.init)
        var parts: [String] = []
        var i = 0
        while i + 2 < w.count {
            let k = "\(w[i]) \(w[i + 1])"
            if ["ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "udp sport", "udp dport", "tcp sport", "tcp dport"].contains(k) {
                parts.append("\(k) \(w[i + 2])")
                i += 3
            } else {
                i += 1
            }
        }
        return parts.joined(separator: " ")
    }
}
