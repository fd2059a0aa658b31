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
    public enum Health: String, Sendable { case unknown, healthy, suspect, down }

    public var spec: ServerSpec
    public var srtt: Double? = nil        // seconds
    public var rttvar: Double = 0
    public var consecutiveFailures = 0
    public var health: Health = .unknown
    /// When a down server may be probed again (ns).
    public var probeAt: UInt64 = 0
    /// When it last went down (ns).
    public var downSince: UInt64 = 0
    public var backoff: UInt64 = 1_000_000_000
    // dnsmasq-style counters
    public var queriesSent = 0
    public var retried = 0
    public var failed = 0
    public var nxdomain = 0
    public var latencySum: Double = 0
    public var latencyCount = 0
    public var inFlight = 0

    public var avgLatencyMs: Int { latencyCount == 0 ? 0 : Int((latencySum / Double(latencyCount)) * 1000) }
}

/// Upstream selection and health: the one place where policy lives.
///
/// Timeouts per attempt come from the server's smoothed RTT (RFC 6298 style:
/// srtt + 4 * rttvar, times 2 for the DNS server's own work), floored and capped;
/// an unknown server gets `unknownTimeout`. A failure (timeout, REFUSED/SERVFAIL, garbage, send error) marks a server
/// down; a down server is probed again after an exponential backoff (1 s to 30 s)
/// and gets traffic back on its first good reply.
public struct UpstreamSelector: Sendable {
    public var servers: [UpstreamState] = []
    public var policy: UpstreamPolicy
    public var minTimeout: UInt64 = 150_000_000
    public var maxTimeout: UInt64 = 1_500_000_000
    public var unknownTimeout: UInt64 = 800_000_000
    public var failuresToDown = 1
    /// Every this many queries, the runner-up goes first (so a faster server is found).
    public var exploreEvery = 32
    var queryCounter = 0
    public var maxBackoff: UInt64 = 30_000_000_000
    public var initialBackoff: UInt64 = 1_000_000_000

    public init(policy: UpstreamPolicy) { self.policy = policy }

    /// Replaces the set, keeping the state of servers that stay.
    public mutating func setServers(_ specs: [ServerSpec]) {
        var old: [Endpoint: UpstreamState] = [:]
        for s in servers { old[s.spec.endpoint] = s }
        servers = specs.map { spec in
            if var st = old[spec.endpoint] { st.spec = spec; return st }
            return UpstreamState(spec: spec)
        }
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
        var out: [Int] = []
        for (i, s) in servers.enumerated() where s.spec.domains.isEmpty { out.append(i) }
        return out
    }

    public var hasDomainServers: Bool { servers.contains { !$0.spec.domains.isEmpty } }

    /// true if `name` equals `domain` or is below it (both lower-case, no trailing dot).
    public static func nameMatches(_ name: String, _ domain: String) -> Bool {
        if domain.isEmpty { return true }
        if name == domain { return true }
        return name.hasSuffix("." + domain)
    }

    /// Orders candidates for a new query. Servers that are down go last in every
    /// policy (they still get the query if everything before them fails); a down
    /// server's recovery is checked by `takeProbe`, in parallel with real traffic.
    public mutating func order(_ cands: [Int], now: UInt64) -> [Int] {
        switch policy {
        case .allServers:
            return cands
        case .strictOrder:
            // List order, healthy (or unknown) servers first.
            return cands.filter { servers[$0].health != .down } + cands.filter { servers[$0].health == .down }
        case .bestRTT:
            func rank(_ i: Int) -> (Int, Double, Int) {
                let s = servers[i]
                let est = s.srtt ?? (Double(unknownTimeout) / 1e9) / 2
                return (s.health == .down ? 1 : 0, est, i)
            }
            var sorted = cands.sorted { rank($0) < rank($1) }
            queryCounter &+= 1
            if exploreEvery > 0 && queryCounter % exploreEvery == 0 && sorted.count > 1 {
                let second = sorted[1]
                if servers[second].health != .down { sorted.swapAt(0, 1) }
            }
            return sorted
        }
    }

    /// A down server among `cands` (not `except`) whose probe is due: the caller sends
    /// it this query too, in parallel. The next probe is not due before the backoff.
    public mutating func takeProbe(_ cands: [Int], except: Int?, now: UInt64) -> Int? {
        guard policy != .allServers else { return nil }
        for i in cands where i != except && servers[i].health == .down && now >= servers[i].probeAt {
            servers[i].probeAt = now &+ servers[i].backoff
            return i
        }
        return nil
    }

    /// The per-attempt timeout for server i (ns).
    public func timeout(for i: Int) -> UInt64 {
        guard let srtt = servers[i].srtt else { return unknownTimeout }
        let t = UInt64(max(0, 2 * srtt + 4 * servers[i].rttvar) * 1e9)
        return min(max(t, minTimeout), maxTimeout)
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

    /// A good reply (NOERROR/NXDOMAIN) after `rtt` seconds. A reply that came only
    /// after its attempt had timed out is counted but does not restore a down server:
    /// a server that slow is no use to clients.
    public mutating func noteSuccess(_ i: Int, rtt: Double, nxdomain: Bool, late: Bool = false) {
        guard servers.indices.contains(i) else { return }
        var s = servers[i]
        if let srtt = s.srtt {
            let err = rtt - srtt
            s.srtt = srtt + err / 8
            s.rttvar = s.rttvar + (abs(err) - s.rttvar) / 4
        } else {
            s.srtt = rtt
            s.rttvar = rtt / 2
        }
        s.latencySum += rtt
        s.latencyCount += 1
        if nxdomain { s.nxdomain += 1 }
        if !(late && s.health == .down) {
            s.consecutiveFailures = 0
            s.health = .healthy
            s.backoff = initialBackoff
        }
        servers[i] = s
    }

    /// A failure (timeout, REFUSED/SERVFAIL, garbage, a send error) of an attempt sent
    /// at `sentAt`. A healthy server goes down; a down server's probe failing doubles
    /// its backoff; failures of attempts sent before it went down change nothing more.
    public mutating func noteFailure(_ i: Int, now: UInt64, timedOut: Bool, sentAt: UInt64 = .max) {
        guard servers.indices.contains(i) else { return }
        var s = servers[i]
        s.failed += 1
        s.consecutiveFailures += 1
        if timedOut, let srtt = s.srtt {
            // Back off the estimate so that the next attempt waits a little longer.
            s.srtt = min(srtt * 2, Double(maxTimeout) / 1e9)
        }
        if s.health == .down {
            if sentAt >= s.downSince {
                s.backoff = min(s.backoff * 2, maxBackoff)
                s.probeAt = now &+ s.backoff
            }
        } else if s.consecutiveFailures >= failuresToDown {
            s.health = .down
            s.downSince = now
            s.backoff = initialBackoff
            s.probeAt = now &+ s.backoff
        } else {
            s.health = .suspect
        }
        servers[i] = s
    }

    public mutating func noteRetried(_ i: Int) { if servers.indices.contains(i) { servers[i].retried += 1 } }
}
