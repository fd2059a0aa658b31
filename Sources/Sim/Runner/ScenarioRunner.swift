import DNSWire
import Foundation
import SimNet

public struct RunOptions {
    public var subject: String = "ours"
    public var forwarderPath: String
    /// Artifacts go to <root>/<family>-<id>-<subject>/; kept on failure.
    public var artifactsRoot: String
    /// Keep artifacts of passing scenarios too.
    public var keepArtifacts: Bool = false
    /// Pin every host under /run/netns as sim-<scenario>-<host> (removed by `sim clean`).
    public var keep: Bool = false
    public var verbose: Bool = false
    /// Progress lines (verbose mode) go here.
    public var log: (String) -> Void = { _ in }

    public init(forwarderPath: String, artifactsRoot: String) {
        self.forwarderPath = forwarderPath
        self.artifactsRoot = artifactsRoot
    }
}

/// A failed expectation: stops the scenario and names the step and what differed.
struct StepFailure: Error {
    var message: String
}

/// Runs scenarios one at a time: builds the topology, starts the actors and
/// the subject, plays the timeline, checks each expectation as its event
/// arrives (up to a deadline), and tears everything down whatever happens.
public final class ScenarioRunner {
    public let options: RunOptions

    public init(options: RunOptions) {
        self.options = options
    }

    public func run(_ scenario: Scenario) -> ScenarioResult {
        let subject = options.subject
        var result = ScenarioResult(family: scenario.family, id: scenario.id, name: scenario.name,
                                    file: scenario.file, subject: subject, outcome: .passed, failures: [],
                                    report: [], duration: 0, artifacts: nil)
        guard let decl = scenario.subjects[subject] else {
            result.outcome = .skipped("no declaration for \(subject)")
            return result
        }
        if case .skip(let why) = decl {
            result.outcome = .skipped(why)
            return result
        }
        if scenario.forwarder != nil, subject != "ours", !commandExists(subject) {
            result.outcome = .skipped("\(subject) is not installed (ci/setup installs it)")
            return result
        }
        let started = SimClock.monotonic()
        let root = options.artifactsRoot.hasPrefix("/") ? options.artifactsRoot
            : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(options.artifactsRoot)
        let dir = (root as NSString).appendingPathComponent("\(scenario.family)-\(scenario.id)-\(subject)")
        try? FileManager.default.removeItem(atPath: dir)
        let run = ScenarioRun(scenario: scenario, subject: subject, options: options, dir: dir)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try run.execute()
        } catch let f as StepFailure {
            result.failures.append(f.message)
        } catch {
            result.failures.append("\(scenario.file): \(error)")
        }
        run.teardown()
        result.report = run.report
        result.duration = SimClock.monotonic() - started
        if result.failures.isEmpty {
            if case .fails(let symptom) = decl { result.outcome = .passedDeclared(symptom) }
        } else {
            result.outcome = .failed
        }
        run.writeArtifacts(result: result)
        if result.outcome == .failed || options.keepArtifacts {
            result.artifacts = dir
        } else {
            try? FileManager.default.removeItem(atPath: dir)
        }
        return result
    }

    func commandExists(_ name: String) -> Bool {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        return paths.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
    }
}

/// The state of one scenario while it runs.
final class ScenarioRun {
    let scenario: Scenario
    let subject: String
    let options: RunOptions
    let dir: String

    var network: Network?
    var hosts: [String: SimHost] = [:]
    var upstreams: [String: FakeUpstream] = [:]
    var forwarder: ChildProcess?
    var forwarderLog: String { (dir as NSString).appendingPathComponent("forwarder.log") }
    var stubs: [String: LegacyStub] = [:]
    var traces: [String: NftTrace] = [:]
    /// Attackers and nuisances started by steps (spoof, flood, slowloris), by step id.
    var hostile: [String: HostileActor] = [:]
    var icmpBaseline: [String: Int64] = [:]
    var report: [String] = []
    var timeline: [String] = []

    /// Step id -> (start, end) on SimClock, and the forwarder log's size at the start.
    var stepTimes: [String: (start: Double, end: Double)] = [:]
    var stepLogOffsets: [String: Int] = [:]
    let pending = EventLog<(id: String, failure: String?)>()
    var backgroundIDs: [String] = []
    /// Steps not run for this subject (`only:`): nothing to wait for.
    var skippedIDs: Set<String> = []
    var t0: Double = 0

    init(scenario: Scenario, subject: String, options: RunOptions, dir: String) {
        self.scenario = scenario
        self.subject = subject
        self.options = options
        self.dir = dir
    }

    let lock = NSLock()

    func note(_ line: String) {
        let stamped = String(format: "%8.3fs  ", SimClock.now()) + line
        lock.lock()
        timeline.append(stamped)
        lock.unlock()
        if options.verbose { options.log("  \(scenario.family)/\(scenario.id): \(line)") }
    }

    func scratch(_ host: String) -> String {
        (dir as NSString).appendingPathComponent("hosts/\(host)")
    }

