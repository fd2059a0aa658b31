import Foundation

/// Turns a scenario's forwarder section (dnsmasq-style options) into the
/// command line of one subject: our forwarder, dnsmasq or unbound.
public struct SubjectAdapter {
    public var subject: String
    /// Path of our `forwarder` binary.
    public var forwarderPath: String

    public init(subject: String, forwarderPath: String) {
        self.subject = subject
        self.forwarderPath = forwarderPath
    }

    /// The command line, and files the subject needs written first (unbound's config).
    public func command(for spec: ForwarderSpec, scratch: String) throws -> (argv: [String], files: [String: String]) {
        let options = (spec.options + (spec.subjectOptions[subject] ?? [])).map { expand($0, scratch: scratch) }
        switch subject {
        case "ours":
            var argv = [forwarderPath, "--keep-in-foreground"]
            if !options.contains(where: { $0.hasPrefix("--port") }) { argv.append("--port=\(spec.port)") }
            return (argv + options, [:])
        case "dnsmasq":
            // dnsmasq as a distribution runs it, minus syslog and privilege drop,
            // plus no system config file, so that only the scenario's options count.
            var argv = ["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null",
                        "--user=root", "--group=root", "--pid-file="]
            if !options.contains(where: { $0.hasPrefix("--port") }) { argv.append("--port=\(spec.port)") }
            return (argv + options, [:])
        case "unbound":
            let conf = try unboundConfig(options: options, port: spec.port, scratch: scratch)
            let path = (scratch as NSString).appendingPathComponent("unbound.conf")
            return (["unbound", "-d", "-c", path], [path: conf])
        default:
            throw ScenarioError(file: "-", line: 0, reason: "unknown subject '\(subject)'")
        }
    }

    /// `@name` stands for the file `name` in the forwarder host's scratch folder.
    func expand(_ option: String, scratch: String) -> String {
        guard let at = option.firstIndex(of: "@") else { return option }
        let name = option[option.index(after: at)...]
        return String(option[..<at]) + (scratch as NSString).appendingPathComponent(String(name))
    }

    /// unbound as a plain forwarder: every `--server` becomes a forward-addr of
    /// the root zone. Options it cannot express are an error, not ignored.
    func unboundConfig(options: [String], port: Int, scratch: String) throws -> String {
        var forwards: [String] = []
        var logQueries = false
        var listen: [String] = []
        var cacheSize: Int?
        for o in options {
            let (key, value) = splitOption(o)
            switch key {
            case "--server":
                guard let v = value, !v.hasPrefix("/") else {
                    throw ScenarioError(file: "-", line: 0, reason: "unbound adapter: per-domain --server is not translated")
                }
                forwards.append(v.replacingOccurrences(of: "#", with: "@"))
            case "--no-resolv", "--no-hosts", "--keep-in-foreground", "--no-daemon", "--strict-order":
                continue
            case "--log-queries": logQueries = true
            case "--listen-address": if let v = value { listen.append(v) }
            case "--cache-size": cacheSize = value.flatMap(Int.init)
            case "--port": continue
            default:
                throw ScenarioError(file: "-", line: 0, reason: "unbound adapter: option \(key) has no unbound translation")
            }
        }
        var lines = ["server:", "  port: \(port)", "  do-daemonize: no", "  use-syslog: no", "  logfile: \"\"",
                     "  username: \"\"", "  chroot: \"\"", "  pidfile: \"\"", "  directory: \"\(scratch)\"",
                     "  num-threads: 1", "  verbosity: 1", "  do-ip6: yes", "  interface-automatic: yes",
                     "  access-control: 0.0.0.0/0 allow", "  access-control: ::/0 allow",
                     "  module-config: \"iterator\"", "  local-zone: \"test.\" nodefault",
                     "  qname-minimisation: no", "  harden-referral-path: no"]
        if logQueries { lines += ["  log-queries: yes", "  log-replies: yes"] }
        if let c = cacheSize { lines.append("  msg-cache-size: \(max(c, 1) * 512)") }
        lines += listen.map { "  interface: \($0)" }
        if listen.isEmpty { lines += ["  interface: 0.0.0.0", "  interface: ::"] }
        lines += ["forward-zone:", "  name: \".\""] + forwards.map { "  forward-addr: \($0)" }
        return lines.joined(separator: "\n") + "\n"
    }

    func splitOption(_ o: String) -> (String, String?) {
        guard let eq = o.firstIndex(of: "=") else { return (o, nil) }
        return (String(o[..<eq]), String(o[o.index(after: eq)...]))
    }
}
