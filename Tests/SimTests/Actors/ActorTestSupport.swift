import Glibc
import XCTest
@testable import Sim

/// Helpers for the actor tests: loopback only, ephemeral ports.
enum ActorTestSupport {
    static let zone: Zone = try! Zone([
        "hat.com": [.init("A", "192.168.122.203", ttl: 60), .init("MX", "10 mail.hat.com"), .init("TXT", "v=spf1 -all")],
        "mail.hat.com": [.init("A", "192.168.122.25")],
        "www.hat.com": [.init("CNAME", "hat.com")],
        "v6.hat.com": [.init("AAAA", "2001:db8::203")],
    ])

    /// A port that was free a moment ago (nothing listens on it now).
    static func unusedUDPPort(_ ip: String = "127.0.0.1") throws -> UInt16 {
        let ep = try Endpoint(ip: ip, port: 0)
        let fd = try ActorSocket.open(loopbackSocketFactory, ep.family, ActorSocket.udp)
        defer { close(fd) }
        try ActorSocket.bind(fd, ep, "probe")
        return ActorSocket.localEndpoint(fd)!.port
    }

    /// Open file descriptors of this process.
    static func openFDCount() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(dir) }
        var n = 0
        while readdir(dir) != nil { n += 1 }
        return n
    }

    static var hasIPv6Loopback: Bool {
        guard let fd = try? ActorSocket.open(loopbackSocketFactory, .v6, ActorSocket.udp) else { return false }
        defer { close(fd) }
        return (try? ActorSocket.bind(fd, Endpoint(ip: "::1", port: 0), "probe")) != nil
    }
}
