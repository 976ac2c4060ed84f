import FjordRecords
import FjordStorage
import Foundation
import NIOCore
import SystemPackage
import Testing

/// Damage to the files of a stopped log (after a clean close and after a crash) is never served:
/// reads verify what they return, the log goes offline with `corruptSegment`, a log that came
/// back shorter is reported as a lost tail, and the offline tools find and repair it.
@Suite struct IntegrityTests {
    /// How a test damages a segment file.
    enum Damage: String, CaseIterable, Sendable {
        /// One flipped bit inside the records (covered by the CRC).
        case flippedRecordBit
        /// A zeroed 4 KiB page (the whole of a small segment's first page).
        case zeroedPage
        /// One flipped bit in the stamped base offset (outside the CRC).
        case flippedBaseOffset
        /// The stamped leader epoch goes backwards (outside the CRC).
        case epochGoesBackwards
        /// One flipped bit in the frame's length prefix.
        case flippedLengthPrefix
        /// The stamped base offset near `Int64.max` (outside the CRC): offset arithmetic must not trap.
        case baseOffsetNearMax

        func apply(to data: inout Data, frame: Int) {
            let header = frame + BatchFraming.prefixSize
            switch self {
            case .flippedRecordBit: data[header + RecordBatchLayout.headerSize + 10] ^= 0x04
            case .zeroedPage:
                let page = frame & ~4095
                data.replaceSubrange(page..<min(page + 4096, data.count), with: Data(count: min(4096, data.count - page)))
            case .flippedBaseOffset: data[header + RecordBatchLayout.baseOffset + 4] ^= 0x01
            case .epochGoesBackwards: data[header + RecordBatchLayout.partitionLeaderEpoch + 3] ^= 0x80
            case .flippedLengthPrefix: data[frame + 2] ^= 0x01
            case .baseOffsetNearMax:
                let at = header + RecordBatchLayout.baseOffset
                withUnsafeBytes(of: (Int64.max - 1).littleEndian) { data.replaceSubrange(at..<at + 8, with: $0) }
            }
        }
    }

    /// Writes 60 batches of 3 records (several segments) and closes the log cleanly.
    func writeLog(_ directory: FilePath) async throws -> PartitionLog {
        let log = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
        for i in 0..<60 { try await log.append(batch(first: i * 3, count: 3)) }
        return log
    }

    func segmentPath(_ directory: FilePath, _ base: Int64) -> String {
        directory.appending(String(format: "%020lld.log", base)).string
    }

    /// Writes the log, stops it (cleanly, or as after kill -9 once everything was fsynced) and
    /// flips a bit in its last batch; returns the segment's path, damaged bytes and frame positions.
    func writeLogAndDamageItsLastBatch(_ directory: FilePath, crash: Bool) async throws -> (String, Data, [Int]) {
        let log = try await writeLog(directory)
        let last = try #require(log.segmentBaseOffsets.last)
        try await log.close()
        if crash { try FileManager.default.removeItem(atPath: directory.appending(".clean-shutdown").string) }
        let path = segmentPath(directory, last)
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        let frames = try framePositions(data)
        Damage.flippedRecordBit.apply(to: &data, frame: frames[frames.count - 1])
        try data.write(to: URL(fileURLWithPath: path))
        return (path, data, frames)
    }

    /// Reads from the start until an error; returns the values read and the error.
    func readUntilError(_ log: PartitionLog) async -> ([String], StorageError?) {
        var result: [String] = []
        var offset = log.logStartOffset
        while offset < 180 {
            do {
                let read = try await log.read(from: offset, maxBytes: 1 << 16)
                if read.records.isEmpty { break }
                read.records.withUnsafeBytes { bytes in
                    var iterator = FramedBatchIterator(bytes)
                    while let framed = iterator.next() {
                        for i in 0..<Int(framed.batch.recordCount) where framed.batch.baseOffset + Int64(i) >= offset {
                            result.append("value-\(framed.batch.baseOffset + Int64(i))")
                        }
                    }
                }
                offset = read.records.nextOffset
            } catch {
                return (result, error)
            }
        }
        return (result, nil)
    }

