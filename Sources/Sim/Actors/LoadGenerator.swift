/// Steady client load: `rate` queries per second for `duration` seconds over a
/// set of names, every result recorded. For "no failed query during a swap"
/// and "an upstream dies under load".
///
/// Query i is due at start + i/rate (names taken round-robin). `concurrency`
/// worker threads each take the next due query, so a slow or lost reply does
/// not hold up the schedule unless all workers are busy: for the schedule to
/// hold while an upstream swallows queries, give `concurrency` >= rate x
/// timeout x attempts (`samples[i].lag` shows any slip). The total is bounded:
/// at most `maxQueries`, and `stop()` ends it early.
public final class LoadGenerator: @unchecked Sendable {
    /// One query of the load.
    public struct Sample: Sendable {
        /// Index in the schedule.
        public var index: Int
        /// `SimClock.now()` the query was due.
        public var due: Double
        public var result: QueryResult

        /// Seconds the query started after it was due (all workers were busy).
        public var lag: Double { max(0, result.startTime - due) }
    }

    /// Counts over the samples so far.
    public struct Summary: Sendable, CustomStringConvertible {
        public var planned: Int
        public var sent: Int
        /// Accepted replies with NOERROR.
        public var noError: Int
        /// Everything else: errors and other RCODEs.
        public var failed: Int
        /// "timeout": 3, "SERVFAIL": 1, ...
        public var failures: [String: Int]
        public var maxLatency: Double
        /// The worst start delay behind schedule; large when `concurrency` is
        /// below rate x timeout x attempts and replies are lost.
        public var maxLag: Double

        public var description: String {
            let f = failures.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            return "\(sent)/\(planned) sent, \(noError) NOERROR, \(failed) failed\(f.isEmpty ? "" : " (\(f))"), max latency \((maxLatency * 1000).rounded()) ms, max lag \((maxLag * 1000).rounded()) ms"
        }
    }

    public static let maxQueries = 100_000
    public static let maxRate = 5_000.0
    public static let maxDuration = 3_600.0

    public let names: [String]
    public let type: String
    public let server: Endpoint
    public let rate: Double
    public let duration: Double
    public let plannedCount: Int
    /// Every finished query, in completion order.
    public let samples = EventLog<Sample>()

    private let concurrency: Int
    /// What the workers share. They hold this, not the generator, so that
    /// dropping the generator stops them (deinit -> stop).
    private let schedule: Schedule
    private let mutex = ActorMutex()
    private var threads: [ActorThread] = []
    private var started = false

    /// - Throws: `ActorError` when the names are empty or rate, duration or
    ///   their product is out of bounds.
    public init(names: [String], type: String = "A", server: Endpoint, rate: Double, duration: Double,
                client: QueryClient = QueryClient(), concurrency: Int = 8) throws {
        guard !names.isEmpty else { throw ActorError("load generator: no names") }
        guard rate > 0, rate <= LoadGenerator.maxRate else {
            throw ActorError("load generator: rate \(rate)/s out of range (0, \(Int(LoadGenerator.maxRate))]")
        }
        guard duration > 0, duration <= LoadGenerator.maxDuration else {
            throw ActorError("load generator: duration \(duration) s out of range (0, \(Int(LoadGenerator.maxDuration))]")
        }
        let planned = Int((rate * duration).rounded(.down))
        guard planned >= 1, planned <= LoadGenerator.maxQueries else {
            throw ActorError("load generator: \(planned) queries (rate x duration) out of range [1, \(LoadGenerator.maxQueries)]")
        }
        guard concurrency >= 1, concurrency <= 256 else {
            throw ActorError("load generator: concurrency \(concurrency) out of range [1, 256]")
        }
        self.names = names
        self.type = type
        self.server = server
        self.rate = rate
        self.duration = duration
        self.plannedCount = planned
        self.concurrency = min(concurrency, planned)
        self.schedule = Schedule(names: names, type: type, server: server, rate: rate, planned: planned,
                                 client: client, samples: samples)
    }

    deinit {
        stop()
    }

    /// Starts the workers; the schedule begins now. Calling it again does nothing.
    public func start() throws {
        let first: Bool = mutex.locked {
            if started { return false }
            started = true
            return true
        }
        guard first else { return }
        schedule.begin(at: SimClock.monotonic())
        let schedule = self.schedule
        var made: [ActorThread] = []
        do {
            for i in 0..<concurrency {
                made.append(try ActorThread(name: "load \(i)") { schedule.work() })
            }
        } catch {
            schedule.stopSignal.stop()
            made.forEach { $0.join() }
            throw error
        }
        mutex.locked { threads = made }
    }

    /// Waits until every planned query finished (or the load was stopped and
    /// the workers returned). Returns false on timeout.
    @discardableResult
    public func wait(timeout: Double) -> Bool {
        let n = concurrency
        let done = schedule.finished.wait(forCount: n, timeout: timeout)
        if done { joinAll() }
        return done
    }

    /// Stops scheduling new queries, waits for the ones in flight (each ends
    /// within the client's timeout x attempts) and joins the workers. Idempotent.
    public func stop() {
        schedule.stopSignal.stop()
        joinAll()
    }

    public var summary: Summary {
        let all = samples.snapshot()
        var s = Summary(planned: plannedCount, sent: all.count, noError: 0, failed: 0, failures: [:], maxLatency: 0, maxLag: 0)
        for sample in all {
            let r = sample.result
            s.maxLatency = max(s.maxLatency, r.latency)
            s.maxLag = max(s.maxLag, sample.lag)
            if r.error == nil, let rc = r.rcode, rc == .noError {
                s.noError += 1
            } else {
                s.failed += 1
                let key = r.error.map { "\($0)" } ?? r.rcode.map { "\($0)" } ?? "no reply"
                s.failures[key, default: 0] += 1
            }
        }
        return s
    }

    private func joinAll() {
        let t: [ActorThread] = mutex.locked {
            let t = threads
            threads = []
            return t
        }
        t.forEach { $0.join() }
    }

}

/// The load's shared state: which query is next, when it is due.
private final class Schedule: @unchecked Sendable {
    let names: [String]
    let type: String
    let server: Endpoint
    let rate: Double
    let planned: Int
    let client: QueryClient
    let samples: EventLog<LoadGenerator.Sample>
    let stopSignal = StopSignal()
    /// One entry per worker that returned.
    let finished = EventLog<Int>()
    private let mutex = ActorMutex()
    private var nextIndex = 0
    private var startMonotonic = 0.0

    init(names: [String], type: String, server: Endpoint, rate: Double, planned: Int, client: QueryClient,
         samples: EventLog<LoadGenerator.Sample>) {
        self.names = names
        self.type = type
        self.server = server
        self.rate = rate
        self.planned = planned
        self.client = client
        self.samples = samples
    }

    func begin(at time: Double) {
        mutex.locked { startMonotonic = time }
    }

    /// A worker: takes the next due query until the schedule or a stop ends it.
    func work() {
        defer { finished.append(1) }
        while true {
            let (index, due): (Int, Double) = mutex.locked {
                let i = nextIndex
                nextIndex += 1
                return (i, startMonotonic + Double(i) / rate)
            }
            if index >= planned { return }
            if stopSignal.wait(until: due) { return }
            let name = names[index % names.count]
            let result = client.query(name, type: type, server: server)
            samples.append(LoadGenerator.Sample(index: index, due: due - SimClock.epoch, result: result))
        }
    }
}
