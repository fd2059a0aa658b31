import ArgumentParser
import Foundation
import Sim
import SimNet

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Side-by-side benchmark: ours, dnsmasq and unbound behind dnsperf, CPU per query (issue 8).",
        discussion: """
        Builds client -- forwarder -- upstream in network namespaces (unbound answers example.test on
        the upstream), then for each subject: cache hits (names warmed once, offered --hit-qps),
        cache misses (unique names, offered --miss-qps), a burst (unique names, --burst-in-flight
        outstanding), each read as the subject's utime+stime from /proc/PID/stat per answered query;
        RSS after the runs; and RSS growth per cached name for a fresh instance over --entries names.
        Prints a table with ratios and the goal of issue 8, and writes JSON.
        """)

    @Option(help: "Subjects, comma-separated, in order: ours, dnsmasq, unbound.")
    var subjects: String = "ours,dnsmasq,unbound"

    @Option(help: "Seconds per hit and miss phase.")
    var seconds: Double = 5

    @Option(help: "Rounds of all subjects, interleaved; the table gives medians (RSS per entry: first round).")
    var rounds: Int = 1

    @Option(help: "Offered rate of the cache-hit phase (queries per second).")
    var hitQps: Int = 20_000

    @Option(help: "Offered rate of the cache-miss phase.")
    var missQps: Int = 5_000

    @Option(help: "Distinct names in the cache-hit phase.")
    var hitNames: Int = 1000

    @Option(help: "Unique names sent in the burst.")
    var burstQueries: Int = 20_000

    @Option(help: "Queries dnsperf keeps in flight in the burst.")
    var burstInFlight: Int = 2000

    @Option(help: "Distinct names cached by a fresh instance to measure RSS per entry (0 skips it).")
    var entries: Int = 100_000

    @Option(help: "Path of our forwarder binary (default: next to sim).")
    var forwarderPath: String?

    @Option(help: "Write the JSON report here (default: bench-results/bench-<time>.json).")
    var json: String?

    @Option(help: "Scratch folder for configs, name lists and subject logs (default: a temporary one, removed).")
    var workDir: String?

    @Flag(name: .shortAndLong, help: "Print each phase's figures as it runs.")
    var verbose = false

    var subjectList: [String] {
        subjects.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func validate() throws {
        let list = subjectList
        if list.isEmpty { throw ValidationError("--subjects is empty; give some of ours,dnsmasq,unbound") }
        for s in list where !BenchOptions.knownSubjects.contains(s) {
            throw ValidationError("--subjects: unknown subject '\(s)' (ours, dnsmasq or unbound)")
        }
        if Set(list).count != list.count { throw ValidationError("--subjects names a subject twice: \(subjects)") }
        guard rounds >= 1, rounds <= 20 else { throw ValidationError("--rounds must be between 1 and 20, not \(rounds)") }
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600], not \(seconds)") }
        for (name, v, lo) in [("--hit-qps", hitQps, 1), ("--miss-qps", missQps, 1), ("--hit-names", hitNames, 1),
                              ("--burst-queries", burstQueries, 1), ("--burst-in-flight", burstInFlight, 1),
                              ("--entries", entries, 0)] where v < lo || v > 10_000_000 {
            throw ValidationError("\(name) must be between \(lo) and 10000000, not \(v)")
        }
    }

    func run() throws {
        try Rootless.reexecIfNeeded(arguments: CommandLine.arguments)
        let list = subjectList
        var exe = forwarderPath ?? siblingBinary("forwarder")
        // The subject runs in a scratch folder: a relative path would not be found there.
        if !exe.hasPrefix("/") { exe = FileManager.default.currentDirectoryPath + "/" + exe }
        if list.contains("ours") && !FileManager.default.isExecutableFile(atPath: exe) {
            throw ValidationError("the forwarder binary is not at \(exe); build it (swift build -c release) or give --forwarder-path")
        }
        for tool in ["dnsperf", "unbound", "dig"] + (list.contains("dnsmasq") ? ["dnsmasq"] : []) where !onPath(tool) {
            throw ValidationError("\(tool) is not installed (ci/setup installs it)")
        }
        var options = BenchOptions(forwarderPath: exe)
        options.subjects = list
        options.seconds = seconds
        options.rounds = rounds
        options.hitQPS = hitQps
        options.missQPS = missQps
        options.hitNames = hitNames
        options.burstQueries = burstQueries
        options.burstInFlight = burstInFlight
        options.entries = entries
        options.workDir = workDir
        options.keepWorkDir = workDir != nil
        let verbose = self.verbose
        options.log = { line in
            if verbose || line.hasPrefix("==") { print(line); fflush(stdout) }
        }
        installInterruptHandler()
        let report = try BenchRunner(options: options).run()
        print("")
        print(report.table(), terminator: "")
        print("")
        print(report.goalLines(), terminator: "")
        let out = json ?? defaultJSONPath()
        let dir = (out as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try report.json().write(to: URL(fileURLWithPath: out))
        print("JSON: \(out)")
        if report.subjects.contains(where: { $0.error != nil }) { throw ExitCode(1) }
    }

    func defaultJSONPath() -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyyMMdd-HHmmss"
        f.timeZone = TimeZone(identifier: "UTC")
        return "bench-results/bench-\(f.string(from: Date())).json"
    }

    func onPath(_ name: String) -> Bool {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        return paths.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
    }
}
