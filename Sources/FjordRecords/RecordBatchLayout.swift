/// Byte positions of the fixed 80-byte header that starts every record batch (format 1).
///
/// The header is the protobuf encoding of `RecordBatch` fields 1 to 12, each fixed-width and in
/// field-number order, so every field sits at a known position. The broker stamps
/// ``baseOffset``, ``partitionLeaderEpoch`` and ``logAppendTime`` in place; the CRC covers
/// everything from ``crcCoveredFrom`` to the end, so stamping never changes it.
/// See `docs/storage-format.md` for the table.
public enum RecordBatchLayout {
    /// Size of the fixed header; records start here.
    public static let headerSize = 80
    /// The format version this code writes and accepts.
    public static let currentMagic: UInt32 = 1
    /// First byte covered by the CRC (the tag of `magic`).
    public static let crcCoveredFrom = 28

    // Value positions (each value follows its one-byte tag).
    public static let baseOffset = 1
    public static let partitionLeaderEpoch = 10
    public static let logAppendTime = 15
    public static let crc32c = 24
    public static let magic = 29
    public static let compression = 34
    public static let recordCount = 39
    public static let firstTimestamp = 44
    public static let maxTimestamp = 53
    public static let producerID = 62
    public static let producerEpoch = 71
    public static let baseSequence = 76

    /// The protobuf tag byte expected at each header position, as (position, tag).
    public static let tags: [(position: Int, tag: UInt8)] = [
        (0, 0x09), (9, 0x15), (14, 0x19), (23, 0x25), (28, 0x2D), (33, 0x35),
        (38, 0x3D), (43, 0x41), (52, 0x49), (61, 0x51), (70, 0x5D), (75, 0x65),
    ]

    /// Tag of field 15, `records`, a length-delimited `Record`.
    public static let recordsTag: UInt8 = 0x7A
}

/// The framing of a batch inside a segment file and inside a fetch response.
///
/// Each batch is written as field 1 of `RecordBatchSet`: the tag `0x0A` followed by the batch
/// length as a varint padded to exactly five bytes (continuation bits set on the first four).
/// Any run of whole framed batches is therefore a valid `RecordBatchSet` encoding, and the batch
/// header of a framed batch at position `p` starts at `p + 6`.
public enum BatchFraming {
    /// Bytes before the batch: one tag byte and a five-byte varint.
    public static let prefixSize = 6
    /// The `RecordBatchSet.batches` tag.
    public static let tag: UInt8 = 0x0A
    /// Largest batch length a five-byte varint can frame (the format caps it at 2 GiB - 1).
    public static let maxBatchLength = Int(Int32.max)

    /// Writes the six prefix bytes for a batch of `length` bytes at `pointer`.
    @inlinable
    public static func writePrefix(length: Int, to pointer: UnsafeMutableRawPointer) {
        precondition(length >= 0 && length <= maxBatchLength)
        let value = UInt32(length)
        pointer.storeBytes(of: tag, as: UInt8.self)
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: value) | 0x80, toByteOffset: 1, as: UInt8.self)
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: value >> 7) | 0x80, toByteOffset: 2, as: UInt8.self)
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: value >> 14) | 0x80, toByteOffset: 3, as: UInt8.self)
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: value >> 21) | 0x80, toByteOffset: 4, as: UInt8.self)
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: value >> 28), toByteOffset: 5, as: UInt8.self)
    }

    /// Reads a prefix at `pointer`; `nil` when the six bytes are not a well-formed prefix.
    @inlinable
    public static func readPrefix(_ pointer: UnsafeRawPointer) -> Int? {
        guard pointer.load(as: UInt8.self) == tag else { return nil }
        var value: UInt32 = 0
        for i in 0..<4 {
            let byte = pointer.load(fromByteOffset: 1 + i, as: UInt8.self)
            guard byte & 0x80 != 0 else { return nil }
            value |= UInt32(byte & 0x7F) << (7 * UInt32(i))
        }
        let last = pointer.load(fromByteOffset: 5, as: UInt8.self)
        guard last <= 0x07 else { return nil }
        value |= UInt32(last) << 28
        guard value <= UInt32(maxBatchLength) else { return nil }
        return Int(value)
    }
}
