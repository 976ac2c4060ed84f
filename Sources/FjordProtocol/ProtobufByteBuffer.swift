public import NIOCore
public import SwiftProtobuf

/// Lets SwiftProtobuf parse straight from a `ByteBuffer`'s memory, without copying it into `Data`
/// or an array first.
struct ByteBufferBytes: SwiftProtobufContiguousBytes {
    var buffer: ByteBuffer

    init(_ buffer: ByteBuffer) { self.buffer = buffer }
    init(repeating: UInt8, count: Int) { self.buffer = ByteBuffer(repeating: repeating, count: count) }
    init<S: Sequence>(_ sequence: S) where S.Element == UInt8 { self.buffer = ByteBuffer(bytes: sequence) }

    var count: Int { buffer.readableBytes }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes(body)
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeMutableReadableBytes(body)
    }
}

extension SwiftProtobuf.Message {
    /// Decodes the message from the readable bytes of `buffer` (no intermediate copy).
    ///
    /// ```swift
    /// let request = try Fjord_V1_CreateTopicRequest(buffer: frame.payload)
    /// ```
    public init(buffer: ByteBuffer) throws {
        try self.init(serializedBytes: ByteBufferBytes(buffer))
    }

    /// Serializes the message into a new buffer.
    public func serializedBuffer() throws -> ByteBuffer {
        let bytes: ByteBufferBytes = try serializedBytes()
        return bytes.buffer
    }
}
