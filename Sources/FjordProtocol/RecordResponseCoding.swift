public import FjordProto
public import NIOCore
import SwiftProtobuf

/// Writes the messages that carry stored record batches (`FetchResponse`, `SubscribeResponse`)
/// by hand, up to the batch bytes, which the caller sends after them as they are stored (a view
/// of the segment map or a file region: see `Frame.payloadContinuation`).
public enum RecordResponseWriter {
    /// The fields of one `FetchPartitionResult` other than its records.
    public struct PartitionHeader: Sendable {
        public var topic: String
        public var partition: UInt32
        public var error: Fjord_V1_Error?
        public var highWatermark: Int64
        public var logStartOffset: Int64

        /// Creates a header.
        public init(topic: String, partition: UInt32, error: Fjord_V1_Error? = nil, highWatermark: Int64, logStartOffset: Int64) {
            self.topic = topic
            self.partition = partition
            self.error = error
            self.highWatermark = highWatermark
            self.logStartOffset = logStartOffset
        }
    }

    /// Appends one `FetchResponse.partitions` entry up to its records: every field, and when
    /// `recordsLength` is positive the tag and length of `records` last. The `recordsLength` bytes
    /// of framed batches that must follow in the message are the caller's to send (as a separate
    /// buffer of the frame, see `Frame.init(streamID:method:flags:payloadParts:)`).
    public static func writeFetchPartitionFields(_ header: PartitionHeader, recordsLength: Int, to buffer: inout ByteBuffer) {
        let errorBytes: [UInt8]? = header.error.flatMap { try? $0.serializedBytes() }
        var inner = ProtobufSize.stringField(1, header.topic) + ProtobufSize.varintField(2, UInt64(header.partition))
        if let errorBytes { inner += ProtobufSize.lengthDelimitedField(3, length: errorBytes.count) }
        inner += ProtobufSize.varintField(4, UInt64(bitPattern: header.highWatermark))
        inner += ProtobufSize.varintField(5, UInt64(bitPattern: header.logStartOffset))
        if recordsLength > 0 { inner += ProtobufSize.lengthDelimitedField(6, length: recordsLength) }
        buffer.writeProtobufLengthPrefix(1, length: inner)
        buffer.writeProtobufStringField(1, header.topic)
        buffer.writeProtobufVarintField(2, UInt64(header.partition))
        if let errorBytes {
            buffer.writeProtobufLengthPrefix(3, length: errorBytes.count)
            buffer.writeBytes(errorBytes)
        }
        buffer.writeProtobufInt64Field(4, header.highWatermark)
        buffer.writeProtobufInt64Field(5, header.logStartOffset)
        if recordsLength > 0 { buffer.writeProtobufLengthPrefix(6, length: recordsLength) }
    }

    /// Bytes `writeFetchPartitionFields` adds besides the records, at most (for sizing requests).
    public static func fetchPartitionOverhead(topic: String) -> Int { topic.utf8.count + 128 }

    /// Writes a `SubscribeResponse` up to its records: the offsets first, then, when
    /// `recordsLength` is positive, the tag and length of `records`, whose bytes the caller sends
    /// next (protobuf fields may come in any order).
    public static func writeSubscribeResponseFields(
        highWatermark: Int64, logStartOffset: Int64, recordsLength: Int, to buffer: inout ByteBuffer
    ) {
        buffer.writeProtobufInt64Field(2, highWatermark)
        buffer.writeProtobufInt64Field(3, logStartOffset)
        if recordsLength > 0 { buffer.writeProtobufLengthPrefix(1, length: recordsLength) }
    }
}

extension Fjord_V1_Method {
    /// The method id as carried in a frame header.
    public var id: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    /// The method for a frame's method id (`.UNRECOGNIZED` for an id outside the table).
    public init(id: UInt16) { self = Fjord_V1_Method(rawValue: Int(id)) ?? .UNRECOGNIZED(Int(id)) }
}
