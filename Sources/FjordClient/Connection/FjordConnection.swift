public import FjordProto
import FjordProtocol
public import FjordTLS
public import FjordWire
public import NIOCore
public import NIOPosix
import NIOSSL
public import SwiftProtobuf
import Synchronization

/// One connection to a broker: TLS (or plaintext), the handshake, and multiplexed streams.
///
/// ```swift
/// let connection = try await FjordConnection.connect(
///     host: "localhost", port: 7420, tls: ClientTLSConfiguration(trustRootsPath: "ca.pem"))
/// let topics: Fjord_V1_ListTopicsResponse = try await connection.unary(.listTopics, Fjord_V1_ListTopicsRequest())
/// try await connection.close()
/// ```
public final class FjordConnection: Sendable {
    /// The broker's handshake answer: its limits and ids.
    public let handshake: Fjord_V1_HandshakeResponse
    let channel: any Channel
    let router: StreamRouter

    private init(channel: any Channel, router: StreamRouter, handshake: Fjord_V1_HandshakeResponse) {
        self.channel = channel
        self.router = router
        self.handshake = handshake
    }

    /// Connects, completes TLS and the protocol handshake.
    ///
    /// - Parameter tls: `nil` for a plaintext listener.
    public static func connect(
        host: String, port: Int, tls: ClientTLSConfiguration?, clientID: String = "fjord-swift",
        maxFrameBytes: Int = 16 << 20, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> FjordConnection {
        let sslContext = try tls?.makeContext()
        let router = StreamRouter()
        let tlsErrors = FirstErrorHandler()
        let serverHostname = tls?.handlerServerHostname(connectingTo: host)
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let sslContext {
                        try sync.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
                        try sync.addHandler(tlsErrors)
                    }
                    try sync.addHandler(ByteToMessageHandler(FrameDecoder(maximumPayloadLength: maxFrameBytes)))
                    try sync.addHandler(FrameEncoder())
                    try sync.addHandler(StreamRouterHandler(router: router))
                }
            }
            .connect(host: host, port: port).get()
        var request = Fjord_V1_HandshakeRequest()
        request.protocolVersion = 1
        request.clientID = clientID
        request.maxFrameBytes = UInt32(maxFrameBytes)
        let provisional = FjordConnection(channel: channel, router: router, handshake: Fjord_V1_HandshakeResponse())
        do {
            let response: Fjord_V1_HandshakeResponse = try await provisional.unary(.handshake, request)
            return FjordConnection(channel: channel, router: router, handshake: response)
        } catch {
            try? await channel.close()
            // A failed TLS handshake can surface as a write to a closed channel; report the TLS error.
            throw tlsErrors.first ?? error
        }
    }

    /// Sends one request and waits for its response (or the broker's error).
    public func unary<Response: SwiftProtobuf.Message>(
        _ method: Fjord_V1_Method, _ request: some SwiftProtobuf.Message, as: Response.Type = Response.self
    ) async throws -> Response {
        let stream = openStream(method)
        defer { stream.finish() }
        try await stream.send(request, endOfStream: true)
        guard let frame = try await stream.next() else {
            // The broker may have said why on stream 0 (TOO_MANY_CONNECTIONS, a protocol error).
            throw router.connectionError
                ?? FjordClientError(code: .unknown, message: "the connection closed before the response arrived", isRetriable: true)
        }
        return try Response(buffer: frame.payload)
    }

    /// Opens a stream for `method`; frames the broker sends on it arrive through ``FjordStream/next()``.
    public func openStream(_ method: Fjord_V1_Method) -> FjordStream {
        let (id, frames) = router.open()
        return FjordStream(id: id, method: method, connection: self, frames: frames)
    }

    /// Writes a raw frame (for tests of the protocol itself).
    public func sendFrame(_ frame: Frame) async throws {
        try await channel.writeAndFlush(frame)
    }

    /// Writes several frames with one flush.
    public func sendFrames(_ frames: [Frame]) async throws {
        guard let last = frames.last else { return }
        for frame in frames.dropLast() { channel.write(frame, promise: nil) }
        try await channel.writeAndFlush(last)
    }

    /// The event loop the connection runs on.
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// Returns once the connection is closed.
    public func waitUntilClosed() async throws {
        try await channel.closeFuture.get()
    }

    /// Whether the connection is still open.
    public var isActive: Bool { channel.isActive }

    /// An error the broker sent on stream 0 before closing, if any.
    public var connectionError: FjordClientError? { router.connectionError }

    /// Closes the connection.
    public func close() async throws {
        try await channel.close()
    }
}

