import FjordProto
import FjordRecords
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

// MARK: - Shared helpers

/// Helpers shared by the FjordRecords tests.
enum Batches {
    static func utf8(_ string: String) -> [UInt8] { Array(string.utf8) }

    /// Builds a batch with `RecordBatchBuilder`.
    static func build(
        _ records: [Record], producerID: Int64 = -1, producerEpoch: Int32 = -1, baseSequence: Int32 = -1
    ) -> ByteBuffer {
        var builder = RecordBatchBuilder()
        builder.producerID = producerID
        builder.producerEpoch = producerEpoch
        builder.baseSequence = baseSequence
        for record in records { builder.append(record) }
        return builder.build()
    }

    /// Builds a batch with `RecordBatchBuilder` and returns its bytes.
    static func buildBytes(
        _ records: [Record], producerID: Int64 = -1, producerEpoch: Int32 = -1, baseSequence: Int32 = -1
    ) -> [UInt8] {
        Array(
            build(records, producerID: producerID, producerEpoch: producerEpoch, baseSequence: baseSequence)
                .readableBytesView)
    }

    /// Decodes with the generated code.
    static func decode(_ buffer: ByteBuffer) throws -> Fjord_V1_RecordBatch {
        try Fjord_V1_RecordBatch(serializedBytes: Array(buffer.readableBytesView))
    }

    static func decode(_ bytes: [UInt8]) throws -> Fjord_V1_RecordBatch {
        try Fjord_V1_RecordBatch(serializedBytes: bytes)
    }

    /// The records of a decoded batch, as `Record` values (absent fields become `nil`).
    static func records(of batch: Fjord_V1_RecordBatch) -> [Record] {
        batch.records.map { record in
            Record(
                key: record.hasKey ? Array(record.key) : nil,
                value: record.hasValue ? Array(record.value) : nil,
                headers: record.headers.map { RecordHeader(key: $0.key, value: $0.hasValue ? Array($0.value) : nil) },
                timestamp: batch.firstTimestamp &+ record.timestampDelta)
        }
    }

    /// Builds a batch with the generated code only, the way another language would: set every
    /// header field, serialize, then patch the CRC32C of bytes [28, end) little-endian at [24, 28).
    static func generated(
        _ records: [Record], baseOffset: UInt64 = 0, partitionLeaderEpoch: Int32 = 0, logAppendTime: Int64 = -1,
        producerID: Int64 = -1, producerEpoch: Int32 = -1, baseSequence: Int32 = -1
    ) throws -> [UInt8] {
        var batch = Fjord_V1_RecordBatch()
        batch.baseOffset = baseOffset
        batch.partitionLeaderEpoch = partitionLeaderEpoch
        batch.logAppendTime = logAppendTime
        batch.crc32C = 0
        batch.magic = 1
        batch.compression = UInt32(Fjord_V1_CompressionCodec.none.rawValue)
        batch.recordCount = UInt32(records.count)
        let first = records.first?.timestamp ?? 0
        batch.firstTimestamp = first
        batch.maxTimestamp = records.map(\.timestamp).max() ?? 0
        batch.producerID = producerID
        batch.producerEpoch = producerEpoch
        batch.baseSequence = baseSequence
        for record in records {
            var message = Fjord_V1_Record()
            message.timestampDelta = record.timestamp &- first
            if let key = record.key { message.key = Data(key) }
            if let value = record.value { message.value = Data(value) }
            for header in record.headers {
                var h = Fjord_V1_RecordHeader()
                h.key = header.key
                if let value = header.value { h.value = Data(value) }
                message.headers.append(h)
            }
            batch.records.append(message)
        }
        var bytes: [UInt8] = try batch.serializedBytes()
        fixCRC(&bytes)
        return bytes
    }

    /// Recomputes the CRC32C over bytes [28, end) and stores it little-endian at [24, 28).
    static func fixCRC(_ bytes: inout [UInt8]) {
        let crc = CRC32C.checksum(Array(bytes[RecordBatchLayout.crcCoveredFrom...]))
        store(crc, at: RecordBatchLayout.crc32c, in: &bytes)
    }

