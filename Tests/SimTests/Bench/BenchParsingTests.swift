import XCTest
@testable import Sim

final class BenchParsingTests: XCTestCase {
    static let sample = """
    DNS Performance Testing Tool
    Version 2.10.0

    [Status] Command line: dnsperf -s 10.53.0.2 -p 53 -d burst.txt -n 1 -q 2000
    [Status] Sending queries (to 10.53.0.2:53)
    [Status] Testing complete (end of file)

    Statistics:

      Queries sent:         20000
      Queries completed:    19990 (99.95%)
      Queries lost:         10 (0.05%)

      Response codes:       NOERROR 19000 (95.05%), SERVFAIL 345 (1.73%), REFUSED 645 (3.23%)
      Average packet size:  request 34, response 50
      Run time (s):         1.250000
      Queries per second:   15992.000000

      Average Latency (s):  0.001161 (min 0.000018, max 0.015641)
      Latency StdDev (s):   0.001766

    """

    func testDnsperfStatistics() throws {
        let r = try DnsperfResult.parse(Self.sample)
        XCTAssertEqual(r.sent, 20000)
        XCTAssertEqual(r.completed, 19990)
        XCTAssertEqual(r.lost, 10)
        XCTAssertEqual(r.count("NOERROR"), 19000)
        XCTAssertEqual(r.count("SERVFAIL"), 345)
        XCTAssertEqual(r.count("REFUSED"), 645)
        XCTAssertEqual(r.count("NXDOMAIN"), 0)
        XCTAssertEqual(r.runTime, 1.25, accuracy: 1e-9)
        XCTAssertEqual(r.qps, 15992, accuracy: 1e-6)
        XCTAssertEqual(r.avgLatency, 0.001161, accuracy: 1e-9)
        XCTAssertEqual(r.minLatency, 0.000018, accuracy: 1e-9)
        XCTAssertEqual(r.maxLatency, 0.015641, accuracy: 1e-9)
    }

    func testDnsperfNothingAnswered() throws {
        let text = """
        Statistics:
          Queries sent:         5
          Queries completed:    0 (0.00%)
          Queries lost:         5 (100.00%)

          Run time (s):         5.000000
          Queries per second:   0.000000
        """
        let r = try DnsperfResult.parse(text)
        XCTAssertEqual(r.completed, 0)
        XCTAssertEqual(r.lost, 5)
        XCTAssertTrue(r.rcodes.isEmpty)
        XCTAssertEqual(r.avgLatency, 0)
    }

    func testDnsperfMissingLineIsNamed() {
        let text = Self.sample.replacingOccurrences(of: "Queries lost:", with: "Queries mislaid:")
        XCTAssertThrowsError(try DnsperfResult.parse(text)) { e in
            XCTAssertTrue("\(e)".contains("Queries lost"), "\(e)")
        }
        XCTAssertThrowsError(try DnsperfResult.parse("dnsperf: error: could not open file\n"))
    }

    func testDnsperfBadResponseCodes() {
        let text = Self.sample.replacingOccurrences(of: "SERVFAIL 345", with: "SERVFAIL many")
        XCTAssertThrowsError(try DnsperfResult.parse(text)) { e in
            XCTAssertTrue("\(e)".contains("SERVFAIL many"), "\(e)")
        }
    }

    func testProcStatCPU() throws {
        // Field 2 may contain spaces and ')'; utime is field 14, stime field 15.
        let stat = "4242 (for ward) er) S 1 4242 4242 0 -1 4194560 812 0 0 0 137 58 0 0 20 0 1 0 99 123456 789 0 0 0\n"
        XCTAssertEqual(try ProcFigures.cpuTicks(stat: stat), 137 + 58)
        let split = try ProcFigures.cpuTicksSplit(stat: stat)
        XCTAssertEqual(split.user, 137)
        XCTAssertEqual(split.system, 58)
        XCTAssertThrowsError(try ProcFigures.cpuTicks(stat: "4242 (x) S 1 2"))
        XCTAssertThrowsError(try ProcFigures.cpuTicks(stat: "no parenthesis"))
    }

    func testProcStatusRSS() throws {
        let status = "Name:\tdnsmasq\nVmPeak:\t  12000 kB\nVmRSS:\t    3456 kB\nRssAnon:\t 1000 kB\n"
        XCTAssertEqual(try ProcFigures.rssKB(status: status), 3456)
        XCTAssertThrowsError(try ProcFigures.rssKB(status: "Name:\tzombie\nState:\tZ\n")) { e in
            XCTAssertTrue("\(e)".contains("VmRSS"), "\(e)")
        }
    }

    func testVoluntarySwitches() throws {
        let status = "Name:\tforwarder\nvoluntary_ctxt_switches:\t30844\nnonvoluntary_ctxt_switches:\t12\n"
        XCTAssertEqual(try ProcFigures.voluntarySwitches(status: status), 30844)
        XCTAssertThrowsError(try ProcFigures.voluntarySwitches(status: "Name:\tx\n"))
        XCTAssertThrowsError(try ProcFigures.voluntarySwitches(status: "voluntary_ctxt_switches:\tlots\n"))
    }

    func testWakeupsPerQuery() {
        let r = DnsperfResult(sent: 1000, completed: 800, lost: 200, rcodes: ["NOERROR": 800], runTime: 1, qps: 800,
                              avgLatency: 0, minLatency: 0, maxLatency: 0)
        XCTAssertEqual(BenchPhase(name: "hit", offeredQPS: nil, dnsperf: r, cpuSeconds: 0, wakeups: 200).wakeupsPerQuery!, 0.25, accuracy: 1e-12)
        XCTAssertNil(BenchPhase(name: "hit", offeredQPS: nil, dnsperf: r, cpuSeconds: 0).wakeupsPerQuery)
        // The kernel's share per answered query: 0.4 s of stime over 800 answers = 500 µs.
        XCTAssertEqual(BenchPhase(name: "hit", offeredQPS: nil, dnsperf: r, cpuSeconds: 1, systemSeconds: 0.4).systemMicrosPerQuery!, 500, accuracy: 1e-9)
        XCTAssertNil(BenchPhase(name: "hit", offeredQPS: nil, dnsperf: r, cpuSeconds: 1).systemMicrosPerQuery)
    }

    func testProcFiguresOfThisProcess() throws {
        let stat = try String(contentsOfFile: "/proc/self/stat", encoding: .utf8)
        XCTAssertGreaterThanOrEqual(try ProcFigures.cpuTicks(stat: stat), 0)
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        XCTAssertGreaterThan(try ProcFigures.rssKB(status: status), 0)
    }
}
