import XCTest
@testable import Forwarder

final class OptionsTests: XCTestCase {
    func noFiles(_ p: String) throws -> String { throw OptionError("no such file \(p)") }

    func parse(_ args: [String], files: [String: String] = [:]) throws -> Options {
        try Options.parse(args) { p in
            guard let t = files[p] else { throw OptionError("no such file") }
            return t
        }
    }

    func assertError(_ args: [String], files: [String: String] = [:], contains: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(args, files: files), file: file, line: line) { e in
            let msg = (e as? OptionError)?.message ?? "\(e)"
            XCTAssertTrue(msg.contains(contains), "'\(msg)' should contain '\(contains)'", file: file, line: line)
        }
    }

    func testDefaults() throws {
        let o = try parse([])
        XCTAssertEqual(o.port, 53)
        XCTAssertEqual(o.cacheSize, 150)
        XCTAssertEqual(o.resolvFile, "/etc/resolv.conf")
        XCTAssertEqual(o.dnsForwardMax, 4096)
        XCTAssertFalse(o.noResolv)
        XCTAssertEqual(o.policy, .bestRTT)
        XCTAssertEqual(o.queryPortReuse, 1, "a new source port for every upstream query by default")
    }

    func testQueryPortReuse() throws {
        XCTAssertEqual(try parse(["--query-port-reuse=64"]).queryPortReuse, 64)
        assertError(["--query-port-reuse=0"], contains: "query-port-reuse")
        assertError(["--query-port-reuse=many"], contains: "query-port-reuse")
    }

    func testLongShortAndSpacedForms() throws {
        let o = try parse(["--port=5353", "-c", "1000", "--server", "10.0.0.1", "-S10.0.0.2#5300", "-R", "-q",
                           "--listen-address=127.0.0.1", "-a", "::1", "--strict-order", "-k", "-d", "-h",
                           "--addn-hosts=/tmp/h", "-x", "/tmp/pid", "--no-negcache", "--dns-forward-max=10"])
        XCTAssertEqual(o.port, 5353)
        XCTAssertEqual(o.cacheSize, 1000)
        XCTAssertEqual(o.servers.map { $0.endpoint.serverText }, ["10.0.0.1", "10.0.0.2#5300"])
        XCTAssertTrue(o.noResolv)
        XCTAssertTrue(o.logQueries)
        XCTAssertEqual(o.listenAddresses.map { $0.addressText }, ["127.0.0.1", "::1"])
        XCTAssertEqual(o.policy, .strictOrder)
        XCTAssertTrue(o.noHosts)
        XCTAssertEqual(o.addnHosts, ["/tmp/h"])
        XCTAssertEqual(o.pidFile, "/tmp/pid")
        XCTAssertTrue(o.noNegcache)
        XCTAssertEqual(o.dnsForwardMax, 10)
    }

    func testServerForms() throws {
        let o = try parse(["--server=/corp.test/lab.test/10.0.0.9#53", "--server=/local.lan/", "--server=2001:db8::1#5353", "--server=::1"])
        XCTAssertEqual(o.servers[0].domains, ["corp.test", "lab.test"])
        XCTAssertEqual(o.servers[0].endpoint.serverText, "10.0.0.9")
        XCTAssertEqual(o.localDomains, ["local.lan"])
        XCTAssertEqual(o.servers[1].endpoint.fullText, "2001:db8::1#5353")
        XCTAssertTrue(o.servers[1].endpoint.isV6)
        XCTAssertEqual(o.servers[2].endpoint.fullText, "::1#53")
    }

    func testAddressForms() throws {
        let o = try parse(["--address=/ads.test/0.0.0.0", "--address=/ads.test/::", "-A", "/gone.test/", "--address=/null.test/#"])
        XCTAssertEqual(o.addressRules.count, 3)
        XCTAssertEqual(o.addressRules[0].v4, [[0, 0, 0, 0]])
        XCTAssertEqual(o.addressRules[0].v6.count, 1)
        XCTAssertTrue(o.addressRules[1].nxdomain)
        XCTAssertEqual(o.addressRules[2].v4.count, 1)
        XCTAssertEqual(o.addressRules[2].v6.count, 1)
    }

    func testErrorsNameTheOption() {
        assertError(["--bogus"], contains: "--bogus")
        assertError(["--port=99999"], contains: "--port")
        assertError(["--port=abc"], contains: "--port")
        assertError(["--server=10.0.0.300"], contains: "--server")
        assertError(["--server=10.0.0.1#0"], contains: "--server")
        assertError(["--server=10.0.0.1@eth0"], contains: "not implemented")
        assertError(["--cache-size=-1"], contains: "--cache-size")
        assertError(["--listen-address=nothere"], contains: "--listen-address")
        assertError(["--address=ads.test/1.2.3.4"], contains: "--address")
        assertError(["--port"], contains: "--port")
        assertError(["-Z"], contains: "-Z")
        assertError(["--log-queries=yes"], contains: "--log-queries")
        assertError(["stray"], contains: "stray")
        assertError(["--strict-order", "--all-servers"], contains: "--all-servers")
        assertError(["--conf-file=/missing"], contains: "/missing")
    }

    func testConfigFile() throws {
        let conf = """
        # a dnsmasq config
        no-resolv
        server=10.0.0.1
          server = 10.0.0.2#5353
        cache-size=500
        log-queries

        address=/ads.test/0.0.0.0
        """
        let o = try parse(["--conf-file=/etc/fwd.conf"], files: ["/etc/fwd.conf": conf])
        XCTAssertTrue(o.noResolv)
        XCTAssertEqual(o.servers.map { $0.endpoint.serverText }, ["10.0.0.1", "10.0.0.2#5353"])
        XCTAssertEqual(o.cacheSize, 500)
        XCTAssertTrue(o.logQueries)
        XCTAssertEqual(o.addressRules.count, 1)
    }

    func testConfigFileErrorsNameFileAndLine() {
        let conf = "no-resolv\nserver=10.0.0.1\nfrobnicate=yes\n"
        assertError(["-C", "/etc/fwd.conf"], files: ["/etc/fwd.conf": conf], contains: "/etc/fwd.conf:3: frobnicate")
        let conf2 = "cache-size=lots\n"
        assertError(["-C", "/x.conf"], files: ["/x.conf": conf2], contains: "/x.conf:1: cache-size")
        let conf3 = "conf-file=/x.conf\n"
        assertError(["-C", "/x.conf"], files: ["/x.conf": conf3], contains: "nested")
    }

    func testResolvConf() {
        let eps = Options.parseResolvConf("# generated\nsearch example.test\nnameserver 10.0.0.1\nnameserver  2001:db8::1 \nnameserver bogus\noptions edns0\n")
        XCTAssertEqual(eps.map { $0.fullText }, ["10.0.0.1#53", "2001:db8::1#53"])
    }

    func testHelpMentionsEveryOption() {
        let text = Options.helpText()
        for o in Options.table { XCTAssertTrue(text.contains("--\(o.long)"), o.long) }
    }
}
