import FjordProto
import FjordStorage
import Foundation
import Logging
import NIOPosix
import SystemPackage

/// Topic administration on this node: validates requests, records them in the ``MetadataStore``
/// and opens, reconfigures or closes partition logs.
///
/// Every operation runs holding its topic's name in the ``PartitionRegistry``
/// (``PartitionRegistry/withExclusiveAccess(to:_:)``) and moves the name through its
/// ``TopicLifecycle``: operations on one name never interleave (an actor would not ensure that,
/// being reentrant at every `await`), operations on different names run alongside, and
/// produce and fetch never wait on any of it.
final class TopicManager: Sendable {
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

    /// Removes directories of deletions a crash interrupted, then opens every partition the store
    /// knows. A partition whose log cannot be opened (a corrupt segment, say) goes offline with
    /// that error; the others serve.
    func loadAll() async throws(BrokerError) {
        let logs = logsDirectory
        let interrupted = try await LocalMetadataStore.onPool(threadPool) { () throws(BrokerError) -> Set<String> in
            PartitionDirectory.deletedTopicIDs(in: logs)
        }
        var records: [TopicRecord] = []
        for topic in try await store.topics() {
            // Its directories were renamed for deletion, but the crash came before the metadata
            // forgot it: the delete had not been answered, and it is finished now.
            if interrupted.contains(topic.topicID) {
                try await finishInterruptedDelete(topic)
                continue
            }
            records.append(topic)
        }
        try await LocalMetadataStore.onPool(threadPool) { [logger] () throws(BrokerError) in
            PartitionDirectory.removeDeleted(in: logs, logger: logger)
        }
        for topic in records {
            registry.withLifecycle { $0.load(topic) }
            for index in topic.partitions.indices {
                await openPartition(topic, index: index)
            }
        }
        logger.info("loaded topics", metadata: ["topics.count": "\(records.count)"])
    }

    private func finishInterruptedDelete(_ topic: TopicRecord) async throws(BrokerError) {
        let directories = topic.partitions.indices.map { directory(topic: topic.name, index: $0) }
        try await LocalMetadataStore.onPool(threadPool) { () throws(BrokerError) in
            for directory in directories { _ = try PartitionDirectory.markDeleted(directory, topicID: topic.topicID) }
        }
        _ = try await store.delete(topic: topic.name)
        logger.notice("finished deleting a topic whose deletion a stop interrupted", metadata: ["topic": "\(topic.name)", "topic.id": "\(topic.topicID)"])
    }

    /// The live topic named `name`, or `UNKNOWN_TOPIC_OR_PARTITION`.
    func topicRecord(_ name: String) throws(BrokerError) -> TopicRecord {
        try registry.withLifecycle { $0.record(name) }.get()
    }

    /// Every live topic, sorted by name.
    func allTopics() -> [TopicRecord] { registry.withLifecycle { $0.liveRecords } }

    /// Creates a topic. Waits for any other operation on the name (a delete still closing files).
    func create(name: String, partitions: Int, configs: [String: String]) async throws(BrokerError) -> TopicRecord {
        try TopicName.validate(name)
        try checkPartitionCount(partitions, topic: name)
        _ = try TopicConfiguration(overrides: configs)
        return try await registry.withExclusiveAccess(to: name) { () throws(BrokerError) -> TopicRecord in
            let record = TopicRecord(
                name: name, topicID: UUID().uuidString.lowercased(),
                partitions: (0..<partitions).map { _ in PartitionRecord(leaderID: nodeID, leaderEpoch: 0, replicas: [nodeID]) },
                configs: configs)
            try registry.withLifecycle { lifecycle throws(BrokerError) in try lifecycle.beginCreate(record) }
            do throws(BrokerError) {
                try await store.create(record)
            } catch {
                _ = registry.withLifecycle { $0.abortCreate(name, topicID: record.topicID) }
                throw error
            }
            for index in 0..<partitions { await openPartition(record, index: index) }
            try registry.withLifecycle { lifecycle throws(BrokerError) in try lifecycle.finishCreate(name, topicID: record.topicID) }
            logger.info("created topic", metadata: ["topic": "\(name)", "topic.partitions": "\(partitions)"])
            return record
        }
    }

    /// Deletes a topic: requests stop finding it at once, then its logs are closed, its
    /// directories renamed (`<topic>-<n>.<topic id>.deleted`) and removed. Returns what it was.
    @discardableResult
    func delete(name: String) async throws(BrokerError) -> TopicRecord {
        try await registry.withExclusiveAccess(to: name) { () throws(BrokerError) -> TopicRecord in
            let (record, partitions) = try registry.withLifecycle { lifecycle throws(BrokerError) in try lifecycle.beginDelete(name) }
            for partition in partitions {
                do { try await partition.close(deleted: true) } catch {
                    logger.warning("closing a deleted partition failed", metadata: ["partition": "\(name)-\(partition.index)", "error": "\(error)"])
                }
            }
            // Rename before the metadata forgets the topic: a stop from here on finishes the
            // delete at the next start (loadAll), and nothing opens these files under the name again.
            let directories = record.partitions.indices.map { directory(topic: name, index: $0) }
            let logs = logsDirectory
            do throws(BrokerError) {
                try await LocalMetadataStore.onPool(threadPool) { () throws(BrokerError) in
                    for directory in directories { _ = try PartitionDirectory.markDeleted(directory, topicID: record.topicID) }
                    PartitionDirectory.syncDirectory(logs)
                }
                _ = try await store.delete(topic: name)
            } catch {
                // Nothing was forgotten: put back what was renamed and serve the topic again.
                await restore(record, directories: directories)
                throw error
            }
            registry.withLifecycle { $0.finishDelete(name) }
            let logger = self.logger
            try await LocalMetadataStore.onPool(threadPool) { () throws(BrokerError) in
                for directory in directories {
                    let target = PartitionDirectory.deletedPath(directory, topicID: record.topicID)
                    do { try FileManager.default.removeItem(atPath: target) } catch {
                        logger.warning("removing a deleted partition's directory failed", metadata: ["directory": "\(target)", "error": "\(error)"])
                    }
                }
            }
            logger.info("deleted topic", metadata: ["topic": "\(name)"])
            return record
        }
    }

