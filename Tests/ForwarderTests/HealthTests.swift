import XCTest
import DNSWire
@testable import Forwarder

/// Upstream health, policies and failover on a virtual clock (issue 5): no sockets, no real time.
final class HealthTests: XCTestCase {
    typealias H = CoreHarness
    static let ms: UInt64 = 1_000_000

    /// A query that A fails with `rcode` and B answers: A is demoted (its first probe is
    /// due 500 ms later).
    func demoteA(_ h: H, rcode: RCode = .refused) {
        _ = h.ask("r.test")
        h.answer(0, rcode: rcode)
        h.answer(1, answers: [H.a("r.test", "192.0.2.1")])
    }

    /// Asks `name`, lets `answerer` reply to each new send (nil: that server is silent),
    /// and runs the clock until the client has a reply or `maxMs` passed. Returns the latency (ms).
    @discardableResult
    func exchange(_ h: H, _ name: String, maxMs: UInt64 = 5000,
                  answerer: (Endpoint) -> (rcode: RCode, afterMs: UInt64)?) -> UInt64? {
        let start = h.now
        let replies = h.replies.count
        var handled = h.sends.count
        var planned: [(at: UInt64, idx: Int)] = []
        _ = h.ask(name)
        while h.replies.count == replies && h.now - start < maxMs * Self.ms {
            for i in handled..<h.sends.count {
                if let a = answerer(h.sends[i].server) { planned.append((h.now + a.afterMs * Self.ms, i)) }
            }
            handled = h.sends.count
            let nextTimer = h.core.nextDeadline() ?? .max
            if let k = planned.indices.min(by: { planned[$0].at < planned[$1].at }), planned[k].at <= nextTimer {
                let (at, idx) = planned.remove(at: k)
                let a = answerer(h.sends[idx].server)!
                let rr: [ResourceRecord] = a.rcode == .noError ? [H.a(name, "192.0.2.1")] : []
                h.now = at
                let bytes = h.reply(to: idx, rcode: a.rcode, answers: rr)
                bytes.withUnsafeBytes { h.core.handleUpstreamReply(attempt: h.sends[idx].attempt, bytes: $0, from: h.sends[idx].server, now: h.now) }
                h.drain()
            } else if nextTimer != .max {
                h.now = max(h.now, nextTimer)
                h.core.handleTimers(now: h.now)
                h.drain()
            } else {
                break
            }
        }
        guard h.replies.count > replies else { return nil }
        return (h.now - start) / Self.ms
    }

    func sendsTo(_ h: H, _ ep: Endpoint, from: Int = 0) -> Int {
        h.sends[from...].filter { $0.server == ep }.count
    }

    // MARK: demotion and probing

    func testSilentServerIsDemotedOnFirstTimeoutThenOnlyProbedWithBackoff() {
        let h = H(servers: [H.serverA, H.serverB])
        let answerer: (Endpoint) -> (RCode, UInt64)? = { $0 == H.serverB ? (.noError, 20) : nil }
        let first = exchange(h, "q0.test", answerer: answerer)
        XCTAssertEqual(first, 520, "A's unknown-server timeout (500 ms), then B's 20 ms")
        XCTAssertTrue(h.logs.contains("10.0.0.1 did not answer, retrying"))
        XCTAssertTrue(h.logs.contains("demoting 10.0.0.1 (did not answer); probing it again in 0.5s"), "\(h.logs)")
        XCTAssertEqual(h.core.selector.servers[0].health, .demoted)
        // 10 s of steady queries (one per 50 ms): A sees only probes, with a growing backoff.
        var probeTimes: [UInt64] = []
        var latencies: [UInt64] = []
        for i in 1...200 {
            h.now += 30 * Self.ms
            let before = h.sends.count
            let l = exchange(h, "q\(i).test", answerer: answerer)
            latencies.append(l ?? .max)
            if (l ?? .max) > 20 && ProcessInfo.processInfo.environment["HDEBUG"] != nil { print("SLOW \(i) \(l ?? 0)"); print(h.logs.suffix(12).joined(separator: "\n")) }
            if h.sends[before...].contains(where: { $0.server == H.serverA }) { probeTimes.append(h.now) }
        }
        XCTAssertTrue(latencies.allSatisfy { $0 <= 20 }, "no client waits on the demoted server: \(latencies.max()!)")
        XCTAssertGreaterThanOrEqual(probeTimes.count, 3)
        XCTAssertLessThanOrEqual(probeTimes.count, 6)
        let gaps = zip(probeTimes.dropFirst(), probeTimes).map { $0 - $1 }
        XCTAssertEqual(gaps, gaps.sorted(), "probe intervals grow: \(gaps)")
        XCTAssertTrue(h.logs.contains { $0.hasPrefix("probe of 10.0.0.1 failed (did not answer); probing it again in 1.0s") }, "\(h.logs.filter { $0.contains("probe") })")
        XCTAssertTrue(h.logs.contains { $0.hasPrefix("probe of 10.0.0.1 failed (did not answer); probing it again in 2.0s") })
    }