    // MARK: - set-up

    func execute() throws {
        SimClock.setEpoch()
        let deadline = SimClock.monotonic() + scenario.timeLimit
        let buildStart = SimClock.monotonic()
        try buildTopology()
        let built = SimClock.monotonic() - buildStart
        note(String(format: "topology of %d hosts built in %.1f ms", scenario.hosts.count, built * 1000))
        try startUpstreams()
        if let f = scenario.forwarder, f.start { try startForwarder(f) }
        t0 = SimClock.now()
        note("scenario starts")
        for step in scenario.steps {
            guard SimClock.monotonic() < deadline else {
                throw StepFailure(message: "time limit of \(scenario.timeLimit)s reached before step \(step.index) (line \(step.line))")
            }
            try perform(step)
        }
        // Background steps still out are collected at the end.
        try waitFor(ids: backgroundIDs, step: nil, timeout: max(1, deadline - SimClock.monotonic()))
    }

    func buildTopology() throws {
        let net = Network()
        network = net
        for h in scenario.hosts {
            hosts[h.name] = try net.addHost(h.name)
        }
        // Links: two interfaces with one link id are the two ends of a veth pair.
        var ends: [String: [(host: String, ifname: String)]] = [:]
        var order: [String] = []
        for h in scenario.hosts {
            for (ifname, link) in h.links {
                if ends[link] == nil { order.append(link) }
                ends[link, default: []].append((h.name, ifname))
            }
        }
        for link in order {
            let e = ends[link]!
            guard e.count == 2 else {
                throw ScenarioError(file: scenario.file, line: 1,
                                    reason: "link '\(link)' has \(e.count) end(s); a link joins exactly two interfaces (use a bridge for more)")
            }
            try net.connect(hosts[e[0].host]!, e[0].ifname, hosts[e[1].host]!, e[1].ifname)
        }
        for h in scenario.hosts {
            let host = hosts[h.name]!
            for (bridge, ports) in h.bridges { try host.addBridge(bridge, ports: ports) }
            for (key, value) in h.sysctls { try host.sysctl(key, value) }
            if h.forwarding { try host.enableForwarding() }
            for (dev, cidr) in h.addresses { try host.addAddress(cidr, dev: dev) }
            for dev in Set(h.links.map(\.ifname) + h.bridges.map(\.name)) { try host.setLink(dev, up: true) }
            for r in h.routes { try host.addRoute(r.destination, via: r.via, dev: r.dev) }
            if let rules = h.nftables {
                try host.applyNftables(rules)
                if rules.contains("nftrace") {
                    traces[h.name] = try host.startTrace()
                }
            }
            try writeHostFiles(h)
            icmpBaseline[h.name] = (try? icmpOutUnreachable(host)) ?? 0
        }
        for h in scenario.hosts { waitIPv6Usable(h.name, h.addresses.map(\.cidr)) }
        if options.keep {
            try net.pinAll(prefix: "sim-\(scenario.id)-")
            report.append("hosts pinned: " + scenario.hosts.map { "sim-\(scenario.id)-\($0.name)" }.joined(separator: " "))
        }
    }

