import CoreMetrics
public import Prometheus
import Synchronization

/// The broker's metrics: a private Prometheus registry plus the instruments the broker updates on its hot paths.
///
/// Every instance owns its own ``PrometheusCollectorRegistry`` and creates its instruments through a
/// `PrometheusMetricsFactory` that is passed explicitly to the swift-metrics initialisers (`factory:`), so
/// several brokers can live in one process (as they do in tests) without touching the global
/// `MetricsSystem`.
///
/// Exposed series (Prometheus text format, see ``render()``):
///
/// | name | type | labels |
/// |---|---|---|
/// | `fjord_requests_total` | counter | `api` |
/// | `fjord_request_duration_seconds` | histogram (10 µs … 10 s) | `api` |
/// | `fjord_request_errors_total` | counter | `api`, `code` |
/// | `fjord_bytes_in_total`, `fjord_bytes_out_total` | counter | |
/// | `fjord_connections_active` | gauge | |
/// | `fjord_connections_total`, `fjord_connections_rejected_total` | counter | |
/// | `fjord_log_start_offset`, `fjord_log_end_offset` | gauge | `topic`, `partition` |
/// | `fjord_storage_flush_duration_seconds` | histogram (50 µs … 10 s) | |
/// | `fjord_storage_damage_total` | counter (damaged segments and lost tails found, once per segment) | `kind` (`corrupt_segment`, `lost_tail`) |
///
/// All methods are thread-safe. The per-request methods only do a dictionary lookup in an immutable
/// dictionary plus atomic updates (histograms take a short lock inside swift-prometheus).
public final class BrokerMetrics: Sendable {
    /// The API labels known to the broker. Requests for any other name are counted under ``unknownAPILabel``
    /// so that label cardinality stays bounded.
    public static let apiLabels: [String] = [
        "handshake", "get_metadata", "create_topic", "delete_topic", "list_topics", "describe_topic",
        "create_partitions", "alter_topic_config", "produce", "fetch", "subscribe", "list_offsets", "init_producer_id",
        "create_acls", "list_acls", "delete_acls",
    ]

    /// The `api` label used for requests whose API name is not in ``apiLabels``.
    public static let unknownAPILabel = "unknown"

    /// The maximum number of distinct `code` label values per API for `fjord_request_errors_total`;
    /// further codes are counted under `code="other"`.
    public static let maxErrorCodesPerAPI = 32

