import CNetlink
import Glibc

/// A NETLINK_ROUTE socket opened inside one host's namespace. A netlink
/// socket stays bound to the namespace it was created in, so after creation
/// it can be used from any thread. Calls are serialised by a lock.
final class RouteSocket {
    /// nil once closed: an open socket holds a reference to its namespace.
    private var sock: OpaquePointer?
    private let host: String
    private var lock = pthread_mutex_t()

    /// Must be called on a thread inside the host's namespace.
    init(host: String) throws {
        guard let sk = nl_socket_alloc() else {
            throw SimNetError.system("nl_socket_alloc", "for host \(host)", errno: ENOMEM)
        }
        let rc = nl_connect(sk, NETLINK_ROUTE)
        if rc < 0 {
            nl_socket_free(sk)
            throw RouteSocket.error("connect", "for host \(host)", rc)
        }
        self.sock = sk
        self.host = host
        pthread_mutex_init(&lock, nil)
    }

    deinit {
        close()
        pthread_mutex_destroy(&lock)
    }

    /// Closes the socket (which releases its hold on the namespace). Idempotent.
    func close() {
        pthread_mutex_lock(&lock)
        if let sk = sock {
            nl_close(sk)
            nl_socket_free(sk)
            sock = nil
        }
        pthread_mutex_unlock(&lock)
    }

    /// The open socket; only valid inside `locked`.
    private var sk: OpaquePointer {
        get throws {
            guard let s = sock else { throw SimNetError.hostGone(host) }
            return s
        }
    }

    static func error(_ op: String, _ subject: String, _ rc: Int32) -> SimNetError {
        .netlink(op, subject, code: -rc, message: String(cString: nl_geterror(rc)))
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return try body()
    }

    private func check(_ rc: Int32, _ op: String, _ subject: String) throws {
        if rc < 0 { throw RouteSocket.error(op, "\(subject) on host \(host)", rc) }
    }

    /// Returns the kernel's link object (caller must rtnl_link_put it).
    private func getLink(_ name: String) throws -> OpaquePointer {
        var link: OpaquePointer?
        let rc = rtnl_link_get_kernel(try sk, 0, name, &link)
        if rc < 0 || link == nil {
            throw SimNetError.netlink("find link", "\(name) on host \(host)", code: -rc,
                                      message: rc < 0 ? String(cString: nl_geterror(rc)) : "no such device")
        }
        return link!
    }

    func ifindex(_ name: String) throws -> Int32 {
        try locked {
            let link = try getLink(name)
            defer { rtnl_link_put(link) }
            return rtnl_link_get_ifindex(link)
        }
    }

    func linkExists(_ name: String) -> Bool {
        (try? ifindex(name)) != nil
    }

    /// Creates a veth pair: `name` here, `peerName` in the namespace `peerFD`.
    func addVeth(_ name: String, peerName: String, peerFD: Int32, peerHost: String) throws {
        try locked {
            guard let link = rtnl_link_veth_alloc() else {
                throw SimNetError.system("rtnl_link_veth_alloc", name, errno: ENOMEM)
            }
            defer { rtnl_link_put(link) }
            rtnl_link_set_name(link, name)
            guard let peer = rtnl_link_veth_get_peer(link) else {
                throw SimNetError.system("rtnl_link_veth_get_peer", name, errno: ENOMEM)
            }
            defer { rtnl_link_put(peer) }
            rtnl_link_set_name(peer, peerName)
            rtnl_link_set_ns_fd(peer, peerFD)
            try check(rtnl_link_add(try sk, link, NLM_F_CREATE | NLM_F_EXCL), "add veth",
                      "\(name) <-> \(peerHost):\(peerName)")
        }
    }

    func addBridge(_ name: String) throws {
        try locked {
            guard let link = rtnl_link_bridge_alloc() else {
                throw SimNetError.system("rtnl_link_bridge_alloc", name, errno: ENOMEM)
            }
            defer { rtnl_link_put(link) }
            rtnl_link_set_name(link, name)
            try check(rtnl_link_add(try sk, link, NLM_F_CREATE | NLM_F_EXCL), "add bridge", name)
        }
    }

    func enslave(_ port: String, to master: String) throws {
        let m = try ifindex(master)
        let p = try ifindex(port)
        try locked {
            try check(rtnl_link_enslave_ifindex(try sk, m, p), "enslave", "\(port) to \(master)")
        }
    }

    func setLink(_ name: String, up: Bool) throws {
        try locked {
            let orig = try getLink(name)
            defer { rtnl_link_put(orig) }
            guard let change = rtnl_link_alloc() else {
                throw SimNetError.system("rtnl_link_alloc", name, errno: ENOMEM)
            }
            defer { rtnl_link_put(change) }
            if up { rtnl_link_set_flags(change, 1 /* IFF_UP */) } else { rtnl_link_unset_flags(change, 1) }
            try check(rtnl_link_change(try sk, orig, change, 0), up ? "set up" : "set down", name)
        }
    }

    func isUp(_ name: String) throws -> Bool {
        try locked {
            let link = try getLink(name)
            defer { rtnl_link_put(link) }
            return rtnl_link_get_flags(link) & 1 != 0
        }
    }

    func setMTU(_ name: String, _ mtu: UInt32) throws {
        try locked {
            let orig = try getLink(name)
            defer { rtnl_link_put(orig) }
            guard let change = rtnl_link_alloc() else {
                throw SimNetError.system("rtnl_link_alloc", name, errno: ENOMEM)
            }
            defer { rtnl_link_put(change) }
            rtnl_link_set_mtu(change, mtu)
            try check(rtnl_link_change(try sk, orig, change, 0), "set mtu", name)
        }
    }

