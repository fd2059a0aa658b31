import XCTest
import DNSWire
@testable import Forwarder

/// The compact reply cache on its own: keys, letter case, TTL count-down, LRU, and
/// that the arena reuses freed space instead of growing.
final class ReplyCacheTests: XCTestCase {
    let t0: UInt64 = 1_000_000_000_000

    func query(_ name: String, id: UInt16 = 0x4242) -> [UInt8] {
        Message.query(id: id, name: try! DNSName(name), type: .a, edns: nil).encode()
    }

    /// A reply to `name` with one A record (TTL `ttl`); returns it with its TTL offsets.
    func reply(_ name: String, ttl: UInt32, ip: String = "192.0.2.1") -> ([UInt8], [UInt16]) {
        var m = Message.reply(to: Message.query(id: 7, name: try! DNSName(name), type: .a, edns: nil), rcode: .noError)
        m.answers = [ResourceRecord(name: try! DNSName(name), ttl: ttl, rdata: .a(IPv4Address(ip)!))]
        let bytes = m.encode()
        let info = bytes.withUnsafeBytes { Wire.scanReply($0, collectOffsets: true) }!
        return (bytes, info.ttlOffsets)
    }

    func key(_ q: [UInt8]) -> [UInt8] {
        q.withUnsafeBytes { b -> [UInt8] in
            guard case .ok(let parsed) = Wire.parseQuery(b) else { fatalError("bad query") }
            return Wire.cacheKey(b, parsed)
        }
    }

    func lookup(_ c: inout ReplyCache, _ q: [UInt8], now: UInt64) -> Message? {
        lookupBytes(&c, q, now: now).flatMap { try? Message(decoding: $0) }
    }

    func lookupBytes(_ c: inout ReplyCache, _ q: [UInt8], now: UInt64) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 4096)
        let n: Int = q.withUnsafeBytes { b in
            guard case .ok(let parsed) = Wire.parseQuery(b),
                  let idx = c.find(b, questionEnd: parsed.questionEnd, flags: Wire.keyFlags(parsed), now: now) else { return 0 }
            return out.withUnsafeMutableBytes { c.serve(idx, query: b, questionEnd: parsed.questionEnd, now: now, into: $0) }
        }
        return n > 0 ? Array(out[0..<n]) : nil
    }

    func testHitPatchesIDCaseAndTTL() throws {
        var c = ReplyCache(capacity: 10)
        let (r, offs) = reply("Host.Example.TEST", ttl: 300)
        c.insert(key: key(query("host.example.test")), reply: r, ttlOffsets: offs, ttl: 300, now: t0)
        XCTAssertEqual(c.count, 1)
        let q = query("HOST.example.test", id: 0x1111)
        let raw = try XCTUnwrap(lookupBytes(&c, q, now: t0 + 10_500_000_000))
        XCTAssertEqual(Array(raw[0..<2]), [0x11, 0x11])
        XCTAssertEqual(Array(raw[12..<q.count]), Array(q[12...]), "the client's letter case")
        let m = try Message(decoding: raw)
        XCTAssertEqual(m.answers.first?.ttl, 290)
        XCTAssertNil(lookup(&c, query("other.example.test"), now: t0))
        XCTAssertNil(lookup(&c, query("host.example.test"), now: t0 + 300_000_000_000), "expired")
        XCTAssertEqual(c.count, 0)
    }

    func testTTLClampedAndReplaced() throws {
        var c = ReplyCache(capacity: 10)
        let (r, offs) = reply("a.test", ttl: 3600)
        c.insert(key: key(query("a.test")), reply: r, ttlOffsets: offs, ttl: 60, now: t0)
        XCTAssertEqual(lookup(&c, query("a.test"), now: t0)?.answers.first?.ttl, 60)
        let (r2, offs2) = reply("a.test", ttl: 30, ip: "192.0.2.9")
        c.insert(key: key(query("a.test")), reply: r2, ttlOffsets: offs2, ttl: 30, now: t0)
        XCTAssertEqual(c.count, 1)
        let m = try XCTUnwrap(lookup(&c, query("a.test"), now: t0))
        XCTAssertEqual(m.answers.first?.ttl, 30)
        XCTAssertEqual(m.answers.first?.rdata, .a(IPv4Address("192.0.2.9")!))
    }

    func testLRUEvictionAndArenaReuse() throws {
        var c = ReplyCache(capacity: 100)
        for i in 0..<20_000 {
            let name = "n\(100_000 + i).test"
            let (r, offs) = reply(name, ttl: 300)
            c.insert(key: key(query(name)), reply: r, ttlOffsets: offs, ttl: 300, now: t0)
            if i == 0 { _ = lookup(&c, query(name), now: t0) }
            // Keep n100000 recently used: it must survive eviction.
            if i % 50 == 0 { XCTAssertNotNil(lookup(&c, query("n100000.test"), now: t0), "at \(i)") }
        }
        XCTAssertEqual(c.count, 100)
        XCTAssertEqual(c.evictions, 20_000 - 100)
        XCTAssertNil(lookup(&c, query("n100001.test"), now: t0))
        XCTAssertNotNil(lookup(&c, query("n119999.test"), now: t0))
        // 20,000 inserts of equal-sized blobs into 100 slots: freed blobs are reused.
        XCTAssertEqual(c.arenaBytes, Arena.slabSize)
        // Issue 8: RSS per cached entry no worse than dnsmasq's (~113 B): the record stays small.
        XCTAssertLessThanOrEqual(MemoryLayout<ReplyCache.Entry>.stride, 36)
        c.clear()
        XCTAssertEqual(c.count, 0)
        XCTAssertNil(lookup(&c, query("n119999.test"), now: t0))
    }
}
