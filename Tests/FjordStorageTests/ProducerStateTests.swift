import FjordRecords
import FjordStorage
import Foundation
import NIOCore
import SystemPackage
import Testing

/// Idempotent producers at the log: sequence checks, duplicates answered with the original
/// offsets, fencing, and the state surviving clean and unclean restarts.
@Suite("Idempotent producer state")
struct ProducerStateTests {
    func batch(producer: Int64, epoch: Int32, sequence: Int32, values: [String]) -> ByteBuffer {
        var builder = RecordBatchBuilder()
        builder.producerID = producer
        builder.producerEpoch = epoch
        builder.baseSequence = sequence
        for value in values { builder.append(Record(value: Array(value.utf8), timestamp: 1_700_000_000_000)) }
        return builder.build()
    }

    func code(of body: () async throws -> Void) async -> StorageError.Code? {
        do {
            try await body()
            return nil
        } catch let error as StorageError {
            return error.code
        } catch {
            return nil
        }
    }

    @Test func aRetriedBatchIsAnsweredWithItsOriginalOffsetsAndNotWrittenAgain() async throws {
        try await inTemporaryDirectory { root in
            let log = try await PartitionLog.open(directory: root.appending("log"))
            let first = try await log.append(batch(producer: 7, epoch: 0, sequence: 0, values: ["a", "b"]))
            let second = try await log.append(batch(producer: 7, epoch: 0, sequence: 2, values: ["c"]))
            #expect(first.baseOffset == 0 && first.lastOffset == 1 && !first.duplicate)
            #expect(second.baseOffset == 2 && !second.duplicate)
            // Both retried (as after a lost answer): same offsets, nothing appended.
            let again = try await log.append(batch(producer: 7, epoch: 0, sequence: 0, values: ["a", "b"]))
            #expect(again.duplicate && again.baseOffset == 0 && again.lastOffset == 1)
            let againSecond = try await log.append(batch(producer: 7, epoch: 0, sequence: 2, values: ["c"]))
            #expect(againSecond.duplicate && againSecond.baseOffset == 2)
            #expect(log.logEndOffset == 3)
            #expect(try await values(log) == ["a", "b", "c"])
            try await log.close()
        }
    }

    @Test func gapsRepeatsOldEpochsAndUnknownProducersAreRejected() async throws {
        try await inTemporaryDirectory { root in
            let log = try await PartitionLog.open(directory: root.appending("log"))
            try await log.append(batch(producer: 1, epoch: 3, sequence: 0, values: ["x", "y"]))
            // A gap: sequence 5 when 2 is next.
            #expect(await code { try await log.append(batch(producer: 1, epoch: 3, sequence: 5, values: ["z"])) } == .outOfOrderSequence)
            // Overlapping a stored batch without matching it.
            #expect(await code { try await log.append(batch(producer: 1, epoch: 3, sequence: 1, values: ["z"])) } == .outOfOrderSequence)
            // An older epoch is fenced.
            #expect(await code { try await log.append(batch(producer: 1, epoch: 2, sequence: 2, values: ["z"])) } == .invalidProducerEpoch)
            // A newer epoch must start at 0, and then does.
            #expect(await code { try await log.append(batch(producer: 1, epoch: 4, sequence: 2, values: ["z"])) } == .outOfOrderSequence)
            let bumped = try await log.append(batch(producer: 1, epoch: 4, sequence: 0, values: ["z"]))
            #expect(bumped.baseOffset == 2)
            // Now epoch 3 is fenced.
            #expect(await code { try await log.append(batch(producer: 1, epoch: 3, sequence: 2, values: ["w"])) } == .invalidProducerEpoch)
            // A producer the log never saw must start at 0.
            #expect(await code { try await log.append(batch(producer: 99, epoch: 0, sequence: 10, values: ["w"])) } == .unknownProducerID)
            // Batches without a producer id are not checked.
            try await log.append(batch(producer: -1, epoch: -1, sequence: -1, values: ["plain"]))
            #expect(try await values(log) == ["x", "y", "z", "plain"])
            try await log.close()
        }
    }

    @Test func onlyTheLastFiveBatchesAreRemembered() async throws {
        try await inTemporaryDirectory { root in
            let log = try await PartitionLog.open(directory: root.appending("log"))
            for sequence in Int32(0)..<7 { try await log.append(batch(producer: 2, epoch: 0, sequence: sequence, values: ["v\(sequence)"])) }
            let recent = try await log.append(batch(producer: 2, epoch: 0, sequence: 2, values: ["v2"]))
            #expect(recent.duplicate && recent.baseOffset == 2)
            // Batch 1 fell out of the window: it can no longer be recognised, and it is not next.
            #expect(await code { try await log.append(batch(producer: 2, epoch: 0, sequence: 1, values: ["v1"])) } == .outOfOrderSequence)
            #expect(log.logEndOffset == 7)
            try await log.close()
        }
    }

    @Test func stateSurvivesACleanRestartAndIsRebuiltAfterACrash() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            var log = try await PartitionLog.open(directory: directory)
            try await log.append(batch(producer: 5, epoch: 0, sequence: 0, values: ["a"]))
            try await log.append(batch(producer: 5, epoch: 0, sequence: 1, values: ["b"]))
            try await log.close()
            #expect(FileManager.default.fileExists(atPath: directory.appending("producer-state.snapshot").string))

            // Clean restart: the snapshot is loaded.
            log = try await PartitionLog.open(directory: directory)
            #expect(try await log.append(batch(producer: 5, epoch: 0, sequence: 1, values: ["b"])).duplicate)
            try await log.append(batch(producer: 5, epoch: 0, sequence: 2, values: ["c"]))
            try await log.close()

            // A crash: no clean marker, and the snapshot is older than the log end (taken at offset 2),
            // so batches after it are replayed from the log.
            try FileManager.default.removeItem(atPath: directory.appending(".clean-shutdown").string)
            log = try await PartitionLog.open(directory: directory)
            let retried = try await log.append(batch(producer: 5, epoch: 0, sequence: 2, values: ["c"]))
            #expect(retried.duplicate && retried.baseOffset == 2)
            try await log.close()

            // No snapshot at all: the whole log is replayed.
            try FileManager.default.removeItem(atPath: directory.appending("producer-state.snapshot").string)
            try FileManager.default.removeItem(atPath: directory.appending(".clean-shutdown").string)
            log = try await PartitionLog.open(directory: directory)
            #expect(try await log.append(batch(producer: 5, epoch: 0, sequence: 2, values: ["c"])).duplicate)
            #expect(await code { try await log.append(batch(producer: 5, epoch: 0, sequence: 4, values: ["e"])) } == .outOfOrderSequence)
            try await log.append(batch(producer: 5, epoch: 0, sequence: 3, values: ["d"]))
            #expect(try await values(log) == ["a", "b", "c", "d"])
            try await log.close()
        }
    }

    @Test func aDamagedSnapshotIsIgnoredAndTheStateRebuilt() async throws {
        try await inTemporaryDirectory { root in
            let directory = root.appending("log")
            var log = try await PartitionLog.open(directory: directory)
            try await log.append(batch(producer: 8, epoch: 1, sequence: 0, values: ["a"]))
            try await log.close()
            let path = directory.appending("producer-state.snapshot").string
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes[bytes.count / 2] ^= 0xFF
            try bytes.write(to: URL(fileURLWithPath: path))
            log = try await PartitionLog.open(directory: directory)
            #expect(try await log.append(batch(producer: 8, epoch: 1, sequence: 0, values: ["a"])).duplicate)
            try await log.close()
        }
    }
}
