import Foundation
import SimNet

/// What `sim bench` runs, and how long.
public struct BenchOptions {
    /// Path of our `forwarder` binary.
    public var forwarderPath: String
    /// Subjects in the order they run: ours, dnsmasq, unbound.
    public var subjects: [String] = ["ours", "dnsmasq", "unbound"]
    /// Length of the hit and miss phases.
    public var seconds: Double = 5
    /// Rounds of all subjects, interleaved (ours, dnsmasq, unbound, ours, ...); the report
    /// gives medians. RSS per entry is measured in the first round only.
    public var rounds: Int = 1
    public var hitQPS: Int = 20_000
    public var missQPS: Int = 5_000
    /// Names under example.test in the hit phase (warmed once).
    public var hitNames: Int = 1000
    /// Unique names sent in the burst, and how many dnsperf keeps in flight.
    public var burstQueries: Int = 20_000
    public var burstInFlight: Int = 2000
    /// Distinct names cached by a fresh instance for "RSS per cached entry" (0 = skip).
    public var entries: Int = 100_000
    /// Scratch folder (configs, name lists, logs); a temporary one when nil.
    public var workDir: String?
    public var keepWorkDir: Bool = false
    /// Progress lines.
    public var log: (String) -> Void = { _ in }

    public init(forwarderPath: String) {
        self.forwarderPath = forwarderPath
    }

    public static let knownSubjects = ["ours", "dnsmasq", "unbound"]
}

/// Builds client -- forwarder -- upstream in namespaces, with unbound on the
/// upstream answering example.test from a local zone, and measures each
/// subject in turn on the forwarder host with dnsperf on the client host.
public final class BenchRunner {
    public let options: BenchOptions

    static let clientAddr = "10.53.0.1"
    static let subjectAddr = "10.53.0.2"
    static let subjectUpAddr = "10.53.1.1"
    static let upstreamAddr = "10.53.1.2"

    /// In-flight cap of the paced phases. dnsperf sends this many at once when it starts:
    /// more would overflow a default 208 KB socket buffer (dnsmasq drops ~300 of 500) and
    /// pass dnsmasq's 150 forwards in flight (REFUSED on misses), which is the burst's job.
    static let pacedInFlight = "150"

    var net: Network?
    var client: SimHost!
    var fwd: SimHost!
    var up: SimHost!
    var dir = ""

    public init(options: BenchOptions) {
        self.options = options
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// Runs every subject; a subject that fails is reported with its error and
    /// the others still run. Everything started is torn down before it returns.
    public func run() throws -> BenchReport {
        try prepareDir()
        defer {
            net?.teardown()
            net = nil
            if !options.keepWorkDir && options.workDir == nil { try? FileManager.default.removeItem(atPath: dir) }
        }
        try buildTopology()
        try startUpstream()
        try writeNameFiles()
        let loadBefore = BenchRunner.loadAverage()
        var rounds: [[BenchSubjectResult]] = []
        for round in 1...max(1, options.rounds) {
            var results: [BenchSubjectResult] = []
            for s in options.subjects {
                options.log(options.rounds > 1 ? "== \(s) (round \(round) of \(options.rounds))" : "== \(s)")
                results.append(measure(subject: s, entries: round == 1))
            }
            rounds.append(results)
        }
        let medians = options.subjects.indices.map { i in BenchSubjectResult.median(of: rounds.map { $0[i] }) }
        let machine = "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, load average \(loadBefore) before, \(BenchRunner.loadAverage()) after"
        let stamp = ISO8601DateFormatter().string(from: Date())
        return BenchReport(date: stamp, secondsPerPhase: options.seconds, hitQPS: options.hitQPS,
                           missQPS: options.missQPS, burstInFlight: options.burstInFlight, subjects: medians,
                           rounds: rounds.count > 1 ? rounds : [], machine: machine)
    }

    // MARK: set-up

    func prepareDir() throws {
        if let d = options.workDir {
            dir = d
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        } else {
            BenchRunner.removeStaleDirs()
            var template = Array("/tmp/sim-bench-\(getpid())-XXXXXX".utf8CString)
            guard let p = mkdtemp(&template) else { throw Failure("mkdtemp: \(String(cString: strerror(errno)))") }
            dir = String(cString: p)
        }
    }

    /// An interrupted run exits at once and leaves its scratch folder: remove those
    /// of runs whose process is gone (/tmp/sim-bench-<pid>-*).
    static func removeStaleDirs() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/tmp") else { return }
        for n in names where n.hasPrefix("sim-bench-") {
            let parts = n.split(separator: "-")
            guard parts.count == 4, let pid = Int32(parts[2]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? FileManager.default.removeItem(atPath: "/tmp/" + n) }
        }
    }

    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    func buildTopology() throws {
        let n = Network()
        net = n
        client = try n.addHost("client")
        fwd = try n.addHost("fwd")
        up = try n.addHost("up")
        try n.connect(client, "eth0", fwd, "eth0")
        try n.connect(fwd, "eth1", up, "eth0")
        try client.addAddress("\(BenchRunner.clientAddr)/24", dev: "eth0")
        try fwd.addAddress("\(BenchRunner.subjectAddr)/24", dev: "eth0")
        try fwd.addAddress("\(BenchRunner.subjectUpAddr)/24", dev: "eth1")
        try up.addAddress("\(BenchRunner.upstreamAddr)/24", dev: "eth0")
    }

