import CSimSys
import Glibc

/// Rootless runs: the `sim` executable calls `reexecIfNeeded` first thing.
public enum Rootless {
    /// Set in the re-executed process's environment.
    public static let marker = "SIM_ROOTLESS"

    /// True in the process re-executed by `reexecIfNeeded`.
    public static var isRootlessChild: Bool { getenv(marker) != nil }

    /// If not root, runs this executable again inside a new user + network
    /// namespace (uid/gid mapped to 0, setgroups denied), waits for it and
    /// exits with its status: this function then never returns. As root it
    /// returns at once. Throws `.rootless` naming the kernel setting when
    /// the kernel refuses an unprivileged user namespace.
    public static func reexecIfNeeded(arguments: [String] = CommandLine.arguments) throws {
        if geteuid() == 0 {
            // The re-executed runner dies with its waiting parent, even on SIGKILL
            // (set again here: an exec may clear the flag the fork set).
            if isRootlessChild { _ = simsys_set_pdeathsig(SIGKILL) }
            return
        }
        if isRootlessChild {
            throw SimNetError.rootless("sim: re-executed in a user namespace but still not uid 0; giving up")
        }
        setenv(marker, "1", 1)
        let cArgv = arguments.map { strdup($0) } + [nil]
        defer { cArgv.forEach { free($0) } }
        var stage: UnsafePointer<CChar>?
        let rc = cArgv.withUnsafeBufferPointer { simsys_rootless_reexec($0.baseAddress, &stage) }
        if rc >= 0 { exit(rc) }
        unsetenv(marker)
        throw SimNetError.rootless(explain(errno: -rc, stage: stage.map { String(cString: $0) } ?? "unshare"))
    }

    /// The message for a refused user namespace, naming the setting to change.
    static func explain(errno e: Int32, stage: String) -> String {
        let reason = String(cString: strerror(e))
        var lines = ["sim: not root, and creating a user namespace failed at \(stage): \(reason)."]
        func read(_ p: String) -> String? { (try? FileIO.read(p))?.trimmingTrailingWhitespace }
        var named = false
        if let v = read("/proc/sys/kernel/unprivileged_userns_clone"), v == "0" {
            lines.append("The kernel forbids unprivileged user namespaces: kernel.unprivileged_userns_clone = 0 (set it to 1: sysctl -w kernel.unprivileged_userns_clone=1).")
            named = true
        }
        if let v = read("/proc/sys/user/max_user_namespaces"), v == "0" {
            lines.append("user.max_user_namespaces = 0 (raise it: sysctl -w user.max_user_namespaces=15000).")
            named = true
        }
        if let v = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"), v == "1" {
            lines.append("AppArmor restricts unprivileged user namespaces: kernel.apparmor_restrict_unprivileged_userns = 1 (set it to 0, or add an AppArmor profile for sim with `userns,`).")
            named = true
        }
        if !named {
            lines.append("Check kernel.unprivileged_userns_clone, user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns, or run as root.")
        }
        return lines.joined(separator: "\n")
    }
}
