import FjordProto
import FjordRecords
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

/// Frames `batches` as `RecordBatchSet.batches` entries: six-byte prefix + batch, each.
/// Returns the bytes and the position of each frame.
func frame(_ batches: [[UInt8]]) -> (bytes: [UInt8], positions: [Int]) {
    var bytes: [UInt8] = []
    var positions: [Int] = []
    for batch in batches {
        positions.append(bytes.count)
        var prefix = [UInt8](repeating: 0, count: BatchFraming.prefixSize)
        prefix.withUnsafeMutableBytes { BatchFraming.writePrefix(length: batch.count, to: $0.baseAddress!) }
        bytes += prefix + batch
    }
    return (bytes, positions)
}

/// Runs a `FramedBatchIterator` to its end and returns what it saw.
func iterate(_ bytes: [UInt8], from start: Int = 0) -> (
    positions: [Int], batches: [[UInt8]], ends: [Int], stop: FramedBatchIterator.StopReason, position: Int
) {
    bytes.withUnsafeBytes { raw in
        var iterator = FramedBatchIterator(raw, from: start)
        var positions: [Int] = []
        var batches: [[UInt8]] = []
        var ends: [Int] = []
        while let element = iterator.next() {
            positions.append(element.position)
            batches.append(Array(element.batch.bytes))
            ends.append(element.end)
        }
        // Once stopped, it stays stopped.
        let stop = iterator.stopReason
        #expect(iterator.next() == nil)
        #expect(iterator.stopReason == stop)
        return (positions, batches, ends, stop, iterator.position)
    }
}

@Suite("BatchFraming")
struct BatchFramingTests {
    static let lengths: [Int] = [0, 1, 127, 128, 16383, 16384, 1 << 21, 1 << 28, Int(Int32.max)]

    /// Decodes a protobuf varint the ordinary way.
    static func decodeVarint(_ bytes: ArraySlice<UInt8>) -> UInt64? {
        var value: UInt64 = 0
        for (i, byte) in bytes.enumerated() {
            value |= UInt64(byte & 0x7F) << (7 * UInt64(i))
            if byte & 0x80 == 0 { return value }
        }
        return nil
    }

    @Test("writePrefix and readPrefix round-trip", arguments: lengths)
    func prefixRoundTrip(length: Int) {
        // Write at an odd offset: frames sit at arbitrary positions in a segment.
        var bytes = [UInt8](repeating: 0xEE, count: BatchFraming.prefixSize + 2)
        bytes.withUnsafeMutableBytes { BatchFraming.writePrefix(length: length, to: $0.baseAddress! + 1) }
        #expect(bytes[0] == 0xEE && bytes[7] == 0xEE, "writes exactly six bytes")
        let prefix = bytes[1..<7]
        #expect(prefix.first == 0x0A)
        #expect(prefix.dropFirst().dropLast().allSatisfy { $0 & 0x80 != 0 }, "continuation bits on bytes 1-4")
        #expect(prefix.last! <= 0x07)
        #expect(Self.decodeVarint(prefix.dropFirst()) == UInt64(length), "a standard varint decoder agrees")
        #expect(bytes.withUnsafeBytes { BatchFraming.readPrefix($0.baseAddress! + 1) } == length)
    }

