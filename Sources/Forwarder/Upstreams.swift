/// A configured upstream: an address, optionally only for some domains.
public struct ServerSpec: Hashable, Sendable {
    public var endpoint: Endpoint
    /// Lower-case domains this server is for (empty = all names).
    public var domains: [String]
    /// Where it came from, for logs ("--server", or the resolv-file path).
    public var fromResolvFile: Bool

    public init(endpoint: Endpoint, domains: [String] = [], fromResolvFile: Bool = false) {
        self.endpoint = endpoint; self.domains = domains; self.fromResolvFile = fromResolvFile
    }
}

/// How queries choose among upstreams.
public enum UpstreamPolicy: Sendable {
    /// The best healthy server by smoothed RTT; on failure the next best.
    case bestRTT
    /// List order always; on failure the next one at once.
    case strictOrder
    /// Every server at once; the first good reply wins.
    case allServers
}

/// Per-upstream health and statistics, kept by the core.
public struct UpstreamState: Sendable {
    /// `healthy`: gets traffic by policy (a server never heard from is healthy with no RTT yet).
    /// `demoted`: failed; gets no client traffic of its own until a probe succeeds (it is
    /// still a last resort within one query when every healthy server failed too).
    /// `probing`: demoted, and one probe (a copy of a real client query) is out.
    public enum Health: String, Sendable { case healthy, demoted, probing }

    public var spec: ServerSpec
    /// Smoothed RTT and its mean deviation (seconds), RFC 6298 style; nil until measured.
    public var srtt: Double? = nil
    public var rttvar: Double = 0
    public var consecutiveFailures = 0
    /// Timeouts in a row: each one doubles the next attempt's timeout (up to the cap).
    public var consecutiveTimeouts = 0
    public var health: Health = .healthy
    /// Demoted: when the next probe is due. Probing: when the probe counts as lost (ns).
    public var probeAt: UInt64 = 0
    /// The wait before the next probe; doubles on each failed probe (0.5 s to 30 s).
    public var backoff: UInt64 = 500_000_000
    /// When the server was last demoted (ns), for statistics.
    public var demotedAt: UInt64 = 0
    public var demotions = 0
    // dnsmasq-style counters
    public var queriesSent = 0
    public var retried = 0
    public var failed = 0
    public var nxdomain = 0
    public var mismatched = 0
    public var latencySum: Double = 0
    public var latencyCount = 0
    public var inFlight = 0

    public init(spec: ServerSpec) { self.spec = spec }

    public var avgLatencyMs: Int { latencyCount == 0 ? 0 : Int((latencySum / Double(latencyCount)) * 1000) }
    public var isHealthy: Bool { health == .healthy }
}

/// What a reply or a failure did to a server's health (the core logs transitions).
public enum HealthChange: Equatable, Sendable {
    case none
    /// Healthy -> demoted; the first probe is due after `retryIn` ns.
    case demoted(retryIn: UInt64)
    /// A probe (or a last-resort attempt) failed again; next probe after `retryIn` ns.
    case stillDown(retryIn: UInt64)
    /// Demoted/probing -> healthy: it gets traffic again (fail-back).
    case restored
}

/// Upstream selection and health: the one place where policy lives. Pure logic over
/// `now` (monotonic ns), so that unit tests drive it on a virtual clock.
///
/// - Timeouts per attempt come from the server's smoothed RTT (RFC 6298: srtt + 4 * rttvar,
///   with srtt counted twice for the server's own work), floored at `minTimeout` and capped
///   at `maxTimeout`; a server never measured gets `unknownTimeout`. Each timeout in a row
///   doubles the next one (up to the cap).
/// - One failure (timeout, REFUSED/SERVFAIL, malformed reply, send error, TCP reset) demotes a
///   healthy server: with other servers at hand, a retry elsewhere costs far less than
///   a second client waiting on a broken one.
/// - A demoted server gets a probe when `probeAt` passes: a copy of the next client query,
///   sent to it in parallel with the normal choice (so the client never waits on the probe),
///   one probe at a time. A good reply restores it (fail-back); a failure doubles the backoff.
/// - Policies: `bestRTT` ranks healthy servers by smoothed RTT (servers never measured
///   count as `unknownTimeout / 2`, list order breaking ties) and every `exploreEvery`-th query
///   tries another healthy server within `exploreBand` of the best (as unbound's 400 ms band),
///   so that estimates stay fresh; `strictOrder` takes healthy servers in list order;
///   both put demoted servers last, as a last resort. `allServers` sends to every server.
public struct UpstreamSelector: Sendable {
    /// Replaced only by `setServers`, which refreshes the two cached lists below.
    public private(set) var servers: [UpstreamState] = []
    /// The servers without domains, in list order (`candidates(forName: nil)`), cached.
    private var defaultCandidates: [Int] = []
    /// true if some server is for particular domains only.
    public private(set) var hasDomainServers = false

