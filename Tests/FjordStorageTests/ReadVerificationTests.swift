#if canImport(Glibc)
import Glibc
#endif
import FjordRecords
import Foundation
import NIOCore
import Synchronization
import SystemPackage
import Testing

@testable import FjordStorage

/// What the read path's verification keeps and when it verifies again: damaged offsets never
/// trap, pages read from disk again are verified again, the verified ranges of a segment, the
/// scrubber, a damaged log's close, and `fjord log repair`'s edge cases.
@Suite struct ReadVerificationTests {
    let support = IntegrityTests()

    /// Writes ``IntegrityTests/writeLog(_:)``'s log, closes it, and applies `damage` to the frame
    /// numbered `frame` of its second segment; returns the segments' bases, that segment's path,
    /// its frame positions and its damaged bytes.
    func writeLogAndDamageTheSecondSegment(
        _ directory: FilePath, _ damage: IntegrityTests.Damage, frame: Int
    ) async throws -> (bases: [Int64], path: String, frames: [Int], data: Data) {
        let log = try await support.writeLog(directory)
        let bases = log.segmentBaseOffsets
        try await log.close()
        let path = support.segmentPath(directory, bases[1])
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        let frames = try framePositions(data)
        damage.apply(to: &data, frame: frames[frame])
        try data.write(to: URL(fileURLWithPath: path))
        return (bases, path, frames, data)
    }

