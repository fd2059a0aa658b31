import Glibc
import XCTest
@testable import SimNet

final class RootlessTests: XCTestCase {
    /// Runs as uid 65534 in a copy of this test binary (see below): it must
    /// re-execute itself as uid 0 of a new user namespace and build hosts.
    func testRootlessHelper() throws {
        guard let out = getenv("SIMNET_ROOTLESS_OUT").map({ String(cString: $0) }) else {
            throw XCTSkip("helper for testRootlessReexecAsNobody")
        }
        do {
            try Rootless.reexecIfNeeded(arguments: CommandLine.arguments) // as non-root: never returns
        } catch {
            try FileIO.writeNew(out, "refused: \(error)\n")
            return
        }
        if getenv("SIMNET_ROOTLESS_HANG") != nil {
            try FileIO.writeNew(out, "\(getpid())\n")
            while true { pause() }
        }
        var report = "uid=\(geteuid()) child=\(Rootless.isRootlessChild)"
        do {
            let net = Network()
            defer { net.teardown() }
            let a = try net.addHost("a"), b = try net.addHost("b")
            try net.connect(a, "eth0", b, "eth0")
            try a.addAddress("10.9.8.1/24", dev: "eth0")
            try b.addAddress("10.9.8.2/24", dev: "eth0")
            try b.enableForwarding()
            try b.applyNftables("table inet f {\n chain i {\n type filter hook input priority 0;\n udp dport 7 counter\n }\n}\n")
            let s = try UDP.bound(b, "10.9.8.2", port: 5500)
            defer { close(s) }
            let c = try UDP.bound(a, "0.0.0.0")
            defer { close(c) }
            try UDP.send(c, "hello", to: "10.9.8.2", port: 5500)
            report += " udp=\(UDP.receive(s, timeout: 5)?.text ?? "none")"
            let p = try a.spawn(["sleep", "30"])
            p.terminate(grace: 1)
            report += " spawn=ok"
            do { try a.pin(as: "sim-rootless-test"); report += " pin=unexpected" } catch { report += " pin=refused" }
        } catch {
            report += " error=\(error)"
        }
        try FileIO.writeNew(out, report + "\n")
    }

    func testRootlessReexecAsNobody() throws {
        try requireRealRoot()
        guard access("/usr/bin/setpriv", X_OK) == 0 else { throw XCTSkip("setpriv not installed") }
        var exe = [CChar](repeating: 0, count: 4096)
        guard readlink("/proc/self/exe", &exe, 4095) > 0 else { return XCTFail("no /proc/self/exe") }
        var template = Array("/tmp/simnet-rootless-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template).map({ String(cString: $0) }) else { return XCTFail("mkdtemp") }
        defer { try? SimHost.unsafeRemoveTree(dir) }
        chmod(dir, 0o777)
        let out = dir + "/report"
        let net = Network()
        defer { net.teardown() }
        let h = try net.addHost("outside")
        let r = try h.runCommand(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                  String(cString: exe), "SimNetTests.RootlessTests/testRootlessHelper"],
                                 env: ["SIMNET_ROOTLESS_OUT": out], timeout: 60)
        let report = (try? FileIO.read(out)) ?? ""
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(report, "uid=0 child=true udp=hello spawn=ok pin=refused\n", r.output)
    }

