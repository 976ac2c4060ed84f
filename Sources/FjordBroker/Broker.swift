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
    /// Connection slots: the handshaking pool, `max.connections`, `max.connections.per.address`.
    let admission: ConnectionAdmission
    /// Shares the storage threads fairly among connections.
    let scheduler: FairScheduler
    /// Bytes queued toward every connection (`broker.max.queued.bytes`).
    let queuedBytes: ByteBudget
    /// Request bytes received and not yet handled (`queued.max.request.bytes`).
    let requestBytes: ByteBudget

    private struct RunState {
        var started = false
        var stopped = false
        var context: BrokerContext?
        var listeners: [any Channel] = []
        var tlsAddress: SocketAddress?
        var plaintextAddress: SocketAddress?
        var operations: OperationsServer?
        var retentionTask: RepeatedTask?
        var scrubTask: RepeatedTask?
        var certificates: DevelopmentCertificates?
    }

    /// Creates a broker; nothing happens until ``start()``.
    public init(configuration: BrokerConfiguration, logger: Logger = Logger(label: "fjord.broker")) {
        self.configuration = configuration
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        self.storagePool = NIOThreadPool(numberOfThreads: configuration.storageThreads)
        self.metrics = BrokerMetrics()
        self.admission = ConnectionAdmission(
            configuration: configuration, metrics: metrics, logger: logger, logLimiter: logLimiter)
        self.scheduler = FairScheduler(capacity: configuration.storageMaxInFlightOperations)
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
            // Owner only: the logs hold every client's records (existing directories keep their mode).
            let ownerOnly: [FileAttributeKey: Any] = [.posixPermissions: 0o700]
            try FileManager.default.createDirectory(
                atPath: configuration.dataDirectory, withIntermediateDirectories: true, attributes: ownerOnly)
            try FileManager.default.createDirectory(
                atPath: dataDirectory.appending("logs").string, withIntermediateDirectories: true, attributes: ownerOnly)
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
            onFlush: { [metrics = self.metrics] nanoseconds in metrics.flushCompleted(durationNanoseconds: nanoseconds) },
            onDamage: { [metrics = self.metrics] error in metrics.storageDamageFound(lostTail: error.code == .logTailLost) })
        try await topics.loadAll()
        let authorizer = Authorizer(
            isEnabled: configuration.authorizerEnabled, superUsers: configuration.superUsers, store: store)
        try await authorizer.load()
        let principalMapper = try configuration.principalMapper()
        if configuration.authorizerEnabled {
            logger.notice(
                "authorizer on: requests not allowed by an ACL are denied",
                metadata: [
                    "acl.entries": "\(authorizer.list.entries.count)",
                    "super.users": "\(configuration.superUsers.map(\.description).sorted().joined(separator: ";"))",
                ])
        }
        for partition in registry.allPartitions() {
            metrics.setLogEndOffset(topic: partition.topic, partition: partition.index, offset: partition.log.logEndOffset)
            metrics.setLogStartOffset(topic: partition.topic, partition: partition.index, offset: partition.log.logStartOffset)
        }

        let advertisedHost =
            configuration.advertisedHost
            ?? (["0.0.0.0", "::"].contains(configuration.listen.host) ? "localhost" : configuration.listen.host)
        // The context names the bound port (the listen port may be 0), so the TLS listener binds
        // first; but no listener accepts a connection before everything it uses exists. Listeners
        // bind with auto-read off (a client connecting now waits in the accept backlog) and start
        // accepting once the context is set, below.
        let contextBox = Mutex<BrokerContext?>(nil)
        let tlsChannel = try await bind(configuration.listen, tls: tls, context: { contextBox.withLock { $0 } })
        let tlsAddress = tlsChannel.localAddress
        let context = BrokerContext(
            configuration: configuration, clusterID: store.clusterID, registry: registry, topics: topics,
            storagePool: storagePool, metrics: metrics, logger: logger, advertisedHost: advertisedHost,
            advertisedPort: tlsAddress?.port ?? configuration.listen.port, lifecycle: lifecycle, logLimiter: logLimiter,
            producerIDs: ProducerIDAllocator(store: store), scheduler: scheduler,
            quotas: ClientQuotas(
                producerBytesPerSecond: configuration.producerQuotaBytesPerSecond,
                consumerBytesPerSecond: configuration.consumerQuotaBytesPerSecond),
            queuedBytes: queuedBytes, requestBytes: requestBytes, authorizer: authorizer,
            principalMapper: principalMapper)
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
        for listener in listeners {
            try await listener.setOption(.autoRead, value: true).get()
        }

        let securityWarning = configuration.securityWarning
        if let securityWarning {
            logger.warning("\(securityWarning)", metadata: ["plaintext.listen": "\(plaintextAddress.map { "\($0)" } ?? "-")"])
        }

        var operations: OperationsServer?
        if let address = configuration.operationsListen {
            let lifecycle = self.lifecycle
            var healthDetails = ["node_id": "\(configuration.nodeID)"]
            if let securityWarning { healthDetails["warning"] = securityWarning }
            let details = healthDetails
            let server = OperationsServer(
                host: address.host, port: address.port, metrics: metrics,
                health: { HealthStatus(isHealthy: !lifecycle.isStopping, details: details) },
                group: group, logger: logger)
            do { try await server.start() } catch {
                throw BrokerStartError(
                    message: "cannot listen for operations (/metrics, /health) on \(address): \(Self.describe(bindError: error)); "
                        + "is another broker running there? Set `operations.listen` to a free port, or `off`")
            }
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

        // The scrubber verifies, at a bounded rate, log data no reader has verified since the start.
        let scrubBudget = Int(Int64(configuration.scrubBytesPerSecond) * configuration.scrubIntervalMilliseconds / 1000)
        let scrubLoop = group.next()
        let scrubber: RepeatedTask? =
            scrubBudget <= 0
            ? nil
            : scrubLoop.scheduleRepeatedAsyncTask(
                initialDelay: .milliseconds(configuration.scrubIntervalMilliseconds),
                delay: .milliseconds(configuration.scrubIntervalMilliseconds)
            ) { [registry] _ in
                scrubLoop.makeFutureWithTask {
                    var budget = scrubBudget
                    for partition in registry.allPartitions() where !partition.isClosed && budget > 0 {
                        // Damage is logged, counted and takes the partition offline inside the log.
                        while budget > 0, let done = try? await partition.log.scrub(maxBytes: budget), done > 0 {
                            budget -= done
                        }
                    }
                }
            }

        state.withLock { state in
            state.scrubTask = scrubber
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
        state.withLock { $0.scrubTask }?.cancel()
        for listener in listeners { try? await listener.close() }
        // Drain: appends already handed to the logs complete; new requests are refused meanwhile.
        let deadline = NIODeadline.now() + drainTimeout
        while lifecycle.appendsInFlight > 0, NIODeadline.now() < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        let connections = admission.stop()
        for connection in connections { try? await connection.close() }
        if let context { await context.topics.closeAll() }
        try? await operations?.stop()
        try? await storagePool.shutdownGracefully()
        try? await group.shutdownGracefully()
        logger.notice("broker stopped")
    }

    private func bind(
        _ address: BrokerConfiguration.Address, tls: NIOSSLContext?, context: @escaping @Sendable () -> BrokerContext?
    ) async throws -> any Channel {
        let configuration = self.configuration
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            // Nothing is accepted until `start()` turns auto-read on, once the context exists.
            .serverChannelOption(.autoRead, value: false)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // One socket read per read event: a connection with much to send does not hold the loop
            // while another waits for its single request to be read, and the broker checks its
            // request budgets after each read (at most one 64 KiB buffer past them, not sixteen).
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(low: configuration.maxQueuedBytesPerConnection / 2, high: configuration.maxQueuedBytesPerConnection))
            .childChannelInitializer { [self] channel in
                // Unreachable while listeners start with auto-read off; kept so that no ordering
                // mistake can ever crash the broker on a connection.
                guard let brokerContext = context() else { return channel.close() }
                let accepted = admission.accept(channel, handshakes: tls != nil)
                if case .refused = accepted { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        try sync.addHandler(FirstBytesHandler(admission: self.admission))
                        try sync.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try sync.addHandler(
                        ConnectionGuardHandler(
                            admission: self.admission, idleMilliseconds: configuration.connectionsMaxIdleMilliseconds))
                    let meter = InboundByteMeter()
                    try sync.addHandler(meter)
                    try sync.addHandler(ByteToMessageHandler(FrameDecoder(maximumPayloadLength: configuration.maxFrameBytes)))
                    try sync.addHandler(FrameEncoder(allowsFileRegions: tls == nil))
                    var connectionLogger = logger
                    connectionLogger[metadataKey: "listener"] = "\(tls == nil ? "plaintext" : "tls")"
                    try sync.addHandler(
                        ConnectionHandler(
                            broker: brokerContext, logger: connectionLogger, usesTLS: tls != nil, meter: meter,
                            rejection: rejection(accepted)))
                }
            }
        do {
            return try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            let key = tls == nil ? "plaintext.listen" : "listen"
            throw BrokerStartError(
                message: "cannot listen for \(tls == nil ? "plaintext" : "TLS") clients on \(address): \(Self.describe(bindError: error)); "
                    + "is another broker running there? Set `\(key)` to a free port")
        }
    }

    /// The reason a listener could not bind, as an operator reads it ("Address already in use"),
    /// rather than NIO's description of the system call.
    static func describe(bindError error: any Error) -> String {
        if let error = error as? IOError { return "\(String(cString: strerror(error.errnoCode))) (errno \(error.errnoCode))" }
        return "\(error)"
    }

    /// The error a connection over a limit at accept (a plaintext one) is answered with.
    private func rejection(_ accept: ConnectionSlotsStateMachine<ObjectIdentifier>.Accept) -> BrokerError? {
        guard case .overLimit(let refusal) = accept else { return nil }
        return admission.error(for: refusal)
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
