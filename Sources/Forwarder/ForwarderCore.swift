import CForwarderSys

/// The forwarder's decisions, with no I/O and no clock of its own.
///
/// Events come in as method calls carrying `now` (monotonic nanoseconds);
/// what to do comes out as `actions` (drained by the shell or a test) plus,
/// for the hot path, an immediate reply written straight into the caller's
/// buffer by `handleQuery` (cache hits, local data, FORMERR, over-limit SERVFAIL).
/// Timers are not armed by action: the shell asks `nextDeadline` and calls
/// `handleTimers(now:)` when it passes.
public final class ForwarderCore {
    public struct Config: Sendable {
        public var servers: [ServerSpec] = []
        public var policy: UpstreamPolicy = .bestRTT
        public var cacheSize = 150
        public var negativeCache = true
        public var logQueries = false
        public var forwardMax = 4096
        public var addressRules: [AddressRule] = []
        /// `--server=/DOMAIN/` with no address: answered locally only (NXDOMAIN if unknown).
        public var localDomains: [String] = []
        public var hosts = HostsTable()
        /// The longest a client waits before it gets SERVFAIL (well inside a stub's 5 s).
        public var clientDeadline: UInt64 = 2_000_000_000
        /// The most a query may take when every server for the name is down (see `queryBudget`).
        public var allDownDeadline: UInt64 = 1_500_000_000
        /// With no upstream at all, a query is held this long for one to appear.
        public var holdWithoutServers: UInt64 = 2_000_000_000
        /// Largest EDNS UDP size honoured for replies to clients.
        public var maxUDPReply = 4096
        public var maxWaitersPerQuery = 256
        /// Upstream attempts per client query, all servers and retransmissions together.
        public var maxAttemptsPerQuery = 8
        /// DNS 0x20 (`--dns-0x20`): random letter case in each upstream question; a reply
        /// must echo it byte for byte.
        public var caseRandomization = false
        public var seed: UInt64 = 0x9E3779B97F4A7C15
        public init() {}
    }

    public enum Action: Equatable {
        /// Send `bytes` to the client (shell adds TCP framing / PKTINFO source).
        case reply(ClientRef, [UInt8])
        /// Send a query for attempt `attempt` to `server`, over a fresh socket of `transport`.
        case send(attempt: Int, server: Endpoint, transport: Transport, bytes: [UInt8])
        /// The attempt is over: close its socket.
        case cancel(attempt: Int)
        /// One log line (without the "forwarder[PID]: " prefix).
        case log(String)
    }

    public struct Stats: Sendable {
        public var queries = 0
        public var cacheAnswers = 0
        public var localAnswers = 0
        public var forwarded = 0
        public var coalesced = 0
        public var servfailNoAnswer = 0
        public var servfailOverLimit = 0
        public var formerr = 0
        public var droppedQueries = 0
        public var droppedSpoofed = 0
        public var droppedLate = 0
        public var droppedMalformedReplies = 0
    }

    struct Waiter {
        var client: ClientRef
        /// Header + question of the client's query (ID, RD, letter case come from here);
        /// nil for the query's first client, whose header and question are `Pending.query`'s.
        var head: [UInt8]?
        var maxSize: Int
    }

    /// A question in flight. A class, so that the many small updates during its life
    /// change it in place (a struct in the dictionary was copied, arrays and all, on
    /// every read-modify-write).
    final class Pending {
        /// The cache key (lower-cased question + flags) and its hash with the transport,
        /// which identifies the question among those in flight (`pendingByKey`).
        let key: [UInt8]
        let keyHash: UInt64
        /// The first client's query, as it came (its ID included).
        let query: [UInt8]
        let nameEnd: Int
        let questionEnd: Int
        let qtype: UInt16
        var waiters: [Waiter]
        var candidates: [Int]
        var order: [Int]
        var nextIndex = 0
        var active: [Int] = []
        var excluded: Set<Int> = []
        var deadline: UInt64
        let transport: Transport
        let started: UInt64
        /// A TC reply kept while the question is retried over TCP.
        var truncatedReply: [UInt8]? = nil
        var attemptsMade = 0

        init(key: [UInt8], keyHash: UInt64, query: [UInt8], nameEnd: Int, questionEnd: Int, qtype: UInt16,
             waiters: [Waiter], candidates: [Int], order: [Int], deadline: UInt64, transport: Transport, started: UInt64) {
            self.key = key; self.keyHash = keyHash; self.query = query; self.nameEnd = nameEnd
            self.questionEnd = questionEnd; self.qtype = qtype; self.waiters = waiters
            self.candidates = candidates; self.order = order; self.deadline = deadline
            self.transport = transport; self.started = started
        }

        /// The name asked, as text (for log lines and domain matching; not kept).
        var name: String { query.withUnsafeBytes { Wire.nameText($0, 12) } ?? "?" }
    }

