import Foundation
import Yams

/// Reads scenario files. Every error names the file, the line and the reason.
public enum ScenarioParser {
    public static let subjectNames = ["ours", "dnsmasq", "unbound"]

    public static func load(path: String) throws -> Scenario {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ScenarioError(file: path, line: 0, reason: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ScenarioError(file: path, line: 0, reason: "the file is not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> Scenario {
        let root: Node
        do {
            guard let n = try Yams.compose(yaml: text) else {
                throw ScenarioError(file: file, line: 1, reason: "the file is empty")
            }
            root = n
        } catch let e as ScenarioError {
            throw e
        } catch let e as YamlError {
            throw yamlError(e, file: file)
        }
        let top = try YNode(node: root, file: file, path: "").fields("a scenario")
        let url = URL(fileURLWithPath: file)
        let id = url.deletingPathExtension().lastPathComponent
        let family = url.deletingLastPathComponent().lastPathComponent

        let name = try top.required("name").string()
        let incident = try top.optional("incident")?.string()
        let story = try top.optional("story")?.string()
        let timeLimit = try top.optional("time-limit")?.duration() ?? 60

        var hosts: [HostSpec] = []
        if let h = top.optional("hosts") {
            for (hname, hnode) in try h.pairs() { hosts.append(try parseHost(hname, hnode)) }
        }
        let hostNames = Set(hosts.map(\.name))
        // A link id names the two ends of one veth pair: exactly two interfaces.
        var ends: [String: [HostSpec]] = [:]
        for h in hosts { for (_, link) in h.links { ends[link, default: []].append(h) } }
        for (link, hs) in ends.sorted(by: { $0.key < $1.key }) where hs.count != 2 {
            throw ScenarioError(file: file, line: hs.last!.line,
                                reason: "hosts.\(hs.last!.name): link '\(link)' has \(hs.count) end(s); a link joins exactly two interfaces (use a bridge for more)")
        }
        func checkHost(_ n: YNode) throws -> String {
            let s = try n.string()
            guard hostNames.contains(s) else {
                throw n.error("no host named '\(s)' (hosts: \(hosts.map(\.name).joined(separator: ", ")))")
            }
            return s
        }

        var upstreams: [UpstreamSpec] = []
        if let u = top.optional("upstreams") {
            for (uname, unode) in try u.pairs() { upstreams.append(try parseUpstream(uname, unode, checkHost)) }
        }

        var forwarder: ForwarderSpec?
        if let f = top.optional("forwarder") { forwarder = try parseForwarder(f, checkHost) }

        var subjects: [String: SubjectDeclaration] = [:]
        if let s = top.optional("subjects") {
            for (sname, snode) in try s.pairs() {
                guard subjectNames.contains(sname) else {
                    throw snode.error("unknown subject '\(sname)' (known: \(subjectNames.joined(separator: ", ")))")
                }
                subjects[sname] = try parseDeclaration(snode)
            }
        } else if forwarder != nil {
            subjects = ["ours": .passes, "dnsmasq": .passes]
        } else {
            // No forwarder: the scenario does not depend on the subject.
            subjects = ["ours": .passes, "dnsmasq": .passes, "unbound": .passes]
        }

        let ctx = StepContext(hosts: hostNames, upstreams: Set(upstreams.map(\.name)),
                              processes: forwarder == nil ? [] : ["forwarder"])
        var steps: [Step] = []
        if let s = top.optional("steps") {
            for (i, snode) in try s.items().enumerated() {
                steps.append(try parseStep(i, snode, ctx))
            }
        }
        // Every id is unique, and every reference names an earlier id.
        var ids = Set<String>()
        for st in steps {
            if let id = st.id, !ids.insert(id).inserted {
                throw ScenarioError(file: file, line: st.line, reason: "steps[\(st.index)]: duplicate id '\(id)'")
            }
            for ref in references(of: st) where !ids.contains(ref) {
                throw ScenarioError(file: file, line: st.line,
                                    reason: "steps[\(st.index)]: '\(ref)' is not the id of an earlier step")
            }
            for subj in st.subjectExpect.keys where subjects[subj] == nil {
                throw ScenarioError(file: file, line: st.line,
                                    reason: "steps[\(st.index)]: expect-\(subj) given but '\(subj)' is not in subjects")
            }
        }
        for (subj, decl) in subjects {
            if case .fails = decl, !steps.contains(where: { $0.subjectExpect[subj] != nil || ($0.only?.contains(subj) ?? false) }) {
                throw ScenarioError(file: file, line: 1,
                                    reason: "subject \(subj) is declared to fail, but no step says how (expect-\(subj): or only: [\(subj)])")
            }
        }
        try top.finish(allowed: ["name", "incident", "story", "time-limit", "hosts", "upstreams", "forwarder", "subjects", "steps"])
        return Scenario(file: file, id: id, family: family, name: name, incident: incident, story: story,
                        hosts: hosts, upstreams: upstreams, forwarder: forwarder, subjects: subjects,
                        steps: steps, timeLimit: timeLimit)
    }

    static func yamlError(_ e: YamlError, file: String) -> ScenarioError {
        switch e {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
             .composer(_, let problem, let mark, _):
            return ScenarioError(file: file, line: mark.line, reason: "not valid YAML: \(problem)")
        case .reader(let problem, _, _, _):
            return ScenarioError(file: file, line: 1, reason: "not readable YAML: \(problem)")
        default:
            return ScenarioError(file: file, line: 1, reason: "not valid YAML: \(e)")
        }
    }

    // MARK: - hosts

    static func parseHost(_ name: String, _ n: YNode) throws -> HostSpec {
        try checkName(name, n, what: "host", maxLength: 12)
        var h = HostSpec(name: name, line: n.line, links: [], bridges: [], addresses: [], routes: [],
                         sysctls: [], forwarding: false, nftables: nil, files: [])
        if n.isNull { return h }
        let f = try n.fields("a host")
        if let l = f.optional("links") {
            for (ifname, link) in try l.pairs() {
                try checkIfname(ifname, link)
                h.links.append((ifname, try link.string()))
            }
        }
        if let b = f.optional("bridges") {
            for (bname, ports) in try b.pairs() {
                try checkIfname(bname, ports)
                h.bridges.append((bname, try ports.strings()))
            }
        }
        if let a = f.optional("addresses") {
            for (dev, cidrs) in try a.pairs() {
                for c in try cidrs.itemsOrOne() {
                    let cidr = try c.string()
                    guard isCIDR(cidr) else { throw c.error("'\(cidr)' is not an address with a prefix length (e.g. 10.0.0.1/24)") }
                    h.addresses.append((dev, cidr))
                }
            }
        }
        if let r = f.optional("routes") {
            for rn in try r.itemsOrOne() { h.routes.append(try parseRoute(rn)) }
        }
        if let s = f.optional("sysctls") {
            for (k, v) in try s.pairs() { h.sysctls.append((k, try v.string())) }
        }
        if let fw = f.optional("forwarding") { h.forwarding = try fw.bool() }
        if let nft = f.optional("nftables") { h.nftables = try nft.string() }
        if let files = f.optional("files") {
            for (fname, fnode) in try files.pairs() {
                guard !fname.contains("/"), !fname.hasPrefix(".") else {
                    throw fnode.error("a file name is a plain name inside the host's folder, got '\(fname)'")
                }
                if fnode.isMapping {
                    let ff = try fnode.fields("a file")
                    let content = try ff.optional("content")?.string() ?? ""
                    let link = try ff.optional("symlink")?.bool() ?? false
                    try ff.finish(allowed: ["content", "symlink"])
                    h.files.append(FileSpec(name: fname, content: content, symlink: link))
                } else {
                    h.files.append(FileSpec(name: fname, content: try fnode.string(), symlink: false))
                }
            }
        }
        try f.finish(allowed: ["links", "bridges", "addresses", "routes", "sysctls", "forwarding", "nftables", "files"])
        // Every device named must exist on the host (a link, a bridge or lo).
        let devs = Set(h.links.map(\.ifname) + h.bridges.map(\.name) + ["lo"])
        for (dev, _) in h.addresses where !devs.contains(dev) {
            throw n.error("addresses name '\(dev)', which is not a link or bridge of host \(name)")
        }
        for (bname, ports) in h.bridges {
            for p in ports where !h.links.contains(where: { $0.ifname == p }) {
                throw n.error("bridge \(bname) has port '\(p)', which is not a link of host \(name)")
            }
        }
        return h
    }

    static func parseRoute(_ n: YNode) throws -> RouteSpec {
        // "default via 172.17.0.1", "10.0.0.0/8 via 10.1.0.1", "10.0.0.0/8 dev eth1"
        let words = try n.string().split(separator: " ").map(String.init)
        guard let dest = words.first else { throw n.error("empty route") }
        guard dest == "default" || isCIDR(dest) else { throw n.error("a route starts with 'default' or a prefix, got '\(dest)'") }
        var r = RouteSpec(destination: dest, via: nil, dev: nil)
        var i = 1
        while i < words.count {
            guard i + 1 < words.count else { throw n.error("'\(words[i])' needs a value") }
            switch words[i] {
            case "via":
                guard isIP(words[i + 1]) else { throw n.error("'\(words[i + 1])' is not an IP address") }
                r.via = words[i + 1]
            case "dev": r.dev = words[i + 1]
            default: throw n.error("unknown route word '\(words[i])' (known: via, dev)")
            }
            i += 2
        }
        guard r.via != nil || r.dev != nil else { throw n.error("a route needs 'via ADDRESS' or 'dev NAME'") }
        return r
    }

    // MARK: - upstreams

    static func parseUpstream(_ name: String, _ n: YNode, _ checkHost: (YNode) throws -> String) throws -> UpstreamSpec {
        try checkName(name, n, what: "upstream", maxLength: 32)
        let f = try n.fields("an upstream")
        let host = try checkHost(try f.required("host"))
        let addrNode = try f.required("address")
        let address = try addrNode.string()
        guard isIP(address) else { throw addrNode.error("'\(address)' is not an IP address") }
        let port = try f.optional("port")?.int() ?? 53
        var zone: [ZoneEntrySpec] = []
        if let z = f.optional("zone") { zone = try parseZone(z) }
        let soa = try f.optional("soa")?.string()
        let behaviour = try f.optional("behaviour").map(parseBehaviour) ?? .answer
        let naive = try f.optional("naive")?.bool() ?? false
        let tcp = try f.optional("tcp")?.bool() ?? true
        try f.finish(allowed: ["host", "address", "port", "zone", "soa", "behaviour", "naive", "tcp"])
        return UpstreamSpec(name: name, line: n.line, host: host, address: address, port: port, zone: zone,
                            soa: soa, behaviour: behaviour, naive: naive, tcp: tcp)
    }

    static let recordTypes = ["A", "AAAA", "CNAME", "MX", "TXT", "NS", "PTR", "SRV"]

    /// `zone: { hat.com: { A: 192.168.122.203, TTL: 60 }, big.test: { TXT: [..] } }`
    static func parseZone(_ n: YNode) throws -> [ZoneEntrySpec] {
        var out: [ZoneEntrySpec] = []
        for (owner, rrs) in try n.pairs() {
            let f = try rrs.fields("a zone name")
            let ttl = try f.optional("TTL")?.int() ?? 300
            guard ttl >= 0, ttl <= Int(Int32.max) else { throw rrs.error("TTL out of range") }
            for key in f.keys {
                guard recordTypes.contains(key) else {
                    throw rrs.error("unknown record type '\(key)' (known: \(recordTypes.joined(separator: ", ")), TTL)")
                }
                let values = try f.required(key)
                for v in try values.itemsOrOne() {
                    let text = try v.string()
                    if key == "A", IPv4Check.parse(text) == nil { throw v.error("'\(text)' is not an IPv4 address") }
                    if key == "AAAA", !text.contains(":") || !isIP(text) { throw v.error("'\(text)' is not an IPv6 address") }
                    out.append(ZoneEntrySpec(name: owner, type: key, value: text, ttl: UInt32(ttl)))
                }
            }
        }
        return out
    }

    static let behaviourWords = "answer, delay <duration>, silent, refused, servfail, nxdomain, truncate [answer|reset|hang], wrong-id, wrong-question, lowercase-question, garbage, from <address>"

    static func parseBehaviour(_ n: YNode) throws -> BehaviourSpec {
        let words = try n.string().split(separator: " ").map { String($0).lowercased() }
        guard let w = words.first else { throw n.error("empty behaviour (known: \(behaviourWords))") }
        func noArgs(_ b: BehaviourSpec) throws -> BehaviourSpec {
            guard words.count == 1 else { throw n.error("'\(w)' takes no argument") }
            return b
        }
        switch w {
        case "answer": return try noArgs(.answer)
        case "silent": return try noArgs(.silent)
        case "refused": return try noArgs(.refused)
        case "servfail": return try noArgs(.servfail)
        case "nxdomain": return try noArgs(.nxdomain)
        case "wrong-id": return try noArgs(.wrongID)
        case "wrong-question": return try noArgs(.wrongQuestion)
        case "lowercase-question": return try noArgs(.lowercaseQuestion)
        case "garbage": return try noArgs(.garbage)
        case "delay", "slow":
            guard words.count == 2, let d = parseDuration(words[1]) else { throw n.error("'delay' takes a duration, e.g. delay 3s") }
            return .delay(d)
        case "truncate":
            let tcp = words.count > 1 ? words[1] : "answer"
            guard words.count <= 2, ["answer", "reset", "hang"].contains(tcp) else {
                throw n.error("'truncate' takes answer, reset or hang for its TCP side")
            }
            return .truncate(tcp: tcp)
        case "from":
            guard words.count == 2, isIP(words[1]) else { throw n.error("'from' takes an IP address") }
            return .fromOtherAddress(words[1])
        default:
            throw n.error("unknown behaviour '\(w)' (known: \(behaviourWords))")
        }
    }

    // MARK: - forwarder and subjects

    static func parseForwarder(_ n: YNode, _ checkHost: (YNode) throws -> String) throws -> ForwarderSpec {
        let f = try n.fields("the forwarder")
        let host = try checkHost(try f.required("host"))
        let options = try f.optional("options")?.strings() ?? []
        var subjectOptions: [String: [String]] = [:]
        for s in subjectNames {
            if let o = f.optional("options-\(s)") { subjectOptions[s] = try o.strings() }
        }
        var address: String?
        if let a = f.optional("address") {
            address = try a.string()
            guard isIP(address!) else { throw a.error("'\(address!)' is not an IP address") }
        }
        let port = try f.optional("port")?.int() ?? 53
        let start = try f.optional("start")?.bool() ?? true
        try f.finish(allowed: ["host", "options", "address", "port", "start"] + subjectNames.map { "options-\($0)" })
        for o in options where !o.hasPrefix("-") {
            throw n.error("forwarder option '\(o)' must start with -- (dnsmasq's long names, e.g. --server=10.0.0.1)")
        }
        return ForwarderSpec(host: host, options: options, subjectOptions: subjectOptions, address: address,
                             port: port, start: start)
    }

    static func parseDeclaration(_ n: YNode) throws -> SubjectDeclaration {
        let s = try n.string().trimmingCharacters(in: .whitespaces)
        if s == "passes" || s == "pass" { return .passes }
        for (prefix, make) in [("fails", SubjectDeclaration.fails), ("skip", SubjectDeclaration.skip)] {
            if s.hasPrefix(prefix) {
                var reason = s.dropFirst(prefix.count).trimmingCharacters(in: .whitespaces)
                if reason.hasPrefix(":") { reason = reason.dropFirst().trimmingCharacters(in: .whitespaces) }
                guard !reason.isEmpty else { throw n.error("'\(prefix)' needs a reason: \(prefix): <what happens>") }
                return make(reason)
            }
        }
        throw n.error("a subject passes, 'fails: <symptom>' or 'skip: <reason>'")
    }

    // MARK: - steps

    struct StepContext {
        var hosts: Set<String>
        var upstreams: Set<String>
        var processes: Set<String>
    }

    static let actionKeys = ["query", "load", "stub", "file", "behaviour", "firewall", "link", "address", "process",
                             "wait", "run", "upstream-saw", "log", "icmp-unreachable", "firewall-count", "stats",
                             "stub-saw", "spoof", "flood", "slowloris"]

    static func parseStep(_ index: Int, _ n: YNode, _ ctx: StepContext) throws -> Step {
        let f = try n.fields("a step")
        let at = try f.optional("at")?.duration()
        let id = try f.optional("id")?.string()
        let background = try f.optional("background")?.bool() ?? false
        var only: [String]?
        if let o = f.optional("only") {
            only = try o.strings()
            for name in only! where !subjectNames.contains(name) {
                throw o.error("unknown subject '\(name)' in only: (known: \(subjectNames.joined(separator: ", ")))")
            }
        }
        let present = actionKeys.filter { f.keys.contains($0) }
        guard present.count == 1, let key = present.first else {
            if present.isEmpty { throw n.error("a step needs one action (\(actionKeys.joined(separator: ", ")))") }
            throw n.error("a step has one action, this one has \(present.joined(separator: " and "))")
        }
        let a = try f.required(key)
        func host(_ node: YNode) throws -> String {
            let s = try node.string()
            guard ctx.hosts.contains(s) else { throw node.error("no host named '\(s)'") }
            return s
        }
        func upstream(_ node: YNode) throws -> String {
            let s = try node.string()
            guard ctx.upstreams.contains(s) else { throw node.error("no upstream named '\(s)'") }
            return s
        }
        let action: StepAction
        var label = key
        switch key {
        case "query":
            let q = try a.fields("a query")
            let name = try q.required("name").string()
            let toNode = try q.required("to")
            let to = try toNode.string()
            guard isIP(to) else { throw toNode.error("'\(to)' is not an IP address") }
            let transportNode = q.optional("transport")
            let transport = try transportNode?.string() ?? "udp"
            guard ["udp", "udp-unconnected", "tcp"].contains(transport) else {
                throw (transportNode ?? a).error("transport is udp, udp-unconnected or tcp")
            }
            let type = try q.optional("type")?.string() ?? "A"
            let spec = QuerySpec(from: try host(try q.required("from")), to: to,
                                 port: try q.optional("port")?.int() ?? 53, name: name, type: type,
                                 transport: transport, timeout: try q.optional("timeout")?.duration() ?? 5,
                                 attempts: try q.optional("attempts")?.int() ?? 1,
                                 source: try q.optional("source")?.string(), count: try q.optional("count")?.int() ?? 1)
            try q.finish(allowed: ["from", "to", "port", "name", "type", "transport", "timeout", "attempts", "source", "count"])
            label = "query \(name) \(type) -> \(to) (\(transport))"
            action = .query(spec)
        case "load":
            let l = try a.fields("a load")
            let spec = LoadSpec(from: try host(try l.required("from")), to: try l.required("to").string(),
                                port: try l.optional("port")?.int() ?? 53, names: try l.required("names").strings(),
                                type: try l.optional("type")?.string() ?? "A",
                                rate: Double(try l.optional("rate")?.int() ?? 20),
                                duration: try l.required("duration").duration(),
                                timeout: try l.optional("timeout")?.duration() ?? 5)
            guard spec.rate > 0, spec.rate <= 5000, spec.duration <= 120 else {
                throw a.error("a load is bounded: rate 1..5000 per second, duration at most 120s")
            }
            try l.finish(allowed: ["from", "to", "port", "names", "type", "rate", "duration", "timeout"])
            label = "load \(Int(spec.rate))/s for \(spec.duration)s -> \(spec.to)"
            action = .load(spec)
        case "stub":
            let s = try a.fields("a legacy stub")
            let spec = StubSpec(host: try host(try s.required("host")), resolv: try s.required("resolv").string(),
                                name: try s.required("name").string(),
                                interval: try s.optional("interval")?.duration() ?? 0.2,
                                timeout: try s.optional("timeout")?.duration() ?? 1)
            try s.finish(allowed: ["host", "resolv", "name", "interval", "timeout"])
            label = "legacy stub on \(spec.host) asks \(spec.name)"
            action = .stub(spec)
        case "file":
            let s = try a.fields("a file change")
            let h = try host(try s.required("host"))
            let name = try s.required("name").string()
            let methodNode = s.optional("how")
            let methodText = try methodNode?.string() ?? "rename"
            guard let method = FileMethod(rawValue: methodText) else {
                throw (methodNode ?? a).error("how is rewrite, rename, symlink, delete or create")
            }
            let content = try s.optional("content")?.string() ?? ""
            try s.finish(allowed: ["host", "name", "how", "content"])
            label = "\(method.rawValue) \(h):\(name)"
            action = .file(host: h, name: name, method: method, content: content)
        case "behaviour":
            let s = try a.fields("a behaviour change")
            let u = try upstream(try s.required("upstream"))
            let b = try parseBehaviour(try s.required("set"))
            try s.finish(allowed: ["upstream", "set"])
            label = "upstream \(u) becomes \(b)"
            action = .behaviour(upstream: u, b)
        case "firewall":
            let s = try a.fields("a firewall change")
            let h = try host(try s.required("host"))
            let cmds = try s.required("nft").strings()
            try s.finish(allowed: ["host", "nft"])
            label = "firewall on \(h)"
            action = .firewall(host: h, commands: cmds)
        case "link":
            let s = try a.fields("a link change")
            let h = try host(try s.required("host"))
            let dev = try s.required("dev").string()
            let stateNode = try s.required("state")
            let state = try stateNode.string()
            guard state == "up" || state == "down" else { throw stateNode.error("state is up or down") }
            try s.finish(allowed: ["host", "dev", "state"])
            label = "link \(h):\(dev) \(state)"
            action = .link(host: h, dev: dev, up: state == "up")
        case "address":
            let s = try a.fields("an address change")
            let h = try host(try s.required("host"))
            let dev = try s.required("dev").string()
            var add = true
            var cidrNode = s.optional("add")
            if cidrNode == nil { cidrNode = s.optional("remove"); add = false }
            guard let cn = cidrNode else { throw a.error("an address change needs add: or remove:") }
            let cidr = try cn.string()
            guard isCIDR(cidr) else { throw cn.error("'\(cidr)' is not an address with a prefix length") }
            try s.finish(allowed: ["host", "dev", "add", "remove"])
            label = "\(add ? "add" : "remove") \(cidr) on \(h):\(dev)"
            action = .address(host: h, dev: dev, cidr: cidr, add: add)
        case "process":
            let s = try a.fields("a process action")
            let pn = try s.required("name")
            let name = try pn.string()
            guard ctx.processes.contains(name) else { throw pn.error("no process named '\(name)'") }
            let actNode = try s.required("do")
            let act = try actNode.string()
            guard ["kill", "stop", "start", "restart", "hup", "usr1"].contains(act) else {
                throw actNode.error("do is kill, stop, start, restart, hup or usr1")
            }
            try s.finish(allowed: ["name", "do"])
            label = "\(act) \(name)"
            action = .process(name: name, action: act)
        case "wait":
            action = .wait(ids: try a.strings())
            label = "wait for \(try a.strings().joined(separator: ", "))"
        case "run":
            let s = try a.fields("a command")
            let h = try host(try s.required("host"))
            let argv = try s.required("argv").strings()
            guard !argv.isEmpty else { throw a.error("argv is empty") }
            let timeout = try s.optional("timeout")?.duration() ?? 10
            try s.finish(allowed: ["host", "argv", "timeout"])
            label = "run \(argv.joined(separator: " ")) on \(h)"
            action = .run(host: h, argv: argv, timeout: timeout)
        case "upstream-saw":
            let s = try a.fields("an upstream-saw check")
            let u = try upstream(try s.required("upstream"))
            let spec = UpstreamSawSpec(upstream: u, name: try s.optional("name")?.string(),
                                       transport: try s.optional("transport")?.string(),
                                       source: try s.optional("source")?.string(),
                                       since: try parseSince(s.optional("since")),
                                       min: try s.optional("min")?.int(), max: try s.optional("max")?.int(),
                                       within: try s.optional("within")?.duration() ?? 3,
                                       report: try s.optional("report")?.string())
            guard spec.min != nil || spec.max != nil else { throw a.error("upstream-saw needs min: or max:") }
            try s.finish(allowed: ["upstream", "name", "transport", "source", "since", "min", "max", "within", "report"])
            label = "upstream \(u) saw \(spec.min.map { "≥\($0)" } ?? "")\(spec.max.map { " ≤\($0)" } ?? "") \(spec.name ?? "queries")"
            action = .upstreamSaw(spec)
        case "log":
            let s = try a.fields("a log check")
            let pn = try s.optional("process")?.string() ?? "forwarder"
            guard ctx.processes.contains(pn) else { throw a.error("no process named '\(pn)'") }
            let spec = LogSpec(process: pn, contains: try s.required("contains").string(),
                               min: try s.optional("min")?.int() ?? 1, absent: try s.optional("absent")?.bool() ?? false,
                               within: try s.optional("within")?.duration() ?? 3,
                               since: try parseSince(s.optional("since")))
            try s.finish(allowed: ["process", "contains", "min", "absent", "within", "since"])
            label = "log \(spec.absent ? "lacks" : "has") '\(spec.contains)'"
            action = .log(spec)
        case "icmp-unreachable":
            let s = try a.fields("an ICMP check")
            let h = try host(try s.required("host"))
            let min = try s.optional("min")?.int() ?? 1
            let within = try s.optional("within")?.duration() ?? 3
            try s.finish(allowed: ["host", "min", "within"])
            label = "\(h) sent ICMP port unreachable"
            action = .icmpUnreachable(host: h, min: min, within: within)
        case "firewall-count":
            let s = try a.fields("a firewall counter check")
            let spec = FirewallCountSpec(host: try host(try s.required("host")), rule: try s.required("rule").string(),
                                         chain: try s.optional("chain")?.string(), min: try s.optional("min")?.int(),
                                         max: try s.optional("max")?.int(),
                                         within: try s.optional("within")?.duration() ?? 3,
                                         diagnose: try s.optional("diagnose")?.bool() ?? false)
            guard spec.min != nil || spec.max != nil else { throw a.error("firewall-count needs min: or max:") }
            try s.finish(allowed: ["host", "rule", "chain", "min", "max", "within", "diagnose"])
            label = "firewall rule '\(spec.rule)' on \(spec.host) counted"
            action = .firewallCount(spec)
        case "stats":
            let s = try a.fields("a statistics check")
            let pn = try s.optional("process")?.string() ?? "forwarder"
            guard ctx.processes.contains(pn) else { throw a.error("no process named '\(pn)'") }
            var growth: Int64?
            if let g = s.optional("rss-growth-max") {
                guard let b = parseBytes(try g.string()) else { throw g.error("expected a size such as 2MB or 512KB") }
                growth = b
            }
            var atLeast: [(String, Int)] = []
            if let m = s.optional("at-least") {
                for (k, v) in try m.pairs() { atLeast.append((k, try v.int())) }
            }
            var spec = StatsSpec(process: pn, within: try s.optional("within")?.duration() ?? 3,
                                 inflight: try s.optional("inflight")?.int(), rssGrowthMax: growth, atLeast: atLeast)
            if let g = s.optional("fd-growth-max") { spec.fdGrowthMax = try g.int() }
            try s.finish(allowed: ["process", "within", "inflight", "rss-growth-max", "at-least", "fd-growth-max"])
            label = "statistics of \(pn)"
            action = .stats(spec)
        case "stub-saw":
            let s = try a.fields("a stub check")
            let spec = StubSawSpec(stub: try s.required("stub").string(), server: try s.optional("server")?.string(),
                                   answer: try s.optional("answer")?.string(), since: try parseSince(s.optional("since")),
                                   min: try s.optional("min")?.int() ?? 1, all: try s.optional("all")?.bool() ?? true,
                                   within: try s.optional("within")?.duration() ?? 3)
            try s.finish(allowed: ["stub", "server", "answer", "since", "min", "all", "within"])
            label = "stub \(spec.stub) asked \(spec.server ?? "-") got \(spec.answer ?? "-")"
            action = .stubSaw(spec)
        case "spoof":
            let s = try a.fields("a spoofing attacker")
            let spec = SpoofSpec(from: try host(try s.required("from")), target: try s.required("target").string(),
                                 upstream: try s.required("upstream").string(), names: try s.required("names").strings(),
                                 poison: try s.required("poison").string(), count: try s.required("count").int(),
                                 rate: Double(try s.optional("rate")?.int() ?? 20000))
            guard isIP(spec.target), isIP(spec.upstream), IPv4Check.parse(spec.poison) != nil else {
                throw a.error("target and upstream are IP addresses, poison an IPv4 address")
            }
            guard spec.count > 0, spec.count <= 2_000_000, spec.rate > 0, spec.rate <= 200_000 else {
                throw a.error("a spoofing flood is bounded: count 1..2000000, rate 1..200000 per second")
            }
            try s.finish(allowed: ["from", "target", "upstream", "names", "poison", "count", "rate"])
            label = "\(spec.from) forges \(spec.count) replies from \(spec.upstream) to \(spec.target)"
            action = .spoof(spec)
        case "flood":
            let s = try a.fields("a malformed-packet flood")
            let spec = FloodSpec(from: try host(try s.required("from")), to: try s.required("to").string(),
                                 port: try s.optional("port")?.int() ?? 53, count: try s.required("count").int(),
                                 rate: Double(try s.optional("rate")?.int() ?? 1000))
            guard isIP(spec.to), spec.count > 0, spec.count <= 1_000_000, spec.rate > 0, spec.rate <= 100_000 else {
                throw a.error("a flood needs an IP address; it is bounded: count 1..1000000, rate 1..100000 per second")
            }
            try s.finish(allowed: ["from", "to", "port", "count", "rate"])
            label = "\(spec.from) floods \(spec.to) with \(spec.count) malformed packets"
            action = .flood(spec)
        case "slowloris":
            let s = try a.fields("idle TCP connections")
            let spec = SlowlorisSpec(from: try host(try s.required("from")), to: try s.required("to").string(),
                                     port: try s.optional("port")?.int() ?? 53,
                                     connections: try s.required("connections").int())
            guard isIP(spec.to), spec.connections > 0, spec.connections <= 5000 else {
                throw a.error("slowloris needs an IP address and 1..5000 connections")
            }
            try s.finish(allowed: ["from", "to", "port", "connections"])
            label = "\(spec.from) holds \(spec.connections) idle TCP connections to \(spec.to)"
            action = .slowloris(spec)
        default:
            throw a.error("unknown action")
        }
        var expect: Expectation?
        var subjectExpect: [String: Expectation] = [:]
        if let e = f.optional("expect") { expect = try parseExpectation(e) }
        for s in subjectNames {
            if let e = f.optional("expect-\(s)") { subjectExpect[s] = try parseExpectation(e) }
        }
        let expectable: Bool
        switch action {
        case .query, .load, .run: expectable = true
        default: expectable = false
        }
        if !expectable && (expect != nil || !subjectExpect.isEmpty) {
            throw n.error("only query, load and run steps take expect:")
        }
        if case .query = action, expect == nil {
            throw n.error("a query step needs expect: (what the client must get)")
        }
        try f.finish(allowed: ["at", "id", "background", "only", "expect"] + subjectNames.map { "expect-\($0)" } + actionKeys)
        return Step(index: index, line: n.line, label: label, at: at, id: id, action: action, expect: expect,
                    subjectExpect: subjectExpect, background: background, only: only)
    }

    static func parseSince(_ n: YNode?) throws -> SinceSpec {
        guard let n else { return .start }
        let s = try n.string()
        if let d = parseDuration(s) { return .time(d) }
        if s.hasPrefix("end of ") { return .stepEnd(String(s.dropFirst(7))) }
        return .step(s)
    }

    static let rcodes = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"]

    static func parseExpectation(_ n: YNode) throws -> Expectation {
        let f = try n.fields("an expectation")
        var e = Expectation(line: n.line)
        if let a = f.optional("answer") { e.answers = try a.strings() }
        if let r = f.optional("rcode") {
            let s = try r.string().uppercased()
            guard rcodes.contains(s) else { throw r.error("rcode is one of \(rcodes.joined(separator: ", "))") }
            e.rcode = s
        }
        if let rs = f.optional("rcodes") {
            let list = try rs.strings().map { $0.uppercased() }
            guard !list.isEmpty, list.allSatisfy({ rcodes.contains($0) }) else {
                throw rs.error("rcodes is a list of \(rcodes.joined(separator: ", "))")
            }
            e.rcodes = list
        }
        if let t = f.optional("timeout") { e.timeout = try t.bool() }
        if let er = f.optional("error") {
            let s = try er.string()
            guard ["connection-refused", "connection-reset", "timeout"].contains(s) else {
                throw er.error("error is connection-refused, connection-reset or timeout")
            }
            e.error = s
        }
        if let rs = f.optional("reply-source") {
            e.replySource = try rs.string()
            guard isIP(e.replySource!) else { throw rs.error("'\(e.replySource!)' is not an IP address") }
        }
        if let w = f.optional("within") { e.within = try w.duration() }
        if let w = f.optional("after") { e.after = try w.duration() }
        if let t = f.optional("truncated") { e.truncated = try t.bool() }
        if let m = f.optional("max-failed") { e.maxFailed = try m.int() }
        if let m = f.optional("min-failed") { e.minFailed = try m.int() }
        if let o = f.optional("output") { e.outputContains = try o.strings() }
        if let o = f.optional("output-lacks") { e.outputLacks = try o.strings() }
        if let x = f.optional("exit") { e.exitStatus = try x.int() }
        if let s = f.optional("symptom") { e.symptom = try s.string() }
        try f.finish(allowed: ["answer", "rcode", "timeout", "error", "reply-source", "within", "after", "truncated",
                               "max-failed", "min-failed", "output", "output-lacks", "exit", "symptom", "rcodes"])
        return e
    }

    static func references(of step: Step) -> [String] {
        var refs: [String] = []
        func since(_ s: SinceSpec) {
            switch s {
            case .step(let id), .stepEnd(let id): refs.append(id)
            default: break
            }
        }
        switch step.action {
        case .wait(let ids): refs += ids
        case .upstreamSaw(let s): since(s.since)
        case .log(let s): since(s.since)
        case .stubSaw(let s): refs.append(s.stub); since(s.since)
        default: break
        }
        return refs
    }

    // MARK: - small checks

    static func checkName(_ name: String, _ n: YNode, what: String, maxLength: Int) throws {
        let ok = !name.isEmpty && name.count <= maxLength && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
        guard ok else { throw n.error("\(what) name '\(name)' must be 1-\(maxLength) letters, digits, - or _") }
    }

    static func checkIfname(_ name: String, _ n: YNode) throws {
        guard !name.isEmpty, name.utf8.count <= 15, !name.contains("/"), !name.contains(" ") else {
            throw n.error("interface name '\(name)' must be 1-15 characters without / or spaces")
        }
    }
}

/// "2MB", "512KB", "1048576".
func parseBytes(_ s: String) -> Int64? {
    let t = s.trimmingCharacters(in: .whitespaces).uppercased()
    for (suffix, f) in [("KB", Int64(1024)), ("MB", Int64(1024 * 1024)), ("GB", Int64(1024 * 1024 * 1024)), ("B", Int64(1))] where t.hasSuffix(suffix) {
        return Int64(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)).map { $0 * f }
    }
    return Int64(t)
}

func isIP(_ s: String) -> Bool {
    if IPv4Check.parse(s) != nil { return true }
    var buf = in6_addr()
    return s.contains(":") && inet_pton(AF_INET6, s, &buf) == 1
}

func isCIDR(_ s: String) -> Bool {
    let parts = s.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, let len = Int(parts[1]), isIP(String(parts[0])) else { return false }
    return len >= 0 && len <= (parts[0].contains(":") ? 128 : 32)
}

enum IPv4Check {
    static func parse(_ s: String) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isNumber), let v = UInt8(p) else { return nil }
            out.append(v)
        }
        return out
    }
}
