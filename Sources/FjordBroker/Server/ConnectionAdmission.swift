import FjordProto
import Logging
import NIOCore
import NIOTLS
import Synchronization

/// The broker's connection slots (``ConnectionSlotsStateMachine``) with the channels they stand
/// for: decides at accept and when TLS is up who is served, and closes whom the state machine
/// says to.
final class ConnectionAdmission: Sendable {
    private struct State {
        var slots: ConnectionSlotsStateMachine<ObjectIdentifier>
        var channels: [ObjectIdentifier: any Channel] = [:]
    }

    private let state: Mutex<State>
    private let metrics: BrokerMetrics
    private let logger: Logger
    private let logLimiter: LogRateLimiter
    private let limits: ConnectionSlotsStateMachine<ObjectIdentifier>.Limits

    /// Creates the slots for `configuration`'s limits.
    init(configuration: BrokerConfiguration, metrics: BrokerMetrics, logger: Logger, logLimiter: LogRateLimiter) {
        let limits = ConnectionSlotsStateMachine<ObjectIdentifier>.Limits(
            maxConnections: configuration.maxConnections, maxPerAddress: configuration.maxConnectionsPerAddress,
            maxHandshaking: configuration.maxHandshakingConnections)
        self.limits = limits
        self.state = Mutex(State(slots: ConnectionSlotsStateMachine(limits: limits)))
        self.metrics = metrics
        self.logger = logger
        self.logLimiter = logLimiter
    }

    /// The error a connection past a limit is answered with.
    func error(for refusal: ConnectionSlotsStateMachine<ObjectIdentifier>.Refusal) -> BrokerError {
        switch refusal {
        case .maxConnections:
            BrokerError(
                .tooManyConnections,
                "the broker has \(limits.maxConnections) connections open (max.connections); retry later or elsewhere")
        case .maxPerAddress:
            BrokerError(
                .tooManyConnections,
                "this address has \(limits.maxPerAddress) connections open (max.connections.per.address); close some or retry later")
        }
    }

    /// A connection was accepted; `handshakes` when it has a TLS handshake to do first.
    func accept(_ channel: any Channel, handshakes: Bool) -> ConnectionSlotsStateMachine<ObjectIdentifier>.Accept {
        let id = ObjectIdentifier(channel)
        let address = Self.address(of: channel)
        let (accept, evicted) = state.withLock { state -> (ConnectionSlotsStateMachine<ObjectIdentifier>.Accept, (any Channel)?) in
            let accept = state.slots.accepted(id, address: address, handshakes: handshakes)
            var evicted: (any Channel)?
            if case .handshaking(let evict?) = accept { evicted = state.channels.removeValue(forKey: evict) }
            if accept != .refused { state.channels[id] = channel }
            return (accept, evicted)
        }
        if let evicted {
            metrics.connectionRejected()
            logLimiter.log(
                logger, .info, "connection closed: still in its TLS handshake when the handshaking pool was full",
                metadata: [
                    "max.handshaking.connections": "\(limits.maxHandshaking)",
                    "connection.remote": "\(evicted.remoteAddress.map { "\($0)" } ?? "?")",
                ])
            evicted.close(promise: nil)
        }
        switch accept {
        case .refused:
            refused(channel, told: false, refusal: nil)
            return accept
        case .overLimit(let refusal):
            refused(channel, told: true, refusal: refusal)
        case .served:
            metrics.connectionOpened()
        case .handshaking:
            break
        }
        channel.closeFuture.whenComplete { [self] _ in closed(id) }
        return accept
    }

    /// The TLS handshake of `channel` completed.
    func established(_ channel: any Channel) -> ConnectionSlotsStateMachine<ObjectIdentifier>.Established {
        let id = ObjectIdentifier(channel)
        let established = state.withLock { state in
            let established = state.slots.established(id)
            if established == .refused {
                state.channels[id] = nil
            } else {
                state.channels[id] = channel
            }
            return established
        }
        switch established {
        case .served: metrics.connectionOpened()
        case .overLimit(let refusal): refused(channel, told: true, refusal: refusal)
        case .refused: refused(channel, told: false, refusal: nil)
        }
        return established
    }

    /// `channel` sent its first bytes (its TLS hello).
    func spoke(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLock { $0.slots.spoke(id) }
    }

    /// Refuses later connections and returns every open one, to close.
    func stop() -> [any Channel] {
        state.withLock { state in
            state.slots.stop()
            return Array(state.channels.values)
        }
    }

    /// Served connections, connections in their TLS handshake, and connections being told to go.
    var counts: (served: Int, handshaking: Int, overLimit: Int) {
        state.withLock { ($0.slots.servedCount, $0.slots.handshakingCount, $0.slots.overLimitCount) }
    }

    private func closed(_ id: ObjectIdentifier) {
        let wasServed = state.withLock { state in
            state.channels[id] = nil
            return state.slots.closed(id)
        }
        if wasServed { metrics.connectionClosed() }
    }

