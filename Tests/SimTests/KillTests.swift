import Foundation
import Glibc
import XCTest

/// Issue 9, section 5: the test-bed never leaks. The built `sim` binary runs a
/// scenario with a forwarder, fake upstreams, an nftables ruleset with a trace
/// (`nft monitor trace`), a background load, dig and dnsperf, and is killed
/// with SIGKILL at 20 random points of it (seeded; the seed is printed, and
/// KILL_TEST_SEED=N replays it), once with SIGINT, and also left to finish a
/// passing and a failing run. After each, waiting up to a few seconds for the
/// kernel, nothing of that run may remain:
///  - no namespace: none of the network namespaces the run held (sampled from
///    sim's and its children's /proc entries while it ran) is still referenced
///    by any process, fd or mount; no /run/netns entry names the run;
///  - the root namespace's links (`ip -o link`) are as before;
///  - no new mount in /proc/self/mountinfo that names the run or its namespaces;
///  - no process of the run: this test is a child subreaper, so every orphan of
///    sim is re-parented here; none may stay alive, and no process may have a
///    command line or working directory inside the run's folder.
/// Root only. KILL_TEST_KILLS=N changes the number of kills (default 20). KILL_TEST_KEEP=1 passes `--keep` to sim (pinned namespaces
/// outlive it) and KILL_TEST_DAEMON=1 adds a step that starts a detached process
/// (`setsid sleep 30 &`, which no parent-death signal reaches): the test must then
/// fail; it removes what it finds either way.
final class KillTests: XCTestCase {
    static var productsDir: URL {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent()
    }

    func testKillingTheRunnerLeavesNothingBehind() throws {
        guard getuid() == 0 else { throw XCTSkip("the kill test builds namespaces: root only") }
        let sim = Self.productsDir.appendingPathComponent("sim").path
        let forwarder = Self.productsDir.appendingPathComponent("forwarder").path
        guard FileManager.default.isExecutableFile(atPath: sim), FileManager.default.isExecutableFile(atPath: forwarder) else {
            XCTFail("the sim and forwarder binaries are not next to the tests (\(Self.productsDir.path)); run `swift build` first")
            return
        }
        let keep = ProcessInfo.processInfo.environment["KILL_TEST_KEEP"] == "1"
        let seed = ProcessInfo.processInfo.environment["KILL_TEST_SEED"].flatMap { UInt64($0) }
            ?? UInt64(truncatingIfNeeded: Int(Date().timeIntervalSince1970 * 1000))
        print("kill test: seed \(seed) (replay with KILL_TEST_SEED=\(seed))\(keep ? ", sim --keep (leaks expected)" : "")")
        var rng = SplitMix64(seed: seed)

        // Orphans of sim come to us, so a process that outlives it is seen (and reaped).
        XCTAssertEqual(Self.setChildSubreaper(true), 0)
        defer { _ = Self.setChildSubreaper(false) }

        let work = NSTemporaryDirectory() + "sim-killtest-\(getpid())-\(seed % 100000)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let baseline = RootState.capture()
        let hasDnsmasq = FileManager.default.isExecutableFile(atPath: "/usr/sbin/dnsmasq")

        // 1. A normal passing run: it also measures how long a run lasts, the span the kills are drawn from.
        let pass = try runOnce(sim: sim, forwarder: forwarder, work: work, label: "pass", failing: false,
                               subject: "ours", keep: keep, stopAfter: nil, signal: 0, baseline: baseline)
        XCTAssertEqual(pass.exit, 0, "the passing run failed; its output:\n\(pass.output)")
        let span = max(1.0, pass.duration)

        // 2. A failing run: a wrong expectation stops it early, teardown still runs.
        let fail = try runOnce(sim: sim, forwarder: forwarder, work: work, label: "fail", failing: true,
                               subject: "ours", keep: keep, stopAfter: nil, signal: 0, baseline: baseline)
        XCTAssertEqual(fail.exit, 1, "the failing run should exit 1; its output:\n\(fail.output)")

        // 3. Ctrl-C in the middle.
        _ = try runOnce(sim: sim, forwarder: forwarder, work: work, label: "int", failing: false,
                        subject: "ours", keep: keep, stopAfter: span * 0.5, signal: SIGINT, baseline: baseline)

        // 4. SIGKILL at 20 random points (every fourth with dnsmasq as the subject, when installed).
        let kills = ProcessInfo.processInfo.environment["KILL_TEST_KILLS"].flatMap { Int($0) } ?? 20
        for i in 1...max(1, kills) {
            let at = rng.unit() * span
            let subject = hasDnsmasq && i % 4 == 0 ? "dnsmasq" : "ours"
            _ = try runOnce(sim: sim, forwarder: forwarder, work: work, label: "kill\(i)", failing: false,
                            subject: subject, keep: keep, stopAfter: at, signal: SIGKILL, baseline: baseline)
        }
    }

