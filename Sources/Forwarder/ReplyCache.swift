/// A size-bounded LRU cache of whole replies in wire form, keyed by the
/// lower-cased wire question plus a flags byte (EDNS present, DO, CD).
///
/// A hit copies the stored bytes into the caller's buffer and patches the ID,
/// the question's letter case, RD and every TTL (counted down), without
/// decoding or allocating: the lookup hashes the packet's question bytes in
/// place and compares them against stored keys.
struct ReplyCache {
    struct Entry {
        var key: [UInt8] = []
        var reply: [UInt8] = []
        var ttlOffsets: [UInt16] = []
        var storedAt: UInt64 = 0      // ns
        var expires: UInt64 = 0       // ns
        var ttl: UInt32 = 0
        var hash: UInt64 = 0
        var nextInBucket: Int32 = -1
        var prev: Int32 = -1          // LRU: towards most recent
        var next: Int32 = -1          // LRU: towards least recent
        var used = false
    }

    let capacity: Int
    private(set) var entries: [Entry] = []
    private var buckets: [Int32] = []
    private var mask: UInt64 = 0
    private var free: [Int32] = []
    private var head: Int32 = -1   // most recently used
    private var tail: Int32 = -1   // least recently used
    private(set) var count = 0
    var hits = 0
    var misses = 0
    var insertions = 0
    var evictions = 0

    init(capacity: Int) {
        self.capacity = max(0, capacity)
        guard self.capacity > 0 else { return }
        var n = 16
        while n < self.capacity * 2 { n <<= 1 }
        buckets = [Int32](repeating: -1, count: n)
        mask = UInt64(n - 1)
        entries.reserveCapacity(min(self.capacity, 1 << 16))
    }

    @inline(__always) static func hashBytes(_ b: UnsafeRawBufferPointer, from: Int, to: Int, flags: UInt8) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        var i = from
        while i < to {
            h = (h ^ UInt64(Wire.lower(b[i]))) &* 0x100000001b3
            i += 1
        }
        h = (h ^ UInt64(flags)) &* 0x100000001b3
        return h ^ (h >> 29)
    }

    /// Finds a live entry for the question at 12..<questionEnd of `b` with `flags`.
    mutating func find(_ b: UnsafeRawBufferPointer, questionEnd: Int, flags: UInt8, now: UInt64) -> Int? {
        guard capacity > 0 else { return nil }
        let h = ReplyCache.hashBytes(b, from: 12, to: questionEnd, flags: flags)
        var i = buckets[Int(h & mask)]
        let klen = questionEnd - 12 + 1
        while i >= 0 {
            let idx = Int(i)
            let matched: Bool = entries[idx].hash == h && entries[idx].key.count == klen && entries[idx].key.withUnsafeBufferPointer { k in
                if k[klen - 1] != flags { return false }
                var j = 0
                while j < klen - 1 {
                    if k[j] != Wire.lower(b[12 + j]) { return false }
                    j += 1
                }
                return true
            }
            if matched {
                if entries[idx].expires <= now {
                    remove(idx)
                    return nil
                }
                touch(idx)
                return idx
            }
            i = entries[idx].nextInBucket
        }
        return nil
    }

    /// Writes entry `idx` as a reply to the query in `query` into `out`; returns the length, or 0 if `out` is too small.
    func serve(_ idx: Int, query: UnsafeRawBufferPointer, questionEnd: Int, now: UInt64, into out: UnsafeMutableRawBufferPointer) -> Int {
        let e = entries[idx]
        let n = e.reply.count
        guard n <= out.count else { return 0 }
        e.reply.withUnsafeBytes { r in
            out.baseAddress!.copyMemory(from: r.baseAddress!, byteCount: n)
        }
        // ID and RD from the query; question bytes (letter case) from the query.
        out[0] = query[0]; out[1] = query[1]
        out[2] = (out[2] & 0xFE) | (query[2] & 0x01)
        var j = 12
        while j < questionEnd - 4 { out[j] = query[j]; j += 1 }
        let elapsed = UInt32(min((now &- e.storedAt) / 1_000_000_000, UInt64(UInt32.max)))
        for off in e.ttlOffsets {
            let o = Int(off)
            let t = Wire.u32(UnsafeRawBufferPointer(out), o)
            Wire.put32(out, o, t > elapsed ? t - elapsed : 0)
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
    mutating func insert(key: [UInt8], reply: [UInt8], ttlOffsets: [UInt16], ttl: UInt32, now: UInt64) {
        guard capacity > 0, ttl > 0, key.count >= 6 else { return }
        let flags = key[key.count - 1]
        // Replace an existing entry with the same key.
        let existing: Int? = key.withUnsafeBytes { kb -> Int? in
            let h = ReplyCache.hashBytes(kb, from: 0, to: key.count - 1, flags: flags)
            var i = buckets[Int(h & mask)]
            while i >= 0 {
                if entries[Int(i)].hash == h && entries[Int(i)].key == key { return Int(i) }
                i = entries[Int(i)].nextInBucket
            }
            return nil
        }
        if let ex = existing { remove(ex) }
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
        var stored = reply
        stored.withUnsafeMutableBytes { out in
            for off in ttlOffsets {
                let o = Int(off)
                if Wire.u32(UnsafeRawBufferPointer(out), o) > ttl { Wire.put32(out, o, ttl) }
            }
        }
        let h: UInt64 = key.withUnsafeBytes { ReplyCache.hashBytes($0, from: 0, to: key.count - 1, flags: flags) }
        let bucket = Int(h & mask)
        entries[idx] = Entry(key: key, reply: stored, ttlOffsets: ttlOffsets, storedAt: now,
                             expires: now &+ UInt64(ttl) * 1_000_000_000, ttl: ttl, hash: h,
                             nextInBucket: buckets[bucket], prev: -1, next: head, used: true)
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
        let bucket = Int(entries[idx].hash & mask)
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
        head = -1; tail = -1
        count = 0
    }
}