    @Test(arguments: Damage.allCases, [false, true])
    func damageInAnOldSegmentIsNeverServed(damage: Damage, afterCrash: Bool) async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let log = try await writeLog(directory)
            let bases = log.segmentBaseOffsets
            #expect(bases.count >= 3)
            try await log.close()
            if afterCrash {
                // kill -9 after everything was fsynced: the scan starts at the recovery point (the end).
                try FileManager.default.removeItem(atPath: directory.appending(".clean-shutdown").string)
            }
            // Damage the third batch of the second segment.
            let path = segmentPath(directory, bases[1])
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            let frames = try framePositions(data)
            damage.apply(to: &data, frame: frames[2])
            try data.write(to: URL(fileURLWithPath: path))
            let damagedFrame = damage == .zeroedPage ? 0 : frames[2]
            let firstLost = damage == .zeroedPage ? bases[1] : bases[1] + 6

            let reopened: PartitionLog
            do {
                reopened = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            } catch let error as StorageError {
                // Damage the open happens to see (a segment whose index no longer matches is rescanned)
                // is reported there, and nothing is served.
                #expect(error.code == .corruptSegment)
                #expect(error.path?.string == path)
                #expect(error.position == damagedFrame)
                #expect(error.firstAffectedOffset == firstLost)
                return
            }
            let (served, error) = await readUntilError(reopened)
            // Everything served is exactly what was written, and nothing at or after the damage.
            #expect(served == (0..<served.count).map { "value-\($0)" })
            #expect(Int64(served.count) <= firstLost)
            let failure = try #require(error)
            #expect(failure.code == .corruptSegment)
            #expect(failure.path?.string == path)
            #expect(failure.position == damagedFrame)
            #expect(failure.firstAffectedOffset == firstLost)
            // The log is offline: earlier offsets and appends fail with the same error.
            #expect(reopened.fault?.code == .corruptSegment)
            let again = try await #require(throws: StorageError.self) { _ = try await reopened.read(from: 0, maxBytes: 100) }
            #expect(again.code == .corruptSegment)
            let append = try await #require(throws: StorageError.self) { try await reopened.append(batch(first: 999, count: 1)) }
            #expect(append.code == .corruptSegment)
            try await reopened.close()
        }
    }

    @Test func damageInTheLastSegmentAfterACleanStopIsNeverServed() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            _ = try await writeLogAndDamageItsLastBatch(directory, crash: false)
            let reopened = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            let (served, error) = await readUntilError(reopened)
            #expect(served == (0..<served.count).map { "value-\($0)" })
            #expect(served.count < 180)
            #expect(error?.code == .corruptSegment)
            try await reopened.close()
        }
    }

    @Test func freshAppendsAndRepeatedReadsNeedNoReverification() async throws {
        try await inTemporaryDirectory { root in
            let log = try await writeLog(root.appending("log"))
            // Reads of data this process wrote, and repeated reads, succeed and return the same bytes.
            let first = try await log.read(from: 0, maxBytes: 1 << 20)
            let second = try await log.read(from: 0, maxBytes: 1 << 20)
            #expect(first.records.range == second.records.range)
            let (served, error) = await readUntilError(log)
            #expect(error == nil)
            #expect(served == (0..<180).map { "value-\($0)" })
            try await log.close()
        }
    }

    @Test(arguments: [false, true])
    func logCutAtABatchBoundaryIsALostTail(afterCrash: Bool) async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let log = try await writeLog(directory)
            let last = try #require(log.segmentBaseOffsets.last)
            try await log.close()
            if afterCrash { try FileManager.default.removeItem(atPath: directory.appending(".clean-shutdown").string) }
            let path = segmentPath(directory, last)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let frames = try framePositions(data)
            try data.prefix(frames[frames.count - 1]).write(to: URL(fileURLWithPath: path))

            for _ in 0..<2 {  // stays offline at every restart
                let error = try await #require(throws: StorageError.self) {
                    _ = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
                }
                #expect(error.code == .logTailLost)
                #expect(error.firstAffectedOffset == 177)
                #expect(error.message.contains("177 to 179"))
            }
            let report = try LogVerifier.verify(directory: directory)
            #expect(!report.isSound)
            #expect(report.validEndOffset == 177)

            // The operator accepts the loss; the log then opens and serves what is left.
            _ = try LogRepair.acceptLostTail(directory: directory)
            let reopened = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            #expect(reopened.logEndOffset == 177)
            let (served, error) = await readUntilError(reopened)
            #expect(served == (0..<177).map { "value-\($0)" })
            #expect(error?.code == .offsetOutOfRange || error == nil)
            try await reopened.close()
        }
    }

    @Test func damageBelowTheRecoveryPointInTheLastSegmentIsNotTruncatedAway() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let (path, data, frames) = try await writeLogAndDamageItsLastBatch(directory, crash: true)

            let error = try await #require(throws: StorageError.self) {
                _ = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            }
            #expect(error.code == .corruptSegment)
            #expect(error.position == frames[frames.count - 1])
            // Nothing was dropped: the bytes are still there for the operator.
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)).count == data.count)
        }
    }

    @Test(arguments: Damage.allCases)
    func verifyFindsDamageAndRepairKeepsTheValidPrefix(damage: Damage) async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let log = try await writeLog(directory)
            let bases = log.segmentBaseOffsets
            try await log.close()
            #expect(try LogVerifier.verify(directory: directory).isSound)

            let path = segmentPath(directory, bases[1])
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            let frames = try framePositions(data)
            damage.apply(to: &data, frame: frames[2])
            try data.write(to: URL(fileURLWithPath: path))
            let firstLost = damage == .zeroedPage ? bases[1] : bases[1] + 6

            let report = try LogVerifier.verify(directory: directory)
            #expect(!report.isSound)
            #expect(report.problems.first?.path.string == path)
            #expect(report.validEndOffset == firstLost)

            let repaired = try LogRepair.truncateAfterDamage(directory: directory)
            #expect(repaired.logEndOffset == firstLost)
            #expect(repaired.damagedFiles.count == bases.count - 1)
            #expect(repaired.removedBytes > 0)
            // The removed bytes were kept, not deleted.
            let kept = try Data(contentsOf: URL(fileURLWithPath: repaired.damagedFiles[0].string))
            let damagedFrame = damage == .zeroedPage ? 0 : frames[2]
            #expect(kept == data.suffix(from: damagedFrame))
            #expect(try LogVerifier.verify(directory: directory).isSound)

            let reopened = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            #expect(reopened.logEndOffset == firstLost)
            let (served, error) = await readUntilError(reopened)
            #expect(served == (0..<Int(firstLost)).map { "value-\($0)" })
            #expect(error?.code == .offsetOutOfRange || error == nil)
            let appended = try await reopened.append(batch(first: Int(firstLost), count: 3))
            #expect(appended.baseOffset == firstLost)
            try await reopened.close()
        }
    }

    @Test func scrubberVerifiesWhatNobodyReadsAndFindsDamage() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            let log = try await writeLog(directory)
            let bases = log.segmentBaseOffsets
            let size = log.sizeInBytes
            try await log.close()

            // A sound log: the scrubber verifies every byte once, then has nothing left to do.
            let sound = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            var verified = 0
            while true {
                let done = try await sound.scrub(maxBytes: 1000)
                if done == 0 { break }
                verified += done
            }
            // A clean open scans nothing, so every byte was left to verify.
            #expect(verified == size)
            #expect(try await sound.scrub(maxBytes: 1 << 20) == 0)
            try await sound.close()

            let path = segmentPath(directory, bases[2])
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            let frames = try framePositions(data)
            Damage.flippedRecordBit.apply(to: &data, frame: frames[3])
            try data.write(to: URL(fileURLWithPath: path))
            let damaged = try await PartitionLog.open(directory: directory, configuration: smallConfiguration())
            let error = try await #require(throws: StorageError.self) {
                while try await damaged.scrub(maxBytes: 1000) > 0 {}
            }
            #expect(error.code == .corruptSegment)
            #expect(error.path?.string == path)
            #expect(error.position == frames[3])
            #expect(damaged.fault?.code == .corruptSegment)
            #expect(try await damaged.scrub(maxBytes: 1000) == 0)
            try await damaged.close()
        }
    }
}