    /// unbound on the upstream host: answers every name under example.test with 192.0.2.1.
    static func upstreamConfig(dir: String) -> String {
        """
        server:
          port: 53
          interface: \(upstreamAddr)
          do-daemonize: no
          use-syslog: no
          logfile: ""
          username: ""
          chroot: ""
          pidfile: ""
          directory: "\(dir)"
          num-threads: 1
          verbosity: 0
          access-control: 0.0.0.0/0 allow
          module-config: "iterator"
          so-rcvbuf: 8m
          so-sndbuf: 8m
          local-zone: "test." nodefault
          local-zone: "example.test." redirect
          local-data: "example.test. 3600 IN A 192.0.2.1"

        """
    }

    /// unbound as a subject: a plain forwarder to the upstream, 1 thread, big caches.
    static func unboundSubjectConfig(dir: String) -> String {
        """
        server:
          port: 53
          interface: 0.0.0.0
          do-daemonize: no
          use-syslog: no
          logfile: ""
          username: ""
          chroot: ""
          pidfile: ""
          directory: "\(dir)"
          num-threads: 1
          verbosity: 0
          access-control: 0.0.0.0/0 allow
          module-config: "iterator"
          local-zone: "test." nodefault
          qname-minimisation: no
          msg-cache-size: 256m
          rrset-cache-size: 512m
        forward-zone:
          name: "."
          forward-addr: \(upstreamAddr)

        """
    }

    func startUpstream() throws {
        let conf = path("upstream-unbound.conf")
        try BenchRunner.upstreamConfig(dir: dir).write(toFile: conf, atomically: true, encoding: .utf8)
        let log = path("upstream.log")
        let p = try up.spawn(["unbound", "-d", "-c", conf], stdout: log, stderr: log)
        try waitForPort(host: up, process: p, what: "upstream unbound", log: log)
        options.log("upstream unbound ready (pid \(p.pid))")
    }

    /// Waits until `process` has UDP port 53 bound inside `host`.
    func waitForPort(host: SimHost, process p: ChildProcess, what: String, log: String) throws {
        let ready = waitUntil(timeout: 10) {
            if !p.isRunning { return true }
            guard let udp = try? host.readFile("/proc/thread-self/net/udp") else { return false }
            return udp.split(separator: "\n").contains { line in
                line.split(separator: " ").dropFirst().first.map { $0.hasSuffix(":0035") } ?? false
            }
        }
        guard p.isRunning else { throw Failure("\(what) exited at start (\(p.exitStatus.map { "\($0)" } ?? "?")): \(tail(log))") }
        guard ready else { throw Failure("\(what) did not bind UDP port 53 within 10 s: \(tail(log))") }
    }

    func writeNameFiles() throws {
        func write(_ name: String, _ prefix: String, _ count: Int) throws {
            var text = ""
            text.reserveCapacity(count * 24)
            for i in 0..<count { text += "\(prefix)\(i).example.test A\n" }
            try text.write(toFile: path(name), atomically: true, encoding: .utf8)
        }
        try write("hits.txt", "h", options.hitNames)
        // dnsperf stops at the time limit; the margin covers a rate a little above the offer.
        try write("miss.txt", "m", Int(Double(options.missQPS) * options.seconds * 1.5) + 100)
        try write("burst.txt", "b", options.burstQueries)
        if options.entries > 0 { try write("entries.txt", "e", options.entries) }
    }

    // MARK: subjects