    private mutating func refreshDefaults() {
        defaultCandidates = servers.indices.filter { servers[$0].spec.domains.isEmpty }
        hasDomainServers = servers.contains { !$0.spec.domains.isEmpty }
    }
    public var policy: UpstreamPolicy
    public var minTimeout: UInt64 = 150_000_000
    public var maxTimeout: UInt64 = 1_500_000_000
    public var unknownTimeout: UInt64 = 500_000_000
    public var failuresToDemote = 1
    public var initialBackoff: UInt64 = 500_000_000
    public var maxBackoff: UInt64 = 30_000_000_000
    /// Every this many queries, another healthy server within the band goes first.
    public var exploreEvery = 32
    public var exploreBand: Double = 0.4
    var queryCounter = 0

    public init(policy: UpstreamPolicy) { self.policy = policy }

    /// Changes server i in place (a copy out and back retained and released its fields).
    @inline(__always) mutating func modify(_ i: Int, _ body: (inout UpstreamState) -> Void) {
        servers.withUnsafeMutableBufferPointer { body(&$0[i]) }
    }

    /// Replaces the set, keeping the state of servers that stay.
    public mutating func setServers(_ specs: [ServerSpec]) {
        var old: [Endpoint: UpstreamState] = [:]
        for s in servers { old[s.spec.endpoint] = s }
        servers = specs.map { spec in
            if var st = old[spec.endpoint] { st.spec = spec; return st }
            return UpstreamState(spec: spec)
        }
        refreshDefaults()
    }

    /// Indices of the servers responsible for `name` (lower-case text): the longest
    /// matching domain's servers, else the servers without domains.
    public func candidates(forName name: String?) -> [Int] {
        var bestLen = -1
        var best: [Int] = []
        if let name = name {
            for (i, s) in servers.enumerated() where !s.spec.domains.isEmpty {
                for d in s.spec.domains where UpstreamSelector.nameMatches(name, d) {
                    if d.count > bestLen { bestLen = d.count; best = [i] }
                    else if d.count == bestLen && best.last != i { best.append(i) }
                }
            }
        }
        if bestLen >= 0 { return best }
        return defaultCandidates
    }

    /// true if `name` equals `domain` or is below it (both lower-case, no trailing dot).
    public static func nameMatches(_ name: String, _ domain: String) -> Bool {
        if domain.isEmpty { return true }
        if name == domain { return true }
        return name.hasSuffix("." + domain)
    }

    /// The RTT estimate used for ranking (seconds).
    func estimate(_ i: Int) -> Double {
        servers[i].srtt ?? (Double(unknownTimeout) / 1e9) / 2
    }

    /// Orders candidates for a new query: healthy servers by policy, then demoted ones
    /// (soonest probe first for bestRTT, list order for strictOrder).
    public mutating func order(_ cands: [Int], now: UInt64) -> [Int] {
        if policy == .allServers { return cands }
        if cands.count == 1 { return cands }
        let healthy = cands.filter { servers[$0].isHealthy }
        let down = cands.filter { !servers[$0].isHealthy }
        switch policy {
        case .allServers:
            return cands
        case .strictOrder:
            return healthy + down
        case .bestRTT:
            var sorted = healthy.sorted { (estimate($0), $0) < (estimate($1), $1) }
            queryCounter &+= 1
            if exploreEvery > 0 && queryCounter % exploreEvery == 0 && sorted.count > 1 {
                let best = estimate(sorted[0])
                let band = sorted.indices.dropFirst().filter { estimate(sorted[$0]) <= best + exploreBand }
                if !band.isEmpty {
                    let pick = band[(queryCounter / exploreEvery) % band.count]
                    let s = sorted.remove(at: pick)
                    sorted.insert(s, at: 0)
                }
            }
            let downSorted = down.sorted { (servers[$0].probeAt, $0) < (servers[$1].probeAt, $1) }
            return sorted + downSorted
        }
    }

    /// A demoted server among `cands` whose probe is due (not `except`), if any.
    public func probeDue(_ cands: [Int], except: Int?, now: UInt64) -> Int? {
        guard policy != .allServers else { return nil }
        for i in cands where i != except && isProbeDue(i, now: now) { return i }
        return nil
    }

    /// true if server i is demoted and may be probed now (or its probe was lost).
    public func isProbeDue(_ i: Int, now: UInt64) -> Bool {
        guard servers.indices.contains(i) else { return false }
        let s = servers[i]
        return s.health != .healthy && now >= s.probeAt
    }