    func testProbeIsACopyOfARealQuerySentInParallel() {
        let h = H(servers: [H.serverA, H.serverB])
        demoteA(h)
        XCTAssertEqual(h.core.selector.servers[0].health, .demoted)
        h.now += 400 * Self.ms
        _ = h.ask("early.test")
        XCTAssertEqual(h.sends.last?.server, H.serverB, "no probe before the backoff")
        XCTAssertEqual(h.sends.count, 3)
        h.answer(2, answers: [H.a("early.test", "192.0.2.1")])
        h.now += 200 * Self.ms
        _ = h.ask("probe.test")
        XCTAssertEqual(h.sends.suffix(2).map { $0.server }, [H.serverB, H.serverA])
        XCTAssertEqual(h.sends.suffix(2).map { $0.message.questions.first?.name.description }, ["probe.test", "probe.test"])
        XCTAssertEqual(h.core.selector.servers[0].health, .probing)
        // One probe at a time.
        _ = h.ask("another.test")
        XCTAssertEqual(h.sends.last?.server, H.serverB)
        XCTAssertEqual(h.sends.count, 6)
    }

    func testProbeVerdictCountsEvenWhenTheQueryWasAnsweredElsewhere() {
        // A recovered but is slower than B: the probe's late reply still restores A.
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        demoteA(h, rcode: .servFail)
        h.now += 600 * Self.ms
        _ = h.ask("probe.test")
        XCTAssertEqual(h.sends.suffix(2).map { $0.server }, [H.serverB, H.serverA])
        h.answer(2, answers: [H.a("probe.test", "192.0.2.1")], afterMs: 20)   // B wins
        XCTAssertEqual(h.replies.count, 2)
        XCTAssertEqual(h.core.inFlight, 0)
        XCTAssertTrue(h.core.hasAttempt(h.sends[3].attempt), "the probe stays out for its verdict")
        h.answer(3, answers: [H.a("probe.test", "192.0.2.1")], afterMs: 60)
        XCTAssertEqual(h.core.selector.servers[0].health, .healthy)
        XCTAssertTrue(h.logs.contains("10.0.0.1 answers again; back in use"))
        XCTAssertFalse(h.core.hasAttempt(h.sends[3].attempt))
        XCTAssertEqual(h.replies.count, 2, "the late probe reply goes to no client")
        // Fail-back: strict order starts with A again.
        _ = h.ask("after.test")
        XCTAssertEqual(h.sends.last?.server, H.serverA)
    }

    func testAProbeThatAnswersFirstIsDoneAndTheServerStaysUp() {
        let h = H(servers: [H.serverA, H.serverB])
        demoteA(h)
        h.now += 600 * Self.ms
        _ = h.ask("probe.test")
        XCTAssertEqual(h.sends.suffix(2).map { $0.server }, [H.serverB, H.serverA])
        h.answer(3, answers: [H.a("probe.test", "192.0.2.1")], afterMs: 1)   // the probe wins
        XCTAssertEqual(h.replies.count, 2)
        XCTAssertEqual(h.core.attempts.count, 0, "no attempt left behind")
        h.run(forMs: 3000)
        XCTAssertEqual(h.core.selector.servers[0].health, .healthy)
        XCTAssertEqual(h.logs.filter { $0.hasPrefix("demoting") }.count, 1, "\(h.logs)")
    }

    func testOrphanedProbeTimeoutDoublesTheBackoff() {
        let h = H(servers: [H.serverA, H.serverB])
        demoteA(h)
        h.now += 600 * Self.ms
        _ = h.ask("probe.test")
        h.answer(2, answers: [H.a("probe.test", "192.0.2.1")], afterMs: 20)
        h.run(forMs: 1000)
        XCTAssertEqual(h.core.selector.servers[0].health, .demoted)
        XCTAssertEqual(h.core.selector.servers[0].backoff, 1_000_000_000)
        XCTAssertTrue(h.logs.contains("probe of 10.0.0.1 failed (did not answer); probing it again in 1.0s"), "\(h.logs)")
        XCTAssertEqual(h.core.attempts.count, 0)
        XCTAssertEqual(Set(h.cancels), Set(h.sends.map { $0.attempt }))
    }

