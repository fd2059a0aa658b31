/// A bad option: the message names the option (and FILE:LINE for a config file).
public struct OptionError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The daemon's options, with dnsmasq's names and defaults (except --dns-forward-max).
public struct Options: Equatable {
    public var port: UInt16 = 53
    public var listenAddresses: [Endpoint] = []
    public var servers: [ServerSpec] = []
    /// `--server=/DOMAIN/` (no address): local-only domains.
    public var localDomains: [String] = []
    public var resolvFile = "/etc/resolv.conf"
    public var noResolv = false
    /// Drop the cache when the resolv-file's servers change (default on, unlike dnsmasq).
    public var clearOnReload = true
    public var strictOrder = false
    public var allServers = false
    public var cacheSize = 150
    public var noNegcache = false
    public var logQueries = false
    public var addressRules: [AddressRule] = []
    public var noHosts = false
    public var addnHosts: [String] = []
    public var pidFile: String? = nil
    public var confFiles: [String] = []
    public var dnsForwardMax = 4096
    /// With no upstream known, how long a query waits for one (ms).
    public var holdQueriesMs = 2000
    /// Upstream queries per UDP socket (and so per source port); 1 = a new port for every query.
    public var queryPortReuse = 1
    /// `--dns-0x20`: random letter case in upstream questions, checked in replies.
    public var caseRandomization = false
    /// `--local-service`: accepted; it is what the forwarder does anyway whenever no
    /// --listen-address is given (answer only clients on directly attached networks).
    public var localService = false
    public var help = false
    public var version = false

    public init() {}

    public var policy: UpstreamPolicy {
        allServers ? .allServers : strictOrder ? .strictOrder : .bestRTT
    }

    /// Description of every option, for --help.
    public static let table: [(long: String, short: Character?, arg: String?, help: String)] = [
        ("port", "p", "PORT", "Listen on PORT for DNS over UDP and TCP (default 53)."),
        ("listen-address", "a", "IP", "Listen on IP (repeatable). Default: wildcard 0.0.0.0 and ::, replying from the address asked."),
        ("server", "S", "[/DOMAIN/]IP[#PORT]", "Upstream server; with /DOMAIN/ only for names in DOMAIN; /DOMAIN/ alone = local only."),
        ("resolv-file", "r", "FILE", "Read upstream servers from FILE's nameserver lines (default /etc/resolv.conf)."),
        ("no-resolv", "R", nil, "Do not read a resolv-file; use only --server."),
        ("clear-on-reload", nil, nil, "Clear the cache when the resolv-file's servers change (the default)."),
        ("no-clear-on-reload", nil, nil, "Keep the cache when the resolv-file's servers change."),
        ("strict-order", "o", nil, "Try servers in the order given, moving on at once on failure."),
        ("all-servers", nil, nil, "Send every query to all servers; the first good reply wins."),
        ("cache-size", "c", "N", "Cache up to N answers (default 150; 0 disables caching)."),
        ("no-negcache", "N", nil, "Do not cache negative answers (NXDOMAIN, NODATA)."),
        ("log-queries", "q", nil, "Log each query, where it went and the reply, as dnsmasq does."),
        ("address", "A", "/DOMAIN/[IP]", "Answer names in DOMAIN with IP (A or AAAA); no IP = NXDOMAIN; # = 0.0.0.0 and ::."),
        ("no-hosts", "h", nil, "Do not read /etc/hosts."),
        ("addn-hosts", "H", "FILE", "Read hosts entries from FILE too (repeatable)."),
        ("pid-file", "x", "FILE", "Write the process id to FILE."),
        ("conf-file", "C", "FILE", "Read options from FILE: lines 'option=value' or 'option', '#' comments."),
        ("keep-in-foreground", "k", nil, "Accepted; the forwarder always runs in the foreground."),
        ("no-daemon", "d", nil, "Accepted; the forwarder always runs in the foreground and logs to stderr."),
        ("dns-forward-max", "0", "N", "At most N queries in flight upstream (default 4096); past it clients get SERVFAIL, never REFUSED."),
        ("hold-queries", nil, "MS", "With no upstream known yet (resolv-file missing or empty), hold queries up to MS ms (default 2000), then SERVFAIL."),
        ("query-port-reuse", nil, "N", "Send up to N upstream queries from one UDP socket before a new one (default 1: a new random source port for every query; more saves system calls, but a spoofer then has fewer ports to guess)."),
        ("dns-0x20", nil, nil, "Randomise the letter case of every upstream question (DNS 0x20) and accept only replies that echo it exactly: more bits for a spoofer to guess. Only for upstreams that keep the case (most do). (unbound: use-caps-for-id)."),
        ("local-service", nil, nil, "Answer only clients on directly attached networks (the default unless --listen-address is given); others are dropped."),
        ("help", "w", nil, "Show this help."),
        ("version", "v", nil, "Show the version."),
    ]

