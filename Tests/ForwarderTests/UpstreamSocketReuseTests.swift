import XCTest
import Foundation
import DNSWire
#if canImport(Glibc)
import Glibc
#endif

/// The forwarder reuses a connected upstream UDP socket for a later query (issue 8:
/// fewer system calls per miss), and a late reply to the socket's earlier query,
/// arriving on the reused socket, is dropped quietly instead of being taken as a
/// broken server's answer. The upstream here is a socket driven by the test itself.
final class UpstreamSocketReuseTests: XCTestCase {
    var fwd: ForwarderProcess?
    var up: Int32 = -1

    override func tearDown() {
        fwd?.stop()
        fwd = nil
        if up >= 0 { close(up); up = -1 }
    }

    /// Receives one datagram on the manual upstream: bytes and the sender's port.
    func receive() -> ([UInt8], UInt16)? {
        var buf = [UInt8](repeating: 0, count: 4096)
        var from = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = buf.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(up, b.baseAddress, b.count, 0, $0, &len) } }
        }
        return n > 0 ? (Array(buf[0..<n]), UInt16(bigEndian: from.sin_port)) : nil
    }

    func send(_ bytes: [UInt8], toPort port: UInt16) {
        _ = Sock.withSockaddr(Sock.addr("127.0.0.1", port)) { a, l in bytes.withUnsafeBytes { sendto(up, $0.baseAddress, $0.count, 0, a, l) } }
    }

    func answer(_ query: [UInt8], _ ip: String) throws -> [UInt8] {
        let q = try Message(decoding: query)
        var r = Message.reply(to: q, rcode: .noError)
        r.answers = [ResourceRecord(name: q.questions[0].name, ttl: 60, rdata: .a(IPv4Address(ip)!))]
        return r.encode()
    }

    /// Asks the forwarder on a thread; `wait()` returns the reply.
    final class Ask: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var reply: [UInt8]?
        init(_ name: String, port: UInt16) {
            let q = Message.query(id: 0x7777, name: try! DNSName(name), type: .a).encode()
            Thread { [self] in
                reply = Sock.udpQuery(q, ip: "127.0.0.1", port: port, timeoutMs: 8000)
                done.signal()
            }.start()
        }
        func wait() -> [UInt8]? {
            _ = done.wait(timeout: .now() + 10)
            return reply
        }
    }

    func testReusedSocketDropsLateReplyToItsEarlierQuery() throws {
        let upPort = Sock.freePort()
        up = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertEqual(Sock.withSockaddr(Sock.addr("127.0.0.1", upPort)) { bind(up, $0, $1) }, 0)
        Sock.setTimeout(up, ms: 8000)
        let port = Sock.freePort()
        let f = try ForwarderProcess(arguments: ["--no-resolv", "--no-hosts", "--query-port-reuse=64", "--server=127.0.0.1#\(upPort)", "--port=\(port)",
                                                 "--listen-address=127.0.0.1", "--log-queries", "--cache-size=0"], port: port)
        fwd = f
        XCTAssertTrue(f.waitForLog("started"), f.log)

        // First query: answered normally.
        let a1 = Ask("one.example.test", port: port)
        let (q1, port1) = try XCTUnwrap(receive(), "no query upstream: \(f.log)")
        send(try answer(q1, "192.0.2.1"), toPort: port1)
        let r1 = try Message(decoding: try XCTUnwrap(a1.wait()))
        XCTAssertEqual(r1.answers.first?.rdata, .a(IPv4Address("192.0.2.1")!))

        // Second query: from the same socket (same source port).
        let a2 = Ask("two.example.test", port: port)
        let (q2, port2) = try XCTUnwrap(receive(), "no second query upstream: \(f.log)")
        XCTAssertEqual(port2, port1, "the idle upstream socket is reused")
        // A late copy of the first reply arrives first: dropped, no failover, no SERVFAIL.
        send(try answer(q1, "192.0.2.66"), toPort: port2)
        send(try answer(q2, "192.0.2.2"), toPort: port2)
        let r2 = try Message(decoding: try XCTUnwrap(a2.wait()))
        XCTAssertEqual(r2.rcode, .noError)
        XCTAssertEqual(r2.answers.first?.rdata, .a(IPv4Address("192.0.2.2")!))
        XCTAssertTrue(f.waitForLog("reply two.example.test is 192.0.2.2"), f.log)
        XCTAssertFalse(f.log.contains("mismatched ID"), "the late reply reached the core as a mismatched one: \(f.log)")
        XCTAssertFalse(f.log.contains("192.0.2.66"), f.log)
    }
}
