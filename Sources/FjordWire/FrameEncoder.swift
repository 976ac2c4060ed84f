public import NIOCore

/// Writes ``Frame``s: the 12-byte header and the payload as two buffers, so the payload (for a
/// fetch, bytes straight from a log segment) is never copied into a combined buffer; both leave
/// in one `writev` on the next flush.
public final class FrameEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Frame
    public typealias OutboundOut = ByteBuffer

    /// Creates an encoder.
    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        var header = context.channel.allocator.buffer(capacity: FrameHeader.size)
        frame.header.write(to: &header)
        context.write(wrapOutboundOut(header), promise: nil)
        context.write(wrapOutboundOut(frame.payload), promise: promise)
    }
}

@available(*, unavailable)
extension FrameEncoder: Sendable {}