    /// A new IPv6 address stays tentative until the kernel's DAD work item runs (even with
    /// IFA_F_NODAD; on a busy machine that can take a while): until then packets to it are
    /// dropped and neighbour solicitations for it go unanswered, and the sender's NDP only
    /// retries after 1 s. So wait (up to 3 s) until the host's new IPv6 addresses are usable.
    func waitIPv6Usable(_ hostName: String, _ cidrs: [String]) {
        guard let host = hosts[hostName] else { return }
        let wanted: [String] = cidrs.compactMap { cidr in
            let ip = String(cidr.split(separator: "/").first ?? "")
            var a = in6_addr()
            guard ip.contains(":"), inet_pton(AF_INET6, ip, &a) == 1 else { return nil }
            return withUnsafeBytes(of: &a) { $0.map { String(format: "%02x", $0) }.joined() }
        }
        guard !wanted.isEmpty else { return }
        var tentative: [String] = wanted
        let ok = waitUntil(timeout: 3) {
            guard let text = try? host.readFile("/proc/net/if_inet6") else { return false }
            var usable = Set<String>()
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ")
                // address, ifindex, prefix length, scope, flags, device; 0x40 is IFA_F_TENTATIVE
                if f.count >= 6, let flags = UInt32(f[4], radix: 16), flags & 0x40 == 0 { usable.insert(String(f[0])) }
            }
            tentative = wanted.filter { !usable.contains($0) }
            return tentative.isEmpty
        }
        if !ok { note("\(hostName): IPv6 address(es) still tentative after 3 s: \(tentative.joined(separator: " "))") }
    }

    func writeHostFiles(_ h: HostSpec) throws {
        let folder = scratch(h.name)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for f in h.files {
            let path = (folder as NSString).appendingPathComponent(f.name)
            if f.symlink {
                let target = path + ".v0"
                try f.content.write(toFile: target, atomically: false, encoding: .utf8)
                try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
            } else {
                try f.content.write(toFile: path, atomically: false, encoding: .utf8)
            }
        }
    }

    func startUpstreams() throws {
        for u in scenario.upstreams {
            let host = hosts[u.host]!
            let up = try ActorBridge.makeUpstream(u, factory: { d, t, p in try host.socket(domain: d, type: t, protocol: p) })
            upstreams[u.name] = up
        }
    }

    func startForwarder(_ f: ForwarderSpec) throws {
        let host = hosts[f.host]!
        let folder = scratch(f.host)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let adapter = SubjectAdapter(subject: subject, forwarderPath: options.forwarderPath)
        let (argv, files) = try adapter.command(for: f, scratch: folder)
        for (path, content) in files { try content.write(toFile: path, atomically: true, encoding: .utf8) }
        note("start \(subject): \(argv.joined(separator: " "))")
        let p = try host.spawn(argv, cwd: folder, stdout: forwarderLog, stderr: forwarderLog)
        forwarder = p
        // Ready when its UDP port is bound inside the host (any subject), or it died.
        let port = String(format: ":%04X", f.port)
        let ready = waitUntil(timeout: 10) {
            if !p.isRunning { return true }
            guard let udp = try? host.readFile("/proc/thread-self/net/udp") + host.readFile("/proc/thread-self/net/udp6") else { return false }
            return udp.split(separator: "\n").contains { line in
                line.split(separator: " ").dropFirst().first.map { $0.hasSuffix(port) } ?? false
            }
        }
        guard p.isRunning else {
            throw StepFailure(message: "\(subject) exited at start (\(p.exitStatus.map { "\($0)" } ?? "?")): \(tail(forwarderLog))")
        }
        guard ready else { throw StepFailure(message: "\(subject) did not bind UDP port \(f.port) within 10 s: \(tail(forwarderLog))") }
        note("\(subject) ready (pid \(p.pid))")
    }

    // MARK: - steps

    func perform(_ step: Step) throws {
        if let only = step.only, !only.contains(subject) {
            note("step \(step.index) (line \(step.line)): \(step.label) - not for \(subject)")
            if let id = step.id { skippedIDs.insert(id) }
            return
        }
        if let at = step.at {
            let target = t0 + at
            let now = SimClock.now()
            if target > now { sleepSeconds(target - now) }
        }
        let start = SimClock.now()
        if let id = step.id {
            stepTimes[id] = (start, start)
            stepLogOffsets[id] = fileSize(forwarderLog)
        }
        note("step \(step.index) (line \(step.line)): \(step.label)")
        let expect = step.expectation(for: subject)
        func fail(_ what: String) -> StepFailure {
            StepFailure(message: "step \(step.index) (line \(step.line)) \(step.label): \(what)")
        }
        switch step.action {
        case .query(let q):
            let body = { [self] () -> String? in
                var failure: String?
                for i in 0..<max(1, q.count) {
                    let o = ActorBridge.query(q, factory: factory(q.from))
                    let line = "step \(step.index) \(q.name) \(q.type) -> \(q.to) \(q.transport): \(o.summary)"
                    recordReport(line)
                    if let e = expect, let why = check(o, e) {
                        failure = "step \(step.index) (line \(step.line)) \(step.label)\(q.count > 1 ? " #\(i + 1)" : ""): \(why)"
                        break
                    }
                }
                return failure
            }
            try runMaybeInBackground(step, body)
        case .load(let l):
            let body = { [self] () -> String? in
                let outcomes = ActorBridge.load(l, factory: factory(l.from))
                recordReport("step \(step.index) load: \(ActorBridge.summarize(outcomes))")
                guard let e = expect else { return nil }
                return checkLoad(outcomes, e).map { "step \(step.index) (line \(step.line)) \(step.label): \($0)" }
            }
            try runMaybeInBackground(step, body)
        case .stub(let s):
            guard let id = step.id else { throw fail("a stub step needs an id") }
            let path = resolveFile(s.resolv, host: s.host)
            stubs[id] = try ActorBridge.startStub(s, resolvPath: path, factory: factory(s.host))
        case .file(let h, let name, let method, let content):
            try changeFile(host: h, name: name, method: method, content: content)
        case .behaviour(let u, let b):
            upstreams[u]!.setBehaviour(ActorBridge.behaviour(b))
        case .firewall(let h, let commands):
            for c in commands { try hosts[h]!.applyNftables(c) }
        case .link(let h, let dev, let up):
            try hosts[h]!.setLink(dev, up: up)
        case .address(let h, let dev, let cidr, let add):
            if add { try hosts[h]!.addAddress(cidr, dev: dev) } else { try hosts[h]!.removeAddress(cidr, dev: dev) }
            if add { waitIPv6Usable(h, [cidr]) }
        case .process(_, let action):
            try processAction(action, step: step)
        case .wait(let ids):
            try waitFor(ids: ids, step: step, timeout: scenario.timeLimit)
        case .run(let h, let rawArgv, let timeout):
            let argv = rawArgv.map { expandScratch($0, host: h) }
            let r = try hosts[h]!.runCommand(argv, timeout: timeout)
            recordReport("step \(step.index) \(argv.joined(separator: " ")): exit \(r.status): \(r.output.trimmingCharacters(in: .whitespacesAndNewlines).prefix(300))")
            if let e = expect {
                if let x = e.exitStatus, x != r.status { throw fail("exit status \(r.status), expected \(x): \(r.output.prefix(300))") }
                for want in e.outputContains ?? [] where !r.output.contains(want) {
                    throw fail("output lacks '\(want)': \(r.output.prefix(800))")
                }
                for unwanted in e.outputLacks ?? [] where r.output.contains(unwanted) {
                    throw fail("output has '\(unwanted)': \(r.output.prefix(800))")
                }
            }
        case .upstreamSaw(let s):
            try checkUpstreamSaw(s, fail: fail)
        case .log(let s):
            try checkLog(s, fail: fail)
        case .icmpUnreachable(let h, let min, let within):
            let host = hosts[h]!
            var seen: Int64 = 0
            let ok = waitUntil(timeout: within) {
                seen = ((try? self.icmpOutUnreachable(host)) ?? 0) - (self.icmpBaseline[h] ?? 0)
                return seen >= min
            }
            recordReport("\(h) sent \(seen) ICMP destination-unreachable message(s)")
            if !ok { throw fail("\(h) sent \(seen) ICMP destination unreachable, expected at least \(min)") }
        case .firewallCount(let s):
            try checkFirewall(s, fail: fail)
        case .stats(let spec):
            try checkStats(spec, fail: fail)
        case .stubSaw(let s):
            try checkStub(s, fail: fail)
        case .spoof(let s):
            let up = try Endpoint(ip: s.upstream, port: 53)
            var names: [String] = []
            for n in s.names {
                names += n.contains("{i}") ? (0..<1000).map { n.replacingOccurrences(of: "{i}", with: String($0)) } : [n]
            }
            // Guessed ports: Linux's default ephemeral range, where the forwarder's query sockets live.
            let spoofer = try RawSpoofer(.init(target: s.target, ports: .random(32768...60999), spoofedSource: up, names: .list(names),
                                               poisonAddress: s.poison, count: s.count, rate: s.rate),
                                         socketFactory: factory(s.from))
            try spoofer.start()
            hostile[step.id ?? "step\(step.index)"] = HostileActor(
                wait: { spoofer.wait(timeout: $0) }, stop: { spoofer.stop() },
                summary: { "spoofer sent \(spoofer.sent) forged replies (\(spoofer.sendErrors) send errors\(spoofer.firstSendError.map { ": " + $0 } ?? ""))" })
        case .flood(let s):
            let flood = try MalformedPackets.flood(target: try Endpoint(ip: s.to, port: UInt16(s.port)), rate: s.rate,
                                                   count: s.count, socketFactory: factory(s.from))
            try flood.start()
            hostile[step.id ?? "step\(step.index)"] = HostileActor(
                wait: { flood.wait(timeout: $0) }, stop: { flood.stop() },
                summary: { "flood sent \(flood.sent) malformed packets (\(flood.sendErrors) send errors)" })
        case .slowloris(let s):
            let idlers = try TCPIdlers(target: try Endpoint(ip: s.to, port: UInt16(s.port)), connections: s.connections,
                                       socketFactory: factory(s.from))
            try idlers.start()
            hostile[step.id ?? "step\(step.index)"] = HostileActor(
                wait: { _ in true }, stop: { idlers.stop() }, summary: { "slowloris: \(idlers.status)" })
        }
        if let id = step.id, !step.background { stepTimes[id] = (start, SimClock.now()) }
    }

    func factory(_ host: String) -> SocketFactory {
        let h = hosts[host]!
        return { d, t, p in try h.socket(domain: d, type: t, protocol: p) }
    }

    func recordReport(_ line: String) {
        lock.lock()
        report.append(line)
        lock.unlock()
        note(line)
    }

    /// Runs `body` now, or on a thread of its own when the step is `background`.
    /// A non-nil result is a failure message.
    func runMaybeInBackground(_ step: Step, _ body: @escaping () -> String?) throws {
        guard step.background else {
            if let f = body() { throw StepFailure(message: f) }
            return
        }
        let id = step.id ?? "step\(step.index)"
        backgroundIDs.append(id)
        let log = pending
        let t = Thread {
            let f = body()
            log.append((id, f))
        }
        t.stackSize = 1 << 20
        t.start()
    }

    func waitFor(ids: [String], step: Step?, timeout: Double) throws {
        for id in ids {
            guard let h = hostile[id] else { continue }
            let done = h.wait(timeout)
            recordReport(h.summary())
            if !done { throw StepFailure(message: "\(step.map { "step \($0.index) (line \($0.line)): " } ?? "")\(id) did not finish within \(timeout)s") }
        }
        let want = Set(ids).subtracting(hostile.keys).subtracting(skippedIDs)
        let ok = pending.wait(timeout: timeout) { items in want.isSubset(of: Set(items.map(\.id))) }
        for item in pending.snapshot() where want.contains(item.id) {
            if let f = item.failure { throw StepFailure(message: f) }
            if let t = stepTimes[item.id] { stepTimes[item.id] = (t.start, SimClock.now()) }
        }
        if !ok {
            let missing = want.subtracting(pending.snapshot().map(\.id))
            let at = step.map { "step \($0.index) (line \($0.line)): " } ?? "end of scenario: "
            throw StepFailure(message: at + "background step(s) \(missing.sorted().joined(separator: ", ")) did not finish")
        }
        backgroundIDs.removeAll { want.contains($0) }
    }

    // MARK: - checks

    /// Why the outcome does not meet the expectation, or nil.
    func check(_ o: QueryOutcome, _ e: Expectation) -> String? {
        let ms = String(format: "%.1f ms", o.latency * 1000)
        if let t = e.timeout {
            if t && o.error != "timeout" { return "expected no reply (client timeout), got \(o.summary)" }
            if !t && o.error == "timeout" { return "expected a reply, the client timed out" }
        }
        if let err = e.error, o.error != err { return "expected error \(err), got \(o.summary)" }
        if e.timeout != true && e.error == nil, let err = o.error {
            return "expected a reply, got \(err) after \(ms)"
        }
        if let r = e.rcode, o.rcode != r { return "expected rcode \(r), got \(o.summary)" }
        if let want = e.answers {
            if Set(want.map { $0.lowercased() }) != Set(o.answers.map { $0.lowercased() }) {
                return "expected answer \(want.joined(separator: ", ")), got \(o.summary)"
            }
        }
        if let rs = e.replySource, normalizeIP(rs) != o.replySource.map(normalizeIP) {
            return "expected the reply from \(rs), it came from \(o.replySource ?? "nowhere")"
        }
        if let tc = e.truncated, tc != o.truncated { return "expected TC \(tc ? "set" : "clear"), got \(o.summary)" }
        if let w = e.within, o.error == nil, o.latency > w {
            return "answered after \(ms), bound is \(String(format: "%.0f ms", w * 1000))"
        }
        if let a = e.after, o.latency < a {
            return "answered after \(ms), sooner than \(String(format: "%.0f ms", a * 1000))"
        }
        return nil
    }

    func checkLoad(_ outcomes: [QueryOutcome], _ e: Expectation) -> String? {
        let failed = outcomes.filter { o in
            if o.error != nil { return true }
            if let accepted = e.rcodes {
                guard let rc = o.rcode, accepted.contains(rc) else { return true }
                if o.rcode == "NOERROR", let want = e.answers, Set(want) != Set(o.answers) { return true }
                if let w = e.within, o.latency > w { return true }
                return false
            }
            if let r = e.rcode { return o.rcode != r }
            if o.rcode != "NOERROR" && o.rcode != "NXDOMAIN" { return true }
            if let want = e.answers, Set(want) != Set(o.answers) { return true }
            if let w = e.within, o.latency > w { return true }
            return false
        }
        let allowed = e.maxFailed ?? (e.minFailed == nil ? 0 : outcomes.count)
        if let least = e.minFailed, failed.count < least {
            return "\(failed.count) of \(outcomes.count) queries failed, expected at least \(least)"
        }
        if failed.count > allowed {
            let sample = failed.prefix(3).map { "\($0.name): \($0.summary) at \(String(format: "%.2fs", $0.start))" }
            return "\(failed.count) of \(outcomes.count) queries failed (allowed \(allowed)); first: \(sample.joined(separator: "; "))"
        }
        return nil
    }

    func sinceTime(_ s: SinceSpec) -> Double {
        switch s {
        case .start: return t0
        case .time(let t): return t0 + t
        case .step(let id): return stepTimes[id]?.start ?? t0
        case .stepEnd(let id): return stepTimes[id]?.end ?? t0
        }
    }

    func checkUpstreamSaw(_ s: UpstreamSawSpec, fail: (String) -> StepFailure) throws {
        let up = upstreams[s.upstream]!
        let since = sinceTime(s.since)
        func matching(_ qs: [UpstreamQuery]) -> [UpstreamQuery] {
            qs.filter { q in
                q.time >= since
                    && (s.name == nil || q.name.lowercased() == s.name!.lowercased())
                    && (s.transport == nil || q.transport.rawValue == s.transport!)
                    && (s.source == nil || normalizeIP(q.source.ip) == normalizeIP(s.source!))
            }
        }
        var seen: [UpstreamQuery] = []
        if let min = s.min {
            _ = up.queries.wait(timeout: s.within) { all in
                seen = matching(all)
                return seen.count >= min
            }
        }
        seen = matching(up.queries.snapshot())
        let what = "\(s.name ?? "queries")\(s.transport.map { " over \($0)" } ?? "")\(s.source.map { " from \($0)" } ?? "")"
        if let report = s.report, let first = seen.first {
            recordReport(String(format: "%@: %.1f ms (first %@ at %@ after the reference point)", report,
                                (first.time - since) * 1000, what, s.upstream))
        }
        recordReport("upstream \(s.upstream) saw \(seen.count) \(what) since \(String(format: "%.3fs", since - t0))")
        if let min = s.min, seen.count < min {
            throw fail("upstream \(s.upstream) saw \(seen.count) \(what), expected at least \(min)")
        }
        if let max = s.max, seen.count > max {
            throw fail("upstream \(s.upstream) saw \(seen.count) \(what), expected at most \(max): \(seen.prefix(3).map(\.description).joined(separator: "; "))")
        }
    }

    func logText(since: SinceSpec) -> String {
        let all = (try? String(contentsOfFile: forwarderLog, encoding: .utf8)) ?? ""
        var offset = 0
        switch since {
        case .step(let id), .stepEnd(let id): offset = stepLogOffsets[id] ?? 0
        default: break
        }
        let bytes = Array(all.utf8)
        guard offset > 0, offset <= bytes.count else { return all }
        return String(decoding: bytes[offset...], as: UTF8.self)
    }

    func checkLog(_ s: LogSpec, fail: (String) -> StepFailure) throws {
        func count() -> Int {
            logText(since: s.since).split(separator: "\n").filter { $0.contains(s.contains) }.count
        }
        if s.absent {
            let n = count()
            if n > 0 { throw fail("the log has '\(s.contains)' \(n) time(s), expected none") }
            return
        }
        var n = 0
        let ok = waitUntil(timeout: s.within) {
            n = count()
            return n >= s.min
        }
        if !ok { throw fail("the log has '\(s.contains)' \(n) time(s), expected at least \(s.min) within \(s.within)s; log ends: \(tail(forwarderLog))") }
    }

    var lastRSS: Int64?

    /// SIGUSR1, then the statistics lines it logs; optionally the in-flight
    /// count they show, and the growth of resident memory since the last check.
    func checkStats(_ spec: StatsSpec, fail: (String) -> StepFailure) throws {
        guard let p = forwarder, p.isRunning else { throw fail("\(spec.process) is not running") }
        // Ask (SIGUSR1) and read the statistics it logs; with `inflight:` keep
        // asking until the count is the one expected or the deadline passes.
        var text = ""
        var inflight: Int?
        let deadline = SimClock.monotonic() + spec.within
        var ok = false
        repeat {
            let before = fileSize(forwarderLog)
            try p.signal(SIGUSR1)
            let logged = waitUntil(timeout: max(0.05, min(1, deadline - SimClock.monotonic()))) {
                let all = (try? String(contentsOfFile: self.forwarderLog, encoding: .utf8)) ?? ""
                let b = Array(all.utf8)
                text = before < b.count ? String(decoding: b[before...], as: UTF8.self) : ""
                inflight = Self.number(after: "queries in flight ", in: text)
                return inflight != nil
            }
            ok = logged && (spec.inflight == nil || inflight == spec.inflight)
            if !ok && logged { sleepSeconds(0.2) }
        } while !ok && SimClock.monotonic() < deadline
        for line in text.split(separator: "\n") { recordReport("stats: \(line)") }
        if inflight == nil { throw fail("no 'queries in flight' statistics logged within \(spec.within)s after SIGUSR1") }
        if let want = spec.inflight, inflight != want {
            throw fail("statistics show \(inflight ?? -1) queries in flight, expected \(want)")
        }
        for (key, least) in spec.atLeast {
            let n = Self.number(after: key + " ", in: text) ?? -1
            if n < least { throw fail("statistics show '\(key) \(n)', expected at least \(least)") }
        }
        let status = (try? String(contentsOfFile: "/proc/\(p.pid)/status", encoding: .utf8)) ?? ""
        if let kb = Self.number(after: "VmRSS:", in: status) {
            let rss = Int64(kb) * 1024
            recordReport(String(format: "\(spec.process) RSS %.1f MB", Double(rss) / 1048576))
            if let max = spec.rssGrowthMax, let last = lastRSS, rss - last > max {
                throw fail(String(format: "RSS grew by %.1f MB since the last statistics, bound is %.1f MB",
                                  Double(rss - last) / 1048576, Double(max) / 1048576))
            }
            lastRSS = rss
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p.pid)/fd") {
            recordReport("\(spec.process) open fds \(fds.count)")
            if let max = spec.fdGrowthMax, let first = firstFDs, fds.count - first > max {
                throw fail("open file descriptors grew by \(fds.count - first) since the first statistics (\(first) -> \(fds.count)), bound is \(max)")
            }
            if firstFDs == nil { firstFDs = fds.count }
        }
    }

    /// Open fds at the first stats step: the baseline of `fd-growth-max`.
    var firstFDs: Int?

    static func number(after key: String, in text: String) -> Int? {
        guard let r = text.range(of: key, options: .backwards) else { return nil }
        let digits = text[r.upperBound...].drop { $0 == " " || $0 == "\t" }.prefix { $0.isNumber }
        return Int(digits)
    }

    func checkStub(_ s: StubSawSpec, fail: (String) -> StepFailure) throws {
        guard let stub = stubs[s.stub] else { throw fail("no stub '\(s.stub)'") }
        let since = sinceTime(s.since)
        var rows: [StubObservation] = []
        _ = waitUntil(timeout: s.within) {
            rows = ActorBridge.stubObservations(stub).filter { $0.time >= since }
            return rows.count >= s.min
        }
        guard rows.count >= s.min else { throw fail("the stub made \(rows.count) lookups since then, expected at least \(s.min)") }
        let bad = rows.filter { r in
            (s.server != nil && normalizeIP(r.server) != normalizeIP(s.server!)) || (s.answer != nil && !r.answers.contains(s.answer!))
        }
        recordReport("stub \(s.stub): \(rows.count) lookups, servers \(Set(rows.map(\.server)).sorted()), answers \(Set(rows.flatMap(\.answers)).sorted())")
        if s.all ? !bad.isEmpty : bad.count == rows.count {
            let r = bad[0]
            throw fail("the stub asked \(r.server) and got \(r.answers.isEmpty ? r.error ?? "nothing" : r.answers.joined(separator: ",")), expected \(s.server ?? "any server") / \(s.answer ?? "any answer")")
        }
    }

    func checkFirewall(_ s: FirewallCountSpec, fail: (String) -> StepFailure) throws {
        let host = hosts[s.host]!
        var count = 0
        var matched: [NftRule] = []
        let ok = waitUntil(timeout: s.within) {
            matched = ((try? host.nftRules()) ?? []).filter { r in
                (r.text.contains("comment \"\(s.rule)\"") || r.text.contains(s.rule)) && (s.chain == nil || r.chain == s.chain!)
            }
            count = matched.reduce(0) { $0 + Int($1.packets ?? 0) }
            if let min = s.min { return count >= min }
            return true
        }
        guard !matched.isEmpty else { throw fail("no rule '\(s.rule)' on \(s.host)") }
        for r in matched {
            recordReport("firewall: host \(s.host) table \(r.family) \(r.table) chain \(r.chain) rule `\(r.text)` (handle \(r.handle)) counted \(r.packets ?? 0) packets")
        }
        if s.diagnose, let trace = traces[s.host] {
            for line in trace.dropSummary() { recordReport("trace: \(line)") }
        }
        if let min = s.min, !ok || count < min { throw fail("rule '\(s.rule)' on \(s.host) counted \(count) packets, expected at least \(min)") }
        if let max = s.max, count > max { throw fail("rule '\(s.rule)' on \(s.host) counted \(count) packets, expected at most \(max)") }
    }

    func icmpOutUnreachable(_ host: SimHost) throws -> Int64 {
        let text = try host.readFile("/proc/thread-self/net/snmp")
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("Icmp:") }
        guard lines.count >= 2 else { return 0 }
        let keys = lines[0].split(separator: " ")
        let values = lines[1].split(separator: " ")
        guard let i = keys.firstIndex(of: "OutDestUnreachs"), i < values.count else { return 0 }
        var v6: Int64 = 0
        if let t6 = try? host.readFile("/proc/thread-self/net/snmp6") {
            for l in t6.split(separator: "\n") where l.hasPrefix("Icmp6OutDestUnreachs") {
                v6 = Int64(l.split(separator: " ").last ?? "0") ?? 0
            }
        }
        return (Int64(values[i]) ?? 0) + v6
    }

    // MARK: - files and processes

    /// `@name` in a command's argument stands for the host's scratch file `name`.
    func expandScratch(_ arg: String, host: String) -> String {
        var out = ""
        var rest = Substring(arg)
        while let at = rest.firstIndex(of: "@") {
            out += rest[..<at]
            let after = rest[rest.index(after: at)...]
            let name = after.prefix { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" }
            if let first = name.first, first.isLetter {
                out += (scratch(host) as NSString).appendingPathComponent(String(name))
                rest = after.dropFirst(name.count)
            } else {
                out += "@"
                rest = after
            }
        }
        return out + rest
    }

    func resolveFile(_ name: String, host: String) -> String {
        let n = name.hasPrefix("@") ? String(name.dropFirst()) : name
        return (scratch(host) as NSString).appendingPathComponent(n)
    }

    var fileVersion = 0

    /// The four ways tools change a resolv-file: in place, rename() over it,
    /// re-pointing a symlink, and delete (then create).
    func changeFile(host: String, name: String, method: FileMethod, content: String) throws {
        let path = resolveFile(name, host: host)
        fileVersion += 1
        switch method {
        case .rewrite:
            let fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0o644)
            guard fd >= 0 else { throw StepFailure(message: "cannot open \(path): \(String(cString: strerror(errno)))") }
            let bytes = Array(content.utf8)
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            guard n == bytes.count else { throw StepFailure(message: "short write to \(path)") }
        case .rename, .create:
            let tmp = path + ".tmp\(fileVersion)"
            try content.write(toFile: tmp, atomically: false, encoding: .utf8)
            guard rename(tmp, path) == 0 else { throw StepFailure(message: "rename to \(path) failed: \(String(cString: strerror(errno)))") }
        case .symlink:
            let target = path + ".v\(fileVersion)"
            try content.write(toFile: target, atomically: false, encoding: .utf8)
            let tmpLink = path + ".lnk\(fileVersion)"
            unlink(tmpLink)
            guard symlink(target, tmpLink) == 0, rename(tmpLink, path) == 0 else {
                throw StepFailure(message: "re-pointing \(path) failed: \(String(cString: strerror(errno)))")
            }
        case .delete:
            guard unlink(path) == 0 else { throw StepFailure(message: "delete \(path) failed: \(String(cString: strerror(errno)))") }
        }
    }

    func processAction(_ action: String, step: Step) throws {
        guard let f = scenario.forwarder else { return }
        switch action {
        case "start", "restart":
            if action == "restart", let p = forwarder { _ = p.terminate(grace: 2) }
            try startForwarder(f)
        case "stop":
            if let p = forwarder { _ = p.terminate(grace: 2) }
        case "kill":
            try forwarder?.signal(SIGKILL)
            _ = forwarder?.wait(timeout: 5)
        case "hup": try forwarder?.signal(SIGHUP)
        case "usr1": try forwarder?.signal(SIGUSR1)
        default: break
        }
    }

    // MARK: - end

    func teardown() {
        for (_, s) in stubs { ActorBridge.stopStub(s) }
        for (_, h) in hostile.sorted(by: { $0.key < $1.key }) {
            h.stop()
            recordReport(h.summary())
        }
        if let p = forwarder, p.isRunning {
            let st = p.terminate(grace: 2)
            note("\(subject) stopped: \(st)")
        }
        for (_, u) in upstreams { u.stop() }
        for (_, t) in traces { t.stop() }
        let t = SimClock.monotonic()
        network?.teardown(grace: 1, keepPinned: options.keep)
        network = nil
        note(String(format: "topology of %d hosts torn down in %.1f ms", scenario.hosts.count, (SimClock.monotonic() - t) * 1000))
    }

    func writeArtifacts(result: ScenarioResult) {
        func put(_ name: String, _ text: String) {
            try? text.write(toFile: (dir as NSString).appendingPathComponent(name), atomically: false, encoding: .utf8)
        }
        put("timeline.txt", timeline.joined(separator: "\n") + "\n")
        var q = ""
        for (name, u) in upstreams.sorted(by: { $0.key < $1.key }) {
            q += "# upstream \(name)\n" + u.queries.snapshot().map(\.description).joined(separator: "\n") + "\n"
        }
        put("upstream-queries.txt", q)
        put("report.txt", (result.failures + result.report).joined(separator: "\n") + "\n")
        var t = ""
        for (h, trace) in traces { t += "# host \(h)\n" + trace.dropSummary().joined(separator: "\n") + "\n" + trace.events.map(\.raw).joined(separator: "\n") + "\n" }
        if !t.isEmpty { put("nft-trace.txt", t) }
    }
}

