#if canImport(Glibc)
import Glibc
#endif

/// A size-bounded LRU cache of whole replies in wire form, keyed by the
/// lower-cased wire question plus a flags byte (EDNS present, DO, CD).
///
/// A hit copies the stored bytes into the caller's buffer and patches the ID,
/// the question (the client's letter case), RD and every TTL (counted down),
/// without decoding or allocating: the lookup hashes the packet's question bytes
/// in place and compares them against the stored copy.
///
/// Memory (issue 8: no worse per entry than dnsmasq): an entry is a 36-byte
/// record in one array plus one blob in a slab arena (no per-entry heap object):
/// the reply's bytes, whose question section holds the lower-cased key (so the key
/// is not stored twice), followed by the TTL offsets as UInt16. Blobs are rounded
/// to 4 bytes; freed blobs go on a free list per size and are reused by the next
/// blob of that size. The bucket array has one slot per entry of capacity. Only the
/// hash's top byte is stored (a tag checked before the blob is touched).
struct ReplyCache {
    struct Entry {
        // storedAt (ns) in two halves: 4-byte alignment keeps the stride at 36 bytes.
        var storedAtLo: UInt32 = 0
        var storedAtHi: UInt32 = 0
        var blob: UInt32 = 0          // arena address of the reply + offsets
        var ttl: UInt32 = 0           // s; expires at storedAt + ttl
        var nextInBucket: Int32 = -1
        var prev: Int32 = -1          // LRU: towards most recent
        var next: Int32 = -1          // LRU: towards least recent
        var replyLen: UInt16 = 0
        var offsetCount: UInt16 = 0
        var questionLen: UInt16 = 0   // bytes 12..<12+questionLen of the reply are the key
        var flags: UInt8 = 0
        var tag: UInt8 = 0            // top byte of the hash: most chain neighbours fail here
        var used: Bool { replyLen != 0 }

        var storedAt: UInt64 {
            get { UInt64(storedAtHi) << 32 | UInt64(storedAtLo) }
            set { storedAtLo = UInt32(truncatingIfNeeded: newValue); storedAtHi = UInt32(truncatingIfNeeded: newValue >> 32) }
        }
        var expires: UInt64 { storedAt &+ UInt64(ttl) &* 1_000_000_000 }
        var blobSize: Int { Arena.round(Int(replyLen) + 2 * Int(offsetCount)) }
    }

    let capacity: Int
    private(set) var entries: [Entry] = []
    private var buckets: [Int32] = []
    private var mask: UInt32 = 0
    private var free: [Int32] = []
    private var head: Int32 = -1   // most recently used
    private var tail: Int32 = -1   // least recently used
    private var arena = Arena()
    private(set) var count = 0
    var arenaBytes: Int { arena.bytesReserved }
    var hits = 0
    var misses = 0
    var insertions = 0
    var evictions = 0

    init(capacity: Int) {
        self.capacity = max(0, capacity)
        guard self.capacity > 0 else { return }
        var n = 16
        while n < self.capacity { n <<= 1 }
        buckets = [Int32](repeating: -1, count: n)
        mask = UInt32(n - 1)
        // Reserved once (pages are touched only as entries are used), so that growth
        // never leaves a half-sized old copy behind in the heap.
        entries.reserveCapacity(min(self.capacity, 1 << 22))
    }

    /// Hash of an already lower-cased question, 8 bytes at a time.
    @inline(__always) static func hashBytes(_ p: UnsafePointer<UInt8>, count: Int, flags: UInt8) -> UInt32 {
        UInt32(truncatingIfNeeded: hashBytes64(p, count: count, seed: 0xcbf29ce484222325 ^ UInt64(count) ^ UInt64(flags) << 56))
    }