    struct RunOutcome {
        var exit: Int32
        var duration: Double
        var output: String
    }

    /// One run of sim on a fresh copy of the scenario; `stopAfter` seconds after
    /// the start it gets `signal`. Then every leak check, waiting for the kernel.
    func runOnce(sim: String, forwarder: String, work: String, label: String, failing: Bool, subject: String,
                 keep: Bool, stopAfter: Double?, signal sig: Int32, baseline: RootState) throws -> RunOutcome {
        let id = "killtest-\(getpid())-\(label)"
        let dir = "\(work)/\(label)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let file = "\(dir)/\(id).yaml"
        let daemon = ProcessInfo.processInfo.environment["KILL_TEST_DAEMON"] == "1"
        try Self.scenario(failing: failing, daemon: daemon).write(toFile: file, atomically: true, encoding: .utf8)
        let logPath = "\(dir)/sim.log"
        var argv = [sim, "run", file, "--forwarder", subject, "--forwarder-path", forwarder, "--artifacts", "\(dir)/artifacts"]
        if keep { argv.append("--keep") }

        let started = Self.now()
        let pid = try Self.spawn(argv, log: logPath)
        // Sample the namespaces the run holds while it runs: sim's fds and its children's ns links.
        var owned = Set<String>()
        var status: Int32 = 0
        var exited = false
        var signalled = false
        while !exited {
            owned.formUnion(Self.netnsHeld(byTree: pid))
            var st: Int32 = 0
            let r = waitpid(pid, &st, WNOHANG)
            if r == pid { exited = true; status = st; break }
            if let after = stopAfter, !signalled, Self.now() - started >= after {
                kill(pid, sig)
                signalled = true
            }
            if Self.now() - started > 60 {
                kill(pid, SIGKILL)
                XCTFail("\(label): sim did not finish within 60 s")
            }
            usleep(10_000)
        }
        let duration = Self.now() - started
        let exit: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        let how = stopAfter.map { String(format: "signal %d after %.2fs", sig, $0) } ?? "ran to the end"
        print(String(format: "kill test: %@ (%@, %@): exit %d after %.2fs, %d namespace(s) seen", label, subject, how, exit,
                     duration, owned.count))

        // Wait (up to 5 s) for the kernel to finish: PDEATHSIG, namespace and veth release.
        var leaks: [String] = []
        let deadline = Self.now() + 5
        repeat {
            Self.reapOrphans()
            leaks = Self.leaks(id: id, dir: dir, owned: owned, baseline: baseline)
            if leaks.isEmpty { break }
            usleep(20_000)
        } while Self.now() < deadline
        XCTAssertTrue(leaks.isEmpty, "\(label) (\(subject), \(how)): left behind:\n  " + leaks.joined(separator: "\n  "))
        if !leaks.isEmpty { Self.cleanUp(id: id, dir: dir) }
        return RunOutcome(exit: exit, duration: duration, output: output)
    }

    // MARK: - what a run may leave

    /// The root namespace before any run: its links and mounts.
    struct RootState {
        var links: Set<String>
        var mounts: Set<String>

        static func capture() -> RootState {
            RootState(links: rootLinks(), mounts: Set(mountLines()))
        }

        /// `ip -o link` of the root namespace, reduced to index and name (state and counters vary).
        static func rootLinks() -> Set<String> {
            let out = KillTests.command(["ip", "-o", "link"])
            return Set(out.split(separator: "\n").map { line in
                line.split(separator: ":").prefix(2).joined(separator: ":").trimmingCharacters(in: .whitespaces)
            })
        }

