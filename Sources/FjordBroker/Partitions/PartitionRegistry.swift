import FjordProto
import Synchronization

/// The partitions this broker leads, by topic name and index, looked up on every request; and
/// the one lifecycle of every topic name (``TopicLifecycle``) that topic administration
/// (``TopicManager``) drives. Requests find only partitions of live topics; admin operations on
/// one name run one at a time (``withExclusiveAccess(to:_:)``).
final class PartitionRegistry: Sendable {
    private struct State {
        var lifecycle = TopicLifecycle<Partition>()
        var waiting: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())

    /// The partition, or `UNKNOWN_TOPIC_OR_PARTITION` (also while the topic is being created or
    /// deleted) / the error that took it offline.
    func partition(topic: String, index: Int) throws(BrokerError) -> Partition {
        try state.withLock { $0.lifecycle.partition(topic: topic, index: index) }.get()
    }

    /// Number of partitions of `topic`, or `nil` when there is no such live topic.
    func partitionCount(topic: String) -> Int? {
        state.withLock { $0.lifecycle.partitionCount(topic: topic) }
    }

    /// Every partition of `topic` that is online.
    func partitions(topic: String) -> [Partition] {
        state.withLock { $0.lifecycle.partitions(topic: topic) }
    }

    /// Every online partition, whatever its topic's phase.
    func allPartitions() -> [Partition] {
        state.withLock { $0.lifecycle.allPartitions }
    }

    /// Reads or changes the lifecycle under the registry's lock (no I/O in `body`).
    func withLifecycle<T: Sendable, E: Error>(_ body: (inout TopicLifecycle<Partition>) throws(E) -> T) throws(E) -> T {
        try state.withLock { state throws(E) -> T in try body(&state.lifecycle) }
    }

    /// Runs `body` holding `name`: admin operations on the same name run one at a time, in
    /// arrival order; operations on other names run alongside.
    func withExclusiveAccess<T: Sendable>(
        to name: String, _ body: () async throws(BrokerError) -> T
    ) async throws(BrokerError) -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let proceed = state.withLock { state in
                let waiter = state.nextWaiter
                state.nextWaiter += 1
                if state.lifecycle.acquire(name, waiter: waiter) { return true }
                state.waiting[waiter] = continuation
                return false
            }
            if proceed { continuation.resume() }
        }
        defer {
            let next = state.withLock { state in
                state.lifecycle.release(name).flatMap { state.waiting.removeValue(forKey: $0) }
            }
            next?.resume()
        }
        return try await body()
    }
}