    // MARK: policies

    func testStrictOrderMovesOnAtOnceAndSkipsTheDemotedServer() {
        let h = H(servers: [H.serverA, H.serverB, H.serverC]) { $0.policy = .strictOrder }
        let l0 = exchange(h, "s0.test") { $0 == H.serverA ? (.refused, 1) : (.noError, 10) }
        XCTAssertEqual(l0, 11, "REFUSED: the next server at once")
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverB])
        let l1 = exchange(h, "s1.test") { $0 == H.serverA ? (.refused, 1) : (.noError, 10) }
        XCTAssertEqual(l1, 10)
        XCTAssertEqual(h.sends.last?.server, H.serverB, "list order among healthy servers")
        // B fails too: C, in list order.
        _ = exchange(h, "s2.test") { $0 == H.serverC ? (.noError, 10) : (.servFail, 1) }
        XCTAssertEqual(h.sends.suffix(2).map { $0.server }, [H.serverB, H.serverC])
    }

    func testStrictOrderSilentFirstServerNeverTimesOutTheClient() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        var worst: UInt64 = 0
        for i in 0..<50 {
            h.now += 50 * Self.ms
            let l = exchange(h, "t\(i).test") { $0 == H.serverB ? (.noError, 20) : nil }
            worst = max(worst, l ?? .max)
        }
        XCTAssertEqual(worst, 520)
        XCTAssertEqual(h.replies.filter { $0.1.rcode == .noError }.count, 50)
        XCTAssertLessThanOrEqual(sendsTo(h, H.serverA), 4, "A is demoted, then only probed")
    }

    func testBestRTTPrefersTheFasterServerAndExploresWithinTheBand() {
        let h = H(servers: [H.serverA, H.serverB, H.serverC])
        // A 50 ms, B 5 ms, C 900 ms (outside the 400 ms band of B).
        let rtt: (Endpoint) -> (RCode, UInt64)? = { $0 == H.serverA ? (.noError, 50) : $0 == H.serverB ? (.noError, 5) : (.noError, 900) }
        // Measure each once: unknown servers go in list order; exploration finds the others.
        for i in 0..<200 { h.now += 10 * Self.ms; exchange(h, "w\(i).test", answerer: rtt) }
        let last100 = h.sends.suffix(100)
        let toB = last100.filter { $0.server == H.serverB }.count
        XCTAssertGreaterThanOrEqual(toB, 85, "B is the best")
        XCTAssertGreaterThanOrEqual(last100.filter { $0.server == H.serverA }.count, 1, "A is explored now and then")
        // C (unknown at first) is explored, times out, is demoted, and from then on only probed.
        XCTAssertLessThanOrEqual(last100.filter { $0.server == H.serverC }.count, 2)
    }

    func testAllServersSendsToEveryServerEvenADemotedOne() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .allServers }
        for i in 0..<5 {
            h.now += 100 * Self.ms
            let l = exchange(h, "a\(i).test") { $0 == H.serverB ? (.noError, 20) : nil }
            XCTAssertEqual(l, 20, "the first good reply wins; nobody waits on A")
        }
        XCTAssertEqual(sendsTo(h, H.serverA), 5)
        XCTAssertEqual(sendsTo(h, H.serverB), 5)
    }

    // MARK: timeouts

    func testTimeoutIsDerivedFromTheMeasuredRTT() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        XCTAssertEqual(h.core.selector.timeout(for: 0), 500 * Self.ms, "never measured")
        for i in 0..<20 { h.now += 10 * Self.ms; exchange(h, "m\(i).test") { _ in (.noError, 100) } }
        let t = h.core.selector.timeout(for: 0)
        XCTAssertGreaterThanOrEqual(t, 200 * Self.ms)
        XCTAssertLessThanOrEqual(t, 320 * Self.ms, "a few times the smoothed RTT")
        // A fast server hits the floor; each timeout in a row doubles the next one, up to the cap.
        var sel = UpstreamSelector(policy: .bestRTT)
        sel.setServers([ServerSpec(endpoint: H.serverA)])
        sel.noteRTT(0, rtt: 0.001)
        XCTAssertEqual(sel.timeout(for: 0), sel.minTimeout)
        _ = sel.noteFailure(0, now: 0, timedOut: true)
        XCTAssertEqual(sel.timeout(for: 0), 2 * sel.minTimeout)
        for _ in 0..<10 { _ = sel.noteFailure(0, now: 0, timedOut: true) }
        XCTAssertEqual(sel.timeout(for: 0), sel.maxTimeout)
        XCTAssertEqual(sel.timeout(for: 0, probe: true), sel.unknownTimeout, "a probe waits the base timeout, not the doubled one")
    }

    func testEverySilentServerGivesServfailWithinTwoSeconds() {
        let h = H(servers: [H.serverA, H.serverB])
        let l = exchange(h, "dead.test") { _ in nil }
        XCTAssertEqual(h.replies.last?.1.rcode, .servFail)
        XCTAssertNotNil(l)
        XCTAssertLessThanOrEqual(l ?? .max, 1550, "A 500 ms, B 500 ms, A again, then SERVFAIL at allDownDeadline (1.5 s)")
        XCTAssertGreaterThanOrEqual(sendsTo(h, H.serverA), 1)
        XCTAssertGreaterThanOrEqual(sendsTo(h, H.serverB), 1)
        // Every server demoted: the next query still tries them (and may find one back).
        let l2 = exchange(h, "dead2.test") { $0 == H.serverB ? (.noError, 30) : nil }
        XCTAssertNotNil(l2)
        XCTAssertEqual(h.replies.last?.1.rcode, .noError)
        XCTAssertEqual(h.core.selector.servers[1].health, .healthy)
    }

    // MARK: replies that mean "try the next server"

    func testMismatchedIDIsIgnoredNotFailedOverThenTheTimeoutDecides() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("w.test")
        var wrong = h.reply(to: 0, answers: [H.a("w.test", "192.0.2.66")])
        wrong[0] ^= 0x5A
        h.deliver(wrong, attempt: h.sends[0].attempt, from: H.serverA)
        XCTAssertEqual(h.sends.count, 1, "one mismatched reply may be a forgery: no failover on it alone")
        XCTAssertTrue(h.logs.contains("reply from 10.0.0.1 has a mismatched ID or question, ignored"))
        XCTAssertEqual(h.core.selector.servers[0].mismatched, 1)
        // The genuine reply still wins.
        h.answer(0, answers: [H.a("w.test", "192.0.2.1")])
        XCTAssertEqual(h.replies.first?.1.answers.first?.rdata, .a(IPv4Address("192.0.2.1")!))
        // A server that only ever mismatches is failed over on its timeout.
        _ = h.ask("w2.test")
        var wrong2 = h.reply(to: 1, answers: [])
        wrong2[1] ^= 0x01
        h.deliver(wrong2, attempt: h.sends[1].attempt, from: H.serverA)
        h.run(forMs: 600)
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverA, H.serverB])
        XCTAssertEqual(h.core.selector.servers[0].health, .demoted)
        // ...and the client gets B's answer.
        h.answer(2, answers: [H.a("w2.test", "192.0.2.2")])
        XCTAssertEqual(h.replies.last?.1.answers.first?.rdata, .a(IPv4Address("192.0.2.2")!))
    }

    func testUnreadableReplyWithOurIDFailsOverAtOnce() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("g.test")
        let id = h.sends[0].message.header.id
        var junk: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        for i in 0..<12 { junk += [0xC0 | UInt8(i), 0xFF] }
        h.deliver(junk, attempt: h.sends[0].attempt, from: H.serverA)
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverB])
        XCTAssertTrue(h.logs.contains("reply from 10.0.0.1 is malformed, retrying"))
        XCTAssertTrue(h.logs.contains("demoting 10.0.0.1 (malformed reply); probing it again in 0.5s"))
    }

    func testSendErrorDemotesAndFailsOverAtOnce() {
        let h = H(servers: [H.serverA, H.serverB])
        _ = h.ask("e.test")
        h.core.handleSendFailure(attempt: h.sends[0].attempt, errno: 1, now: h.now)
        h.drain()
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverB])
        XCTAssertEqual(h.core.selector.servers[0].health, .demoted)
        XCTAssertTrue(h.logs.contains("demoting 10.0.0.1 (Operation not permitted); probing it again in 0.5s"), "\(h.logs)")
    }

    func testTruncatedReplyThenTCPResetDemotesTheServer() {
        let h = H(servers: [H.serverA, H.serverB]) { $0.policy = .strictOrder }
        _ = h.ask("big.test", .txt)
        h.deliver(h.reply(to: 0) { $0.header.truncated = true }, attempt: h.sends[0].attempt, from: H.serverA)
        XCTAssertEqual(h.core.selector.servers[0].health, .healthy, "not judged before the TCP retry")
        h.core.handleSendFailure(attempt: h.sends[1].attempt, errno: 104, now: h.now)
        h.drain()
        XCTAssertEqual(h.sends.map { $0.server }, [H.serverA, H.serverA, H.serverB])
        XCTAssertEqual(h.core.selector.servers[0].health, .demoted)
        h.answer(2, answers: [H.a("big.test", "192.0.2.2")])
        _ = h.ask("next.test")
        XCTAssertEqual(h.sends.last?.server, H.serverB, "strict order skips the demoted A")
    }

    // MARK: bookkeeping

    func testBlackHoleWithOneServerLeavesNothingInFlight() {
        let h = H(servers: [H.serverA])
        for i in 0..<3000 {
            if i % 25 == 0 { h.now += 10 * Self.ms; h.core.handleTimers(now: h.now); h.drain() }
            _ = h.ask("bh\(i).test")
        }
        h.run(forMs: 10_000)
        XCTAssertEqual(h.core.inFlight, 0)
        XCTAssertEqual(h.replies.count, 3000)
        XCTAssertEqual(h.core.attempts.count, 0)
    }

    func testStatisticsShowHealth() {
        let h = H(servers: [H.serverA, H.serverB])
        demoteA(h)
        h.advance(ms: 100)
        let lines = h.core.statisticsLines()
        XCTAssertTrue(lines.contains { $0.hasPrefix("server 10.0.0.1#53:") && $0.contains("health demoted for 105ms, next probe in 395ms") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("server 10.0.0.2#5353:") && $0.contains("health healthy") && $0.contains("srtt 5ms") }, "\(lines)")
    }
}

