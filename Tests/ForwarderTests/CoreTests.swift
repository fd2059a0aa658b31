import XCTest
import DNSWire
@testable import Forwarder

final class CoreTests: XCTestCase {
    typealias H = CoreHarness

    func testForwardAndReply() throws {
        let h = H()
        XCTAssertNil(h.ask("www.Example.test", id: 0x4242))
        XCTAssertEqual(h.sends.count, 1)
        let sent = h.sends[0]
        XCTAssertEqual(sent.server, H.serverA)
        XCTAssertEqual(sent.transport, .udp)
        XCTAssertEqual(sent.message.questions.first?.name, try DNSName("www.example.test"))
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.1")])
        XCTAssertEqual(h.replies.count, 1)
        let r = h.replies[0].1
        XCTAssertEqual(r.header.id, 0x4242)
        XCTAssertTrue(r.header.isResponse)
        XCTAssertEqual(r.answers.first?.rdata, .a(IPv4Address("192.0.2.1")!))
        // The client's letter case comes back in the question.
        XCTAssertEqual(r.questions.first?.name.description, "www.Example.test")
        XCTAssertEqual(h.logs, ["query[A] www.Example.test from 127.0.0.10",
                                "forwarded www.Example.test to 10.0.0.1",
                                "reply www.Example.test is 192.0.2.1"])
        XCTAssertEqual(h.core.inFlight, 0)
        XCTAssertEqual(h.cancels, [sent.attempt])
    }

    func testUpstreamIDsAreFreshAndDistinct() {
        let h = H()
        for i in 0..<200 { _ = h.ask("n\(i).example.test", id: 7) }
        let ids = Set(h.sends.map { $0.message.header.id })
        XCTAssertEqual(ids.count, 200, "IDs in flight must be unique")
        XCTAssertFalse(ids.contains(7))
    }

    func testCacheHitCountsTTLDown() throws {
        let h = H()
        _ = h.ask("www.example.test", id: 1)
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.1", ttl: 300)])
        h.logs.removeAll()
        h.now += 10_000_000_000
        let hit = try XCTUnwrap(h.ask("WWW.example.test", id: 2))
        XCTAssertEqual(h.sends.count, 1, "a hit is not forwarded")
        XCTAssertEqual(hit.header.id, 2)
        XCTAssertEqual(hit.answers.first?.ttl, 290)
        XCTAssertEqual(hit.questions.first?.name.description, "WWW.example.test")
        XCTAssertEqual(h.logs, ["query[A] WWW.example.test from 127.0.0.10", "cached WWW.example.test is 192.0.2.1"])
        // Expired after 300 s: forwarded again.
        h.now += 291_000_000_000
        XCTAssertNil(h.ask("www.example.test", id: 3))
        XCTAssertEqual(h.sends.count, 2)
    }

    func testNegativeCachingUsesSOAMinimum() throws {
        let h = H()
        _ = h.ask("nx.example.test", id: 1)
        h.answer(0, rcode: .nxDomain, authorities: [H.soa("example.test", ttl: 3600, minimum: 60)])
        XCTAssertEqual(h.replies.last?.1.rcode, .nxDomain)
        XCTAssertTrue(h.logs.contains("reply nx.example.test is NXDOMAIN"))
        h.now += 30_000_000_000
        let hit = try XCTUnwrap(h.ask("nx.example.test", id: 2))
        XCTAssertEqual(hit.rcode, .nxDomain)
        XCTAssertEqual(hit.authorities.first?.ttl, 30, "SOA TTL counts down from min(TTL, minimum)")
        h.now += 31_000_000_000
        XCTAssertNil(h.ask("nx.example.test", id: 3))
        XCTAssertEqual(h.sends.count, 2)
    }

    func testNoNegcache() {
        let h = H { $0.negativeCache = false }
        _ = h.ask("nx.example.test")
        h.answer(0, rcode: .nxDomain, authorities: [H.soa("example.test", ttl: 3600, minimum: 60)])
        XCTAssertNil(h.ask("nx.example.test"))
        XCTAssertEqual(h.sends.count, 2)
    }

