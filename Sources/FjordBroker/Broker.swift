import FjordProto
import FjordStorage
public import FjordTLS
import FjordWire
import Foundation
public import Logging
public import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import SystemPackage

/// A single-node Fjord broker: TLS (and optionally plaintext) listeners speaking the framed
/// protocol, the partition logs, topic administration, and the `/metrics` and `/health` endpoint.
///
/// ```swift
/// let broker = Broker(configuration: try BrokerConfiguration.load(file: nil), logger: logger)
/// try await broker.start()
/// print("listening on \(broker.tlsAddress!)")
/// // ... until asked to stop:
/// await broker.shutdown()
/// ```
///
/// To run it under swift-service-lifecycle, use ``BrokerService``.
public final class Broker: Sendable {
    /// The configuration the broker was created with.
    public let configuration: BrokerConfiguration
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let storagePool: NIOThreadPool
    /// The metrics the broker records (exposed on `/metrics`).
    public let metrics: BrokerMetrics
    private let lifecycle = BrokerLifecycle()
    /// Keeps bad clients from flooding the log.
    let logLimiter = LogRateLimiter()
    private let state = Mutex(RunState())
    /// Bytes queued toward every connection (`broker.max.queued.bytes`).
    let queuedBytes: ByteBudget
    /// Request bytes received and not yet handled (`queued.max.request.bytes`).
    let requestBytes: ByteBudget

    private struct RunState {
        var started = false
        var stopped = false
        var context: BrokerContext?
        var listeners: [any Channel] = []
        var connections: [ObjectIdentifier: any Channel] = [:]
        /// Connections past `max.connections` waiting to be told so.
        var overLimit: [ObjectIdentifier: any Channel] = [:]
        var tlsAddress: SocketAddress?
        var plaintextAddress: SocketAddress?
        var operations: OperationsServer?
        var retentionTask: RepeatedTask?
        var certificates: DevelopmentCertificates?
    }

    /// Creates a broker; nothing happens until ``start()``.
    public init(configuration: BrokerConfiguration, logger: Logger = Logger(label: "fjord.broker")) {
        self.configuration = configuration
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        self.storagePool = NIOThreadPool(numberOfThreads: configuration.storageThreads)
        self.metrics = BrokerMetrics()
        self.queuedBytes = ByteBudget(capacity: configuration.maxQueuedBytes)
        self.requestBytes = ByteBudget(capacity: configuration.maxQueuedRequestBytes)
    }

    /// Bytes queued toward all connections now (responses not yet taken by their sockets).
    package var queuedResponseBytes: Int { queuedBytes.usedBytes }
    /// Request bytes received and not yet handled now, over all connections.
    package var queuedRequestBytes: Int { requestBytes.usedBytes }

    /// The bound address of the TLS listener, once started.
    public var tlsAddress: SocketAddress? { state.withLock { $0.tlsAddress } }
    /// The bound address of the plaintext listener, if configured and started.
    public var plaintextAddress: SocketAddress? { state.withLock { $0.plaintextAddress } }
    /// The bound port of the operations HTTP endpoint, if enabled and started.
    public var operationsPort: Int? { state.withLock { $0.operations?.port } }
    /// The generated development certificates, when the broker made its own.
    public var developmentCertificates: DevelopmentCertificates? { state.withLock { $0.certificates } }

