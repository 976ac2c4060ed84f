/// The fixed-width header fields of a record batch, read from its first 80 bytes.
///
/// Reading the header decodes nothing else; use ``RecordBatchView`` to walk the records.
public struct RecordBatchHeader: Sendable, Hashable {
    /// Offset of the first record (stamped by the log).
    public var baseOffset: Int64
    /// Leader epoch at append (stamped by the log).
    public var partitionLeaderEpoch: Int32
    /// Broker time of the append in ms since the epoch, or -1 (stamped by the log).
    public var logAppendTime: Int64
    /// The stored CRC32C.
    public var crc32c: UInt32
    /// Format version.
    public var magic: UInt32
    /// A `Fjord_V1_CompressionCodec` raw value.
    public var compression: UInt32
    /// Number of records, at least 1 in a valid batch.
    public var recordCount: UInt32
    /// Timestamp of the first record, ms.
    public var firstTimestamp: Int64
    /// Largest record timestamp, ms.
    public var maxTimestamp: Int64
    /// Idempotent producer id, or -1.
    public var producerID: Int64
    /// Idempotent producer epoch, or -1.
    public var producerEpoch: Int32
    /// Sequence of the first record, or -1.
    public var baseSequence: Int32

    /// Offset of the last record: `baseOffset + recordCount - 1`.
    @inlinable
    ///
    /// Wrapping arithmetic: the base offset of a stored batch is outside its CRC, so a damaged
    /// file may hold any value there, and computing this must not trap. Check the base offset
    /// against the offset expected there before trusting the result.
    public var lastOffset: Int64 { baseOffset &+ Int64(recordCount) &- 1 }

    /// Creates a header.
    public init(
        baseOffset: Int64 = 0, partitionLeaderEpoch: Int32 = 0, logAppendTime: Int64 = -1, crc32c: UInt32 = 0,
        magic: UInt32 = RecordBatchLayout.currentMagic, compression: UInt32 = 0, recordCount: UInt32,
        firstTimestamp: Int64, maxTimestamp: Int64, producerID: Int64 = -1, producerEpoch: Int32 = -1,
        baseSequence: Int32 = -1
    ) {
        self.baseOffset = baseOffset
        self.partitionLeaderEpoch = partitionLeaderEpoch
        self.logAppendTime = logAppendTime
        self.crc32c = crc32c
        self.magic = magic
        self.compression = compression
        self.recordCount = recordCount
        self.firstTimestamp = firstTimestamp
        self.maxTimestamp = maxTimestamp
        self.producerID = producerID
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
    }

    /// Reads the header at `pointer`, which must have at least ``RecordBatchLayout/headerSize``
    /// readable bytes. Tags are not checked; ``RecordBatchValidator`` does that.
    @inlinable
    public init(unsafeHeaderAt pointer: UnsafeRawPointer) {
        func load<T: FixedWidthInteger>(_ position: Int, _: T.Type) -> T {
            T(littleEndian: pointer.loadUnaligned(fromByteOffset: position, as: T.self))
        }
        self.baseOffset = Int64(bitPattern: load(RecordBatchLayout.baseOffset, UInt64.self))
        self.partitionLeaderEpoch = load(RecordBatchLayout.partitionLeaderEpoch, Int32.self)
        self.logAppendTime = load(RecordBatchLayout.logAppendTime, Int64.self)
        self.crc32c = load(RecordBatchLayout.crc32c, UInt32.self)
        self.magic = load(RecordBatchLayout.magic, UInt32.self)
        self.compression = load(RecordBatchLayout.compression, UInt32.self)
        self.recordCount = load(RecordBatchLayout.recordCount, UInt32.self)
        self.firstTimestamp = load(RecordBatchLayout.firstTimestamp, Int64.self)
        self.maxTimestamp = load(RecordBatchLayout.maxTimestamp, Int64.self)
        self.producerID = load(RecordBatchLayout.producerID, Int64.self)
        self.producerEpoch = load(RecordBatchLayout.producerEpoch, Int32.self)
        self.baseSequence = load(RecordBatchLayout.baseSequence, Int32.self)
    }

    /// Writes the 80 header bytes, tags included, at `pointer`.
    public func write(to pointer: UnsafeMutableRawPointer) {
        for (position, tag) in RecordBatchLayout.tags {
            pointer.storeBytes(of: tag, toByteOffset: position, as: UInt8.self)
        }
        func store<T: FixedWidthInteger>(_ value: T, _ position: Int) {
            pointer.storeBytes(of: value.littleEndian, toByteOffset: position, as: T.self)
        }
        store(UInt64(bitPattern: baseOffset), RecordBatchLayout.baseOffset)
        store(partitionLeaderEpoch, RecordBatchLayout.partitionLeaderEpoch)
        store(logAppendTime, RecordBatchLayout.logAppendTime)
        store(crc32c, RecordBatchLayout.crc32c)
        store(magic, RecordBatchLayout.magic)
        store(compression, RecordBatchLayout.compression)
        store(recordCount, RecordBatchLayout.recordCount)
        store(firstTimestamp, RecordBatchLayout.firstTimestamp)
        store(maxTimestamp, RecordBatchLayout.maxTimestamp)
        store(producerID, RecordBatchLayout.producerID)
        store(producerEpoch, RecordBatchLayout.producerEpoch)
        store(baseSequence, RecordBatchLayout.baseSequence)
    }
}

extension RecordBatchHeader {
    /// Stamps the broker-owned fields of a batch in place. The CRC does not cover them.
    @inlinable
    public static func stamp(
        _ pointer: UnsafeMutableRawPointer, baseOffset: Int64, partitionLeaderEpoch: Int32, logAppendTime: Int64
    ) {
        pointer.storeBytes(
            of: UInt64(bitPattern: baseOffset).littleEndian, toByteOffset: RecordBatchLayout.baseOffset, as: UInt64.self)
        pointer.storeBytes(
            of: partitionLeaderEpoch.littleEndian, toByteOffset: RecordBatchLayout.partitionLeaderEpoch, as: Int32.self)
        pointer.storeBytes(of: logAppendTime.littleEndian, toByteOffset: RecordBatchLayout.logAppendTime, as: Int64.self)
    }
}