/// A hostile actor started by a step, seen through what the runner needs.
struct HostileActor {
    var wait: (Double) -> Bool
    var stop: () -> Void
    var summary: () -> String
}

// MARK: - small helpers

/// Polls `predicate` every few milliseconds until it holds or `timeout` passes.
/// This waits for an event with a deadline; it never sleeps a fixed time.
@discardableResult
func waitUntil(timeout: Double, _ predicate: () -> Bool) -> Bool {
    let deadline = SimClock.monotonic() + timeout
    while true {
        if predicate() { return true }
        if SimClock.monotonic() >= deadline { return false }
        sleepSeconds(0.005)
    }
}

func sleepSeconds(_ s: Double) {
    guard s > 0 else { return }
    var ts = timespec(tv_sec: Int(s), tv_nsec: Int((s - Double(Int(s))) * 1e9))
    var rem = timespec()
    while nanosleep(&ts, &rem) != 0 && errno == EINTR { ts = rem }
}

func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : 0
}

func tail(_ path: String, lines: Int = 8) -> String {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").suffix(lines).joined(separator: " | ")
}

func normalizeIP(_ s: String) -> String {
    var a6 = in6_addr()
    if s.contains(":"), inet_pton(AF_INET6, s, &a6) == 1 {
        var buf = [CChar](repeating: 0, count: 64)
        inet_ntop(AF_INET6, &a6, &buf, 64)
        return String(cString: buf)
    }
    return s
}