    /// Stores `value` little-endian at `position`.
    static func store<T: FixedWidthInteger>(_ value: T, at position: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, byte) in raw.enumerated() { bytes[position + i] = byte }
        }
    }

    /// Loads a little-endian value at `position`.
    static func load<T: FixedWidthInteger>(_: T.Type, at position: Int, in bytes: [UInt8]) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: position, as: T.self)) }
    }

    static func header(of bytes: [UInt8]) -> RecordBatchHeader {
        bytes.withUnsafeBytes { RecordBatchHeader(unsafeHeaderAt: $0.baseAddress!) }
    }

    static func validate(_ bytes: [UInt8], maxBatchBytes: Int = 1 << 24) throws(RecordBatchError) -> RecordBatchHeader {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(RecordBatchError) -> RecordBatchHeader in
                try RecordBatchValidator(maxBatchBytes: maxBatchBytes).validate(raw)
            }
        }
        return try result.get()
    }

    /// The code the validator rejects `bytes` with, or `nil` when it accepts them.
    static func rejection(_ bytes: [UInt8], maxBatchBytes: Int = 1 << 24) -> RecordBatchError.Code? {
        do {
            _ = try validate(bytes, maxBatchBytes: maxBatchBytes)
            return nil
        } catch {
            return error.code
        }
    }

    /// A batch assembled by hand: a header written with `RecordBatchHeader.write`, then `body`
    /// verbatim, with a correct CRC.
    static func handBuilt(
        body: [UInt8], recordCount: UInt32, firstTimestamp: Int64 = 1000, maxTimestamp: Int64 = 1000
    ) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: RecordBatchLayout.headerSize)
        let header = RecordBatchHeader(recordCount: recordCount, firstTimestamp: firstTimestamp, maxTimestamp: maxTimestamp)
        bytes.withUnsafeMutableBytes { header.write(to: $0.baseAddress!) }
        bytes += body
        fixCRC(&bytes)
        return bytes
    }

    /// A few records of different shapes.
    static let sample: [Record] = [
        Record(key: utf8("k1"), value: utf8("v1"), timestamp: 1_700_000_000_000),
        Record(key: nil, value: utf8("unkeyed"), headers: [RecordHeader(key: "h", value: [1, 2])], timestamp: 1_700_000_000_005),
        Record(key: [], value: nil, timestamp: 1_699_999_999_990),
    ]
}

// MARK: - Builder tests

/// A named list of records to round-trip.
struct Scenario: Sendable, CustomTestStringConvertible {
    var name: String
    var records: [Record]
    var testDescription: String { name }

    static let t0: Int64 = 1_700_000_000_000

