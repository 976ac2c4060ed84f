import FjordProto
import FjordRecords
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

@Suite("RecordBatchValidator")
struct RecordBatchValidatorTests {
    static let small = Batches.buildBytes([
        Record(key: Batches.utf8("a"), value: Batches.utf8("b"), headers: [RecordHeader(key: "h", value: [7])], timestamp: 10),
        Record(key: nil, value: Batches.utf8("c"), timestamp: 8),
    ])

    @Test("accepts a built batch and returns its header")
    func accepts() throws {
        let bytes = Batches.buildBytes(Batches.sample)
        let header = try Batches.validate(bytes)
        #expect(header == Batches.header(of: bytes))
        #expect(header.recordCount == 3)
        #expect(header.firstTimestamp == 1_700_000_000_000)
        #expect(header.maxTimestamp == 1_700_000_000_005)
        // A batch of exactly maxBatchBytes is accepted.
        #expect(try Batches.validate(bytes, maxBatchBytes: bytes.count) == header)
    }

    @Test("validates a batch inside a larger buffer at an unaligned offset")
    func validatesSlice() throws {
        let batch = Batches.build(Batches.sample)
        var buffer = ByteBufferAllocator().buffer(capacity: 1024)
        buffer.writeBytes([1, 2, 3])
        buffer.writeImmutableBuffer(batch)
        buffer.writeBytes([9, 9, 9, 9])
        let header = try buffer.withUnsafeReadableBytes { (raw) throws(RecordBatchError) -> RecordBatchHeader in
            let slice = UnsafeRawBufferPointer(rebasing: raw[3..<(3 + batch.readableBytes)])
            return try RecordBatchValidator(maxBatchBytes: 1 << 20).validate(slice)
        }
        #expect(header.recordCount == 3)
    }

    @Test("tooSmall below the 80-byte header", arguments: [0, 1, 27, 28, 79])
    func tooSmall(length: Int) {
        let bytes = Array(Batches.buildBytes(Batches.sample).prefix(length))
        #expect(Batches.rejection(bytes) == .tooSmall)
        // Even with a tiny limit, being too small is reported first.
        #expect(Batches.rejection(bytes, maxBatchBytes: 0) == .tooSmall)
    }

    @Test("tooLarge when over maxBatchBytes", arguments: [1, 2, 100])
    func tooLarge(under: Int) {
        let bytes = Batches.buildBytes(Batches.sample)
        #expect(Batches.rejection(bytes, maxBatchBytes: bytes.count - under) == .tooLarge)
        #expect(Batches.rejection(bytes, maxBatchBytes: bytes.count) == nil)
    }

    @Test("malformedHeader when any header tag is wrong", arguments: RecordBatchLayout.tags.map(\.position))
    func malformedHeader(position: Int) {
        for replacement: UInt8 in [0x00, 0xFF] {
            var bytes = Self.small
            bytes[position] = replacement
            #expect(Batches.rejection(bytes) == .malformedHeader, "byte \(position) = \(replacement)")
        }
        // Swapping in a neighbour's tag is caught too.
        var bytes = Self.small
        bytes[position] ^= 0x08
        Batches.fixCRC(&bytes)
        #expect(Batches.rejection(bytes) == .malformedHeader)
    }

    @Test("unsupportedMagic with a correct CRC", arguments: [0, 2, 0xFFFF_FFFF] as [UInt32])
    func unsupportedMagic(magic: UInt32) throws {
        var bytes = Self.small
        Batches.store(magic, at: RecordBatchLayout.magic, in: &bytes)
        Batches.fixCRC(&bytes)
        #expect(Batches.rejection(bytes) == .unsupportedMagic)
        // Still valid protobuf: it is the format version that is refused.
        #expect(try Batches.decode(bytes).magic == magic)
    }

    @Test("unsupportedCompression with a correct CRC", arguments: [1, 2, 3, 99] as [UInt32])
    func unsupportedCompression(codec: UInt32) throws {
        var bytes = Self.small
        Batches.store(codec, at: RecordBatchLayout.compression, in: &bytes)
        Batches.fixCRC(&bytes)
        #expect(Batches.rejection(bytes) == .unsupportedCompression)
        #expect(try Batches.decode(bytes).compression == codec)
    }

