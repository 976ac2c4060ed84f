import FjordProto
import FjordStorage
import NIOCore
import Synchronization

/// A partition this broker leads: its log, its leader epoch, and the readers waiting for appends.
///
/// Long-poll fetches and subscriptions register one-shot watchers that run after the next append
/// (or when the partition closes, so they can look it up again).
final class Partition: Sendable {
    /// Name of the topic.
    let topic: String
    /// The topic's id; a re-created topic has a new one.
    let topicID: String
    /// Index within the topic.
    let index: Int
    /// The epoch stamped into appended batches and checked against requests.
    let leaderEpoch: Int32
    /// The partition's log.
    let log: PartitionLog

    private struct Watchers {
        var nextToken = 0
        var callbacks: [Int: @Sendable () -> Void] = [:]
        var closed = false
        /// Set when the partition closes because its topic is being deleted.
        var deleted = false
    }
    private let watchers = Mutex(Watchers())
    private let hasWatchers = Atomic<Bool>(false)

    init(topic: String, topicID: String, index: Int, leaderEpoch: Int32, log: PartitionLog) {
        self.topic = topic
        self.topicID = topicID
        self.index = index
        self.leaderEpoch = leaderEpoch
        self.log = log
    }

    /// Whether the partition was closed (topic deleted or reconfigured, broker stopping).
    var isClosed: Bool { watchers.withLock { $0.closed } }

    /// Checks the epoch a request names; -1 skips the check.
    func checkLeaderEpoch(_ requested: Int32) throws(BrokerError) {
        guard requested != -1, requested != leaderEpoch else { return }
        if requested < leaderEpoch {
            throw BrokerError(
                .fencedLeaderEpoch,
                "\(topic)-\(index): the request names leader epoch \(requested) but the partition is at epoch \(leaderEpoch)")
        }
        throw BrokerError(
            .unknownLeaderEpoch,
            "\(topic)-\(index): the request names leader epoch \(requested), newer than this broker's \(leaderEpoch)")
    }

    /// Appends `batch` and calls `completion` (on a storage thread) with the offsets or the error.
    func append(
        _ batch: ByteBuffer, durability: AppendDurability,
        completion: @escaping @Sendable (Result<AppendResult, StorageError>) -> Void
    ) {
        log.append(batch, leaderEpoch: leaderEpoch, durability: durability) { [self] result in
            if case .success = result { wakeWatchers() }
            completion(result)
        }
    }

    /// Runs `callback` once, after the next append or when the partition closes. Returns a token
    /// for ``cancelWatch(_:)``, or `nil` when the partition is already closed (nothing registered).
    func watchNextAppend(_ callback: @escaping @Sendable () -> Void) -> Int? {
        let token: Int? = watchers.withLock { state in
            guard !state.closed else { return nil }
            let token = state.nextToken
            state.nextToken += 1
            state.callbacks[token] = callback
            hasWatchers.store(true, ordering: .releasing)
            return token
        }
        return token
    }

    /// Removes a watcher that has not run yet.
    func cancelWatch(_ token: Int) {
        _ = watchers.withLock { $0.callbacks.removeValue(forKey: token) }
    }

    private func wakeWatchers() {
        // Appends without watchers (the common case under load) skip the lock.
        guard hasWatchers.load(ordering: .acquiring) else { return }
        let callbacks = watchers.withLock { state in
            let callbacks = state.callbacks
            state.callbacks.removeAll(keepingCapacity: true)
            hasWatchers.store(false, ordering: .releasing)
            return callbacks
        }
        for callback in callbacks.values { callback() }
    }

    /// The error a client gets for a storage failure of this partition: a log closed because its
    /// topic was deleted is `UNKNOWN_TOPIC_OR_PARTITION`, as for a request arriving after the delete.
    func error(for error: StorageError) -> BrokerError {
        if error.code == .logClosed, watchers.withLock({ $0.deleted }) {
            return BrokerError(.unknownTopicOrPartition, "topic \"\(topic)\" was deleted")
        }
        return BrokerError(error, topic: topic, partition: index)
    }

    /// Marks the partition closed, wakes every watcher and closes the log (flushing it).
    /// `deleted`: its topic is being deleted (see ``error(for:)``).
    func close(deleted: Bool = false) async throws(StorageError) {
        let callbacks = watchers.withLock { state in
            state.closed = true
            if deleted { state.deleted = true }
            let callbacks = state.callbacks
            state.callbacks.removeAll()
            return callbacks
        }
        for callback in callbacks.values { callback() }
        try await log.close()
    }
}