    static let all: [Scenario] = [
        Scenario(name: "one record, null key", records: [Record(key: nil, value: Batches.utf8("hello"), timestamp: t0)]),
        Scenario(name: "empty key and empty value", records: [Record(key: [], value: [], timestamp: t0)]),
        Scenario(name: "key with null value (tombstone)", records: [Record(key: Batches.utf8("gone"), value: nil, timestamp: t0)]),
        Scenario(name: "null key and null value", records: [Record(key: nil, value: nil, timestamp: t0)]),
        Scenario(
            name: "keys of several lengths",
            records: [0, 1, 127, 128, 300, 16_384].enumerated().map { i, n in
                Record(key: randomBytes(n, seed: UInt64(n)), value: Batches.utf8("v\(i)"), timestamp: t0 + Int64(i))
            }),
        Scenario(
            name: "headers with null and non-null values, repeated keys",
            records: [
                Record(
                    key: Batches.utf8("k"), value: Batches.utf8("v"),
                    headers: [
                        RecordHeader(key: "trace", value: Batches.utf8("abc")),
                        RecordHeader(key: "null-valued", value: nil),
                        RecordHeader(key: "empty-valued", value: []),
                        RecordHeader(key: "trace", value: Batches.utf8("def")),
                        RecordHeader(key: "trace", value: nil),
                        RecordHeader(key: "", value: Batches.utf8("empty key")),
                        RecordHeader(key: "", value: nil),
                        RecordHeader(key: "ünïcødé-🔑", value: [0, 0xFF, 0x80]),
                    ],
                    timestamp: t0),
                Record(key: nil, value: nil, headers: [RecordHeader(key: "only", value: nil)], timestamp: t0 + 1),
            ]),
        Scenario(
            name: "many headers and a large value",
            records: [
                Record(
                    key: Batches.utf8("big"), value: randomBytes(70_000, seed: 11),
                    headers: (0..<200).map { RecordHeader(key: "h\($0 % 7)", value: $0 % 3 == 0 ? nil : randomBytes($0, seed: UInt64($0))) },
                    timestamp: t0)
            ]),
        Scenario(
            name: "many records",
            records: (0..<1000).map { i in
                Record(
                    key: i % 5 == 0 ? nil : Batches.utf8("key-\(i % 17)"),
                    value: i % 11 == 0 ? nil : randomBytes(i % 200, seed: UInt64(i)),
                    headers: i % 3 == 0 ? [RecordHeader(key: "i", value: Batches.utf8("\(i)"))] : [],
                    timestamp: t0 + Int64(i * 3 % 1000) - 500)
            }),
        Scenario(
            name: "timestamps out of order, negative deltas",
            records: [1000, 999, 2000, 500, 1000, 1500, -3000].map {
                Record(key: Batches.utf8("k"), value: Batches.utf8("v"), timestamp: t0 + Int64($0))
            }),
        Scenario(
            name: "negative and zero timestamps",
            records: [-5, -10, 0, -1].map { Record(key: nil, value: [1], timestamp: Int64($0)) }),
        Scenario(
            name: "equal timestamps (all deltas zero)",
            records: (0..<5).map { Record(key: [UInt8($0)], value: [UInt8($0)], timestamp: t0) }),
        Scenario(
            name: "very large deltas",
            records: [0, Int64.max / 2, -(Int64.max / 2), 1].map { Record(key: nil, value: [], timestamp: $0) }),
    ]
}

@Suite("RecordBatchBuilder")
struct RecordBatchBuilderTests {
    @Test("round-trips through the generated decoder", arguments: Scenario.all)
    func roundTrip(_ scenario: Scenario) throws {
        let records = scenario.records
        var builder = RecordBatchBuilder()
        for record in records { builder.append(record) }
        #expect(builder.recordCount == records.count)
        let buffer = builder.build()
        #expect(builder.sizeInBytes == buffer.readableBytes)
        let bytes = Array(buffer.readableBytesView)

        let decoded = try Batches.decode(buffer)
        #expect(decoded.unknownFields.data.isEmpty)

        // Every record field, presence included.
        #expect(decoded.records.count == records.count)
        for (index, (message, record)) in zip(decoded.records, records).enumerated() {
            #expect(message.hasKey == (record.key != nil), "record \(index)")
            #expect(message.hasValue == (record.value != nil), "record \(index)")
            #expect(Array(message.key) == (record.key ?? []), "record \(index)")
            #expect(Array(message.value) == (record.value ?? []), "record \(index)")
            #expect(decoded.firstTimestamp &+ message.timestampDelta == record.timestamp, "record \(index)")
            #expect(message.timestampDelta == record.timestamp &- records[0].timestamp, "record \(index)")
            #expect(message.headers.count == record.headers.count, "record \(index)")
            for (h, header) in zip(message.headers, record.headers) {
                #expect(h.key == header.key)
                #expect(h.hasValue == (header.value != nil))
                #expect(Array(h.value) == (header.value ?? []))
            }
        }
        #expect(Batches.records(of: decoded) == records)

        // Header fields.
        #expect(decoded.hasBaseOffset && decoded.baseOffset == 0)
        #expect(decoded.hasPartitionLeaderEpoch && decoded.partitionLeaderEpoch == 0)
        #expect(decoded.hasLogAppendTime && decoded.logAppendTime == -1)
        #expect(decoded.hasCrc32C && decoded.crc32C == CRC32C.checksum(Array(bytes[28...])))
        #expect(decoded.hasMagic && decoded.magic == 1)
        #expect(decoded.hasCompression && decoded.compression == 0)
        #expect(decoded.hasRecordCount && decoded.recordCount == UInt32(records.count))
        #expect(decoded.hasFirstTimestamp && decoded.firstTimestamp == records[0].timestamp)
        #expect(decoded.hasMaxTimestamp && decoded.maxTimestamp == records.map(\.timestamp).max())
        #expect(decoded.hasProducerID && decoded.producerID == -1)
        #expect(decoded.hasProducerEpoch && decoded.producerEpoch == -1)
        #expect(decoded.hasBaseSequence && decoded.baseSequence == -1)

        // The fixed-layout reader agrees with the generated decoder.
        let header = Batches.header(of: bytes)
        #expect(header == RecordBatchHeader(decoded))
        #expect(header.lastOffset == Int64(records.count) - 1)

        // The validator accepts it and reads the same header.
        #expect(try Batches.validate(bytes) == header)

        // Re-encoding with the generated code reproduces the bytes exactly.
        let reencoded: [UInt8] = try decoded.serializedBytes()
        #expect(reencoded == bytes)
        // And a batch built from scratch with the generated code is byte-identical.
        #expect(try Batches.generated(records) == bytes)
    }