    func testNoDataCachedAndLogged() throws {
        let h = H()
        _ = h.ask("v4only.example.test", .aaaa)
        h.answer(0, authorities: [H.soa("example.test", ttl: 100, minimum: 100)])
        XCTAssertTrue(h.logs.contains("reply v4only.example.test is NODATA-IPv6"))
        XCTAssertNotNil(h.ask("v4only.example.test", .aaaa))
    }

    func testCacheDisabled() {
        let h = H { $0.cacheSize = 0 }
        _ = h.ask("www.example.test")
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.1")])
        XCTAssertNil(h.ask("www.example.test"))
        XCTAssertEqual(h.sends.count, 2)
    }

    func testCacheEvictsLeastRecentlyUsed() {
        let h = H { $0.cacheSize = 2 }
        for (i, n) in ["a.test", "b.test"].enumerated() {
            _ = h.ask(n)
            h.answer(i, answers: [H.a(n, "192.0.2.\(i + 1)")])
        }
        XCTAssertNotNil(h.ask("a.test"))            // a is now most recent
        _ = h.ask("c.test")
        h.answer(2, answers: [H.a("c.test", "192.0.2.3")])   // evicts b
        XCTAssertNotNil(h.ask("a.test"))
        XCTAssertNotNil(h.ask("c.test"))
        XCTAssertNil(h.ask("b.test"))
    }

    func testClearCache() {
        let h = H()
        _ = h.ask("www.example.test")
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.1")])
        h.core.clearCache()
        XCTAssertNil(h.ask("www.example.test"))
    }

    func testCoalescesIdenticalQuestions() {
        let h = H()
        XCTAssertNil(h.ask("www.example.test", id: 1, from: H.client(10)))
        XCTAssertNil(h.ask("www.example.test", id: 2, from: H.client(11)))
        XCTAssertEqual(h.sends.count, 1)
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.1")])
        XCTAssertEqual(h.replies.count, 2)
        XCTAssertEqual(Set(h.replies.map { $0.1.header.id }), [1, 2])
        XCTAssertEqual(Set(h.replies.map { $0.0.peer }), [H.client(10).peer, H.client(11).peer])
    }

    func testCoalescingKeepsEachClientsCaseAndTransport() {
        let h = H { $0.cacheSize = 0 }
        XCTAssertNil(h.ask("www.example.test", id: 1, from: H.client(10)))
        XCTAssertNil(h.ask("WWW.Example.TEST", id: 2, from: H.client(11)))
        // The same question over TCP is asked upstream over TCP, not joined to the UDP one.
        XCTAssertNil(h.ask("www.example.test", id: 3, from: H.client(12, transport: .tcp)))
        XCTAssertEqual(h.sends.map { $0.transport }, [.udp, .tcp])
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.1")])
        XCTAssertEqual(h.replies.map { $0.1.header.id }, [1, 2])
        XCTAssertEqual(h.replies.map { $0.1.questions.first?.name.description }, ["www.example.test", "WWW.Example.TEST"])
        h.answer(1, answers: [H.a("www.example.test", "192.0.2.1")])
        XCTAssertEqual(h.replies.map { $0.1.header.id }, [1, 2, 3])
        XCTAssertEqual(h.core.inFlight, 0)
        XCTAssertTrue(h.core.pendingByKey.isEmpty)
        // Nothing in flight: the next ask is a new upstream query, not joined to a finished one.
        XCTAssertNil(h.ask("www.example.test", id: 4, from: H.client(10)))
        XCTAssertEqual(h.sends.count, 3)
    }