    @Test("prefix bytes for known lengths")
    func knownPrefixes() {
        func prefix(_ length: Int) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: 6)
            bytes.withUnsafeMutableBytes { BatchFraming.writePrefix(length: length, to: $0.baseAddress!) }
            return bytes
        }
        #expect(prefix(0) == [0x0A, 0x80, 0x80, 0x80, 0x80, 0x00])
        #expect(prefix(1) == [0x0A, 0x81, 0x80, 0x80, 0x80, 0x00])
        #expect(prefix(300) == [0x0A, 0xAC, 0x82, 0x80, 0x80, 0x00])
        #expect(prefix(Int(Int32.max)) == [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x07])
        #expect(BatchFraming.prefixSize == 6)
        #expect(BatchFraming.tag == 0x0A)
        #expect(BatchFraming.maxBatchLength == Int(Int32.max))
    }

    static let rejectedPrefixes: [[UInt8]] = [
        [0x0B, 0x80, 0x80, 0x80, 0x80, 0x00],  // wrong tag
        [0x00, 0x80, 0x80, 0x80, 0x80, 0x00],  // wrong tag
        [0x12, 0x80, 0x80, 0x80, 0x80, 0x00],  // RecordBatchSet field 2
        [0x0A, 0x00, 0x80, 0x80, 0x80, 0x00],  // missing continuation, byte 1
        [0x0A, 0x80, 0x00, 0x80, 0x80, 0x00],  // missing continuation, byte 2
        [0x0A, 0x80, 0x80, 0x7F, 0x80, 0x00],  // missing continuation, byte 3
        [0x0A, 0x80, 0x80, 0x80, 0x01, 0x00],  // missing continuation, byte 4
        [0x0A, 0x05, 0x00, 0x00, 0x00, 0x00],  // a minimal varint (not padded)
        [0x0A, 0x80, 0x80, 0x80, 0x80, 0x08],  // last byte > 7
        [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],  // last byte > 7 (would be 2^32 - 1)
        [0x0A, 0x80, 0x80, 0x80, 0x80, 0x80],  // continuation on the last byte
        [0x0A, 0x80, 0x80, 0x80, 0x80, 0xFF],
    ]

    @Test("readPrefix rejects malformed prefixes", arguments: rejectedPrefixes)
    func rejects(prefix: [UInt8]) {
        #expect(prefix.withUnsafeBytes { BatchFraming.readPrefix($0.baseAddress!) } == nil)
    }

    static let batches: [[UInt8]] = [
        Batches.buildBytes(Batches.sample),
        Batches.buildBytes([Record(key: nil, value: nil, timestamp: -5)], producerID: 9, producerEpoch: 1, baseSequence: 0),
        Batches.buildBytes((0..<50).map { Record(key: [UInt8($0)], value: randomBytes($0 * 7, seed: UInt64($0)), timestamp: Int64($0)) }),
        Batches.buildBytes([Record(key: Batches.utf8("big"), value: randomBytes(20_000, seed: 77), timestamp: 1)]),
    ]

    @Test("framed batches decode as a RecordBatchSet with the generated code")
    func decodesAsRecordBatchSet() throws {
        // Stamp each batch as the log would, so the batches differ in their broker fields too.
        var stamped = Self.batches
        for i in stamped.indices {
            stamped[i].withUnsafeMutableBytes {
                RecordBatchHeader.stamp(
                    $0.baseAddress!, baseOffset: Int64(i * 100), partitionLeaderEpoch: 3, logAppendTime: 1_700_000_000_000 + Int64(i))
            }
        }
        let (bytes, _) = frame(stamped)
        let set = try Fjord_V1_RecordBatchSet(serializedBytes: bytes)
        #expect(set.batches.count == stamped.count)
        for (i, batch) in set.batches.enumerated() {
            let expected = try Batches.decode(stamped[i])
            #expect(batch == expected, "batch \(i)")
            #expect(batch.baseOffset == UInt64(i * 100))
            #expect(batch.logAppendTime == 1_700_000_000_000 + Int64(i))
        }
        #expect(set.unknownFields.data.isEmpty)

        // The generated encoder writes minimal varints instead, so its bytes differ, but it
        // decodes to the same set; and every batch re-encodes to exactly the framed bytes.
        let reencoded: [UInt8] = try set.serializedBytes()
        #expect(reencoded.count == bytes.count - stamped.reduce(0) { $0 + 5 - Self.varintSize($1.count) })
        #expect(try Fjord_V1_RecordBatchSet(serializedBytes: reencoded) == set)
        for (i, batch) in set.batches.enumerated() {
            let batchBytes: [UInt8] = try batch.serializedBytes()
            #expect(batchBytes == stamped[i])
        }
    }

    static func varintSize(_ value: Int) -> Int {
        var size = 1
        var v = value >> 7
        while v > 0 { size += 1; v >>= 7 }
        return size
    }

    @Test("a run of no frames is an empty RecordBatchSet")
    func emptySet() throws {
        #expect(try Fjord_V1_RecordBatchSet(serializedBytes: [UInt8]()).batches.isEmpty)
        let result = iterate([])
        #expect(result.positions.isEmpty)
        #expect(result.stop == .endOfBytes)
    }

    @Test("FramedBatchIterator yields every frame, then endOfBytes")
    func iteratesFrames() throws {
        let (bytes, positions) = frame(Self.batches)
        let result = iterate(bytes)
        #expect(result.positions == positions)
        #expect(result.batches == Self.batches)
        #expect(result.ends == Array(positions.dropFirst()) + [bytes.count])
        #expect(result.stop == .endOfBytes)
        #expect(result.position == bytes.count)
        // Each yielded view reads the batch it frames.
        bytes.withUnsafeBytes { raw in
            var iterator = FramedBatchIterator(raw)
            var index = 0
            while let element = iterator.next() {
                #expect(element.batch.isCRCValid)
                #expect(element.batch.header == Batches.header(of: Self.batches[index]))
                #expect(element.batch.bytes.baseAddress == raw.baseAddress! + element.position + 6)
                index += 1
            }
            #expect(index == Self.batches.count)
        }
    }

    @Test("FramedBatchIterator starts at a given frame", arguments: 0..<4)
    func startsAtPosition(index: Int) {
        let (bytes, positions) = frame(Self.batches)
        let result = iterate(bytes, from: positions[index])
        #expect(result.positions == Array(positions[index...]))
        #expect(result.batches == Array(Self.batches[index...]))
        #expect(result.stop == .endOfBytes)
    }

    @Test("truncated at every cut inside the last frame")
    func truncatedEverywhere() {
        let small = [
            Batches.buildBytes([Record(key: Batches.utf8("a"), value: Batches.utf8("1"), timestamp: 1)]),
            Batches.buildBytes(Batches.sample),
            Batches.buildBytes([Record(key: nil, value: randomBytes(100, seed: 3), timestamp: 2)]),
        ]
        let (bytes, positions) = frame(small)
        let lastStart = positions.last!
        for cut in (lastStart + 1)..<bytes.count {
            let result = iterate(Array(bytes[..<cut]))
            #expect(result.positions == Array(positions.dropLast()), "cut at \(cut)")
            #expect(result.batches == Array(small.dropLast()), "cut at \(cut)")
            #expect(result.stop == .truncated(position: lastStart), "cut at \(cut)")
            #expect(result.position == lastStart, "cut at \(cut)")
        }
        // A cut exactly on the frame boundary is a clean end.
        let clean = iterate(Array(bytes[..<lastStart]))
        #expect(clean.stop == .endOfBytes)
        #expect(clean.positions == Array(positions.dropLast()))
    }

    @Test("malformed at garbage after whole frames")
    func garbageAfterFrames() {
        let (bytes, positions) = frame(Self.batches)
        let garbage: [[UInt8]] = [
            [0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x01, 0x02, 0x03],
            [UInt8](repeating: 0, count: 64),  // zero-filled tail, as a preallocated file would have
            [0x0A, 0x80, 0x80, 0x80, 0x80, 0x08] + [UInt8](repeating: 0, count: 100),  // last prefix byte > 7
            [0x0A, 0x05, 0x00, 0x00, 0x00, 0x00] + [UInt8](repeating: 0, count: 100),  // unpadded length
        ]
        for tail in garbage {
            let result = iterate(bytes + tail)
            #expect(result.positions == positions)
            #expect(result.stop == .malformed(position: bytes.count), "tail \(tail.prefix(6))")
            #expect(result.position == bytes.count)
        }
    }

    @Test("malformed when a frame is shorter than a batch header", arguments: [0, 1, 79])
    func frameTooShortForHeader(length: Int) {
        let (good, _) = frame([Self.batches[0]])
        var bytes = good
        var prefix = [UInt8](repeating: 0, count: 6)
        prefix.withUnsafeMutableBytes { BatchFraming.writePrefix(length: length, to: $0.baseAddress!) }
        bytes += prefix + [UInt8](repeating: 0x55, count: 200)
        let result = iterate(bytes)
        #expect(result.positions == [0])
        #expect(result.stop == .malformed(position: good.count))
    }

    @Test("malformed at garbage at the very start")
    func garbageAtStart() {
        let (bytes, _) = frame(Self.batches)
        var damaged = bytes
        damaged[0] = 0x0B
        let result = iterate(damaged)
        #expect(result.positions.isEmpty)
        #expect(result.stop == .malformed(position: 0))
    }
}

