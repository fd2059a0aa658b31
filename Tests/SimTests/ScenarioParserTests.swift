import Foundation
import XCTest
@testable import Sim

/// The scenario file format: every shipped scenario parses, and every kind of
/// mistake is rejected with the file, the line and the reason.
final class ScenarioParserTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    func testEveryShippedScenarioParses() throws {
        let files = try ScenarioCatalog.find(paths: [Self.repoRoot.appendingPathComponent("scenarios").path])
        XCTAssertGreaterThanOrEqual(files.count, 6, "the smoke scenarios at least")
        for f in files {
            XCTAssertNoThrow(try ScenarioParser.load(path: f), f)
        }
    }

    private func rejects(_ yaml: String, line: Int, _ reason: String, file: StaticString = #filePath, at: UInt = #line) {
        do {
            _ = try ScenarioParser.parse(yaml, file: "x/bad.yaml")
            XCTFail("accepted a bad scenario", file: file, line: at)
        } catch let e as ScenarioError {
            XCTAssertEqual(e.file, "x/bad.yaml", file: file, line: at)
            XCTAssertEqual(e.line, line, "\(e)", file: file, line: at)
            XCTAssertTrue(e.reason.contains(reason), "\(e.reason) lacks \(reason)", file: file, line: at)
        } catch {
            XCTFail("wrong error type \(error)", file: file, line: at)
        }
    }

    let base = """
    name: t
    hosts:
      a: { links: { eth0: l }, addresses: { eth0: [10.0.0.1/24] } }
      b: { links: { eth0: l }, addresses: { eth0: [10.0.0.2/24] } }
    upstreams:
      u: { host: b, address: 10.0.0.2, zone: { x.test: { A: 1.2.3.4 } } }

    """

    func testMinimalScenario() throws {
        let s = try ScenarioParser.parse(base + """
        steps:
          - query: { from: a, to: 10.0.0.2, name: x.test }
            expect: { answer: 1.2.3.4, within: 150ms }
        """, file: "fam/min.yaml")
        XCTAssertEqual(s.id, "min")
        XCTAssertEqual(s.family, "fam")
        XCTAssertEqual(s.hosts.map(\.name), ["a", "b"])
        XCTAssertEqual(s.upstreams.first?.zone, [ZoneEntrySpec(name: "x.test", type: "A", value: "1.2.3.4", ttl: 300)])
        XCTAssertEqual(s.steps.count, 1)
        XCTAssertEqual(s.steps[0].expect?.within, 0.15)
        XCTAssertEqual(s.steps[0].expect?.answers, ["1.2.3.4"])
        XCTAssertEqual(s.subjects["unbound"], .passes, "no forwarder: any subject")
    }

    func testErrorsNameFileLineAndReason() {
        rejects("name: t\nhosts: [a, b\nsteps: []\n", line: 3, "not valid YAML")
        rejects("", line: 1, "empty")
        rejects("hosts: {}\n", line: 1, "needs 'name'")
        rejects("name: t\nhots: {}\n", line: 2, "unknown key 'hots'")
        rejects("name: t\nname: u\n", line: 2, "duplicate key 'name'")
        rejects(base + "steps:\n  - query: { from: a, to: 10.0.0.2, name: x.test }\n", line: 8, "needs expect")
        rejects(base + "steps:\n  - query: { from: zz, to: 10.0.0.2, name: x.test }\n    expect: { rcode: NOERROR }\n",
                line: 8, "no host named 'zz'")
        rejects(base + "steps:\n  - query: { from: a, to: 10.0.0.2, name: x.test }\n    expect: { within: soon }\n",
                line: 9, "expected a duration")
        rejects(base + "steps:\n  - behaviour: { upstream: u, set: sulk }\n", line: 8, "unknown behaviour 'sulk'")
        rejects(base + "steps:\n  - wait: nothing\n", line: 8, "not the id of an earlier step")
        rejects(base + "steps:\n  - wait: nothing\n    log: { contains: x }\n", line: 8, "one action")
        rejects("name: t\nhosts:\n  a: { addresses: { eth9: [10.0.0.1/24] } }\n", line: 3, "not a link or bridge")
        rejects("name: t\nhosts:\n  a: { links: { eth0: l }, addresses: { eth0: [10.0.0.300/24] } }\n", line: 3, "not an address")
        rejects(base + "forwarder: { host: a, options: [server=1.2.3.4] }\n", line: 7, "must start with --")
        rejects(base + "subjects: { bind: passes }\n", line: 7, "unknown subject 'bind'")
        rejects(base + "subjects: { dnsmasq: fails }\n", line: 7, "needs a reason")
        rejects("name: t\nhosts:\n  a: { links: { eth0: l } }\n  b: { links: { eth0: m } }\n", line: 3, "link 'l' has 1 end(s)")
        rejects(base + "subjects: { dnsmasq: \"fails: x\" }\nforwarder: { host: a }\n", line: 1, "declared to fail, but no step says how")
    }
}