    private func refused(
        _ channel: any Channel, told: Bool, refusal: ConnectionSlotsStateMachine<ObjectIdentifier>.Refusal?
    ) {
        metrics.connectionRejected()
        logLimiter.log(
            logger, .warning, "connection refused: a connection limit is reached",
            metadata: [
                "limit": "\(refusal.map { $0 == .maxConnections ? "max.connections" : "max.connections.per.address" } ?? "over-limit allowance")",
                "connection.remote": "\(channel.remoteAddress.map { "\($0)" } ?? "?")", "connection.told": "\(told)",
            ])
    }

    /// The IP address a per-address limit counts by (the port left out).
    static func address(of channel: any Channel) -> String {
        guard let remote = channel.remoteAddress else { return "?" }
        return remote.ipAddress ?? "\(remote)"
    }
}

/// Told by ``ConnectionGuardHandler`` to the ``ConnectionHandler`` after it.
enum ConnectionAdmissionEvent: Sendable {
    /// The connection is past a limit: its `Handshake` is answered with this error.
    case rejected(BrokerError)
    /// Nothing was read or written for `connections.max.idle.ms` (`milliseconds`).
    case idle(milliseconds: Int)
}

/// The first handler after TLS: moves the connection from the handshaking pool to a served slot
/// once TLS is up, and watches for idleness (no byte read or written for
/// `connections.max.idle.ms`), which it tells the ``ConnectionHandler`` (that closes the
/// connection unless a stream is open).
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let admission: ConnectionAdmission
    private let idleTimeout: TimeAmount?
    private var lastActivity = NIODeadline.now()
    private var idleTimer: Scheduled<Void>?

    /// Creates the guard; `idleMilliseconds` 0 never reports idleness.
    init(admission: ConnectionAdmission, idleMilliseconds: Int) {
        self.admission = admission
        self.idleTimeout = idleMilliseconds > 0 ? .milliseconds(Int64(idleMilliseconds)) : nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        lastActivity = .now()
        scheduleIdleCheck(context: context, at: lastActivity + (idleTimeout ?? .zero))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActivity = .now()
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        lastActivity = .now()
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshakeCompleted = event as? TLSUserEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch admission.established(context.channel) {
        case .served:
            context.fireUserInboundEventTriggered(event)
        case .overLimit(let refusal):
            context.fireUserInboundEventTriggered(event)
            context.fireUserInboundEventTriggered(ConnectionAdmissionEvent.rejected(admission.error(for: refusal)))
        case .refused:
            context.close(promise: nil)
        }
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext, at deadline: NIODeadline) {
        guard idleTimeout != nil else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(deadline: deadline) { handler.value.checkIdle(context: bound.value) }
    }

    private func checkIdle(context: ChannelHandlerContext) {
        guard let idleTimeout, context.channel.isActive else { return }
        let idleSince = lastActivity
        if NIODeadline.now() - idleSince >= idleTimeout {
            context.fireUserInboundEventTriggered(
                ConnectionAdmissionEvent.idle(milliseconds: Int(idleTimeout.nanoseconds / 1_000_000)))
            scheduleIdleCheck(context: context, at: .now() + idleTimeout)
        } else {
            scheduleIdleCheck(context: context, at: idleSince + idleTimeout)
        }
    }
}

@available(*, unavailable)
extension ConnectionGuardHandler: Sendable {}

/// Sits before TLS and tells ``ConnectionAdmission`` when a connection sends its first bytes, then
/// leaves the pipeline: a connection that speaks is evicted from the handshaking pool only after
/// every silent one.
final class FirstBytesHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let admission: ConnectionAdmission

    /// Creates the handler for one connection.
    init(admission: ConnectionAdmission) {
        self.admission = admission
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        admission.spoke(context.channel)
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

@available(*, unavailable)
extension FirstBytesHandler: Sendable {}

extension ConnectionHandler {
    /// Acts on what the ``ConnectionGuardHandler`` tells.
    func admissionEventTriggered(_ event: ConnectionAdmissionEvent) {
        switch event {
        case .rejected(let error):
            rejection = error
        case .idle(let milliseconds):
            // A connection with a stream open (a subscription waiting for appends, a long poll,
            // a produce stream) is in use even when quiet; before the handshake its timer rules.
            guard state.phase == .ready, state.streams.isEmpty, produceStreams.isEmpty, subscriptions.isEmpty,
                fetches.isEmpty
            else { return }
            broker.logLimiter.log(
                logger, .info, "closing an idle connection", metadata: ["connections.max.idle.ms": "\(milliseconds)"])
            closeWithError(
                BrokerError(
                    .requestTimedOut,
                    "the connection was idle for \(milliseconds) ms with no open stream (connections.max.idle.ms); reconnect when needed"),
                log: false)
        }
    }
}