    public static func helpText() -> String {
        var s = "Usage: forwarder [OPTION]...\nA dnsmasq-compatible DNS forwarder (DNS only). Options:\n"
        for o in table {
            var left = "  "
            if let c = o.short { left += "-\(c), " } else { left += "    " }
            left += "--\(o.long)"
            if let a = o.arg { left += "=\(a)" }
            if left.count < 34 { left += String(repeating: " ", count: 34 - left.count) } else { left += "  " }
            s += left + o.help + "\n"
        }
        return s
    }

    /// Parses a command line (without argv[0]). `readFile` reads config files.
    public static func parse(_ args: [String], readFile: (String) throws -> String) throws -> Options {
        var o = Options()
        var i = 0
        while i < args.count {
            let a = args[i]
            i += 1
            var name: String
            var value: String?
            if a.hasPrefix("--") {
                let body = a.dropFirst(2)
                if let eq = body.firstIndex(of: "=") {
                    name = String(body[..<eq]); value = String(body[body.index(after: eq)...])
                } else { name = String(body) }
                guard let spec = table.first(where: { $0.long == name }) else {
                    throw OptionError("unknown option --\(name)")
                }
                if spec.arg != nil && value == nil {
                    guard i < args.count else { throw OptionError("option --\(name) needs a value (\(spec.arg!))") }
                    value = args[i]; i += 1
                }
            } else if a.hasPrefix("-") && a.count >= 2 {
                let c = a[a.index(after: a.startIndex)]
                guard let spec = table.first(where: { $0.short == c }) else {
                    throw OptionError("unknown option -\(c)")
                }
                name = spec.long
                let rest = String(a.dropFirst(2))
                if spec.arg != nil {
                    if !rest.isEmpty { value = rest.hasPrefix("=") ? String(rest.dropFirst()) : rest }
                    else {
                        guard i < args.count else { throw OptionError("option -\(c) (--\(name)) needs a value (\(spec.arg!))") }
                        value = args[i]; i += 1
                    }
                } else if !rest.isEmpty {
                    throw OptionError("option -\(c) (--\(name)) takes no value, got '\(a)'")
                }
            } else {
                throw OptionError("unexpected argument '\(a)' (options start with --)")
            }
            try o.apply(name: name, value: value, where: "--\(name)", readFile: readFile, depth: 0)
        }
        if o.strictOrder && o.allServers {
            throw OptionError("--strict-order and --all-servers cannot be used together")
        }
        return o
    }

    /// Applies one option. `where` names it in errors ("--port" or "FILE:LINE: port").
    mutating func apply(name: String, value: String?, where loc: String, readFile: (String) throws -> String, depth: Int) throws {
        guard let spec = Options.table.first(where: { $0.long == name }) else {
            throw OptionError("\(loc): unknown option")
        }
        if spec.arg == nil && value != nil {
            throw OptionError("\(loc): option takes no value")
        }
        if spec.arg != nil && (value == nil || value!.isEmpty) && name != "address" {
            throw OptionError("\(loc): needs a value (\(spec.arg!))")
        }
        let v = value ?? ""
        func int(_ lo: Int, _ hi: Int) throws -> Int {
            guard let n = Int(v), n >= lo, n <= hi else { throw OptionError("\(loc): '\(v)' is not a number in \(lo)...\(hi)") }
            return n
        }
        switch name {
        case "port":
            port = UInt16(try int(0, 65535))
            if port == 0 { throw OptionError("\(loc): port 0 (DNS disabled) is not implemented") }
        case "listen-address":
            guard let ep = Endpoint(address: v, port: 0) else { throw OptionError("\(loc): '\(v)' is not an IP address") }
            listenAddresses.append(ep)
        case "server":
            try parseServer(v, loc: loc)
        case "resolv-file": resolvFile = v
        case "no-resolv": noResolv = true
        case "clear-on-reload": clearOnReload = true
        case "no-clear-on-reload": clearOnReload = false
        case "strict-order": strictOrder = true
        case "all-servers": allServers = true
        case "cache-size": cacheSize = try int(0, 10_000_000)
        case "no-negcache": noNegcache = true
        case "log-queries": logQueries = true
        case "address": try parseAddress(v, loc: loc)
        case "no-hosts": noHosts = true
        case "addn-hosts": addnHosts.append(v)
        case "pid-file": pidFile = v
        case "keep-in-foreground", "no-daemon": break
        case "dns-forward-max": dnsForwardMax = try int(1, 1_000_000)
        case "hold-queries": holdQueriesMs = try int(0, 60_000)
        case "query-port-reuse": queryPortReuse = try int(1, 1000)
        case "local-service": localService = true
        case "dns-0x20": caseRandomization = true
        case "help": help = true
        case "version": version = true
        case "conf-file":
            guard depth < 8 else { throw OptionError("\(loc): conf-file nested too deeply") }
            confFiles.append(v)
            let text: String
            do { text = try readFile(v) } catch {
                throw OptionError("\(loc): cannot read \(v): \(error)")
            }
            try applyConfigFile(text: text, path: v, readFile: readFile, depth: depth + 1)
        default:
            throw OptionError("\(loc): not implemented")
        }
    }