    func addAddress(_ cidr: String, dev: String, remove: Bool = false) throws {
        let parsed = try IPPrefix(cidr)
        let idx = try ifindex(dev)
        try locked {
            guard let addr = rtnl_addr_alloc() else {
                throw SimNetError.system("rtnl_addr_alloc", cidr, errno: ENOMEM)
            }
            defer { rtnl_addr_put(addr) }
            let local = try parsed.nlAddr()
            defer { nl_addr_put(local) }
            rtnl_addr_set_ifindex(addr, idx)
            try check(rtnl_addr_set_local(addr, local), "set local", cidr)
            rtnl_addr_set_prefixlen(addr, Int32(parsed.prefixLength))
            if parsed.isIPv6 { rtnl_addr_set_flags(addr, UInt32(IFA_F_NODAD)) }
            if remove {
                try check(rtnl_addr_delete(try sk, addr, 0), "delete address", "\(cidr) on \(dev)")
            } else {
                try check(rtnl_addr_add(try sk, addr, 0), "add address", "\(cidr) on \(dev)")
            }
        }
    }

    func addRoute(_ dest: String, via: String?, dev: String?, metric: UInt32?, remove: Bool = false) throws {
        let gateway = try via.map { try IPPrefix($0, hostOnly: true) }
        let destination: IPPrefix
        if dest == "default" {
            let v6 = gateway?.isIPv6 ?? false
            destination = try IPPrefix(v6 ? "::/0" : "0.0.0.0/0")
        } else {
            destination = try IPPrefix(dest)
        }
        if let gw = gateway, gw.isIPv6 != destination.isIPv6 {
            throw SimNetError.invalidArgument("route \(dest) via \(via!): address families differ")
        }
        if gateway == nil && dev == nil {
            throw SimNetError.invalidArgument("route \(dest): needs `via` or `dev`")
        }
        let idx = try dev.map { try ifindex($0) }
        let what = "\(dest)" + (via.map { " via \($0)" } ?? "") + (dev.map { " dev \($0)" } ?? "")
        try locked {
            guard let route = rtnl_route_alloc() else {
                throw SimNetError.system("rtnl_route_alloc", dest, errno: ENOMEM)
            }
            defer { rtnl_route_put(route) }
            rtnl_route_set_family(route, UInt8(destination.isIPv6 ? AF_INET6 : AF_INET))
            let dst = try destination.nlAddr()
            defer { nl_addr_put(dst) }
            try check(rtnl_route_set_dst(route, dst), "set route destination", what)
            rtnl_route_set_table(route, UInt32(RT_TABLE_MAIN.rawValue))
            rtnl_route_set_protocol(route, UInt8(RTPROT_STATIC))
            rtnl_route_set_type(route, UInt8(RTN_UNICAST))
            rtnl_route_set_scope(route, UInt8(gateway == nil ? RT_SCOPE_LINK.rawValue : RT_SCOPE_UNIVERSE.rawValue))
            if let metric { rtnl_route_set_priority(route, metric) }
            guard let nh = rtnl_route_nh_alloc() else {
                throw SimNetError.system("rtnl_route_nh_alloc", dest, errno: ENOMEM)
            }
            if let idx { rtnl_route_nh_set_ifindex(nh, idx) }
            if let gateway {
                let gw = try gateway.nlAddr()
                defer { nl_addr_put(gw) }
                rtnl_route_nh_set_gateway(nh, gw)
            }
            rtnl_route_add_nexthop(route, nh) // the route owns nh now
            if remove {
                try check(rtnl_route_delete(try sk, route, 0), "delete route", what)
            } else {
                try check(rtnl_route_add(try sk, route, NLM_F_CREATE | NLM_F_EXCL), "add route", what)
            }
        }
    }
}

/// An IPv4 or IPv6 address with a prefix length, parsed with inet_pton.
public struct IPPrefix: Equatable, CustomStringConvertible {
    public let address: String
    public let prefixLength: Int
    public let isIPv6: Bool

    /// "10.0.0.1/24", "fd00::1/64"; without "/N" the full length is used.
    /// `hostOnly`: the text must be a bare address.
    public init(_ text: String, hostOnly: Bool = false) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || (parts.count == 2 && !hostOnly) else {
            throw SimNetError.invalidArgument("`\(text)` is not an IP address\(hostOnly ? "" : " or CIDR prefix")")
        }
        let addr = String(parts[0])
        var buf = [UInt8](repeating: 0, count: 16)
        let v6: Bool
        if inet_pton(AF_INET, addr, &buf) == 1 { v6 = false }
        else if inet_pton(AF_INET6, addr, &buf) == 1 { v6 = true }
        else { throw SimNetError.invalidArgument("`\(text)`: `\(addr)` is not an IPv4 or IPv6 address") }
        let maxLen = v6 ? 128 : 32
        var len = maxLen
        if parts.count == 2 {
            guard let n = Int(parts[1]), n >= 0, n <= maxLen else {
                throw SimNetError.invalidArgument("`\(text)`: prefix length must be 0...\(maxLen)")
            }
            len = n
        }
        address = addr
        prefixLength = len
        isIPv6 = v6
    }

    public var description: String { "\(address)/\(prefixLength)" }

    func nlAddr() throws -> OpaquePointer {
        var out: OpaquePointer?
        let rc = nl_addr_parse(description, isIPv6 ? AF_INET6 : AF_INET, &out)
        if rc < 0 || out == nil { throw RouteSocket.error("parse address", description, rc) }
        return out!
    }
}
