public import FjordStorage
import Foundation

/// Everything a broker is configured with. Every setting has a key, the same in a configuration
/// file, as an environment variable (`FJORD_` + the key upper-cased with `.` as `_`) and as a
/// command-line `--set key=value`; `docs/configuration.md` lists them. Later sources win:
/// defaults, then the file, then the environment, then flags.
///
/// ```swift
/// var configuration = BrokerConfiguration()
/// try configuration.apply(["listen": "0.0.0.0:7420", "tls.client.auth": "required"], source: "flags")
/// ```
public struct BrokerConfiguration: Sendable, Hashable {
    /// A host and port to listen on.
    public struct Address: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        /// Creates an address.
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        /// Parses `host:port` or `[v6]:port`.
        public init?(parsing text: String) {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
                (0...65535).contains(port)
            else { return nil }
            var host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else { return nil }
            self.init(host: host, port: port)
        }
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// `node.id`: this broker's id.
    public var nodeID: Int32 = 1
    /// `data.dir`: where logs, metadata and generated certificates live.
    public var dataDirectory: String = BrokerConfiguration.defaultDataDirectory
    /// `listen`: the TLS listener.
    public var listen = Address(host: "127.0.0.1", port: 7420)
    /// `plaintext.listen`: an optional listener without TLS (trusted networks, loopback benchmarks).
    public var plaintextListen: Address?
    /// `operations.listen`: HTTP `/metrics` and `/health`; `off` disables it.
    public var operationsListen: Address? = Address(host: "127.0.0.1", port: 7421)
    /// `advertised.host`: the host name clients are told in metadata (default: the listen host,
    /// or `localhost` when listening on every interface).
    public var advertisedHost: String?
    /// `tls.certificate` and `tls.key`: the server's PEM certificate chain and key. Unset: a
    /// development CA and server certificate are generated in `data.dir/certs` on first start.
    public var tlsCertificatePath: String?
    public var tlsPrivateKeyPath: String?
    /// `tls.client.ca`: PEM bundle of CAs whose client certificates are accepted.
    public var tlsClientCAPath: String?
    /// `tls.client.auth`: `none` or `required` (mutual TLS).
    public var requireClientCertificate = false
    /// `tls.principal.source`: which name of a client certificate becomes the connection's
    /// principal: `cn` (subject common name, the default), `dn` (subject distinguished name),
    /// `san.uri` (a SPIFFE id, say) or `san.dns` (see ``PrincipalMapper``).
    public var principalSource = PrincipalMapper.Source.commonName
    /// `tls.principal.mapping.rules`: Kafka-style rules rewriting that name (`DEFAULT` keeps it).
    public var principalMappingRules = "DEFAULT"
    /// `authorizer.enable`: enforce ACLs (off: every client may do everything, as on the embedded
    /// development broker).
    public var authorizerEnabled = false
    /// `super.users`: principals allowed everything, separated by `;` (`User:admin;User:ops`).
    public var superUsers: Set<Principal> = []
    /// `max.connections`: connections accepted at once, over every listener.
    public var maxConnections = 10_000
    /// `handshake.timeout.ms`: how long a new connection has to complete TLS and send its
    /// `Handshake` before the broker closes it (with `REQUEST_TIMED_OUT` once TLS is up).
    public var handshakeTimeoutMilliseconds = 10_000
    /// `max.connections.per.address`: served connections (TLS established) at once from one IP
    /// address; 0 means no limit. One past it is answered `TOO_MANY_CONNECTIONS`.
    public var maxConnectionsPerAddress = 0
    /// `max.handshaking.connections`: connections still in their TLS handshake at once, a pool of
    /// their own apart from `max.connections`; when it is full the oldest is closed to make room,
    /// so peers that never finish a handshake cannot keep anyone else out.
    public var maxHandshakingConnections = 256
    /// `connections.max.idle.ms`: a connection with no open stream that sends and receives
    /// nothing for this long is closed (`REQUEST_TIMED_OUT`); 0 never closes idle connections.
    public var connectionsMaxIdleMilliseconds = 600_000
    /// `storage.max.in.flight.operations`: appends and reads handed to the storage threads at
    /// once, over every connection; past it each connection waits its turn (deficit round robin).
    public var storageMaxInFlightOperations = 64
    /// `quota.producer.bytes.per.sec`: produce bytes per second allowed to one client id (0: no
    /// quota). A client above it is told `throttle_time_ms` and its connection is not read meanwhile.
    public var producerQuotaBytesPerSecond = 0
    /// `quota.consumer.bytes.per.sec`: fetched bytes per second allowed to one client id (0: no
    /// quota), throttled like the producer quota.
    public var consumerQuotaBytesPerSecond = 0
    /// `max.frame.bytes`: largest frame payload accepted.
    public var maxFrameBytes = 8 << 20
    /// `max.in.flight.bytes`: produce bytes held for one connection before the broker stops reading from it.
    public var maxInFlightBytesPerConnection = 64 << 20
    /// `connection.max.queued.bytes`: bytes queued toward one connection (responses not yet taken
    /// by its socket) at which the broker stops reading its requests and preparing its fetch and
    /// subscription responses; also the channel's write-buffer high-water mark.
    public var maxQueuedBytesPerConnection = 1 << 20
    /// `broker.max.queued.bytes`: bytes queued toward all connections together past which record
    /// responses (fetch, subscription pushes) wait until written bytes make room.
    public var maxQueuedBytes = 32 << 20
    /// `queued.max.request.bytes`: request bytes received and not yet handled (partial frames,
    /// produce batches being appended), over all connections, past which connections holding more
    /// than 16 KiB of them are not read until room frees (Kafka's key of the same name).
    public var maxQueuedRequestBytes = 64 << 20
    /// `request.timeout.ms`: how long a frame may take to arrive once its first bytes did; a slower
    /// one gets `REQUEST_TIMED_OUT` and the connection closes.
    public var requestTimeoutMilliseconds = 30_000
    /// `max.partitions.per.topic`.
    public var maxPartitionsPerTopic = 10_000
    /// `max.fetch.wait.ms`: the longest long-poll a fetch may ask for.
    public var maxFetchWaitMilliseconds = 30_000
    /// `auto.create.topics.enable`: create a topic on the first produce to it (off, as in production Kafka).
    public var autoCreateTopics = false
    /// `num.partitions`: partitions of an auto-created topic.
    public var autoCreatePartitions = 1
    /// `storage.threads`: threads for file I/O and fsync.
    public var storageThreads = max(4, 2 * ProcessInfo.processInfo.activeProcessorCount)
    /// `event.loop.threads`: network threads.
    public var eventLoopThreads = ProcessInfo.processInfo.activeProcessorCount
    /// `log.retention.check.interval.ms`: how often retention runs.
    public var retentionCheckIntervalMilliseconds: Int64 = 300_000
    /// `log.scrub.bytes.per.second`: how many bytes of not-yet-verified log data the background
    /// scrubber verifies per second, over all partitions (0 turns it off).
    public var scrubBytesPerSecond = 4 << 20
    /// `log.scrub.interval.ms`: how often the scrubber runs (each run spends its share of the rate).
    public var scrubIntervalMilliseconds: Int64 = 1000
    /// `log.recovery.point.checkpoint.interval.ms`: least time between two writes of a log's
    /// recovery point by its flusher (besides rolls, truncation and close); a crash can hide a
    /// lost tail written within this window.
    public var recoveryPointCheckpointIntervalMilliseconds: Int64 = 60_000
    /// Topic defaults, by topic key (`retention.ms`, ...), set with Kafka's broker keys
    /// (`log.retention.ms`, `log.retention.bytes`, `log.segment.bytes`, `log.roll.ms`,
    /// `message.max.bytes`, `log.flush.interval.ms`, `log.message.timestamp.type`).
    public var topicDefaults: [String: String] = [:]