    /// The code expected when byte `position` (>= 28) of `small` is changed: the header checks run
    /// before the CRC check, so tags, magic and compression are caught by their own checks.
    static func expectedCodeForChange(at position: Int) -> RecordBatchError.Code {
        if RecordBatchLayout.tags.contains(where: { $0.position == position }) { return .malformedHeader }
        if (RecordBatchLayout.magic..<RecordBatchLayout.magic + 4).contains(position) { return .unsupportedMagic }
        if (RecordBatchLayout.compression..<RecordBatchLayout.compression + 4).contains(position) {
            return .unsupportedCompression
        }
        return .crcMismatch
    }

    @Test("crcMismatch for a change at any covered byte")
    func crcMismatchEveryPosition() {
        let original = Self.small
        #expect(Batches.rejection(original) == nil)
        var crcMismatches = 0
        for position in RecordBatchLayout.crcCoveredFrom..<original.count {
            for flip: UInt8 in [0x01, 0x80, 0xFF] {
                var bytes = original
                bytes[position] ^= flip
                let expected = Self.expectedCodeForChange(at: position)
                #expect(Batches.rejection(bytes) == expected, "byte \(position) ^ \(flip)")
                if expected == .crcMismatch { crcMismatches += 1 }
                // Whatever check fires first, the CRC no longer matches.
                #expect(bytes.withUnsafeBytes { RecordBatchView($0).isCRCValid } == false, "byte \(position)")
            }
        }
        // 8 tags, 4 magic bytes and 4 compression bytes are caught by earlier checks.
        #expect(crcMismatches == 3 * (original.count - 28 - 16))
    }

    @Test("crcMismatch for every single-bit flip in the covered bytes (view check)")
    func everyBitFlipDetected() {
        var bytes = Self.small
        for bit in (RecordBatchLayout.crcCoveredFrom * 8)..<(bytes.count * 8) {
            bytes[bit / 8] ^= 1 << (bit % 8)
            #expect(bytes.withUnsafeBytes { RecordBatchView($0).isCRCValid } == false, "bit \(bit)")
            bytes[bit / 8] ^= 1 << (bit % 8)
        }
        #expect(bytes == Self.small)
    }

    @Test("crcMismatch when the stored CRC is changed", arguments: 24..<28)
    func storedCRCChanged(position: Int) {
        var bytes = Self.small
        bytes[position] &+= 1
        #expect(Batches.rejection(bytes) == .crcMismatch)
    }

    @Test("crcMismatch when bytes are appended or removed without fixing the CRC")
    func lengthChangeBreaksCRC() {
        var longer = Self.small
        longer += [0x80, 0x01, 0x00]  // field 16, varint 0: an unknown field, well-formed
        #expect(Batches.rejection(longer) == .crcMismatch)
        Batches.fixCRC(&longer)
        #expect(Batches.rejection(longer) == nil)
        #expect(Batches.rejection(Array(Self.small.dropLast())) == .crcMismatch)
    }