    /// Undoes a delete that failed before the metadata forgot the topic: renamed directories get
    /// their names back and the partitions are opened again.
    private func restore(_ record: TopicRecord, directories: [FilePath]) async {
        let logger = self.logger
        try? await LocalMetadataStore.onPool(threadPool) { () throws(BrokerError) in
            for directory in directories {
                let renamed = PartitionDirectory.deletedPath(directory, topicID: record.topicID)
                if rename(renamed, directory.string) != 0, errno != ENOENT {
                    logger.error("restoring a partition directory after a failed delete failed", metadata: ["directory": "\(renamed)"])
                }
            }
        }
        registry.withLifecycle { $0.abortDelete(record.name) }
        for index in record.partitions.indices { await openPartition(record, index: index) }
    }

    /// Raises the partition count of a topic to `total`.
    func createPartitions(name: String, total: Int) async throws(BrokerError) -> TopicRecord {
        try await registry.withExclusiveAccess(to: name) { () throws(BrokerError) -> TopicRecord in
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
            try registry.withLifecycle { lifecycle throws(BrokerError) in try lifecycle.update(record) }
            for index in first..<total { await openPartition(record, index: index) }
            logger.info("added partitions", metadata: ["topic": "\(name)", "topic.partitions": "\(total)"])
            return record
        }
    }

    /// Changes configuration overrides and reopens the topic's logs with the new settings (each
    /// partition is closed cleanly and reopened without a scan, except one taken offline by
    /// damage, which is scanned again; requests in between get a retriable `NOT_LEADER`).
    func alterConfig(name: String, set: [String: String], remove: [String]) async throws(BrokerError) -> TopicRecord {
        try await registry.withExclusiveAccess(to: name) { () throws(BrokerError) -> TopicRecord in
            var record = try topicRecord(name)
            let altered = try TopicConfiguration(overrides: record.configs).altered(set: set, remove: remove)
            record.configs = altered.overrides
            try await store.update(record)
            try registry.withLifecycle { lifecycle throws(BrokerError) in try lifecycle.update(record) }
            for partition in registry.partitions(topic: name) {
                do { try await partition.close() } catch {
                    logger.warning("closing a partition to reconfigure it failed", metadata: ["partition": "\(name)-\(partition.index)", "error": "\(error)"])
                }
            }
            for index in record.partitions.indices { await openPartition(record, index: index) }
            logger.info("altered topic configuration", metadata: ["topic": "\(name)", "topic.configs": "\(record.configs)"])
            return record
        }
    }

    /// Stops topic administration (later operations fail with `BROKER_SHUTTING_DOWN`) and closes
    /// every partition (flushing and marking the logs clean).
    func closeAll() async {
        registry.withLifecycle { $0.stop() }
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

    /// Opens partition `index` of `record` and puts it in the registry; closes it again when that
    /// incarnation no longer holds the name (it cannot while the caller holds the name).
    private func openPartition(_ record: TopicRecord, index: Int) async {
        // The overrides were validated when they were stored; a file edited by hand falls back to defaults.
        let configuration = (try? TopicConfiguration(overrides: record.configs))?.logConfiguration(base: defaults) ?? defaults
        var partitionLogger = logger
        partitionLogger[metadataKey: "partition"] = "\(record.name)-\(index)"
        let result: Result<Partition, BrokerError>
        let partitionDirectory = directory(topic: record.name, index: index)
        do throws(BrokerError) {
            try await LocalMetadataStore.onPool(threadPool) { [topicID = record.topicID, partitionLogger] () throws(BrokerError) in
                try PartitionDirectory.claim(partitionDirectory, topicID: topicID, logger: partitionLogger)
            }
        } catch {
            partitionLogger.error("the partition is offline: its directory could not be claimed", metadata: ["error": "\(error)"])
            await place(.failure(error), record: record, index: index)
            return
        }
        do {
            let log = try await PartitionLog.open(
                directory: partitionDirectory, configuration: configuration,
                threadPool: threadPool, logger: partitionLogger)
            if let onFlush { log.observeFlushes(onFlush) }
            if let onDamage { log.observeDamage(onDamage) }
            result = .success(
                Partition(
                    topic: record.name, topicID: record.topicID, index: index,
                    leaderEpoch: record.partitions[index].leaderEpoch, log: log))
        } catch {
            partitionLogger.error("the partition is offline: its log could not be opened", metadata: ["error": "\(error)"])
            if error.code == .corruptSegment || error.code == .logTailLost { onDamage?(error) }
            result = .failure(BrokerError(offline: error, topic: record.name, partition: index))
        }
        await place(result, record: record, index: index)
    }

    /// Puts an opened (or offline) partition in the registry; closes it when that incarnation no
    /// longer holds the name.
    private func place(_ result: Result<Partition, BrokerError>, record: TopicRecord, index: Int) async {
        let placed = registry.withLifecycle {
            $0.setPartition(result, topic: record.name, topicID: record.topicID, index: index)
        }
        if !placed, case .success(let partition) = result {
            try? await partition.close()
        }
    }
}
