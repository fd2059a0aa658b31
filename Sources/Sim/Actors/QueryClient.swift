import DNSWire
import Glibc

/// Why a query got no usable answer.
public enum QueryError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No matching reply within the timeout (every attempt).
    case timeout
    /// UDP, connected socket: ECONNREFUSED, i.e. an ICMP port unreachable came back.
    case refusedByICMP
    /// TCP: the connection was refused (RST to the SYN).
    case connectionRefused
    /// TCP: the connection was reset.
    case connectionReset
    /// TCP: the server closed the connection before a full reply.
    case connectionClosed
    /// A reply with the query's ID that does not decode.
    case malformed(String)
    /// A local failure: socket, bind, send (text names it).
    case socket(String)
    /// Bad name, type or address given to the client.
    case badInput(String)

    public var description: String {
        switch self {
        case .timeout: return "timeout"
        case .refusedByICMP: return "refused (ICMP port unreachable)"
        case .connectionRefused: return "connection refused"
        case .connectionReset: return "connection reset"
        case .connectionClosed: return "connection closed"
        case .malformed(let m): return "malformed reply: \(m)"
        case .socket(let m): return "socket error: \(m)"
        case .badInput(let m): return "bad input: \(m)"
        }
    }
}

/// The outcome of one client query.
public struct QueryResult: Sendable, CustomStringConvertible {
    public var name: String
    public var type: String
    public var server: Endpoint
    public var transport: QueryClient.Transport
    /// `SimClock.now()` at the first send.
    public var startTime: Double
    /// Seconds from the first send to the accepted reply (or to giving up).
    public var latency: Double
    /// The reply's RCODE; nil without a reply.
    public var rcode: RCode?
    /// Answer section RDATA as text: "192.168.122.203", "mail.hat.com", "10 mail.hat.com".
    public var answers: [String]
    public var answerRecords: [ResourceRecord]
    /// Where the accepted reply came from.
    public var replySource: Endpoint?
    /// The reply had TC set (with `followTruncation`, the UDP reply that sent us to TCP).
    public var truncated: Bool
    /// Attempts made (sends over UDP, connections over TCP).
    public var attempts: Int
    /// Replies ignored because their ID or question did not match.
    public var mismatchedReplies: Int
    public var error: QueryError?
    /// The decoded reply that was accepted.
    public var reply: Message?

    /// A reply arrived and was accepted (any RCODE).
    public var answered: Bool { error == nil && rcode != nil }

    public var description: String {
        let ms = (latency * 10000).rounded() / 10
        if let error { return "\(name) \(type) @\(server) \(transport): \(error) after \(ms) ms" }
        let rc = rcode.map { "\($0)" } ?? "-"
        let src = replySource.map { " from \($0)" } ?? ""
        return "\(name) \(type) @\(server) \(transport): \(rc) [\(answers.joined(separator: ", "))]\(truncated ? " TC" : "")\(src) in \(ms) ms"
    }
}

/// A DNS client for one query at a time, on the calling thread.
///
/// `.udpConnected` behaves like glibc's stub resolver: connect(), send, recv,
/// so the kernel drops replies from any other address (and the host answers
/// them with ICMP port unreachable), and an ICMP port unreachable for the query
/// shows as ECONNREFUSED. `.udpUnconnected` uses sendto/recvfrom and records
/// where the reply came from. Replies whose ID or question does not match are
/// ignored (counted), as a stub does.
public struct QueryClient {
    public enum Transport: String, Hashable, Sendable {
        case udpConnected, udpUnconnected, tcp
    }

    public var transport: Transport
    /// Seconds per attempt.
    public var timeout: Double
    public var attempts: Int
    /// Local address to bind (port 0), e.g. to pick the source in a multi-homed host.
    public var source: String?
    public var recursionDesired: Bool
    /// Add an OPT record advertising this UDP size.
    public var ednsUDPSize: UInt16?
    /// After a UDP reply with TC, ask again over TCP (as a stub does).
    public var followTruncation: Bool
    public var socketFactory: SocketFactory

    public init(transport: Transport = .udpConnected, timeout: Double = 2, attempts: Int = 1,
                source: String? = nil, recursionDesired: Bool = true, ednsUDPSize: UInt16? = nil,
                followTruncation: Bool = false, socketFactory: @escaping SocketFactory = loopbackSocketFactory) {
        self.transport = transport
        self.timeout = timeout
        self.attempts = attempts
        self.source = source
        self.recursionDesired = recursionDesired
        self.ednsUDPSize = ednsUDPSize
        self.followTruncation = followTruncation
        self.socketFactory = socketFactory
    }