    @Test("stamping the broker fields (bytes 0..<28) keeps the batch valid", arguments: [
        (Int64(0), Int32(0), Int64(-1)),
        (Int64(1), Int32(1), Int64(0)),
        (Int64(1_000_000_007), Int32(42), Int64(1_700_000_000_000)),
        (Int64.max, Int32.max, Int64.max),
        (Int64(-1), Int32.min, Int64.min),
    ])
    func stamping(baseOffset: Int64, epoch: Int32, appendTime: Int64) throws {
        var bytes = Self.small
        let crcBefore = Batches.load(UInt32.self, at: 24, in: bytes)
        bytes.withUnsafeMutableBytes {
            RecordBatchHeader.stamp($0.baseAddress!, baseOffset: baseOffset, partitionLeaderEpoch: epoch, logAppendTime: appendTime)
        }
        #expect(Array(bytes[28...]) == Array(Self.small[28...]))
        #expect(Batches.load(UInt32.self, at: 24, in: bytes) == crcBefore)
        let header = try Batches.validate(bytes)
        #expect(header.baseOffset == baseOffset)
        #expect(header.partitionLeaderEpoch == epoch)
        #expect(header.logAppendTime == appendTime)
        if baseOffset < Int64.max - 1 { #expect(header.lastOffset == baseOffset + 1) }
        let decoded = try Batches.decode(bytes)
        #expect(decoded.baseOffset == UInt64(bitPattern: baseOffset))
        #expect(decoded.partitionLeaderEpoch == epoch)
        #expect(decoded.logAppendTime == appendTime)
        bytes.withUnsafeBytes { raw in
            let view = RecordBatchView(raw)
            #expect(view.baseOffset == baseOffset)
            #expect(view.logAppendTime == appendTime)
            #expect(view.isCRCValid)
        }
    }

    @Test("emptyBatch when record_count is 0")
    func emptyBatch() {
        // Header only.
        #expect(Batches.rejection(Batches.handBuilt(body: [], recordCount: 0)) == .emptyBatch)
        // record_count patched to 0 on a batch that has records.
        var bytes = Self.small
        Batches.store(UInt32(0), at: RecordBatchLayout.recordCount, in: &bytes)
        Batches.fixCRC(&bytes)
        #expect(Batches.rejection(bytes) == .emptyBatch)
    }

    @Test("recordCountMismatch when record_count differs from the records", arguments: [1, 3, 4, 1000, UInt32.max] as [UInt32])
    func recordCountMismatch(count: UInt32) {
        var bytes = Self.small  // holds 2 records
        Batches.store(count, at: RecordBatchLayout.recordCount, in: &bytes)
        Batches.fixCRC(&bytes)
        #expect(Batches.rejection(bytes) == .recordCountMismatch)
    }

    @Test("recordCountMismatch for a header with no records")
    func noRecords() {
        #expect(Batches.rejection(Batches.handBuilt(body: [], recordCount: 1)) == .recordCountMismatch)
    }

    @Test("invalidTimestamps when max_timestamp is below first_timestamp")
    func invalidTimestamps() {
        var bytes = Self.small  // first 10, max 10
        Batches.store(Int64(9), at: RecordBatchLayout.maxTimestamp, in: &bytes)
        Batches.fixCRC(&bytes)
        #expect(Batches.rejection(bytes) == .invalidTimestamps)

        var hand = Batches.handBuilt(body: [0x7A, 0x00], recordCount: 1, firstTimestamp: 0, maxTimestamp: -1)
        #expect(Batches.rejection(hand) == .invalidTimestamps)
        Batches.store(Int64(0), at: RecordBatchLayout.maxTimestamp, in: &hand)
        Batches.fixCRC(&hand)
        #expect(Batches.rejection(hand) == nil)
    }

    @Test("a hand-built batch matches the builder's")
    func handBuiltMatchesBuilder() {
        // key "k", value "v", delta 0 (omitted)
        let hand = Batches.handBuilt(body: [0x7A, 0x06, 0x12, 0x01, 0x6B, 0x1A, 0x01, 0x76], recordCount: 1)
        let built = Batches.buildBytes([Record(key: Batches.utf8("k"), value: Batches.utf8("v"), timestamp: 1000)])
        #expect(hand == built)
        #expect(Batches.rejection(hand) == nil)
    }

    @Test("malformedRecords when cut anywhere inside the last record (CRC fixed)")
    func truncatedLastRecord() {
        var builder = RecordBatchBuilder()
        builder.append(Record(key: Batches.utf8("first"), value: Batches.utf8("one"), timestamp: 5))
        let lastStart = builder.sizeInBytes
        builder.append(
            Record(
                key: randomBytes(200, seed: 1), value: randomBytes(300, seed: 2),
                headers: [RecordHeader(key: "header", value: [1, 2, 3])], timestamp: 6))
        let full = Array(builder.build().readableBytesView)
        #expect(Batches.rejection(full) == nil)
        for cut in (lastStart + 1)..<full.count {
            var bytes = Array(full[..<cut])
            Batches.fixCRC(&bytes)
            #expect(Batches.rejection(bytes) == .malformedRecords, "cut at \(cut)")
        }
        // Cut exactly between records: well-formed, but one record short.
        var between = Array(full[..<lastStart])
        Batches.fixCRC(&between)
        #expect(Batches.rejection(between) == .recordCountMismatch)
    }

    struct Malformed: Sendable, CustomTestStringConvertible {
        var name: String
        var body: [UInt8]
        var recordCount: UInt32 = 1
        var testDescription: String { name }
    }

    static let malformed: [Malformed] = [
        Malformed(name: "record length past the end", body: [0x7A, 0x05, 0x12, 0x03, 0x61, 0x62]),
        Malformed(name: "record tag without a length", body: [0x7A]),
        Malformed(name: "unterminated record length varint", body: [0x7A, 0x80]),
        Malformed(name: "key length past the end of its record", body: [0x7A, 0x03, 0x12, 0x05, 0x61, 0x62, 0x63, 0x64]),
        Malformed(name: "value length past the end of its record", body: [0x7A, 0x02, 0x1A, 0x02, 0x61]),
        Malformed(name: "records field with varint wire type", body: [0x78, 0x01]),
        Malformed(name: "records field with fixed32 wire type", body: [0x7D, 0, 0, 0, 0]),
        Malformed(name: "timestamp delta with fixed32 wire type", body: [0x7A, 0x05, 0x0D, 1, 2, 3, 4]),
        Malformed(name: "key with varint wire type", body: [0x7A, 0x02, 0x10, 0x01]),
        Malformed(name: "headers with varint wire type", body: [0x7A, 0x02, 0x20, 0x01]),
        Malformed(
            name: "timestamp delta varint longer than 10 bytes",
            body: [0x7A, 0x0C, 0x08] + [UInt8](repeating: 0xFF, count: 10) + [0x01]),
        Malformed(name: "unterminated timestamp varint inside record", body: [0x7A, 0x02, 0x08, 0x80]),
        Malformed(name: "header key with invalid UTF-8", body: [0x7A, 0x05, 0x22, 0x03, 0x0A, 0x01, 0xFF]),
        Malformed(name: "header key truncated UTF-8 sequence", body: [0x7A, 0x06, 0x22, 0x04, 0x0A, 0x02, 0xC3, 0x41]),
        Malformed(name: "header value length past the end of the header", body: [0x7A, 0x04, 0x22, 0x02, 0x12, 0x05]),
        Malformed(name: "header key with varint wire type", body: [0x7A, 0x04, 0x22, 0x02, 0x08, 0x01]),
        Malformed(name: "header field 1 (base_offset) repeated after the header", body: [0x7A, 0x00, 0x09] + [UInt8](repeating: 0, count: 8)),
        Malformed(name: "header field 7 (record_count) repeated after the header", body: [0x7A, 0x00, 0x3D, 1, 0, 0, 0]),
        Malformed(name: "reserved field 13 after the header", body: [0x7A, 0x00, 0x68, 0x00]),
        Malformed(name: "reserved field 14 after the header", body: [0x7A, 0x00, 0x72, 0x00]),
        Malformed(name: "field number 0", body: [0x7A, 0x00, 0x02, 0x00]),
        Malformed(name: "field number 2^29 after the records", body: [0x7A, 0x00, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00]),
        Malformed(name: "field number 2^32 after the records", body: [0x7A, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0x00]),
        Malformed(name: "field number 2^29 inside a record", body: [0x7A, 0x06, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00]),
        Malformed(
            name: "field number 2^29 inside a header", body: [0x7A, 0x08, 0x22, 0x06, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00]),
        Malformed(name: "group wire type", body: [0x7A, 0x00, 0x83, 0x01]),
        Malformed(name: "unknown field truncated", body: [0x7A, 0x00, 0x82, 0x01, 0x05, 0x00]),
        Malformed(name: "trailing fixed64 without its bytes", body: [0x7A, 0x00, 0x81, 0x01, 0x00]),
    ]

    @Test("malformedRecords for hand-built bad bodies", arguments: malformed)
    func malformedRecords(_ test: Malformed) {
        let bytes = Batches.handBuilt(body: test.body, recordCount: test.recordCount)
        #expect(Batches.rejection(bytes) == .malformedRecords)
    }

    /// Bodies (one record each) that protobuf decoders reject: the validator must reject them too,
    /// or the log would accept batches no consumer can decode.
    static let undecodable: [Malformed] = [
        Malformed(name: "header key with invalid UTF-8", body: [0x7A, 0x05, 0x22, 0x03, 0x0A, 0x01, 0xFF]),
        Malformed(name: "field number 2^29 after the records", body: [0x7A, 0x00, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00]),
        Malformed(name: "field number 2^32 after the records", body: [0x7A, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0x00]),
        Malformed(name: "field number 2^29 inside a record", body: [0x7A, 0x06, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00]),
        Malformed(
            name: "field number 2^29 inside a header", body: [0x7A, 0x08, 0x22, 0x06, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00]),
        Malformed(name: "timestamp varint of 11 bytes", body: [0x7A, 0x0C, 0x08] + [UInt8](repeating: 0x80, count: 10) + [0x00]),
        Malformed(name: "field number 0 inside a record", body: [0x7A, 0x02, 0x02, 0x00]),
    ]

    @Test("what the generated decoder rejects, the validator rejects", arguments: undecodable)
    func agreesWithDecoderOnRejection(_ test: Malformed) {
        let bytes = Batches.handBuilt(body: test.body, recordCount: 1)
        #expect(throws: (any Error).self) { try Batches.decode(bytes) }
        #expect(Batches.rejection(bytes) == .malformedRecords)
    }

    /// Unusual but valid encodings: both the validator and the generated decoder accept them.
    static let unusualButValid: [Malformed] = [
        Malformed(name: "largest field number after the records", body: [0x7A, 0x00, 0xF8, 0xFF, 0xFF, 0xFF, 0x0F, 0x00]),
        Malformed(name: "largest field number inside a record", body: [0x7A, 0x06, 0xF8, 0xFF, 0xFF, 0xFF, 0x0F, 0x00]),
        Malformed(name: "record tag padded to two bytes", body: [0xFA, 0x00, 0x00]),
        Malformed(name: "record length padded to two bytes", body: [0x7A, 0x80, 0x00]),
        Malformed(name: "timestamp varint of 10 bytes", body: [0x7A, 0x0B, 0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01]),
        Malformed(name: "key repeated (last one wins)", body: [0x7A, 0x06, 0x12, 0x01, 0x61, 0x12, 0x01, 0x62]),
    ]

    @Test("unusual but valid encodings are accepted by both", arguments: unusualButValid)
    func agreesWithDecoderOnAcceptance(_ test: Malformed) throws {
        let bytes = Batches.handBuilt(body: test.body, recordCount: 1)
        #expect(Batches.rejection(bytes) == nil)
        #expect(try Batches.decode(bytes).records.count == 1)
    }

    @Test("unknown fields from later revisions are skipped, and decoders keep them")
    func unknownFieldsAccepted() throws {
        // record, field 16 varint, record, field 20 bytes, record with an unknown field 9 inside,
        // and an unknown field 5 inside a header.
        let body: [UInt8] =
            [0x7A, 0x03, 0x12, 0x01, 0x61]
            + [0x80, 0x01, 0x96, 0x01]
            + [0x7A, 0x02, 0x08, 0x02]
            + [0xA2, 0x01, 0x02, 0x68, 0x69]
            + [0x7A, 0x04, 0x48, 0x01, 0x08, 0x04]
            + [0x7A, 0x09, 0x22, 0x07, 0x0A, 0x01, 0x78, 0x28, 0x05, 0x12, 0x00]
        let bytes = Batches.handBuilt(body: body, recordCount: 4, firstTimestamp: 1000, maxTimestamp: 1002)
        let header = try Batches.validate(bytes)
        #expect(header.recordCount == 4)
        let decoded = try Batches.decode(bytes)
        #expect(decoded.records.count == 4)
        #expect(!decoded.unknownFields.data.isEmpty)
        #expect(Array(decoded.records[0].key) == [0x61])
        #expect(decoded.records[1].timestampDelta == 1)
        #expect(decoded.records[2].timestampDelta == 2)
        #expect(decoded.records[3].headers.map(\.key) == ["x"])
        #expect(decoded.records[3].headers[0].hasValue)
    }

    @Test("empty records (all fields absent) are valid")
    func emptyRecords() throws {
        let bytes = Batches.handBuilt(body: [0x7A, 0x00, 0x7A, 0x00], recordCount: 2)
        #expect(try Batches.validate(bytes).recordCount == 2)
        #expect(bytes == Batches.buildBytes([Record(value: nil, timestamp: 1000), Record(value: nil, timestamp: 1000)]))
    }

    @Test("error codes and messages")
    func errorDescription() {
        var bytes = Self.small
        bytes[bytes.count - 1] ^= 1
        do {
            _ = try Batches.validate(bytes)
            Issue.record("expected a CRC mismatch")
        } catch {
            #expect(error.code == .crcMismatch)
            #expect(error.code != .tooSmall)
            #expect("\(error)".hasPrefix("crcMismatch: "))
            #expect(!error.message.isEmpty)
        }
        let codes: [RecordBatchError.Code] = [
            .tooSmall, .tooLarge, .malformedHeader, .unsupportedMagic, .unsupportedCompression, .crcMismatch,
            .emptyBatch, .recordCountMismatch, .malformedRecords, .invalidTimestamps,
        ]
        #expect(Set(codes).count == codes.count)
        #expect(codes.map(\.description) == [
            "tooSmall", "tooLarge", "malformedHeader", "unsupportedMagic", "unsupportedCompression", "crcMismatch",
            "emptyBatch", "recordCountMismatch", "malformedRecords", "invalidTimestamps",
        ])
    }
}
