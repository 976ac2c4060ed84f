public import FjordRecords
public import NIOCore

/// A topic and one of its partitions.
public struct TopicPartition: Sendable, Hashable, CustomStringConvertible {
    /// The topic.
    public var topic: String
    /// The partition index.
    public var partition: Int

    /// Creates a topic partition.
    public init(_ topic: String, _ partition: Int) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)-\(partition)" }
}

/// Where a consumer starts reading a partition.
public enum SeekPosition: Sendable, Hashable {
    /// This offset.
    case offset(Int64)
    /// The first offset still stored.
    case earliest
    /// The log end: only records appended from now on.
    case latest
    /// The first record with a timestamp at or after this one (ms); the log end if none is.
    case timestamp(Int64)
}

/// How a consumer reads.
///
/// ```swift
/// var configuration = ConsumerConfiguration()
/// configuration.autoOffsetReset = .earliest
/// configuration.creditBytes = 8 << 20
/// ```
public struct ConsumerConfiguration: Sendable, Hashable {
    /// What to do when a partition's position is outside the log (deleted by retention, or
    /// beyond its end): Kafka's `auto.offset.reset`.
    public enum OffsetReset: Sendable, Hashable {
        /// Move to the first offset still stored.
        case earliest
        /// Move to the log end.
        case latest
        /// Fail the sequence with `OFFSET_OUT_OF_RANGE`.
        case none
    }

    /// Default ``OffsetReset/latest``, as Kafka.
    public var autoOffsetReset: OffsetReset = .latest
    /// Bytes each partition's subscription may have pushed but not yet consumed: the memory bound
    /// per partition, whatever the backlog. Default 4 MiB.
    public var creditBytes = 4 << 20
    /// Most batch bytes in one pushed message. Default 1 MiB.
    public var maxBytesPerResponse = 1 << 20
    /// Verify each fetched batch before handing it out: its CRC32C, and that base offsets continue
    /// from one batch to the next (the broker stamps them outside the CRC). A failure ends the
    /// consumption with ``FjordClientError/Code/corruptBatch``. Default on, as in Kafka's
    /// consumers (`check.crcs`); turn it off only to save the CPU of one CRC32C pass.
    public var checkCRCs = true

    /// The default configuration.
    public init() {}
}

/// A record read from a partition.
public struct ConsumerRecord: Sendable, Hashable {
    /// The topic.
    public var topic: String
    /// The partition.
    public var partition: Int
    /// The record's offset.
    public var offset: Int64
    /// The record's timestamp (create time, ms).
    public var timestamp: Int64
    /// The key; `nil` for a null key.
    public var key: [UInt8]?
    /// The value; `nil` for a null value.
    public var value: [UInt8]?
    /// The headers, in order.
    public var headers: [RecordHeader]
}

/// One stored batch as pushed by the broker, without copies: the records from ``firstOffset`` on
/// are the consumer's (the batch may begin before the position the consumer asked for).
public struct ConsumerBatch: Sendable {
    /// Where the batch comes from.
    public var topicPartition: TopicPartition
    /// The batch bytes (a `RecordBatch`), a view into the received frame.
    public var bytes: ByteBuffer
    /// The first offset of this batch that the consumer has not seen.
    public var firstOffset: Int64

    /// The batch header.
    public var header: RecordBatchHeader {
        bytes.withUnsafeReadableBytes { RecordBatchHeader(unsafeHeaderAt: $0.baseAddress!) }
    }

    /// Offset after the last record.
    public var nextOffset: Int64 { header.lastOffset &+ 1 }

    /// Records at or after ``firstOffset``, decoded (keys, values and headers copied).
    public func records() throws -> [ConsumerRecord] {
        let header = self.header
        var result: [ConsumerRecord] = []
        result.reserveCapacity(Int(header.recordCount))
        try bytes.withUnsafeReadableBytes { raw in
            let view = RecordBatchView(raw)
            try view.forEachRecord { fields in
                let offset = header.baseOffset + Int64(fields.index)
                guard offset >= firstOffset else { return }
                result.append(
                    ConsumerRecord(
                        topic: topicPartition.topic, partition: topicPartition.partition, offset: offset,
                        timestamp: fields.timestamp, key: fields.key.map { Array(raw[$0]) },
                        value: fields.value.map { Array(raw[$0]) },
                        headers: fields.headers.map {
                            RecordHeader(key: String(decoding: raw[$0.key], as: UTF8.self), value: $0.value.map { Array(raw[$0]) })
                        }))
            }
        }
        return result
    }
}
