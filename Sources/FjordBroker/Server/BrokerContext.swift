import FjordStorage
import Logging
import NIOPosix
import Synchronization

/// What every connection of a broker shares: configuration, partitions, topic administration,
/// the storage threads and the metrics.
struct BrokerContext: Sendable {
    let configuration: BrokerConfiguration
    let clusterID: String
    let registry: PartitionRegistry
    let topics: TopicManager
    let storagePool: NIOThreadPool
    let metrics: BrokerMetrics
    let logger: Logger
    /// Host and port clients are told in metadata.
    let advertisedHost: String
    let advertisedPort: Int
    /// Shutdown state and the count of appends in flight.
    let lifecycle: BrokerLifecycle
    /// Keeps bad clients from flooding the log.
    let logLimiter: LogRateLimiter
    /// Idempotent-producer ids.
    let producerIDs: ProducerIDAllocator
    /// Shares the storage threads fairly among connections.
    let scheduler: FairScheduler
    /// Produce and fetch byte-rate quotas per client id.
    let quotas: ClientQuotas
    /// Bytes queued toward every connection, against `broker.max.queued.bytes`.
    let queuedBytes: ByteBudget
    /// Request bytes received and not yet handled, against `queued.max.request.bytes`.
    let requestBytes: ByteBudget
    /// ACLs and the decisions made from them.
    let authorizer: Authorizer
    /// Client certificate to principal.
    let principalMapper: PrincipalMapper
}

/// What a graceful shutdown watches: a flag raised once when the broker begins to stop (new
/// requests are then refused with `BROKER_SHUTTING_DOWN`) and the appends still in flight.
final class BrokerLifecycle: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let appends = Atomic<Int>(0)

    var isStopping: Bool { stopping.load(ordering: .acquiring) }
    func beginStopping() { stopping.store(true, ordering: .releasing) }

    var appendsInFlight: Int { appends.load(ordering: .acquiring) }
    func appendStarted() { appends.add(1, ordering: .relaxed) }
    func appendFinished() { appends.subtract(1, ordering: .releasing) }
}
