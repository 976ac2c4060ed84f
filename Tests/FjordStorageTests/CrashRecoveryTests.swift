import FjordRecords
import FjordStorage
import Foundation
import NIOCore
import SystemPackage
import Testing

/// Recovery after crashes and damage, on real files: torn tails at every byte, flipped bytes,
/// and views that outlive retention.
@Suite struct CrashRecoveryTests {
    @Test func tornTailIsTruncatedAtEveryBytePositionOfTheLastBatch() async throws {
        try await inTemporaryDirectory { root in
            let source = root.appending("source")
            let log = try await PartitionLog.open(directory: source, configuration: smallConfiguration())
            for i in 0..<6 { try await log.append(batch(first: i * 3, count: 3)) }
            try await log.flush()
            try await log.close()
            // A crash before the last batch was fsynced: no marker, and no recovery point past it.
            try FileManager.default.removeItem(atPath: source.appending(".clean-shutdown").string)
            try FileManager.default.removeItem(atPath: source.appending("recovery-point").string)
            let segment = source.appending("00000000000000000000.log").string
            let full = try Data(contentsOf: URL(fileURLWithPath: segment))
            let lastFrame = try lastFramePosition(full)

            for cut in lastFrame..<full.count {
                let copy = root.appending("cut-\(cut)")
                try FileManager.default.copyItem(atPath: source.string, toPath: copy.string)
                try full.prefix(cut).write(to: URL(fileURLWithPath: copy.appending("00000000000000000000.log").string))
                let reopened = try await PartitionLog.open(directory: copy, configuration: smallConfiguration())
                #expect(reopened.logEndOffset == 15, "cut at \(cut)")
                #expect(try await values(reopened) == (0..<15).map { "value-\($0)" })
                let appended = try await reopened.append(batch(first: 15, count: 3))
                #expect(appended.baseOffset == 15)
                #expect(try await values(reopened) == (0..<18).map { "value-\($0)" })
                try await reopened.close()
                try FileManager.default.removeItem(atPath: copy.string)
            }
        }
    }

    @Test func flippedByteInTheLastBatchIsATornTailButInAMiddleBatchIsCorruption() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let log = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            for i in 0..<5 { try await log.append(batch(first: i * 3, count: 3)) }
            try await log.close()
            try FileManager.default.removeItem(atPath: directory.appending(".clean-shutdown").string)
            let path = directory.appending("00000000000000000000.log").string
            let original = try Data(contentsOf: URL(fileURLWithPath: path))
            let frames = try framePositions(original)

            // A middle batch: valid batches follow, so this is corruption, reported with file and position.
            var damaged = original
            damaged[frames[2] + BatchFraming.prefixSize + 50] ^= 0x40
            try damaged.write(to: URL(fileURLWithPath: path))
            let error = try await #require(throws: StorageError.self) {
                _ = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            }
            #expect(error.code == .corruptSegment)
            #expect(error.path?.string == path)
            #expect(error.position == frames[2])

            // A damaged length prefix in the middle: still corruption, never a silent truncation.
            damaged = original
            damaged[frames[1] + 2] ^= 0x01
            try damaged.write(to: URL(fileURLWithPath: path))
            let lengthError = try await #require(throws: StorageError.self) {
                _ = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            }
            #expect(lengthError.code == .corruptSegment)
            #expect(lengthError.position == frames[1])

            // The last batch, written after the last fsync (no recovery point past it): nothing
            // valid after it, so it is a torn write and is dropped.
            try FileManager.default.removeItem(atPath: directory.appending("recovery-point").string)
            damaged = original
            damaged[frames[4] + BatchFraming.prefixSize + 50] ^= 0x40
            try damaged.write(to: URL(fileURLWithPath: path))
            let reopened = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            #expect(reopened.logEndOffset == 12)
            #expect(try await values(reopened) == (0..<12).map { "value-\($0)" })
            try await reopened.close()
        }
    }

    @Test func sliceStaysReadableAfterRetentionDeletesItsSegment() async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.retention = .init(milliseconds: nil, bytes: 1)
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: configuration)
            for i in 0..<200 { try await log.append(batch(first: i * 3, count: 3)) }
            #expect(log.segmentCount > 3)
            let held = try await log.read(from: 0, maxBytes: 1 << 20)
            let heldBytes = held.records.withUnsafeBytes { Array($0) }

            let result = try await log.applyRetention()
            #expect(result.deletedSegments.first == 0)
            #expect(log.segmentCount == 1)
            #expect(log.logStartOffset == log.segmentBaseOffsets[0])
            #expect(!FileManager.default.fileExists(atPath: root.appending("log/00000000000000000000.log").string))

            // The deleted segment's bytes are still mapped, unchanged and valid.
            held.records.withUnsafeBytes { bytes in
                #expect(Array(bytes) == heldBytes)
                var iterator = FramedBatchIterator(bytes)
                var count = 0
                while let framed = iterator.next() {
                    #expect(framed.batch.isCRCValid)
                    count += 1
                }
                #expect(count > 0)
            }
            let error = try await #require(throws: StorageError.self) { _ = try await log.read(from: 0, maxBytes: 100) }
            #expect(error.code == .offsetOutOfRange)
            #expect(error.logStartOffset == log.logStartOffset)
            #expect(error.logEndOffset == 600)
            try await log.close()
        }
    }
}

// MARK: - Support

func batch(first: Int, count: Int) -> ByteBuffer {
    var builder = RecordBatchBuilder()
    for i in first..<first + count {
        builder.append(Record(key: Array("key-\(i)".utf8), value: Array("value-\(i)".utf8), timestamp: 1_700_000_000_000 + Int64(i)))
    }
    return builder.build()
}

func framePositions(_ data: Data) throws -> [Int] {
    try data.withUnsafeBytes { bytes in
        var iterator = FramedBatchIterator(bytes)
        var positions: [Int] = []
        while let framed = iterator.next() { positions.append(framed.position) }
        try #require(iterator.stopReason == .endOfBytes)
        return positions
    }
}

private func lastFramePosition(_ data: Data) throws -> Int {
    try #require(try framePositions(data).last)
}