    /// Histogram buckets of `fjord_request_duration_seconds` (10 µs … 10 s).
    public static let requestDurationBuckets: [Duration] = [
        .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250),
        .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    /// Histogram buckets of `fjord_storage_flush_duration_seconds` (50 µs … 10 s).
    public static let flushDurationBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10),
    ]

    /// The registry all of this instance's metrics live in. Other components may register further
    /// metrics here (directly, or through ``factory``); ``render()`` emits all of them.
    public let registry: PrometheusCollectorRegistry

    /// A swift-metrics factory writing into ``registry``. Pass it explicitly (`Counter(label:dimensions:factory:)`)
    /// to libraries that accept one; do not bootstrap the global `MetricsSystem` with it.
    public let factory: PrometheusMetricsFactory

    private struct APIInstruments: Sendable {
        let requests: CoreMetrics.Counter
        let duration: CoreMetrics.Timer
    }

    private struct ErrorKey: Hashable, Sendable {
        let api: String
        let code: String
    }

    private struct PartitionKey: Hashable, Sendable {
        let topic: String
        let partition: Int
    }

    private struct PartitionGauges: Sendable {
        var logStart: Meter?
        var logEnd: Meter?
    }

    private let perAPI: [String: APIInstruments]
    private let unknownAPI: APIInstruments
    private let errors: Mutex<[ErrorKey: CoreMetrics.Counter]>
    private let partitions: Mutex<[PartitionKey: PartitionGauges]>

    private let bytesInCounter: CoreMetrics.Counter
    private let bytesOutCounter: CoreMetrics.Counter
    private let connectionsActive: Meter
    private let connectionsTotal: CoreMetrics.Counter
    private let connectionsRejected: CoreMetrics.Counter
    private let flushDuration: CoreMetrics.Timer
    private let damageCorrupt: CoreMetrics.Counter
    private let damageLostTail: CoreMetrics.Counter
    private let denials: Mutex<[DenialKey: CoreMetrics.Counter]>
    private struct DenialKey: Hashable {
        var principal: String
        var operation: String
    }
    /// Distinct principals counted in `fjord_authorization_denied_total`; further ones are counted
    /// as `principal="other"` so the series stay bounded.
    static let maxDeniedPrincipals = 1000

    /// Creates the metrics of one broker with a fresh, private registry.
    ///
    /// All per-API series are created up front (at zero), so they appear in the exposition
    /// before the first request.
    public convenience init() {
        self.init(registry: PrometheusCollectorRegistry())
    }

    /// Creates the metrics of one broker in the given registry.
    ///
    /// - Parameter registry: the registry to register into. Must not already contain metrics with the
    ///   `fjord_` names above but a different type or bucket layout (swift-prometheus traps on that).
    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "fjord_request_duration_seconds": Self.requestDurationBuckets,
            "fjord_storage_flush_duration_seconds": Self.flushDurationBuckets,
        ]
        self.factory = factory

        func apiInstruments(_ api: String) -> APIInstruments {
            APIInstruments(
                requests: CoreMetrics.Counter(
                    label: "fjord_requests_total", dimensions: [("api", api)], factory: factory),
                duration: CoreMetrics.Timer(
                    label: "fjord_request_duration_seconds", dimensions: [("api", api)], factory: factory)
            )
        }
        var perAPI: [String: APIInstruments] = [:]
        perAPI.reserveCapacity(Self.apiLabels.count)
        for api in Self.apiLabels {
            perAPI[api] = apiInstruments(api)
        }
        self.perAPI = perAPI
        self.unknownAPI = apiInstruments(Self.unknownAPILabel)
        self.errors = Mutex([:])
        self.partitions = Mutex([:])

        self.bytesInCounter = CoreMetrics.Counter(label: "fjord_bytes_in_total", factory: factory)
        self.bytesOutCounter = CoreMetrics.Counter(label: "fjord_bytes_out_total", factory: factory)
        self.connectionsActive = Meter(label: "fjord_connections_active", factory: factory)
        self.connectionsTotal = CoreMetrics.Counter(label: "fjord_connections_total", factory: factory)
        self.connectionsRejected = CoreMetrics.Counter(label: "fjord_connections_rejected_total", factory: factory)
        self.flushDuration = CoreMetrics.Timer(label: "fjord_storage_flush_duration_seconds", factory: factory)
        self.damageCorrupt = CoreMetrics.Counter(
            label: "fjord_storage_damage_total", dimensions: [("kind", "corrupt_segment")], factory: factory)
        self.damageLostTail = CoreMetrics.Counter(
            label: "fjord_storage_damage_total", dimensions: [("kind", "lost_tail")], factory: factory)
        self.denials = Mutex([:])
    }

    // MARK: Requests

    /// Records one completed request.
    ///
    /// Increments `fjord_requests_total{api}`, observes `fjord_request_duration_seconds{api}` and, when
    /// `errorCode` is non-nil, increments `fjord_request_errors_total{api,code}`.
    ///
    /// - Parameters:
    ///   - api: one of ``apiLabels``; anything else is counted as ``unknownAPILabel``.
    ///   - durationNanoseconds: time from request decode to response write; negative values count as 0.
    ///   - errorCode: the error code name of a failed request (e.g. `"unknown_topic"`), or `nil` on success.
    public func requestCompleted(api: String, durationNanoseconds: Int64, errorCode: String?) {
        let known = self.perAPI[api]
        let instruments = known ?? self.unknownAPI
        instruments.requests.increment()
        instruments.duration.recordNanoseconds(max(0, durationNanoseconds))
        if let errorCode {
            self.errorCounter(api: known == nil ? Self.unknownAPILabel : api, code: errorCode).increment()
        }
    }

    private func errorCounter(api: String, code: String) -> CoreMetrics.Counter {
        let key = ErrorKey(api: api, code: code)
        let factory = self.factory
        return self.errors.withLock { counters in
            if let counter = counters[key] {
                return counter
            }
            var effectiveKey = key
            if code != "other" {
                let codesForAPI = counters.keys.lazy.filter { $0.api == api }.count
                if codesForAPI >= Self.maxErrorCodesPerAPI {
                    effectiveKey = ErrorKey(api: api, code: "other")
                    if let counter = counters[effectiveKey] {
                        return counter
                    }
                }
            }
            let counter = CoreMetrics.Counter(
                label: "fjord_request_errors_total",
                dimensions: [("api", effectiveKey.api), ("code", effectiveKey.code)],
                factory: factory
            )
            counters[effectiveKey] = counter
            return counter
        }
    }

    // MARK: Bytes

    /// Adds `n` record-batch payload bytes accepted by produce requests to `fjord_bytes_in_total`.
    /// Non-positive values are ignored.
    public func bytesIn(_ n: Int) {
        guard n > 0 else { return }
        self.bytesInCounter.increment(by: n)
    }

    /// Adds `n` record-batch payload bytes served by fetch/subscribe to `fjord_bytes_out_total`.
    /// Non-positive values are ignored.
    public func bytesOut(_ n: Int) {
        guard n > 0 else { return }
        self.bytesOutCounter.increment(by: n)
    }

    // MARK: Connections

    /// Records an accepted client connection: `fjord_connections_active` +1, `fjord_connections_total` +1.
    public func connectionOpened() {
        self.connectionsTotal.increment()
        self.connectionsActive.increment()
    }

    /// Records that a previously opened client connection closed: `fjord_connections_active` −1.
    /// Call exactly once per ``connectionOpened()``.
    public func connectionClosed() {
        self.connectionsActive.decrement()
    }

    /// Records a connection refused (for example over the connection limit): `fjord_connections_rejected_total` +1.
    /// Do not also call ``connectionOpened()`` for it.
    public func connectionRejected() {
        self.connectionsRejected.increment()
    }

    // MARK: Partitions

    /// Sets `fjord_log_end_offset{topic,partition}`, the next offset to be assigned in that partition.
    ///
    /// The gauge is created on first use. Values are exported as doubles, so offsets above 2^53 lose precision.
    public func setLogEndOffset(topic: String, partition: Int, offset: Int64) {
        self.partitionGauge(topic: topic, partition: partition, end: true).set(offset)
    }

    /// Sets `fjord_log_start_offset{topic,partition}`, the first offset still retained in that partition.
    ///
    /// The gauge is created on first use. Values are exported as doubles, so offsets above 2^53 lose precision.
    public func setLogStartOffset(topic: String, partition: Int, offset: Int64) {
        self.partitionGauge(topic: topic, partition: partition, end: false).set(offset)
    }

    /// Unregisters both offset gauges of a partition (e.g. after its topic was deleted), so they
    /// disappear from the exposition. A later `setLog…Offset` for the same partition creates them anew.
    public func removePartition(topic: String, partition: Int) {
        let removed = self.partitions.withLock { $0.removeValue(forKey: PartitionKey(topic: topic, partition: partition)) }
        removed?.logStart?.destroy()
        removed?.logEnd?.destroy()
    }

    private func partitionGauge(topic: String, partition: Int, end: Bool) -> Meter {
        let key = PartitionKey(topic: topic, partition: partition)
        let factory = self.factory
        return self.partitions.withLock { gauges in
            var entry = gauges[key] ?? PartitionGauges()
            if let existing = end ? entry.logEnd : entry.logStart {
                return existing
            }
            let meter = Meter(
                label: end ? "fjord_log_end_offset" : "fjord_log_start_offset",
                dimensions: [("topic", topic), ("partition", String(partition))],
                factory: factory
            )
            if end {
                entry.logEnd = meter
            } else {
                entry.logStart = meter
            }
            gauges[key] = entry
            return meter
        }
    }

    // MARK: Storage

    /// Observes one storage flush (fsync of a partition log) in `fjord_storage_flush_duration_seconds`.
    /// Negative durations count as 0.
    public func flushCompleted(durationNanoseconds: Int64) {
        self.flushDuration.recordNanoseconds(max(0, durationNanoseconds))
    }

    /// Counts damage found in a partition's log (once per damaged segment, or once per lost tail)
    /// in `fjord_storage_damage_total{kind}`.
    public func storageDamageFound(lostTail: Bool) {
        (lostTail ? self.damageLostTail : self.damageCorrupt).increment()
    }

    // MARK: Authorization

    /// Counts a request the authorizer denied in `fjord_authorization_denied_total{principal,operation}`.
    public func authorizationDenied(principal: String, operation: String) {
        let factory = self.factory
        let counter = denials.withLock { counters in
            var key = DenialKey(principal: principal, operation: operation)
            if let counter = counters[key] { return counter }
            if Set(counters.keys.lazy.map(\.principal)).count >= Self.maxDeniedPrincipals {
                key.principal = "other"
                if let counter = counters[key] { return counter }
            }
            let counter = CoreMetrics.Counter(
                label: "fjord_authorization_denied_total",
                dimensions: [("principal", key.principal), ("operation", key.operation)], factory: factory)
            counters[key] = counter
            return counter
        }
        counter.increment()
    }

    // MARK: Exposition

    /// Renders every metric in ``registry`` in the Prometheus text exposition format (version 0.0.4).
    public func render() -> String {
        self.registry.emitToString()
    }

    /// Renders every metric in ``registry`` in the Prometheus text exposition format as UTF-8 bytes.
    public func renderBytes() -> [UInt8] {
        self.registry.emitToBuffer()
    }
}