    func testTimeoutMovesToNextServer() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("www.example.test", id: 9)
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA])
        h.run(forMs: h.core.selector.unknownTimeout / 1_000_000 - 1)
        XCTAssertEqual(h.sends.count, 1)
        h.run(forMs: 2)
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverB])
        XCTAssertTrue(h.logs.contains("10.0.0.1 did not answer, retrying"))
        XCTAssertTrue(h.logs.contains("forwarded www.example.test to 10.0.0.2#5353"))
        h.answer(1, answers: [H.a("www.example.test", "192.0.2.2")])
        XCTAssertEqual(h.replies.count, 1)
        XCTAssertEqual(h.replies[0].1.header.id, 9)
        XCTAssertEqual(h.core.inFlight, 0)
        // Both attempts closed.
        XCTAssertEqual(Set(h.cancels), Set(h.sends.map { $0.attempt }))
    }

    func testLateReplyFromTimedOutServerStillWins() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("www.example.test")
        h.run(forMs: 801)
        XCTAssertEqual(h.sends.count, 2)
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.1")])
        XCTAssertEqual(h.replies.count, 1)
        XCTAssertEqual(h.replies[0].1.answers.first?.rdata, .a(IPv4Address("192.0.2.1")!))
    }

    func testRefusedAndServfailMoveOn() {
        for rc in [RCode.refused, RCode.servFail] {
            let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
            _ = h.ask("www.example.test")
            h.answer(0, rcode: rc)
            XCTAssertEqual(h.replies.count, 0)
            XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverB])
            XCTAssertTrue(h.logs.contains("reply from 10.0.0.1 is \(rc == .refused ? "REFUSED" : "SERVFAIL"), retrying"), "\(h.logs)")
            h.answer(1, answers: [H.a("www.example.test", "192.0.2.2")])
            XCTAssertEqual(h.replies.first?.1.rcode, .noError)
        }
    }

    func testAllFailGivesServfail() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("www.example.test", id: 5)
        h.answer(0, rcode: .refused)
        h.answer(1, rcode: .servFail)
        XCTAssertEqual(h.replies.count, 1)
        XCTAssertEqual(h.replies[0].1.rcode, .servFail)
        XCTAssertEqual(h.replies[0].1.header.id, 5)
        XCTAssertEqual(h.core.inFlight, 0)
    }

    func testSilentServersGiveServfailWithinDeadline() {
        let h = H(servers: [H.serverA, H.serverB])
        let start = h.now
        _ = h.ask("www.example.test")
        var when: UInt64? = nil
        while h.replies.isEmpty, let d = h.core.nextDeadline() {
            h.now = d
            h.core.handleTimers(now: d)
            h.drain()
            if !h.replies.isEmpty { when = h.now }
        }
        XCTAssertEqual(h.replies.first?.1.rcode, .servFail)
        let elapsed = (when ?? .max) - start
        XCTAssertLessThanOrEqual(elapsed, 3_000_000_000)
        XCTAssertGreaterThan(h.sends.count, 2, "retried within the deadline")
        XCTAssertEqual(h.core.inFlight, 0)
    }

    func testSpoofedRepliesAreDroppedAndCounted() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("www.example.test")
        let good = h.reply(to: 0, answers: [H.a("www.example.test", "192.0.2.1")])
        let aid = h.sends[0].attempt
        // Wrong source port, wrong source address: dropped, no failover.
        h.deliver(good, attempt: aid, from: Endpoint(v4: 10, 0, 0, 1, port: 54))
        h.deliver(good, attempt: aid, from: H.serverC)
        XCTAssertEqual(h.sends.count, 1)
        // Wrong ID from the server's address: dropped and counted; one such reply may be a
        // forgery, so it is no reason to fail over (the attempt's timeout decides).
        var wrongID = good
        wrongID[0] ^= 0xFF
        h.deliver(wrongID, attempt: aid, from: H.serverA)
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA])
        XCTAssertTrue(h.logs.contains("reply from 10.0.0.1 has a mismatched ID or question, ignored"), "\(h.logs)")
        // Wrong question; not a response: dropped.
        let other = h.reply(to: 0, answers: []) { m in m.questions = [Question(name: try! DNSName("evil.test"), type: .a)] }
        h.deliver(other, attempt: aid, from: H.serverA)
        var notResponse = good
        notResponse[2] &= 0x7F
        h.deliver(notResponse, attempt: aid, from: H.serverA)
        XCTAssertEqual(h.replies.count, 0)
        XCTAssertEqual(h.core.stats.droppedSpoofed, 5)
        XCTAssertEqual(h.sends.count, 1)
        // The genuine reply (question in another letter case) still wins on the first attempt.
        let upper = h.reply(to: 0, answers: [H.a("www.example.test", "192.0.2.1")]) { m in
            m.questions = [Question(name: try! DNSName("WWW.EXAMPLE.TEST"), type: .a)]
        }
        h.deliver(upper, attempt: aid, from: H.serverA)
        XCTAssertEqual(h.replies.count, 1)
        XCTAssertEqual(h.replies[0].1.answers.first?.rdata, .a(IPv4Address("192.0.2.1")!))
    }

    func testGarbageReplyMovesOn() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("www.example.test")
        var bad = h.reply(to: 0, answers: [H.a("www.example.test", "192.0.2.1")])
        bad[7] = 9   // ANCOUNT 9 with only one record
        h.deliver(bad, attempt: h.sends[0].attempt, from: H.serverA)
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverB])
        XCTAssertEqual(h.core.stats.droppedMalformedReplies, 1)
    }

    func testSendFailureFailsOverAtOnce() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("www.example.test")
        h.core.handleSendFailure(attempt: h.sends[0].attempt, errno: 1 /* EPERM */, now: h.now)
        h.drain()
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverB])
        XCTAssertTrue(h.logs.contains("failed to send to 10.0.0.1: Operation not permitted"), "\(h.logs)")
    }

    func testSendFailureEverywhereGivesServfailAtOnce() {
        let h = H()
        _ = h.ask("www.example.test")
        h.core.handleSendFailure(attempt: h.sends[0].attempt, errno: 1, now: h.now)
        h.drain()
        XCTAssertEqual(h.replies.first?.1.rcode, .servFail)
    }

    func testInFlightBoundAnswersServfail() throws {
        let h = H { $0.forwardMax = 2 }
        XCTAssertNil(h.ask("a.test"))
        XCTAssertNil(h.ask("b.test"))
        let third = try XCTUnwrap(h.ask("c.test", id: 77))
        XCTAssertEqual(third.rcode, .servFail)
        XCTAssertEqual(third.header.id, 77)
        XCTAssertEqual(h.core.stats.servfailOverLimit, 1)
        XCTAssertEqual(h.sends.count, 2)
        XCTAssertTrue(h.logs.contains { $0.hasPrefix("maximum number of concurrent DNS queries reached") })
    }

    func testBestRTTPolicyExploresAndPrefersFasterServer() {
        let h = H(servers: [H.serverA, H.serverB])
        // A answers in 200 ms, B in 5 ms. A is tried first (list order among unknowns);
        // exploration must find B, and then B is preferred.
        for i in 0..<60 {
            _ = h.ask("x\(i).test")
            let idx = h.sends.count - 1
            h.answer(idx, answers: [H.a("x\(i).test", "192.0.2.1")], afterMs: h.sends[idx].server == H.serverA ? 200 : 5)
        }
        XCTAssertEqual(h.sends.first?.server, H.serverA)
        XCTAssertEqual(h.sends.suffix(10).filter { $0.server == H.serverB }.count, 10)
        XCTAssertEqual(h.sends.count, 60, "one upstream query per client query")
    }

    func testBestRTTDemotesFailingServerAndProbesIt() {
        let h = H(servers: [H.serverA, H.serverB])
        // A refuses: it is demoted, B answers and becomes the first choice.
        _ = h.ask("r.test")
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA])
        h.answer(0, rcode: .refused)
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverB])
        h.answer(1, answers: [H.a("r.test", "192.0.2.1")])
        XCTAssertEqual(h.core.selector.servers[0].health, .demoted)
        _ = h.ask("next.test")
        XCTAssertEqual(h.sends.last?.server, H.serverB)
        XCTAssertEqual(h.sends.count, 3, "no traffic to the demoted server before its probe is due")
        h.answer(2, answers: [H.a("next.test", "192.0.2.1")])
        // After the backoff, A gets a probe in parallel and recovers on a good reply.
        h.now += 1_100_000_000
        _ = h.ask("probe.test")
        XCTAssertEqual(Set(h.sends.suffix(2).map { $0.server }), [H.serverA, H.serverB])
        let ai = h.sends.lastIndex { $0.server == H.serverA }!
        h.answer(ai, answers: [H.a("probe.test", "192.0.2.1")])
        XCTAssertEqual(h.core.selector.servers[0].health, .healthy)
        XCTAssertEqual(h.replies.count, 3)
    }

    func testAllServersPolicySendsToAllFirstGoodReplyWins() {
        let h = H(servers: [H.serverA, H.serverB, H.serverC]) { $0.policy = .allServers }
        _ = h.ask("www.example.test")
        XCTAssertEqual(Set(h.sends.map { $0.server }), [H.serverA, H.serverB, H.serverC])
        h.answer(0, rcode: .refused)
        XCTAssertEqual(h.replies.count, 0)
        h.answer(2, answers: [H.a("www.example.test", "192.0.2.3")])
        XCTAssertEqual(h.replies.count, 1)
        XCTAssertEqual(h.replies[0].1.answers.first?.rdata, .a(IPv4Address("192.0.2.3")!))
        h.answer(1, answers: [H.a("www.example.test", "192.0.2.2")])
        XCTAssertEqual(h.replies.count, 1, "later replies are dropped")
    }

    func testStrictOrderAlwaysStartsWithFirst() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        for i in 0..<3 {
            _ = h.ask("s\(i).test")
            let idx = h.sends.count - 1
            h.answer(idx, answers: [H.a("s\(i).test", "192.0.2.1")], afterMs: 300)
        }
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverA, H.serverA])
    }

    func testDomainServers() {
        var cfgServers = [ServerSpec(endpoint: H.serverA)]
        cfgServers.append(ServerSpec(endpoint: H.serverB, domains: ["corp.test"]))
        let h = H(servers: []) { $0.servers = cfgServers; $0.localDomains = ["lan"] }
        _ = h.ask("www.corp.test")
        _ = h.ask("www.other.test")
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverB, H.serverA])
        let local = h.ask("printer.lan")
        XCTAssertEqual(local?.rcode, .nxDomain)
    }

    func testAddressRulesAndHosts() throws {
        var hosts = HostsTable()
        hosts.add(text: "192.0.2.50 nas nas.home # comment\n2001:db8::50 nas\n", source: "/etc/hosts")
        let h = H { cfg in
            cfg.addressRules = [AddressRule(domains: ["ads.test"], v4: [[0, 0, 0, 0]]),
                                AddressRule(domains: ["blocked.test"])]
            cfg.hosts = hosts
        }
        let a = try XCTUnwrap(h.ask("x.ads.test"))
        XCTAssertEqual(a.answers.first?.rdata, .a(IPv4Address("0.0.0.0")!))
        XCTAssertTrue(h.logs.contains("config x.ads.test is 0.0.0.0"))
        XCTAssertEqual(h.ask("ads.test", .aaaa)?.answers.count, 0)
        XCTAssertEqual(h.ask("blocked.test")?.rcode, .nxDomain)
        XCTAssertEqual(h.ask("NAS")?.answers.first?.rdata, .a(IPv4Address("192.0.2.50")!))
        XCTAssertEqual(h.ask("nas", .aaaa)?.answers.first?.rdata, .aaaa(IPv6Address("2001:db8::50")!))
        XCTAssertTrue(h.logs.contains("/etc/hosts NAS is 192.0.2.50"))
        XCTAssertEqual(h.sends.count, 0)
    }

    func testFormErrAndDrops() throws {
        let h = H()
        // Shorter than a header: dropped.
        XCTAssertNil(h.ask([1, 2, 3]))
        // Header readable, question broken: FORMERR with the same ID.
        var q = H.query("www.example.test", id: 0xBEEF)
        q = Array(q[0..<20])
        let r = try XCTUnwrap(h.ask(q))
        XCTAssertEqual(r.count, 12)
        XCTAssertEqual(r[0], 0xBE); XCTAssertEqual(r[1], 0xEF)
        XCTAssertEqual(r[3] & 0x0F, 1)
        // A response sent to us: dropped.
        var resp = H.query("www.example.test")
        resp[2] |= 0x80
        XCTAssertNil(h.ask(resp))
        XCTAssertEqual(h.sends.count, 0)
    }

    func testTruncatesForUDPClientSize() throws {
        let h = H()
        let big = (0..<10).map { i in
            ResourceRecord(name: try! DNSName("big.test"), ttl: 300, rdata: .txt([[UInt8](repeating: UInt8(65 + i), count: 200)]))
        }
        _ = h.ask("big.test", .txt)
        h.answer(0, answers: big)
        let r = h.replies[0]
        XCTAssertLessThanOrEqual(r.2.count, 512)
        XCTAssertTrue(r.1.header.truncated)
        // Over TCP the same answer comes whole (from cache).
        let tcp = try XCTUnwrap(h.ask("big.test", .txt, from: H.client(transport: .tcp)))
        XCTAssertFalse(tcp.header.truncated)
        XCTAssertEqual(tcp.answers.count, 10)
    }

    func testTCPQueriesGoUpstreamOverTCP() {
        let h = H()
        _ = h.ask("www.example.test", from: H.client(transport: .tcp))
        XCTAssertEqual(h.sends.first?.transport, .tcp)
    }

    func testHoldsQueriesUntilServersAppear() {
        let h = H(servers: [])
        _ = h.ask("www.example.test", id: 3)
        XCTAssertEqual(h.sends.count, 0)
        h.advance(ms: 500)
        h.core.setServers([ServerSpec(endpoint: H.serverB)], now: h.now)
        h.drain()
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverB])
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.2")])
        XCTAssertEqual(h.replies.first?.1.header.id, 3)
    }

    func testHeldQueryGetsServfailAfterBound() {
        let h = H(servers: [])
        _ = h.ask("www.example.test")
        h.run(forMs: 1999)
        XCTAssertEqual(h.replies.count, 0)
        h.run(forMs: 2)
        XCTAssertEqual(h.replies.first?.1.rcode, .servFail)
    }

    func testStatisticsLines() {
        let h = H()
        _ = h.ask("www.example.test")
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.1")], afterMs: 12)
        let lines = h.core.statisticsLines()
        XCTAssertTrue(lines.contains("server 10.0.0.1#53: queries sent 1, retried 0, failed 0, nxdomain replies 0, avg. latency 12ms, health healthy, srtt 12ms, timeout 150ms, demoted 0 times, mismatched replies 0"), "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains("queries in flight 0") })
    }

    func testRandomPacketsNeverCrash() {
        let h = H()
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20000 {
            let n = Int.random(in: 0..<300, using: &rng)
            var b = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n > 12 && Bool.random(using: &rng) { b[2] &= 0x7F; b[4] = 0; b[5] = 1 }
            _ = h.ask(b)
        }
        // Random replies to a pending attempt.
        _ = h.ask("www.example.test")
        let aid = h.sends.last!.attempt
        for _ in 0..<5000 {
            let n = Int.random(in: 0..<300, using: &rng)
            let b = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            h.deliver(b, attempt: aid, from: H.serverA, afterMs: 0)
        }
    }
}

