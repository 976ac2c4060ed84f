/// Checks a record batch before it is appended: sizes, header layout, format, CRC32C, and that its
/// records are well-formed and as many as declared. Reads the bytes once; decodes nothing.
///
/// ```swift
/// let validator = RecordBatchValidator(maxBatchBytes: 4 << 20)
/// let header = try batch.withUnsafeReadableBytes { try validator.validate($0) }
/// print(header.recordCount)
/// ```
public struct RecordBatchValidator: Sendable {
    /// The largest batch accepted, in bytes.
    public var maxBatchBytes: Int

    /// Creates a validator accepting batches up to `maxBatchBytes`.
    public init(maxBatchBytes: Int) {
        self.maxBatchBytes = maxBatchBytes
    }

    /// Validates `bytes` as one record batch and returns its header.
    public func validate(_ bytes: UnsafeRawBufferPointer) throws(RecordBatchError) -> RecordBatchHeader {
        guard bytes.count >= RecordBatchLayout.headerSize, let base = bytes.baseAddress else {
            throw RecordBatchError(
                code: .tooSmall,
                message: "batch is \(bytes.count) bytes, shorter than the \(RecordBatchLayout.headerSize)-byte header")
        }
        guard bytes.count <= maxBatchBytes else {
            throw RecordBatchError(
                code: .tooLarge, message: "batch is \(bytes.count) bytes, over the maximum of \(maxBatchBytes)")
        }
        for (position, tag) in RecordBatchLayout.tags where bytes[position] != tag {
            throw RecordBatchError(
                code: .malformedHeader,
                message: "expected tag 0x\(String(tag, radix: 16)) at byte \(position), found 0x\(String(bytes[position], radix: 16)); header fields 1-12 must all be present and in order"
            )
        }
        let header = RecordBatchHeader(unsafeHeaderAt: base)
        guard header.magic == RecordBatchLayout.currentMagic else {
            throw RecordBatchError(
                code: .unsupportedMagic,
                message: "format version \(header.magic) is not supported (expected \(RecordBatchLayout.currentMagic))")
        }
        guard header.compression == 0 else {
            throw RecordBatchError(
                code: .unsupportedCompression, message: "compression codec \(header.compression) is not supported")
        }
        let covered = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.crcCoveredFrom...])
        let crc = CRC32C.checksum(covered)
        guard crc == header.crc32c else {
            throw RecordBatchError(
                code: .crcMismatch,
                message: "CRC32C is 0x\(String(crc, radix: 16)) but the batch says 0x\(String(header.crc32c, radix: 16))")
        }
        guard header.recordCount > 0 else {
            throw RecordBatchError(code: .emptyBatch, message: "a batch must hold at least one record")
        }
        guard header.maxTimestamp >= header.firstTimestamp else {
            throw RecordBatchError(
                code: .invalidTimestamps,
                message: "max_timestamp \(header.maxTimestamp) is before first_timestamp \(header.firstTimestamp)")
        }
        let count = try Self.countRecords(bytes)
        guard count == header.recordCount else {
            throw RecordBatchError(
                code: .recordCountMismatch, message: "record_count is \(header.recordCount) but the batch holds \(count)")
        }
        return header
    }

    /// Walks the fields after the header, checking each record's own fields, and counts records.
    private static func countRecords(_ bytes: UnsafeRawBufferPointer) throws(RecordBatchError) -> UInt32 {
        var reader = ProtobufWireReader(bytes, from: RecordBatchLayout.headerSize)
        var count: UInt32 = 0
        while !reader.isAtEnd {
            let at = reader.position
            guard let field = reader.readField() else {
                throw RecordBatchError(code: .malformedRecords, message: "malformed field at byte \(at)")
            }
            switch field.number {
            case 1...14:
                throw RecordBatchError(
                    code: .malformedRecords, message: "header field \(field.number) repeated at byte \(at)")
            case 15:
                guard field.wireType == 2, isWellFormedRecord(bytes, field.payload) else {
                    throw RecordBatchError(code: .malformedRecords, message: "record \(count) at byte \(at) is malformed")
                }
                count &+= 1
            default:
                continue  // A field from a later minor revision: skipped, as protobuf does.
            }
        }
        return count
    }

    private static func isWellFormedRecord(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        var reader = ProtobufWireReader(UnsafeRawBufferPointer(rebasing: bytes[..<range.upperBound]), from: range.lowerBound)
        while !reader.isAtEnd {
            guard let field = reader.readField() else { return false }
            switch (field.number, field.wireType) {
            case (1, 0), (2, 2), (3, 2): continue
            case (4, 2): guard isWellFormedHeader(bytes, field.payload) else { return false }
            case (1...4, _): return false
            default: continue
            }
        }
        return true
    }

    private static func isWellFormedHeader(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        var reader = ProtobufWireReader(UnsafeRawBufferPointer(rebasing: bytes[..<range.upperBound]), from: range.lowerBound)
        while !reader.isAtEnd {
            guard let field = reader.readField() else { return false }
            switch (field.number, field.wireType) {
            case (1, 2):
                // Header keys are protobuf strings: invalid UTF-8 would make decoders reject the batch.
                let key = UnsafeRawBufferPointer(rebasing: bytes[field.payload])
                guard String(validating: key, as: UTF8.self) != nil else { return false }
            case (2, 2): continue
            case (1...2, _): return false
            default: continue
            }
        }
        return true
    }
}
