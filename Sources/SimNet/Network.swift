import Glibc

/// A set of hosts and the links between them; tears all of it down at once.
public final class Network {
    public private(set) var hosts: [String: SimHost] = [:]
    /// Order of creation, for deterministic teardown and listing.
    public private(set) var hostOrder: [String] = []

    public init() {}

    deinit { teardown() }

    /// Creates a host (a new anonymous network namespace with `lo` up).
    @discardableResult
    public func addHost(_ name: String) throws -> SimHost {
        if hosts[name] != nil { throw SimNetError.invalidArgument("host `\(name)` exists already") }
        let h = try SimHost(name: name)
        hosts[name] = h
        hostOrder.append(name)
        return h
    }

    public subscript(name: String) -> SimHost? { hosts[name] }

    /// Connects two hosts with a veth pair (`ifA` in a, `ifB` in b) and
    /// brings both ends up. Both ends live in the hosts' namespaces.
    public func connect(_ a: SimHost, _ ifA: String, _ b: SimHost, _ ifB: String, up: Bool = true) throws {
        try Network.validateIfName(ifA)
        try Network.validateIfName(ifB)
        if a === b { throw SimNetError.invalidArgument("connect: \(a.name) to itself; use two hosts") }
        try a.routes.addVeth(ifA, peerName: ifB, peerFD: try b.liveFD(), peerHost: b.name)
        if up {
            try a.setLink(ifA, up: true)
            try b.setLink(ifB, up: true)
        }
    }

    static func validateIfName(_ s: String) throws {
        let ok = !s.isEmpty && s.utf8.count < 16 && s != "." && s != ".."
            && !s.utf8.contains(where: { $0 == 0x2f || $0 == 0x20 || $0 == 0x3a || $0 < 0x20 })
        if !ok { throw SimNetError.invalidArgument("interface name `\(s)`: 1-15 chars, no '/', ':' or spaces") }
    }

    /// Pins every host as "<prefix><host>" under /run/netns.
    public func pinAll(prefix: String) throws {
        for name in hostOrder { try hosts[name]!.pin(as: prefix + name) }
    }

    /// Kills every process (SIGTERM, then SIGKILL after `grace`), reaps
    /// them, unpins (unless `keepPinned`) and closes every namespace.
    public func teardown(grace: Double = 1.0, keepPinned: Bool = false) {
        let all = hostOrder.compactMap { hosts[$0] }
        SimHost.terminateAll(all.flatMap { $0.processes }, grace: grace)
        for h in all.reversed() { h.teardown(grace: grace, unpin: !keepPinned) }
        hosts = [:]
        hostOrder = []
    }
}