final class TruncationRetryTests: XCTestCase {
    typealias H = CoreHarness

    func tcReply(_ h: H, _ i: Int) -> [UInt8] {
        h.reply(to: i) { m in m.header.truncated = true }
    }

    func testTruncatedUDPReplyIsRetriedOverTCP() {
        let h = H()
        _ = h.ask("big.test", .txt, edns: EDNS(udpSize: 4096))
        h.deliver(tcReply(h, 0), attempt: h.sends[0].attempt, from: H.serverA)
        XCTAssertEqual(h.sends.map { $0.transport }, [.udp, .tcp])
        XCTAssertEqual(h.sends[1].server, H.serverA)
        XCTAssertTrue(h.logs.contains("reply from 10.0.0.1 is truncated, retrying over TCP"))
        h.answer(1, answers: [H.a("big.test", "192.0.2.1")])
        XCTAssertEqual(h.replies.count, 1)
        XCTAssertFalse(h.replies[0].1.header.truncated)
    }

    func testTCPFailureFallsBackToTheTruncatedReply() {
        let h = H()
        _ = h.ask("big.test", .txt)
        h.deliver(tcReply(h, 0), attempt: h.sends[0].attempt, from: H.serverA)
        h.core.handleSendFailure(attempt: h.sends[1].attempt, errno: 104 /* ECONNRESET */, now: h.now)
        h.drain()
        XCTAssertEqual(h.replies.count, 1)
        XCTAssertTrue(h.replies[0].1.header.truncated)
        XCTAssertEqual(h.replies[0].1.rcode, .noError)
    }

