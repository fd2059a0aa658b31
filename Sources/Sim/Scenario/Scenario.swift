/// A scenario: a topology, the actors in it, and a timeline of steps with
/// what must be seen. Read from `scenarios/<family>/<name>.yaml`; see
/// `scenarios/README.md` for the file format.
public struct Scenario {
    public var file: String
    /// Short id from the file name ("start-up-race"), used for artifacts and pinned names.
    public var id: String
    /// Folder under scenarios/ ("resolv-swap").
    public var family: String
    public var name: String
    public var incident: String?
    public var story: String?
    public var hosts: [HostSpec]
    public var upstreams: [UpstreamSpec]
    public var forwarder: ForwarderSpec?
    /// What each subject must show; absent subjects are skipped.
    public var subjects: [String: SubjectDeclaration]
    public var steps: [Step]
    /// Hard bound on the whole run of the scenario.
    public var timeLimit: Double
}

public enum SubjectDeclaration: Equatable {
    /// All expectations hold as written.
    case passes
    /// The subject is known to fail; the `expect-<subject>` blocks state the
    /// exact symptom, and the symptom must be seen.
    case fails(String)
    case skip(String)
}

public struct HostSpec {
    public var name: String
    public var line: Int
    /// interface name -> link id; two interfaces with one link id are a veth pair.
    public var links: [(ifname: String, link: String)]
    public var bridges: [(name: String, ports: [String])]
    public var addresses: [(dev: String, cidr: String)]
    public var routes: [RouteSpec]
    public var sysctls: [(key: String, value: String)]
    public var forwarding: Bool
    public var nftables: String?
    public var files: [FileSpec]
}

public struct RouteSpec: Equatable {
    public var destination: String   // "default" or a CIDR
    public var via: String?
    public var dev: String?
}

public struct FileSpec {
    public var name: String
    public var content: String
    /// Make the name a symlink to a versioned file, so that a later step can re-point it.
    public var symlink: Bool
}

public struct ZoneEntrySpec: Equatable {
    public var name: String
    public var type: String
    public var value: String
    public var ttl: UInt32
}

public enum BehaviourSpec: Equatable {
    case answer
    case delay(Double)
    case silent
    case refused
    case servfail
    case nxdomain
    case truncate(tcp: String)   // "answer", "reset", "hang"
    case wrongID
    case wrongQuestion
    case lowercaseQuestion
    case garbage
    case fromOtherAddress(String)
}

public struct UpstreamSpec {
    public var name: String
    public var line: Int
    public var host: String
    public var address: String
    public var port: Int
    public var zone: [ZoneEntrySpec]
    public var soa: String?
    public var behaviour: BehaviourSpec
    /// recvfrom/sendto on the wildcard address: the Docker incident's mistake.
    public var naive: Bool
    public var tcp: Bool
}

public struct ForwarderSpec {
    public var host: String
    /// dnsmasq-style options; `@name` stands for the host's scratch file `name`.
    public var options: [String]
    /// Options given only to one subject ("ours" -> [...]).
    public var subjectOptions: [String: [String]]
    /// The address clients use (for readiness and defaults).
    public var address: String?
    public var port: Int
    /// Start the forwarder at t=0 (default) or only when a step says so.
    public var start: Bool
}

public struct Step {
    public var index: Int
    public var line: Int
    public var label: String
    /// Wait until this many seconds after the scenario's start before the step.
    public var at: Double?
    /// Name for the step, used by `since:` and `wait:`.
    public var id: String?
    public var action: StepAction
    public var expect: Expectation?
    /// Per-subject replacement of `expect` (the declared failure's symptom).
    public var subjectExpect: [String: Expectation]
    /// Run without waiting for the result; a later `wait:` (or the end) collects it.
    public var background: Bool
    /// Run this step only for these subjects (nil: for all).
    public var only: [String]?

    public func expectation(for subject: String) -> Expectation? {
        subjectExpect[subject] ?? expect
    }
}

public struct QuerySpec {
    public var from: String
    public var to: String
    public var port: Int
    public var name: String
    public var type: String
    public var transport: String   // udp (connected), udp-unconnected, tcp
    public var timeout: Double
    public var attempts: Int
    public var source: String?
    public var count: Int
}

public struct LoadSpec {
    public var from: String
    public var to: String
    public var port: Int
    /// `{i}` in a name is replaced by the query's sequence number.
    public var names: [String]
    public var type: String
    public var rate: Double
    public var duration: Double
    public var timeout: Double
}

