import Foundation
import DNSWire
#if canImport(Glibc)
import Glibc
#endif

/// Small blocking socket helpers for loopback end-to-end tests.
enum Sock {
    static func addr(_ ip: String, _ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        inet_pton(AF_INET, ip, &a.sin_addr)
        return a
    }

    static func withSockaddr<T>(_ a: sockaddr_in, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var a = a
        return withUnsafePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    static func setTimeout(_ fd: Int32, ms: Int) {
        var tv = timeval(tv_sec: ms / 1000, tv_usec: __suseconds_t((ms % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// A free UDP+TCP port on `ip` (bound and released; good enough for tests).
    static func freePort(_ ip: String = "127.0.0.1") -> UInt16 {
        // Below the kernel's ephemeral range (32768-60999 here): between this check and the
        // forwarder's bind, no auto-bound socket can take the port. (A test's own client
        // socket once got the port the forwarder was about to bind, talked to itself, and
        // the "ready" forwarder had in fact failed to start.)
        for _ in 0..<200 {
            let port = UInt16.random(in: 20000..<32000)
            let u = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            defer { close(u) }
            let t = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(t) }
            if withSockaddr(addr(ip, port), { bind(u, $0, $1) }) == 0,
               withSockaddr(addr(ip, port), { bind(t, $0, $1) }) == 0 { return port }
        }
        return 0
    }

    /// One UDP exchange through a socket connected to ip:port (so only a reply from
    /// exactly that address and port is accepted).
    static func udpQuery(_ bytes: [UInt8], ip: String, port: UInt16, timeoutMs: Int = 5000, report: Bool = true) -> [UInt8]? {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        setTimeout(fd, ms: timeoutMs)
        guard withSockaddr(addr(ip, port), { connect(fd, $0, $1) }) == 0 else { return nil }
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == bytes.count else { return nil }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 && report {
            // Say why in the test log (a timeout, a refused port, an empty datagram).
            let e = errno
            fputs("udpQuery to \(ip)#\(port): recv returned \(n)\(n < 0 ? " (" + String(cString: strerror(e)) + ")" : "")\n", stderr)
        }
        return n > 0 ? Array(buf[0..<n]) : nil
    }

    static func udpSend(_ bytes: [UInt8], ip: String, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        _ = withSockaddr(addr(ip, port)) { a, l in bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, a, l) } }
    }

    static func tcpConnect(ip: String, port: UInt16, timeoutMs: Int = 5000) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        setTimeout(fd, ms: timeoutMs)
        guard withSockaddr(addr(ip, port), { connect(fd, $0, $1) }) == 0 else { close(fd); return nil }
        return fd
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var off = 0
        while off < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + off, count - off, 0) }
            if n <= 0 { return nil }
            off += n
        }
        return out
    }

    static func tcpExchange(_ fd: Int32, _ bytes: [UInt8]) -> [UInt8]? {
        guard writeAll(fd, [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xff)] + bytes) else { return nil }
        guard let len = readExactly(fd, 2) else { return nil }
        return readExactly(fd, Int(len[0]) << 8 | Int(len[1]))
    }

    static func tcpQuery(_ bytes: [UInt8], ip: String, port: UInt16) -> [UInt8]? {
        guard let fd = tcpConnect(ip: ip, port: port) else { return nil }
        defer { close(fd) }
        return tcpExchange(fd, bytes)
    }
}

/// A scripted upstream DNS server on loopback (UDP and TCP), answering from a
/// small table, on its own thread.
final class FakeUpstream: @unchecked Sendable {
    let ip: String
    let port: UInt16
    private var udp: Int32 = -1
    private var tcp: Int32 = -1
    private var thread: Thread?
    private let lock = NSLock()
    private var _udpQueries = 0
    private var _tcpQueries = 0
    private var stopped = false
    var udpQueries: Int { lock.lock(); defer { lock.unlock() }; return _udpQueries }
    var tcpQueries: Int { lock.lock(); defer { lock.unlock() }; return _tcpQueries }
    private var _names: [String] = []
    /// Question names as they arrived (letter case kept), UDP and TCP.
    var names: [String] { lock.lock(); defer { lock.unlock() }; return _names }

    private func record(_ query: [UInt8]) {
        guard let n = (try? Message(decoding: query))?.questions.first?.name.description else { return }
        lock.lock(); _names.append(n); lock.unlock()
    }