    func testTCPFailureTriesNextServer() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("big.test", .txt)
        h.deliver(tcReply(h, 0), attempt: h.sends[0].attempt, from: H.serverA)
        h.core.handleSendFailure(attempt: h.sends[1].attempt, errno: 104, now: h.now)
        h.drain()
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverA, H.serverB])
        h.answer(2, answers: [H.a("big.test", "192.0.2.2")])
        XCTAssertEqual(h.replies.first?.1.answers.count, 1)
    }
}

final class AttemptBookkeepingTests: XCTestCase {
    typealias H = CoreHarness

    func testRetransmissionClosesTheTimedOutAttempt() {
        let h = H()
        _ = h.ask("www.example.test")
        h.run(forMs: 801)
        XCTAssertEqual(h.sends.count, 2)
        XCTAssertEqual(h.cancels, [h.sends[0].attempt], "one socket per server per query")
        h.run(forMs: 5000)
        XCTAssertEqual(h.replies.first?.1.rcode, .servFail)
        XCTAssertEqual(Set(h.cancels), Set(h.sends.map { $0.attempt }), "every attempt's socket is closed")
        XCTAssertEqual(h.core.inFlight, 0)
    }

    func testBlackHoleLeavesNothingInFlight() {
        let h = H(servers: [H.serverA, H.serverB])
        for i in 0..<2000 { _ = h.ask("bh\(i).test") }
        h.run(forMs: 10_000)
        XCTAssertEqual(h.core.inFlight, 0)
        XCTAssertEqual(h.replies.count, 2000)
        XCTAssertTrue(h.replies.allSatisfy { $0.1.rcode == .servFail })
        XCTAssertEqual(Set(h.cancels).count, h.sends.count)
        XCTAssertEqual(h.core.attempts.count, 0)
        XCTAssertEqual(h.core.idsInUse.reduce(0) { $0 | $1 }, 0, "no upstream ID left reserved")
    }
}

