import Foundation

/// One measured phase of one subject: dnsperf's figures plus the subject's CPU time.
public struct BenchPhase: Codable, Equatable {
    /// "hit", "miss" or "burst".
    public var name: String
    /// The rate offered with dnsperf -Q; nil = as fast as dnsperf can.
    public var offeredQPS: Int?
    public var dnsperf: DnsperfResult
    /// utime + stime of the subject over the phase.
    public var cpuSeconds: Double
    /// Microseconds of subject CPU per answered query; nil when nothing was answered.
    public var cpuMicrosPerQuery: Double?
    /// The kernel's part of `cpuSeconds` (stime: system calls and the packet work they
    /// trigger); nil in reports written before it was recorded.
    public var systemSeconds: Double?
    /// Microseconds of the subject's kernel time (stime) per answered query.
    public var systemMicrosPerQuery: Double? {
        guard let s = systemSeconds, dnsperf.completed > 0 else { return nil }
        return s * 1e6 / Double(dnsperf.completed)
    }
    /// UDP datagrams dropped for a full receive buffer (Udp.RcvbufErrors) during the phase,
    /// per host: "client" (dnsperf), "subject", "upstream". Shows where lost queries went.
    public var udpDrops: [String: Int64]
    /// Voluntary context switches of all the subject's threads during the phase, per
    /// answered query: below 1 means it handled several queries per wake-up.
    public var wakeupsPerQuery: Double?

    public init(name: String, offeredQPS: Int?, dnsperf: DnsperfResult, cpuSeconds: Double,
                udpDrops: [String: Int64] = [:], wakeups: Int? = nil, systemSeconds: Double? = nil) {
        self.systemSeconds = systemSeconds
        self.wakeupsPerQuery = wakeups.flatMap { dnsperf.completed > 0 ? Double($0) / Double(dnsperf.completed) : nil }
        self.name = name
        self.udpDrops = udpDrops
        self.offeredQPS = offeredQPS
        self.dnsperf = dnsperf
        self.cpuSeconds = cpuSeconds
        self.cpuMicrosPerQuery = dnsperf.completed > 0 ? cpuSeconds * 1e6 / Double(dnsperf.completed) : nil
    }
}

/// Everything measured for one subject (ours, dnsmasq, unbound).
public struct BenchSubjectResult: Codable, Equatable {
    public var subject: String
    public var command: [String]
    public var phases: [BenchPhase]
    /// VmRSS after the hit/miss/burst phases.
    public var rssKB: Int?
    /// VmRSS of an instance without cache (--cache-size=0; unbound: the fresh instance),
    /// of the fresh instance sized for `entries` names, and of it after caching them.
    public var rssBaselineKB: Int?
    public var rssFreshKB: Int?
    public var rssCachedKB: Int?
    /// (rssCachedKB - rssBaselineKB) per cached name, in bytes.
    public var rssPerEntryBytes: Double?
    public var entries: Int?
    /// Why the subject's figures are missing or partial.
    public var error: String?

    public init(subject: String, command: [String] = [], phases: [BenchPhase] = [], rssKB: Int? = nil,
                rssBaselineKB: Int? = nil, rssFreshKB: Int? = nil, rssCachedKB: Int? = nil,
                rssPerEntryBytes: Double? = nil, entries: Int? = nil, error: String? = nil) {
        self.subject = subject
        self.rssBaselineKB = rssBaselineKB
        self.rssFreshKB = rssFreshKB
        self.rssCachedKB = rssCachedKB
        self.command = command
        self.phases = phases
        self.rssKB = rssKB
        self.rssPerEntryBytes = rssPerEntryBytes
        self.entries = entries
        self.error = error
    }

    public func phase(_ name: String) -> BenchPhase? { phases.first { $0.name == name } }

    /// Several rounds of one subject as one result: per phase, the round with the median
    /// CPU/query (the lower middle for an even count); per RSS figure, the median.
    /// Rounds that failed are named in `error`; the result is empty only if all failed.
    public static func median(of rounds: [BenchSubjectResult]) -> BenchSubjectResult {
        guard var out = rounds.first else { return BenchSubjectResult(subject: "?", error: "no rounds") }
        if rounds.count == 1 { return out }
        func mid<T: Comparable>(_ xs: [T]) -> T? { xs.isEmpty ? nil : xs.sorted()[(xs.count - 1) / 2] }
        var names: [String] = []
        for r in rounds { for p in r.phases where !names.contains(p.name) { names.append(p.name) } }
        out.phases = names.compactMap { name in
            let ps = rounds.compactMap { $0.phase(name) }
            let sorted = ps.sorted { ($0.cpuMicrosPerQuery ?? .infinity) < ($1.cpuMicrosPerQuery ?? .infinity) }
            return sorted.isEmpty ? nil : sorted[(sorted.count - 1) / 2]
        }
        out.command = rounds.first { !$0.command.isEmpty }?.command ?? []
        out.rssKB = mid(rounds.compactMap(\.rssKB))
        out.rssBaselineKB = mid(rounds.compactMap(\.rssBaselineKB))
        out.rssFreshKB = mid(rounds.compactMap(\.rssFreshKB))
        out.rssCachedKB = mid(rounds.compactMap(\.rssCachedKB))
        out.rssPerEntryBytes = mid(rounds.compactMap(\.rssPerEntryBytes))
        out.entries = mid(rounds.compactMap(\.entries))
        let errors = rounds.enumerated().compactMap { i, r in r.error.map { "round \(i + 1): \($0)" } }
        out.error = errors.isEmpty ? nil : errors.joined(separator: "; ")
        return out
    }
}

