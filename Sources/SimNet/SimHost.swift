import CSimSys
import Glibc

/// A host of the test-bed: one network namespace held by a file descriptor.
///
/// The namespace is anonymous (it vanishes with the last fd, even when the
/// runner is killed with SIGKILL) unless `pin(as:)` bind-mounts it under
/// /run/netns. Nothing is ever created in the caller's own namespace.
public final class SimHost: CustomStringConvertible {
    public let name: String
    /// The fd holding the namespace; -1 after teardown.
    public private(set) var nsFD: Int32
    let routes: RouteSocket
    private var lock = pthread_mutex_t()
    private var children: [ChildProcess] = []
    public private(set) var pinnedName: String?

    /// Creates the namespace, brings `lo` up and turns IPv6 DAD off.
    public init(name: String) throws {
        guard SimHost.isValidName(name) else {
            throw SimNetError.invalidArgument("host name `\(name)`: use letters, digits, '-', '_', '.' (max 64)")
        }
        self.name = name
        let fd = try Namespace.create(name: name)
        do {
            routes = try Namespace.run(fd: fd, name: name) {
                try SimHost.initialSysctls()
                return try RouteSocket(host: name)
            }
        } catch {
            close(fd)
            throw error
        }
        nsFD = fd
        pthread_mutex_init(&lock, nil)
        try routes.setLink("lo", up: true)
    }

    deinit {
        teardown()
        pthread_mutex_destroy(&lock)
    }

    public var description: String { "host \(name)" }

