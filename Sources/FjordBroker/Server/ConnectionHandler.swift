import FjordProto
import FjordProtocol
import FjordStorage
import FjordWire
import FjordTLS
import Logging
import NIOCore
import NIOSSL
import NIOTLS
import SwiftProtobuf

/// Serves one client connection on its event loop: the handshake, then every stream the client
/// opens. Frame rules live in ``ConnectionStateMachine``; this handler performs what it decides.
///
/// Backpressure: the handler stops reading from the socket while the produce bytes it holds
/// exceed the configured in-flight limit, while the channel is not writable, while the bytes
/// queued toward the client are at `connection.max.queued.bytes`, or while it holds request bytes
/// past its allowance and the broker's request budget is spent; it resumes once all clear. Fetch
/// and subscription responses are prepared only below the queued-bytes limit and sent once the
/// broker-wide budget takes them (``ConnectionWriteBudget``, `ConnectionHandler+Backpressure.swift`).
/// So memory per connection and per broker stays bounded.
final class ConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    let broker: BrokerContext
    var logger: Logger
    var state = ConnectionStateMachine()
    var context: ChannelHandlerContext?
    /// Largest frame payload the client accepts.
    var clientMaxFrameBytes: Int

    // Produce
    var produceStreams: [UInt32: ProduceStream] = [:]
    var inFlightBytes = 0

    // Subscriptions and long polls
    var subscriptions: [UInt32: Subscription] = [:]
    var fetches: [UInt32: FetchOperation] = [:]

    // Memory held for the client (ConnectionHandler+Backpressure.swift)
    var backpressure: ConnectionBackpressure

    // Reading and flushing
    var readPending = false
    var flushScheduled = false
    var closed = false

    // Admission
    /// Why the connection is not served (past `max.connections`): the answer to its handshake.
    var rejection: BrokerError?
    /// This connection's turns at the storage threads (``FairScheduler``).
    var storageTurns: StorageTurns?
    /// The client id from the handshake: what quotas are counted by.
    var clientID = ""
    /// Until when reads (and pushes) are held because the client is over a quota.
    var throttledUntil: NIODeadline?
    var throttleTimer: Scheduled<Void>?
    /// Whether TLS is established (always, on the plaintext listener).
    private var transportReady: Bool
    /// Whether fetch and subscribe responses may send batches with `sendfile` (no TLS).
    let usesFileRegions: Bool
    /// Closes the connection unless it completes its handshake in time.
    private var handshakeTimer: Scheduled<Void>?
    /// Who the client is (from its certificate) and the decisions made for it.
    var authorization: ConnectionAuthorization
    /// Why the client certificate gives no principal: the answer to the handshake.
    private var authenticationError: BrokerError?

    /// Creates the handler of a connection; one that is over the connection limit answers its
    /// handshake with `rejection` and closes.
    init(broker: BrokerContext, logger: Logger, usesTLS: Bool, meter: InboundByteMeter? = nil, rejection: BrokerError? = nil) {
        self.broker = broker
        self.backpressure = ConnectionBackpressure(limit: broker.configuration.maxQueuedBytesPerConnection, meter: meter)
        self.logger = logger
        self.clientMaxFrameBytes = broker.configuration.maxFrameBytes
        self.transportReady = !usesTLS
        self.usesFileRegions = !usesTLS
        self.rejection = rejection
        self.authorization = ConnectionAuthorization(
            scope: AuthorizationScope(
                authorizer: broker.authorizer, principal: .anonymous, host: "",
                audit: DenialAudit(logger: logger, metrics: broker.metrics)))
    }

    /// Sets who the client is; `certificate` is what TLS verified (nil without one).
    private func authenticate(certificate: NIOSSLCertificate?, context: ChannelHandlerContext) {
        let host = context.channel.remoteAddress?.ipAddress ?? ""
        var principal = Principal.anonymous
        if let certificate {
            do throws(TLSConfigurationError) {
                switch broker.principalMapper.principal(for: try CertificateIdentity(certificate)) {
                case .success(let mapped): principal = mapped
                case .failure(let error): authenticationError = error
                }
            } catch {
                authenticationError = BrokerError(.authenticationFailed, error.message)
            }
        }
        logger[metadataKey: "principal"] = "\(principal)"
        authorization = ConnectionAuthorization(
            scope: AuthorizationScope(
                authorizer: broker.authorizer, principal: principal, host: host,
                audit: DenialAudit(logger: logger, metrics: broker.metrics)))
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        storageTurns = StorageTurns(scheduler: broker.scheduler, eventLoop: context.eventLoop)
        storageTurns?.onRoom = { [unowned self] in resumeReadingIfPossible() }
        if let remote = context.channel.remoteAddress { logger[metadataKey: "connection.remote"] = "\(remote)" }
        if transportReady { authenticate(certificate: nil, context: context) }  // plaintext: anonymous
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        handshakeTimer = context.eventLoop.scheduleTask(
            in: .milliseconds(Int64(broker.configuration.handshakeTimeoutMilliseconds))
        ) { handler.value.handshakeTimedOut() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            transportReady = true
            authenticate(certificate: try? context.pipeline.syncOperations.nioSSL_peerCertificate(), context: context)
        }
        if let event = event as? ConnectionAdmissionEvent { return admissionEventTriggered(event) }
        context.fireUserInboundEventTriggered(event)
    }

    /// No handshake in `handshake.timeout.ms`: a connection that holds a slot without using it.
    private func handshakeTimedOut() {
        handshakeTimer = nil
        guard let context, !closed else { return }
        let timeout = broker.configuration.handshakeTimeoutMilliseconds
        if transportReady {
            closeWithError(
                BrokerError(.requestTimedOut, "no Handshake within \(timeout) ms of connecting (handshake.timeout.ms)"))
        } else {
            broker.logLimiter.log(
                logger, .info, "connection closed: TLS was not established in time",
                metadata: ["handshake.timeout.ms": "\(timeout)"])
            tearDown()
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    private func tearDown() {
        guard !closed else { return }
        closed = true
        handshakeTimer?.cancel()
        handshakeTimer = nil
        throttleTimer?.cancel()
        storageTurns?.close()
        state.close()
        for subscription in subscriptions.values { subscription.cancel() }
        subscriptions.removeAll()
        for fetch in fetches.values { fetch.cancel() }
        fetches.removeAll()
        produceStreams.removeAll()
        releaseBackpressure()
    }

    // MARK: Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        frameReceived(payloadBytes: frame.payload.readableBytes)
        if let rejection {
            // Already logged when the connection was admitted.
            closeWithError(rejection, log: false)
            return
        }
        switch state.receive(frame.header) {
        case .handshake(let streamID):
            handshake(streamID: streamID, payload: frame.payload)
        case .unary(let streamID, let method):
            unary(streamID: streamID, method: method, payload: frame.payload)
        case .produce(let streamID, let endOfStream):
            produce(streamID: streamID, payload: frame.payload, endOfStream: endOfStream)
        case .subscribe(let streamID):
            subscribe(streamID: streamID, payload: frame.payload)
        case .subscribeCredit(let streamID):
            subscribeCredit(streamID: streamID, payload: frame.payload)
        case .cancel(let streamID):
            cancel(streamID: streamID)
        case .ignore:
            break
        case .streamError(let streamID, let method, let error):
            cancel(streamID: streamID)  // whatever the stream had going on stops with it
            broker.logLimiter.log(logger, .info, "request rejected", metadata: ["stream": "\(streamID)", "error": "\(error)"])
            sendError(error, streamID: streamID, method: method)
        case .connectionError(let error):
            closeWithError(error)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        checkPartialFrame()
        flushNow()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let frameError = error as? FrameError {
            let code: Fjord_V1_ErrorCode = frameError.code == .oversizeFrame ? .frameTooLarge : .malformedFrame
            closeWithError(BrokerError(code, frameError.message))
        } else if error is ByteToMessageDecoderError {
            closeWithError(BrokerError(.malformedFrame, "\(error)"))
        } else {
            // TLS failures (untrusted certificate, plaintext on the TLS port) and socket errors.
            broker.logLimiter.log(logger, .info, "connection failed", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    // MARK: Backpressure

    func read(context: ChannelHandlerContext) {
        if shouldPauseReading {
            readPending = true
        } else {
            context.read()
        }
    }

    var shouldPauseReading: Bool {
        inFlightBytes >= broker.configuration.maxInFlightBytesPerConnection || !(context?.channel.isWritable ?? true)
            || throttledUntil != nil || (storageTurns?.isFull ?? false) || readBlocker() != nil
    }

    /// Resumes reading once the reasons to pause are gone.
    func resumeReadingIfPossible() {
        updateRequestBytes()
        guard readPending, !shouldPauseReading, let context else { return }
        readPending = false
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            flushDeferredIfWritable()
            resumeReadingIfPossible()
            for subscription in subscriptions.values { subscription.resume() }
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Writing

    func send(_ payload: ByteBuffer, streamID: UInt32, method: UInt16, flags: FrameFlags = []) {
        send(Frame(streamID: streamID, method: method, flags: flags, payload: payload))
    }

    /// Writes `frame` (counted as queued until the socket takes it) and flushes soon.
    /// `reserved`: the broker's queued-bytes budget is charged already.
    func send(_ frame: Frame, reserved: Bool = false) {
        guard context != nil, !closed else { return }
        let flags = frame.header.flags
        let streamID = frame.header.streamID
        writeCounted(frame, reserved: reserved)
        if flags.contains(.endStream) || flags.contains(.error) { state.serverClosed(streamID) }
        flushSoon()
    }

    func send(_ message: some SwiftProtobuf.Message, streamID: UInt32, method: UInt16, flags: FrameFlags = []) {
        do {
            send(try message.serializedBuffer(), streamID: streamID, method: method, flags: flags)
        } catch {
            sendError(BrokerError(.unknown, "encoding the response failed: \(error)"), streamID: streamID, method: method)
        }
    }

    func sendError(_ error: BrokerError, streamID: UInt32, method: UInt16) {
        let payload = (try? error.wireValue.serializedBuffer()) ?? ByteBuffer()
        send(payload, streamID: streamID, method: method, flags: [.error, .endStream])
    }

    /// Flushes at the end of the current event-loop tick, so completions in one tick share a write.
    func flushSoon() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { handler.value.flushNow() }
    }

    func flushNow() {
        flushScheduled = false
        if shouldDeferFlush {
            backpressure.flushDeferred = true
        } else {
            context?.flush()
        }
    }

    /// A client that does not read gets this long to take the error frame before the close.
    static let closeLinger = TimeAmount.seconds(5)

    /// Sends `error` on stream 0 and closes the connection once the error is written (or after
    /// ``closeLinger`` if the client does not read it). `log: false` for an error already logged.
    func closeWithError(_ error: BrokerError, log: Bool = true) {
        guard let context, !closed else { return }
        if log {
            broker.logLimiter.log(
                logger, .warning, "closing the connection after a protocol error", metadata: ["error": "\(error)"])
        }
        broker.metrics.requestCompleted(api: "connection", durationNanoseconds: 0, errorCode: error.code.name)
        let payload = (try? error.wireValue.serializedBuffer()) ?? ByteBuffer()
        let frame = Frame(streamID: 0, method: 0, flags: [.error, .endStream], payload: payload)
        tearDown()
        let channel = context.channel
        let linger = context.eventLoop.scheduleTask(in: Self.closeLinger) { channel.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in
            linger.cancel()
            channel.close(promise: nil)
        }
    }

    // MARK: Handshake

    private func handshake(streamID: UInt32, payload: ByteBuffer) {
        let started = NIODeadline.now()
        let request: Fjord_V1_HandshakeRequest
        do { request = try Fjord_V1_HandshakeRequest(checkingWireTypes: payload) } catch {
            closeWithError(BrokerError(.malformedMessage, "the handshake is not a valid HandshakeRequest: \(error)"))
            return
        }
        guard request.protocolVersion >= 1 else {
            closeWithError(
                BrokerError(.unsupportedVersion, "protocol version \(request.protocolVersion) is not supported; this broker speaks version 1"))
            return
        }
        if let authenticationError {
            closeWithError(authenticationError)
            return
        }
        if request.maxFrameBytes > 0 {
            clientMaxFrameBytes = min(Int(request.maxFrameBytes), broker.configuration.maxFrameBytes)
        }
        if !request.clientID.isEmpty { logger[metadataKey: "client.id"] = "\(request.clientID)" }
        clientID = request.clientID
        state.handshakeCompleted()
        handshakeTimer?.cancel()
        handshakeTimer = nil
        var response = Fjord_V1_HandshakeResponse()
        response.protocolVersion = 1
        response.nodeID = broker.configuration.nodeID
        response.clusterID = broker.clusterID
        response.maxFrameBytes = UInt32(broker.configuration.maxFrameBytes)
        response.maxBatchBytes = UInt32(clamping: (try? broker.configuration.logDefaults().maxBatchBytes) ?? 0)
        response.maxInFlightBytes = UInt64(broker.configuration.maxInFlightBytesPerConnection)
        response.principal = authorization.scope.principal.description
        send(response, streamID: streamID, method: Fjord_V1_Method.handshake.id, flags: .endStream)
        record("handshake", since: started, error: nil)
        broker.logLimiter.log(logger, .info, "client connected")
    }

    // MARK: Unary requests

    private func unary(streamID: UInt32, method: Fjord_V1_Method, payload: ByteBuffer) {
        guard !broker.lifecycle.isStopping else {
            sendError(BrokerError(.brokerShuttingDown, "the broker is shutting down; reconnect"), streamID: streamID, method: method.id)
            return
        }
        if method == .fetch {
            startFetch(streamID: streamID, payload: payload)
            return
        }
        let started = NIODeadline.now()
        let admin = AdminRequests(broker: broker, scope: authorization.scope)
        guard let context, let token = state.token(of: streamID) else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.makeFutureWithTask { () async -> Result<ByteBuffer, BrokerError> in
            do throws(BrokerError) {
                return .success(try await admin.handle(method, payload: payload))
            } catch {
                return .failure(error)
            }
        }.whenSuccess { result in
            let handler = handler.value
            guard handler.state.isOpen(streamID, token: token) else { return }
            switch result {
            case .success(let response) where response.readableBytes > handler.clientMaxFrameBytes:
                // The client would reject the frame and drop the connection: fail this call instead.
                let error = BrokerError(
                    .invalidRequest,
                    "the \(method.apiName) response is \(response.readableBytes) bytes, more than the \(handler.clientMaxFrameBytes) this connection accepts (HandshakeRequest.max_frame_bytes); ask for less or raise the limit")
                handler.sendError(error, streamID: streamID, method: method.id)
                handler.record(method.apiName, since: started, error: error)
            case .success(let response):
                handler.send(response, streamID: streamID, method: method.id, flags: .endStream)
                handler.record(method.apiName, since: started, error: nil)
            case .failure(let error):
                handler.logger.debug("request failed", metadata: ["api": "\(method.apiName)", "error": "\(error)"])
                handler.sendError(error, streamID: streamID, method: method.id)
                handler.record(method.apiName, since: started, error: error)
            }
        }
    }

    private func cancel(streamID: UInt32) {
        subscriptions.removeValue(forKey: streamID)?.cancel()
        fetches.removeValue(forKey: streamID)?.cancel()
        produceStreams[streamID] = nil
    }

    func record(_ api: String, since started: NIODeadline, error: BrokerError?) {
        broker.metrics.requestCompleted(
            api: api, durationNanoseconds: (NIODeadline.now() - started).nanoseconds, errorCode: error?.code.name)
    }
}

@available(*, unavailable)
extension ConnectionHandler: Sendable {}

extension Fjord_V1_Method {
    /// The `api` label of metrics and logs.
    var apiName: String {
        switch self {
        case .handshake: "handshake"
        case .getMetadata: "get_metadata"
        case .createTopic: "create_topic"
        case .deleteTopic: "delete_topic"
        case .listTopics: "list_topics"
        case .describeTopic: "describe_topic"
        case .createPartitions: "create_partitions"
        case .alterTopicConfig: "alter_topic_config"
        case .produce: "produce"
        case .fetch: "fetch"
        case .subscribe: "subscribe"
        case .listOffsets: "list_offsets"
        case .initProducerID: "init_producer_id"
        case .createAcls: "create_acls"
        case .listAcls: "list_acls"
        case .deleteAcls: "delete_acls"
        default: "unknown"
        }
    }
}