/// One line of the goal from issue 8.
public struct BenchGoal: Codable, Equatable {
    public enum Status: String, Codable { case met, notMet = "not met", unknown = "n/a" }
    public var goal: String
    public var status: Status
    public var detail: String
}

public struct BenchReport: Codable, Equatable {
    public var date: String
    public var secondsPerPhase: Double
    public var hitQPS: Int
    public var missQPS: Int
    public var burstInFlight: Int
    /// Medians over the rounds (see BenchSubjectResult.median).
    public var subjects: [BenchSubjectResult]
    /// Every round of every subject, in the order run (rounds > 1 only).
    public var rounds: [[BenchSubjectResult]]
    /// CPUs and /proc/loadavg before and after: the figures are only as quiet as the machine.
    public var machine: String
    public var goals: [BenchGoal]

    public init(date: String, secondsPerPhase: Double, hitQPS: Int, missQPS: Int, burstInFlight: Int,
                subjects: [BenchSubjectResult], rounds: [[BenchSubjectResult]] = [], machine: String = "") {
        self.date = date
        self.rounds = rounds
        self.machine = machine
        self.secondsPerPhase = secondsPerPhase
        self.hitQPS = hitQPS
        self.missQPS = missQPS
        self.burstInFlight = burstInFlight
        self.subjects = subjects
        self.goals = BenchReport.evaluateGoals(subjects)
    }

    public func subject(_ name: String) -> BenchSubjectResult? { subjects.first { $0.subject == name } }

    // MARK: goals

    /// The goal of issue 8: CPU/query <= 0.5x dnsmasq on hits and misses and <= unbound,
    /// zero REFUSED in the burst, RSS per cached entry <= dnsmasq.
    public static func evaluateGoals(_ subjects: [BenchSubjectResult]) -> [BenchGoal] {
        func find(_ n: String) -> BenchSubjectResult? { subjects.first { $0.subject == n } }
        let ours = find("ours"), dnsmasq = find("dnsmasq"), unbound = find("unbound")
        var goals: [BenchGoal] = []
        func compare(_ goal: String, _ mine: Double?, _ theirs: Double?, factor: Double, unit: String) {
            guard let m = mine, let t = theirs else {
                goals.append(BenchGoal(goal: goal, status: .unknown, detail: "not measured"))
                return
            }
            let ok = m <= factor * t
            goals.append(BenchGoal(goal: goal, status: ok ? .met : .notMet,
                                   detail: String(format: "%.2f vs %.2f %@ (ratio %.2f)", m, factor * t, unit, t > 0 ? m / t : .infinity)))
        }
        for phase in ["hit", "miss"] {
            compare("\(phase) CPU/query <= 0.5x dnsmasq", ours?.phase(phase)?.cpuMicrosPerQuery,
                    dnsmasq?.phase(phase)?.cpuMicrosPerQuery, factor: 0.5, unit: "µs")
            compare("\(phase) CPU/query <= unbound", ours?.phase(phase)?.cpuMicrosPerQuery,
                    unbound?.phase(phase)?.cpuMicrosPerQuery, factor: 1, unit: "µs")
        }
        if let b = ours?.phase("burst") {
            let refused = b.dnsperf.count("REFUSED")
            goals.append(BenchGoal(goal: "zero REFUSED in the burst", status: refused == 0 ? .met : .notMet,
                                   detail: "\(refused) REFUSED, \(b.dnsperf.count("SERVFAIL")) SERVFAIL, \(b.dnsperf.lost) lost of \(b.dnsperf.sent)"))
        } else {
            goals.append(BenchGoal(goal: "zero REFUSED in the burst", status: .unknown, detail: "not measured"))
        }
        compare("RSS per cached entry <= dnsmasq", ours?.rssPerEntryBytes, dnsmasq?.rssPerEntryBytes, factor: 1, unit: "bytes")
        return goals
    }

    // MARK: table

    /// A row of the table: a label and a value per subject.
    struct Row {
        var label: String
        var value: (BenchSubjectResult) -> Double?
        var format: String
        /// Ratios make no sense for counts such as REFUSED.
        var ratio: Bool = true
    }