    /// A probe goes to server i now: one at a time, so the next is not due until this
    /// one is answered, fails, or is given up after `maxTimeout * 2`.
    public mutating func beginProbe(_ i: Int, now: UInt64) {
        guard servers.indices.contains(i) else { return }
        servers[i].health = .probing
        servers[i].probeAt = now &+ 2 * maxTimeout
    }

    /// The per-attempt timeout for server i (ns). A probe does not grow with the timeouts
    /// in a row (the backoff between probes does), and waits at least `unknownTimeout`.
    public func timeout(for i: Int, probe: Bool = false) -> UInt64 {
        guard servers.indices.contains(i) else { return unknownTimeout }
        if probe {
            var base = unknownTimeout
            if let srtt = servers[i].srtt { base = max(base, UInt64(max(0, 2 * srtt + 4 * servers[i].rttvar) * 1e9)) }
            return min(base, maxTimeout)
        }
        let s = servers[i]
        var t: UInt64
        if let srtt = s.srtt {
            t = UInt64(max(0, 2 * srtt + 4 * s.rttvar) * 1e9)
            t = max(t, minTimeout)
        } else {
            t = unknownTimeout
        }
        let doublings = min(s.consecutiveTimeouts, 4)
        t = t << UInt64(doublings)
        return min(t, maxTimeout)
    }

    public mutating func noteSent(_ i: Int) {
        guard servers.indices.contains(i) else { return }
        servers[i].queriesSent += 1
        servers[i].inFlight += 1
    }

    public mutating func noteDone(_ i: Int) {
        guard servers.indices.contains(i) else { return }
        if servers[i].inFlight > 0 { servers[i].inFlight -= 1 }
    }

    /// An RTT sample (a reply that came, good or bad) updates the estimate.
    public mutating func noteRTT(_ i: Int, rtt: Double) {
        guard servers.indices.contains(i) else { return }
        modify(i) { s in
            if let srtt = s.srtt {
                let err = rtt - srtt
                s.srtt = srtt + err / 8
                s.rttvar = s.rttvar + (abs(err) - s.rttvar) / 4
            } else {
                s.srtt = rtt
                s.rttvar = rtt / 2
            }
            s.consecutiveTimeouts = 0
        }
    }

    /// A good reply (NOERROR/NXDOMAIN, or a truncated one whose TCP retry is still to come
    /// with `final: false`) after `rtt` seconds. A `late` reply (its attempt had timed out)
    /// is counted but does not restore a demoted server: a server that slow is no use.
    @discardableResult
    public mutating func noteSuccess(_ i: Int, rtt: Double, nxdomain: Bool, final: Bool = true, late: Bool = false, now: UInt64 = 0) -> HealthChange {
        guard servers.indices.contains(i) else { return .none }
        noteRTT(i, rtt: rtt)
        servers[i].latencySum += rtt
        servers[i].latencyCount += 1
        if nxdomain { servers[i].nxdomain += 1 }
        guard final, !(late && servers[i].health != .healthy) else { return .none }
        let was = servers[i].health
        let backoff = initialBackoff
        modify(i) { s in
            s.consecutiveFailures = 0
            s.health = .healthy
            s.backoff = backoff
        }
        return was == .healthy ? .none : .restored
    }

    /// A failure: timeout, REFUSED/SERVFAIL, garbage, a TCP reset, or a send error.
    @discardableResult
    public mutating func noteFailure(_ i: Int, now: UInt64, timedOut: Bool) -> HealthChange {
        guard servers.indices.contains(i) else { return .none }
        var s = servers[i]
        s.failed += 1
        s.consecutiveFailures += 1
        if timedOut { s.consecutiveTimeouts += 1 }
        defer { servers[i] = s }
        switch s.health {
        case .healthy:
            guard s.consecutiveFailures >= failuresToDemote else { return .none }
            s.health = .demoted
            s.backoff = initialBackoff
            s.probeAt = now &+ s.backoff
            s.demotedAt = now
            s.demotions += 1
            return .demoted(retryIn: s.backoff)
        case .probing:
            s.health = .demoted
            s.backoff = min(s.backoff * 2, maxBackoff)
            s.probeAt = now &+ s.backoff
            return .stillDown(retryIn: s.backoff)
        case .demoted:
            // A last-resort attempt failed: the probe schedule stands.
            return .none
        }
    }

    /// A probe's reply was truncated after its query was answered elsewhere: no verdict;
    /// probe again after the same backoff.
    public mutating func probeInconclusive(_ i: Int, now: UInt64) {
        guard servers.indices.contains(i), servers[i].health == .probing else { return }
        servers[i].health = .demoted
        servers[i].probeAt = now &+ servers[i].backoff
    }

    public mutating func noteRetried(_ i: Int) { if servers.indices.contains(i) { servers[i].retried += 1 } }
    public mutating func noteMismatch(_ i: Int) { if servers.indices.contains(i) { servers[i].mismatched += 1 } }
}