    /// Overwrites `bytes` at `position` of the file in place (through the page cache, like a
    /// process writing it; the log's map sees the change).
    func overwrite(_ path: String, at position: Int, with bytes: Data) throws {
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(position))
        try handle.write(contentsOf: bytes)
        try handle.synchronize()
        try handle.close()
    }

    /// Drops the file's pages from the page cache (they are clean and unmapped), so the next access
    /// reads them from disk.
    func evictFromPageCache(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(fsync(fd) == 0)
        #expect(posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED)) == 0)
    }

    @Test func aBaseOffsetNearInt64MaxIsDamageForOffsetForTimestampToo() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let (bases, _, frames, _) = try await writeLogAndDamageTheSecondSegment(directory, .baseOffsetNearMax, frame: 2)

            let reopened = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            // The third record of the damaged batch: the search walks onto it (and used to trap).
            let error = try await #require(throws: StorageError.self) {
                _ = try await reopened.offset(forTimestamp: 1_700_000_000_000 + bases[1] + 8)
            }
            #expect(error.code == .corruptSegment)
            #expect(error.position == frames[2])
            #expect(error.firstAffectedOffset == bases[1] + 6)
            #expect(reopened.fault?.code == .corruptSegment)
            try await reopened.close()
        }
    }

    @Test func bytesReadFromDiskAgainAreVerifiedAgain() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let log = try await support.writeLog(directory)
            let bases = log.segmentBaseOffsets
            // Everything was written by this process, so it is verified and served as is.
            let (served, error) = await support.readUntilError(log)
            #expect(error == nil)
            #expect(served.count == 180)

            // The disk under the second segment rots while its pages are cached; then they leave
            // the page cache and the next read brings the damaged bytes in from disk.
            let path = support.segmentPath(directory, bases[1])
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            let frames = try framePositions(data)
            IntegrityTests.Damage.flippedRecordBit.apply(to: &data, frame: frames[2])
            let at = frames[2] + BatchFraming.prefixSize + RecordBatchLayout.headerSize + 10
            try overwrite(path, at: at, with: data.subdata(in: at..<at + 1))
            let read = try await log.read(from: bases[1], maxBytes: 1 << 20)
            read.records.releaseMappedPages()
            try evictFromPageCache(path)
            let second = log.state.withLock { $0.segments[1] }
            try #require(!second.segment.log.isResident(0..<second.size), "the kernel kept the pages")

            let (again, failure) = await support.readUntilError(log)
            #expect(again == (0..<again.count).map { "value-\($0)" })
            #expect(again.count <= Int(bases[1]) + 6)
            #expect(failure?.code == .corruptSegment)
            #expect(failure?.path?.string == path)
            #expect(failure?.position == frames[2])
            try await log.close()
        }
    }

    @Test func scrubbingWhileAppendingNeverTakesAHealthyLogOffline() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            try await support.writeLog(directory).close()
            // A clean open verifies nothing, so the scrubber has the whole log, active segment included.
            let log = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for i in 0..<200 { try await log.append(batch(first: 180 + i, count: 1)) }
                }
                group.addTask {
                    for _ in 0..<2000 where log.fault == nil { _ = try await log.scrub(maxBytes: 200) }
                }
                try await group.waitForAll()
            }
            #expect(log.fault == nil)
            while try await log.scrub(maxBytes: 1 << 20) > 0 {}
            #expect(log.fault == nil)
            #expect(try await values(log) == (0..<380).map { "value-\($0)" })
            try await log.close()
        }
    }

    @Test func aDamagedLogIsScannedAgainWhenReopened() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let (_, _, frames) = try await support.writeLogAndDamageItsLastBatch(directory, crash: false)
            let reopened = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            let (_, error) = await support.readUntilError(reopened)
            #expect(error?.code == .corruptSegment)
            try await reopened.close()
            // No clean-shutdown marker: the next open scans the last segment and finds the damage
            // below the recovery point, instead of serving the partition again.
            #expect(!FileManager.default.fileExists(atPath: directory.appending(".clean-shutdown").string))
            let again = try await #require(throws: StorageError.self) {
                _ = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            }
            #expect(again.code == .corruptSegment)
            #expect(again.position == frames[frames.count - 1])
        }
    }

    @Test func scrubbingDoesNotGrowTheResidentSet() async throws {
        let megabytes = ProcessInfo.processInfo.environment["FJORD_SCRUB_RSS_TEST_MB"].flatMap(Int.init) ?? 64
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            var configuration = LogConfiguration()
            configuration.segmentBytes = 64 << 20
            let writer = try await PartitionLog.open(directory: directory, configuration: configuration)
            let value = [UInt8](repeating: 0x5a, count: 1 << 20)
            for i in 0..<megabytes {
                var builder = RecordBatchBuilder()
                builder.append(Record(value: value, timestamp: 1_700_000_000_000 + Int64(i)))
                try await writer.append(builder.build())
            }
            try await writer.close()
            let log = try await PartitionLog.open(directory: directory, configuration: configuration)
            let before = residentKilobytes()
            var scrubbed = 0
            while true {
                let done = try await log.scrub(maxBytes: 8 << 20)
                if done == 0 { break }
                scrubbed += done
            }
            BackgroundRelease.drain()
            let after = residentKilobytes()
            print(
                "scrubbed \(scrubbed >> 20) MiB: VmRSS \(before.total) kB -> \(after.total) kB, RssFile \(before.file) kB -> \(after.file) kB")
            #expect(scrubbed == log.sizeInBytes)
            #expect(log.fault == nil)
            // Without releasing, the file part of the resident set grows by the whole log.
            #expect(after.file - before.file < megabytes * 1024 / 4)
            try await log.close()
        }
    }

    /// `VmRSS` and `RssFile` of this process, in kB.
    func residentKilobytes() -> (total: Int, file: Int) {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
        return (field("VmRSS"), field("RssFile"))
    }

    @Test func readersAtTwoPositionsAndTheAppendsKeepTheirRanges() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            // One segment holding every batch.
            var configuration = smallConfiguration()
            configuration.segmentBytes = 1 << 20
            let writer = try await PartitionLog.open(directory: directory, configuration: configuration)
            for i in 0..<60 { try await writer.append(batch(first: i * 3, count: 3)) }
            try await writer.close()
            let log = try await PartitionLog.open(directory: directory, configuration: configuration)
            let active = log.state.withLock { $0.active }
            #expect(log.segmentCount == 1)
            let tail = try #require(try PartitionLog.locate(active.nextOffset - 1, in: active))
            // A tailing reader at the end and another at the segment's start, with little room each.
            let atTail = try await log.read(from: active.nextOffset - 1, maxBytes: 1)
            let atStart = try await log.read(from: active.baseOffset, maxBytes: 1)
            #expect(atTail.records.range == tail.position..<active.size)
            #expect(atStart.records.range.lowerBound == 0)
            var ranges = active.segment.verified.withLock { $0.ranges }
            #expect(ranges.map { $0.lower..<$0.upper } == [atStart.records.range, atTail.records.range])
            // Appends grow the range that ends at the segment's end; both readers keep theirs.
            let appended = try await log.append(batch(first: Int(active.nextOffset), count: 3))
            let grown = log.state.withLock { $0.active }
            ranges = active.segment.verified.withLock { $0.ranges }
            #expect(ranges.map { $0.lower..<$0.upper } == [atStart.records.range, tail.position..<grown.size])
            #expect(ranges.last?.nextOffset == appended.lastOffset + 1)
            try await log.close()
        }
    }

    @Test func theScrubberResumesWhereItStopped() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let written = try await support.writeLog(directory)
            let size = written.sizeInBytes
            try await written.close()
            let log = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            let first = log.state.withLock { $0.segments[0] }
            // A reader verified the first segment's last batch; the scrubber does the rest, once.
            let read = try await log.read(from: first.nextOffset - 1, maxBytes: 1)
            var scrubbed = 0
            while true {
                let done = try await log.scrub(maxBytes: 300)
                if done == 0 { break }
                scrubbed += done
            }
            #expect(scrubbed == size - read.records.count)
            #expect(first.segment.verified.withLock { $0.ranges.map { $0.lower..<$0.upper } } == [0..<first.size])
            try await log.close()
        }
    }

    @Test func anEpochGoingBackwardsAtASegmentStartIsNeverServed() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let (bases, _, _, _) = try await writeLogAndDamageTheSecondSegment(directory, .epochGoesBackwards, frame: 0)

            let reopened = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            let (served, error) = await support.readUntilError(reopened)
            #expect(served == (0..<Int(bases[1])).map { "value-\($0)" })
            #expect(error?.code == .corruptSegment)
            #expect(error?.position == 0)
            #expect(error?.firstAffectedOffset == bases[1])
            try await reopened.close()
        }
    }

    @Test func repairNeverOverwritesADamagedFile() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let (_, path, frames, data) = try await writeLogAndDamageTheSecondSegment(directory, .flippedRecordBit, frame: 2)
            // What an earlier repair kept.
            let earlier = Data("kept by an earlier repair".utf8)
            try earlier.write(to: URL(fileURLWithPath: path + ".damaged"))

            let repaired = try LogRepair.truncateAfterDamage(directory: directory)
            #expect(repaired.damagedFiles.first?.string == path + ".damaged.1")
            #expect(try Data(contentsOf: URL(fileURLWithPath: path + ".damaged")) == earlier)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path + ".damaged.1")) == data.suffix(from: frames[2]))
        }
    }

    @Test func repairOfAFirstSegmentDamagedAtItsFirstByteKeepsTheLogStart() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            var configuration = smallConfiguration()
            configuration.retention = .init(milliseconds: nil, bytes: 4096)
            let log = try await PartitionLog.open(directory: directory, configuration: configuration)
            for i in 0..<60 { try await log.append(batch(first: i * 3, count: 3)) }
            _ = try await log.applyRetention()
            let start = log.logStartOffset
            #expect(start > 0)
            try await log.close()
            let path = support.segmentPath(directory, start)
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            IntegrityTests.Damage.zeroedPage.apply(to: &data, frame: 0)
            try data.write(to: URL(fileURLWithPath: path))

            let repaired = try LogRepair.truncateAfterDamage(directory: directory)
            #expect(repaired.logEndOffset == start)
            #expect(try LogVerifier.verify(directory: directory).isSound)
            // The log keeps its start: it opens (no lost tail), empty at `start`, and continues there.
            let reopened = try await PartitionLog.open(directory: directory, configuration: configuration)
            #expect(reopened.logStartOffset == start)
            #expect(reopened.logEndOffset == start)
            let appended = try await reopened.append(batch(first: Int(start), count: 3))
            #expect(appended.baseOffset == start)
            try await reopened.close()
        }
    }
}

