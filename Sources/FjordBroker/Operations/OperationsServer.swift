public import Logging
public import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The health of the broker as reported by `GET /health` on the ``OperationsServer``.
public struct HealthStatus: Sendable, Equatable {
    /// `true` while the broker serves traffic (`200 {"status":"ok"}`); `false` while it is shutting
    /// down or otherwise unavailable (`503 {"status":"shutting_down"}`).
    public var isHealthy: Bool

    /// Extra string fields added to the JSON body, for example `["broker_id": "1"]`.
    /// A `status` key here is ignored; the status field is always derived from ``isHealthy``.
    public var details: [String: String]

    /// Creates a health status.
    ///
    /// - Parameters:
    ///   - isHealthy: whether the broker is serving traffic.
    ///   - details: extra string fields for the JSON body.
    public init(isHealthy: Bool, details: [String: String] = [:]) {
        self.isHealthy = isHealthy
        self.details = details
    }
}

/// An error thrown by ``OperationsServer/start()``.
public struct OperationsServerError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case alreadyStarted
        case stopped
    }

    private let code: Code

    /// ``OperationsServer/start()`` was called more than once.
    public static let alreadyStarted = OperationsServerError(code: .alreadyStarted)

    /// ``OperationsServer/stop()`` was called before or while ``OperationsServer/start()`` ran.
    public static let stopped = OperationsServerError(code: .stopped)

    /// A human-readable description of the error.
    public var description: String {
        switch self.code {
        case .alreadyStarted: "the operations server was already started"
        case .stopped: "the operations server was stopped"
        }
    }
}

/// A small HTTP/1.1 server for operators: Prometheus metrics and a health check.
///
/// Endpoints:
/// - `GET /metrics`: `200`, `Content-Type: text/plain; version=0.0.4; charset=utf-8`, the output of
///   ``BrokerMetrics/render()``.
/// - `GET /health`: `200 {"status":"ok",…}` when the health closure reports healthy, otherwise
///   `503 {"status":"shutting_down",…}`; the status's `details` are added as string fields.
/// - `HEAD` on either path: the same status and headers without a body.
/// - Any other path: `404`. Any other method on a known path: `405` with `Allow: GET, HEAD`.
///
/// Request bodies are discarded without being buffered, connections idle for ``idleTimeout`` are
/// closed, and NIOHTTP1's default header-size limits apply (oversized or malformed requests get `400`).
/// Keep-alive and pipelining are supported, one request at a time: the server reads no more from a
/// connection until its response is written to the socket, so a client that pipelines requests
/// without reading the responses costs one response of memory. All work happens on the event loop; the health closure is
/// called there too, so it must be cheap and must not block.
public final class OperationsServer: Sendable {
    /// How long a connection may be without any read or write before the server closes it.
    public static let idleTimeout: TimeAmount = .seconds(30)

    private enum Lifecycle {
        case idle
        case starting
        case running(any Channel)
        case stopped
    }

    private struct State {
        var lifecycle: Lifecycle = .idle
        var connections: [ObjectIdentifier: any Channel] = [:]
        var localAddress: SocketAddress?
    }