    /// In a user namespace whose user.max_user_namespaces is 0 (a per-namespace
    /// limit, so the machine is not touched), the re-exec is refused and the
    /// message names the setting.
    func testRootlessRefusalNamesSetting() throws {
        try requireRealRoot()
        for tool in ["/usr/bin/setpriv", "/usr/bin/unshare"] where access(tool, X_OK) != 0 {
            throw XCTSkip("\(tool) not installed")
        }
        var exe = [CChar](repeating: 0, count: 4096)
        guard readlink("/proc/self/exe", &exe, 4095) > 0 else { return XCTFail("no /proc/self/exe") }
        var template = Array("/tmp/simnet-rootless-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template).map({ String(cString: $0) }) else { return XCTFail("mkdtemp") }
        defer { try? SimHost.unsafeRemoveTree(dir) }
        chmod(dir, 0o777)
        let out = dir + "/report"
        // The inner shell waits until the outer one wrote its uid/gid maps,
        // then execs (gaining capabilities in the new namespace), sets the
        // limit to 0 and runs the helper as uid 65534.
        let inner = "echo 0 > /proc/sys/user/max_user_namespaces && exec /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups '\(String(cString: exe))' SimNetTests.RootlessTests/testRootlessHelper"
        let script = """
        /usr/bin/unshare -U sh -c 'while [ ! -f \(dir)/go ]; do sleep 0.01; done; exec sh -c "\(inner)"' &
        P=$!
        me=$(readlink /proc/self/ns/user)
        while [ "$(readlink /proc/$P/ns/user)" = "$me" ]; do sleep 0.01; done
        echo "0 0 65536" > /proc/$P/uid_map && echo "0 0 65536" > /proc/$P/gid_map && touch \(dir)/go
        wait $P
        """
        let net = Network()
        defer { net.teardown() }
        let h = try net.addHost("outside")
        let r = try h.runCommand(["sh", "-c", script], env: ["SIMNET_ROOTLESS_OUT": out], timeout: 60)
        let report = (try? FileIO.read(out)) ?? ""
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(report.hasPrefix("refused: "), report + r.output)
        XCTAssertTrue(report.contains("user.max_user_namespaces = 0"), report)
        XCTAssertTrue(report.contains("No space left on device"), report)
    }

    /// kill -9 of the waiting parent also ends the re-executed runner.
    func testRootlessRunnerDiesWithItsParent() throws {
        try requireRealRoot()
        guard access("/usr/bin/setpriv", X_OK) == 0 else { throw XCTSkip("setpriv not installed") }
        var exe = [CChar](repeating: 0, count: 4096)
        guard readlink("/proc/self/exe", &exe, 4095) > 0 else { return XCTFail("no /proc/self/exe") }
        var template = Array("/tmp/simnet-rootless-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template).map({ String(cString: $0) }) else { return XCTFail("mkdtemp") }
        defer { try? SimHost.unsafeRemoveTree(dir) }
        chmod(dir, 0o777)
        let out = dir + "/report"
        let net = Network()
        defer { net.teardown() }
        let h = try net.addHost("outside")
        let wrapper = try h.spawn(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                   String(cString: exe), "SimNetTests.RootlessTests/testRootlessHelper"],
                                  env: ["SIMNET_ROOTLESS_OUT": out, "SIMNET_ROOTLESS_HANG": "1"])
        XCTAssertTrue(eventually(timeout: 30) { (try? FileIO.read(out))?.hasSuffix("\n") == true })
        // The pid as seen from here: the helper printed its own, which is the
        // same since only the user and network namespaces are new.
        let runner = try XCTUnwrap(Int32(try FileIO.read(out).trimmingTrailingWhitespace))
        XCTAssertNotEqual(runner, wrapper.pid)
        XCTAssertEqual(kill(runner, 0), 0)
        try wrapper.signal(SIGKILL)
        XCTAssertEqual(wrapper.wait(timeout: 10), .signaled(SIGKILL))
        XCTAssertTrue(eventually(timeout: 10) { processGoneOrZombie(runner) })
    }

    func testRefusalMessageNamesSettings() {
        let text = Rootless.explain(errno: EPERM, stage: "unshare")
        XCTAssertTrue(text.contains("unshare"), text)
        XCTAssertTrue(text.contains("Operation not permitted"), text)
        // On this machine none of the settings forbids it, so all three are named as things to check.
        XCTAssertTrue(text.contains("kernel.unprivileged_userns_clone") && text.contains("user.max_user_namespaces")
                      && text.contains("kernel.apparmor_restrict_unprivileged_userns"), text)
    }
}