    static let rows: [Row] = {
        var rows: [Row] = []
        for (phase, title) in [("hit", "hit"), ("miss", "miss"), ("burst", "burst")] {
            rows.append(Row(label: "\(title) CPU µs/query", value: { $0.phase(phase)?.cpuMicrosPerQuery }, format: "%.2f"))
            rows.append(Row(label: "\(title) of it kernel µs/query", value: { $0.phase(phase)?.systemMicrosPerQuery }, format: "%.2f"))
            rows.append(Row(label: "\(title) wake-ups/query", value: { $0.phase(phase)?.wakeupsPerQuery }, format: "%.3f"))
            rows.append(Row(label: "\(title) answered qps", value: { s in s.phase(phase).map { $0.dnsperf.runTime > 0 ? Double($0.dnsperf.completed) / $0.dnsperf.runTime : 0 } }, format: "%.0f"))
            rows.append(Row(label: "\(title) latency avg ms", value: { $0.phase(phase).map { $0.dnsperf.avgLatency * 1000 } }, format: "%.3f"))
            rows.append(Row(label: "\(title) latency max ms", value: { $0.phase(phase).map { $0.dnsperf.maxLatency * 1000 } }, format: "%.2f"))
            if phase == "burst" {
                rows.append(Row(label: "burst sent", value: { $0.phase(phase).map { Double($0.dnsperf.sent) } }, format: "%.0f", ratio: false))
                rows.append(Row(label: "burst answered", value: { $0.phase(phase).map { Double($0.dnsperf.completed) } }, format: "%.0f", ratio: false))
                for rc in ["NOERROR", "REFUSED", "SERVFAIL"] {
                    rows.append(Row(label: "burst \(rc)", value: { $0.phase(phase).map { Double($0.dnsperf.count(rc)) } }, format: "%.0f", ratio: false))
                }
                rows.append(Row(label: "burst lost", value: { $0.phase(phase).map { Double($0.dnsperf.lost) } }, format: "%.0f", ratio: false))
                for host in ["client", "subject", "upstream"] {
                    rows.append(Row(label: "burst UDP drops at \(host)", value: { $0.phase(phase)?.udpDrops[host].map(Double.init) }, format: "%.0f", ratio: false))
                }
            } else {
                rows.append(Row(label: "\(title) sent, not NOERROR", value: { $0.phase(phase).map { Double($0.dnsperf.sent - $0.dnsperf.count("NOERROR")) } }, format: "%.0f", ratio: false))
            }
        }
        rows.append(Row(label: "RSS after runs MiB", value: { $0.rssKB.map { Double($0) / 1024 } }, format: "%.1f"))
        rows.append(Row(label: "RSS without cache MiB", value: { $0.rssBaselineKB.map { Double($0) / 1024 } }, format: "%.1f"))
        rows.append(Row(label: "RSS fresh, sized MiB", value: { $0.rssFreshKB.map { Double($0) / 1024 } }, format: "%.1f"))
        rows.append(Row(label: "RSS with names cached MiB", value: { $0.rssCachedKB.map { Double($0) / 1024 } }, format: "%.1f"))
        rows.append(Row(label: "RSS per cached entry B", value: { $0.rssPerEntryBytes }, format: "%.0f"))
        return rows
    }()

    /// The side-by-side table: a column per subject, then ours/dnsmasq and ours/unbound.
    public func table() -> String {
        let names = subjects.map(\.subject)
        var header = ["metric"] + names
        var peers: [String] = []
        if names.contains("ours") {
            peers = names.filter { $0 != "ours" }
            header += peers.map { "ours/\($0)" }
        }
        var lines: [[String]] = [header]
        for row in BenchReport.rows {
            var cells = [row.label]
            for s in subjects { cells.append(row.value(s).map { String(format: row.format, $0) } ?? "-") }
            if let ours = subject("ours") {
                for p in peers {
                    guard row.ratio, let m = row.value(ours), let t = subject(p).flatMap({ row.value($0) }), t > 0 else {
                        cells.append("-")
                        continue
                    }
                    cells.append(String(format: "%.2fx", m / t))
                }
            }
            lines.append(cells)
        }
        var widths = Array(repeating: 0, count: header.count)
        for l in lines { for (i, c) in l.enumerated() { widths[i] = max(widths[i], c.count) } }
        var out = ""
        for (n, l) in lines.enumerated() {
            let cells = l.enumerated().map { i, c in
                let pad = String(repeating: " ", count: widths[i] - c.count)
                return i == 0 ? c + pad : pad + c
            }
            out += cells.joined(separator: "  ") + "\n"
            if n == 0 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        if rounds.count > 1 { out += "(median of \(rounds.count) rounds, CPU/query picks the round per phase)\n" }
        if !machine.isEmpty { out += "machine: \(machine)\n" }
        for s in subjects where s.error != nil { out += "\(s.subject): \(s.error!)\n" }
        return out
    }

    /// "goal: met/not met (detail)" lines.
    public func goalLines() -> String {
        goals.map { "goal: \($0.goal): \($0.status.rawValue) (\($0.detail))" }.joined(separator: "\n") + "\n"
    }

    public func json() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }
}