        static func mountLines() -> [String] {
            ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
                .split(separator: "\n").map(String.init)
        }
    }

    static func leaks(id: String, dir: String, owned: Set<String>, baseline: RootState) -> [String] {
        var out: [String] = []
        // Processes: orphans re-parented to us, or anything running in the run's folder;
        // and the namespaces the run held, if one of those or a mount naming the run
        // still holds them. (Namespace inode numbers are recycled at once, and other
        // test-beds may run on this machine: an inode held by an unrelated process is
        // a new namespace, not ours.)
        let me = getpid()
        for pid in allPids() where pid != me {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let ppid = status.split(separator: "\n").first { $0.hasPrefix("PPid:") }
                .flatMap { Int32($0.dropFirst(5).trimmingCharacters(in: .whitespaces)) }
            let cmd = cmdline(pid)
            let cwd = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? ""
            if ppid == me || cmd.contains(dir) || cwd.hasPrefix(dir) {
                out.append("process \(pid): \(cmd.prefix(200))")
                for ns in netnsHeld(by: pid).intersection(owned).sorted() {
                    out.append("network namespace \(ns) of the run is held by process \(pid)")
                }
            }
        }
        for line in RootState.mountLines() where line.contains(id) || line.contains(dir) {
            let ns = owned.first { line.contains($0) }
            out.append((ns.map { "network namespace \($0) of the run is mounted: " } ?? "mount: ") + line)
        }
        // Pinned names of the run.
        let pinned = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        for name in pinned where name.contains(id) { out.append("/run/netns/\(name)") }
        let listed = command(["ip", "netns", "list"])
        for line in listed.split(separator: "\n") where line.contains(id) { out.append("ip netns list: \(line)") }
        // Root links and mounts.
        let links = RootState.rootLinks()
        for l in links.subtracting(baseline.links).sorted() { out.append("new link in the root namespace: \(l)") }
        for l in baseline.links.subtracting(links).sorted() { out.append("link gone from the root namespace: \(l)") }
        return out
    }

    /// Removes what a leaking run left (so a failed check does not pollute the machine):
    /// only things that name this run.
    static func cleanUp(id: String, dir: String) {
        for pid in allPids() where pid != getpid() {
            let cwd = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? ""
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let orphan = status.split(separator: "\n").contains { $0.hasPrefix("PPid:") && Int32($0.dropFirst(5).trimmingCharacters(in: .whitespaces)) == getpid() }
            if orphan || cmdline(pid).contains(dir) || cwd.hasPrefix(dir) { kill(pid, SIGKILL) }
        }
        let pinned = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        for name in pinned where name.contains(id) {
            umount2("/run/netns/\(name)", Int32(MNT_DETACH))
            unlink("/run/netns/\(name)")
        }
        reapOrphans()
    }