    init?(ip: String = "127.0.0.1") {
        self.ip = ip
        port = Sock.freePort(ip)
        udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        guard Sock.withSockaddr(Sock.addr(ip, port), { bind(udp, $0, $1) }) == 0,
              Sock.withSockaddr(Sock.addr(ip, port), { bind(tcp, $0, $1) }) == 0,
              listen(tcp, 16) == 0 else { close(udp); close(tcp); return nil }
        Sock.setTimeout(udp, ms: 100)
        let t = Thread { [unowned self] in self.loop() }
        thread = t
        t.start()
    }

    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        shutdown(tcp, Int32(SHUT_RDWR))
        // Let the thread notice, then close.
        let deadline = Date().addingTimeInterval(2)
        while !(thread?.isFinished ?? true) && Date() < deadline { usleep(10_000) }
        close(udp); close(tcp)
    }

    static func answer(_ query: [UInt8]) -> [UInt8]? {
        guard let q = try? Message(decoding: query), let question = q.questions.first else { return nil }
        var r = Message.reply(to: q, rcode: .noError)
        r.header.authoritative = true
        let name = question.name.lowercased().description
        switch (name, question.type) {
        case ("www.example.test", .a):
            r.answers = [ResourceRecord(name: question.name, ttl: 300, rdata: .a(IPv4Address("192.0.2.10")!))]
        case ("www.example.test", .aaaa):
            r.answers = [ResourceRecord(name: question.name, ttl: 300, rdata: .aaaa(IPv6Address("2001:db8::10")!))]
        case ("big.example.test", .txt):
            r.answers = (0..<8).map { i in
                ResourceRecord(name: question.name, ttl: 300, rdata: .txt([[UInt8](repeating: UInt8(97 + i), count: 200)]))
            }
        case (let n, _) where n.hasPrefix("nx"):
            r.rcode = .nxDomain
            r.authorities = [ResourceRecord(name: try! DNSName("example.test"), ttl: 600,
                                            rdata: .soa(SOA(mname: try! DNSName("ns.example.test"), rname: try! DNSName("h.example.test"),
                                                            serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 60)))]
        default:
            r.answers = [ResourceRecord(name: question.name, ttl: 60, rdata: .a(IPv4Address("192.0.2.99")!))]
        }
        return r.encode()
    }

    private func isStopped() -> Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    private func loop() {
        var fds = [pollfd(fd: udp, events: Int16(POLLIN), revents: 0), pollfd(fd: tcp, events: Int16(POLLIN), revents: 0)]
        var buf = [UInt8](repeating: 0, count: 65536)
        while !isStopped() {
            let n = poll(&fds, 2, 100)
            if n <= 0 { continue }
            if fds[0].revents != 0 {
                var from = sockaddr_in(); var fl = socklen_t(MemoryLayout<sockaddr_in>.size)
                let got = buf.withUnsafeMutableBytes { b in
                    withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(udp, b.baseAddress, b.count, 0, $0, &fl) } }
                }
                if got > 0 {
                    lock.lock(); _udpQueries += 1; lock.unlock()
                    record(Array(buf[0..<got]))
                    if let r = FakeUpstream.answer(Array(buf[0..<got])) {
                        _ = Sock.withSockaddr(from) { a, l in r.withUnsafeBytes { sendto(udp, $0.baseAddress, $0.count, 0, a, l) } }
                    }
                }
            }
            if fds[1].revents != 0 {
                let c = accept(tcp, nil, nil)
                if c < 0 { continue }
                Sock.setTimeout(c, ms: 1000)
                while let len = Sock.readExactly(c, 2), let msg = Sock.readExactly(c, Int(len[0]) << 8 | Int(len[1])) {
                    lock.lock(); _tcpQueries += 1; lock.unlock()
                    record(msg)
                    guard let r = FakeUpstream.answer(msg) else { break }
                    _ = Sock.writeAll(c, [UInt8(r.count >> 8), UInt8(r.count & 0xff)] + r)
                }
                close(c)
            }
        }
    }
}

/// The built `forwarder` binary, run as a child process with its stderr captured.
final class ForwarderProcess {
    let process = Process()
    let logURL: URL
    let port: UInt16
    private var stoppedByUs = false
    /// Set by tests where the forwarder is meant to exit by itself (a bad option).
    var expectExit = false

    static func binary() -> URL? {
        var candidates: [URL] = []
        let bundle = Bundle(for: ForwarderProcess.self).bundleURL
        candidates.append(bundle.deletingLastPathComponent().appendingPathComponent("forwarder"))
        candidates.append(URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent().appendingPathComponent("forwarder"))
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    init(arguments: [String], port: UInt16) throws {
        guard let bin = ForwarderProcess.binary() else { throw NSError(domain: "forwarder binary not found next to the test bundle", code: 1) }
        self.port = port
        logURL = FileManager.default.temporaryDirectory.appendingPathComponent("forwarder-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        process.executableURL = bin
        process.arguments = arguments
        process.standardError = try FileHandle(forWritingTo: logURL)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Polls a query until it is answered, up to `deadline` seconds.
    func waitReady(ip: String = "127.0.0.1", deadline: TimeInterval = 15) -> Bool {
        let end = Date().addingTimeInterval(deadline)
        let q = Message.query(id: 1, name: try! DNSName("ready.example.test"), type: .a).encode()
        while Date() < end && process.isRunning {
            // A response (QR set) with the probe's ID, not an echo of the query.
            if let r = Sock.udpQuery(q, ip: ip, port: port, timeoutMs: 200, report: false), r.count >= 12, r[0] == 0, r[1] == 1, r[2] & 0x80 != 0 {
                return true
            }
        }
        return false
    }

    /// Waits (with a deadline) until the log contains `text`.
    func waitForLog(_ text: String, deadline: TimeInterval = 10) -> Bool {
        let end = Date().addingTimeInterval(deadline)
        while Date() < end {
            if log.contains(text) { return true }
            usleep(20_000)
        }
        return false
    }

    func signal(_ s: Int32) { kill(process.processIdentifier, s) }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        defer { stoppedByUs = true }
        if !process.isRunning && !stoppedByUs && !expectExit {
            // It ended by itself before the test stopped it: say how, with its log.
            fputs("forwarder ended by itself (status \(process.terminationStatus), reason \(process.terminationReason.rawValue)); log:\n\(log)\n", stderr)
        }
        if process.isRunning {
            signal(SIGTERM)
            let end = Date().addingTimeInterval(10)
            while process.isRunning && Date() < end { usleep(10_000) }
            if process.isRunning { signal(SIGKILL); process.waitUntilExit() }
        }
        try? FileManager.default.removeItem(at: logURL)
        return process.terminationStatus
    }
}
