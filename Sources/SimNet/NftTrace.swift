import CSimSys
import Glibc

/// What a traced packet looked like (from nft's "packet:" line).
public struct PacketSummary: Equatable, CustomStringConvertible {
    public var iif: String?
    public var oif: String?
    public var saddr: String?
    public var daddr: String?
    /// "udp", "tcp", "icmp", "ipv6-icmp", ...
    public var l4proto: String?
    public var sport: Int?
    public var dport: Int?
    /// e.g. "destination-unreachable" for ICMP.
    public var icmpType: String?

    public var description: String {
        var s = "\(l4proto ?? "?") \(saddr ?? "?")"
        if let sport { s += ":\(sport)" }
        s += " -> \(daddr ?? "?")"
        if let dport { s += ":\(dport)" }
        if let icmpType { s += " (\(icmpType))" }
        return s
    }
}

/// One line of `nft monitor trace`.
public struct NftTraceEvent: Equatable, CustomStringConvertible {
    public enum Kind: String { case packet, rule, policy, verdict, other }
    public var traceID: String
    public var family: String
    public var table: String
    public var chain: String
    public var kind: Kind
    /// For rule events.
    public var handle: Int?
    /// For rule events: the rule text, counter values removed.
    public var ruleText: String?
    /// "accept", "drop", "continue", "jump sub", "return", ... (policy: the policy).
    public var verdict: String?
    /// The packet this trace id belongs to (the last "packet:" line seen for it).
    public var packet: PacketSummary?
    public var raw: String

    /// A rule or policy that ended the packet with drop (or reject).
    public var isDrop: Bool {
        guard kind == .rule || kind == .policy, let v = verdict else { return false }
        return v == "drop" || v.hasPrefix("reject")
    }

    public var description: String {
        switch kind {
        case .rule:
            return "rule `\(ruleText ?? "?")` (handle \(handle.map(String.init) ?? "?")) in chain \(chain) of table \(family) \(table): \(verdict ?? "?")"
                + (packet.map { " [\($0)]" } ?? "")
        case .policy:
            return "policy \(verdict ?? "?") of chain \(chain) in table \(family) \(table)" + (packet.map { " [\($0)]" } ?? "")
        default:
            return raw
        }
    }
}

extension NftParser {
    /// Parses one `nft -a monitor trace` line; nil for lines that are not trace lines.
    /// `packets` maps trace ids to summaries already seen (updated for packet lines).
    public static func parseTraceLine(_ line: String, packets: inout [String: PacketSummary]) -> NftTraceEvent? {
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard words.count >= 6, words[0] == "trace", words[1] == "id" else { return nil }
        let id = words[2], family = words[3], table = words[4], chain = words[5]
        let rest = Array(words.dropFirst(6))
        var ev = NftTraceEvent(traceID: id, family: family, table: table, chain: chain, kind: .other,
                               handle: nil, ruleText: nil, verdict: nil, packet: packets[id], raw: line)
        guard let first = rest.first else { return ev }
        switch first {
        case "packet:":
            let p = parsePacket(Array(rest.dropFirst()))
            packets[id] = p
            ev.kind = .packet
            ev.packet = p
        case "rule":
            ev.kind = .rule
            var body = rest.dropFirst().joined(separator: " ")
            if let r = body.simRange(of: " (verdict ", backwards: true) {
                ev.verdict = String(body[r.upperBound...]).simTrimmed(") ")
                body = String(body[..<r.lowerBound])
            }
            if let r = body.simRange(of: "# handle ", backwards: true) {
                ev.handle = Int(body[r.upperBound...].simTrimmed(" "))
                body = String(body[..<r.lowerBound])
            }
            ev.ruleText = normalizeRuleText(body).text
        case "policy":
            ev.kind = .policy
            ev.verdict = rest.dropFirst().joined(separator: " ")
        case "verdict":
            ev.kind = .verdict
            ev.verdict = rest.dropFirst().joined(separator: " ")
        default:
            break
        }
        return ev
    }

    static func parsePacket(_ w: [String]) -> PacketSummary {
        var p = PacketSummary()
        func unquote(_ s: String) -> String { s.simTrimmed("\"") }
        var i = 0
        while i < w.count {
            let next = i + 1 < w.count ? w[i + 1] : nil
            let prev = i > 0 ? w[i - 1] : nil
            switch w[i] {
            case "iif": if let n = next { p.iif = unquote(n) }
            case "oif": if let n = next { p.oif = unquote(n) }
            case "saddr" where prev == "ip" || prev == "ip6": p.saddr = next
            case "daddr" where prev == "ip" || prev == "ip6": p.daddr = next
            case "protocol" where prev == "ip": p.l4proto = next
            case "nexthdr" where prev == "ip6": p.l4proto = next
            case "sport" where prev == "udp" || prev == "tcp" || prev == "sctp":
                p.sport = next.flatMap { Int($0) }; p.l4proto = p.l4proto ?? prev
            case "dport" where prev == "udp" || prev == "tcp" || prev == "sctp":
                p.dport = next.flatMap { Int($0) }; p.l4proto = p.l4proto ?? prev
            case "type" where prev == "icmp" || prev == "icmpv6": p.icmpType = next
            default: break
            }
            i += 1
        }
        return p
    }
}

