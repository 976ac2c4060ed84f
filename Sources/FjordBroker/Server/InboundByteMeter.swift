import NIOCore

/// Counts the bytes a connection receives (after TLS, before the frame decoder), so that
/// ``ConnectionHandler`` knows how many of them the decoder holds as a frame not yet complete:
/// the bytes received minus those of the frames it got.
final class InboundByteMeter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Bytes received since the connection opened.
    private(set) var receivedBytes = 0

    /// Creates a meter at zero.
    init() {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receivedBytes += unwrapInboundIn(data).readableBytes
        context.fireChannelRead(data)
    }
}

@available(*, unavailable)
extension InboundByteMeter: Sendable {}
