/// Settings of one partition log. Defaults follow Kafka's where Kafka has one.
///
/// ```swift
/// var configuration = LogConfiguration()
/// configuration.segmentBytes = 256 << 20
/// configuration.flushPolicy = .interval(milliseconds: 1_000)
/// configuration.retention = .init(milliseconds: 24 * 3_600_000, bytes: 10 << 30)
/// ```
public struct LogConfiguration: Sendable, Hashable {
    /// When written data is forced to disk (fsync) without a durable append asking for it.
    public enum FlushPolicy: Sendable, Hashable {
        /// After every batch: every append is acknowledged only once it is on disk.
        case everyBatch
        /// At most this long after a write.
        case interval(milliseconds: Int64)
        /// Left to the operating system (Kafka's default). Durable appends still fsync.
        case operatingSystem
    }

    /// Which timestamp the time index, offset-for-time lookups and retention use.
    public enum TimestampType: Sendable, Hashable {
        /// The producer's record timestamps (Kafka's `CreateTime`, the default).
        case createTime
        /// The broker's append time (Kafka's `LogAppendTime`).
        case logAppendTime
    }

    /// How long and how much data to keep. `nil` keeps forever.
    public struct Retention: Sendable, Hashable {
        /// Delete segments whose newest timestamp is older than this.
        public var milliseconds: Int64?
        /// Delete the oldest segments while the log is larger than this.
        public var bytes: Int64?

        /// Creates a retention setting.
        public init(milliseconds: Int64? = 7 * 24 * 3_600_000, bytes: Int64? = nil) {
            self.milliseconds = milliseconds
            self.bytes = bytes
        }
    }

    /// Roll the active segment before it would exceed this size. Default 1 GiB; at most 4 GiB - 1.
    public var segmentBytes: Int = 1 << 30
    /// Roll the active segment when its first batch is older than this. Default 7 days.
    public var segmentMilliseconds: Int64 = 7 * 24 * 3_600_000
    /// Largest batch accepted. Default 4 MiB.
    public var maxBatchBytes: Int = 4 << 20
    /// Bytes of log between two entries of the sparse offset and time indexes. Default 4 KiB.
    public var indexIntervalBytes: Int = 4096
    /// Most entries one segment's offset index holds before the segment rolls. Default 1,310,720 (10 MiB).
    public var maxIndexEntries: Int = 10 << 20 / 8
    /// When data is fsynced besides durable appends.
    public var flushPolicy: FlushPolicy = .operatingSystem
    /// The timestamp used for time lookups and retention.
    public var timestampType: TimestampType = .createTime
    /// Retention by time and size.
    public var retention: Retention = Retention()
    /// How long an idempotent producer's state is kept after its last append. Default 1 day (Kafka's
    /// `producer.id.expiration.ms`).
    public var producerIDExpirationMilliseconds: Int64 = 24 * 3_600_000
    /// Least time between two writes of the recovery point by the flusher when it advanced
    /// without a segment roll (broker key `log.recovery.point.checkpoint.interval.ms`, like Kafka's
    /// `log.flush.offset.checkpoint.interval.ms`). A crash loses at most this much of the recovery
    /// point's progress, so a tail lost within that window is not detected. Default 60 s; 0 writes
    /// it after every flush that advanced it.
    public var recoveryPointCheckpointMilliseconds: Int64 = 60_000

    /// The default configuration.
    public init() {}

    /// Checks every setting is in range.
    ///
    /// - Throws: ``StorageError/Code/invalidConfiguration`` naming the setting.
    public func validate() throws(StorageError) {
        func check(_ condition: Bool, _ message: String) throws(StorageError) {
            if !condition { throw StorageError(code: .invalidConfiguration, message: message) }
        }
        try check(segmentBytes >= 1024 && segmentBytes <= Int(UInt32.max), "segmentBytes must be between 1 KiB and 4 GiB - 1")
        try check(maxBatchBytes >= 128 && maxBatchBytes <= Int(Int32.max), "maxBatchBytes must be between 128 B and 2 GiB - 1")
        try check(segmentMilliseconds > 0, "segmentMilliseconds must be positive")
        try check(indexIntervalBytes > 0, "indexIntervalBytes must be positive")
        try check(maxIndexEntries >= 2, "maxIndexEntries must be at least 2")
        try check(producerIDExpirationMilliseconds > 0, "producerIDExpirationMilliseconds must be positive")
        try check(recoveryPointCheckpointMilliseconds >= 0, "recoveryPointCheckpointMilliseconds must not be negative")
        if case .interval(let ms) = flushPolicy { try check(ms > 0, "the flush interval must be positive") }
        if let ms = retention.milliseconds { try check(ms > 0, "retention milliseconds must be positive") }
        if let bytes = retention.bytes { try check(bytes >= 0, "retention bytes must not be negative") }
    }
}
