import Foundation

public enum Outcome: Equatable {
    case passed
    /// The subject showed the failure the scenario declares for it.
    case passedDeclared(String)
    case failed
    case skipped(String)

    public var word: String {
        switch self {
        case .passed: return "pass"
        case .passedDeclared: return "pass*"
        case .failed: return "FAIL"
        case .skipped: return "skip"
        }
    }
}

public struct ScenarioResult {
    public var family: String
    public var id: String
    public var name: String
    public var file: String
    public var subject: String
    public var outcome: Outcome
    /// What differed: scenario, step and expectation.
    public var failures: [String]
    /// Figures worth reading (latencies, switch times, reply sources, firewall diagnosis).
    public var report: [String]
    public var duration: Double
    public var artifacts: String?

    public var qualifiedName: String { "\(family)/\(id)" }

    public init(family: String, id: String, name: String, file: String, subject: String, outcome: Outcome,
                failures: [String], report: [String], duration: Double, artifacts: String?) {
        self.family = family
        self.id = id
        self.name = name
        self.file = file
        self.subject = subject
        self.outcome = outcome
        self.failures = failures
        self.report = report
        self.duration = duration
        self.artifacts = artifacts
    }
}

/// The result table, the closing count line, and JUnit XML.
public enum RunReport {
    public static func table(_ results: [ScenarioResult], verbose: Bool) -> String {
        var out = ""
        let width = max(30, results.map(\.qualifiedName.count).max() ?? 0)
        out += "RESULT  " + "SCENARIO".padding(toLength: width, withPad: " ", startingAt: 0) + "  SUBJECT   TIME\n"
        for r in results {
            out += r.outcome.word.padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
            out += r.qualifiedName.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
            out += r.subject.padding(toLength: 8, withPad: " ", startingAt: 0) + "  "
            out += String(format: "%.2fs", r.duration)
            switch r.outcome {
            case .passedDeclared(let s): out += "  declared failure seen: \(s)"
            case .skipped(let s): out += "  \(s)"
            default: break
            }
            out += "\n"
            for f in r.failures { out += "        \(f)\n" }
            if r.outcome == .failed, let a = r.artifacts { out += "        artifacts: \(a)\n" }
            if verbose || r.outcome == .failed { for line in r.report { out += "        | \(line)\n" } }
        }
        return out
    }

    public static func countLine(_ results: [ScenarioResult]) -> String {
        let passed = results.filter { if case .passed = $0.outcome { return true }; if case .passedDeclared = $0.outcome { return true }; return false }.count
        let failed = results.filter { $0.outcome == .failed }.count
        let skipped = results.count - passed - failed
        return "\(passed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : "")
    }

    public static func junit(_ results: [ScenarioResult], subject: String) -> String {
        func esc(_ s: String) -> String {
            var o = ""
            for c in s.unicodeScalars {
                switch c {
                case "&": o += "&amp;"
                case "<": o += "&lt;"
                case ">": o += "&gt;"
                case "\"": o += "&quot;"
                case "\n", "\t": o.unicodeScalars.append(c)
                default: if c.value < 0x20 { o += "?" } else { o.unicodeScalars.append(c) }
                }
            }
            return o
        }
        let failures = results.filter { $0.outcome == .failed }.count
        let skipped = results.filter { if case .skipped = $0.outcome { return true }; return false }.count
        let total = results.reduce(0) { $0 + $1.duration }
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<testsuites tests=\"\(results.count)\" failures=\"\(failures)\" skipped=\"\(skipped)\" time=\"\(String(format: "%.3f", total))\">\n"
        x += "  <testsuite name=\"sim (\(esc(subject)))\" tests=\"\(results.count)\" failures=\"\(failures)\" skipped=\"\(skipped)\" time=\"\(String(format: "%.3f", total))\">\n"
        for r in results {
            x += "    <testcase classname=\"\(esc(r.family))\" name=\"\(esc(r.id)) [\(esc(r.subject))]\" file=\"\(esc(r.file))\" time=\"\(String(format: "%.3f", r.duration))\">\n"
            switch r.outcome {
            case .failed:
                x += "      <failure message=\"\(esc(r.failures.first ?? "failed"))\">\(esc(r.failures.joined(separator: "\n")))</failure>\n"
            case .skipped(let why):
                x += "      <skipped message=\"\(esc(why))\"/>\n"
            default: break
            }
            var out = r.report
            if case .passedDeclared(let s) = r.outcome { out.insert("declared failure seen: \(s)", at: 0) }
            if !out.isEmpty { x += "      <system-out>\(esc(out.joined(separator: "\n")))</system-out>\n" }
            x += "    </testcase>\n"
        }
        x += "  </testsuite>\n</testsuites>\n"
        return x
    }
}
