public import NIOCore

/// Writes ``Frame``s: the 12-byte header, then the payload parts as they are, so the batches of a
/// fetch response (views of a log segment's memory map) are never copied into a combined buffer;
/// all leave in one `writev` (or one run of TLS records) on the next flush. A small first part is
/// copied behind the header instead, which saves a TLS record per frame.
public final class FrameEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Frame
    public typealias OutboundOut = ByteBuffer

    /// First parts up to this size travel in the header's buffer.
    static let coalesceLimit = 512

    /// Creates an encoder.
    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        let small = frame.payload.readableBytes <= Self.coalesceLimit
        var header = context.channel.allocator.buffer(
            capacity: FrameHeader.size + (small ? frame.payload.readableBytes : 0))
        frame.header.write(to: &header)
        // Every buffer but the last is written without a promise; the frame's goes with the last.
        var pending: ByteBuffer
        if small {
            var payload = frame.payload
            header.writeBuffer(&payload)
            pending = header
        } else {
            context.write(wrapOutboundOut(header), promise: nil)
            pending = frame.payload
        }
        for part in frame.payloadContinuation {
            context.write(wrapOutboundOut(pending), promise: nil)
            pending = part
        }
        context.write(wrapOutboundOut(pending), promise: promise)
    }
}

@available(*, unavailable)
extension FrameEncoder: Sendable {}