    /// The data directory when `data.dir` is not set (by file, flag or `FJORD_DATA_DIR`):
    /// `$XDG_DATA_HOME/fjord`, else `$HOME/.local/share/fjord`.
    public static var defaultDataDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        if let xdg = environment["XDG_DATA_HOME"], !xdg.isEmpty { return xdg + "/fjord" }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.local/share/fjord"
    }

    /// Kafka's broker-level keys for topic defaults, and the topic key each sets.
    static let topicDefaultKeys: [String: String] = [
        "log.retention.ms": "retention.ms", "log.retention.bytes": "retention.bytes",
        "log.segment.bytes": "segment.bytes", "log.roll.ms": "segment.ms", "message.max.bytes": "max.message.bytes",
        "log.flush.interval.ms": "flush.ms", "log.message.timestamp.type": "message.timestamp.type",
    ]

    /// Every key ``apply(_:source:)`` accepts.
    public static let keys: [String] =
        [
            "node.id", "data.dir", "listen", "plaintext.listen", "operations.listen", "advertised.host",
            "tls.certificate", "tls.key", "tls.client.ca", "tls.client.auth", "max.connections", "max.frame.bytes",
            "max.in.flight.bytes", "connection.max.queued.bytes", "broker.max.queued.bytes", "queued.max.request.bytes",
            "request.timeout.ms", "max.partitions.per.topic", "max.fetch.wait.ms", "auto.create.topics.enable",
            "num.partitions", "storage.threads", "event.loop.threads", "log.retention.check.interval.ms",
            "log.scrub.bytes.per.second", "log.scrub.interval.ms", "log.recovery.point.checkpoint.interval.ms",
            "handshake.timeout.ms", "max.connections.per.address", "max.handshaking.connections",
            "connections.max.idle.ms", "storage.max.in.flight.operations", "quota.producer.bytes.per.sec",
            "quota.consumer.bytes.per.sec", "tls.principal.source", "tls.principal.mapping.rules", "authorizer.enable",
            "super.users",
        ] + topicDefaultKeys.keys.sorted()

    /// The default configuration.
    public init() {}

    /// The mapper of client certificates to principals these settings describe.
    public func principalMapper() throws(Error) -> PrincipalMapper {
        try PrincipalMapper(source: principalSource, rules: principalMappingRules)
    }

    /// The topic defaults as log settings.
    public func logDefaults() throws(BrokerError) -> LogConfiguration {
        var base = LogConfiguration()
        base.recoveryPointCheckpointMilliseconds = recoveryPointCheckpointIntervalMilliseconds
        return try TopicConfiguration(overrides: topicDefaults).logConfiguration(base: base)
    }
}

extension BrokerConfiguration {
    /// A configuration that weakens what an operator asked for, said in words, or `nil`.
    ///
    /// Today one case: `tls.client.auth=required` with a `plaintext.listen` listener, whose clients
    /// present no certificate at all. The broker logs this at start and shows it on `/health`
    /// (see `docs/security.md`).
    public var securityWarning: String? {
        guard requireClientCertificate, plaintextListen != nil else { return nil }
        return "plaintext.listen is set, so clients of that listener are not authenticated although tls.client.auth=required: "
            + "client certificates are checked on the TLS listener only; unset plaintext.listen unless its network is trusted"
    }
}
