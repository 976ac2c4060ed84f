public import NIOCore

/// Writes ``Frame``s: the 12-byte header, then the payload parts as they are, so the batches of a
/// fetch response (views of a log segment's memory map, or file regions) are never copied into a
/// combined buffer; all leave in one `writev` (or one run of TLS records) on the next flush, file
/// regions with `sendfile`. A small first part is copied behind the header instead, which saves a
/// TLS record per frame.
public final class FrameEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Frame
    public typealias OutboundOut = IOData

    /// First parts up to this size travel in the header's buffer.
    static let coalesceLimit = 512

    private let allowsFileRegions: Bool

    /// Creates an encoder. Pass `allowsFileRegions: true` only on a channel without TLS: a frame
    /// with a file part on any other channel fails (and the channel is closed, as the frame's
    /// header is already written).
    public init(allowsFileRegions: Bool = false) {
        self.allowsFileRegions = allowsFileRegions
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        let small = frame.payload.readableBytes <= Self.coalesceLimit
        var header = context.channel.allocator.buffer(
            capacity: FrameHeader.size + (small ? frame.payload.readableBytes : 0))
        frame.header.write(to: &header)
        // Every part but the last is written without the frame's promise; it goes with the last.
        var pending: FramePayloadPart
        if small {
            var payload = frame.payload
            header.writeBuffer(&payload)
            pending = .buffer(header)
        } else {
            context.write(wrapOutboundOut(.byteBuffer(header)), promise: nil)
            pending = .buffer(frame.payload)
        }
        for part in frame.payloadContinuation {
            guard write(pending, context: context, promise: nil) else {
                promise?.fail(FrameError.fileRegionOnEncryptedChannel)
                return
            }
            pending = part
        }
        if !write(pending, context: context, promise: promise) {
            promise?.fail(FrameError.fileRegionOnEncryptedChannel)
        }
    }

    private func write(_ part: FramePayloadPart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) -> Bool {
        switch part {
        case .buffer(let buffer):
            context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
            return true
        case .file(let region, let keepAlive):
            guard allowsFileRegions else {
                // The header is out already: the stream of frames cannot continue.
                context.close(promise: nil)
                return false
            }
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in withExtendedLifetime(keepAlive) {} }
            if let promise { written.futureResult.cascade(to: promise) }
            context.write(wrapOutboundOut(.fileRegion(region)), promise: written)
            return true
        }
    }
}

@available(*, unavailable)
extension FrameEncoder: Sendable {}
