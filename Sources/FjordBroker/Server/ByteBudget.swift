import Synchronization

/// A broker-wide count of bytes held for clients, against one cap: the bytes queued toward every
/// connection (`broker.max.queued.bytes`), or the request bytes received and not yet handled
/// (`queued.max.request.bytes`). Connections charge what they hold and release it once written
/// (or handled); a connection that needs room while the budget is spent waits to be notified.
///
/// Thread-safe: connections on every event loop share one budget. The count is one atomic; the
/// waiters sit behind a lock that is taken only while someone waits.
///
/// ```swift
/// let budget = ByteBudget(capacity: 128 << 20)
/// if budget.tryReserve(bytes) {
///     // send; once written:
///     budget.release(bytes)
/// } else {
///     budget.notifyWhenRoom { eventLoop.execute { retry() } }
/// }
/// ```
final class ByteBudget: Sendable {
    /// The cap. ``tryReserve(_:)`` succeeds while fewer bytes than this are held, so the count
    /// exceeds it by at most the last reservation.
    let capacity: Int
    private let used = Atomic<Int>(0)
    private let waiting = Atomic<Bool>(false)
    private let waiters = Mutex<Waiters>(Waiters())

    private struct Waiters {
        var nextID: UInt64 = 0
        var callbacks: [(id: UInt64, callback: @Sendable () -> Void)] = []
    }

    /// Creates a budget of `capacity` bytes.
    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Bytes held now.
    var usedBytes: Int { used.load(ordering: .relaxed) }

    /// Whether fewer than ``capacity`` bytes are held.
    var hasRoom: Bool { usedBytes < capacity }

    /// Charges `bytes` if fewer than ``capacity`` bytes are held; returns whether it did.
    func tryReserve(_ bytes: Int) -> Bool {
        var current = used.load(ordering: .relaxed)
        while current < capacity {
            let (exchanged, original) = used.compareExchange(
                expected: current, desired: current + bytes, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Charges `bytes` whatever is held (bytes a connection holds within its own allowance).
    func add(_ bytes: Int) {
        guard bytes != 0 else { return }
        used.add(bytes, ordering: .relaxed)
    }

    /// Returns `bytes` charged before; wakes the waiters once there is room.
    func release(_ bytes: Int) {
        guard bytes != 0 else { return }
        // Sequentially consistent with `notifyWhenRoom`'s store of `waiting` and load of `used`:
        // each side stores, then loads what the other stores, so at least one sees the other
        // (acquire/release alone lets both miss, and the waiter would never be woken).
        let now = used.subtract(bytes, ordering: .sequentiallyConsistent).newValue
        if now < capacity, waiting.load(ordering: .sequentiallyConsistent) { wakeWaiters() }
    }

    /// Calls `callback` once (from whichever thread releases bytes) when the budget has room,
    /// at once if it has room now. Returns an id for ``cancelNotification(_:)``.
    @discardableResult
    func notifyWhenRoom(_ callback: @escaping @Sendable () -> Void) -> UInt64 {
        let id = waiters.withLock { waiters in
            let id = waiters.nextID
            waiters.nextID += 1
            waiters.callbacks.append((id, callback))
            waiting.store(true, ordering: .sequentiallyConsistent)
            return id
        }
        if used.load(ordering: .sequentiallyConsistent) < capacity { wakeWaiters() }
        return id
    }

    /// Forgets a callback registered with ``notifyWhenRoom(_:)`` that has not been called.
    func cancelNotification(_ id: UInt64) {
        waiters.withLock { waiters in
            waiters.callbacks.removeAll { $0.id == id }
            if waiters.callbacks.isEmpty { waiting.store(false, ordering: .releasing) }
        }
    }

    /// Number of callbacks waiting for room.
    var waiterCount: Int { waiters.withLock { $0.callbacks.count } }

    private func wakeWaiters() {
        let callbacks = waiters.withLock { waiters in
            defer {
                waiters.callbacks.removeAll()
                waiting.store(false, ordering: .releasing)
            }
            return waiters.callbacks
        }
        for waiter in callbacks { waiter.callback() }
    }
}