    /// Opens the data directory and every partition, builds the TLS context and binds the listeners.
    public func start() async throws {
        let alreadyStarted = state.withLock { state in
            defer { state.started = true }
            return state.started
        }
        guard !alreadyStarted else { return }
        storagePool.start()
        let configuration = self.configuration
        let dataDirectory = FilePath(configuration.dataDirectory)
        let logDefaults = try configuration.logDefaults()

        // Files first, off any event loop: directories, certificates, the TLS context.
        let (tls, certificates) = try await storagePool.runIfActive { () throws -> (NIOSSLContext, DevelopmentCertificates?) in
            try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(
                atPath: dataDirectory.appending("logs").string, withIntermediateDirectories: true)
            return try Self.makeTLSContext(configuration)
        }
        if let certificates {
            logger.notice(
                "using development certificates; clients must trust the CA",
                metadata: ["tls.ca": "\(certificates.caCertificatePath)", "tls.generated": "\(certificates.generated)"])
        }

        let store = try await LocalMetadataStore.open(directory: dataDirectory, threadPool: storagePool)
        let registry = PartitionRegistry()
        let topics = TopicManager(
            store: store, registry: registry, logsDirectory: dataDirectory.appending("logs"), threadPool: storagePool,
            defaults: logDefaults, limits: .init(maxPartitionsPerTopic: configuration.maxPartitionsPerTopic),
            nodeID: configuration.nodeID, logger: logger,
            onFlush: { [metrics = self.metrics] nanoseconds in metrics.flushCompleted(durationNanoseconds: nanoseconds) })
        try await topics.loadAll()
        for partition in registry.allPartitions() {
            metrics.setLogEndOffset(topic: partition.topic, partition: partition.index, offset: partition.log.logEndOffset)
            metrics.setLogStartOffset(topic: partition.topic, partition: partition.index, offset: partition.log.logStartOffset)
        }

        let advertisedHost =
            configuration.advertisedHost
            ?? (["0.0.0.0", "::"].contains(configuration.listen.host) ? "localhost" : configuration.listen.host)
        // The context names the bound port (the listen port may be 0); connections read it once
        // they arrive, which is after it is set.
        let contextBox = Mutex<BrokerContext?>(nil)
        let tlsChannel = try await bind(configuration.listen, tls: tls, context: { contextBox.withLock { $0! } })
        let tlsAddress = tlsChannel.localAddress
        let context = BrokerContext(
            configuration: configuration, clusterID: store.clusterID, registry: registry, topics: topics,
            storagePool: storagePool, metrics: metrics, logger: logger, advertisedHost: advertisedHost,
            advertisedPort: tlsAddress?.port ?? configuration.listen.port, lifecycle: lifecycle, logLimiter: logLimiter,
            producerIDs: ProducerIDAllocator(store: store), queuedBytes: queuedBytes, requestBytes: requestBytes)
        contextBox.withLock { $0 = context }
        let finalContext = context
        state.withLock { $0.context = finalContext }
        var listeners: [any Channel] = [tlsChannel]
        var plaintextAddress: SocketAddress?
        if let plaintext = configuration.plaintextListen {
            let channel = try await bind(plaintext, tls: nil, context: { finalContext })
            plaintextAddress = channel.localAddress
            listeners.append(channel)
        }

        var operations: OperationsServer?
        if let address = configuration.operationsListen {
            let lifecycle = self.lifecycle
            let server = OperationsServer(
                host: address.host, port: address.port, metrics: metrics,
                health: { HealthStatus(isHealthy: !lifecycle.isStopping, details: ["node_id": "\(configuration.nodeID)"]) },
                group: group, logger: logger)
            try await server.start()
            operations = server
        }

        let retention = group.next().scheduleRepeatedTask(
            initialDelay: .milliseconds(configuration.retentionCheckIntervalMilliseconds),
            delay: .milliseconds(configuration.retentionCheckIntervalMilliseconds)
        ) { [registry, metrics, logger] _ in
            Task {
                for partition in registry.allPartitions() where !partition.isClosed {
                    do {
                        let result = try await partition.log.applyRetention()
                        metrics.setLogStartOffset(topic: partition.topic, partition: partition.index, offset: result.logStartOffset)
                        if !result.deletedSegments.isEmpty {
                            logger.info(
                                "retention deleted segments",
                                metadata: [
                                    "partition": "\(partition.topic)-\(partition.index)",
                                    "segments": "\(result.deletedSegments.count)", "bytes": "\(result.deletedBytes)",
                                ])
                        }
                    } catch {
                        logger.warning("retention failed", metadata: ["partition": "\(partition.topic)-\(partition.index)", "error": "\(error)"])
                    }
                }
            }
        }

        state.withLock { state in
            state.listeners = listeners
            state.tlsAddress = tlsAddress
            state.plaintextAddress = plaintextAddress
            state.operations = operations
            state.retentionTask = retention
            state.certificates = certificates
        }
        logger.notice(
            "broker started",
            metadata: [
                "listen.tls": "\(tlsAddress.map { "\($0)" } ?? "-")",
                "listen.plaintext": "\(plaintextAddress.map { "\($0)" } ?? "-")",
                "operations.port": "\(operations?.port.map { "\($0)" } ?? "-")",
                "data.dir": "\(configuration.dataDirectory)", "cluster.id": "\(store.clusterID)",
            ])
    }

    /// Stops gracefully: refuses new requests, stops accepting, waits (up to `drainTimeout`) for
    /// appends in flight, closes connections, then flushes and closes every log, writing the
    /// clean-shutdown markers.
    public func shutdown(drainTimeout: TimeAmount = .seconds(10)) async {
        let (shouldRun, listeners, operations, retention, context) = state.withLock { state in
            defer { state.stopped = true }
            return (!state.stopped && state.started, state.listeners, state.operations, state.retentionTask, state.context)
        }
        guard shouldRun else { return }
        logger.notice("broker stopping")
        lifecycle.beginStopping()
        retention?.cancel()
        for listener in listeners { try? await listener.close() }
        // Drain: appends already handed to the logs complete; new requests are refused meanwhile.
        let deadline = NIODeadline.now() + drainTimeout
        while lifecycle.appendsInFlight > 0, NIODeadline.now() < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        let connections = state.withLock { Array($0.connections.values) + Array($0.overLimit.values) }
        for connection in connections { try? await connection.close() }
        if let context { await context.topics.closeAll() }
        try? await operations?.stop()
        try? await storagePool.shutdownGracefully()
        try? await group.shutdownGracefully()
        logger.notice("broker stopped")
    }