    /// Asks `server` for `name`/`type`. Never throws: failures are in `result.error`.
    public func query(_ name: String, type: String = "A", server: Endpoint) -> QueryResult {
        var result = QueryResult(name: name, type: type, server: server, transport: transport,
                                 startTime: SimClock.now(), latency: 0, rcode: nil, answers: [], answerRecords: [],
                                 replySource: nil, truncated: false, attempts: 0, mismatchedReplies: 0,
                                 error: nil, reply: nil)
        let question: Question
        do {
            guard let t = RRType(name: type.uppercased()) else { throw ActorError("unknown type \"\(type)\"") }
            question = Question(name: try DNSName(name), type: t, klass: 1)
        } catch {
            result.error = .badInput("\(name) \(type): \(error)")
            return result
        }
        var sourceEndpoint: Endpoint?
        if let source {
            guard let ep = try? Endpoint(ip: source, port: 0), ep.family == server.family else {
                result.error = .badInput("source \"\(source)\" is not an address of the server's family")
                return result
            }
            sourceEndpoint = ep
        }
        var query = Message()
        query.header.id = UInt16.random(in: 0...UInt16.max)
        query.header.recursionDesired = recursionDesired
        query.questions = [question]
        if let size = ednsUDPSize {
            query.edns = EDNS(udpSize: size, extendedRCode: 0, version: 0, dnssecOK: false, options: [])
        }
        let bytes = query.encode()
        let start = SimClock.monotonic()

        let attemptsToMake = max(1, attempts)
        var exchange = Exchange(query: query, bytes: bytes, server: server, source: sourceEndpoint,
                                timeout: timeout, factory: socketFactory)
        if transport == .tcp {
            exchange.tcp(attempts: attemptsToMake, into: &result)
        } else {
            exchange.udp(connected: transport == .udpConnected, attempts: attemptsToMake, into: &result)
            if followTruncation, result.error == nil, result.truncated {
                // `attempts` counts the UDP sends and the TCP connections.
                exchange.tcp(attempts: attemptsToMake, into: &result)
                result.truncated = true
            }
        }
        result.latency = SimClock.monotonic() - start
        return result
    }

    /// Parses "1.2.3.4:53" / "[::1]:53" and asks it. A bad address is reported in the result.
    public func query(_ name: String, type: String = "A", server: String) -> QueryResult {
        do {
            return query(name, type: type, server: try Endpoint(parsing: server))
        } catch {
            // Any endpoint will do for the record: the query never left.
            var r = query(name, type: type, server: try! Endpoint(ip: "0.0.0.0", port: 0))
            r.error = .badInput("server \"\(server)\": \(error)")
            return r
        }
    }
}

/// One query's exchange with one server.
private struct Exchange {
    let query: Message
    let bytes: [UInt8]
    let server: Endpoint
    let source: Endpoint?
    let timeout: Double
    let factory: SocketFactory

    func openSocket(_ type: Int32) throws -> Int32 {
        let fd = try ActorSocket.open(factory, server.family, type)
        if let source {
            do { try ActorSocket.bind(fd, source, type == ActorSocket.udp ? "udp client" : "tcp client") } catch {
                close(fd)
                throw error
            }
        }
        return fd
    }

    /// Accepts `data` as the reply if ID and question match. Returns false to keep waiting.
    func accept(_ data: [UInt8], from: Endpoint?, into result: inout QueryResult) -> Bool {
        guard data.count >= 2, UInt16(data[0]) << 8 | UInt16(data[1]) == query.header.id else {
            result.mismatchedReplies += 1
            return false
        }
        let reply: Message
        do {
            reply = try Message(decoding: data)
        } catch {
            result.error = .malformed("\(error)")
            result.replySource = from
            return true
        }
        guard reply.header.isResponse, reply.questions.count == 1,
              reply.questions[0].name == query.questions[0].name,
              reply.questions[0].type == query.questions[0].type else {
            // A reply to some other question (RFC 5452: not ours).
            result.mismatchedReplies += 1
            return false
        }
        result.error = nil
        result.reply = reply
        result.rcode = reply.rcode
        result.answerRecords = reply.answers
        result.answers = reply.answers.map { Zone.text(of: $0.rdata) }
        result.truncated = reply.header.truncated
        result.replySource = from
        return true
    }

