import FjordProto
import FjordStorage
import Foundation
import Logging
import NIOPosix
import SystemPackage

/// Topic administration on this node: validates requests, records them in the ``MetadataStore``
/// and opens, reconfigures or closes partition logs. An actor, so admin operations apply one at a
/// time; produce and fetch never wait on it.
actor TopicManager {
    struct Limits: Sendable {
        var maxPartitionsPerTopic: Int
    }

    let store: any MetadataStore
    let registry: PartitionRegistry
    let logsDirectory: FilePath
    let threadPool: NIOThreadPool
    let defaults: LogConfiguration
    let limits: Limits
    let nodeID: Int32
    let logger: Logger
    private var topics: [String: TopicRecord] = [:]
    /// Given to every partition log it opens (flush latency metrics).
    private let onFlush: (@Sendable (_ nanoseconds: Int64) -> Void)?
    /// Told about damaged data in a partition log (found at open or by a read), for metrics.
    private let onDamage: (@Sendable (StorageError) -> Void)?

    init(
        store: any MetadataStore, registry: PartitionRegistry, logsDirectory: FilePath, threadPool: NIOThreadPool,
        defaults: LogConfiguration, limits: Limits, nodeID: Int32, logger: Logger,
        onFlush: (@Sendable (_ nanoseconds: Int64) -> Void)? = nil,
        onDamage: (@Sendable (StorageError) -> Void)? = nil
    ) {
        self.onFlush = onFlush
        self.onDamage = onDamage
        self.store = store
        self.registry = registry
        self.logsDirectory = logsDirectory
        self.threadPool = threadPool
        self.defaults = defaults
        self.limits = limits
        self.nodeID = nodeID
        self.logger = logger
    }

    /// Opens every partition the store knows. A partition whose log cannot be opened (a corrupt
    /// segment, say) goes offline with that error; the others serve.
    func loadAll() async throws(BrokerError) {
        for topic in try await store.topics() {
            topics[topic.name] = topic
            for index in topic.partitions.indices {
                await openPartition(topic, index: index)
            }
        }
        logger.info("loaded topics", metadata: ["topics.count": "\(topics.count)"])
    }

    func topicRecord(_ name: String) throws(BrokerError) -> TopicRecord {
        guard let topic = topics[name] else {
            throw BrokerError(.unknownTopicOrPartition, "there is no topic named \"\(name)\"")
        }
        return topic
    }

    func allTopics() -> [TopicRecord] { topics.values.sorted { $0.name < $1.name } }

    func create(name: String, partitions: Int, configs: [String: String]) async throws(BrokerError) -> TopicRecord {
        try TopicName.validate(name)
        guard topics[name] == nil else { throw BrokerError(.topicAlreadyExists, "a topic named \"\(name)\" already exists") }
        try checkPartitionCount(partitions, topic: name)
        _ = try TopicConfiguration(overrides: configs)
        let record = TopicRecord(
            name: name, topicID: UUID().uuidString.lowercased(),
            partitions: (0..<partitions).map { _ in PartitionRecord(leaderID: nodeID, leaderEpoch: 0, replicas: [nodeID]) },
            configs: configs)
        try await store.create(record)
        topics[name] = record
        for index in 0..<partitions { await openPartition(record, index: index) }
        logger.info("created topic", metadata: ["topic": "\(name)", "topic.partitions": "\(partitions)"])
        return record
    }

    func delete(name: String) async throws(BrokerError) {
        let record = try topicRecord(name)
        _ = try await store.delete(topic: name)
        topics[name] = nil
        let partitions = registry.remove(topic: name)
        for partition in partitions {
            do { try await partition.close() } catch {
                logger.warning("closing a deleted partition failed", metadata: ["partition": "\(name)-\(partition.index)", "error": "\(error)"])
            }
        }
        // Rename first so a topic created again under the same name starts empty; remove later.
        let pool = threadPool
        let directories = record.partitions.indices.map { directory(topic: name, index: $0) }
        let suffix = ".\(record.topicID).deleted"
        try await LocalMetadataStore.onPool(pool) { () throws(BrokerError) in
            for directory in directories {
                let target = directory.string + suffix
                if rename(directory.string, target) == 0 {
                    try? FileManager.default.removeItem(atPath: target)
                }
            }
        }
        logger.info("deleted topic", metadata: ["topic": "\(name)"])
    }

    func createPartitions(name: String, total: Int) async throws(BrokerError) -> TopicRecord {
        var record = try topicRecord(name)
        guard total > record.partitions.count else {
            throw BrokerError(
                .invalidPartitions,
                "topic \"\(name)\" has \(record.partitions.count) partitions; the new total \(total) must be larger (partitions are never removed)")
        }
        try checkPartitionCount(total, topic: name)
        let first = record.partitions.count
        record.partitions += (first..<total).map { _ in PartitionRecord(leaderID: nodeID, leaderEpoch: 0, replicas: [nodeID]) }
        try await store.update(record)
        topics[name] = record
        for index in first..<total { await openPartition(record, index: index) }
        logger.info("added partitions", metadata: ["topic": "\(name)", "topic.partitions": "\(total)"])
        return record
    }

    /// Changes configuration overrides and reopens the topic's logs with the new settings (each
    /// partition is closed cleanly and reopened without a scan; requests in between get a
    /// retriable `NOT_LEADER`).
    func alterConfig(name: String, set: [String: String], remove: [String]) async throws(BrokerError) -> TopicRecord {
        var record = try topicRecord(name)
        let altered = try TopicConfiguration(overrides: record.configs).altered(set: set, remove: remove)
        record.configs = altered.overrides
        try await store.update(record)
        topics[name] = record
        for partition in registry.partitions(topic: name) {
            do { try await partition.close() } catch {
                logger.warning("closing a partition to reconfigure it failed", metadata: ["partition": "\(name)-\(partition.index)", "error": "\(error)"])
            }
        }
        for index in record.partitions.indices { await openPartition(record, index: index) }
        logger.info("altered topic configuration", metadata: ["topic": "\(name)", "topic.configs": "\(record.configs)"])
        return record
    }

    /// Closes every partition (flushing and marking the logs clean).
    func closeAll() async {
        for partition in registry.allPartitions() {
            do { try await partition.close() } catch {
                logger.error("closing a partition failed", metadata: ["partition": "\(partition.topic)-\(partition.index)", "error": "\(error)"])
            }
        }
    }

    func directory(topic: String, index: Int) -> FilePath {
        logsDirectory.appending("\(topic)-\(index)")
    }

    private func checkPartitionCount(_ count: Int, topic: String) throws(BrokerError) {
        guard count >= 1, count <= limits.maxPartitionsPerTopic else {
            throw BrokerError(
                .invalidPartitions,
                "topic \"\(topic)\": \(count) partitions is outside 1...\(limits.maxPartitionsPerTopic)")
        }
    }

    private func openPartition(_ record: TopicRecord, index: Int) async {
        // The overrides were validated when they were stored; a file edited by hand falls back to defaults.
        let configuration = (try? TopicConfiguration(overrides: record.configs))?.logConfiguration(base: defaults) ?? defaults
        var partitionLogger = logger
        partitionLogger[metadataKey: "partition"] = "\(record.name)-\(index)"
        do {
            let log = try await PartitionLog.open(
                directory: directory(topic: record.name, index: index), configuration: configuration,
                threadPool: threadPool, logger: partitionLogger)
            if let onFlush { log.observeFlushes(onFlush) }
            if let onDamage { log.observeDamage(onDamage) }
            let partition = Partition(
                topic: record.name, topicID: record.topicID, index: index,
                leaderEpoch: record.partitions[index].leaderEpoch, log: log)
            registry.set(.success(partition), topic: record.name, topicID: record.topicID, index: index)
        } catch {
            partitionLogger.error("the partition is offline: its log could not be opened", metadata: ["error": "\(error)"])
            if error.code == .corruptSegment || error.code == .logTailLost { onDamage?(error) }
            registry.set(
                .failure(BrokerError(offline: error, topic: record.name, partition: index)),
                topic: record.name, topicID: record.topicID, index: index)
        }
    }
}
