public import NIOCore

/// Flags of a frame.
public struct FrameFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The last frame the sender sends on this stream.
    public static let endStream = FrameFlags(rawValue: 0x01)
    /// The payload is an `Error` message; implies the end of the stream.
    public static let error = FrameFlags(rawValue: 0x02)
    /// The sender abandons the stream; the payload is empty.
    public static let cancel = FrameFlags(rawValue: 0x04)

    /// Every flag this version defines; other bits make a frame malformed.
    public static let known: FrameFlags = [.endStream, .error, .cancel]
}

/// The fixed 12-byte header in front of every frame's payload. Integers are big-endian.
///
/// ```
/// byte 0-3   payload length (bytes after the header)
/// byte 4-7   stream id (0 is the connection itself)
/// byte 8-9   method id
/// byte 10    flags (FrameFlags)
/// byte 11    reserved, 0
/// ```
public struct FrameHeader: Sendable, Hashable {
    /// Size of the header in bytes.
    public static let size = 12

    /// Bytes of payload after the header.
    public var payloadLength: UInt32
    /// The stream the frame belongs to.
    public var streamID: UInt32
    /// The RPC method, from the method table in `docs/protocol.md`.
    public var method: UInt16
    /// End of stream, error, cancel.
    public var flags: FrameFlags

    /// Creates a header.
    public init(payloadLength: UInt32, streamID: UInt32, method: UInt16, flags: FrameFlags = []) {
        self.payloadLength = payloadLength
        self.streamID = streamID
        self.method = method
        self.flags = flags
    }

    /// Appends the 12 header bytes to `buffer`.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(payloadLength, streamID, method, flags.rawValue, UInt8(0))
    }
}

/// A part of the payload of a frame to send, after its first part.
public enum FramePayloadPart: Sendable {
    /// Bytes in memory (for a fetch response, a view of a log segment's memory map).
    case buffer(ByteBuffer)
    /// A range of a file, sent with `sendfile`: only on a channel without TLS (TLS must encrypt
    /// from memory). `keepAlive` owns the region's file handle and closes it once released, which
    /// the encoder does after the write completes or fails.
    case file(FileRegion, keepAlive: any AnyObject & Sendable)

    /// Number of payload bytes.
    public var readableBytes: Int {
        switch self {
        case .buffer(let buffer): buffer.readableBytes
        case .file(let region, _): region.readableBytes
        }
    }
}

extension FramePayloadPart: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.buffer(let a), .buffer(let b)): a == b
        case (.file(let a, _), .file(let b, _)): a == b
        default: false
        }
    }
}

/// One frame: a header and its payload (one protobuf message, or nothing).
public struct Frame: Sendable, Equatable {
    /// Stream, method and flags; `payloadLength` always equals the bytes of `payload` and
    /// `payloadContinuation` together.
    public var header: FrameHeader
    /// The payload, a slice of the bytes received (no copy); for a frame to send, its first part.
    public var payload: ByteBuffer
    /// Further parts of the payload of a frame to send, written after `payload` as they are,
    /// never joined into one buffer: a fetch response's batches are views of a log segment's
    /// memory map (or, without TLS, file regions sent with `sendfile`), so that the write or TLS
    /// encryption is their only copy. Always empty in a received frame.
    public var payloadContinuation: [FramePayloadPart]

    /// Creates a frame, setting the header's length from the payload.
    public init(streamID: UInt32, method: UInt16, flags: FrameFlags = [], payload: ByteBuffer) {
        self.header = FrameHeader(
            payloadLength: UInt32(payload.readableBytes), streamID: streamID, method: method, flags: flags)
        self.payload = payload
        self.payloadContinuation = []
    }

    /// Creates a frame to send whose payload is `payload` followed by `continuation`, setting the
    /// header's length from their sum.
    ///
    /// ```swift
    /// // A SubscribeResponse: its fields, then the stored batches as mapped from the segment.
    /// let frame = Frame(streamID: 3, method: 22, payload: fields, continuation: [.buffer(batches)])
    /// ```
    public init(
        streamID: UInt32, method: UInt16, flags: FrameFlags = [], payload: ByteBuffer, continuation: [FramePayloadPart]
    ) {
        let length = continuation.reduce(payload.readableBytes) { $0 + $1.readableBytes }
        self.header = FrameHeader(payloadLength: UInt32(length), streamID: streamID, method: method, flags: flags)
        self.payload = payload
        self.payloadContinuation = continuation
    }
}
