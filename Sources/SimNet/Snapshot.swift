import Glibc

extension SimHost {
    /// A readable picture of the host for artifacts: links, addresses,
    /// routes, the nftables ruleset with counters and conntrack entries.
    /// Read-only (`ip` only reads here; topologies are built through libnl).
    /// Tools that are missing or fail leave a note instead.
    public func snapshot(timeout: Double = 5) -> String {
        let commands: [[String]] = [
            ["ip", "-br", "link"],
            ["ip", "-br", "addr"],
            ["ip", "route"],
            ["ip", "-6", "route"],
            ["nft", "-a", "list", "ruleset"],
            ["conntrack", "-L"],
        ]
        var out = "## host \(name)\n"
        for argv in commands {
            out += "### \(argv.joined(separator: " "))\n"
            do {
                let r = try runCommand(argv, timeout: timeout)
                out += r.stdout
                if r.status != 0 { out += "(status \(r.status)) \(r.stderr)" }
                else if argv[0] == "conntrack" {
                    // conntrack prints its summary line on stderr.
                    out += r.stderr
                }
            } catch {
                out += "(not available: \(error))\n"
            }
            if !out.hasSuffix("\n") { out += "\n" }
        }
        return out
    }
}

extension Network {
    /// `snapshot()` of every host, in creation order.
    public func snapshot() -> String {
        hostOrder.compactMap { hosts[$0]?.snapshot() }.joined(separator: "\n")
    }
}
