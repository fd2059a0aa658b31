import Glibc

/// Every failure of the network layer, with enough words to act on.
public enum SimNetError: Error, CustomStringConvertible, Equatable {
    /// A system call failed: the operation, the object it acted on, errno.
    case system(_ operation: String, _ subject: String, errno: Int32)
    /// A libnl/netlink call failed.
    case netlink(_ operation: String, _ subject: String, code: Int32, message: String)
    /// Bad input from the caller (an address, a sysctl key, a name).
    case invalidArgument(String)
    /// A command ran inside a host and failed.
    case commandFailed(argv: [String], host: String, status: Int32, stderr: String)
    /// A command or wait did not finish before its deadline.
    case timeout(String)
    /// The host was torn down already.
    case hostGone(String)
    /// Rootless mode is impossible here; the text names the kernel setting.
    case rootless(String)

    public var description: String {
        switch self {
        case let .system(op, subject, e):
            return "\(op) \(subject): \(String(cString: strerror(e))) (errno \(e))"
        case let .netlink(op, subject, code, message):
            return "netlink \(op) \(subject): \(message) (nl error \(code))"
        case let .invalidArgument(text):
            return text
        case let .commandFailed(argv, host, status, stderr):
            let err = stderr.trimmingTrailingWhitespace
            return "`\(argv.joined(separator: " "))` on host \(host) exited with status \(status)"
                + (err.isEmpty ? "" : ": \(err)")
        case let .timeout(text):
            return "timed out: \(text)"
        case let .hostGone(name):
            return "host \(name) was already torn down"
        case let .rootless(text):
            return text
        }
    }
}

extension String {
    var trimmingTrailingWhitespace: String {
        var s = Substring(self)
        while let last = s.last, last == " " || last == "\n" || last == "\t" || last == "\r" { s.removeLast() }
        return String(s)
    }
}