final class SendFailureLogTests: XCTestCase {
    func testSendFailuresAreLoggedWithoutLogQueriesButRateLimited() {
        let h = CoreHarness { $0.logQueries = false }
        for i in 0..<3 {
            _ = h.ask("f\(i).test")
            h.core.handleSendFailure(attempt: h.sends.last!.attempt, errno: 1, now: h.now)
            h.drain()
        }
        XCTAssertEqual(h.logs.filter { $0.hasPrefix("failed to send") }, ["failed to send to 10.0.0.1: Operation not permitted"])
        h.now += 6_000_000_000
        _ = h.ask("later.test")
        h.core.handleSendFailure(attempt: h.sends.last!.attempt, errno: 1, now: h.now)
        h.drain()
        XCTAssertEqual(h.logs.filter { $0.hasPrefix("failed to send") }.last, "failed to send to 10.0.0.1: Operation not permitted (and 2 more not logged)")
        XCTAssertEqual(h.replies.count, 4)
        XCTAssertTrue(h.replies.allSatisfy { $0.1.rcode == .servFail })
    }
}

final class MismatchFailoverTests: XCTestCase {
    typealias H = CoreHarness

    func testSpoofFromElsewhereDoesNotCauseFailover() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("www.example.test")
        var bad = h.reply(to: 0)
        bad[0] ^= 0x55
        h.deliver(bad, attempt: h.sends[0].attempt, from: H.serverC)
        XCTAssertEqual(h.sends.count, 1)
    }

    func testTimeoutsAreLoggedWithoutLogQueries() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.logQueries = false; $0.policy = .strictOrder }
        _ = h.ask("www.example.test")
        h.run(forMs: 801)
        XCTAssertEqual(h.logs, ["10.0.0.1 did not answer, retrying", "demoting 10.0.0.1 (did not answer); probing it again in 0.5s"])
    }
}

