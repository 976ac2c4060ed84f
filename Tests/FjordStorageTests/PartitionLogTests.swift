import FjordRecords
import FjordStorage
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import SystemPackage
import Testing

/// The partition log's contract on real files: offsets, reads, indexes, time lookups, durability,
/// concurrency, truncation, rolling, and errors.
@Suite struct PartitionLogTests {
    @Test func roundTripAcrossManySegmentsAndReopens() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            var log = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            var next = 0
            var expected: [String] = []
            for i in 0..<600 {
                let count = 1 + i % 7
                let result = try await log.append(batch(first: next, count: count, valueSize: i % 50))
                #expect(result.baseOffset == Int64(next))
                #expect(result.lastOffset == Int64(next + count - 1))
                expected += (next..<next + count).map { valueString($0, size: i % 50) }
                next += count
            }
            #expect(log.segmentCount > 10)
            #expect(log.logEndOffset == Int64(next))
            #expect(try await values(log) == expected)
            try await log.close()

            // Clean reopen: no scan, same data.
            log = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            #expect(log.logEndOffset == Int64(next))
            #expect(try await values(log) == expected)
            try await log.close()

            // Unclean reopen: the tail is scanned, same data.
            try FileManager.default.removeItem(atPath: directory.appending(".clean-shutdown").string)
            log = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            #expect(try await values(log) == expected)
            try await log.close()
        }
    }

    @Test func everyOffsetIsFoundAtEverySegmentBoundary() async throws {
        try await inTemporaryDirectory { root in
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: smallConfiguration())
            for i in 0..<150 { try await log.append(batch(first: i * 4, count: 4, valueSize: 60)) }
            let end = log.logEndOffset
            for offset in 0..<end {
                let read = try log.readBlocking(from: offset, maxBytes: 1)
                let batches = read.records.withUnsafeBytes { bytes in
                    var iterator = FramedBatchIterator(bytes)
                    var found: [(Int64, Int64)] = []
                    while let framed = iterator.next() { found.append((framed.batch.baseOffset, framed.batch.lastOffset)) }
                    return found
                }
                #expect(batches.count == 1)
                #expect(batches[0].0 <= offset && offset <= batches[0].1)
                #expect(read.records.firstOffset == batches[0].0)
            }
            for base in log.segmentBaseOffsets.dropFirst() {
                #expect(try log.readBlocking(from: base, maxBytes: 1).records.firstOffset == base)
                #expect(try log.readBlocking(from: base - 1, maxBytes: 1).records.nextOffset == base)
            }
            let atEnd = try log.readBlocking(from: end, maxBytes: 1 << 20)
            #expect(atEnd.records.isEmpty)
            #expect(atEnd.logEndOffset == end)
            let error = try #require(throws: StorageError.self) { _ = try log.readBlocking(from: end + 1, maxBytes: 10) }
            #expect(error.code == .offsetOutOfRange)
            #expect(error.logStartOffset == 0 && error.logEndOffset == end)
            try await log.close()
        }
    }

    @Test func readsRespectMaxBytesAndStopAtBatchBoundaries() async throws {
        try await inTemporaryDirectory { root in
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: smallConfiguration())
            for i in 0..<100 { try await log.append(batch(first: i * 2, count: 2, valueSize: 100)) }
            for maxBytes in [1, 200, 500, 1000, 3000, 100_000] {
                var offset: Int64 = 0
                while offset < log.logEndOffset {
                    let read = try log.readBlocking(from: offset, maxBytes: maxBytes)
                    let frames = read.records.withUnsafeBytes { bytes in
                        var iterator = FramedBatchIterator(bytes)
                        var count = 0
                        while iterator.next() != nil { count += 1 }
                        #expect(iterator.stopReason == .endOfBytes)
                        return count
                    }
                    #expect(frames >= 1)
                    #expect(read.records.count <= maxBytes || frames == 1)
                    #expect(read.records.count <= smallConfiguration().segmentBytes)
                    offset = read.records.nextOffset
                }
            }
            try await log.close()
        }
    }

    @Test(arguments: [LogConfiguration.TimestampType.createTime, .logAppendTime])
    func offsetForTimestamp(type: LogConfiguration.TimestampType) async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.timestampType = type
            let clock = TestClock(start: 5_000)
            let log = try await PartitionLog.open(
                directory: root.appending("log"), configuration: configuration, clock: clock.read)
            // Record i has timestamp 1000 + 10 i; batch b is appended at clock 5000 + 100 b.
            for b in 0..<80 {
                clock.set(5_000 + 100 * Int64(b))
                try await log.append(batch(first: b * 3, count: 3, valueSize: 40, timestampBase: 1_000, timestampStep: 10))
            }
            if type == .createTime {
                for i in 0..<240 {
                    let t = 1_000 + 10 * Int64(i)
                    #expect(try await log.offset(forTimestamp: t) == Int64(i))
                    #expect(try await log.offset(forTimestamp: t - 5) == Int64(i))
                }
                #expect(try await log.offset(forTimestamp: 0) == 0)
                #expect(try await log.offset(forTimestamp: 1_000 + 10 * 240) == nil)
            } else {
                for b in 0..<80 {
                    #expect(try await log.offset(forTimestamp: 5_000 + 100 * Int64(b)) == Int64(b * 3))
                    #expect(try await log.offset(forTimestamp: 5_000 + 100 * Int64(b) - 50) == Int64(b * 3))
                }
                #expect(try await log.offset(forTimestamp: 5_000 + 100 * 80) == nil)
            }
            try await log.close()
        }
    }

    @Test func missingZeroedOrTornIndexesAreRebuilt() async throws {
        for damage in ["delete", "zero", "tear"] {
            for clean in [true, false] {
                try await inTemporaryDirectory { root in
                    let directory = root.appending("log")
                    var configuration = smallConfiguration()
                    configuration.segmentBytes = 64 * 1024
                    var log = try await PartitionLog.open(directory: directory, configuration: configuration)
                    for i in 0..<100 { try await log.append(batch(first: i * 3, count: 3, valueSize: 80)) }
                    let expected = try await values(log)
                    try await log.close()
                    if !clean { try FileManager.default.removeItem(atPath: directory.appending(".clean-shutdown").string) }
                    let index = directory.appending("00000000000000000000.index").string
                    let timeIndex = directory.appending("00000000000000000000.timeindex").string
                    let size = try #require(try FileManager.default.attributesOfItem(atPath: index)[.size] as? Int)
                    #expect(size > 8)
                    switch damage {
                    case "delete":
                        try FileManager.default.removeItem(atPath: index)
                        try FileManager.default.removeItem(atPath: timeIndex)
                    case "zero":
                        try Data(count: size).write(to: URL(fileURLWithPath: index))
                    default:
                        try Data(try Data(contentsOf: URL(fileURLWithPath: index)).prefix(size - 3)).write(to: URL(fileURLWithPath: index))
                    }
                    log = try await PartitionLog.open(directory: directory, configuration: configuration)
                    let rebuilt = try #require(try FileManager.default.attributesOfItem(atPath: index)[.size] as? Int)
                    #expect(rebuilt == size, "\(damage) clean=\(clean)")
                    #expect(try await values(log) == expected)
                    try await log.close()
                }
            }
        }
    }

    @Test func truncationKeepsHeldViewsAndContinuesAppending() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let log = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            var bases: [Int64] = []
            for i in 0..<120 { bases.append(try await log.append(batch(first: i * 2, count: 2, valueSize: 50)).baseOffset) }
            let segments = log.segmentBaseOffsets
            #expect(segments.count > 3)
            let activeBase = segments.last!
            let held = try await log.read(from: activeBase, maxBytes: 1 << 20)
            let heldBytes = held.records.withUnsafeBytes { Array($0) }

            // Mid-batch offsets are refused.
            let error = try await #require(throws: StorageError.self) { try await log.truncate(to: activeBase + 1) }
            #expect(error.code == .invalidArgument)

            // Into the active segment.
            let cut1 = try #require(bases.first { $0 > activeBase })
            try await log.truncate(to: cut1)
            #expect(log.logEndOffset == cut1)
            held.records.withUnsafeBytes { #expect(Array($0) == heldBytes) }

            // Into an older segment: later segments go.
            let cut2 = try #require(bases.first { $0 > segments[1] })
            try await log.truncate(to: cut2)
            #expect(log.logEndOffset == cut2)
            #expect(log.segmentBaseOffsets.last! <= cut2)
            held.records.withUnsafeBytes { bytes in
                #expect(Array(bytes) == heldBytes)
                var iterator = FramedBatchIterator(bytes)
                while let framed = iterator.next() { #expect(framed.batch.isCRCValid) }
            }
            let appended = try await log.append(batch(first: Int(cut2), count: 2, valueSize: 50))
            #expect(appended.baseOffset == cut2)
            let expected = try await values(log)
            #expect(expected.count == Int(cut2) + 2)
            try await log.close()

            let reopened = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            #expect(try await values(reopened) == expected)
            try await reopened.close()
        }
    }

    @Test func retentionAndTruncationRunningTogetherLeaveAConsistentLog() async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.retention = .init(milliseconds: nil, bytes: 8 * 1024)
            let directory = root.appending("log")
            let log = try await PartitionLog.open(directory: directory, configuration: configuration)
            var bases: [Int64] = []
            for i in 0..<200 { bases.append(try await log.append(batch(first: i, count: 1, valueSize: 100)).baseOffset) }
            let cut = bases[190]
            async let retained = log.applyRetention()
            async let truncated: Void = log.truncate(to: cut)
            _ = try await (retained, truncated)
            #expect(log.logEndOffset == cut)
            #expect(log.logStartOffset == log.segmentBaseOffsets[0])
            let expected = (Int(log.logStartOffset)..<Int(cut)).map { valueString($0, size: 100) }
            #expect(try await values(log) == expected)
            try await log.close()
            let reopened = try await PartitionLog.open(directory: directory, configuration: configuration)
            #expect(reopened.logStartOffset == log.logStartOffset)
            #expect(try await values(reopened) == expected)
            try await reopened.close()
        }
    }

    @Test(arguments: [false, true])
    func concurrentDurableAppendsShareFsyncs(everyBatchPolicy: Bool) async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.segmentBytes = 1 << 20
            if everyBatchPolicy { configuration.flushPolicy = .everyBatch }
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: configuration)
            let offsets = try await withThrowingTaskGroup(of: Int64.self) { group in
                for i in 0..<64 {
                    group.addTask {
                        try await log.append(
                            batch(first: i, count: 1, valueSize: 200), durability: everyBatchPolicy ? .written : .durable
                        ).baseOffset
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(offsets.sorted() == (0..<64).map(Int64.init))
            #expect(log.recoveryPoint >= 64)
            try await log.close()
        }
    }

    @Test func intervalFlushPolicyAdvancesTheRecoveryPointWithoutBeingAsked() async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.flushPolicy = .interval(milliseconds: 20)
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: configuration)
            for i in 0..<10 { try await log.append(batch(first: i, count: 1, valueSize: 10)) }
            let deadline = ContinuousClock.now + .seconds(5)
            while log.recoveryPoint < 10 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(log.recoveryPoint == 10)
            try await log.close()
        }
    }

    @Test func manyPartitionsAppendAndReadInParallel() async throws {
        try await inTemporaryDirectory { root in
            let logs = try await withThrowingTaskGroup(of: PartitionLog.self) { group in
                for p in 0..<16 {
                    group.addTask { try await PartitionLog.open(directory: root.appending("p\(p)"), configuration: smallConfiguration()) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for log in logs {
                    for appender in 0..<8 {
                        group.addTask {
                            for sequence in 0..<100 {
                                var builder = RecordBatchBuilder()
                                builder.append(Record(value: Array("\(appender):\(sequence)".utf8), timestamp: 1))
                                try await log.append(builder.build())
                            }
                        }
                    }
                    group.addTask {
                        // A reader polling the log while it grows.
                        var offset: Int64 = 0
                        while offset < 800 {
                            let read = try await log.read(from: offset, maxBytes: 4096)
                            offset = read.records.nextOffset
                            if read.records.isEmpty { await Task.yield() }
                        }
                    }
                }
                try await group.waitForAll()
            }
            for log in logs {
                #expect(log.logEndOffset == 800)
                var last = [Int](repeating: -1, count: 8)
                for value in try await values(log) {
                    let parts = value.split(separator: ":").compactMap { Int($0) }
                    #expect(parts[1] == last[parts[0]] + 1)
                    last[parts[0]] = parts[1]
                }
                #expect(last == [Int](repeating: 99, count: 8))
                try await log.close()
            }
        }
    }

    @Test func invalidBatchesAreRejectedAndChangeNothing() async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.maxBatchBytes = 1024
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: configuration)
            try await log.append(batch(first: 0, count: 2, valueSize: 10))
            var corrupt = batch(first: 2, count: 2, valueSize: 10)
            corrupt.setInteger(UInt8(0xEE), at: 60)
            let crc = try await #require(throws: StorageError.self) { try await log.append(corrupt) }
            #expect(crc.code == .invalidBatch)
            #expect(crc.batchError?.code == .crcMismatch)
            let large = try await #require(throws: StorageError.self) {
                try await log.append(batch(first: 2, count: 1, valueSize: 2000))
            }
            #expect(large.batchError?.code == .tooLarge)
            #expect(log.logEndOffset == 2)
            #expect(try await log.append(batch(first: 2, count: 2, valueSize: 10)).baseOffset == 2)
            #expect(try await values(log) == (0..<4).map { valueString($0, size: 10) })
            try await log.close()
        }
    }

    @Test func activeSegmentRollsByAge() async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.segmentBytes = 1 << 20
            configuration.segmentMilliseconds = 1_000
            let clock = TestClock(start: 10_000)
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: configuration, clock: clock.read)
            try await log.append(batch(first: 0, count: 1, valueSize: 10))
            clock.set(10_999)
            try await log.append(batch(first: 1, count: 1, valueSize: 10))
            #expect(log.segmentCount == 1)
            clock.set(11_000)
            try await log.append(batch(first: 2, count: 1, valueSize: 10))
            #expect(log.segmentBaseOffsets == [0, 2])
            try await log.close()
        }
    }

    @Test func closedLogRefusesAppendsAndCloseIsIdempotent() async throws {
        try await inTemporaryDirectory { root in
            let log = try await PartitionLog.open(directory: root.appending("log"))
            try await log.append(batch(first: 0, count: 1, valueSize: 1))
            try await log.close()
            try await log.close()
            let error = try await #require(throws: StorageError.self) { try await log.append(batch(first: 1, count: 1, valueSize: 1)) }
            #expect(error.code == .logClosed)
        }
    }

    @Test func retentionByTimeDeletesOnlyExpiredSegments() async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.retention = .init(milliseconds: 1_000, bytes: nil)
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: configuration)
            // Old records (timestamps ~1000), then new ones (~100_000).
            for i in 0..<60 { try await log.append(batch(first: i, count: 1, valueSize: 200, timestampBase: 1_000 + Int64(i))) }
            let oldEnd = log.logEndOffset
            let oldSegments = log.segmentCount
            for i in 0..<60 { try await log.append(batch(first: 60 + i, count: 1, valueSize: 200, timestampBase: 100_000)) }
            let result = try await log.applyRetention(now: 100_500)
            #expect(result.deletedSegments.count >= oldSegments - 1)
            #expect(log.logStartOffset <= oldEnd)
            #expect(log.logStartOffset == log.segmentBaseOffsets[0])
            // Nothing younger than the retention time was deleted.
            #expect(try await log.offset(forTimestamp: 100_000) == oldEnd)
            try await log.close()
        }
    }
}

// MARK: - Support

private func valueString(_ i: Int, size: Int? = nil) -> String {
    let text = "value-\(i)"
    guard let size, size > text.count else { return text }
    return text + String(repeating: "x", count: size - text.count)
}

private func batch(
    first: Int, count: Int, valueSize: Int, timestampBase: Int64 = 1_700_000_000_000, timestampStep: Int64 = 0
) -> ByteBuffer {
    var builder = RecordBatchBuilder()
    for i in first..<first + count {
        builder.append(
            Record(
                key: Array("key-\(i)".utf8), value: Array(valueString(i, size: valueSize).utf8),
                timestamp: timestampBase + timestampStep * Int64(i)))
    }
    return builder.build()
}

