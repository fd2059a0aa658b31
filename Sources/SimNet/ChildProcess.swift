import CSimSys
import Glibc

/// How a child process ended.
public enum ExitStatus: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    /// Shell-style code: the exit status, or 128 + signal.
    public var code: Int32 {
        switch self {
        case .exited(let c): return c
        case .signaled(let s): return 128 + s
        }
    }

    public var description: String {
        switch self {
        case .exited(let c): return "exit \(c)"
        case .signaled(let s): return "killed by signal \(s)"
        }
    }

    init(raw st: Int32) {
        // WIFEXITED / WTERMSIG by hand: the macros are not imported.
        let sig = st & 0x7f
        if sig == 0 { self = .exited((st >> 8) & 0xff) } else { self = .signaled(sig) }
    }
}

/// A process started inside a host. It dies with the runner (PDEATHSIG),
/// and is reaped by `wait`, `terminate` or its host's teardown.
public final class ChildProcess: CustomStringConvertible {
    public let pid: pid_t
    public let argv: [String]
    public let hostName: String
    private let pidfd: Int32
    private var lock = pthread_mutex_t()
    private var status: ExitStatus?

    init(pid: pid_t, argv: [String], hostName: String) {
        self.pid = pid
        self.argv = argv
        self.hostName = hostName
        let fd = simsys_pidfd_open(pid)
        self.pidfd = fd >= 0 ? fd : -1
        pthread_mutex_init(&lock, nil)
    }

    deinit {
        if pidfd >= 0 { close(pidfd) }
        pthread_mutex_destroy(&lock)
    }

    public var description: String { "\(argv.first ?? "?") (pid \(pid)) on host \(hostName)" }

    /// Reaps without blocking; returns the status once the child ended.
    private func reap() -> ExitStatus? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let status { return status }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid {
            status = ExitStatus(raw: st)
        } else if r < 0 && errno == ECHILD {
            // Someone else reaped it: we cannot know how it ended.
            status = .exited(-1)
        }
        return status
    }

    /// The exit status, or nil while running.
    public var exitStatus: ExitStatus? { reap() }

    public var isRunning: Bool { reap() == nil }

    /// Waits up to `timeout` seconds; returns the status, nil if still running.
    @discardableResult
    public func wait(timeout: Double) -> ExitStatus? {
        let deadline = MonotonicClock.now + timeout
        while true {
            if let s = reap() { return s }
            let left = deadline - MonotonicClock.now
            if left <= 0 { return nil }
            if pidfd >= 0 {
                var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, Int32(min(left, 1.0) * 1000) + 1)
            } else {
                usleep(UInt32(min(left, 0.005) * 1_000_000))
            }
        }
    }

    /// Sends a signal (no-op once the child was reaped).
    public func signal(_ sig: Int32) throws {
        if reap() != nil { return }
        if kill(pid, sig) != 0 && errno != ESRCH {
            throw SimNetError.system("kill(\(sig))", description, errno: errno)
        }
    }

    /// Sends a signal to the child's whole process group (the child is a
    /// group leader), which reaches what it started too.
    public func signalGroup(_ sig: Int32) {
        kill(-pid, sig)
    }

    /// SIGTERM to the process group, then SIGKILL to the group after
    /// `grace` seconds (also to stragglers whose leader already exited);
    /// returns how the child ended.
    @discardableResult
    public func terminate(grace: Double = 2.0) -> ExitStatus {
        SimHost.terminateAll([self], grace: grace)
        return wait(timeout: 30) ?? .signaled(SIGKILL)
    }
}

/// Monotonic seconds.
enum MonotonicClock {
    static var now: Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Builds C argument arrays and calls the C spawner.
enum Spawner {
    static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// Resolves argv[0] through PATH before fork (execvp is not async-signal-safe).
    static func resolve(_ name: String, path: String?) throws -> String {
        if name.contains("/") {
            if access(name, X_OK) != 0 { throw SimNetError.system("spawn", name, errno: errno) }
            return name
        }
        let dirs = (path ?? defaultPath).split(separator: ":") + defaultPath.split(separator: ":")
        for dir in dirs where !dir.isEmpty {
            let candidate = "\(dir)/\(name)"
            var st = stat()
            if stat(candidate, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        throw SimNetError.invalidArgument("spawn: `\(name)` not found in PATH")
    }

    static func environment(_ extra: [String: String], inherit: Bool) -> [String] {
        var env: [String: String] = [:]
        if inherit {
            var p = environ
            while let entry = p.pointee {
                let s = String(cString: entry)
                if let eq = s.firstIndex(of: "=") {
                    env[String(s[..<eq])] = String(s[s.index(after: eq)...])
                }
                p += 1
            }
        }
        for (k, v) in extra { env[k] = v }
        return env.map { "\($0.key)=\($0.value)" }.sorted()
    }

    static func spawn(argv: [String], env: [String: String], inheritEnvironment: Bool, cwd: String?,
                      nsfd: Int32, stdin: Int32, stdout: Int32, stderr: Int32,
                      hostName: String) throws -> ChildProcess {
        guard let first = argv.first, !first.isEmpty else {
            throw SimNetError.invalidArgument("spawn: empty argv")
        }
        let envList = environment(env, inherit: inheritEnvironment)
        let searchPath = env["PATH"] ?? (inheritEnvironment ? getenv("PATH").map { String(cString: $0) } : nil)
        let path = try resolve(first, path: searchPath)
        if let cwd {
            var st = stat()
            if stat(cwd, &st) != 0 { throw SimNetError.system("spawn: cwd", cwd, errno: errno) }
        }
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = envList.map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = -1
        var stage: UnsafePointer<CChar>?
        let rc: Int32 = path.withCString { cPath in
            cArgv.withUnsafeBufferPointer { av in
                cEnv.withUnsafeBufferPointer { ev in
                    let run: (UnsafePointer<CChar>?) -> Int32 = { cCwd in
                        var req = simsys_spawn_req(path: cPath, argv: av.baseAddress, envp: ev.baseAddress,
                                                   cwd: cCwd, nsfd: nsfd, stdin_fd: stdin, stdout_fd: stdout,
                                                   stderr_fd: stderr, new_pgrp: 1)
                        return simsys_spawn(&req, &pid, &stage)
                    }
                    if let cwd { return cwd.withCString { run($0) } }
                    return run(nil)
                }
            }
        }
        if rc != 0 {
            let step = stage.map { String(cString: $0) } ?? "fork"
            throw SimNetError.system("spawn (\(step))", "`\(argv.joined(separator: " "))` on host \(hostName)", errno: rc)
        }
        return ChildProcess(pid: pid, argv: argv, hostName: hostName)
    }
}