final class ServerSetChangeTests: XCTestCase {
    typealias H = CoreHarness

    /// The soak's crash: the list shrinks while queries wait to be retried.
    func testShrinkingServerListWhileRetriesWait() {
        let h = H(servers: [H.serverA, H.serverB, H.serverC]) { $0.policy = .strictOrder }
        for i in 0..<20 { _ = h.ask("q\(i).hat.test") }
        h.run(forMs: 500)
        h.core.setServers([ServerSpec(endpoint: H.serverA)], now: h.now)
        h.drain()
        let before = h.sends.count
        h.run(forMs: 5000)
        // Every later attempt went to a listed server, and every query got an answer.
        XCTAssertTrue(h.sends[before...].allSatisfy { $0.server == H.serverA }, "\(h.sends[before...].map { $0.server })")
        XCTAssertEqual(h.replies.count, 20)
        XCTAssertEqual(h.core.inFlight, 0)
        XCTAssertEqual(h.core.attempts.count, 0)
    }

    func testQueryWhoseServersAllLeftMovesToTheNewSet() {
        let h = H(servers: [H.serverA]) { $0.policy = .strictOrder }
        _ = h.ask("www.example.test", id: 4)
        h.run(forMs: 801)   // A timed out
        h.core.setServers([ServerSpec(endpoint: H.serverB)], now: h.now)
        h.drain()
        XCTAssertEqual(h.sends.last?.server, H.serverB)
        h.answer(h.sends.count - 1, answers: [H.a("www.example.test", "192.0.2.2")])
        XCTAssertEqual(h.replies.first?.1.header.id, 4)
        XCTAssertEqual(h.replies.first?.1.answers.first?.rdata, .a(IPv4Address("192.0.2.2")!))
    }

