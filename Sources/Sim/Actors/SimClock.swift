import Glibc

/// The test-bed's clock: monotonic seconds since a shared epoch.
///
/// Every actor stamps its records with `SimClock.now()`, so the queries an
/// upstream saw, the client results and the runner's timeline line up on one
/// axis. The runner sets the epoch when a scenario starts.
public enum SimClock {
    private static let lock = ActorMutex()
    nonisolated(unsafe) private static var epochValue: Double = monotonic()

    /// Raw CLOCK_MONOTONIC in seconds.
    public static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The monotonic instant that `now()` counts from.
    public static var epoch: Double {
        lock.locked { epochValue }
    }

    /// Sets the epoch (default: this instant).
    public static func setEpoch(_ value: Double = SimClock.monotonic()) {
        lock.locked { epochValue = value }
    }

    /// Seconds since the epoch.
    public static func now() -> Double {
        monotonic() - epoch
    }
}
