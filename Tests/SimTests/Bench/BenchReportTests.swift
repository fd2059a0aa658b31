import Foundation
import XCTest
@testable import Sim

final class BenchReportTests: XCTestCase {
    func result(completed: Int, refused: Int = 0, avg: Double = 0.001) -> DnsperfResult {
        DnsperfResult(sent: completed + 1, completed: completed, lost: 1,
                      rcodes: ["NOERROR": completed - refused, "REFUSED": refused].filter { $0.value > 0 },
                      runTime: 2, qps: Double(completed) / 2, avgLatency: avg, minLatency: 0, maxLatency: 0.01)
    }

    func subject(_ name: String, hit: Double, miss: Double, refused: Int, perEntry: Double?) -> BenchSubjectResult {
        // cpuSeconds chosen so that µs/query = hit/miss over 100000 answered.
        BenchSubjectResult(subject: name, command: [name], phases: [
            BenchPhase(name: "hit", offeredQPS: 20000, dnsperf: result(completed: 100_000), cpuSeconds: hit / 10),
            BenchPhase(name: "miss", offeredQPS: 5000, dnsperf: result(completed: 100_000), cpuSeconds: miss / 10),
            BenchPhase(name: "burst", offeredQPS: nil, dnsperf: result(completed: 10_000, refused: refused), cpuSeconds: 0.5),
        ], rssKB: 4096, rssPerEntryBytes: perEntry, entries: perEntry == nil ? nil : 100_000)
    }

    func testCPUPerQuery() {
        let p = BenchPhase(name: "hit", offeredQPS: 1, dnsperf: result(completed: 50_000), cpuSeconds: 0.75)
        XCTAssertEqual(p.cpuMicrosPerQuery!, 15, accuracy: 1e-9)
        let none = BenchPhase(name: "hit", offeredQPS: 1, dnsperf: result(completed: 0), cpuSeconds: 0.75)
        XCTAssertNil(none.cpuMicrosPerQuery)
    }

    func testGoalsMetAndNotMet() {
        let r = BenchReport(date: "d", secondsPerPhase: 5, hitQPS: 20000, missQPS: 5000, burstInFlight: 2000, subjects: [
            subject("ours", hit: 8, miss: 30, refused: 0, perEntry: 200),
            subject("dnsmasq", hit: 17.2, miss: 55.2, refused: 645, perEntry: 150),
            subject("unbound", hit: 15.3, miss: 68.4, refused: 0, perEntry: nil),
        ])
        let status = Dictionary(uniqueKeysWithValues: r.goals.map { ($0.goal, $0.status) })
        XCTAssertEqual(status["hit CPU/query <= 0.5x dnsmasq"], .met)          // 8 <= 8.6
        XCTAssertEqual(status["miss CPU/query <= 0.5x dnsmasq"], .notMet)      // 30 > 27.6
        XCTAssertEqual(status["hit CPU/query <= unbound"], .met)
        XCTAssertEqual(status["miss CPU/query <= unbound"], .met)
        XCTAssertEqual(status["zero REFUSED in the burst"], .met)
        XCTAssertEqual(status["RSS per cached entry <= dnsmasq"], .notMet)     // 200 > 150
        XCTAssertTrue(r.goalLines().contains("goal: miss CPU/query <= 0.5x dnsmasq: not met"), r.goalLines())
    }

    func testGoalsWithoutPeersAreUnknown() {
        let r = BenchReport(date: "d", secondsPerPhase: 5, hitQPS: 1, missQPS: 1, burstInFlight: 1,
                            subjects: [subject("ours", hit: 8, miss: 30, refused: 3, perEntry: 100)])
        XCTAssertEqual(r.goals.filter { $0.status == .unknown }.count, 5)
        XCTAssertEqual(r.goals.first { $0.goal == "zero REFUSED in the burst" }?.status, .notMet)
    }

