public import NIOCore

/// Encodes records into a record batch ready to append or send.
///
/// The builder writes protobuf by hand, straight into one `ByteBuffer`, then fills in the fixed
/// header and the CRC32C. The result decodes as `Fjord_V1_RecordBatch` with generated code.
///
/// ```swift
/// var builder = RecordBatchBuilder()
/// builder.append(Record(key: Array("k".utf8), value: Array("v".utf8), timestamp: 1_700_000_000_000))
/// let batch: ByteBuffer = builder.build()
/// ```
public struct RecordBatchBuilder: Sendable {
    private var buffer: ByteBuffer
    private var count: UInt32 = 0
    private var firstTimestamp: Int64 = 0
    private var maxTimestamp: Int64 = .min
    /// Idempotence fields written into the header.
    public var producerID: Int64 = -1
    /// Idempotence fields written into the header.
    public var producerEpoch: Int32 = -1
    /// Idempotence fields written into the header.
    public var baseSequence: Int32 = -1

    /// Creates an empty builder, reserving `capacity` bytes.
    public init(capacity: Int = 16 * 1024, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        buffer = allocator.buffer(capacity: max(capacity, RecordBatchLayout.headerSize))
        buffer.writeRepeatingByte(0, count: RecordBatchLayout.headerSize)
    }

    /// Records appended so far.
    public var recordCount: Int { Int(count) }

    /// Bytes the batch occupies so far.
    public var sizeInBytes: Int { buffer.readableBytes }

    /// Adds a record.
    public mutating func append(_ record: Record) {
        append(key: record.key, value: record.value, headers: record.headers, timestamp: record.timestamp)
    }

    /// Adds a record from its parts.
    public mutating func append(key: [UInt8]?, value: [UInt8]?, headers: [RecordHeader] = [], timestamp: Int64) {
        if count == 0 { firstTimestamp = timestamp }
        maxTimestamp = Swift.max(maxTimestamp, timestamp)
        let delta = timestamp &- firstTimestamp
        let zigzag = UInt64(bitPattern: (delta << 1) ^ (delta >> 63))

        var size = 0
        if zigzag != 0 { size += 1 + Varint.size(zigzag) }
        if let key { size += 1 + Varint.size(UInt64(key.count)) + key.count }
        if let value { size += 1 + Varint.size(UInt64(value.count)) + value.count }
        for header in headers {
            let length = Self.headerSize(header)
            size += 1 + Varint.size(UInt64(length)) + length
        }

        // One reservation and raw stores: no per-field bounds or uniqueness checks.
        let total = 1 + Varint.size(UInt64(size)) + size
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { raw in
            var out = RawWriter(raw.baseAddress!)
            out.byte(RecordBatchLayout.recordsTag)
            out.varint(UInt64(size))
            if zigzag != 0 {
                out.byte(0x08)
                out.varint(zigzag)
            }
            if let key { out.bytesField(0x12, key) }
            if let value { out.bytesField(0x1A, value) }
            for header in headers {
                out.byte(0x22)
                out.varint(UInt64(Self.headerSize(header)))
                let keyLength = header.key.utf8.count
                if keyLength > 0 {
                    out.byte(0x0A)
                    out.varint(UInt64(keyLength))
                    out.utf8(header.key)
                }
                if let value = header.value { out.bytesField(0x12, value) }
            }
            return out.written
        }
        count += 1
    }

    /// Finishes the batch: writes the header and CRC and returns the bytes.
    ///
    /// Broker-stamped fields are written as producers send them (base offset 0, epoch 0, append
    /// time -1). Building an empty batch is a programming error.
    public func build() -> ByteBuffer {
        var batch = buffer
        writeHeader(into: &batch)
        return batch
    }

    /// Finishes the batch like ``build()`` but in the builder's own buffer, so the bytes are not
    /// copied. Use the builder no more afterwards.
    public mutating func finish() -> ByteBuffer {
        var batch = buffer
        buffer = ByteBuffer()  // the batch's storage is now uniquely referenced: no copy on write
        writeHeader(into: &batch)
        count = 0
        return batch
    }

    /// Writes the fixed header and the CRC32C over the records already in `batch`.
    private func writeHeader(into batch: inout ByteBuffer) {
        precondition(count > 0, "a record batch needs at least one record")
        let header = RecordBatchHeader(
            recordCount: count, firstTimestamp: firstTimestamp, maxTimestamp: maxTimestamp, producerID: producerID,
            producerEpoch: producerEpoch, baseSequence: baseSequence)
        batch.withUnsafeMutableReadableBytes { bytes in
            header.write(to: bytes.baseAddress!)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.crcCoveredFrom...]))
            bytes.storeBytes(of: crc.littleEndian, toByteOffset: RecordBatchLayout.crc32c, as: UInt32.self)
        }
    }

    /// Rewrites the idempotence fields of a finished batch and its CRC32C (for example after a
    /// producer's epoch changed), without touching the records.
    public static func restampProducer(
        _ batch: inout ByteBuffer, producerID: Int64, producerEpoch: Int32, baseSequence: Int32
    ) {
        batch.withUnsafeMutableReadableBytes { bytes in
            bytes.storeBytes(of: producerID.littleEndian, toByteOffset: RecordBatchLayout.producerID, as: Int64.self)
            bytes.storeBytes(of: producerEpoch.littleEndian, toByteOffset: RecordBatchLayout.producerEpoch, as: Int32.self)
            bytes.storeBytes(of: baseSequence.littleEndian, toByteOffset: RecordBatchLayout.baseSequence, as: Int32.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.crcCoveredFrom...]))
            bytes.storeBytes(of: crc.littleEndian, toByteOffset: RecordBatchLayout.crc32c, as: UInt32.self)
        }
    }

    private static func headerSize(_ header: RecordHeader) -> Int {
        let keyLength = header.key.utf8.count
        var size = keyLength > 0 ? 1 + Varint.size(UInt64(keyLength)) + keyLength : 0
        if let value = header.value { size += 1 + Varint.size(UInt64(value.count)) + value.count }
        return size
    }

    private static func writeBytesField(tag: UInt8, _ bytes: [UInt8], to buffer: inout ByteBuffer) {
        buffer.writeInteger(tag)
        Varint.write(UInt64(bytes.count), to: &buffer)
        buffer.writeBytes(bytes)
    }
}

/// Stores bytes at a raw pointer the caller made room for.
struct RawWriter {
    let base: UnsafeMutableRawPointer
    private(set) var written = 0

    init(_ base: UnsafeMutableRawPointer) { self.base = base }

    mutating func byte(_ value: UInt8) {
        base.storeBytes(of: value, toByteOffset: written, as: UInt8.self)
        written += 1
    }

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            byte(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        byte(UInt8(v))
    }

    mutating func bytes(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { source in
            if let address = source.baseAddress { (base + written).copyMemory(from: address, byteCount: source.count) }
        }
        written += bytes.count
    }

    mutating func bytesField(_ tag: UInt8, _ value: [UInt8]) {
        byte(tag)
        varint(UInt64(value.count))
        bytes(value)
    }

    mutating func utf8(_ text: String) {
        var text = text
        text.withUTF8 { source in
            if let address = source.baseAddress { (base + written).copyMemory(from: address, byteCount: source.count) }
            written += source.count
        }
    }
}

/// Protobuf base-128 varints.
package enum Varint {
    /// Encoded size of `value` in bytes.
    package static func size(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    /// Appends `value` to `buffer`.
    package static func write(_ value: UInt64, to buffer: inout ByteBuffer) {
        var v = value
        while v >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        buffer.writeInteger(UInt8(v))
    }
}
