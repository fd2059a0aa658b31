/// A thread-safe, append-only log that a test or the runner can wait on.
///
/// Actors append what they saw (queries at an upstream, client results); the
/// runner waits for the event it expects up to a deadline, never sleeping a
/// fixed time and hoping.
public final class EventLog<Element>: @unchecked Sendable {
    private let mutex = ActorMutex()
    private let cond = ActorCondition()
    private var items: [Element] = []
    /// Elements dropped by `removeAll()`: indices stay stable across it.
    private var dropped = 0

    public init() {}

    /// Appends and returns the element's index (counting removed ones).
    @discardableResult
    public func append(_ element: Element) -> Int {
        mutex.locked {
            items.append(element)
            cond.broadcast()
            return dropped + items.count - 1
        }
    }

    /// Amends an element already logged (e.g. a send that failed after the
    /// query was recorded).
    func update(at index: Int, _ body: (inout Element) -> Void) {
        mutex.locked {
            guard items.indices.contains(index - dropped) else { return }
            body(&items[index - dropped])
            cond.broadcast()
        }
    }

    /// A copy of everything logged so far, oldest first.
    public func snapshot() -> [Element] {
        mutex.locked { items }
    }

    public var count: Int {
        mutex.locked { items.count }
    }

    /// Drops everything logged so far.
    public func removeAll() {
        mutex.locked {
            dropped += items.count
            items.removeAll()
        }
    }

    /// Waits until `predicate` holds for the log's contents, or `timeout`
    /// seconds pass. The predicate runs with the log locked: keep it short and
    /// do not append from it. Returns whether the predicate held.
    @discardableResult
    public func wait(timeout: Double, where predicate: ([Element]) -> Bool) -> Bool {
        let deadline = SimClock.monotonic() + max(0, timeout)
        mutex.lock()
        defer { mutex.unlock() }
        while true {
            if predicate(items) { return true }
            if SimClock.monotonic() >= deadline { return false }
            cond.wait(mutex, until: deadline)
        }
    }

    /// Waits for the first element (in log order) that matches, up to `timeout` seconds.
    public func first(timeout: Double, where match: (Element) -> Bool) -> Element? {
        var found: Element?
        _ = wait(timeout: timeout) { items in
            found = items.first(where: match)
            return found != nil
        }
        return found
    }

    /// Waits until the log holds at least `count` elements.
    @discardableResult
    public func wait(forCount count: Int, timeout: Double) -> Bool {
        wait(timeout: timeout) { $0.count >= count }
    }
}