    private func bind(
        _ address: BrokerConfiguration.Address, tls: NIOSSLContext?, context: @escaping @Sendable () -> BrokerContext
    ) async throws -> any Channel {
        let configuration = self.configuration
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // One socket read per read event: the broker checks its request budgets after each
            // read, so a connection takes in at most one buffer (64 KiB) past them, not sixteen.
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(low: configuration.maxQueuedBytesPerConnection / 2, high: configuration.maxQueuedBytesPerConnection))
            .childChannelInitializer { [self] channel in
                let admission = admit(channel)
                if case .refused = admission { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls { try sync.addHandler(NIOSSLServerHandler(context: tls)) }
                    let meter = InboundByteMeter()
                    try sync.addHandler(meter)
                    try sync.addHandler(ByteToMessageHandler(FrameDecoder(maximumPayloadLength: configuration.maxFrameBytes)))
                    try sync.addHandler(FrameEncoder(allowsFileRegions: tls == nil))
                    var connectionLogger = logger
                    connectionLogger[metadataKey: "listener"] = "\(tls == nil ? "plaintext" : "tls")"
                    try sync.addHandler(
                        ConnectionHandler(
                            broker: context(), logger: connectionLogger, usesTLS: tls != nil, meter: meter,
                            rejection: admission == .overLimit ? tooManyConnections : nil))
                }
            }
        do {
            return try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            throw BrokerStartError(message: "cannot listen on \(address): \(error); is another broker running there? Set `listen` to a free port")
        }
    }

    /// What becomes of a new connection.
    private enum Admission: Equatable {
        /// Served.
        case admitted
        /// Past `max.connections`: its `Handshake` is answered with `TOO_MANY_CONNECTIONS`.
        case overLimit
        /// Past the over-limit allowance too: closed at once, without a frame.
        case refused
    }

    /// Connections past `max.connections` that are told why before being closed, at once. More
    /// than this are closed without a word: answering costs a TLS handshake each.
    static let overLimitAllowance = 64

    private var tooManyConnections: BrokerError {
        BrokerError(
            .tooManyConnections,
            "the broker has \(configuration.maxConnections) connections open (max.connections); retry later or elsewhere")
    }

    /// Counts the connection in, tells it to come back later past `max.connections`, or refuses it.
    private func admit(_ channel: any Channel) -> Admission {
        let id = ObjectIdentifier(channel)
        let admission = state.withLock { state -> Admission in
            guard !state.stopped else { return .refused }
            if state.connections.count < configuration.maxConnections {
                state.connections[id] = channel
                return .admitted
            }
            guard state.overLimit.count < Self.overLimitAllowance else { return .refused }
            state.overLimit[id] = channel
            return .overLimit
        }
        guard admission == .admitted else {
            metrics.connectionRejected()
            logLimiter.log(
                logger, .warning, "connection refused: the connection limit is reached",
                metadata: [
                    "limit": "\(configuration.maxConnections)", "connection.remote": "\(channel.remoteAddress.map { "\($0)" } ?? "?")",
                    "connection.told": "\(admission == .overLimit)",
                ])
            if admission == .overLimit {
                channel.closeFuture.whenComplete { [self] _ in state.withLock { _ = $0.overLimit.removeValue(forKey: id) } }
            }
            return admission
        }
        metrics.connectionOpened()
        channel.closeFuture.whenComplete { [self] _ in
            state.withLock { _ = $0.connections.removeValue(forKey: id) }
            metrics.connectionClosed()
        }
        return .admitted
    }

    /// The server TLS context, and the development certificates when the broker generated its own.
    private static func makeTLSContext(_ configuration: BrokerConfiguration) throws -> (NIOSSLContext, DevelopmentCertificates?) {
        if let certificate = configuration.tlsCertificatePath {
            guard let key = configuration.tlsPrivateKeyPath else {
                throw BrokerStartError(message: "tls.certificate is set but tls.key is not; set both, or neither to use development certificates")
            }
            let tls = ServerTLSConfiguration(
                certificateChainPath: certificate, privateKeyPath: key, trustRootsPath: configuration.tlsClientCAPath,
                requireClientCertificate: configuration.requireClientCertificate)
            return (try tls.makeContext(), nil)
        }
        let certificates = try DevelopmentCertificates.ensure(in: configuration.dataDirectory + "/certs")
        let tls = ServerTLSConfiguration(
            certificateChainPath: certificates.serverCertificatePath, privateKeyPath: certificates.serverPrivateKeyPath,
            trustRootsPath: configuration.tlsClientCAPath ?? certificates.caCertificatePath,
            requireClientCertificate: configuration.requireClientCertificate)
        return (try tls.makeContext(), certificates)
    }
}

/// The broker could not start; the message says what to change.
public struct BrokerStartError: Error, Sendable, CustomStringConvertible {
    /// What went wrong and what to do.
    public var message: String
    public var description: String { message }
}