    func testLateReplyFromRemovedServerIsStillAccepted() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("www.example.test")
        h.core.setServers([ServerSpec(endpoint: H.serverB)], now: h.now)
        h.drain()
        h.answer(0, answers: [H.a("www.example.test", "192.0.2.1")])
        XCTAssertEqual(h.replies.count, 1)
        XCTAssertEqual(h.core.selector.servers.count, 1)
        XCTAssertEqual(h.core.selector.servers[0].queriesSent, 0)
    }
}

final class HugeCachedAnswerTests: XCTestCase {
    func testAnswerTooBigForAnyUDPReplyIsServedTruncatedFromCache() throws {
        let h = CoreHarness()
        h.out = [UInt8](repeating: 0, count: 4096)   // the shell's UDP reply slot
        let records = (0..<30).map { i in
            ResourceRecord(name: try! DNSName("huge.test"), ttl: 300, rdata: .txt([[UInt8](repeating: UInt8(65 + i % 26), count: 250)]))
        }
        _ = h.ask("huge.test", .txt, from: CoreHarness.client(transport: .tcp))
        h.answer(0, answers: records)
        XCTAssertGreaterThan(h.replies[0].2.count, 4096)
        // Over UDP: TC straight from the cache, not forwarded again.
        let udp = try XCTUnwrap(h.ask("huge.test", .txt))
        XCTAssertTrue(udp.header.truncated)
        XCTAssertEqual(udp.header.id, 0x1234)
        XCTAssertEqual(h.sends.count, 1)
        XCTAssertTrue(h.logs.contains("cached huge.test is truncated"))
    }
}
