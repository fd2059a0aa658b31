import Glibc
import XCTest
@testable import SimNet

final class ProcessTests: XCTestCase {
    private var scratch = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/simnet-test-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SimNetError.system("mkdtemp", "/tmp", errno: errno) }
        scratch = String(cString: p)
    }

    override func tearDown() {
        if !scratch.isEmpty {
            var st = stat()
            if stat(scratch, &st) == 0 {
                _ = try? SimHost.unsafeRemoveTree(scratch)
            }
        }
    }

    func testSpawnRunsInsideHostWithFilesCwdEnv() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a"), b = try net.addHost("b")
        try net.connect(a, "veth-a", b, "veth-b")
        let out = scratch + "/out.log", err = scratch + "/err.log"
        let p = try a.spawn(["sh", "-c", "cat /proc/net/dev; pwd; echo \"$SIMNET_X\" >&2; exit 7"],
                            env: ["SIMNET_X": "hello-env"], cwd: scratch, stdout: out, stderr: err)
        XCTAssertGreaterThan(p.pid, 0)
        XCTAssertEqual(p.wait(timeout: 10), .exited(7))
        XCTAssertFalse(p.isRunning)
        let text = try FileIO.read(out)
        XCTAssertTrue(text.contains("veth-a:"), text)      // a's link, seen from inside a
        XCTAssertFalse(text.contains("veth-b:"), text)     // b's link is elsewhere
        XCTAssertTrue(text.contains(scratch), text)
        XCTAssertEqual(try FileIO.read(err), "hello-env\n")
    }

    func testRunCommandCapturesOutputInputStatusAndTimeout() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a")
        let r = try a.runCommand(["cat", "/proc/net/dev"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("lo:"))
        XCTAssertEqual(try a.runCommand(["cat"], input: "piped text").stdout, "piped text")
        let big = String(repeating: "0123456789abcdef\n", count: 20000) // > pipe buffers both ways
        XCTAssertEqual(try a.runCommand(["cat"], input: big).stdout.count, big.count)
        // A child that ignores its (large) input: no SIGPIPE for us.
        XCTAssertEqual(try a.runCommand(["true"], input: big + big + big + big).status, 0)
        // Children start with default signal dispositions (SIGPIPE not ignored).
        let sigs = try a.runCommand(["grep", "SigIgn", "/proc/self/status"]).stdout
        let mask = UInt64(sigs.split(separator: "\t").last.map { $0.simTrimmed("\n ") } ?? "", radix: 16)
        XCTAssertNotNil(mask, sigs)
        XCTAssertEqual((mask ?? 0) & (1 << (UInt64(SIGPIPE) - 1)), 0, sigs)
        let e = try a.runCommand(["sh", "-c", "echo oops >&2; exit 3"])
        XCTAssertEqual(e.status, 3)
        XCTAssertEqual(e.stderr, "oops\n")
        XCTAssertThrowsError(try a.runChecked(["sh", "-c", "echo bad >&2; exit 2"])) {
            XCTAssertTrue("\($0)".contains("status 2"), "\($0)")
            XCTAssertTrue("\($0)".contains("bad"), "\($0)")
        }
        XCTAssertThrowsError(try a.runCommand(["sleep", "30"], timeout: 0.3)) {
            guard case SimNetError.timeout = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertTrue(a.processes.allSatisfy { !$0.isRunning })
        XCTAssertThrowsError(try a.runCommand(["/nonexistent/tool"])) {
            XCTAssertTrue("\($0)".contains("/nonexistent/tool"), "\($0)")
        }
        XCTAssertThrowsError(try a.runCommand(["no-such-tool-simnet"])) {
            XCTAssertTrue("\($0)".contains("no-such-tool-simnet"), "\($0)")
        }
    }

    func testTerminateSignalAndExitStatus() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a")
        let p = try a.spawn(["sleep", "300"])
        XCTAssertTrue(p.isRunning)
        XCTAssertNil(p.wait(timeout: 0.05))
        XCTAssertEqual(p.terminate(grace: 5), .signaled(SIGTERM))
        XCTAssertEqual(kill(p.pid, 0), -1)

        // A process that ignores SIGTERM is killed after the grace period.
        let stubborn = try a.spawn(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"],
                                   stdout: scratch + "/stubborn.log")
        XCTAssertTrue(eventually { (try? FileIO.read(self.scratch + "/stubborn.log")) == "ready\n" })
        XCTAssertEqual(stubborn.terminate(grace: 0.2), .signaled(SIGKILL))

        let q = try a.spawn(["sleep", "300"])
        try q.signal(SIGUSR1)
        XCTAssertEqual(q.wait(timeout: 10), .signaled(SIGUSR1))
    }

    /// Re-entered in a child copy of this test binary by testParentDeathKillsChildren.
    func testPdeathsigHelper() throws {
        guard let pidFile = getenv("SIMNET_PDEATH_HELPER").map({ String(cString: $0) }) else {
            throw XCTSkip("helper for testParentDeathKillsChildren")
        }
        let net = Network()
        let a = try net.addHost("orphan")
        let p = try a.spawn(["sleep", "300"])
        try FileIO.writeNew(pidFile, "\(p.pid) net:[\(inode(ofFD: a.nsFD))]\n")
        while true { pause() } // killed by the outer test with SIGKILL
    }

    func testParentDeathKillsChildren() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let h = try net.addHost("runner")
        let pidFile = scratch + "/child.pid"
        var exe = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &exe, 4095)
        XCTAssertGreaterThan(n, 0)
        let runner = try h.spawn([String(cString: exe), "SimNetTests.ProcessTests/testPdeathsigHelper"],
                                 env: ["SIMNET_PDEATH_HELPER": pidFile],
                                 stdout: scratch + "/helper.log", stderr: scratch + "/helper.log")
        XCTAssertTrue(eventually(timeout: 30) { (try? FileIO.read(pidFile))?.hasSuffix("\n") == true },
                      (try? FileIO.read(scratch + "/helper.log")) ?? "")
        let fields = try FileIO.read(pidFile).trimmingTrailingWhitespace.split(separator: " ").map(String.init)
        guard fields.count == 2, let grandchild = Int32(fields[0]) else { return XCTFail("no pid: \(fields)") }
        let orphanNS = fields[1]
        XCTAssertTrue(liveNetnsInodes().contains(orphanNS))
        XCTAssertEqual(kill(grandchild, 0), 0, "the grandchild runs while its runner lives")
        try runner.signal(SIGKILL)
        XCTAssertEqual(runner.wait(timeout: 10), .signaled(SIGKILL))
        // PDEATHSIG kills the grandchild; init reaps it.
        XCTAssertTrue(eventually(timeout: 10) { processGoneOrZombie(grandchild) })
        // Nothing holds the runner's anonymous namespace any more: the kernel frees it.
        XCTAssertTrue(eventually(timeout: 10) { !liveNetnsInodes().contains(orphanNS) }, holders(of: [orphanNS]).description)
    }

    func testTeardownLeavesNoProcessOrNamespace() throws {
        try requireRoot()
        let net = Network()
        let a = try net.addHost("a"), b = try net.addHost("b")
        try net.connect(a, "eth0", b, "eth0")
        let p1 = try a.spawn(["sleep", "300"]), p2 = try b.spawn(["sh", "-c", "trap '' TERM; sleep 300"])
        let nsIDs = [a, b].map { "net:[\(inode(ofFD: $0.nsFD))]" }
        XCTAssertTrue(nsIDs.allSatisfy { liveNetnsInodes().contains($0) })
        net.teardown(grace: 0.3)
        XCTAssertEqual(kill(p1.pid, 0), -1)
        XCTAssertEqual(kill(p2.pid, 0), -1)
        XCTAssertEqual(a.nsFD, -1)
        let live = liveNetnsInodes()
        XCTAssertTrue(nsIDs.allSatisfy { !live.contains($0) }, "\(nsIDs) still held: \(holders(of: nsIDs))")
        XCTAssertThrowsError(try a.addAddress("10.0.0.1/24", dev: "lo")) {
            XCTAssertEqual($0 as? SimNetError, .hostGone("a"))
        }
    }

    /// A torn-down host's namespace is really freed (nothing of ours holds it):
    /// the kernel then deletes the veth pair, so its peer vanishes from the other host.
    func testTeardownFreesNamespaceSoVethPeerVanishes() throws {
        try requireRoot()
        let net = Network()
        defer { net.teardown() }
        let a = try net.addHost("a"), b = try net.addHost("b")
        try net.connect(a, "eth0", b, "eth0")
        try a.addAddress("10.9.9.1/24", dev: "eth0")
        let trace = try a.startTrace()
        _ = try a.spawn(["sleep", "300"])
        XCTAssertTrue(b.hasLink("eth0"))
        a.teardown(grace: 0.5)
        trace.stop()
        XCTAssertTrue(eventually(timeout: 10) { !b.hasLink("eth0") }, "a's namespace is still alive")
    }
}

func processGoneOrZombie(_ pid: pid_t) -> Bool {
    guard let stat = try? FileIO.read("/proc/\(pid)/stat") else { return true }
    guard let close = stat.lastIndex(of: ")") else { return true }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state == "Z" || state == "X"
}

/// "pid comm" of processes whose network namespace is one of `ids`.
func holders(of ids: [String]) -> [String] {
    var out: [String] = []
    guard let d = opendir("/proc") else { return out }
    defer { closedir(d) }
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        guard Int(name) != nil else { continue }
        var buf = [CChar](repeating: 0, count: 128)
        let n = readlink("/proc/\(name)/ns/net", &buf, 127)
        if n > 0, ids.contains(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)) {
            out.append("\(name) \((try? FileIO.read("/proc/\(name)/cmdline")) ?? "?")")
        }
    }
    return out
}