extension ReadVerificationTests {
    @Test func aLostTailIsDetectedAfterACrashOnceTheFlusherWroteTheRecoveryPoint() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            var configuration = smallConfiguration()
            configuration.segmentBytes = 1 << 20  // no roll
            configuration.recoveryPointCheckpointMilliseconds = 0
            let log = try await PartitionLog.open(directory: directory, configuration: configuration)
            for i in 0..<5 { try await log.append(batch(first: i * 3, count: 3), durability: .durable) }
            // The recovery point file follows the flushes, although no segment rolled.
            let recoveryPoint = try String(contentsOfFile: directory.appending("recovery-point").string, encoding: .utf8)
            #expect(recoveryPoint == "1\n15\n")
            // kill -9 (the log is never closed), then the disk loses the last batch.
            let path = support.segmentPath(directory, 0)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let frames = try framePositions(data)
            try data.prefix(frames[frames.count - 1]).write(to: URL(fileURLWithPath: path))
            let error = try await #require(throws: StorageError.self) {
                _ = try await PartitionLog.open(directory: directory, configuration: configuration)
            }
            #expect(error.code == .logTailLost)
            #expect(error.firstAffectedOffset == 12)
            withExtendedLifetime(log) {}
        }
    }
}

/// The verified ranges of a segment, without I/O.
@Suite struct VerifiedRangesTests {
    func range(_ lower: Int, _ upper: Int, offsets: Range<Int64>, epochs: (Int32, Int32) = (0, 0)) -> VerifiedRange {
        VerifiedRange(
            lower: lower, upper: upper, firstOffset: offsets.lowerBound, firstEpoch: epochs.0, nextOffset: offsets.upperBound,
            lastEpoch: epochs.1)
    }