    private let host: String
    private let requestedPort: Int
    private let metrics: BrokerMetrics
    private let health: @Sendable () -> HealthStatus
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State())

    /// Creates a server; nothing is bound until ``start()``.
    ///
    /// - Parameters:
    ///   - host: the address to bind, e.g. `"0.0.0.0"` or `"127.0.0.1"`.
    ///   - port: the TCP port to bind; `0` picks a free port (read it from ``port`` after ``start()``).
    ///   - metrics: the metrics served on `/metrics`.
    ///   - health: called on an event loop for every `/health` request; must be cheap and non-blocking.
    ///   - group: the event loop group the listening socket and connections run on.
    ///   - logger: receives lifecycle and connection-error messages.
    public init(
        host: String,
        port: Int,
        metrics: BrokerMetrics,
        health: @escaping @Sendable () -> HealthStatus,
        group: any EventLoopGroup,
        logger: Logger
    ) {
        self.host = host
        self.requestedPort = port
        self.metrics = metrics
        self.health = health
        self.group = group
        self.logger = logger
    }

    /// The address the server is bound to, or `nil` before ``start()`` returned or after ``stop()``.
    public var localAddress: SocketAddress? {
        self.state.withLock { $0.localAddress }
    }

    /// The TCP port the server is bound to, or `nil` before ``start()`` returned or after ``stop()``.
    public var port: Int? {
        self.localAddress?.port
    }

    /// Binds the listening socket and starts accepting connections.
    ///
    /// - Throws: ``OperationsServerError/alreadyStarted`` on a second call,
    ///   ``OperationsServerError/stopped`` if ``stop()`` was called first, or the bind error.
    public func start() async throws {
        try self.state.withLock { state in
            switch state.lifecycle {
            case .idle:
                state.lifecycle = .starting
            case .starting, .running:
                throw OperationsServerError.alreadyStarted
            case .stopped:
                throw OperationsServerError.stopped
            }
        }

        let metrics = self.metrics
        let health = self.health
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [weak self] channel in
                guard let self, self.track(channel) else {
                    return channel.eventLoop.makeFailedFuture(OperationsServerError.stopped)
                }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(IdleStateHandler(allTimeout: Self.idleTimeout))
                    try sync.addHandler(
                        OperationsHTTPHandler(metrics: metrics, health: health, logger: logger))
                }
            }

        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: self.host, port: self.requestedPort).get()
        } catch {
            self.state.withLock { state in
                if case .starting = state.lifecycle { state.lifecycle = .idle }
            }
            throw error
        }

        let stoppedMeanwhile = self.state.withLock { state -> Bool in
            guard case .starting = state.lifecycle else { return true }
            state.lifecycle = .running(channel)
            state.localAddress = channel.localAddress
            return false
        }
        if stoppedMeanwhile {
            try? await channel.close()
            throw OperationsServerError.stopped
        }
        self.logger.info(
            "operations server listening",
            metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
    }

    /// Stops accepting connections, closes the listening socket and all open connections, and waits
    /// until they are closed. Calling it again, or before ``start()``, is harmless.
    public func stop() async throws {
        let (listener, connections) = self.state.withLock { state -> ((any Channel)?, [any Channel]) in
            var listener: (any Channel)?
            if case .running(let channel) = state.lifecycle { listener = channel }
            state.lifecycle = .stopped
            state.localAddress = nil
            let connections = Array(state.connections.values)
            state.connections.removeAll()
            return (listener, connections)
        }
        if let listener {
            do {
                try await listener.close()
            } catch ChannelError.alreadyClosed {
                // Already gone; nothing to do.
            }
        }
        for connection in connections {
            connection.close(promise: nil)
        }
        for connection in connections {
            try? await connection.closeFuture.get()
        }
        if listener != nil {
            self.logger.info("operations server stopped")
        }
    }

    /// Registers an accepted connection so ``stop()`` can close it; returns `false` once stopped.
    private func track(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let accepted = self.state.withLock { state -> Bool in
            guard case .running = state.lifecycle else { return false }
            state.connections[id] = channel
            return true
        }
        if accepted {
            channel.closeFuture.whenComplete { [weak self] _ in
                _ = self?.state.withLock { $0.connections.removeValue(forKey: id) }
            }
        }
        return accepted
    }
}