    func command(subject: String) throws -> [String] {
        let common = ["--no-resolv", "--server=\(BenchRunner.upstreamAddr)", "--cache-size=1000000", "--no-hosts"]
        switch subject {
        case "ours":
            return [options.forwarderPath, "--keep-in-foreground", "--conf-file=/dev/null"] + common
        case "dnsmasq":
            return ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--user=root", "--pid-file=",
                    "--log-facility=-"] + common
        case "unbound":
            let conf = path("subject-unbound.conf")
            try BenchRunner.unboundSubjectConfig(dir: dir).write(toFile: conf, atomically: true, encoding: .utf8)
            return ["unbound", "-d", "-c", conf]
        default:
            throw Failure("unknown subject '\(subject)' (ours, dnsmasq or unbound)")
        }
    }

    /// Starts the subject on the forwarder host and waits until it answers a query.
    func startSubject(_ subject: String, argv: [String], log: String) throws -> ChildProcess {
        let p = try fwd.spawn(argv, cwd: dir, stdout: log, stderr: log)
        do {
            try waitForPort(host: fwd, process: p, what: subject, log: log)
            var last = ""
            let answered = waitUntil(timeout: 10) {
                guard p.isRunning else { return true }
                let r = try? client.runCommand(["dig", "+short", "+tries=1", "+time=1", "@\(BenchRunner.subjectAddr)",
                                                "probe.example.test", "A"], timeout: 5)
                last = r?.output ?? ""
                return last.contains("192.0.2.1")
            }
            guard p.isRunning else { throw Failure("\(subject) exited at start: \(tail(log))") }
            guard answered else { throw Failure("\(subject) did not answer probe.example.test within 10 s (dig said: \(last.prefix(200))); log: \(tail(log))") }
        } catch {
            _ = p.terminate(grace: 1)
            throw error
        }
        return p
    }

    /// The first three fields of /proc/loadavg.
    static func loadAverage() -> String {
        guard let s = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "?" }
        return s.split(separator: " ").prefix(3).joined(separator: " ")
    }

    func measure(subject: String, entries: Bool) -> BenchSubjectResult {
        var result = BenchSubjectResult(subject: subject)
        let log = path("\(subject).log")
        do {
            let argv = try command(subject: subject)
            result.command = argv
            let p = try startSubject(subject, argv: argv, log: log)
            defer { _ = p.terminate(grace: 2) }
            options.log("\(subject) ready (pid \(p.pid)): \(argv.joined(separator: " "))")
            // Warm the hit names once, gently (dnsmasq refuses past 150 in flight).
            let warm = try dnsperf(["-d", path("hits.txt"), "-n", "1", "-q", "50"], limit: 60)
            options.log("  warmed \(warm.completed)/\(warm.sent) hit names")
            result.phases.append(try phase("hit", subject: subject, process: p, offered: options.hitQPS,
                                           args: ["-d", path("hits.txt"), "-l", fmt(options.seconds),
                                                  "-Q", "\(options.hitQPS)", "-q", BenchRunner.pacedInFlight]))
            result.phases.append(try phase("miss", subject: subject, process: p, offered: options.missQPS,
                                           args: ["-d", path("miss.txt"), "-n", "1", "-l", fmt(options.seconds),
                                                  "-Q", "\(options.missQPS)", "-q", BenchRunner.pacedInFlight]))
            result.phases.append(try phase("burst", subject: subject, process: p, offered: nil,
                                           args: ["-d", path("burst.txt"), "-n", "1", "-q", "\(options.burstInFlight)",
                                                  "-t", "3"]))
            result.rssKB = try rss(p)
            guard p.isRunning else { throw Failure("\(subject) exited during the runs: \(tail(log))") }
            _ = p.terminate(grace: 2)
            if options.entries > 0 && entries {
                try measureEntries(subject: subject, argv: argv, into: &result)
            }
        } catch {
            result.error = "\(error)"
            options.log("  \(subject): \(error)")
        }
        return result
    }

    /// What one cached name costs in RSS: a fresh instance sized for `entries` names caches
    /// them in one pass; its RSS then, minus the RSS of an instance with no cache at all
    /// (--cache-size=0; for unbound, whose caches grow as filled, the fresh instance), per name.
    /// Against a no-cache baseline rather than the fresh instance, because dnsmasq allocates
    /// its whole cache at start.
    func measureEntries(subject: String, argv: [String], into result: inout BenchSubjectResult) throws {
        func sized(_ n: Int) -> [String] {
            argv.map { $0.hasPrefix("--cache-size=") ? "--cache-size=\(n)" : $0 }
        }
        var baseline: Int?
        if subject != "unbound" {
            let p = try startSubject(subject, argv: sized(0), log: path("\(subject)-nocache.log"))
            baseline = try rss(p)
            _ = p.terminate(grace: 2)
        }
        let p = try startSubject(subject, argv: sized(options.entries + 1000), log: path("\(subject)-entries.log"))
        defer { _ = p.terminate(grace: 2) }
        let fresh = try rss(p)
        let r = try dnsperf(["-d", path("entries.txt"), "-n", "1", "-q", "100"], limit: 300)
        let after = try rss(p)
        let cached = r.count("NOERROR")
        guard cached > 0 else { throw Failure("no NOERROR answer while caching \(options.entries) names") }
        result.entries = cached
        result.rssBaselineKB = baseline ?? fresh
        result.rssFreshKB = fresh
        result.rssCachedKB = after
        result.rssPerEntryBytes = Double(after - (baseline ?? fresh)) * 1024 / Double(cached)
        options.log(String(format: "  %d names cached: RSS without cache %d kB, fresh %d kB, cached %d kB: %.0f B/entry",
                           cached, baseline ?? fresh, fresh, after, result.rssPerEntryBytes!))
    }

    func phase(_ name: String, subject: String, process p: ChildProcess, offered: Int?, args: [String]) throws -> BenchPhase {
        let hosts: [(String, SimHost)] = [("client", client), ("subject", fwd), ("upstream", up)]
        let dropsBefore = hosts.map { (try? $0.1.netStats())?["Udp.RcvbufErrors"] }
        let wakeBefore = wakeups(p)
        let before = try cpuTicks(p)
        let r = try dnsperf(args, limit: options.seconds + 60)
        let after = try cpuTicks(p)
        let tps = Double(ProcFigures.ticksPerSecond)
        let wakeAfter = wakeups(p)
        var drops: [String: Int64] = [:]
        for (i, (name, host)) in hosts.enumerated() {
            if let b = dropsBefore[i], let a = (try? host.netStats())?["Udp.RcvbufErrors"] { drops[name] = a - b }
        }
        let ph = BenchPhase(name: name, offeredQPS: offered, dnsperf: r,
                            cpuSeconds: Double(after.user + after.system - before.user - before.system) / tps, udpDrops: drops,
                            wakeups: wakeBefore.flatMap { b in wakeAfter.map { $0 - b } },
                            systemSeconds: Double(after.system - before.system) / tps)
        options.log(String(format: "  %@: %d/%d answered, %.0f qps, %@ µs CPU/query (%@ kernel), %@ wake-ups/query, avg %.3f ms, max %.2f ms, rcodes %@, lost %d",
                           name, r.completed, r.sent, r.qps, ph.cpuMicrosPerQuery.map { String(format: "%.2f", $0) } ?? "-",
                           ph.systemMicrosPerQuery.map { String(format: "%.2f", $0) } ?? "-",
                           ph.wakeupsPerQuery.map { String(format: "%.2f", $0) } ?? "-",
                           r.avgLatency * 1000, r.maxLatency * 1000,
                           r.rcodes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "), r.lost)
                    + "; UDP drops " + drops.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        return ph
    }

    /// Runs dnsperf on the client host against the subject; `limit` bounds it.
    func dnsperf(_ args: [String], limit: Double) throws -> DnsperfResult {
        // -b 4096: a 4 MB socket buffer (net.core.rmem_max here), so that dnsperf's own socket
        // is not where answers are lost.
        let argv = ["dnsperf", "-s", BenchRunner.subjectAddr, "-p", "53", "-b", "4096"] + args
        let r = try client.runCommand(argv, timeout: limit)
        guard r.status == 0 else {
            throw Failure("\(argv.joined(separator: " ")) exited with \(r.status): \(r.output.suffix(500))")
        }
        do {
            return try DnsperfResult.parse(r.stdout)
        } catch {
            throw Failure("\(argv.joined(separator: " ")): \(error); output: \(r.output.suffix(500))")
        }
    }

    func cpuTicks(_ p: ChildProcess) throws -> (user: Int, system: Int) {
        guard let text = try? String(contentsOfFile: "/proc/\(p.pid)/stat", encoding: .utf8) else {
            throw Failure("cannot read /proc/\(p.pid)/stat: \(p) has ended")
        }
        return try ProcFigures.cpuTicksSplit(stat: text)
    }

    /// Voluntary context switches summed over the process's threads; nil if unreadable.
    func wakeups(_ p: ChildProcess) -> Int? {
        guard let tids = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p.pid)/task") else { return nil }
        var sum = 0
        for t in tids {
            guard let text = try? String(contentsOfFile: "/proc/\(p.pid)/task/\(t)/status", encoding: .utf8),
                  let n = try? ProcFigures.voluntarySwitches(status: text) else { continue }
            sum += n
        }
        return sum
    }

    func rss(_ p: ChildProcess) throws -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(p.pid)/status", encoding: .utf8) else {
            throw Failure("cannot read /proc/\(p.pid)/status: \(p) has ended")
        }
        return try ProcFigures.rssKB(status: text)
    }

    func fmt(_ s: Double) -> String {
        s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s)
    }

    func tail(_ file: String) -> String {
        guard let s = try? String(contentsOfFile: file, encoding: .utf8) else { return "(no log)" }
        return String(s.suffix(400)).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