    struct Attempt {
        var pending: Int
        var server: Int
        var endpoint: Endpoint
        var upstreamID: UInt16
        var sentAt: UInt64
        var deadline: UInt64
        var transport: Transport
        var timedOut = false
        /// A probe of a demoted server: its verdict matters even after the query is answered.
        var probe = false
        /// Replies that came from the server's address but with another ID or question.
        var mismatches = 0
        /// The random bits that set the question's letter case (DNS 0x20); 0 = not randomised.
        var caseBits: UInt64 = 0
        /// Set when the query was answered elsewhere while this probe was still out: the
        /// attempt lives on (no client) until its reply or timeout gives the verdict.
        var orphanQuery: [UInt8]? = nil
        var orphanNameEnd = 0
    }

    public private(set) var config: Config
    public private(set) var selector: UpstreamSelector
    var cache: ReplyCache
    public private(set) var stats = Stats()
    public var actions: [Action] = []

    var pendings: [Int: Pending] = [:]
    /// In-flight questions by `Pending.keyHash` (checked against the key: on a collision
    /// the second question is not coalesced, nothing else).
    var pendingByKey: [UInt64: Int] = [:]
    let keySeed: UInt64
    var attempts: [Int: Attempt] = [:]
    var idsInUse = [UInt64](repeating: 0, count: 1024)
    var timers = TimerHeap()
    var nextPendingID = 1
    var nextAttemptID = 1
    var rng: UInt64
    var lastOverLimitLog: UInt64 = 0
    /// The latest `now` seen by `handleTimers` (for statistics only).
    var lastNow: UInt64 = 0
    var overLimitSinceLog = 0
    var lastSendFailureLog: [Int: UInt64] = [:]
    var sendFailuresNotLogged: [Int: Int] = [:]

    public init(config: Config) {
        self.config = config
        self.selector = UpstreamSelector(policy: config.policy)
        self.selector.setServers(config.servers)
        self.cache = ReplyCache(capacity: config.cacheSize)
        self.rng = config.seed == 0 ? 0x9E3779B97F4A7C15 : config.seed
        self.keySeed = (config.seed == 0 ? 0x9E3779B97F4A7C15 : config.seed) &* 0xD6E8FEB86659FD93
    }

    public var inFlight: Int { pendings.count }
    public func hasAttempt(_ aid: Int) -> Bool { attempts[aid] != nil }
    public var cacheCount: Int { cache.count }
    public var cacheHits: Int { cache.hits }
    public var cacheMisses: Int { cache.misses }

    public func takeActions() -> [Action] {
        let a = actions
        actions.removeAll(keepingCapacity: true)
        return a
    }

    /// An empty buffer with capacity that `drainActions` swaps with `actions`.
    private var spareActions: [Action] = []

    /// Hands every pending action to `body`, oldest first, including those that `body`
    /// causes (it may call back into the core). Unlike `takeActions`, no array is
    /// allocated per call: two buffers take turns.
    public func drainActions(_ body: (Action) -> Void) {
        while !actions.isEmpty {
            var batch: [Action] = []
            swap(&batch, &spareActions)
            swap(&batch, &actions)
            for a in batch { body(a) }
            batch.removeAll(keepingCapacity: true)
            spareActions = batch
        }
    }

    // MARK: randomness

    /// Where upstream IDs and 0x20 case bits come from. nil (the default): a xorshift64*
    /// generator seeded with `config.seed`, repeatable for tests. The daemon installs the
    /// kernel's CSPRNG (getrandom), drawn 512 bytes at a time.
    public var entropy: ((UnsafeMutableRawBufferPointer) -> Void)? {
        didSet { entropyNext = entropyPool.count }
    }
    private var entropyPool = [UInt64](repeating: 0, count: 64)
    private var entropyNext = 64

    func random() -> UInt64 {
        if let fill = entropy {
            if entropyNext >= entropyPool.count {
                entropyPool.withUnsafeMutableBytes { fill($0) }
                entropyNext = 0
            }
            defer { entropyNext += 1 }
            return entropyPool[entropyNext]
        }
        rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27
        return rng &* 0x2545F4914F6CDD1D
    }

    func freshID() -> UInt16 {
        for _ in 0..<64 {
            let id = UInt16(truncatingIfNeeded: random() >> 17)
            if idsInUse[Int(id >> 6)] & (1 << UInt64(id & 63)) == 0 {
                idsInUse[Int(id >> 6)] |= 1 << UInt64(id & 63)
                return id
            }
        }
        // Extremely full: linear scan from a random point.
        let start = Int(random() & 0xFFFF)
        for k in 0..<65536 {
            let id = UInt16((start + k) & 0xFFFF)
            if idsInUse[Int(id >> 6)] & (1 << UInt64(id & 63)) == 0 {
                idsInUse[Int(id >> 6)] |= 1 << UInt64(id & 63)
                return id
            }
        }
        return UInt16(start)
    }

    func releaseID(_ id: UInt16) {
        idsInUse[Int(id >> 6)] &= ~(1 << UInt64(id & 63))
    }

    func log(_ s: @autoclosure () -> String) {
        if config.logQueries { actions.append(.log(s())) }
    }

    // MARK: queries from clients