    /// A 64-bit hash of `count` bytes (8 at a time), starting from `seed`.
    @inline(__always) static func hashBytes64(_ p: UnsafePointer<UInt8>, count: Int, seed: UInt64) -> UInt64 {
        var h = seed
        let raw = UnsafeRawPointer(p)
        var i = 0
        while i + 8 <= count {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x9E3779B97F4A7C15
            h ^= h >> 29
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < count { tail |= UInt64(p[i]) << shift; shift += 8; i += 1 }
        h = (h ^ tail) &* 0x9E3779B97F4A7C15
        h ^= h >> 32
        return h
    }

    /// ASCII lower case without a branch.
    @inline(__always) static func lower(_ c: UInt8) -> UInt8 {
        c | ((c &- 65) < 26 ? 0x20 : 0)
    }

    /// Finds a live entry for the question at 12..<questionEnd of `b` with `flags`.
    mutating func find(_ b: UnsafeRawBufferPointer, questionEnd: Int, flags: UInt8, now: UInt64) -> Int? {
        guard capacity > 0, questionEnd > 12, questionEnd <= b.count else { return nil }
        let q = b.baseAddress!.assumingMemoryBound(to: UInt8.self) + 12
        let qlen = questionEnd - 12
        guard qlen <= Arena.scratchSize else { return nil }
        // The question, lower-cased once into scratch space: hashed and compared from there.
        let lq = arena.scratch
        for j in 0..<qlen { lq[j] = ReplyCache.lower(q[j]) }
        let h = ReplyCache.hashBytes(lq, count: qlen, flags: flags)
        var i = buckets[Int(h & mask)]
        while i >= 0 {
            let idx = Int(i)
            let e = entries[idx]
            if e.tag == UInt8(truncatingIfNeeded: h >> 24) && Int(e.questionLen) == qlen && e.flags == flags {
                if memcmp(arena.pointer(e.blob) + 12, lq, qlen) == 0 {
                    if e.expires <= now {
                        remove(idx)
                        return nil
                    }
                    touch(idx)
                    return idx
                }
            }
            i = e.nextInBucket
        }
        return nil
    }

    /// (`mutating` only so that the caller, a class property, passes the cache in place
    /// instead of copying the struct and retaining its four buffers on every hit.)
    /// Writes entry `idx` as a reply to the query in `query` into `out`; returns the length, or 0 if `out` is too small.
    mutating func serve(_ idx: Int, query: UnsafeRawBufferPointer, questionEnd: Int, now: UInt64, into out: UnsafeMutableRawBufferPointer) -> Int {
        let e = entries[idx]
        let n = Int(e.replyLen)
        guard n <= out.count, questionEnd <= query.count, questionEnd <= n else { return 0 }
        let src = arena.pointer(e.blob)
        let dst = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        dst.update(from: src, count: n)
        // ID and RD from the query; the question (letter case, type, class) from the query.
        let qp = query.baseAddress!.assumingMemoryBound(to: UInt8.self)
        dst[0] = qp[0]; dst[1] = qp[1]
        dst[2] = (dst[2] & 0xFE) | (qp[2] & 0x01)
        (dst + 12).update(from: qp + 12, count: questionEnd - 12)
        let elapsed = UInt32(min((now &- e.storedAt) / 1_000_000_000, UInt64(UInt32.max)))
        if elapsed > 0 {
            let offs = src + n
            for k in 0..<Int(e.offsetCount) {
                let o = Int(offs[2 * k]) | Int(offs[2 * k + 1]) << 8
                let t = UInt32(dst[o]) << 24 | UInt32(dst[o + 1]) << 16 | UInt32(dst[o + 2]) << 8 | UInt32(dst[o + 3])
                let v = t > elapsed ? t - elapsed : 0
                dst[o] = UInt8(v >> 24); dst[o + 1] = UInt8((v >> 16) & 0xff)
                dst[o + 2] = UInt8((v >> 8) & 0xff); dst[o + 3] = UInt8(v & 0xff)
            }
        }
        return n
    }

    /// Remaining TTL of an entry in seconds.
    func remaining(_ idx: Int, now: UInt64) -> UInt32 {
        let e = entries[idx]
        return e.expires > now ? UInt32((e.expires - now) / 1_000_000_000) : 0
    }

    /// Stores a reply. TTLs in the stored copy are clamped to `ttl` so that they
    /// never outlive the entry (RFC 2308: a negative answer's SOA TTL is its lifetime).
    /// `key` is the lower-cased question (name, type, class) plus the flags byte; the
    /// reply's question section must have the same length.
    mutating func insert(key: [UInt8], reply: [UInt8], ttlOffsets: [UInt16], ttl: UInt32, now: UInt64) {
        guard capacity > 0, ttl > 0, key.count >= 6 else { return }
        let qlen = key.count - 1
        let flags = key[qlen]
        guard reply.count >= 12 + qlen, reply.count <= Int(UInt16.max), ttlOffsets.count <= Int(UInt16.max) else { return }
        for off in ttlOffsets where Int(off) + 4 > reply.count || Int(off) < 12 + qlen { return }
        // Replace an existing entry with the same key.
        let h: UInt32 = key.withUnsafeBufferPointer { ReplyCache.hashBytes($0.baseAddress!, count: qlen, flags: flags) }
        var i = buckets[Int(h & mask)]
        while i >= 0 {
            let e = entries[Int(i)]
            if e.tag == UInt8(truncatingIfNeeded: h >> 24) && Int(e.questionLen) == qlen && e.flags == flags {
                let k = arena.pointer(e.blob) + 12
                var j = 0
                while j < qlen && k[j] == key[j] { j += 1 }
                if j == qlen { remove(Int(i)); break }
            }
            i = e.nextInBucket
        }
        let idx: Int
        if let f = free.popLast() {
            idx = Int(f)
        } else if entries.count < capacity {
            entries.append(Entry())
            idx = entries.count - 1
        } else {
            idx = Int(tail)
            remove(idx)
            evictions += 1
            _ = free.popLast()
        }
        var e = Entry(blob: 0, ttl: ttl, nextInBucket: -1, prev: -1, next: head,
                      replyLen: UInt16(reply.count), offsetCount: UInt16(ttlOffsets.count),
                      questionLen: UInt16(qlen), flags: flags, tag: UInt8(truncatingIfNeeded: h >> 24))
        e.storedAt = now
        e.blob = arena.allocate(e.blobSize)
        let p = arena.pointer(e.blob)
        reply.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: reply.count) }
        key.withUnsafeBufferPointer { (p + 12).update(from: $0.baseAddress!, count: qlen) }
        let offs = p + reply.count
        for (k, off) in ttlOffsets.enumerated() {
            offs[2 * k] = UInt8(off & 0xff); offs[2 * k + 1] = UInt8(off >> 8)
            let o = Int(off)
            let t = UInt32(p[o]) << 24 | UInt32(p[o + 1]) << 16 | UInt32(p[o + 2]) << 8 | UInt32(p[o + 3])
            if t > ttl {
                p[o] = UInt8(ttl >> 24); p[o + 1] = UInt8((ttl >> 16) & 0xff)
                p[o + 2] = UInt8((ttl >> 8) & 0xff); p[o + 3] = UInt8(ttl & 0xff)
            }
        }
        let bucket = Int(h & mask)
        e.nextInBucket = buckets[bucket]
        entries[idx] = e
        buckets[bucket] = Int32(idx)
        if head >= 0 { entries[Int(head)].prev = Int32(idx) }
        head = Int32(idx)
        if tail < 0 { tail = Int32(idx) }
        count += 1
        insertions += 1
    }

    private mutating func unlinkLRU(_ idx: Int) {
        let p = entries[idx].prev, n = entries[idx].next
        if p >= 0 { entries[Int(p)].next = n } else { head = n }
        if n >= 0 { entries[Int(n)].prev = p } else { tail = p }
        entries[idx].prev = -1; entries[idx].next = -1
    }

    private mutating func touch(_ idx: Int) {
        guard head != Int32(idx) else { return }
        unlinkLRU(idx)
        entries[idx].next = head
        if head >= 0 { entries[Int(head)].prev = Int32(idx) }
        head = Int32(idx)
        if tail < 0 { tail = Int32(idx) }
    }

    private mutating func remove(_ idx: Int) {
        guard entries[idx].used else { return }
        let h = ReplyCache.hashBytes(arena.pointer(entries[idx].blob) + 12, count: Int(entries[idx].questionLen), flags: entries[idx].flags)
        let bucket = Int(h & mask)
        var i = buckets[bucket]
        var prevInBucket: Int32 = -1
        while i >= 0 {
            if Int(i) == idx {
                if prevInBucket >= 0 { entries[Int(prevInBucket)].nextInBucket = entries[idx].nextInBucket }
                else { buckets[bucket] = entries[idx].nextInBucket }
                break
            }
            prevInBucket = i
            i = entries[Int(i)].nextInBucket
        }
        unlinkLRU(idx)
        arena.release(entries[idx].blob, size: entries[idx].blobSize)
        entries[idx] = Entry()
        free.append(Int32(idx))
        count -= 1
    }

    /// Drops everything (SIGHUP, upstream set change).
    mutating func clear() {
        guard capacity > 0 else { return }
        entries.removeAll(keepingCapacity: true)
        for i in 0..<buckets.count { buckets[i] = -1 }
        free.removeAll()
        arena.reset()
        head = -1; tail = -1
        count = 0
    }
}

