/// A borrowed view of one record batch's bytes: reads its header and walks its records without
/// copying or decoding them.
///
/// The view does not own its memory; it is valid while the memory it points into is.
public struct RecordBatchView {
    /// The batch's bytes, header first.
    public let bytes: UnsafeRawBufferPointer

    /// Wraps `bytes`, which must be at least ``RecordBatchLayout/headerSize`` long.
    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= RecordBatchLayout.headerSize)
        self.bytes = bytes
    }

    /// The fixed header.
    @inlinable
    public var header: RecordBatchHeader { RecordBatchHeader(unsafeHeaderAt: bytes.baseAddress!) }

    /// Offset of the first record.
    @inlinable
    public var baseOffset: Int64 {
        Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: RecordBatchLayout.baseOffset, as: Int64.self))
    }

    /// Number of records.
    @inlinable
    public var recordCount: UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: RecordBatchLayout.recordCount, as: UInt32.self))
    }

    /// Offset of the last record.
    @inlinable
    ///
    /// Wrapping arithmetic: the base offset of a stored batch is outside its CRC, so a damaged
    /// file may hold any value there, and computing this must not trap. Check the base offset
    /// against the offset expected there before trusting the result.
    public var lastOffset: Int64 { baseOffset &+ Int64(recordCount) &- 1 }

    /// Largest record timestamp.
    @inlinable
    public var maxTimestamp: Int64 {
        Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: RecordBatchLayout.maxTimestamp, as: Int64.self))
    }

    /// Broker append time, or -1.
    @inlinable
    public var logAppendTime: Int64 {
        Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: RecordBatchLayout.logAppendTime, as: Int64.self))
    }

    /// Whether the stored CRC32C matches the content.
    public var isCRCValid: Bool {
        guard bytes.count >= RecordBatchLayout.headerSize else { return false }
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.crcCoveredFrom...]))
            == header.crc32c
    }

    /// Index (from 0) of the first record whose timestamp is at least `timestamp`, or `nil`.
    ///
    /// Reads only each record's timestamp delta.
    public func firstRecordIndex(withTimestampAtLeast timestamp: Int64) -> Int? {
        let first = header.firstTimestamp
        var reader = ProtobufWireReader(bytes, from: RecordBatchLayout.headerSize)
        var index = 0
        while let field = reader.readField() {
            guard field.number == 15, field.wireType == 2 else { continue }
            var delta: Int64 = 0
            var record = ProtobufWireReader(
                UnsafeRawBufferPointer(rebasing: bytes[..<field.payload.upperBound]), from: field.payload.lowerBound)
            while let inner = record.readField() {
                if inner.number == 1, inner.wireType == 0 {
                    delta = Int64(bitPattern: inner.varint >> 1) ^ -Int64(bitPattern: inner.varint & 1)
                }
            }
            if first &+ delta >= timestamp { return index }
            index += 1
        }
        return nil
    }
}

/// Iterates framed batches (see ``BatchFraming``) in a run of bytes such as a segment file or a
/// fetch response, yielding each batch's position and view.
///
/// Iteration stops at the end of the bytes or at the first frame that is incomplete or malformed;
/// ``FramedBatchIterator/stopReason`` then says which.
public struct FramedBatchIterator: IteratorProtocol {
    /// One framed batch.
    public struct Element {
        /// Position of the frame (its tag byte) within the bytes.
        public var position: Int
        /// The batch, without its frame prefix.
        public var batch: RecordBatchView
        /// Position just past this batch.
        public var end: Int { position + BatchFraming.prefixSize + batch.bytes.count }
    }

    /// Why iteration ended.
    public enum StopReason: Equatable, Sendable {
        /// Not finished yet.
        case none
        /// Reached the end exactly on a frame boundary.
        case endOfBytes
        /// The bytes end inside a frame.
        case truncated(position: Int)
        /// The bytes at `position` are not a frame.
        case malformed(position: Int)
    }

    private let bytes: UnsafeRawBufferPointer
    /// Where the next frame starts.
    public private(set) var position: Int
    /// Why iteration ended, once it has.
    public private(set) var stopReason: StopReason = .none

    /// Iterates the frames in `bytes`, starting at `position`.
    public init(_ bytes: UnsafeRawBufferPointer, from position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    public mutating func next() -> Element? {
        guard stopReason == .none else { return nil }
        let remaining = bytes.count - position
        if remaining == 0 {
            stopReason = .endOfBytes
            return nil
        }
        guard remaining >= BatchFraming.prefixSize else {
            stopReason = .truncated(position: position)
            return nil
        }
        guard let length = BatchFraming.readPrefix(bytes.baseAddress! + position),
            length >= RecordBatchLayout.headerSize
        else {
            stopReason = .malformed(position: position)
            return nil
        }
        let start = position + BatchFraming.prefixSize
        guard bytes.count - start >= length else {
            stopReason = .truncated(position: position)
            return nil
        }
        let element = Element(
            position: position, batch: RecordBatchView(UnsafeRawBufferPointer(rebasing: bytes[start..<start + length])))
        position = start + length
        return element
    }
}