    /// A query arrived. Returns the length of an immediate reply written into `out`
    /// (0: nothing now; a reply may come later as an action, or the packet was dropped).
    @discardableResult
    public func handleQuery(_ b: UnsafeRawBufferPointer, from client: ClientRef, now: UInt64,
                            replyInto out: UnsafeMutableRawBufferPointer) -> Int {
        let q: Wire.Query
        switch Wire.parseQuery(b) {
        case .drop:
            stats.droppedQueries += 1
            return 0
        case .formErr:
            if b[2] & 0x80 != 0 { stats.droppedQueries += 1; return 0 }
            stats.formerr += 1
            return LocalReply.headerOnly(query: b, rcode: 1, into: out)
        case .ok(let parsed):
            q = parsed
        }
        if q.isResponse { stats.droppedQueries += 1; return 0 }
        if q.opcode != 0 {
            return LocalReply.headerOnly(query: b, rcode: 4, into: out)
        }
        stats.queries += 1
        let maxSize: Int
        if client.transport == .tcp { maxSize = min(65535, out.count) }
        else { maxSize = min(out.count, q.hasEDNS ? max(512, min(q.ednsSize, config.maxUDPReply)) : 512) }

        if config.logQueries {
            let name = Wire.nameText(b, 12) ?? "?"
            log("query[\(Wire.typeName(q.qtype))] \(name) from \(client.peer.addressText)")
        }

        // 1. cache
        if cache.capacity > 0 {
            if let idx = cache.find(b, questionEnd: q.questionEnd, flags: Wire.keyFlags(q), now: now) {
                var n = cache.serve(idx, query: b, questionEnd: q.questionEnd, now: now, into: out)
                if n > 0 {
                    cache.hits += 1
                    stats.cacheAnswers += 1
                    if config.logQueries { logAnswer("cached", UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(out)[0..<n]), qtype: q.qtype) }
                    if n > maxSize { n = Wire.truncateInPlace(out, questionEnd: q.questionEnd) }
                    return n
                }
                if client.transport == .udp {
                    // Cached whole (from TCP) but larger than any UDP reply: TC, so the client uses TCP.
                    let t = LocalReply.write(query: b, questionEnd: q.questionEnd, rcode: 0, qtype: q.qtype, ttl: 0,
                                             answers: [], aa: false, into: out)
                    if t > 0 {
                        out[2] |= 0x02
                        cache.hits += 1
                        stats.cacheAnswers += 1
                        log("cached \(Wire.nameText(b, 12) ?? "?") is truncated")
                        return t
                    }
                }
            }
            cache.misses += 1
        }

        // 2. local data
        if !config.addressRules.isEmpty || !config.hosts.isEmpty || !config.localDomains.isEmpty {
            let n = answerLocally(b, q, now: now, into: out)
            if n > 0 { stats.localAnswers += 1; return n }
        }

        // 3. forward (or join an identical query in flight)
        let key = Wire.cacheKey(b, q)
        let keyHash = key.withUnsafeBufferPointer {
            ReplyCache.hashBytes64($0.baseAddress!, count: $0.count, seed: keySeed ^ (client.transport == .tcp ? 1 : 0))
        }
        if let pid = pendingByKey[keyHash], let p = pendings[pid], p.key == key, p.transport == client.transport {
            if p.waiters.count < config.maxWaitersPerQuery {
                p.waiters.append(Waiter(client: client, head: Array(b[0..<q.questionEnd]), maxSize: maxSize))
                stats.coalesced += 1
                return 0
            }
            stats.servfailOverLimit += 1
            return LocalReply.write(query: b, questionEnd: q.questionEnd, rcode: 2, qtype: q.qtype, ttl: 0, answers: [], aa: false, into: out)
        }
        if pendings.count >= config.forwardMax {
            stats.servfailOverLimit += 1
            overLimitSinceLog += 1
            if now &- lastOverLimitLog >= 5_000_000_000 || lastOverLimitLog == 0 {
                lastOverLimitLog = now
                actions.append(.log("maximum number of concurrent DNS queries reached (max: \(config.forwardMax)); answering SERVFAIL (\(overLimitSinceLog) since last warning)"))
                overLimitSinceLog = 0
            }
            return LocalReply.write(query: b, questionEnd: q.questionEnd, rcode: 2, qtype: q.qtype, ttl: 0, answers: [], aa: false, into: out)
        }

