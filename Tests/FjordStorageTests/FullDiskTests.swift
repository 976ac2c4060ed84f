import FjordRecords
import FjordStorage
import Foundation
import NIOCore
import SystemPackage
import Testing

/// A full disk, on a real 2 MiB tmpfs: appends fail with `diskFull`, nothing acknowledged is lost,
/// and the log works again once space is freed. Needs root to mount; skipped with a printed reason otherwise.
@Suite struct FullDiskTests {
    @Test func appendsFailCleanlyWhenTheDiskIsFullAndRecoverWhenSpaceReturns() async throws {
        let mountPoint = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-full-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        let mounted = run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint])
        guard mounted.status == 0 else {
            print("skipped: cannot mount a tmpfs here (\(mounted.output.trimmingCharacters(in: .whitespacesAndNewlines))); the full-disk test needs root")
            return
        }
        defer { _ = run("/bin/umount", [mountPoint]) }

        // A filler file to free later.
        let filler = mountPoint + "/filler"
        try Data(count: 512 * 1024).write(to: URL(fileURLWithPath: filler))

        var configuration = LogConfiguration()
        configuration.segmentBytes = 256 * 1024
        configuration.indexIntervalBytes = 1024
        let directory = FilePath(mountPoint).appending("log")
        let log = try await PartitionLog.open(directory: directory, configuration: configuration)
        var acknowledged: [String] = []
        var failure: StorageError?
        for i in 0..<1_000 {
            let value = "record-\(i)-" + String(repeating: "x", count: 4000)
            do {
                let result = try await log.append(makeBatch(value))
                #expect(result.baseOffset == Int64(acknowledged.count))
                acknowledged.append(value)
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure, "the 2 MiB disk never filled up")
        #expect(error.code == .diskFull)
        #expect(error.path != nil)
        #expect(log.logEndOffset == Int64(acknowledged.count))
        #expect(try await values(log) == acknowledged)

        // Still full for a record of the same size (the failed write's partial bytes were trimmed, so
        // a smaller one might fit): still a clean error, still nothing lost.
        let again = try await #require(throws: StorageError.self) {
            try await log.append(makeBatch("retry-" + String(repeating: "x", count: 4000)))
        }
        #expect(again.code == .diskFull)
        #expect(try await values(log) == acknowledged)

        // Space comes back: appends continue at the next offset.
        try FileManager.default.removeItem(atPath: filler)
        let resumed = try await log.append(makeBatch("after"))
        #expect(resumed.baseOffset == Int64(acknowledged.count))
        acknowledged.append("after")
        #expect(try await values(log) == acknowledged)
        try await log.close()

        // And an unclean reopen finds exactly the acknowledged records.
        try FileManager.default.removeItem(atPath: directory.appending(".clean-shutdown").string)
        let reopened = try await PartitionLog.open(directory: directory, configuration: configuration)
        #expect(try await values(reopened) == acknowledged)
        try await reopened.close()
    }

    @Test func anIdempotentBatchThatHitAFullDiskCanBeRetriedWithItsSequence() async throws {
        let mountPoint = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-full-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        let mounted = run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mountPoint])
        guard mounted.status == 0 else {
            print("skipped: cannot mount a tmpfs here; the full-disk test needs root")
            return
        }
        defer { _ = run("/bin/umount", [mountPoint]) }
        let filler = mountPoint + "/filler"
        try Data(count: 256 * 1024).write(to: URL(fileURLWithPath: filler))
        var configuration = LogConfiguration()
        configuration.segmentBytes = 128 * 1024
        let log = try await PartitionLog.open(directory: FilePath(mountPoint).appending("log"), configuration: configuration)
        func batch(_ sequence: Int32) -> ByteBuffer {
            var builder = RecordBatchBuilder()
            builder.producerID = 3
            builder.producerEpoch = 0
            builder.baseSequence = sequence
            builder.append(Record(value: Array(repeating: 0x78, count: 4000), timestamp: 1))
            return builder.build()
        }
        var sequence: Int32 = 0
        var failure: StorageError?
        while failure == nil, sequence < 1000 {
            do {
                try await log.append(batch(sequence))
                sequence += 1
            } catch {
                failure = error
            }
        }
        #expect(failure?.code == .diskFull)
        let end = log.logEndOffset
        // The failed batch was not remembered: once space is back, the same sequence is appended
        // (not rejected as out of order, not answered as a duplicate).
        try FileManager.default.removeItem(atPath: filler)
        let retried = try await log.append(batch(sequence))
        #expect(!retried.duplicate && retried.baseOffset == end)
        try await log.close()
    }

    @Test func aReadOnlyFileSystemGivesPermissionDeniedWithThePath() async throws {
        let mountPoint = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-ro-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        let mounted = run("/bin/mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", mountPoint])
        guard mounted.status == 0 else {
            print("skipped: cannot mount a read-only tmpfs here (\(mounted.output.trimmingCharacters(in: .whitespacesAndNewlines)))")
            return
        }
        defer { _ = run("/bin/umount", [mountPoint]) }
        let error = try await #require(throws: StorageError.self) {
            _ = try await PartitionLog.open(directory: FilePath(mountPoint).appending("log"))
        }
        #expect(error.code == .permissionDenied)
        #expect(error.path?.string.hasPrefix(mountPoint) == true)
        #expect(error.errno == .readOnlyFileSystem)
    }
}

private func makeBatch(_ value: String) -> ByteBuffer {
    var builder = RecordBatchBuilder()
    builder.append(Record(value: Array(value.utf8), timestamp: 1_700_000_000_000))
    return builder.build()
}

private func run(_ executable: String, _ arguments: [String]) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do { try process.run() } catch { return (-1, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
