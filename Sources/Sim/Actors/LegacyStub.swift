import Glibc

/// The glibc-era stub resolver from the resolv.conf incident (report A): it
/// reads a resolv.conf ONCE when created, keeps the first nameserver, and then
/// every `interval` asks it for a name over connected UDP, whatever the file
/// says later. Each lookup is recorded with the server asked.
public final class LegacyStub: @unchecked Sendable {
    public struct Lookup: Sendable, CustomStringConvertible {
        /// `SimClock.now()` when the lookup started.
        public var time: Double
        public var server: Endpoint
        public var result: QueryResult

        public var description: String { "\((time * 1000).rounded() / 1000)s asked \(server): \(result)" }
    }

    public let resolvConf: String
    /// The server read from the file at start; never changes.
    public let server: Endpoint
    public let name: String
    public let type: String
    public let interval: Double
    public let lookups = EventLog<Lookup>()

    private let client: QueryClient
    private let stopSignal = StopSignal()
    private let mutex = ActorMutex()
    private var thread: ActorThread?

    /// Reads `resolvConf` now.
    /// - Parameters:
    ///   - port: the server port (resolv.conf cannot name one; tests use high ports).
    ///   - timeout: per lookup, one attempt.
    /// - Throws: `ActorError` naming the file (and line) when it cannot be read
    ///   or names no usable nameserver.
    public init(resolvConf: String, name: String, type: String = "A", interval: Double = 5,
                port: UInt16 = 53, timeout: Double = 2,
                socketFactory: @escaping SocketFactory = loopbackSocketFactory) throws {
        guard interval > 0 else { throw ActorError("legacy stub: interval must be positive, got \(interval)") }
        self.resolvConf = resolvConf
        self.server = try LegacyStub.firstNameserver(path: resolvConf, port: port)
        self.name = name
        self.type = type
        self.interval = interval
        self.client = QueryClient(transport: .udpConnected, timeout: timeout, attempts: 1, socketFactory: socketFactory)
    }

    deinit {
        stop()
    }

    /// Starts the lookup loop: the first lookup at once, then every `interval`.
    public func start() throws {
        try mutex.locked {
            guard thread == nil, !stopSignal.isStopped else { return }
            // The thread holds what it needs, not the stub: dropping the stub stops it.
            let (client, server, name, type, interval, lookups, stopSignal) =
                (self.client, self.server, self.name, self.type, self.interval, self.lookups, self.stopSignal)
            thread = try ActorThread(name: "legacy stub") {
                LegacyStub.loop(client: client, server: server, name: name, type: type, interval: interval,
                                lookups: lookups, stopSignal: stopSignal)
            }
        }
    }

    /// Ends the loop (interrupting the wait between lookups) and joins it. Idempotent.
    public func stop() {
        stopSignal.stop()
        let t: ActorThread? = mutex.locked {
            let t = thread
            thread = nil
            return t
        }
        t?.join()
    }

    private static func loop(client: QueryClient, server: Endpoint, name: String, type: String, interval: Double,
                             lookups: EventLog<Lookup>, stopSignal: StopSignal) {
        var next = SimClock.monotonic()
        while !stopSignal.isStopped {
            let time = SimClock.now()
            let result = client.query(name, type: type, server: server)
            lookups.append(Lookup(time: time, server: server, result: result))
            // As a loop that sleeps between lookups: no burst to catch up after a slow one.
            next = max(next + interval, SimClock.monotonic())
            if stopSignal.wait(until: next) { return }
        }
    }

    /// The first `nameserver` line of a resolv.conf, as glibc reads it.
    static func firstNameserver(path: String, port: UInt16) throws -> Endpoint {
        guard let file = fopen(path, "r") else {
            throw ActorError.errno("legacy stub: cannot read \(path)")
        }
        defer { fclose(file) }
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            text += chunk[0..<n]
            if text.count > 1 << 20 { throw ActorError("legacy stub: \(path) is larger than 1 MiB") }
        }
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        for (i, raw) in lines.enumerated() {
            let words = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard words.first == "nameserver" else { continue }
            guard words.count >= 2 else {
                throw ActorError("legacy stub: \(path) line \(i + 1): nameserver without an address")
            }
            do {
                return try Endpoint(ip: String(words[1]), port: port)
            } catch {
                throw ActorError("legacy stub: \(path) line \(i + 1): \(error)")
            }
        }
        throw ActorError("legacy stub: \(path) names no nameserver")
    }
}