    func testTableHasColumnsAndRatios() {
        let r = BenchReport(date: "d", secondsPerPhase: 5, hitQPS: 20000, missQPS: 5000, burstInFlight: 2000, subjects: [
            subject("ours", hit: 8, miss: 30, refused: 0, perEntry: 200),
            subject("dnsmasq", hit: 16, miss: 60, refused: 645, perEntry: 100),
        ])
        let lines = r.table().split(separator: "\n").map(String.init)
        XCTAssertEqual(lines[0].split(separator: " ").map(String.init), ["metric", "ours", "dnsmasq", "ours/dnsmasq"])
        let hit = lines.first { $0.hasPrefix("hit CPU µs/query") }!
        XCTAssertEqual(hit.split(separator: " ").suffix(3).map(String.init), ["8.00", "16.00", "0.50x"])
        let perEntry = lines.first { $0.hasPrefix("RSS per cached entry") }!
        XCTAssertEqual(perEntry.split(separator: " ").suffix(3).map(String.init), ["200", "100", "2.00x"])
        // Counts get no ratio.
        let refused = lines.first { $0.hasPrefix("burst REFUSED") }!
        XCTAssertEqual(refused.split(separator: " ").suffix(3).map(String.init), ["0", "645", "-"])
        // Columns line up: every row is as wide as the header.
        XCTAssertEqual(Set(lines.filter { !$0.contains(":") }.map(\.count)).count, 1, r.table())
    }

    func testJSONRoundTrip() throws {
        let r = BenchReport(date: "2026-11-22T00:00:00Z", secondsPerPhase: 5, hitQPS: 20000, missQPS: 5000,
                            burstInFlight: 2000, subjects: [subject("ours", hit: 8, miss: 30, refused: 0, perEntry: 120)])
        let data = try r.json()
        let back = try JSONDecoder().decode(BenchReport.self, from: data)
        XCTAssertEqual(back, r)
        let obj = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let subjects = obj["subjects"] as! [[String: Any]]
        XCTAssertEqual(subjects.first?["subject"] as? String, "ours")
        let goals = obj["goals"] as! [[String: Any]]
        XCTAssertTrue(goals.contains { ($0["status"] as? String) == "n/a" })
    }
}

final class BenchMedianTests: XCTestCase {
    func phase(_ name: String, cpu: Double, completed: Int = 1000) -> BenchPhase {
        BenchPhase(name: name, offeredQPS: nil,
                   dnsperf: DnsperfResult(sent: completed, completed: completed, lost: 0, rcodes: ["NOERROR": completed],
                                          runTime: 1, qps: Double(completed), avgLatency: 0, minLatency: 0, maxLatency: 0),
                   cpuSeconds: cpu)
    }

    func testMedianPicksMiddleRoundPerPhase() {
        let rounds = [
            BenchSubjectResult(subject: "ours", phases: [phase("hit", cpu: 0.030), phase("miss", cpu: 0.1)], rssKB: 300,
                               rssPerEntryBytes: 200),
            BenchSubjectResult(subject: "ours", phases: [phase("hit", cpu: 0.010), phase("miss", cpu: 0.3)], rssKB: 100),
            BenchSubjectResult(subject: "ours", phases: [phase("hit", cpu: 0.020), phase("miss", cpu: 0.2)], rssKB: 200),
        ]
        let m = BenchSubjectResult.median(of: rounds)
        XCTAssertEqual(m.phase("hit")!.cpuMicrosPerQuery!, 20, accuracy: 1e-9)
        XCTAssertEqual(m.phase("miss")!.cpuMicrosPerQuery!, 200, accuracy: 1e-9)
        XCTAssertEqual(m.rssKB, 200)
        XCTAssertEqual(m.rssPerEntryBytes, 200)
        XCTAssertNil(m.error)
    }

    func testMedianNamesFailedRounds() {
        let rounds = [
            BenchSubjectResult(subject: "dnsmasq", phases: [phase("hit", cpu: 0.02)]),
            BenchSubjectResult(subject: "dnsmasq", error: "dnsmasq exited at start"),
        ]
        let m = BenchSubjectResult.median(of: rounds)
        XCTAssertEqual(m.phase("hit")!.cpuMicrosPerQuery!, 20, accuracy: 1e-9)
        XCTAssertEqual(m.error, "round 2: dnsmasq exited at start")
    }
}