        let cands = selector.candidates(forName: selector.hasDomainServers ? (Wire.nameText(b, 12) ?? "?").lowercased() : nil)
        let pid = nextPendingID
        nextPendingID += 1
        // Held until servers appear or the deadline passes when there is none (order empty).
        let p = Pending(key: key, keyHash: keyHash, query: Array(b), nameEnd: q.nameEnd, questionEnd: q.questionEnd,
                        qtype: q.qtype, waiters: [Waiter(client: client, head: nil, maxSize: maxSize)], candidates: cands,
                        order: cands.isEmpty ? [] : selector.order(cands, now: now),
                        deadline: now &+ (cands.isEmpty ? config.holdWithoutServers : queryBudget(cands)),
                        transport: client.transport, started: now)
        pendings[pid] = p
        if pendingByKey[keyHash] == nil { pendingByKey[keyHash] = pid }
        timers.push(p.deadline, kind: .pending, id: pid)
        if !cands.isEmpty {
            stats.forwarded += 1
            startNext(pid, now: now, first: true)
        }
        return 0
    }

    /// How long a new query may take before the client gets SERVFAIL: `clientDeadline`, or,
    /// when every candidate is demoted (everything known down), one base timeout per server
    /// (each of them a chance to find one back) and at least two attempts' worth (a lone
    /// server gets one retransmission, as a stub would send), so that the client learns quickly.
    func queryBudget(_ cands: [Int]) -> UInt64 {
        guard !cands.isEmpty, !cands.contains(where: { selector.servers[$0].isHealthy }) else { return config.clientDeadline }
        var sum: UInt64 = 0, longest: UInt64 = 0
        for i in cands {
            let t = selector.timeout(for: i, probe: true)
            sum &+= t
            longest = max(longest, t)
        }
        return min(max(sum, 2 * longest) &+ 50_000_000, config.clientDeadline, config.allDownDeadline)
    }

    /// Answers from --address, hosts files and local-only domains. 0 = not local.
    func answerLocally(_ b: UnsafeRawBufferPointer, _ q: Wire.Query, now: UInt64, into out: UnsafeMutableRawBufferPointer) -> Int {
        guard q.qclass == 1 || q.qclass == 255 else { return 0 }
        let name = Wire.nameText(b, 12) ?? ""
        let lname = name.lowercased()
        // --address: longest matching domain wins
        var best: AddressRule? = nil
        var bestLen = -1
        for r in config.addressRules {
            for d in r.domains where UpstreamSelector.nameMatches(lname, d) && d.count > bestLen {
                best = r; bestLen = d.count
            }
        }
        if let r = best {
            if r.nxdomain {
                log("config \(name) is NXDOMAIN")
                return LocalReply.write(query: b, questionEnd: q.questionEnd, rcode: 3, qtype: q.qtype, ttl: 0, answers: [], aa: true, into: out)
            }
            return writeAddresses(b, q, name: name, v4: r.v4, v6: r.v6, source: "config", into: out)
        }
        if let h = config.hosts.names[lname] {
            return writeAddresses(b, q, name: name, v4: h.v4, v6: h.v6, source: h.source, into: out)
        }
        for d in config.localDomains where UpstreamSelector.nameMatches(lname, d) {
            log("config \(name) is NXDOMAIN")
            return LocalReply.write(query: b, questionEnd: q.questionEnd, rcode: 3, qtype: q.qtype, ttl: 0, answers: [], aa: true, into: out)
        }
        return 0
    }

    func writeAddresses(_ b: UnsafeRawBufferPointer, _ q: Wire.Query, name: String, v4: [[UInt8]], v6: [[UInt8]],
                        source: String, into out: UnsafeMutableRawBufferPointer) -> Int {
        let answers: [[UInt8]]
        switch q.qtype {
        case 1: answers = v4
        case 28: answers = v6
        default: answers = []
        }
        if config.logQueries {
            if answers.isEmpty {
                log("\(source) \(name) is NODATA")
            } else {
                for a in answers { log("\(source) \(name) is \(a.count == 4 ? IPText.v4(a) : IPText.v6(a))") }
            }
        }
        return LocalReply.write(query: b, questionEnd: q.questionEnd, rcode: 0, qtype: q.qtype, ttl: 0, answers: answers, aa: true, into: out)
    }

    // MARK: attempts

    /// Sends the pending query to the next server(s) per policy.
    func startNext(_ pid: Int, now: UInt64, first: Bool) {
        guard let p = pendings[pid] else { return }
        if selector.policy == .allServers && first {
            for s in p.order where !p.excluded.contains(s) {
                let probe = selector.isProbeDue(s, now: now)
                if probe { selector.beginProbe(s, now: now) }
                sendAttempt(p, pid: pid, server: s, now: now, probe: probe)
            }
            if p.active.isEmpty { finishFailed(pid, now: now) }
            return
        }
        // Next server not excluded and not already active; wrap around for another round
        // (only servers that timed out remain eligible). No new attempt when the client's
        // deadline is too close for one to be useful.
        var tries = 0
        if !first && now &+ 50_000_000 >= p.deadline { tries = p.order.count }
        // Another attempt is still within its time: wait for it rather than add one
        // (a probe of a demoted server does not count: it must not hold up the failover).
        if !first && p.active.contains(where: { attempts[$0].map { !$0.timedOut && !$0.probe } ?? false }) { tries = p.order.count }
        if p.attemptsMade >= config.maxAttemptsPerQuery { tries = p.order.count }
        let n = p.order.count
        while tries < n {
            let s = p.order[p.nextIndex % n]
            p.nextIndex += 1
            tries += 1
            if s < 0 || p.excluded.contains(s) { continue }
            if p.active.contains(where: { attempts[$0]?.server == s && attempts[$0]?.timedOut == false }) { continue }
            // A retransmission to the same server supersedes its timed-out attempt (bounds sockets).
            let stale = p.active.filter { attempts[$0]?.server == s }
            for aid in stale {
                p.active.removeAll { $0 == aid }
                endAttempt(aid, updatePending: false)
            }
            // Every healthy server failed (or none is left): a demoted one is the last resort,
            // and counts as its probe when one is due.
            let isProbe = selector.isProbeDue(s, now: now)
            if isProbe { selector.beginProbe(s, now: now) }
            sendAttempt(p, pid: pid, server: s, now: now, probe: isProbe)
            // A demoted server whose probe is due gets a copy of this query, in parallel,
            // so that the client never waits on the probe.
            if first, let probe = selector.probeDue(p.candidates, except: s, now: now), !p.excluded.contains(probe) {
                selector.beginProbe(probe, now: now)
                sendAttempt(p, pid: pid, server: probe, now: now, probe: true)
            }
            return
        }
        // Nobody left to try: if attempts are still out, wait for them; otherwise SERVFAIL.
        let live = p.active.contains { attempts[$0] != nil }
        if !live { finishFailed(pid, now: now) }
    }

    func sendAttempt(_ p: Pending, pid: Int, server: Int, now: UInt64, transport: Transport? = nil, probe: Bool = false) {
        let transport = transport ?? p.transport
        let aid = nextAttemptID
        nextAttemptID += 1
        let id = freshID()
        var bytes = p.query
        bytes[0] = UInt8(id >> 8); bytes[1] = UInt8(id & 0xff)
        var caseBits: UInt64 = 0
        if config.caseRandomization {
            caseBits = random()
            if caseBits == 0 { caseBits = 1 }   // 0 means "not randomised"
            bytes.withUnsafeMutableBytes { Wire.applyCase($0, nameEnd: p.nameEnd, bits: caseBits) }
        }
        let ep = selector.servers[server].spec.endpoint
        // A demoted server (a probe, or the last resort) waits its base timeout, not a doubled one.
        var timeout = selector.timeout(for: server, probe: probe || !selector.servers[server].isHealthy)
        if transport == .tcp { timeout = max(timeout * 2, 1_000_000_000) }
        let deadline = min(now &+ timeout, p.deadline)
        attempts[aid] = Attempt(pending: pid, server: server, endpoint: ep, upstreamID: id, sentAt: now,
                                deadline: deadline, transport: transport, probe: probe, caseBits: caseBits)
        p.active.append(aid)
        p.attemptsMade += 1
        selector.noteSent(server)
        timers.push(deadline, kind: .attempt, id: aid)
        if config.logQueries { log("forwarded \(p.name) to \(ep.serverText)") }
        actions.append(.send(attempt: aid, server: ep, transport: transport, bytes: bytes))
    }

    func endAttempt(_ aid: Int, updatePending: Bool = true) {
        guard let a = attempts.removeValue(forKey: aid) else { return }
        releaseID(a.upstreamID)
        selector.noteDone(a.server)
        if updatePending, let p = pendings[a.pending] {
            p.active.removeAll { $0 == aid }
        }
        actions.append(.cancel(attempt: aid))
    }

    // MARK: upstream events

    /// Bytes arrived on attempt `attempt`'s socket from `from`.
    public func handleUpstreamReply(attempt aid: Int, bytes b: UnsafeRawBufferPointer, from: Endpoint, now: UInt64) {
        guard let a = attempts[aid] else {
            stats.droppedLate += 1
            return
        }
        let pending = pendings[a.pending]
        guard pending != nil || a.orphanQuery != nil else {
            stats.droppedLate += 1
            return
        }
        let query = pending?.query ?? a.orphanQuery!
        let nameEnd = pending?.nameEnd ?? a.orphanNameEnd
        // Anti-spoofing: same address and port, same ID, a response, same question.
        guard from == a.endpoint, b.count >= 12, Wire.u16(b, 0) == a.upstreamID, b[2] & 0x80 != 0,
              query.withUnsafeBytes({ Wire.sameQuestion(b, $0, queryNameEnd: nameEnd) }),
              a.caseBits == 0 || Wire.caseMatches(b, nameEnd: nameEnd, bits: a.caseBits) else {
            if from == a.endpoint, b.count >= 12, Wire.u16(b, 0) == a.upstreamID, b[2] & 0x80 != 0,
               Wire.scanReply(b, collectOffsets: false) == nil {
                // Our ID from the server's own address and port, and no readable message: the
                // server is broken (a forger would have to guess port and ID to do this).
                stats.droppedMalformedReplies += 1
                log("reply from \(a.endpoint.serverText) is malformed, retrying")
                failAttempt(aid, now: now, timedOut: false, reason: "malformed reply")
                return
            }
            stats.droppedSpoofed += 1
            if from == a.endpoint {
                // From the server's own address and port: a broken server, or a forgery that
                // guessed the port. Not enough to fail over on: the genuine reply may still
                // come, and the attempt's timeout decides.
                selector.noteMismatch(a.server)
                attempts[aid]!.mismatches += 1
                if a.mismatches == 0 {
                    log("reply from \(a.endpoint.serverText) has a mismatched ID or question, ignored")
                }
            }
            return
        }
        guard let info = Wire.scanReply(b, collectOffsets: cache.capacity > 0) else {
            stats.droppedMalformedReplies += 1
            log("reply from \(a.endpoint.serverText) is malformed, retrying")
            failAttempt(aid, now: now, timedOut: false, reason: "malformed reply")
            return
        }
        let rtt = Double(now &- a.sentAt) / 1e9
        if info.rcode == 5 || info.rcode == 2 {
            let rc = info.rcode == 5 ? "REFUSED" : "SERVFAIL"
            selector.noteRTT(a.server, rtt: rtt)
            log("reply from \(a.endpoint.serverText) is \(rc), retrying")
            failAttempt(aid, now: now, timedOut: false, reason: rc)
            return
        }
        let tcRetry = info.truncated && a.transport == .udp
        if pending == nil {
            // A probe whose query was answered elsewhere: only its verdict is left.
            if tcRetry {
                selector.noteRTT(a.server, rtt: rtt)
                selector.probeInconclusive(a.server, now: now)
            } else {
                noteHealth(a.server, selector.noteSuccess(a.server, rtt: rtt, nxdomain: info.rcode == 3, now: now), reason: "")
            }
            endAttempt(aid)
            return
        }
        let p = pending!
        noteHealth(a.server, selector.noteSuccess(a.server, rtt: rtt, nxdomain: info.rcode == 3, final: !tcRetry, late: a.timedOut && !a.probe, now: now), reason: "")
        if tcRetry && a.server >= 0 {
            // Ask the same server again over TCP; keep the truncated reply as a fallback.
            p.truncatedReply = Array(b)
            log("reply from \(a.endpoint.serverText) is truncated, retrying over TCP")
            endAttempt(aid)
            sendAttempt(p, pid: a.pending, server: a.server, now: now, transport: .tcp, probe: a.probe)
            return
        }
        // Cache it.
        if cache.capacity > 0 && !info.truncated {
            var ttl: UInt32? = nil
            if info.rcode == 0 && info.answerCount > 0 {
                ttl = info.minTTL
            } else if (info.rcode == 3 || (info.rcode == 0 && info.answerCount == 0)) && config.negativeCache {
                ttl = info.negativeTTL
            }
            if let t = ttl, t > 0 {
                cache.insert(key: p.key, reply: Array(b), ttlOffsets: info.ttlOffsets, ttl: t, now: now)
            }
        }
        if config.logQueries { logAnswer("reply", b, qtype: p.qtype, rcode: info.rcode) }
        // This attempt has its verdict (a probe that answered must not live on as an orphan).
        endAttempt(aid)
        deliver(a.pending, reply: b)
    }

    /// Sending attempt `attempt` failed with `errno` (e.g. EPERM from a local firewall,
    /// ECONNREFUSED/ECONNRESET on TCP).
    public func handleSendFailure(attempt aid: Int, errno e: Int32, now: UInt64) {
        guard let a = attempts[aid] else { return }
        var buf = [CChar](repeating: 0, count: 128)
        fwd_strerror(e, &buf, 128)
        let text = String(cString: buf)
        // Always logged: this is an operational error, not query logging.
        opsLog(server: a.server, "failed to send to \(a.endpoint.serverText): \(text)", now: now)
        failAttempt(aid, now: now, timedOut: false, reason: text)
    }

    /// An upstream problem: logged even without --log-queries, but then at most once
    /// per server every 5 s (with a count of the lines not logged). Every line with it.
    func opsLog(server: Int, _ text: String, now: UInt64) {
        if config.logQueries {
            actions.append(.log(text))
            return
        }
        let last = lastSendFailureLog[server] ?? 0
        if last == 0 || now &- last >= 5_000_000_000 {
            let skipped = sendFailuresNotLogged[server] ?? 0
            actions.append(.log(text + (skipped > 0 ? " (and \(skipped) more not logged)" : "")))
            lastSendFailureLog[server] = now
            sendFailuresNotLogged[server] = 0
        } else {
            sendFailuresNotLogged[server, default: 0] += 1
        }
    }

    /// Logs a health transition (always: it is operational, not query logging).
    func noteHealth(_ i: Int, _ change: HealthChange, reason: String) {
        guard change != .none, selector.servers.indices.contains(i) else { return }
        let ip = selector.servers[i].spec.endpoint.serverText
        func secs(_ ns: UInt64) -> String {
            let tenths = (ns + 50_000_000) / 100_000_000
            return "\(tenths / 10).\(tenths % 10)s"
        }
        switch change {
        case .none: break
        case .demoted(let retryIn):
            actions.append(.log("demoting \(ip) (\(reason)); probing it again in \(secs(retryIn))"))
        case .stillDown(let retryIn):
            actions.append(.log("probe of \(ip) failed (\(reason)); probing it again in \(secs(retryIn))"))
        case .restored:
            actions.append(.log("\(ip) answers again; back in use"))
        }
    }

    func failAttempt(_ aid: Int, now: UInt64, timedOut: Bool, reason: String) {
        guard let a = attempts[aid] else { return }
        noteHealth(a.server, selector.noteFailure(a.server, now: now, timedOut: timedOut), reason: reason)
        selector.noteRetried(a.server)
        if pendings[a.pending] == nil {
            // An orphaned probe: nothing else to do.
            endAttempt(aid)
            return
        }
        if let p = pendings[a.pending] {
            if !timedOut { p.excluded.insert(a.server) }
            // Every server for this query is now down: the query gets what a query
            // starting now would (`allDownDeadline` from its start), not the full deadline.
            if !p.candidates.isEmpty && !p.candidates.contains(where: { selector.servers.indices.contains($0) && selector.servers[$0].isHealthy }) {
                let shorter = max(p.started &+ config.allDownDeadline, now &+ 50_000_000)
                if shorter < p.deadline {
                    p.deadline = shorter
                    timers.push(shorter, kind: .pending, id: a.pending)
                }
            }
        }
        if !timedOut { endAttempt(aid) }
        startNext(a.pending, now: now, first: false)
    }

    /// Sends the reply to every waiter and forgets the query.
    func deliver(_ pid: Int, reply b: UnsafeRawBufferPointer) {
        guard let p = pendings[pid] else { return }
        for w in p.waiters {
            let head = w.head ?? p.query
            var r = Array(b)
            r.withUnsafeMutableBytes { out in
                out[0] = head[0]; out[1] = head[1]
                out[2] = (out[2] & 0xFE) | (head[2] & 0x01)
                // the client's letter case in the question
                if out.count >= p.questionEnd { for j in 12..<(p.questionEnd - 4) { out[j] = head[j] } }
            }
            if w.client.transport == .udp && r.count > w.maxSize {
                let n = r.withUnsafeMutableBytes { Wire.truncateInPlace($0, questionEnd: p.questionEnd) }
                r.removeSubrange(n...)
            }
            actions.append(.reply(w.client, r))
        }
        finish(pid)
    }

    func finishFailed(_ pid: Int, now: UInt64) {
        guard let p = pendings[pid] else { return }
        if let tc = p.truncatedReply {
            log("reply \(p.name) is truncated")
            tc.withUnsafeBytes { deliver(pid, reply: $0) }
            return
        }
        stats.servfailNoAnswer += 1
        log("reply \(p.name) is SERVFAIL")
        for w in p.waiters {
            var r = [UInt8](repeating: 0, count: p.questionEnd)
            let n = r.withUnsafeMutableBytes { out in
                (w.head ?? p.query).withUnsafeBytes { LocalReply.write(query: $0, questionEnd: p.questionEnd, rcode: 2, qtype: p.qtype, ttl: 0, answers: [], aa: false, into: out) }
            }
            if n > 0 { actions.append(.reply(w.client, Array(r[0..<n]))) }
        }
        finish(pid)
    }

    func finish(_ pid: Int) {
        guard let p = pendings[pid] else { return }
        for aid in p.active {
            if var a = attempts[aid], a.probe, !a.timedOut {
                // Keep a probe out until its verdict (its socket and timer stay).
                a.orphanQuery = p.query
                a.orphanNameEnd = p.nameEnd
                attempts[aid] = a
                continue
            }
            endAttempt(aid)
        }
        pendings.removeValue(forKey: pid)
        if pendingByKey[p.keyHash] == pid { pendingByKey.removeValue(forKey: p.keyHash) }
    }

    // MARK: time

    /// The earliest time `handleTimers` has something to do, if any.
    public func nextDeadline() -> UInt64? {
        timers.peekValid(isValid)
    }

    private func isValid(_ e: TimerHeap.Item) -> Bool {
        switch e.kind {
        case .attempt:
            guard let a = attempts[e.id] else { return false }
            return !a.timedOut && a.deadline == e.at
        case .pending:
            guard let p = pendings[e.id] else { return false }
            return p.deadline == e.at
        }
    }

    public func handleTimers(now: UInt64) {
        lastNow = now
        while let item = timers.popDue(now) {
            guard isValid(item) else { continue }
            switch item.kind {
            case .attempt:
                guard var a = attempts[item.id] else { continue }
                a.timedOut = true
                attempts[item.id] = a
                if pendings[a.pending] != nil { opsLog(server: a.server, "\(a.endpoint.serverText) did not answer, retrying", now: now) }
                // The late reply may still win: the attempt stays open until the query ends.
                failAttempt(item.id, now: now, timedOut: true, reason: "did not answer")
            case .pending:
                finishFailed(item.id, now: now)
            }
        }
    }

    // MARK: configuration changes

    /// The upstream set changed (resolv-file re-read). Queries held for lack of servers start now.
    public func setServers(_ specs: [ServerSpec], now: UInt64) {
        // Server indices held by queries in flight are remapped to the new list; a
        // server no longer listed is never asked again (a reply already on its way is
        // still accepted). A query left with no listed server moves to the new set.
        let old = selector.servers.map { $0.spec.endpoint }
        selector.setServers(specs)
        config.servers = specs
        var index: [Endpoint: Int] = [:]
        for (i, s) in selector.servers.enumerated() where index[s.spec.endpoint] == nil { index[s.spec.endpoint] = i }
        let remap = old.map { index[$0] ?? -1 }
        func map(_ i: Int) -> Int { i >= 0 && i < remap.count ? remap[i] : -1 }
        for (aid, a) in attempts {
            var na = a
            na.server = map(a.server)
            // Not waited for any more (its reply is still taken if it comes).
            if na.server < 0 { na.timedOut = true }
            attempts[aid] = na
        }
        lastSendFailureLog = [:]
        sendFailuresNotLogged = [:]
        var restart: [(Int, Bool)] = []
        for (pid, p) in pendings {
            p.candidates = p.candidates.map(map).filter { $0 >= 0 }
            p.order = p.order.map(map).filter { $0 >= 0 }
            p.excluded = Set(p.excluded.map(map).filter { $0 >= 0 })
            if p.order.isEmpty {
                let cands = selector.candidates(forName: selector.hasDomainServers ? p.name.lowercased() : nil)
                p.candidates = cands
                p.order = selector.order(cands, now: now)
                p.nextIndex = 0
                let waiting = p.active.contains { attempts[$0].map { !$0.timedOut } ?? false }
                if !cands.isEmpty && !waiting {
                    let neverSent = p.attemptsMade == 0
                    if neverSent {
                        // Held for lack of servers: it gets a fair deadline now.
                        p.deadline = max(p.deadline, now &+ config.clientDeadline / 2)
                        timers.push(p.deadline, kind: .pending, id: pid)
                    }
                    restart.append((pid, neverSent))
                }
            }
        }
        for (pid, neverSent) in restart {
            if neverSent { stats.forwarded += 1 }
            startNext(pid, now: now, first: neverSent)
        }
    }

    public func setHosts(_ hosts: HostsTable) { config.hosts = hosts }

    public func clearCache() { cache.clear() }

    /// With nothing in flight, gives back the memory of the in-flight tables (after a burst).
    public func compactIfIdle() {
        guard pendings.isEmpty else { return }
        pendings = [:]
        pendingByKey = [:]
        attempts = [:]
        timers.items = []
        actions = []
        spareActions = []
    }

    // MARK: logs

    func logAnswer(_ verb: String, _ b: UnsafeRawBufferPointer, qtype: UInt16, rcode: Int? = nil) {
        let rc = rcode ?? Int(b.count >= 4 ? b[3] & 0x0F : 0)
        let qname = Wire.nameText(b, 12) ?? "?"
        if rc == 3 { log("\(verb) \(qname) is NXDOMAIN"); return }
        if rc != 0 { log("\(verb) \(qname) is \(rcodeName(rc))"); return }
        if b.count >= 3 && b[2] & 0x02 != 0 { log("\(verb) \(qname) is truncated"); return }
        let texts = Wire.answerTexts(b)
        if texts.isEmpty {
            let suffix = qtype == 1 ? "-IPv4" : qtype == 28 ? "-IPv6" : ""
            log("\(verb) \(qname) is NODATA\(suffix)")
            return
        }
        for (owner, text) in texts { log("\(verb) \(owner) is \(text)") }
    }

    func rcodeName(_ rc: Int) -> String {
        switch rc {
        case 1: return "FORMERR"
        case 2: return "SERVFAIL"
        case 4: return "NOTIMP"
        case 5: return "REFUSED"
        default: return "RCODE\(rc)"
        }
    }

    /// SIGUSR1: dnsmasq-style statistics lines.
    public func statisticsLines() -> [String] {
        var out: [String] = []
        out.append("cache size \(cache.capacity), \(cache.count) entries, \(cache.hits) hits, \(cache.misses) misses, \(cache.evictions)/\(cache.insertions) cache insertions re-used unexpired cache entries.")
        out.append("queries forwarded \(stats.forwarded), queries answered locally \(stats.cacheAnswers + stats.localAnswers), queries in flight \(pendings.count), coalesced \(stats.coalesced)")
        out.append("SERVFAIL: no answer \(stats.servfailNoAnswer), over --dns-forward-max \(stats.servfailOverLimit); FORMERR \(stats.formerr)")
        out.append("dropped: replies spoofed or mismatched \(stats.droppedSpoofed), late \(stats.droppedLate), malformed \(stats.droppedMalformedReplies); queries unreadable \(stats.droppedQueries)")
        let now = lastNow
        for s in selector.servers {
            var health = s.health.rawValue
            if s.health != .healthy {
                health += " for \((now &- s.demotedAt) / 1_000_000)ms"
                if s.health == .demoted { health += ", next probe in \(s.probeAt > now ? (s.probeAt - now) / 1_000_000 : 0)ms" }
            }
            let srtt = s.srtt.map { "\(Int($0 * 1000))ms" } ?? "unknown"
            out.append("server \(s.spec.endpoint.fullText): queries sent \(s.queriesSent), retried \(s.retried), failed \(s.failed), nxdomain replies \(s.nxdomain), avg. latency \(s.avgLatencyMs)ms, health \(health), srtt \(srtt), timeout \(selector.timeout(for: selector.servers.firstIndex { $0.spec == s.spec }!) / 1_000_000)ms, demoted \(s.demotions) times, mismatched replies \(s.mismatched)")
        }
        return out
    }
}

/// A binary min-heap of deadlines with lazy deletion.
struct TimerHeap {
    enum Kind { case attempt, pending }
    struct Item { var at: UInt64; var kind: Kind; var id: Int }
    var items: [Item] = []

    mutating func push(_ at: UInt64, kind: Kind, id: Int) {
        items.append(Item(at: at, kind: kind, id: id))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent].at <= items[i].at { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> Item? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].at < items[m].at { m = l }
                if r < items.count && items[r].at < items[m].at { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }

    mutating func popDue(_ now: UInt64) -> Item? {
        guard let first = items.first, first.at <= now else { return nil }
        return pop()
    }

    mutating func peekValid(_ valid: (Item) -> Bool) -> UInt64? {
        while let first = items.first {
            if valid(first) { return first.at }
            _ = pop()
        }
        return nil
    }
}