/// One stream of a ``FjordConnection``.
public struct FjordStream: Sendable {
    /// The stream id.
    public let id: UInt32
    /// The method of every frame on the stream.
    public let method: Fjord_V1_Method
    let connection: FjordConnection
    let frames: AsyncStream<Frame>
    let iterator: IteratorBox

    init(id: UInt32, method: Fjord_V1_Method, connection: FjordConnection, frames: AsyncStream<Frame>) {
        self.id = id
        self.method = method
        self.connection = connection
        self.frames = frames
        self.iterator = IteratorBox(frames.makeAsyncIterator())
    }

    /// Sends a message on the stream.
    public func send(_ message: some SwiftProtobuf.Message, endOfStream: Bool = false) async throws {
        try await send(try message.serializedBuffer(), endOfStream: endOfStream)
    }

    /// Sends raw payload bytes on the stream.
    public func send(_ payload: ByteBuffer, flags: FrameFlags = []) async throws {
        try await connection.sendFrame(Frame(streamID: id, method: method.id, flags: flags, payload: payload))
    }

    /// Sends raw payload bytes, optionally ending the client's side of the stream.
    public func send(_ payload: ByteBuffer, endOfStream: Bool) async throws {
        try await send(payload, flags: endOfStream ? .endStream : [])
    }

    /// Abandons the stream.
    public func cancel() async throws {
        try await send(ByteBuffer(), flags: .cancel)
        finish()
    }

    /// The next frame the broker sent on this stream; `nil` once the stream ended. A frame with the
    /// ERROR flag is thrown as ``FjordClientError``.
    public func next() async throws -> Frame? {
        guard let frame = await iterator.next() else { return nil }
        if frame.header.flags.contains(.error) {
            finish()
            let error = (try? Fjord_V1_Error(buffer: frame.payload)).map(FjordClientError.init)
            throw error ?? FjordClientError(code: .unknown, message: "an error frame with an unreadable payload")
        }
        if frame.header.flags.contains(.endStream) { finish() }
        return frame
    }

    /// Stops routing frames to this stream.
    public func finish() { connection.router.close(id) }

    final class IteratorBox: @unchecked Sendable {
        // Used by one consumer at a time, as AsyncStream requires.
        var iterator: AsyncStream<Frame>.Iterator
        init(_ iterator: AsyncStream<Frame>.Iterator) { self.iterator = iterator }
        func next() async -> Frame? { await iterator.next() }
    }
}

/// Remembers the first error the pipeline reports (the TLS handler's verdict on a handshake).
final class FirstErrorHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame
    private let error = Mutex<(any Error)?>(nil)
    var first: (any Error)? { error.withLock { $0 } }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.error.withLock { if $0 == nil { $0 = error } }
        context.fireErrorCaught(error)
    }
}

/// Hands incoming frames to the stream they belong to.
final class StreamRouter: Sendable {
    private struct State {
        var nextID: UInt32 = 1
        var streams: [UInt32: AsyncStream<Frame>.Continuation] = [:]
        var connectionError: FjordClientError?
        var closed = false
    }
    private let state = Mutex(State())

    func open() -> (UInt32, AsyncStream<Frame>) {
        let (stream, continuation) = AsyncStream.makeStream(of: Frame.self)
        let id: UInt32 = state.withLock { state in
            let id = state.nextID
            state.nextID &+= 1
            if state.nextID == 0 { state.nextID = 1 }
            if state.closed { continuation.finish() } else { state.streams[id] = continuation }
            return id
        }
        return (id, stream)
    }

    func close(_ id: UInt32) {
        state.withLock { $0.streams.removeValue(forKey: id) }?.finish()
    }

    var connectionError: FjordClientError? { state.withLock { $0.connectionError } }

    func route(_ frame: Frame) {
        if frame.header.streamID == 0 {
            let error = (try? Fjord_V1_Error(buffer: frame.payload)).map(FjordClientError.init)
            state.withLock { $0.connectionError = error }
            return
        }
        let continuation = state.withLock { $0.streams[frame.header.streamID] }
        continuation?.yield(frame)
    }

    func closeAll() {
        let continuations = state.withLock { state in
            state.closed = true
            defer { state.streams.removeAll() }
            return Array(state.streams.values)
        }
        for continuation in continuations { continuation.finish() }
    }
}

final class StreamRouterHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame
    let router: StreamRouter
    init(router: StreamRouter) { self.router = router }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        router.route(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        router.closeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