    mutating func udp(connected: Bool, attempts: Int, into result: inout QueryResult) {
        let fd: Int32
        do { fd = try openSocket(ActorSocket.udp) } catch {
            result.error = .socket("\(error)")
            return
        }
        defer { close(fd) }
        if connected {
            let rc = server.withSockaddr { connect(fd, $0, $1) }
            if rc != 0 {
                result.error = .socket("connect \(server): \(String(cString: strerror(errno)))")
                return
            }
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<attempts {
            result.attempts += 1
            result.error = nil
            let sendErr: Int32
            if connected {
                let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                sendErr = n < 0 ? errno : 0
            } else {
                sendErr = ActorSocket.send(fd, bytes, to: server)
            }
            if sendErr == ECONNREFUSED {
                // An ICMP error from an earlier attempt surfaced on send.
                result.error = .refusedByICMP
                continue
            }
            if sendErr != 0 {
                result.error = .socket("send to \(server): \(String(cString: strerror(sendErr)))")
                return
            }
            let deadline = SimClock.monotonic() + timeout
            var done = false
            while !done {
                let ev = ActorSocket.wait(fd, Int16(POLLIN), until: deadline)
                if ev == 0 {
                    result.error = .timeout
                    break
                }
                let (n, from) = ActorSocket.receive(fd, &buffer)
                if n < 0 {
                    let e = Int32(-n)
                    if e == EAGAIN || e == EINTR { continue }
                    if e == ECONNREFUSED {
                        result.error = .refusedByICMP
                        break
                    }
                    result.error = .socket("recv: \(String(cString: strerror(e)))")
                    return
                }
                done = accept(Array(buffer[0..<n]), from: from, into: &result)
            }
            if done { return }
        }
    }

    mutating func tcp(attempts: Int, into result: inout QueryResult) {
        for _ in 0..<attempts {
            result.attempts += 1
            result.error = nil
            if tcpAttempt(into: &result) { return }
        }
    }

    /// One connection. Returns true when finished (answer, malformed, local error).
    private func tcpAttempt(into result: inout QueryResult) -> Bool {
        let fd: Int32
        do { fd = try openSocket(ActorSocket.tcp) } catch {
            result.error = .socket("\(error)")
            return true
        }
        defer { close(fd) }
        let deadline = SimClock.monotonic() + timeout
        let rc = server.withSockaddr { connect(fd, $0, $1) }
        if rc != 0 && errno != EINPROGRESS {
            result.error = errno == ECONNREFUSED ? .connectionRefused : .socket("connect \(server): \(String(cString: strerror(errno)))")
            return errno != ECONNREFUSED
        }
        if rc != 0 {
            if ActorSocket.wait(fd, Int16(POLLOUT), until: deadline) == 0 {
                result.error = .timeout
                return false
            }
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
            if soError != 0 {
                result.error = soError == ECONNREFUSED ? .connectionRefused
                    : soError == ETIMEDOUT ? .timeout
                    : soError == ECONNRESET ? .connectionReset
                    : .socket("connect \(server): \(String(cString: strerror(soError)))")
                return false
            }
        }
        var out = [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xff)] + bytes
        while !out.isEmpty {
            let n = out.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { out.removeFirst(n); continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if ActorSocket.wait(fd, Int16(POLLOUT), until: deadline) == 0 {
                    result.error = .timeout
                    return false
                }
                continue
            }
            result.error = errno == ECONNRESET || errno == EPIPE ? .connectionReset : .socket("send: \(String(cString: strerror(errno)))")
            return false
        }
        var input: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            // Complete messages first (a server may send something else before our reply).
            while input.count >= 2 {
                let len = Int(input[0]) << 8 | Int(input[1])
                guard input.count >= 2 + len else { break }
                let message = Array(input[2..<(2 + len)])
                input.removeFirst(2 + len)
                if accept(message, from: server, into: &result) { return true }
            }
            if ActorSocket.wait(fd, Int16(POLLIN), until: deadline) == 0 {
                result.error = .timeout
                return false
            }
            let n = read(fd, &chunk, chunk.count)
            if n > 0 {
                input += chunk[0..<n]
            } else if n == 0 {
                result.error = .connectionClosed
                return false
            } else if errno == EAGAIN || errno == EINTR {
                continue
            } else {
                result.error = errno == ECONNRESET ? .connectionReset : .socket("recv: \(String(cString: strerror(errno)))")
                return false
            }
        }
    }
}
