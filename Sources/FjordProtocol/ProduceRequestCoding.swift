public import FjordProto
public import NIOCore
import FjordRecords

/// A `ProduceRequest` (log.proto) read without copying its batch: ``batch`` is a slice of the
/// frame's bytes, handed to the log as-is.
public struct ProduceRequestView: Sendable {
    /// Field 1.
    public var topic: String
    /// Field 2.
    public var partition: UInt32
    /// Field 3; -1 skips the leader-epoch check. Proto3 default 0 when absent.
    public var leaderEpoch: Int32
    /// Field 4.
    public var acks: Fjord_V1_Acks
    /// Field 5.
    public var requestID: UInt64
    /// Field 6: one serialized `RecordBatch`, a slice of the frame (no copy).
    public var batch: ByteBuffer

    /// Parses the readable bytes of `buffer` as a `ProduceRequest`, skipping unknown fields.
    ///
    /// Returns `nil` when the bytes are not a well-formed `ProduceRequest`.
    public init?(parsing buffer: ByteBuffer) {
        var topic = ""
        var partition: UInt32 = 0
        var leaderEpoch: Int32 = 0
        var acks = Fjord_V1_Acks.unspecified
        var requestID: UInt64 = 0
        var batchRange: Range<Int> = 0..<0
        let ok: Bool = buffer.withUnsafeReadableBytes { bytes in
            var reader = ProtobufWireReader(bytes)
            while !reader.isAtEnd {
                guard let field = reader.readField() else { return false }
                switch (field.number, field.wireType) {
                case (1, 2):
                    topic = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.payload]), as: UTF8.self)
                case (2, 0): partition = UInt32(truncatingIfNeeded: field.varint)
                case (3, 0): leaderEpoch = Int32(truncatingIfNeeded: field.varint)
                case (4, 0): acks = Fjord_V1_Acks(rawValue: Int(truncatingIfNeeded: field.varint)) ?? .unspecified
                case (5, 0): requestID = field.varint
                case (6, 2): batchRange = field.payload
                case (1...6, _): return false  // a known field with the wrong wire type
                default: continue
                }
            }
            return true
        }
        guard ok else { return nil }
        self.topic = topic
        self.partition = partition
        self.leaderEpoch = leaderEpoch
        self.acks = acks
        self.requestID = requestID
        self.batch = buffer.getSlice(at: buffer.readerIndex + batchRange.lowerBound, length: batchRange.count)!
    }

    /// Bytes of a `ProduceRequest` before its batch field's payload.
    public static func headerSize(topic: String, partition: UInt32, leaderEpoch: Int32, acks: Fjord_V1_Acks, requestID: UInt64, batchBytes: Int) -> Int {
        ProtobufSize.stringField(1, topic) + ProtobufSize.varintField(2, UInt64(partition))
            + ProtobufSize.varintField(3, UInt64(bitPattern: Int64(leaderEpoch)))
            + ProtobufSize.varintField(4, UInt64(acks.rawValue)) + ProtobufSize.varintField(5, requestID)
            + ProtobufSize.lengthDelimitedField(6, length: batchBytes) - batchBytes
    }

    /// Writes a `ProduceRequest` holding `batch` (a serialized `RecordBatch`) into `buffer`.
    public static func write(
        topic: String, partition: UInt32, leaderEpoch: Int32, acks: Fjord_V1_Acks, requestID: UInt64,
        batch: ByteBuffer, to buffer: inout ByteBuffer
    ) {
        buffer.writeProtobufStringField(1, topic)
        buffer.writeProtobufVarintField(2, UInt64(partition))
        buffer.writeProtobufInt32Field(3, leaderEpoch)
        buffer.writeProtobufVarintField(4, UInt64(acks.rawValue))
        buffer.writeProtobufVarintField(5, requestID)
        buffer.writeProtobufLengthPrefix(6, length: batch.readableBytes)
        var batch = batch
        buffer.writeBuffer(&batch)
    }
}