    /// Applies a dnsmasq-style config file: `option=value` or `option`, `#` comments.
    public mutating func applyConfigFile(text: String, path: String, readFile: (String) throws -> String, depth: Int = 1) throws {
        var lineNo = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var line = raw.drop(while: { $0 == " " || $0 == "\t" })
            while let l = line.last, l == " " || l == "\t" || l == "\r" { line = line.dropLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            let name: String
            var value: String? = nil
            if let eq = line.firstIndex(of: "=") {
                name = String(line[..<eq]).trimmingSpaces()
                value = String(line[line.index(after: eq)...]).trimmingSpaces()
            } else {
                name = String(line)
            }
            try apply(name: name, value: value, where: "\(path):\(lineNo): \(name)", readFile: readFile, depth: depth)
        }
    }

    static func parsePort(_ s: Substring, loc: String) throws -> UInt16 {
        guard let p = UInt16(s), p > 0 else { throw OptionError("\(loc): bad port '\(s)'") }
        return p
    }

    static func normaliseDomain(_ d: Substring) -> String {
        var s = d.lowercased()
        while s.hasSuffix(".") { s.removeLast() }
        while s.hasPrefix(".") || s.hasPrefix("*") { s.removeFirst() }
        return s
    }

    /// IP[#PORT] | /DOMAIN/[/DOMAIN/...]IP[#PORT] | /DOMAIN/
    mutating func parseServer(_ v: String, loc: String) throws {
        var domains: [String] = []
        var rest = Substring(v)
        if rest.hasPrefix("/") {
            guard let last = rest.lastIndex(of: "/"), last != rest.startIndex else {
                throw OptionError("\(loc): '\(v)' lacks the closing '/' after the domain")
            }
            let doms = rest[rest.index(after: rest.startIndex)..<last].split(separator: "/")
            domains = doms.map { Options.normaliseDomain($0) }
            rest = rest[rest.index(after: last)...]
            if rest.isEmpty {
                localDomains.append(contentsOf: domains)
                return
            }
        }
        if rest.contains("@") { throw OptionError("\(loc): '\(v)': source address/interface (@) not implemented") }
        if rest == "#" { throw OptionError("\(loc): '\(v)': '#' (use standard servers) not implemented") }
        var port: UInt16 = 53
        var addr = rest
        if let h = rest.lastIndex(of: "#") {
            port = try Options.parsePort(rest[rest.index(after: h)...], loc: loc)
            addr = rest[..<h]
        }
        guard let ep = Endpoint(address: String(addr), port: port) else {
            throw OptionError("\(loc): '\(addr)' is not an IP address")
        }
        servers.append(ServerSpec(endpoint: ep, domains: domains))
    }

    /// /DOMAIN/[/DOMAIN/...][IP|#]
    mutating func parseAddress(_ v: String, loc: String) throws {
        guard v.hasPrefix("/"), let last = v.lastIndex(of: "/"), last != v.startIndex else {
            throw OptionError("\(loc): '\(v)' must look like /DOMAIN/IP")
        }
        let doms = v[v.index(after: v.startIndex)..<last].split(separator: "/").map { Options.normaliseDomain($0) }
        guard !doms.isEmpty else { throw OptionError("\(loc): '\(v)' names no domain") }
        let ip = v[v.index(after: last)...]
        var rule = AddressRule(domains: doms)
        if ip == "#" {
            rule.v4 = [[0, 0, 0, 0]]
            rule.v6 = [[UInt8](repeating: 0, count: 16)]
        } else if !ip.isEmpty {
            guard let ep = Endpoint(address: String(ip), port: 0) else {
                throw OptionError("\(loc): '\(ip)' is not an IP address")
            }
            if ep.isV6 { rule.v6 = [ep.addressBytes] } else { rule.v4 = [ep.addressBytes] }
        }
        // Several --address lines for the same domains add up (one A and one AAAA).
        if let i = addressRules.firstIndex(where: { $0.domains == doms }), !rule.nxdomain, !addressRules[i].nxdomain {
            addressRules[i].v4 += rule.v4
            addressRules[i].v6 += rule.v6
        } else {
            addressRules.append(rule)
        }
    }

    /// `nameserver` lines of a resolv.conf.
    public static func parseResolvConf(_ text: String) -> [Endpoint] {
        var out: [Endpoint] = []
        for raw in text.split(separator: "\n") {
            var line = Substring(raw)
            if let h = line.firstIndex(where: { $0 == "#" || $0 == ";" }) { line = line[..<h] }
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard f.count >= 2, f[0] == "nameserver" else { continue }
            if let ep = Endpoint(address: String(f[1]), port: 53) { out.append(ep) }
        }
        return out
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