/// Slabs of 1 MiB for the cache's blobs, addressed by a UInt32 (slab << 20 | offset).
/// Freed blocks go on an intrusive free list per size (multiples of 8) and are
/// reused first. A class instance so that copies of the cache share one arena
/// (the cache lives in one place; this only avoids copy-on-write surprises).
final class Arena {
    static let slabShift = 20
    static let slabSize = 1 << slabShift
    static let none: UInt32 = .max
    private var slabs: [UnsafeMutablePointer<UInt8>] = []
    private var used = 0             // bytes used in the last slab
    /// Scratch space for a lower-cased question (at most 255 + 4 bytes).
    static let scratchSize = 512
    let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: Arena.scratchSize)
    private var freeLists: [UInt32] = []   // head per size class (size / 4)

    deinit {
        reset()
        scratch.deallocate()
    }

    /// Bytes held in slabs.
    var bytesReserved: Int { slabs.count * Arena.slabSize }

    @inline(__always) func pointer(_ a: UInt32) -> UnsafeMutablePointer<UInt8> {
        slabs[Int(a >> UInt32(Arena.slabShift))] + Int(a & UInt32(Arena.slabSize - 1))
    }

    /// Blob sizes: multiples of 4 (room for the free list's link).
    @inline(__always) static func round(_ n: Int) -> Int { max(4, (n + 3) & ~3) }

    /// `size`: from `round`, at most a slab.
    func allocate(_ size: Int) -> UInt32 {
        let cls = size >> 2
        if cls < freeLists.count, freeLists[cls] != Arena.none {
            let a = freeLists[cls]
            freeLists[cls] = UnsafeRawPointer(pointer(a)).loadUnaligned(as: UInt32.self)
            return a
        }
        if slabs.isEmpty || used + size > Arena.slabSize {
            if !slabs.isEmpty {
                // Keep the rest of the full slab for smaller blobs.
                let rest = (Arena.slabSize - used) & ~3
                if rest >= 4 && rest <= 8192 { release(UInt32((slabs.count - 1) << Arena.slabShift | used), size: rest) }
            }
            let raw = malloc(Arena.slabSize)!
            slabs.append(raw.assumingMemoryBound(to: UInt8.self))
            used = 0
        }
        let a = UInt32((slabs.count - 1) << Arena.slabShift | used)
        used += size
        return a
    }

    func release(_ a: UInt32, size: Int) {
        let cls = size >> 2
        if cls >= freeLists.count {
            freeLists.append(contentsOf: repeatElement(Arena.none, count: cls + 1 - freeLists.count))
        }
        UnsafeMutableRawPointer(pointer(a)).storeBytes(of: freeLists[cls], as: UInt32.self)
        freeLists[cls] = a
    }

    func reset() {
        for s in slabs { Glibc.free(s) }
        slabs.removeAll()
        freeLists.removeAll()
        used = 0
    }
}