    /// prctl(PR_SET_CHILD_SUBREAPER) (prctl is variadic in C, so Swift cannot call it directly).
    static func setChildSubreaper(_ on: Bool) -> Int32 {
        typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "prctl") else { return -1 }
        let PR_SET_CHILD_SUBREAPER: Int32 = 36
        return unsafeBitCast(sym, to: Prctl.self)(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0)
    }

    static func reapOrphans() {
        var st: Int32 = 0
        while waitpid(-1, &st, WNOHANG) > 0 {}
    }

    /// "net:[4026532...]" of every namespace a process and its threads are in or hold an fd to.
    static func netnsHeld(by pid: Int32) -> Set<String> {
        var out = Set<String>()
        if let l = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net") { out.insert(l) }
        for t in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
            if let l = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/task/\(t)/ns/net") { out.insert(l) }
        }
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? [] {
            if let l = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"), l.hasPrefix("net:[") {
                out.insert(l)
            }
        }
        return out
    }

    /// The namespaces sim and its children hold, minus the root namespace.
    static func netnsHeld(byTree root: Int32) -> Set<String> {
        var pids: [Int32] = [root]
        for pid in allPids() {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            // Field 4 (ppid) follows the ")" that closes the command name.
            if let close = stat.lastIndex(of: ")") {
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                if fields.count > 1, Int32(fields[1]) == root { pids.append(pid) }
            }
        }
        var out = Set<String>()
        for p in pids { out.formUnion(netnsHeld(by: p)) }
        for p in ["1", "self"] {
            if let ns = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(p)/ns/net") { out.remove(ns) }
        }
        return out
    }

    static func allPids() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
    }

    static func cmdline(_ pid: Int32) -> String {
        guard let d = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return "" }
        return String(decoding: d.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// posix_spawn with stdout and stderr to `log` (not Foundation's Process:
    /// this test reaps children itself).
    static func spawn(_ argv: [String], log: String) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw NSError(domain: "KillTests", code: Int(rc), userInfo: [NSLocalizedDescriptionKey: "posix_spawn \(argv[0]): \(String(cString: strerror(rc)))"]) }
        return pid
    }

    /// Output of a short command run in the root namespace (reaped here).
    static func command(_ argv: [String]) -> String {
        let path = NSTemporaryDirectory() + "killtest-cmd-\(getpid()).out"
        defer { unlink(path) }
        let full = argv[0].hasPrefix("/") ? argv[0] : (["/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"].map { $0 + argv[0] }
            .first { FileManager.default.isExecutableFile(atPath: $0) } ?? argv[0])
        guard let pid = try? spawn([full] + argv.dropFirst(), log: path) else { return "" }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    // MARK: - the scenario

    /// A forwarder between a client and two upstreams, a router with an nftables
    /// ruleset and a trace, a background load, dig and dnsperf, a resolv-file swap:
    /// something of every kind the runner starts is alive at most moments.
    static func scenario(failing: Bool, daemon: Bool = false) -> String {
        """
        name: kill test (Tests/SimTests/KillTests.swift)
        time-limit: 30s
        hosts:
          client:
            links: { eth0: lan }
            addresses: { eth0: [10.0.0.2/24] }
            files: { queries.txt: "d1.hat.com A\\nd2.hat.com A\\nd3.hat.com A\\n" }
          fw:
            links: { eth0: lan, eth1: wan }
            addresses: { eth0: [10.0.0.1/24], eth1: [192.168.122.1/24] }
            forwarding: true
            nftables: |
              table inet filter {
                chain input {
                  type filter hook input priority 0; policy accept;
                  meta nftrace set 1
                  udp dport 53 counter accept comment "dns-in"
                }
              }
            files:
              resolv.conf: "nameserver 192.168.122.65\\n"
          servers: { links: { eth0: wan }, addresses: { eth0: [192.168.122.65/24, 192.168.122.66/24] }, routes: [default via 192.168.122.1] }
        upstreams:
          A: { host: servers, address: 192.168.122.65, zone: { "*.hat.com": { A: 192.168.122.203, TTL: 1 } } }
          B: { host: servers, address: 192.168.122.66, behaviour: delay 50ms, zone: { "*.hat.com": { A: 192.168.122.203, TTL: 1 } } }
        forwarder:
          host: fw
          address: 10.0.0.1
          options: [--resolv-file=@resolv.conf, --log-queries]
        subjects:
          ours: passes
          dnsmasq: passes
        steps:
          - id: load
            background: true
            load: { from: client, to: 10.0.0.1, names: ["n{i}.hat.com"], rate: 50, duration: 3s, timeout: 2s }
          - query: { from: client, to: 10.0.0.1, name: first.hat.com, timeout: 2s }
            expect: { answer: \(failing ? "10.9.9.9" : "192.168.122.203") }
        \(daemon ? "  - run: { host: client, argv: [sh, -c, \"setsid sleep 30 </dev/null >/dev/null 2>&1 &\"] }\n" : "")\
          - run: { host: client, argv: [dig, +short, +time=2, +tries=1, "@10.0.0.1", dig.hat.com], timeout: 5s }
            expect: { exit: 0 }
          - at: 0.5s
            file: { host: fw, name: resolv.conf, how: rename, content: "nameserver 192.168.122.66\\n" }
          - at: 1s
            run: { host: client, argv: [dnsperf, -s, 10.0.0.1, -d, "@queries.txt", -l, "1", -Q, "50"], timeout: 10s }
          - firewall-count: { host: fw, rule: dns-in, min: 1 }
          - wait: [load]
        """
    }
}

/// A small seeded generator, so that a run's kill points can be replayed.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