    @Test func touchingRangesThatContinueMergeAndOthersStayApart() {
        var ranges = VerifiedRanges()
        ranges.insert(range(100, 200, offsets: 10..<20))
        ranges.insert(range(0, 100, offsets: 0..<10))
        #expect(ranges.ranges == [range(0, 200, offsets: 0..<20)])
        // Touching, but the offsets do not continue: not one run.
        ranges.insert(range(200, 300, offsets: 25..<30))
        #expect(ranges.ranges.count == 2)
        // Touching with an epoch that goes backwards: not one run either.
        var epochs = VerifiedRanges()
        epochs.insert(range(0, 100, offsets: 0..<10, epochs: (3, 5)))
        epochs.insert(range(100, 200, offsets: 10..<20, epochs: (4, 4)))
        #expect(epochs.ranges.count == 2)
        #expect(epochs.covering(50..<150) == nil)
    }

    @Test func overlappingRangesMergeAndTheLaterEndWins() {
        var ranges = VerifiedRanges()
        ranges.insert(range(0, 100, offsets: 0..<10, epochs: (1, 1)))
        ranges.insert(range(50, 150, offsets: 5..<15, epochs: (1, 2)))
        #expect(ranges.ranges == [range(0, 150, offsets: 0..<15, epochs: (1, 2))])
        #expect(ranges.covering(20..<150) != nil)
        #expect(ranges.ending(at: 150)?.nextOffset == 15)
        #expect(ranges.continuable(from: 150)?.lower == 0)
        #expect(ranges.continuable(from: 151) == nil)
    }

    @Test func atMostEightAreKeptDroppingTheSmallestButNeverTheLast() {
        var ranges = VerifiedRanges()
        for i in 0..<9 {
            // Gaps between them; the range at 400 is the smallest, the last one is smaller still.
            let size = i == 4 ? 2 : (i == 8 ? 1 : 10)
            ranges.insert(range(i * 100, i * 100 + size, offsets: Int64(i * 100)..<Int64(i * 100 + size)))
        }
        #expect(ranges.ranges.count == VerifiedRanges.maximumCount)
        #expect(!ranges.ranges.contains { $0.lower == 400 })
        #expect(ranges.ranges.last?.lower == 800)
    }

    @Test func theFirstGapStartsAfterTheRangeAtZero() {
        var ranges = VerifiedRanges()
        #expect(ranges.firstGap(size: 0) == nil)
        #expect(ranges.firstGap(size: 500) == 0..<500)
        ranges.insert(range(300, 400, offsets: 30..<40))
        #expect(ranges.firstGap(size: 500) == 0..<300)
        ranges.insert(range(0, 100, offsets: 0..<10))
        #expect(ranges.firstGap(size: 500) == 100..<300)
        ranges.insert(range(100, 300, offsets: 10..<30))
        #expect(ranges.firstGap(size: 500) == 400..<500)
        ranges.insert(range(400, 500, offsets: 40..<50))
        #expect(ranges.firstGap(size: 500) == nil)
    }
}