final class AllDownTests: XCTestCase {
    typealias H = CoreHarness

    func testWhenEveryServerIsKnownDownTheClientGetsServfailWithinOneBaseTimeoutEach() {
        let h = H(servers: [H.serverA, H.serverB])
        _ = h.ask("first.test")
        h.run(forMs: 3000)
        XCTAssertEqual(h.replies.last?.1.rcode, .servFail)
        XCTAssertFalse(h.core.selector.servers.contains { $0.isHealthy })
        // Now both are known down: the next query tries each once with its base timeout.
        let start = h.now
        let sent = h.sends.count
        _ = h.ask("second.test")
        var when: UInt64 = 0
        while h.replies.count < 2, let d = h.core.nextDeadline() {
            h.now = d; h.core.handleTimers(now: d); h.drain(); when = h.now
        }
        XCTAssertEqual(h.replies.last?.1.rcode, .servFail)
        XCTAssertLessThanOrEqual((when - start) / 1_000_000, 1050)
        XCTAssertEqual(Set(h.sends[sent...].map { $0.server }), [H.serverA, H.serverB], "each server got its chance")
    }

    func testALoneKnownDownServerGetsOneRetransmissionThenServfail() {
        let h = H(servers: [H.serverA])
        _ = h.ask("first.test")
        h.run(forMs: 3000)
        XCTAssertEqual(h.core.selector.servers[0].health, .demoted)
        let start = h.now, sent = h.sends.count
        _ = h.ask("second.test")
        var when: UInt64 = 0
        while h.replies.count < 2, let d = h.core.nextDeadline() {
            h.now = d; h.core.handleTimers(now: d); h.drain(); when = h.now
        }
        XCTAssertEqual(h.replies.last?.1.rcode, .servFail)
        XCTAssertEqual(h.sends.count - sent, 2)
        XCTAssertLessThanOrEqual((when - start) / 1_000_000, 1050)
    }

    func testAKnownDownServerThatAnswersIsBackAtOnce() {
        let h = H(servers: [H.serverA])
        _ = h.ask("first.test")
        h.run(forMs: 3000)
        XCTAssertEqual(h.core.selector.servers[0].health, .demoted)
        _ = h.ask("second.test")
        h.answer(h.sends.count - 1, answers: [H.a("second.test", "192.0.2.1")], afterMs: 30)
        XCTAssertEqual(h.replies.last?.1.rcode, .noError)
        XCTAssertEqual(h.core.selector.servers[0].health, .healthy)
    }
}