/// A running `nft -a monitor trace` inside one host, collecting events.
/// Events come only from packets that a rule marked with `meta nftrace set 1`.
public final class NftTrace {
    public let hostName: String
    private let process: ChildProcess
    private var readFD: Int32
    private var lock = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var collected: [NftTraceEvent] = []
    private var packets: [String: PacketSummary] = [:]
    private var finished = false
    private var thread: pthread_t?

    init(host: SimHost, timeout: Double) throws {
        hostName = host.name
        var fds: [Int32] = [-1, -1]
        let rc = simsys_pipe_cloexec(&fds)
        if rc != 0 { throw SimNetError.system("pipe2", "for nft trace", errno: rc) }
        do {
            process = try host.spawn(["nft", "-a", "monitor", "trace"], stdinFD: -1, stdoutFD: fds[1], stderrFD: fds[1])
        } catch {
            close(fds[0]); close(fds[1])
            throw error
        }
        close(fds[1])
        readFD = fds[0]
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&cond, nil)
        startReader()
        // Ready once its netlink socket joined NFNLGRP_NFTRACE (group 9).
        let deadline = MonotonicClock.now + timeout
        while !NftTrace.isSubscribed(pid: process.pid) {
            if !process.isRunning || MonotonicClock.now > deadline {
                stop()
                let out = rawOutput.joined(separator: "\n")
                throw process.isRunning
                    ? SimNetError.timeout("nft monitor trace on host \(hostName) did not subscribe")
                    : SimNetError.commandFailed(argv: ["nft", "-a", "monitor", "trace"], host: hostName,
                                                status: process.exitStatus?.code ?? -1, stderr: out)
            }
            usleep(2000)
        }
    }

    deinit {
        stop()
        pthread_mutex_destroy(&lock)
        pthread_cond_destroy(&cond)
    }

    private var rawLines: [String] = []
    private var rawOutput: [String] {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        return rawLines
    }

    static func isSubscribed(pid: pid_t) -> Bool {
        guard let text = try? FileIO.read("/proc/\(pid)/net/netlink") else { return false }
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 4, f[1] == "12", f[2] == Substring(String(pid)),
                  let groups = UInt32(f[3], radix: 16) else { continue }
            if groups & (1 << 8) != 0 { return true }
        }
        return false
    }

    private final class Box { let trace: NftTrace; init(_ t: NftTrace) { trace = t } }

    private func startReader() {
        let box = Unmanaged.passRetained(Box(self)).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.trace.readLoop()
            return nil
        }, box)
        if rc == 0 { thread = t } else {
            Unmanaged<Box>.fromOpaque(box).release()
            finished = true
        }
    }

    private func readLoop() {
        var pending: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            pending += buf[0..<n]
            while let nl = pending.firstIndex(of: 0x0a) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeSubrange(...nl)
                pthread_mutex_lock(&lock)
                rawLines.append(line)
                if let ev = NftParser.parseTraceLine(line, packets: &packets) {
                    collected.append(ev)
                }
                pthread_cond_broadcast(&cond)
                pthread_mutex_unlock(&lock)
            }
        }
        pthread_mutex_lock(&lock)
        finished = true
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&lock)
    }

    /// All events so far.
    public var events: [NftTraceEvent] {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        return collected
    }

    /// Every line nft printed (for artifacts).
    public var lines: [String] { rawOutput }

    /// Rule or policy events that dropped (or rejected) a packet.
    public var drops: [NftTraceEvent] { events.filter { $0.isDrop } }

    /// Waits until `predicate` holds for the events so far, up to `timeout`.
    @discardableResult
    public func wait(timeout: Double, until predicate: ([NftTraceEvent]) -> Bool) -> Bool {
        let deadline = MonotonicClock.now + timeout
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        while !predicate(collected) {
            if finished { return false }
            let left = deadline - MonotonicClock.now
            if left <= 0 { return false }
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let target = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + min(left, 1.0)
            var ts = timespec(tv_sec: Int(target), tv_nsec: Int((target - Double(Int(target))) * 1e9))
            pthread_cond_timedwait(&cond, &lock, &ts)
        }
        return true
    }

    /// Drops per rule: "rule `udp dport 53 drop` (handle 7) in chain input of
    /// table inet filter on host X dropped 3 packets", one line per rule/policy.
    public func dropSummary() -> [String] {
        var counts: [String: Int] = [:]
        var order: [String] = []
        for e in drops {
            let key: String
            if e.kind == .rule {
                key = "rule `\(e.ruleText ?? "?")` (handle \(e.handle.map(String.init) ?? "?")) in chain \(e.chain) of table \(e.family) \(e.table) on host \(hostName)"
            } else {
                key = "policy \(e.verdict ?? "drop") of chain \(e.chain) in table \(e.family) \(e.table) on host \(hostName)"
            }
            if counts[key] == nil { order.append(key) }
            counts[key, default: 0] += 1
        }
        return order.map { "\($0) dropped \(counts[$0]!) packet\(counts[$0]! == 1 ? "" : "s")" }
    }

    /// Stops the monitor and the reader. Idempotent.
    public func stop() {
        process.terminate(grace: 0.5)
        if let t = thread {
            thread = nil
            // The last reference may be dropped on the reader thread itself.
            if pthread_equal(t, pthread_self()) != 0 { pthread_detach(t) } else { pthread_join(t, nil) }
        }
        if readFD >= 0 { close(readFD); readFD = -1 }
    }
}
