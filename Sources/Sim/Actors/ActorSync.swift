import Glibc

/// A pthread mutex; the actors' only lock primitive.
final class ActorMutex: @unchecked Sendable {
    fileprivate var mutex = pthread_mutex_t()

    init() {
        pthread_mutex_init(&mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(&mutex)
    }

    func lock() { pthread_mutex_lock(&mutex) }
    func unlock() { pthread_mutex_unlock(&mutex) }

    @discardableResult
    func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}

/// A condition variable on CLOCK_MONOTONIC, used with an `ActorMutex`.
final class ActorCondition: @unchecked Sendable {
    private var cond = pthread_cond_t()

    init() {
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(&cond)
    }

    func broadcast() { pthread_cond_broadcast(&cond) }

    /// Waits (mutex held) until signalled or the monotonic `deadline` (seconds,
    /// `SimClock.monotonic()` scale) passes. Returns false on timeout.
    @discardableResult
    func wait(_ mutex: ActorMutex, until deadline: Double) -> Bool {
        if deadline.isInfinite {
            pthread_cond_wait(&cond, &mutex.mutex)
            return true
        }
        let whole = deadline.rounded(.down)
        var ts = timespec(tv_sec: Int(whole), tv_nsec: Int((deadline - whole) * 1e9))
        return pthread_cond_timedwait(&cond, &mutex.mutex, &ts) == 0
    }
}

/// A one-way "stop" flag that sleeping actor threads wait on, so that `stop()`
/// interrupts an interval wait at once instead of after it.
final class StopSignal: @unchecked Sendable {
    private let mutex = ActorMutex()
    private let cond = ActorCondition()
    private var stopped = false

    var isStopped: Bool { mutex.locked { stopped } }

    func stop() {
        mutex.locked {
            stopped = true
            cond.broadcast()
        }
    }

    /// Waits until the monotonic deadline or a stop. Returns true if stopped.
    func wait(until deadline: Double) -> Bool {
        mutex.lock()
        defer { mutex.unlock() }
        while !stopped && SimClock.monotonic() < deadline {
            cond.wait(mutex, until: deadline)
        }
        return stopped
    }
}

/// A joinable thread (Foundation's Thread cannot be joined).
final class ActorThread: @unchecked Sendable {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    private var thread: pthread_t
    private var joined = false
    private let mutex = ActorMutex()

    init(name: String, _ body: @escaping () -> Void) throws {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw ActorError("cannot start thread \(name): \(String(cString: strerror(rc)))")
        }
        thread = tid
    }

    /// Waits for the thread to finish; safe to call more than once.
    func join() {
        let already: Bool = mutex.locked {
            let was = joined
            joined = true
            return was
        }
        if !already, pthread_equal(thread, pthread_self()) == 0 {
            pthread_join(thread, nil)
        }
    }
}
