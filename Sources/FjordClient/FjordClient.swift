public import FjordProto
import FjordProtocol
public import NIOCore
public import NIOPosix
public import SwiftProtobuf
import Synchronization

/// The entry point of the SDK: one logical connection to a Fjord cluster, shared by the admin
/// client, producers and consumers made from it.
///
/// ```swift
/// let client = FjordClient(configuration: .init(tls: ClientTLSConfiguration(trustRootsPath: "ca.pem")))
/// try await client.admin.createTopic("orders", partitions: 3)
/// let producer = client.makeProducer()
/// let metadata = try await producer.send(ProducerRecord(topic: "orders", key: "user-1", value: "hello"))
/// print(metadata.partition, metadata.offset)
/// try await producer.close()
/// try await client.close()
/// ```
///
/// Requests go over one connection that is re-established with backoff and jitter when it drops;
/// retriable failures of unary requests are retried until ``FjordClientConfiguration/requestTimeout``.
public final class FjordClient: Sendable {
    /// The configuration the client was made with.
    public let configuration: FjordClientConfiguration
    let connections: ConnectionProvider
    let metadataCache = Mutex<[String: TopicMetadata]>([:])

    /// Creates a client; nothing connects until the first request.
    public init(configuration: FjordClientConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.configuration = configuration
        self.connections = ConnectionProvider(configuration: configuration, group: group)
    }

    /// Topic and offset administration.
    public var admin: FjordAdmin { FjordAdmin(client: self) }

    /// A producer sending through this client. Close it before the client.
    public func makeProducer(configuration: ProducerConfiguration = ProducerConfiguration()) -> FjordProducer {
        FjordProducer(client: self, configuration: configuration)
    }

    /// A consumer reading through its own connection of this client's configuration. Close it when done.
    public func makeConsumer(configuration: ConsumerConfiguration = ConsumerConfiguration()) -> FjordConsumer {
        FjordConsumer(client: self, configuration: configuration)
    }

    /// A live connection (connecting first if needed).
    public func connection() async throws -> FjordConnection {
        try await connections.connection()
    }

    /// Who the broker takes this client to be: `User:<name>` from the client certificate, or
    /// `User:ANONYMOUS` without one. ACLs name principals this way.
    public func principal() async throws -> String {
        try await connections.connection().handshake.principal
    }

    /// Closes the connection. Producers and consumers made from this client must be closed first.
    public func close() async {
        await connections.close()
    }

    /// Sends a unary request, reconnecting and retrying retriable failures (other than
    /// `UNKNOWN_TOPIC_OR_PARTITION`) with backoff until the request timeout.
    public func call<Response: SwiftProtobuf.Message>(
        _ method: Fjord_V1_Method, _ request: some SwiftProtobuf.Message, as: Response.Type = Response.self
    ) async throws -> Response {
        let deadline = ContinuousClock.now + configuration.requestTimeout
        var attempt = 0
        while true {
            let connection = try await connections.connection()
            do {
                return try await connection.unary(method, request, as: Response.self)
            } catch let error as FjordClientError {
                if !connection.isActive { await connections.invalidate(connection) }
                // An unknown topic is answered at once: the caller decides whether to wait for it.
                guard error.isRetriable, error.code != .unknownTopicOrPartition else { throw error }
                let delay = configuration.reconnect.delay(attempt: attempt)
                attempt += 1
                guard ContinuousClock.now + delay < deadline else { throw error }
                try await Task.sleep(for: delay)
            }
        }
    }

    // MARK: Metadata

    /// What a client caches about a topic.
    public struct TopicMetadata: Sendable, Hashable {
        /// The topic's name.
        public var name: String
        /// The leader epoch of each partition, by index.
        public var leaderEpochs: [Int32]
        /// Number of partitions.
        public var partitionCount: Int { leaderEpochs.count }
    }

    /// The topic's metadata, from the cache or the broker.
    public func metadata(topic: String) async throws -> TopicMetadata {
        if let cached = metadataCache.withLock({ $0[topic] }) { return cached }
        return try await refreshMetadata(topic: topic)
    }

    /// Asks the broker for the topic's metadata and caches it (after `UNKNOWN_TOPIC_OR_PARTITION`
    /// or `NOT_LEADER`, for example).
    @discardableResult
    public func refreshMetadata(topic: String) async throws -> TopicMetadata {
        var request = Fjord_V1_DescribeTopicRequest()
        request.name = topic
        let response: Fjord_V1_DescribeTopicResponse = try await call(.describeTopic, request)
        let metadata = TopicMetadata(
            name: topic,
            leaderEpochs: response.topic.partitions.sorted { $0.partition < $1.partition }.map(\.leaderEpoch))
        metadataCache.withLock { $0[topic] = metadata }
        return metadata
    }

    func forgetMetadata(topic: String) {
        _ = metadataCache.withLock { $0.removeValue(forKey: topic) }
    }
}
