public import NIOCore

/// Splits a byte stream into ``Frame``s.
///
/// Checks each header as soon as its 12 bytes arrive: a payload length over
/// ``maximumPayloadLength`` is rejected before any of the payload is buffered, so a hostile length
/// costs no memory. Below the maximum, the decoder still never reserves room for the announced
/// payload: a partial frame holds only the bytes received so far, so a header followed by a
/// trickle costs what the trickle delivered (the broker also times the rest out, and caps partial
/// frames broker-wide). Payloads are slices of the received bytes, not copies.
///
/// ```swift
/// try channel.pipeline.syncOperations.addHandler(
///     ByteToMessageHandler(FrameDecoder(maximumPayloadLength: 8 << 20)))
/// ```
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Frame

    /// The largest payload accepted.
    public let maximumPayloadLength: Int

    /// Creates a decoder accepting payloads up to `maximumPayloadLength` bytes.
    public init(maximumPayloadLength: Int) {
        self.maximumPayloadLength = maximumPayloadLength
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
        guard
            let (length, streamID, method, flagBits, reserved) = buffer.getMultipleIntegers(
                at: buffer.readerIndex, as: (UInt32, UInt32, UInt16, UInt8, UInt8).self)
        else { return nil }
        guard Int(length) <= maximumPayloadLength else {
            throw FrameError(
                code: .oversizeFrame,
                message: "frame payload of \(length) bytes exceeds the maximum of \(maximumPayloadLength)")
        }
        let flags = FrameFlags(rawValue: flagBits)
        guard FrameFlags.known.isSuperset(of: flags), reserved == 0 else {
            throw FrameError(
                code: .malformedHeader, message: "unknown flags 0x\(String(flagBits, radix: 16)) or reserved byte \(reserved)")
        }
        guard buffer.readableBytes >= FrameHeader.size + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: FrameHeader.size)
        let payload = buffer.readSlice(length: Int(length))!
        return Frame(streamID: streamID, method: method, flags: flags, payload: payload)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        if let frame = try decode(buffer: &buffer) { return frame }
        if seenEOF && buffer.readableBytes > 0 {
            throw FrameError(
                code: .truncatedFrame, message: "the connection ended \(buffer.readableBytes) bytes into a frame")
        }
        return nil
    }
}
