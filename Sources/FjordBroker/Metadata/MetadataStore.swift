/// The durable description of one partition: who leads it and in which epoch.
///
/// A single-node broker leads every partition; a cluster's metadata store will move leadership
/// between nodes and raise the epoch each time.
public struct PartitionRecord: Sendable, Hashable, Codable {
    /// The node leading the partition.
    public var leaderID: Int32
    /// Raised on every leadership change; requests naming an older epoch are fenced.
    public var leaderEpoch: Int32
    /// Nodes holding a replica.
    public var replicas: [Int32]

    /// Creates a record.
    public init(leaderID: Int32, leaderEpoch: Int32, replicas: [Int32]) {
        self.leaderID = leaderID
        self.leaderEpoch = leaderEpoch
        self.replicas = replicas
    }
}

/// The durable description of a topic.
public struct TopicRecord: Sendable, Hashable, Codable {
    /// The topic's name.
    public var name: String
    /// A random id given at creation, so a re-created topic is told apart from the deleted one.
    public var topicID: String
    /// The partitions, by index.
    public var partitions: [PartitionRecord]
    /// Configuration overrides (see ``TopicConfiguration``).
    public var configs: [String: String]

    /// Creates a record.
    public init(name: String, topicID: String, partitions: [PartitionRecord], configs: [String: String]) {
        self.name = name
        self.topicID = topicID
        self.partitions = partitions
        self.configs = configs
    }
}

/// Where topic and partition metadata lives: the one interface between the broker and its
/// metadata, so the single-node store (``LocalMetadataStore``) can be replaced by a cluster store
/// (etcd) without touching request handling.
///
/// Implementations are linearizable: each call sees the effect of every call that completed
/// before it started.
public protocol MetadataStore: Sendable {
    /// The cluster's id, stable across restarts.
    var clusterID: String { get }
    /// Every topic.
    func topics() async throws(BrokerError) -> [TopicRecord]
    /// Adds `topic`. Throws `TOPIC_ALREADY_EXISTS` when the name is taken.
    func create(_ topic: TopicRecord) async throws(BrokerError)
    /// Replaces the topic with the same name. Throws `UNKNOWN_TOPIC_OR_PARTITION` when absent.
    func update(_ topic: TopicRecord) async throws(BrokerError)
    /// Removes the topic and returns what it was. Throws `UNKNOWN_TOPIC_OR_PARTITION` when absent.
    func delete(topic name: String) async throws(BrokerError) -> TopicRecord
    /// Reserves `count` idempotent-producer ids never handed out before, by any broker, across
    /// restarts (Kafka's producer id blocks).
    func reserveProducerIDs(count: Int) async throws(BrokerError) -> Range<Int64>
    /// Every ACL entry and the version of the set: a number that grows with each change, so a
    /// cache can tell which of two reads is newer (etcd's mod revision in a cluster store).
    func accessControlEntries() async throws(BrokerError) -> (version: UInt64, entries: [AccessControlEntry])
    /// Applies `change` to the ACL entries atomically and persists the result; returns what
    /// `change` returned and the new version. Nothing changes when `change` throws.
    func changeAccessControlEntries<T: Sendable>(
        _ change: @escaping @Sendable (inout [AccessControlEntry]) throws(BrokerError) -> T
    ) async throws(BrokerError) -> (result: T, version: UInt64)
}
