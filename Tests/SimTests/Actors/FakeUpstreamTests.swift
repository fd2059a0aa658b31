import DNSWire
import Glibc
import XCTest
@testable import Sim

/// Every behaviour of the fake upstream against the query client, on loopback.
final class FakeUpstreamTests: XCTestCase {
    private var upstream: FakeUpstream!

    override func setUpWithError() throws {
        upstream = try FakeUpstream(name: "A", address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
    }

    override func tearDown() {
        upstream?.stop()
        upstream = nil
    }

    private func ask(_ name: String = "hat.com", _ type: String = "A", _ transport: QueryClient.Transport = .udpConnected,
                     timeout: Double = 2, follow: Bool = false, to server: Endpoint? = nil) -> QueryResult {
        QueryClient(transport: transport, timeout: timeout, followTruncation: follow)
            .query(name, type: type, server: server ?? upstream.endpoint)
    }

    func testAnswersOnAllThreeTransports() {
        XCTAssertNotEqual(upstream.endpoint.port, 0)
        for transport in [QueryClient.Transport.udpConnected, .udpUnconnected, .tcp] {
            let r = ask("hat.com", "A", transport)
            XCTAssertNil(r.error, "\(transport): \(r)")
            XCTAssertEqual(r.rcode, .noError)
            XCTAssertEqual(r.answers, ["192.168.122.203"], "\(transport)")
            XCTAssertEqual(r.replySource, upstream.endpoint, "\(transport)")
            XCTAssertFalse(r.truncated)
            XCTAssertEqual(r.attempts, 1)
        }
        XCTAssertEqual(ask("www.hat.com", "A").answers, ["hat.com", "192.168.122.203"])
        XCTAssertEqual(ask("hat.com", "MX", .tcp).answers, ["10 mail.hat.com"])
        let nx = ask("missing.hat.com")
        XCTAssertEqual(nx.rcode, .nxDomain)
        XCTAssertEqual(nx.reply?.authorities.first?.type, .soa)
    }

    func testQueryLogRecordsEveryQuery() throws {
        let before = SimClock.now()
        let r1 = ask("hat.com", "A", .udpUnconnected)
        let r2 = ask("Mail.Hat.Com", "AAAA", .tcp)
        XCTAssertNil(r1.error)
        XCTAssertNil(r2.error)
        XCTAssertTrue(upstream.queries.wait(forCount: 2, timeout: 5))
        let log = upstream.queries.snapshot()
        XCTAssertEqual(log.map { $0.name }, ["hat.com", "Mail.Hat.Com"])
        XCTAssertEqual(log.map { $0.type }, ["A", "AAAA"])
        XCTAssertEqual(log.map { $0.transport }, [.udp, .tcp])
        XCTAssertEqual(log[0].id, r1.reply?.header.id)
        XCTAssertEqual(log[1].id, r2.reply?.header.id)
        XCTAssertEqual(log[0].source.ip, "127.0.0.1")
        XCTAssertNotEqual(log[0].source.port, upstream.endpoint.port)
        XCTAssertEqual(log.map { $0.upstream }, ["A", "A"])
        XCTAssertTrue(log.allSatisfy { $0.behaviour == .answer && $0.time >= before })
        XCTAssertLessThanOrEqual(log[0].time, log[1].time)
        XCTAssertTrue(log[1].outcome.contains("NOERROR"), log[1].outcome)
        XCTAssertEqual(upstream.queries(for: "mail.hat.com").count, 1)
    }

    func testDelayAnswersLaterWithoutHoldingUpOthers() throws {
        upstream.setBehaviour(.delay(ms: 300))
        // A slow query in flight on another thread...
        let slow = EventLog<QueryResult>()
        let t = try ActorThread(name: "slow") { slow.append(self.ask("hat.com", "A")) }
        XCTAssertTrue(upstream.queries.wait(forCount: 1, timeout: 5))
        // ...and a second one switched to answer at once: it must not wait behind the first.
        upstream.setBehaviour(.answer)
        let fast = ask("mail.hat.com", "A")
        XCTAssertEqual(fast.answers, ["192.168.122.25"])
        XCTAssertTrue(slow.wait(forCount: 1, timeout: 5))
        t.join()
        let r = slow.snapshot()[0]
        XCTAssertEqual(r.answers, ["192.168.122.203"])
        XCTAssertGreaterThanOrEqual(r.latency, 0.3)
        XCTAssertEqual(slow.snapshot()[0].rcode, .noError)
        XCTAssertEqual(upstream.queries.snapshot().first?.behaviour, .delay(ms: 300))
    }

    func testSilentTimesOutOnUDPAndTCP() {
        upstream.setBehaviour(.silent)
        for transport in [QueryClient.Transport.udpConnected, .tcp] {
            let r = ask("hat.com", "A", transport, timeout: 0.3)
            XCTAssertEqual(r.error, .timeout, "\(transport)")
            XCTAssertNil(r.rcode)
        }
        XCTAssertTrue(upstream.queries.wait(forCount: 2, timeout: 5))
        XCTAssertEqual(upstream.queries.snapshot().map { $0.outcome }, ["silent", "silent"])
    }

    func testAttemptsResend() {
        upstream.setBehaviour(.silent)
        let r = QueryClient(timeout: 0.2, attempts: 3).query("hat.com", server: upstream.endpoint)
        XCTAssertEqual(r.error, .timeout)
        XCTAssertEqual(r.attempts, 3)
        XCTAssertTrue(upstream.queries.wait(forCount: 3, timeout: 5))
    }

    func testErrorRCodes() {
        let cases: [(UpstreamBehaviour, RCode)] = [(.refused, .refused), (.servfail, .servFail), (.nxdomain, .nxDomain)]
        for (behaviour, rcode) in cases {
            upstream.setBehaviour(behaviour)
            for transport in [QueryClient.Transport.udpUnconnected, .tcp] {
                let r = ask("hat.com", "A", transport)
                XCTAssertNil(r.error, "\(behaviour) \(transport)")
                XCTAssertEqual(r.rcode, rcode, "\(behaviour) \(transport)")
                XCTAssertTrue(r.answers.isEmpty)
            }
        }
    }

    func testTruncateWithTCPAnswering() {
        upstream.setBehaviour(.truncate(tcp: .answer))
        let udp = ask("hat.com", "A")
        XCTAssertNil(udp.error)
        XCTAssertTrue(udp.truncated)
        XCTAssertTrue(udp.answers.isEmpty)
        let tcp = ask("hat.com", "A", .tcp)
        XCTAssertFalse(tcp.truncated)
        XCTAssertEqual(tcp.answers, ["192.168.122.203"])
        let followed = ask("hat.com", "A", .udpConnected, follow: true)
        XCTAssertNil(followed.error)
        XCTAssertTrue(followed.truncated)
        XCTAssertEqual(followed.answers, ["192.168.122.203"])
        XCTAssertEqual(followed.attempts, 2)
        XCTAssertTrue(upstream.queries.wait(forCount: 4, timeout: 5))
        XCTAssertEqual(upstream.queries.snapshot().map { $0.transport }, [.udp, .tcp, .udp, .tcp])
    }

    func testTruncateWithTCPReset() {
        upstream.setBehaviour(.truncate(tcp: .reset))
        XCTAssertTrue(ask("hat.com", "A").truncated)
        let r = ask("hat.com", "A", .tcp)
        XCTAssertEqual(r.error, .connectionReset, "\(r)")
        let followed = ask("hat.com", "A", .udpConnected, follow: true)
        XCTAssertEqual(followed.error, .connectionReset)
        XCTAssertTrue(followed.truncated)
    }

    func testTruncateWithTCPHang() {
        upstream.setBehaviour(.truncate(tcp: .hang))
        let r = ask("hat.com", "A", .tcp, timeout: 0.3)
        XCTAssertEqual(r.error, .timeout)
        XCTAssertTrue(upstream.queries.wait(timeout: 5) { $0.contains { $0.transport == .tcp && $0.outcome == "TCP hang" } })
    }

    func testWrongIDAndWrongQuestionAreIgnoredByTheClient() {
        for behaviour in [UpstreamBehaviour.wrongID, .wrongQuestion] {
            upstream.setBehaviour(behaviour)
            for transport in [QueryClient.Transport.udpConnected, .udpUnconnected, .tcp] {
                let r = ask("hat.com", "A", transport, timeout: 0.3)
                XCTAssertEqual(r.error, .timeout, "\(behaviour) \(transport)")
                XCTAssertEqual(r.mismatchedReplies, 1, "\(behaviour) \(transport)")
            }
        }
    }

    func testLowercaseQuestionLosesTheQueryCase() {
        // Kept by default (what DNS 0x20 relies on)...
        let kept = ask("HaT.CoM")
        XCTAssertEqual(kept.reply?.questions.first?.name.description, "HaT.CoM")
        // ...and lost with lowercase-question, while the answer itself is right.
        upstream.setBehaviour(.lowercaseQuestion)
        let r = ask("HaT.CoM")
        XCTAssertNil(r.error, "\(r)")
        XCTAssertEqual(r.reply?.questions.first?.name.description, "hat.com")
        XCTAssertEqual(r.answers, ["192.168.122.203"])
    }

    func testGarbageIsMalformed() {
        upstream.setBehaviour(.garbage)
        for transport in [QueryClient.Transport.udpConnected, .tcp] {
            let r = ask("hat.com", "A", transport)
            guard case .malformed = r.error else { return XCTFail("\(transport): \(r)") }
        }
    }

    func testReplyFromOtherAddress() {
        upstream.setBehaviour(.fromOtherAddress("127.0.0.2"))
        let unconnected = ask("hat.com", "A", .udpUnconnected)
        XCTAssertNil(unconnected.error, "\(unconnected)")
        XCTAssertEqual(unconnected.replySource?.ip, "127.0.0.2")
        XCTAssertEqual(unconnected.replySource?.port, upstream.endpoint.port)
        XCTAssertEqual(unconnected.answers, ["192.168.122.203"])
        // A connected socket (glibc's stub) never sees it.
        let connected = ask("hat.com", "A", .udpConnected, timeout: 0.3)
        XCTAssertEqual(connected.error, .timeout)
        XCTAssertEqual(connected.mismatchedReplies, 0)
        // TCP cannot change its source: it answers.
        XCTAssertEqual(ask("hat.com", "A", .tcp).replySource, upstream.endpoint)
    }

    func testBehaviourSwitchesBetweenQueries() {
        XCTAssertEqual(ask().rcode, .noError)
        upstream.setBehaviour(.refused)
        XCTAssertEqual(upstream.behaviour, .refused)
        XCTAssertEqual(ask().rcode, .refused)
        upstream.setBehaviour(.answer)
        XCTAssertEqual(ask().rcode, .noError)
        XCTAssertEqual(upstream.queries.snapshot().map { $0.behaviour }, [.answer, .refused, .answer])
    }

    func testScriptPicksTheWindowByTime() {
        let now = SimClock.now()
        upstream.setScript([BehaviourWindow(from: now + 1000, .answer),
                            BehaviourWindow(from: now - 10, .refused),
                            BehaviourWindow(from: now - 5, .servfail)])
        XCTAssertEqual(upstream.behaviour, .servfail)
        XCTAssertEqual(ask().rcode, .servFail)
        upstream.setScript([BehaviourWindow(from: now + 1000, .refused)])
        XCTAssertEqual(ask().rcode, .noError, "before the first window: the base behaviour")
        upstream.setScript([BehaviourWindow(from: now - 1, .nxdomain)])
        XCTAssertEqual(ask().rcode, .nxDomain)
        upstream.setBehaviour(.refused)
        XCTAssertEqual(ask().rcode, .refused, "setBehaviour drops the script")
        XCTAssertEqual(upstream.queries.snapshot().map { $0.behaviour }, [.servfail, .answer, .nxdomain, .refused])
    }

    func testZoneSwap() throws {
        upstream.setZone(try Zone(simple: ["hat.com": ["A": ["192.168.122.204"]]]))
        XCTAssertEqual(ask().answers, ["192.168.122.204"])
    }

    func testNothingListeningGivesICMPRefusedAndTCPRefused() throws {
        let port = try ActorTestSupport.unusedUDPPort()
        let server = try Endpoint(ip: "127.0.0.1", port: port)
        let r = ask("hat.com", "A", .udpConnected, timeout: 2, to: server)
        XCTAssertEqual(r.error, .refusedByICMP, "\(r)")
        let t = ask("hat.com", "A", .tcp, timeout: 2, to: server)
        XCTAssertEqual(t.error, .connectionRefused, "\(t)")
    }

    func testStopClosesEverything() throws {
        upstream.stop()
        upstream = nil
        let fdsBefore = ActorTestSupport.openFDCount()
        let u = try FakeUpstream(name: "tmp", address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone)
        XCTAssertEqual(QueryClient().query("hat.com", server: u.endpoint).answers, ["192.168.122.203"])
        u.setBehaviour(.truncate(tcp: .hang))
        XCTAssertEqual(QueryClient(transport: .tcp, timeout: 0.2).query("hat.com", server: u.endpoint).error, .timeout)
        u.stop()
        u.stop()
        XCTAssertEqual(ActorTestSupport.openFDCount(), fdsBefore, "sockets, connections and the wake pipe are closed")
        XCTAssertEqual(QueryClient(timeout: 2).query("hat.com", server: u.endpoint).error, .refusedByICMP)
    }

    /// "The upstream dies, then comes back": the same address and port can be served again at once.
    func testRestartOnTheSamePort() throws {
        let ep = upstream.endpoint
        XCTAssertEqual(ask("hat.com", "A", .tcp).answers, ["192.168.122.203"])
        upstream.stop()
        XCTAssertEqual(ask("hat.com", "A", .udpConnected, to: ep).error, .refusedByICMP)
        XCTAssertEqual(ask("hat.com", "A", .tcp, to: ep).error, .connectionRefused)
        upstream = try FakeUpstream(name: "A again", listen: ep, zone: ActorTestSupport.zone)
        XCTAssertEqual(upstream.endpoint, ep)
        XCTAssertEqual(ask("hat.com", "A", .udpConnected).answers, ["192.168.122.203"])
        XCTAssertEqual(ask("hat.com", "A", .tcp).answers, ["192.168.122.203"])
    }

    func testCountingWithoutRecording() throws {
        let quiet = try FakeUpstream(address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone, recordQueries: false)
        defer { quiet.stop() }
        XCTAssertEqual(ask(to: quiet.endpoint).answers, ["192.168.122.203"])
        XCTAssertEqual(ask("hat.com", "A", .tcp, to: quiet.endpoint).answers, ["192.168.122.203"])
        XCTAssertEqual(quiet.queryCount, 2)
        XCTAssertEqual(quiet.queries.count, 0)
    }

    func testBindErrorNamesTheAddress() throws {
        XCTAssertThrowsError(try FakeUpstream(address: "127.0.0.1", port: upstream.endpoint.port, zone: .empty)) {
            XCTAssertTrue("\($0)".contains("127.0.0.1:\(upstream.endpoint.port)"), "\($0)")
        }
        XCTAssertThrowsError(try FakeUpstream(address: "not-an-ip", port: 0, zone: .empty))
    }

    func testNaiveModeAnswers() throws {
        let naive = try FakeUpstream(name: "naive", address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone, naive: true)
        defer { naive.stop() }
        for transport in [QueryClient.Transport.udpConnected, .tcp] {
            let r = ask("hat.com", "A", transport, to: naive.endpoint)
            XCTAssertEqual(r.answers, ["192.168.122.203"], "\(transport): \(r)")
        }
        // Bound to the wildcard: it also answers on another loopback address.
        let other = try Endpoint(ip: "127.0.0.3", port: naive.endpoint.port)
        XCTAssertEqual(QueryClient(transport: .udpUnconnected, source: "127.0.0.3")
            .query("hat.com", server: other).answers, ["192.168.122.203"])
    }

    /// The Docker mistake in miniature: the kernel picks the reply's source by
    /// route. A query to 127.0.0.3 is answered from 127.0.0.1 (the loopback
    /// route's preferred source), which a connected client rejects.
    func testNaiveModeRepliesFromTheRouteSourceOnLoopback() throws {
        let naive = try FakeUpstream(name: "naive", address: "127.0.0.1", port: 0, zone: ActorTestSupport.zone, naive: true)
        defer { naive.stop() }
        let other = try Endpoint(ip: "127.0.0.3", port: naive.endpoint.port)
        let unconnected = QueryClient(transport: .udpUnconnected).query("hat.com", server: other)
        XCTAssertEqual(unconnected.answers, ["192.168.122.203"])
        XCTAssertEqual(unconnected.replySource?.ip, "127.0.0.1", "source chosen by route, not the address asked")
        let connected = QueryClient(transport: .udpConnected, timeout: 0.3).query("hat.com", server: other)
        XCTAssertEqual(connected.error, .timeout)
        XCTAssertTrue(naive.queries.wait(forCount: 2, timeout: 5), "the naive server did see both queries")
        // The client's host rejected the reply with a port unreachable, and the server hears of it.
        let icmp = naive.icmpErrors.first(timeout: 5) { $0.isPortUnreachable }
        XCTAssertNotNil(icmp, "no ICMP error recorded")
        XCTAssertEqual(icmp?.destination?.port, connected.replySource?.port ?? naive.queries.snapshot()[1].source.port)
        XCTAssertEqual(icmp?.type, 3)
        XCTAssertEqual(icmp?.code, 3)
        XCTAssertEqual(naive.icmpErrors.count, 1, "\(naive.icmpErrors.snapshot())")
        // Bound to the address itself (normal mode), the reply comes from it.
        let bound = try FakeUpstream(name: "bound", address: "127.0.0.3", port: 0, zone: ActorTestSupport.zone)
        defer { bound.stop() }
        let ok = QueryClient(transport: .udpConnected).query("hat.com", server: bound.endpoint)
        XCTAssertEqual(ok.answers, ["192.168.122.203"])
        XCTAssertEqual(ok.replySource, bound.endpoint)
        XCTAssertEqual(bound.icmpErrors.count, 0)
    }

    func testIPv6() throws {
        try XCTSkipUnless(ActorTestSupport.hasIPv6Loopback, "no ::1 here")
        let v6 = try FakeUpstream(name: "v6", address: "::1", port: 0, zone: ActorTestSupport.zone)
        defer { v6.stop() }
        for transport in [QueryClient.Transport.udpConnected, .udpUnconnected, .tcp] {
            let r = ask("v6.hat.com", "AAAA", transport, to: v6.endpoint)
            XCTAssertEqual(r.answers, ["2001:db8::203"], "\(transport): \(r)")
            XCTAssertEqual(r.replySource, v6.endpoint)
        }
        XCTAssertTrue(v6.queries.wait(forCount: 3, timeout: 5))
        XCTAssertEqual(v6.queries.snapshot()[0].source.ip, "::1")
    }

    func testEDNSAndLargeAnswersTruncateAtTheAdvertisedSize() throws {
        var many: [Zone.Entry] = []
        for i in 1...60 { many.append(.init("A", "10.0.0.\(i)")) }
        upstream.setZone(try Zone(["big.test": many]))
        let plain = ask("big.test")
        XCTAssertTrue(plain.truncated, "60 A records do not fit 512 bytes")
        let edns = QueryClient(ednsUDPSize: 4096).query("big.test", server: upstream.endpoint)
        XCTAssertFalse(edns.truncated)
        XCTAssertEqual(edns.answers.count, 60)
        XCTAssertNotNil(edns.reply?.edns)
        XCTAssertEqual(ask("big.test", "A", .tcp).answers.count, 60)
    }

    func testBadClientInput() {
        XCTAssertEqual(ask("hat.com", "NOPE").error.map { "\($0)" }?.contains("unknown type"), true)
        guard case .badInput = QueryClient().query("hat.com", server: "nowhere").error else { return XCTFail() }
        guard case .badInput = QueryClient(source: "::1").query("hat.com", server: upstream.endpoint).error else { return XCTFail() }
    }
}