    @Test("the fixed header sits at the documented positions")
    func layout() throws {
        var builder = RecordBatchBuilder()
        builder.producerID = 0x0102_0304_0506_0708
        builder.producerEpoch = 0x1122_3344
        builder.baseSequence = -2
        builder.append(key: [0xAA], value: [0xBB], timestamp: 0x0A0B_0C0D)
        builder.append(key: nil, value: nil, timestamp: 0x0A0B_0C0F)
        let bytes = Array(builder.build().readableBytesView)

        let expectedTags: [(Int, UInt8)] = [
            (0, 0x09), (9, 0x15), (14, 0x19), (23, 0x25), (28, 0x2D), (33, 0x35),
            (38, 0x3D), (43, 0x41), (52, 0x49), (61, 0x51), (70, 0x5D), (75, 0x65),
        ]
        for (position, tag) in expectedTags {
            #expect(bytes[position] == tag, "tag at \(position)")
        }
        #expect(RecordBatchLayout.tags.map(\.position) == expectedTags.map(\.0))
        #expect(RecordBatchLayout.tags.map(\.tag) == expectedTags.map(\.1))
        #expect(bytes[80] == RecordBatchLayout.recordsTag)
        #expect(bytes[80] == 0x7A)

        #expect(Batches.load(UInt64.self, at: 1, in: bytes) == 0)
        #expect(Batches.load(Int32.self, at: 10, in: bytes) == 0)
        #expect(Batches.load(Int64.self, at: 15, in: bytes) == -1)
        #expect(Batches.load(UInt32.self, at: 24, in: bytes) == CRC32C.checksum(Array(bytes[28...])))
        #expect(Batches.load(UInt32.self, at: 29, in: bytes) == 1)
        #expect(Batches.load(UInt32.self, at: 34, in: bytes) == 0)
        #expect(Batches.load(UInt32.self, at: 39, in: bytes) == 2)
        #expect(Batches.load(Int64.self, at: 44, in: bytes) == 0x0A0B_0C0D)
        #expect(Batches.load(Int64.self, at: 53, in: bytes) == 0x0A0B_0C0F)
        #expect(Batches.load(Int64.self, at: 62, in: bytes) == 0x0102_0304_0506_0708)
        #expect(Batches.load(Int32.self, at: 71, in: bytes) == 0x1122_3344)
        #expect(Batches.load(Int32.self, at: 76, in: bytes) == -2)

        // First record: delta 0 is omitted; key 0xAA, value 0xBB.
        #expect(Array(bytes[80..<88]) == [0x7A, 0x06, 0x12, 0x01, 0xAA, 0x1A, 0x01, 0xBB])
        // Second record: only the delta, zigzag(2) = 4.
        #expect(Array(bytes[88...]) == [0x7A, 0x02, 0x08, 0x04])
    }

