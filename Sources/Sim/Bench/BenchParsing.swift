import Foundation

/// A parse failure: names what was read and what was missing.
public struct BenchParseError: Error, CustomStringConvertible, Equatable {
    public var what: String
    public var reason: String
    public init(what: String, reason: String) {
        self.what = what
        self.reason = reason
    }
    public var description: String { "cannot read \(what): \(reason)" }
}

/// The figures of one dnsperf run, from its "Statistics:" block.
public struct DnsperfResult: Codable, Equatable {
    public var sent: Int
    public var completed: Int
    public var lost: Int
    /// Response code name (NOERROR, SERVFAIL, ...) -> count.
    public var rcodes: [String: Int]
    public var runTime: Double
    public var qps: Double
    /// Seconds.
    public var avgLatency: Double
    public var minLatency: Double
    public var maxLatency: Double

    public init(sent: Int, completed: Int, lost: Int, rcodes: [String: Int], runTime: Double, qps: Double,
                avgLatency: Double, minLatency: Double, maxLatency: Double) {
        self.sent = sent
        self.completed = completed
        self.lost = lost
        self.rcodes = rcodes
        self.runTime = runTime
        self.qps = qps
        self.avgLatency = avgLatency
        self.minLatency = minLatency
        self.maxLatency = maxLatency
    }

    public func count(_ rcode: String) -> Int { rcodes[rcode] ?? 0 }

    /// Parses dnsperf's standard output (version 2.x). Lines it does not know are skipped;
    /// a missing "Queries sent/completed/lost" line is an error.
    public static func parse(_ text: String) throws -> DnsperfResult {
        var values: [String: String] = [:]
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon]).trimmingCharacters(in: .whitespaces)
            let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            if values[key] == nil { values[key] = value }
        }
        func firstNumber(_ key: String) throws -> String {
            guard let v = values[key] else {
                throw BenchParseError(what: "dnsperf output", reason: "no '\(key):' line")
            }
            guard let word = v.split(separator: " ").first else {
                throw BenchParseError(what: "dnsperf output", reason: "'\(key):' has no value")
            }
            return String(word)
        }
        func int(_ key: String) throws -> Int {
            let w = try firstNumber(key)
            guard let n = Int(w) else { throw BenchParseError(what: "dnsperf output", reason: "'\(key):' value '\(w)' is not a number") }
            return n
        }
        func double(_ key: String, default d: Double? = nil) throws -> Double {
            if values[key] == nil, let d { return d }
            let w = try firstNumber(key)
            guard let n = Double(w) else { throw BenchParseError(what: "dnsperf output", reason: "'\(key):' value '\(w)' is not a number") }
            return n
        }
        let sent = try int("Queries sent")
        let completed = try int("Queries completed")
        let lost = try int("Queries lost")
        // "NOERROR 990 (99.00%), SERVFAIL 10 (1.00%)"
        var rcodes: [String: Int] = [:]
        if let v = values["Response codes"], !v.isEmpty {
            for part in v.split(separator: ",") {
                let words = part.split(separator: " ")
                guard words.count >= 2, let n = Int(words[1]) else {
                    throw BenchParseError(what: "dnsperf output", reason: "response code entry '\(part.trimmingCharacters(in: .whitespaces))' is not 'NAME COUNT'")
                }
                rcodes[String(words[0]), default: 0] += n
            }
        }
        // "0.001161 (min 0.000018, max 0.015641)"; absent when nothing completed.
        var avg = 0.0, lo = 0.0, hi = 0.0
        if let v = values["Average Latency (s)"] {
            let nums = v.split(whereSeparator: { " (),".contains($0) }).compactMap { Double($0) }
            guard nums.count == 3 else {
                throw BenchParseError(what: "dnsperf output", reason: "'Average Latency (s):' value '\(v)' is not 'AVG (min MIN, max MAX)'")
            }
            (avg, lo, hi) = (nums[0], nums[1], nums[2])
        } else if completed > 0 {
            throw BenchParseError(what: "dnsperf output", reason: "no 'Average Latency (s):' line though \(completed) queries completed")
        }
        return DnsperfResult(sent: sent, completed: completed, lost: lost, rcodes: rcodes,
                             runTime: try double("Run time (s)", default: 0),
                             qps: try double("Queries per second", default: 0),
                             avgLatency: avg, minLatency: lo, maxLatency: hi)
    }
}

/// CPU and memory of a process, from /proc/PID/stat and /proc/PID/status.
public enum ProcFigures {
    /// utime + stime in clock ticks, from the text of /proc/PID/stat. The command
    /// name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
    public static func cpuTicks(stat text: String) throws -> Int {
        let t = try cpuTicksSplit(stat: text)
        return t.user + t.system
    }

    /// utime and stime apart (clock ticks): time in the program itself and in the kernel
    /// on its behalf (system calls, and the network stack work they trigger).
    public static func cpuTicksSplit(stat text: String) throws -> (user: Int, system: Int) {
        guard let close = text.lastIndex(of: ")") else {
            throw BenchParseError(what: "/proc/PID/stat", reason: "no ')' closing the command name")
        }
        // After ')': field 3 (state) is index 0, so utime (14) is index 11, stime (15) index 12.
        let fields = text[text.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count > 12 else {
            throw BenchParseError(what: "/proc/PID/stat", reason: "only \(fields.count + 2) fields")
        }
        guard let u = Int(fields[11]), let s = Int(fields[12]) else {
            throw BenchParseError(what: "/proc/PID/stat", reason: "utime '\(fields[11])' or stime '\(fields[12])' is not a number")
        }
        return (u, s)
    }

    /// VmRSS in kB, from the text of /proc/PID/status.
    public static func rssKB(status text: String) throws -> Int {
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let words = line.dropFirst("VmRSS:".count).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let first = words.first, let n = Int(first) else {
                throw BenchParseError(what: "/proc/PID/status", reason: "VmRSS line '\(line)' has no number")
            }
            if words.count > 1 && words[1] != "kB" {
                throw BenchParseError(what: "/proc/PID/status", reason: "VmRSS unit is '\(words[1])', not kB")
            }
            return n
        }
        throw BenchParseError(what: "/proc/PID/status", reason: "no VmRSS line (process ended?)")
    }

    /// voluntary_ctxt_switches of /proc/PID/task/TID/status: how often the thread slept
    /// and was woken (for a server: one wake-up per batch of packets it read).
    public static func voluntarySwitches(status text: String) throws -> Int {
        for line in text.split(separator: "\n") where line.hasPrefix("voluntary_ctxt_switches:") {
            let v = line.dropFirst("voluntary_ctxt_switches:".count).trimmingCharacters(in: .whitespaces)
            guard let n = Int(v) else {
                throw BenchParseError(what: "/proc/PID/status", reason: "voluntary_ctxt_switches value '\(v)' is not a number")
            }
            return n
        }
        throw BenchParseError(what: "/proc/PID/status", reason: "no voluntary_ctxt_switches line")
    }

    public static var ticksPerSecond: Int {
        let t = sysconf(Int32(_SC_CLK_TCK))
        return t > 0 ? t : 100
    }
}