public struct StubSpec {
    public var host: String
    public var resolv: String
    public var name: String
    public var interval: Double
    public var timeout: Double
}

public enum FileMethod: String {
    case rewrite, rename, symlink, delete, create
}

public enum StepAction {
    case query(QuerySpec)
    case load(LoadSpec)
    case stub(StubSpec)
    case file(host: String, name: String, method: FileMethod, content: String)
    case behaviour(upstream: String, BehaviourSpec)
    case firewall(host: String, commands: [String])
    case link(host: String, dev: String, up: Bool)
    case address(host: String, dev: String, cidr: String, add: Bool)
    case process(name: String, action: String)
    case wait(ids: [String])
    case run(host: String, argv: [String], timeout: Double)
    case upstreamSaw(UpstreamSawSpec)
    case log(LogSpec)
    case icmpUnreachable(host: String, min: Int, within: Double)
    case firewallCount(FirewallCountSpec)
    case stats(StatsSpec)
    case stubSaw(StubSawSpec)
    case spoof(SpoofSpec)
    case flood(FloodSpec)
    case slowloris(SlowlorisSpec)
}

/// An off-path attacker: forged replies from the upstream's address to guessed ports.
public struct SpoofSpec {
    public var from: String
    public var target: String
    public var upstream: String
    public var names: [String]
    public var poison: String
    public var count: Int
    public var rate: Double
}

/// Malformed datagrams (a catalog of broken DNS packets) at a server.
public struct FloodSpec {
    public var from: String
    public var to: String
    public var port: Int
    public var count: Int
    public var rate: Double
}

/// Idle TCP connections that never send a whole query.
public struct SlowlorisSpec {
    public var from: String
    public var to: String
    public var port: Int
    public var connections: Int
}

public struct UpstreamSawSpec {
    public var upstream: String
    public var name: String?
    public var transport: String?
    /// Only queries whose source address is this.
    public var source: String?
    /// Count queries from this step's start (a step id) or time (seconds); default 0.
    public var since: SinceSpec
    public var min: Int?
    public var max: Int?
    public var within: Double
    /// Name of a figure to report: the delay from `since` to the first query seen.
    public var report: String?
}

public enum SinceSpec: Equatable {
    case start
    case time(Double)
    case step(String)
    case stepEnd(String)
}

public struct LogSpec {
    public var process: String
    public var contains: String
    public var min: Int
    public var absent: Bool
    public var within: Double
    public var since: SinceSpec
}

public struct FirewallCountSpec {
    public var host: String
    /// Rule selected by its comment, or by text it contains.
    public var rule: String
    public var chain: String?
    public var min: Int?
    public var max: Int?
    public var within: Double
    /// Put the trace's diagnosis (which rule dropped what) into the report.
    public var diagnose: Bool
}

public struct StatsSpec {
    public var process: String
    public var within: Double
    /// The statistics must show this many queries in flight (e.g. 0: nothing leaked).
    public var inflight: Int?
    /// Resident memory may grow at most this many bytes since the previous stats step.
    public var rssGrowthMax: Int64?
    /// Open file descriptors may grow at most by this many since the first stats step
    /// (the baseline: take it quiet; fds follow the queries in flight, so compare quiet points).
    public var fdGrowthMax: Int?
    /// Counters in the statistics text ("replies spoofed or mismatched") and their least value.
    public var atLeast: [(String, Int)]
}

public struct StubSawSpec {
    public var stub: String
    public var server: String?
    public var answer: String?
    public var since: SinceSpec
    public var min: Int
    public var all: Bool
    public var within: Double
}

/// What a query (or a load, or a run) must show.
public struct Expectation {
    public var line: Int
    public var answers: [String]?
    public var rcode: String?
    /// The client got no reply at all.
    public var timeout: Bool?
    /// The client saw ICMP port unreachable (ECONNREFUSED on a connected socket).
    public var error: String?
    public var replySource: String?
    public var within: Double?
    /// The reply must not come before this (e.g. held until upstreams appear).
    public var after: Double?
    public var truncated: Bool?
    /// For loads: how many may fail (default 0 when given).
    public var maxFailed: Int?
    /// For loads that show a declared failure: at least this many must fail.
    public var minFailed: Int?
    /// For loads: a reply with any of these rcodes is a success (the soak: answered
    /// or SERVFAILed within bound); `answer` then applies to NOERROR replies only.
    public var rcodes: [String]?
    public var outputContains: [String]?
    public var outputLacks: [String]?
    public var exitStatus: Int?
    public var symptom: String?
}