    @Test("producer fields are written to the header")
    func producerFields() throws {
        let bytes = Batches.buildBytes(Batches.sample, producerID: 42, producerEpoch: 7, baseSequence: 1000)
        let decoded = try Batches.decode(bytes)
        #expect(decoded.producerID == 42)
        #expect(decoded.producerEpoch == 7)
        #expect(decoded.baseSequence == 1000)
        let header = try Batches.validate(bytes)
        #expect(header.producerID == 42)
        #expect(header.producerEpoch == 7)
        #expect(header.baseSequence == 1000)
        #expect(try Batches.generated(Batches.sample, producerID: 42, producerEpoch: 7, baseSequence: 1000) == bytes)
    }

    @Test("append(key:value:headers:timestamp:) matches append(_ record:)")
    func appendOverloads() {
        var a = RecordBatchBuilder()
        var b = RecordBatchBuilder(capacity: 0)
        for record in Batches.sample {
            a.append(record)
            b.append(key: record.key, value: record.value, headers: record.headers, timestamp: record.timestamp)
        }
        #expect(a.build() == b.build())
    }

    @Test("size and count grow with each append, and building does not consume the builder")
    func incrementalBuild() throws {
        var builder = RecordBatchBuilder(capacity: 16)
        #expect(builder.recordCount == 0)
        #expect(builder.sizeInBytes == RecordBatchLayout.headerSize)
        builder.append(Batches.sample[0])
        let size1 = builder.sizeInBytes
        #expect(size1 > RecordBatchLayout.headerSize)
        let first = builder.build()
        let firstBytes = Array(first.readableBytesView)
        #expect(builder.build() == first)

        builder.append(Batches.sample[1])
        #expect(builder.recordCount == 2)
        let second = builder.build()
        // The earlier result is unaffected by later appends.
        #expect(Array(first.readableBytesView) == firstBytes)
        #expect(try Batches.decode(first).records.count == 1)
        #expect(try Batches.decode(second).records.count == 2)
        #expect(second.readableBytes == builder.sizeInBytes)
        // Records are appended verbatim: the first record's bytes are unchanged in the larger batch.
        #expect(Array(second.readableBytesView)[80..<size1] == firstBytes[80..<size1])
        #expect(try Batches.validate(Array(second.readableBytesView)).recordCount == 2)
    }

    @Test("RecordBatchHeader write and unsafeHeaderAt round-trip")
    func headerRoundTrip() throws {
        let header = RecordBatchHeader(
            baseOffset: Int64.max - 6, partitionLeaderEpoch: -7, logAppendTime: 1_700_000_000_123, crc32c: 0xDEAD_BEEF,
            magic: 1, compression: 0, recordCount: 6, firstTimestamp: -100, maxTimestamp: Int64.max,
            producerID: 99, producerEpoch: Int32.min, baseSequence: Int32.max)
        var bytes = [UInt8](repeating: 0xCC, count: RecordBatchLayout.headerSize + 3)
        // Write at an odd offset to exercise unaligned stores and loads.
        bytes.withUnsafeMutableBytes { header.write(to: $0.baseAddress! + 3) }
        let read = bytes.withUnsafeBytes { RecordBatchHeader(unsafeHeaderAt: $0.baseAddress! + 3) }
        #expect(read == header)
        #expect(read.lastOffset == Int64.max - 1)
        // The written header is what the generated decoder reads.
        let decoded = try Batches.decode(Array(bytes[3...]))
        #expect(RecordBatchHeader(decoded) == header)
        #expect(decoded.records.isEmpty)
    }