@Suite("RecordBatchView")
struct RecordBatchViewTests {
    static let timestamps: [Int64] = [1000, 1005, 995, 1010, 1010, 1020, 1000]

    static let batch: [UInt8] = Batches.buildBytes(
        timestamps.enumerated().map { i, t in Record(key: [UInt8(i)], value: [UInt8(i)], timestamp: t) })

    @Test(
        "firstRecordIndex(withTimestampAtLeast:)",
        arguments: [
            (Int64.min, 0), (0, 0), (-1, 0), (999, 0), (1000, 0),  // at or before the first
            (1001, 1), (1005, 1),  // exact match of a later record
            (1006, 3), (1010, 3), (1011, 5), (1020, 5),  // exact match of max_timestamp
            (1021, nil), (Int64.max, nil),  // after max_timestamp
        ] as [(Int64, Int?)])
    func firstRecordIndex(timestamp: Int64, expected: Int?) {
        Self.batch.withUnsafeBytes { raw in
            let view = RecordBatchView(raw)
            #expect(view.firstRecordIndex(withTimestampAtLeast: timestamp) == expected)
            // Agrees with a scan of the decoded timestamps.
            #expect(Self.timestamps.firstIndex { $0 >= timestamp } == expected)
        }
    }

    @Test("firstRecordIndex with negative deltas and zero deltas")
    func firstRecordIndexNegative() {
        let timestamps: [Int64] = [-5, -10, -5, 0, -20, 7]
        let bytes = Batches.buildBytes(timestamps.map { Record(value: nil, timestamp: $0) })
        bytes.withUnsafeBytes { raw in
            let view = RecordBatchView(raw)
            for t in Int64(-25)...Int64(10) {
                #expect(view.firstRecordIndex(withTimestampAtLeast: t) == timestamps.firstIndex { $0 >= t }, "t = \(t)")
            }
        }
    }