    static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a)
                || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e
        }
    }

    private static func initialSysctls() throws {
        // New links inherit `default`: no duplicate address detection delay.
        for key in ["net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"] {
            try? FileIO.write("/proc/sys/\(key)", "0")
        }
    }

    func liveFD() throws -> Int32 {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if nsFD < 0 { throw SimNetError.hostGone(name) }
        return nsFD
    }

    // MARK: Running code inside

    /// Runs `body` synchronously on a thread inside this host's namespace.
    /// Sockets created there stay in the namespace after the thread ends.
    public func run<T>(_ body: () throws -> T) throws -> T {
        try Namespace.run(fd: try liveFD(), name: name, body)
    }

    /// A socket created inside this host (O_CLOEXEC is added).
    public func socket(domain: Int32, type: Int32, protocol proto: Int32 = 0) throws -> Int32 {
        let fd = try run { Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), proto) }
        if fd < 0 { throw SimNetError.system("socket", "on host \(name)", errno: errno) }
        return fd
    }

    /// Reads a file from inside the host. `/proc/net/...` is mapped to the
    /// thread's own view (/proc/thread-self/net), which is this host's.
    public func readFile(_ path: String) throws -> String {
        var p = path
        if p.hasPrefix("/proc/net/") { p = "/proc/thread-self/net/" + p.dropFirst("/proc/net/".count) }
        if p.hasPrefix("/proc/self/net/") { p = "/proc/thread-self/net/" + p.dropFirst("/proc/self/net/".count) }
        let q = p
        return try run { try FileIO.read(q) }
    }

    /// Counters of /proc/net/snmp ("Icmp.OutDestUnreachs", "Udp.NoPorts", ...)
    /// and /proc/net/snmp6 ("Icmp6OutDestUnreachs", "Udp6NoPorts", ...).
    public func netStats() throws -> [String: Int64] {
        let (snmp, snmp6) = try run {
            (try FileIO.read("/proc/thread-self/net/snmp"), try? FileIO.read("/proc/thread-self/net/snmp6"))
        }
        return NetStats.parse(snmp: snmp, snmp6: snmp6 ?? "")
    }

    // MARK: Sysctls

    /// Writes a per-namespace sysctl, e.g. ("net.ipv4.ip_forward", "1") or
    /// ("net.ipv4.conf.all.rp_filter", "0"). A key with '/' is taken as a
    /// path under /proc/sys (for interface names that contain dots).
    public func sysctl(_ key: String, _ value: String) throws {
        let path = try SimHost.sysctlPath(key)
        try run { try FileIO.write(path, value) }
    }

    public func readSysctl(_ key: String) throws -> String {
        let path = try SimHost.sysctlPath(key)
        return try run { try FileIO.read(path) }.trimmingTrailingWhitespace
    }

    static func sysctlPath(_ key: String) throws -> String {
        let rel = key.contains("/") ? key : key.replacingDots()
        let ok = rel.hasPrefix("net/") && !rel.contains("..") && rel.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a)
                || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e || $0 == 0x2f
        }
        guard ok else {
            throw SimNetError.invalidArgument("sysctl `\(key)`: only per-namespace net.* keys can be set on a host")
        }
        return "/proc/sys/" + rel
    }

    // MARK: Links, addresses, routes (libnl)

    public func setLink(_ dev: String, up: Bool) throws {
        _ = try liveFD()
        try routes.setLink(dev, up: up)
    }

    public func isLinkUp(_ dev: String) throws -> Bool { try routes.isUp(dev) }

    public func hasLink(_ dev: String) -> Bool { routes.linkExists(dev) }

    public func setMTU(_ dev: String, _ mtu: Int) throws {
        guard mtu >= 68 && mtu <= 65535 else { throw SimNetError.invalidArgument("mtu \(mtu) on \(dev): out of range") }
        try routes.setMTU(dev, UInt32(mtu))
    }

    /// Adds "10.0.0.1/24" or "fd00::1/64" (IPv6 without DAD) to `dev`.
    public func addAddress(_ cidr: String, dev: String) throws {
        _ = try liveFD()
        try routes.addAddress(cidr, dev: dev)
    }

    public func removeAddress(_ cidr: String, dev: String) throws {
        try routes.addAddress(cidr, dev: dev, remove: true)
    }

    /// Adds a route: `dest` is "default" or a CIDR prefix; give `via`, `dev` or both.
    public func addRoute(_ dest: String, via: String? = nil, dev: String? = nil, metric: Int? = nil) throws {
        _ = try liveFD()
        try routes.addRoute(dest, via: via, dev: dev, metric: metric.map { UInt32($0) })
    }

    public func removeRoute(_ dest: String, via: String? = nil, dev: String? = nil) throws {
        try routes.addRoute(dest, via: via, dev: dev, metric: nil, remove: true)
    }

    /// Creates a Linux bridge, enslaves `ports` and brings bridge and ports up.
    public func addBridge(_ name: String, ports: [String] = []) throws {
        _ = try liveFD()
        try routes.addBridge(name)
        for port in ports { try routes.enslave(port, to: name) }
        for port in ports { try routes.setLink(port, up: true) }
        try routes.setLink(name, up: true)
    }

    public func addBridgePort(_ port: String, bridge: String) throws {
        try routes.enslave(port, to: bridge)
        try routes.setLink(port, up: true)
    }

    /// Turns on IPv4 and IPv6 forwarding, and (by default) rp_filter off.
    public func enableForwarding(rpFilter: Bool = false) throws {
        try run {
            try FileIO.write("/proc/sys/net/ipv4/ip_forward", "1")
            try FileIO.write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
            if !rpFilter {
                try FileIO.write("/proc/sys/net/ipv4/conf/all/rp_filter", "0")
                try FileIO.write("/proc/sys/net/ipv4/conf/default/rp_filter", "0")
            }
        }
    }

    // MARK: Processes

    /// Starts `argv` inside the host. stdout/stderr go to files (appended,
    /// created if missing; nil = /dev/null; the same path for both shares
    /// one file). `env` is added to (or, with inheritEnvironment false,
    /// replaces) the runner's environment.
    public func spawn(_ argv: [String], env: [String: String] = [:], inheritEnvironment: Bool = true,
                      cwd: String? = nil, stdout: String? = nil, stderr: String? = nil,
                      stdin: String? = nil) throws -> ChildProcess {
        func openOut(_ path: String?) throws -> Int32 {
            guard let path else { return -1 }
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if fd < 0 { throw SimNetError.system("open", path, errno: errno) }
            return fd
        }
        let outFD = try openOut(stdout)
        defer { if outFD >= 0 { close(outFD) } }
        var errFD: Int32 = -1
        if stderr != nil && stderr != stdout { errFD = try openOut(stderr) }
        defer { if errFD >= 0 { close(errFD) } }
        var inFD: Int32 = -1
        if let stdin {
            inFD = open(stdin, O_RDONLY | O_CLOEXEC)
            if inFD < 0 { throw SimNetError.system("open", stdin, errno: errno) }
        }
        defer { if inFD >= 0 { close(inFD) } }
        return try spawn(argv, env: env, inheritEnvironment: inheritEnvironment, cwd: cwd,
                         stdinFD: inFD, stdoutFD: outFD, stderrFD: stderr == nil ? -1 : (stderr == stdout ? outFD : errFD))
    }

    /// Lower level: the child gets these fds (-1 = /dev/null) as 0, 1, 2.
    /// The caller keeps ownership of the fds.
    public func spawn(_ argv: [String], env: [String: String] = [:], inheritEnvironment: Bool = true,
                      cwd: String? = nil, stdinFD: Int32, stdoutFD: Int32, stderrFD: Int32) throws -> ChildProcess {
        let fd = try liveFD()
        let child = try Spawner.spawn(argv: argv, env: env, inheritEnvironment: inheritEnvironment, cwd: cwd,
                                      nsfd: fd, stdin: stdinFD, stdout: stdoutFD, stderr: stderrFD,
                                      hostName: name)
        pthread_mutex_lock(&lock)
        children.removeAll { !$0.isRunning }
        children.append(child)
        pthread_mutex_unlock(&lock)
        return child
    }

    /// Processes started in this host that were not reaped yet.
    public var processes: [ChildProcess] {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return children
    }

    /// Runs a command to completion inside the host and captures its output.
    /// Throws `.timeout` (after killing it) if it runs longer than `timeout`.
    public func runCommand(_ argv: [String], input: String? = nil, env: [String: String] = [:],
                           timeout: Double = 30) throws -> CommandResult {
        try CommandRunner.run(host: self, argv: argv, input: input, env: env, timeout: timeout)
    }

    /// Like `runCommand`, but a non-zero exit is thrown as `.commandFailed`.
    @discardableResult
    public func runChecked(_ argv: [String], input: String? = nil, timeout: Double = 30) throws -> CommandResult {
        let r = try runCommand(argv, input: input, timeout: timeout)
        if r.status != 0 {
            throw SimNetError.commandFailed(argv: argv, host: name, status: r.status, stderr: r.stderr)
        }
        return r
    }

    // MARK: Pinning

    /// Bind-mounts the namespace at /run/netns/<name>, so `ip netns exec <name>` works.
    public func pin(as pinName: String) throws {
        let fd = try liveFD()
        guard pinnedName == nil else {
            throw SimNetError.invalidArgument("host \(name) is already pinned as \(pinnedName!)")
        }
        guard !pinName.isEmpty, pinName.utf8.count <= 200, !pinName.contains("/"), pinName != ".", pinName != ".." else {
            throw SimNetError.invalidArgument("cannot pin host \(name) as `\(pinName)`: a pin name is one path component (no '/'), at most 200 bytes")
        }
        if Rootless.isRootlessChild {
            throw SimNetError.invalidArgument("cannot pin host \(name) as /run/netns/\(pinName): --keep needs root (this is a rootless run)")
        }
        let rc = simsys_netns_pin(fd, pinName)
        if rc == EEXIST {
            throw SimNetError.invalidArgument("cannot pin host \(name): /run/netns/\(pinName) exists already (left by an earlier --keep run? `sim clean` removes it)")
        }
        if rc != 0 { throw SimNetError.system("pin", "/run/netns/\(pinName)", errno: rc) }
        pinnedName = pinName
    }

    public func unpin() throws {
        guard let p = pinnedName else { return }
        let rc = simsys_netns_unpin(p)
        pinnedName = nil
        if rc != 0 { throw SimNetError.system("unpin", "/run/netns/\(p)", errno: rc) }
    }

    // MARK: Teardown

    /// Terminates the host's processes (SIGTERM, SIGKILL after `grace`),
    /// reaps them and closes the namespace fd. A pinned namespace stays
    /// pinned unless `unpin` is true. Idempotent.
    public func teardown(grace: Double = 1.0, unpin: Bool = false) {
        pthread_mutex_lock(&lock)
        let kids = children
        children = []
        let fd = nsFD
        nsFD = -1
        pthread_mutex_unlock(&lock)
        SimHost.terminateAll(kids, grace: grace)
        if unpin { try? self.unpin() }
        // The netlink socket holds the namespace too: close both.
        routes.close()
        if fd >= 0 { close(fd) }
    }

    /// SIGTERM to each process group, one shared grace period, then
    /// SIGKILL to each group (members that outlived their leader included).
    static func terminateAll(_ kids: [ChildProcess], grace: Double) {
        let running = kids.filter { $0.isRunning }
        if running.isEmpty { return }
        for k in running { k.signalGroup(SIGTERM) }
        let deadline = MonotonicClock.now + grace
        for k in running { _ = k.wait(timeout: max(0, deadline - MonotonicClock.now)) }
        for k in running { k.signalGroup(SIGKILL) }
        for k in running { _ = k.wait(timeout: 30) }
    }
}

