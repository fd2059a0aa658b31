import Glibc
import XCTest
@testable import SimNet

/// Skips unless root (namespaces, veth and nft need CAP_NET_ADMIN).
func requireRoot() throws {
    if geteuid() != 0 { throw XCTSkip("SimNet tests need root (namespaces, veth, nftables)") }
}

/// Skips unless root of the machine's own user namespace (pinning under
/// /run/netns and switching to another uid need it; `unshare -Ur` is not enough).
func requireRealRoot() throws {
    try requireRoot()
    let map = (try? FileIO.read("/proc/self/uid_map")) ?? ""
    let f = map.split(whereSeparator: { $0 == " " || $0 == "\n" })
    if f != ["0", "0", "4294967295"] {
        throw XCTSkip("needs root of the initial user namespace (uid_map is \(f))")
    }
}

enum UDP {
    /// A UDP socket inside `host`, bound to addr:port (port 0 = any).
    static func bound(_ host: SimHost, _ addr: String, port: UInt16 = 0) throws -> Int32 {
        let v6 = addr.contains(":")
        let fd = try host.socket(domain: v6 ? AF_INET6 : AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        var rc: Int32
        if v6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            inet_pton(AF_INET6, addr, &sa.sin6_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            inet_pton(AF_INET, addr, &sa.sin_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        if rc != 0 { let e = errno; close(fd); throw SimNetError.system("bind", addr, errno: e) }
        return fd
    }

    static func port(of fd: Int32) -> UInt16 {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getsockname(fd, $0, &len) } }
        return withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
            UInt16(bigEndian: $0.pointee.sin_port) } }
    }

    static func send(_ fd: Int32, _ text: String, to addr: String, port: UInt16) throws {
        let bytes = Array(text.utf8)
        let n: Int
        if addr.contains(":") {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            inet_pton(AF_INET6, addr, &sa.sin6_addr)
            n = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in6>.size)) } } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            inet_pton(AF_INET, addr, &sa.sin_addr)
            n = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) } } }
        }
        if n < 0 { throw SimNetError.system("sendto", addr, errno: errno) }
    }

    /// Waits up to `timeout` for a datagram; returns its text and source address.
    static func receive(_ fd: Int32, timeout: Double) -> (text: String, from: String)? {
        receiveWithPort(fd, timeout: timeout).map { ($0.text, $0.from) }
    }

    static func receiveWithPort(_ fd: Int32, timeout: Double) -> (text: String, from: String, port: UInt16)? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 2048)
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            buf.withUnsafeMutableBytes { recvfrom(fd, $0.baseAddress, $0.count, 0, sa, &len) } } }
        guard n >= 0 else { return nil }
        var host = [CChar](repeating: 0, count: 64)
        var port: UInt16 = 0
        let family = ss.ss_family
        withUnsafePointer(to: &ss) { ptr in
            if family == sa_family_t(AF_INET6) {
                ptr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { var a = $0.pointee.sin6_addr; port = UInt16(bigEndian: $0.pointee.sin6_port); _ = inet_ntop(AF_INET6, &a, &host, 64) }
            } else {
                ptr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { var a = $0.pointee.sin_addr; port = UInt16(bigEndian: $0.pointee.sin_port); _ = inet_ntop(AF_INET, &a, &host, 64) }
            }
        }
        return (String(decoding: buf[0..<n], as: UTF8.self), String(cString: host), port)
    }
}

/// Waits for `condition` up to `timeout` seconds, checking every few ms.
func eventually(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = MonotonicClock.now + timeout
    while MonotonicClock.now < deadline {
        if try condition() { return true }
        usleep(5_000)
    }
    return try condition()
}

/// Inode of a namespace fd, to ask whether it still exists.
func inode(ofFD fd: Int32) -> UInt {
    var st = stat()
    fstat(fd, &st)
    return UInt(st.st_ino)
}

/// Network namespace inodes any process of the machine holds (via /proc/*/ns/net and /proc/*/task/*/ns/net).
func liveNetnsInodes() -> Set<String> {
    var out = Set<String>()
    guard let d = opendir("/proc") else { return out }
    defer { closedir(d) }
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        guard Int(name) != nil else { continue }
        var buf = [CChar](repeating: 0, count: 128)
        let n = readlink("/proc/\(name)/ns/net", &buf, 127)
        if n > 0 { out.insert(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
    }
    return out
}
