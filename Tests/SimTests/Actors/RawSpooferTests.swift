import DNSWire
import Glibc
import SimNet
import XCTest
@testable import Sim

/// The spoofing attacker, on loopback inside a namespace of our own (raw sockets
/// with a forged source address never touch the machine's network).
final class RawSpooferTests: XCTestCase {
    /// A UDP socket of the host bound to 127.0.0.1:port.
    private func listener(_ host: SimHost, port: UInt16) throws -> Int32 {
        let fd = try ActorSocket.open({ try host.socket(domain: $0, type: $1, protocol: $2) }, .v4, ActorSocket.udp)
        try ActorSocket.bind(fd, Endpoint(ip: "127.0.0.1", port: port), "listener")
        return fd
    }

    /// Reads datagrams from `fds` until `count` arrived in all or the deadline passed.
    private func receive(_ fds: [Int32], count: Int, timeout: Double = 10) -> [(fd: Int32, source: Endpoint, bytes: [UInt8])] {
        var got: [(fd: Int32, source: Endpoint, bytes: [UInt8])] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        let deadline = SimClock.monotonic() + timeout
        while got.count < count && SimClock.monotonic() < deadline {
            var pfds = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&pfds, nfds_t(pfds.count), 100) > 0 else { continue }
            for p in pfds where p.revents & Int16(POLLIN) != 0 {
                while true {
                    let (n, src) = ActorSocket.receive(p.fd, &buffer)
                    guard n >= 0, let src = src else { break }
                    got.append((p.fd, src, Array(buffer[0..<n])))
                }
            }
        }
        return got
    }

    private func namespaceHost(_ name: String) throws -> SimHost {
        try XCTSkipUnless(geteuid() == 0, "needs root for a network namespace and a raw socket")
        return try SimHost(name: name)
    }

    func testForgedRepliesArriveWithTheUpstreamsSourceAndAPoisonedAnswer() throws {
        let host = try namespaceHost("spoof-basic")
        defer { host.teardown() }
        let fd = try listener(host, port: 40053)
        defer { close(fd) }
        let names = ["www.example.com", "mail.example.com", "x.test"]
        let spoofer = try RawSpoofer(.init(target: "127.0.0.1", ports: .sweep(40053...40053),
                                        spoofedSource: Endpoint(ip: "192.0.2.53", port: 53),
                                        names: .list(names), poisonAddress: "203.0.113.66", ttl: 999_999,
                                        count: 60, seed: 42),
                                  socketFactory: { try host.socket(domain: $0, type: $1, protocol: $2) })
        try spoofer.start()
        XCTAssertTrue(spoofer.wait(timeout: 10), "the spoofer should stop by itself after 60 packets")
        XCTAssertEqual(spoofer.sent, 60, "first send error: \(spoofer.firstSendError ?? "none")")
        XCTAssertEqual(spoofer.sendErrors, 0)

        let got = receive([fd], count: 60)
        XCTAssertEqual(got.count, 60)
        var ids = Set<UInt16>()
        var seen = Set<String>()
        for g in got {
            XCTAssertEqual(g.source, try Endpoint(ip: "192.0.2.53", port: 53), "the forged source address and port")
            let m = try Message(decoding: g.bytes)
            XCTAssertTrue(m.header.isResponse)
            XCTAssertEqual(m.rcode, .noError)
            XCTAssertEqual(m.questions.count, 1)
            XCTAssertEqual(m.questions.first?.type, .a)
            XCTAssertEqual(m.answers.count, 1)
            XCTAssertEqual(m.answers.first?.rdata, .a(IPv4Address("203.0.113.66")!))
            XCTAssertEqual(m.answers.first?.ttl, 999_999)
            XCTAssertEqual(m.answers.first?.name, m.questions.first?.name)
            ids.insert(m.header.id)
            seen.insert(m.questions.first.map { "\($0.name)" } ?? "")
        }
        XCTAssertGreaterThan(ids.count, 50, "IDs should be random")
        XCTAssertEqual(seen.map { $0.hasSuffix(".") ? String($0.dropLast()) : $0 }.sorted(), names.sorted())
    }

    func testRandomPortsStayInTheRangeAndCoverIt() throws {
        let host = try namespaceHost("spoof-ports")
        defer { host.teardown() }
        let ports: [UInt16] = [41000, 41001, 41002, 41003]
        let fds = try ports.map { try listener(host, port: $0) }
        defer { fds.forEach { close($0) } }
        let spoofer = try RawSpoofer(.init(target: "127.0.0.1", ports: .random(41000...41003),
                                        spoofedSource: Endpoint(ip: "198.51.100.1", port: 53),
                                        names: .list(["a.example"]), poisonAddress: "203.0.113.1", count: 200),
                                  socketFactory: { try host.socket(domain: $0, type: $1, protocol: $2) })
        try spoofer.start()
        XCTAssertTrue(spoofer.wait(timeout: 10))
        // Nothing listens outside the range, so all 200 arriving means none went elsewhere.
        let got = receive(fds, count: 200)
        XCTAssertEqual(got.count, 200)
        for fd in fds {
            XCTAssertGreaterThan(got.filter { $0.fd == fd }.count, 0, "every port of the range is guessed")
        }
    }

    func testLiveNamesAreTheOnesAskedNowAndStopEndsAnUnboundedFlood() throws {
        let host = try namespaceHost("spoof-live")
        defer { host.teardown() }
        let fd = try listener(host, port: 40054)
        defer { close(fd) }
        let asked = ActorMutex()
        var current: [String] = []
        let spoofer = try RawSpoofer(.init(target: "127.0.0.1", ports: .sweep(40054...40054),
                                        spoofedSource: Endpoint(ip: "192.0.2.53", port: 53),
                                        names: .live(refresh: 0.01, { asked.locked { current } }),
                                        poisonAddress: "203.0.113.66", rate: 2000),
                                  socketFactory: { try host.socket(domain: $0, type: $1, protocol: $2) })
        try spoofer.start()
        asked.locked { current = ["fresh-1.example.org"] }
        let first = receive([fd], count: 5)
        XCTAssertGreaterThanOrEqual(first.count, 5)
        for g in first {
            XCTAssertEqual(try Message(decoding: g.bytes).questions.first?.name, try DNSName("fresh-1.example.org"))
        }
        asked.locked { current = ["fresh-2.example.org"] }
        // After the switch, forgeries for the new name arrive.
        let fresh2 = try DNSName("fresh-2.example.org")
        var sawNew = false
        let deadline = SimClock.monotonic() + 10
        while !sawNew && SimClock.monotonic() < deadline {
            for g in receive([fd], count: 1, timeout: 1) {
                if (try? Message(decoding: g.bytes))?.questions.first?.name == fresh2 { sawNew = true }
            }
        }
        XCTAssertTrue(sawNew)
        XCTAssertFalse(spoofer.isFinished, "no bound was given: it runs until stopped")
        spoofer.stop()
        XCTAssertTrue(spoofer.isFinished)
        let after = spoofer.sent
        XCTAssertEqual(spoofer.sent, after, "nothing is sent after stop()")
        XCTAssertGreaterThanOrEqual(after, 6)
    }

    func testRateAndDurationBoundTheFlood() throws {
        let host = try namespaceHost("spoof-rate")
        defer { host.teardown() }
        let spoofer = try RawSpoofer(.init(target: "127.0.0.1", spoofedSource: Endpoint(ip: "192.0.2.53", port: 53),
                                        names: .list(["a.example"]), poisonAddress: "203.0.113.1",
                                        rate: 100, duration: 0.2),
                                  socketFactory: { try host.socket(domain: $0, type: $1, protocol: $2) })
        try spoofer.start()
        XCTAssertTrue(spoofer.wait(timeout: 30), "the duration bound ends the flood")
        // One packet per 1/rate seconds from the start (at 0, 0.01, ...), none at or after 0.2 s.
        XCTAssertLessThanOrEqual(spoofer.sent, 20)
        XCTAssertGreaterThan(spoofer.sent, 0)
    }

    func testPacketChecksumsAreValid() throws {
        let payload = try XCTUnwrap(RawSpoofer.forgedReply("odd.example", type: .a, ttl: 60,
                                                        poison: IPv4Address("203.0.113.1")!))
        XCTAssertEqual(payload.count % 2, 1, "an odd-length datagram exercises the checksum's last byte")
        var packet: [UInt8] = []
        let n = RawSpoofer.buildPacket(&packet, source: [10, 9, 8, 7], sourcePort: 53, target: [10, 1, 2, 3],
                                    payload: payload, id: 0xBEEF, port: 33333, ipID: 7)
        XCTAssertEqual(n, 28 + payload.count)
        packet.withUnsafeBytes { p in
            XCTAssertEqual(RawSpoofer.checksum(UnsafeRawBufferPointer(rebasing: p[0..<20]), initial: 0), 0, "IPv4 header checksum")
            let pseudo: UInt32 = 0x0A09 + 0x0807 + 0x0A01 + 0x0203 + 17 + UInt32(8 + payload.count)
            XCTAssertEqual(RawSpoofer.checksum(UnsafeRawBufferPointer(rebasing: p[20..<n]), initial: pseudo), 0, "UDP checksum")
        }
        XCTAssertEqual(Array(packet[12..<20]), [10, 9, 8, 7, 10, 1, 2, 3])
        XCTAssertEqual(Array(packet[20..<24]), [0, 53, 0x82, 0x35])
        XCTAssertEqual(try Message(decoding: Array(packet[28..<n])).header.id, 0xBEEF)
    }

    func testBadConfigurationIsAClearError() {
        let src = try! Endpoint(ip: "192.0.2.53", port: 53)
        let noSocket: SocketFactory = { _, _, _ in XCTFail("no socket for a bad configuration"); return -1 }
        func message(_ c: RawSpoofer.Config) -> String {
            do { _ = try RawSpoofer(c, socketFactory: noSocket); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(message(.init(target: "nope", spoofedSource: src, names: .list(["a"]), poisonAddress: "1.2.3.4")).contains("target"))
        XCTAssertTrue(message(.init(target: "::1", spoofedSource: src, names: .list(["a"]), poisonAddress: "1.2.3.4")).contains("IPv4"))
        XCTAssertTrue(message(.init(target: "127.0.0.1", spoofedSource: try! Endpoint(ip: "::1", port: 53),
                                    names: .list(["a"]), poisonAddress: "1.2.3.4")).contains("spoofed source"))
        XCTAssertTrue(message(.init(target: "127.0.0.1", spoofedSource: src, names: .list([]), poisonAddress: "1.2.3.4")).contains("empty"))
        XCTAssertTrue(message(.init(target: "127.0.0.1", spoofedSource: src, names: .list(["a..b"]), poisonAddress: "1.2.3.4")).contains("a..b"))
        XCTAssertTrue(message(.init(target: "127.0.0.1", spoofedSource: src, names: .list(["a"]), poisonAddress: "x")).contains("poison"))
        XCTAssertTrue(message(.init(target: "127.0.0.1", spoofedSource: src, names: .list(["a"]), poisonAddress: "1.2.3.4",
                                    rate: 0)).contains("rate"))
    }
}
