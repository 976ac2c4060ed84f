public import FjordRecords

/// A record to send: topic, optional partition and key, value, headers and timestamp.
///
/// ```swift
/// let record = ProducerRecord(topic: "orders", key: "user-42", value: #"{"total": 12.5}"#)
/// var withHeaders = ProducerRecord(topic: "orders", key: Array("k".utf8), value: Array("v".utf8))
/// withHeaders.headers = [RecordHeader(key: "trace-id", value: Array("abc".utf8))]
/// ```
public struct ProducerRecord: Sendable, Hashable {
    /// The topic.
    public var topic: String
    /// An explicit partition; `nil` lets the producer choose (by key, or spread when unkeyed).
    public var partition: Int?
    /// The key; `nil` is a null key.
    public var key: [UInt8]?
    /// The value; `nil` is a null value (a tombstone).
    public var value: [UInt8]?
    /// Application headers.
    public var headers: [RecordHeader]
    /// Create time in ms since the Unix epoch; `nil` means the time of sending.
    public var timestamp: Int64?

    /// Creates a record from bytes.
    public init(
        topic: String, partition: Int? = nil, key: [UInt8]? = nil, value: [UInt8]?, headers: [RecordHeader] = [],
        timestamp: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// Creates a record from UTF-8 text.
    public init(topic: String, partition: Int? = nil, key: String? = nil, value: String, timestamp: Int64? = nil) {
        self.init(
            topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: Array(value.utf8),
            timestamp: timestamp)
    }
}

/// Where a record landed.
public struct RecordMetadata: Sendable, Hashable {
    /// The topic.
    public var topic: String
    /// The partition.
    public var partition: Int
    /// The record's offset; -1 with acks none (the broker does not answer).
    public var offset: Int64
    /// The record's create timestamp (ms).
    public var timestamp: Int64
}
