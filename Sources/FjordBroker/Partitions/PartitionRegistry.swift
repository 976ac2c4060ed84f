import FjordProto
import Synchronization

/// The partitions this broker leads, by topic name and index; looked up on every request.
final class PartitionRegistry: Sendable {
    private struct Topic {
        var topicID: String
        /// `nil` where a partition could not be opened; the error says why.
        var partitions: [Partition?]
        var offline: [Int: BrokerError]
    }
    private let topics = Mutex<[String: Topic]>([:])

    /// The partition, or `UNKNOWN_TOPIC_OR_PARTITION` / the error that took it offline.
    func partition(topic: String, index: Int) throws(BrokerError) -> Partition {
        let result: Result<Partition, BrokerError> = topics.withLock { topics in
            guard let entry = topics[topic] else {
                return .failure(BrokerError(.unknownTopicOrPartition, "there is no topic named \"\(topic)\""))
            }
            guard index >= 0, index < entry.partitions.count else {
                return .failure(
                    BrokerError(
                        .unknownTopicOrPartition,
                        "topic \"\(topic)\" has no partition \(index) (it has \(entry.partitions.count))"))
            }
            if let partition = entry.partitions[index] { return .success(partition) }
            return .failure(
                entry.offline[index] ?? BrokerError(.storageError, "\(topic)-\(index) is offline"))
        }
        return try result.get()
    }

    /// Number of partitions of `topic`, or `nil` when there is no such topic.
    func partitionCount(topic: String) -> Int? {
        topics.withLock { $0[topic]?.partitions.count }
    }

    /// Every partition of `topic` that is online.
    func partitions(topic: String) -> [Partition] {
        topics.withLock { $0[topic]?.partitions.compactMap { $0 } ?? [] }
    }

    /// Every online partition.
    func allPartitions() -> [Partition] {
        topics.withLock { $0.values.flatMap { $0.partitions.compactMap { $0 } } }
    }

    /// Sets (or replaces) partition `index` of `topic`.
    func set(_ partition: Result<Partition, BrokerError>, topic: String, topicID: String, index: Int) {
        topics.withLock { topics in
            var entry = topics[topic] ?? Topic(topicID: topicID, partitions: [], offline: [:])
            while entry.partitions.count <= index { entry.partitions.append(nil) }
            switch partition {
            case .success(let partition):
                entry.partitions[index] = partition
                entry.offline[index] = nil
            case .failure(let error):
                entry.partitions[index] = nil
                entry.offline[index] = error
            }
            topics[topic] = entry
        }
    }

    /// Removes `topic` and returns its online partitions.
    func remove(topic: String) -> [Partition] {
        topics.withLock { $0.removeValue(forKey: topic)?.partitions.compactMap { $0 } ?? [] }
    }
}