/// Serves one HTTP connection of the ``OperationsServer``. Runs behind `configureHTTPServerPipeline`,
/// which serialises pipelined requests. One request at a time: requests already read wait here in
/// order, and the socket is not read again until every response is written to it (not merely
/// queued), so a client that pipelines without reading holds one response of memory.
final class OperationsHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    private let metrics: BrokerMetrics
    private let health: @Sendable () -> HealthStatus
    private let logger: Logger
    private var requestHead: HTTPRequestHead?
    /// Requests read whose turn has not come, oldest first.
    private var waiting = CircularBuffer<HTTPRequestHead>()
    /// A response is being written.
    private var responding = false
    /// A `read` was held back while responding.
    private var readPending = false

    init(metrics: BrokerMetrics, health: @escaping @Sendable () -> HealthStatus, logger: Logger) {
        self.metrics = metrics
        self.health = health
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.requestHead = head
        case .body:
            // Request bodies are irrelevant to every endpoint: drop them without buffering.
            break
        case .end:
            guard let head = self.requestHead else { return }
            self.requestHead = nil
            self.waiting.append(head)
            self.respondToNext(context: context)
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.responding || !self.waiting.isEmpty {
            self.readPending = true
        } else {
            context.read()
        }
    }

    /// Answers the oldest waiting request unless a response is being written; once it is
    /// written, the next; then resumes reading.
    private func respondToNext(context: ChannelHandlerContext) {
        guard !self.responding else { return }
        guard let head = self.waiting.popFirst() else {
            if self.readPending {
                self.readPending = false
                context.read()
            }
            return
        }
        self.responding = true
        let written = context.eventLoop.makePromise(of: Void.self)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        written.futureResult.whenComplete { result in
            let handler = handler.value
            handler.responding = false
            guard case .success = result else { return }
            handler.respondToNext(context: loopContext.value)
        }
        self.respond(to: head, context: context, written: written)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            self.logger.debug("closing idle operations connection")
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("operations connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext, written: EventLoopPromise<Void>) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first
            .map(String.init) ?? head.uri
        let isGetLike = head.method == .GET || head.method == .HEAD

        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        var body = context.channel.allocator.buffer(capacity: 0)

        switch path {
        case "/metrics" where isGetLike:
            status = .ok
            headers.add(name: "Content-Type", value: Self.metricsContentType)
            // Rendered for HEAD too, so Content-Length matches what GET would send.
            body.writeBytes(self.metrics.renderBytes())
        case "/health" where isGetLike:
            let current = self.health()
            status = current.isHealthy ? .ok : .serviceUnavailable
            headers.add(name: "Content-Type", value: "application/json")
            body.writeString(Self.healthJSON(current))
        case "/metrics", "/health":
            status = .methodNotAllowed
            headers.add(name: "Allow", value: "GET, HEAD")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            body.writeString("method not allowed\n")
        default:
            status = .notFound
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            body.writeString("not found\n")
        }

        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Cache-Control", value: "no-store")
        let keepAlive = head.isKeepAlive
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        } else if head.version.major == 1 && head.version.minor == 0 {
            headers.add(name: "Connection", value: "keep-alive")
        }

        let responseHead = HTTPResponseHead(version: head.version, status: status, headers: headers)
        context.write(self.wrapOutboundOut(.head(responseHead)), promise: nil)
        if head.method != .HEAD && body.readableBytes > 0 {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        if !keepAlive {
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: written)
    }

    /// `{"status":"ok","k":"v",…}` with the details' keys sorted; `status` in details is ignored.
    static func healthJSON(_ status: HealthStatus) -> String {
        var json = "{\"status\":"
        json += status.isHealthy ? "\"ok\"" : "\"shutting_down\""
        for key in status.details.keys.sorted() where key != "status" {
            json += ","
            appendJSONString(key, to: &json)
            json += ":"
            appendJSONString(status.details[key] ?? "", to: &json)
        }
        json += "}\n"
        return json
    }

    private static func appendJSONString(_ value: String, to json: inout String) {
        json += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "\n": json += "\\n"
            case "\r": json += "\\r"
            case "\t": json += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                json += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                json.unicodeScalars.append(scalar)
            }
        }
        json += "\""
    }
}