    @Test("firstRecordIndex skips unknown fields between records")
    func firstRecordIndexUnknownFields() {
        // Record 0 at 1000, unknown field 16, record 1 at 1003 (delta zigzag 6).
        let bytes = Batches.handBuilt(
            body: [0x7A, 0x00, 0x80, 0x01, 0x01, 0x7A, 0x02, 0x08, 0x06], recordCount: 2, firstTimestamp: 1000,
            maxTimestamp: 1003)
        #expect(Batches.rejection(bytes) == nil)
        bytes.withUnsafeBytes { raw in
            let view = RecordBatchView(raw)
            #expect(view.firstRecordIndex(withTimestampAtLeast: 1000) == 0)
            #expect(view.firstRecordIndex(withTimestampAtLeast: 1001) == 1)
            #expect(view.firstRecordIndex(withTimestampAtLeast: 1003) == 1)
            #expect(view.firstRecordIndex(withTimestampAtLeast: 1004) == nil)
        }
    }

    @Test("header accessors")
    func accessors() throws {
        var bytes = Self.batch
        bytes.withUnsafeMutableBytes {
            RecordBatchHeader.stamp($0.baseAddress!, baseOffset: 500, partitionLeaderEpoch: 2, logAppendTime: 123_456)
        }
        let decoded = try Batches.decode(bytes)
        bytes.withUnsafeBytes { raw in
            let view = RecordBatchView(raw)
            #expect(view.baseOffset == 500)
            #expect(view.recordCount == UInt32(Self.timestamps.count))
            #expect(view.lastOffset == 500 + Int64(Self.timestamps.count) - 1)
            #expect(view.maxTimestamp == 1020)
            #expect(view.logAppendTime == 123_456)
            #expect(view.isCRCValid)
            #expect(view.header == RecordBatchHeader(decoded))
            #expect(view.header.firstTimestamp == 1000)
            #expect(view.header.partitionLeaderEpoch == 2)
        }
    }
}