extension String {
    func replacingDots() -> String { String(map { $0 == "." ? "/" : $0 }) }
}

/// Parsed /proc/net/snmp and /proc/net/snmp6.
enum NetStats {
    static func parse(snmp: String, snmp6: String) -> [String: Int64] {
        var out: [String: Int64] = [:]
        let lines = snmp.split(separator: "\n")
        var i = 0
        while i + 1 < lines.count {
            let head = lines[i].split(separator: " ")
            let vals = lines[i + 1].split(separator: " ")
            if head.count == vals.count, head.count > 1, head[0] == vals[0] {
                let proto = head[0].dropLast() // "Icmp:"
                for j in 1..<head.count { if let v = Int64(vals[j]) { out["\(proto).\(head[j])"] = v } }
                i += 2
            } else {
                i += 1
            }
        }
        for line in snmp6.split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.count == 2, let v = Int64(f[1]) { out[String(f[0])] = v }
        }
        return out
    }
}

extension SimHost {
    /// Removes a directory tree (used for scratch folders in tests).
    static func unsafeRemoveTree(_ path: String) throws {
        guard path.hasPrefix("/tmp/") else { throw SimNetError.invalidArgument("refusing to remove \(path)") }
        if let dir = opendir(path) {
            while let e = readdir(dir) {
                let name = withUnsafePointer(to: e.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name == "." || name == ".." { continue }
                let child = path + "/" + name
                var st = stat()
                if lstat(child, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { try unsafeRemoveTree(child) }
                else { unlink(child) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}