    @Test("defaults of RecordBatchHeader.init")
    func headerDefaults() {
        let header = RecordBatchHeader(recordCount: 1, firstTimestamp: 5, maxTimestamp: 6)
        #expect(header.baseOffset == 0)
        #expect(header.partitionLeaderEpoch == 0)
        #expect(header.logAppendTime == -1)
        #expect(header.crc32c == 0)
        #expect(header.magic == RecordBatchLayout.currentMagic)
        #expect(header.compression == 0)
        #expect(header.producerID == -1)
        #expect(header.producerEpoch == -1)
        #expect(header.baseSequence == -1)
    }
}

// MARK: - Batches built with the generated code

@Suite("Batches built with generated code")
struct GeneratedBatchTests {
    @Test("pass the validator and equal the builder's bytes", arguments: Scenario.all)
    func generatedEqualsBuilder(_ scenario: Scenario) throws {
        let generated = try Batches.generated(scenario.records)
        let header = try Batches.validate(generated)
        #expect(header.recordCount == UInt32(scenario.records.count))
        #expect(header.crc32c == CRC32C.checksum(Array(generated[28...])))
        #expect(generated == Batches.buildBytes(scenario.records))
        // The header lands at the documented positions.
        #expect(Batches.header(of: generated) == header)
        #expect(generated.withUnsafeBytes { RecordBatchView($0).isCRCValid })
    }

    @Test("with every header field set to non-default values")
    func everyFieldSet() throws {
        let generated = try Batches.generated(
            Batches.sample, baseOffset: 123_456_789, partitionLeaderEpoch: 17, logAppendTime: 1_700_000_001_000,
            producerID: 5_000_000_000, producerEpoch: 3, baseSequence: 77)
        let header = try Batches.validate(generated)
        #expect(header.baseOffset == 123_456_789)
        #expect(header.partitionLeaderEpoch == 17)
        #expect(header.logAppendTime == 1_700_000_001_000)
        #expect(header.producerID == 5_000_000_000)
        #expect(header.producerEpoch == 3)
        #expect(header.baseSequence == 77)
        #expect(header.firstTimestamp == Batches.sample[0].timestamp)
        #expect(header.maxTimestamp == Batches.sample.map(\.timestamp).max())

        // The builder's batch, stamped with the same broker fields, is byte-identical.
        var built = Batches.buildBytes(Batches.sample, producerID: 5_000_000_000, producerEpoch: 3, baseSequence: 77)
        built.withUnsafeMutableBytes {
            RecordBatchHeader.stamp(
                $0.baseAddress!, baseOffset: 123_456_789, partitionLeaderEpoch: 17, logAppendTime: 1_700_000_001_000)
        }
        #expect(built == generated)
    }

    @Test("with a header field left unset is rejected as malformedHeader")
    func unsetFieldIsRejected() throws {
        var batch = try Batches.decode(Batches.buildBytes(Batches.sample))
        batch.clearCompression()  // proto3 would then omit it: the fixed layout breaks
        var bytes: [UInt8] = try batch.serializedBytes()
        #expect(bytes.count == Batches.buildBytes(Batches.sample).count - 5)
        Batches.fixCRC(&bytes)
        #expect(Batches.rejection(bytes) == .malformedHeader)
    }
}

extension RecordBatchHeader {
    /// The header as the generated decoder sees it.
    init(_ batch: Fjord_V1_RecordBatch) {
        self.init(
            baseOffset: Int64(bitPattern: batch.baseOffset), partitionLeaderEpoch: batch.partitionLeaderEpoch,
            logAppendTime: batch.logAppendTime, crc32c: batch.crc32C, magic: batch.magic, compression: batch.compression,
            recordCount: batch.recordCount, firstTimestamp: batch.firstTimestamp, maxTimestamp: batch.maxTimestamp,
            producerID: batch.producerID, producerEpoch: batch.producerEpoch, baseSequence: batch.baseSequence)
    }
}
