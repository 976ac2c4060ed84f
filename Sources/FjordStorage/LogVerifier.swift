import FjordRecords
import Logging
public import SystemPackage

/// One problem ``LogVerifier`` found in a partition directory.
public struct LogProblem: Sendable, Hashable, CustomStringConvertible {
    /// The file concerned (a segment's log or index file, or the directory for a lost tail).
    public var path: FilePath
    /// Byte position in ``path``, when the problem is at one.
    public var position: Int?
    /// The first offset the problem makes unservable.
    public var firstAffectedOffset: Int64?
    /// What is wrong, for people.
    public var reason: String

    public var description: String {
        var text = "\(path)"
        if let position { text += " at byte \(position)" }
        if let firstAffectedOffset { text += " (offsets from \(firstAffectedOffset))" }
        return text + ": \(reason)"
    }
}

/// What ``LogVerifier/verify(directory:progress:)`` found.
public struct LogVerificationReport: Sendable {
    /// Segments checked.
    public var segments = 0
    /// Batches that passed every check.
    public var batches = 0
    /// Bytes of segment log files checked.
    public var bytes = 0
    /// The first offset of the log.
    public var logStartOffset: Int64 = 0
    /// Offset after the last valid batch before the first damage (the log end when there is none).
    public var validEndOffset: Int64 = 0
    /// The end the log had made durable (recorded by a clean close, or the recovery point).
    public var durableEndOffset: Int64?
    /// Problems, in log order. Empty when the log is sound.
    public var problems: [LogProblem] = []
    /// The first damaged segment log file and the position of its first bad frame, if any.
    public var firstDamage: (base: Int64, position: Int)?

    /// Whether the log is sound: every batch valid, indexes consistent, nothing missing.
    public var isSound: Bool { problems.isEmpty }
}

/// Checks a stopped partition's directory offline: every batch of every segment (frames, CRC32C,
/// header tags, offset continuity within and across segments, leader epochs), every offset and
/// time index entry, and the log end against the end the log had made durable.
///
/// ```swift
/// let report = try LogVerifier.verify(directory: "/var/lib/fjord/logs/orders-0") { done, total in }
/// for problem in report.problems { print(problem) }
/// ```
public enum LogVerifier {
    /// Verifies `directory`, calling `progress` with bytes checked and total bytes after each segment.
    ///
    /// Opens every file read-only and maps one segment at a time.
    public static func verify(
        directory: FilePath, progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }
    ) throws(StorageError) -> LogVerificationReport {
        let names = try FileSystem.listDirectory(directory)
        let bases = names.compactMap(LogSegment.baseOffset(ofLogFile:)).sorted()
        var report = LogVerificationReport()
        var sizes: [Int] = []
        for base in bases {
            let path = directory.appending(LogSegment.fileName(base, LogSegment.logSuffix))
            sizes.append(try MappedFile(path: path, options: [], capacity: 0, access: .readOnly).size())
        }
        let total = sizes.reduce(0, +)
        report.logStartOffset = bases.first ?? 0
        var expected = bases.first ?? 0
        var epoch: Int32?
        var damaged = false
        for (i, base) in bases.enumerated() {
            let path = directory.appending(LogSegment.fileName(base, LogSegment.logSuffix))
            let size = sizes[i]
            report.segments += 1
            defer {
                report.bytes += size
                progress(report.bytes, total)
            }
            if damaged {
                // Nothing after the first damage can be served; it is only counted.
                continue
            }
            if base != expected {
                report.problems.append(
                    LogProblem(
                        path: path, position: 0, firstAffectedOffset: expected,
                        reason: "the segment starts at offset \(base) but the previous one ends at \(expected)"))
                damaged = true
                report.firstDamage = (base, 0)
                continue
            }
            // Mapped only while this segment is checked.
            let file = try MappedFile(path: path, options: [], capacity: size, access: .readOnly)
            let bytes = file.bytes(0..<size)
            var iterator = FramedBatchIterator(bytes)
            var segmentExpected = base
            while let framed = iterator.next() {
                if let problem = framed.batch.storedBatchProblem(expectedBaseOffset: segmentExpected, previousEpoch: epoch) {
                    report.problems.append(
                        LogProblem(path: path, position: framed.position, firstAffectedOffset: segmentExpected, reason: problem))
                    report.firstDamage = (base, framed.position)
                    damaged = true
                    break
                }
                segmentExpected = framed.batch.lastOffset &+ 1
                epoch = framed.batch.header.partitionLeaderEpoch
                report.batches += 1
            }
            if !damaged, let (reason, position) = iterator.stopReason.damage {
                report.problems.append(
                    LogProblem(path: path, position: position, firstAffectedOffset: segmentExpected, reason: reason))
                report.firstDamage = (base, position)
                damaged = true
            }
            // The valid prefix ends at the damaged batch, if any.
            expected = segmentExpected
            if !damaged { report.problems += checkIndexes(directory: directory, base: base, log: bytes) }
        }
        report.validEndOffset = expected
        if !damaged {
            let marker = directory.appending(PartitionLog.cleanShutdownFile)
            let recoveryPoint = Recovery.readOffsetFile(directory.appending(PartitionLog.recoveryPointFile))
            let durable = FileSystem.exists(marker) ? (Recovery.readOffsetFile(marker) ?? recoveryPoint) : recoveryPoint
            report.durableEndOffset = durable
            if let durable, expected < durable {
                report.problems.append(
                    LogProblem(
                        path: directory, position: nil, firstAffectedOffset: expected,
                        reason: "lost tail: the log ends at offset \(expected) but offsets up to \(durable - 1) were durable; offsets \(expected) to \(durable - 1) are missing"))
            }
        }
        return report
    }

    /// Checks a segment's offset index (each entry names a batch's base offset and its frame's
    /// position) and time index (timestamps increase), reading them through ``OffsetIndex`` and
    /// ``TimeIndex`` on read-only maps.
    static func checkIndexes(directory: FilePath, base: Int64, log: UnsafeRawBufferPointer) -> [LogProblem] {
        var problems: [LogProblem] = []
        let offsetPath = directory.appending(LogSegment.fileName(base, LogSegment.offsetIndexSuffix))
        if let offsetIndex = openIndex(offsetPath).map({ OffsetIndex(file: $0, baseOffset: base) }) {
            var previous = OffsetIndexEntry(offset: base, position: 0)
            for i in 0..<(offsetIndex.file.capacity / OffsetIndex.entrySize) {
                let entry = offsetIndex.entry(i)
                var batch = FramedBatchIterator(log, from: min(entry.position, log.count))
                let framed = entry.position < log.count ? batch.next() : nil
                if entry.offset <= previous.offset && i > 0 || entry.position <= previous.position && i > 0
                    || framed?.batch.baseOffset != entry.offset
                {
                    problems.append(
                        LogProblem(
                            path: offsetPath, position: i * OffsetIndex.entrySize, firstAffectedOffset: nil,
                            reason: "offset index entry \(i) (offset \(entry.offset), position \(entry.position)) does not point at that batch; the broker rebuilds it if you delete the file"))
                    break
                }
                previous = entry
            }
        }
        let timePath = directory.appending(LogSegment.fileName(base, LogSegment.timeIndexSuffix))
        if let timeIndex = openIndex(timePath).map({ TimeIndex(file: $0, baseOffset: base) }) {
            var last = Int64.min
            for i in 0..<(timeIndex.file.capacity / TimeIndex.entrySize) {
                let timestamp = timeIndex.entry(i).timestamp
                if timestamp <= last {
                    problems.append(
                        LogProblem(
                            path: timePath, position: i * TimeIndex.entrySize, firstAffectedOffset: nil,
                            reason: "time index entry \(i) does not increase; the broker rebuilds it if you delete the file"))
                    break
                }
                last = timestamp
            }
        }
        return problems
    }

    /// An index file mapped read-only with its size as capacity; `nil` when it cannot be opened.
    private static func openIndex(_ path: FilePath) -> MappedFile? {
        guard FileSystem.exists(path),
            let size = try? MappedFile(path: path, options: [], capacity: 0, access: .readOnly).size()
        else { return nil }
        return try? MappedFile(path: path, options: [], capacity: size, access: .readOnly)
    }
}

/// What ``LogRepair`` did.
public struct LogRepairResult: Sendable {
    /// Files written with the removed bytes (`*.damaged`), or renamed to them.
    public var damagedFiles: [FilePath] = []
    /// Bytes moved out of the log.
    public var removedBytes = 0
    /// The log end offset afterwards.
    public var logEndOffset: Int64 = 0
}

/// Repairs a stopped partition's directory so the broker serves it again, never deleting data
/// silently: what it removes goes to `.damaged` files next to the segments.
public enum LogRepair {
    /// Keeps the valid prefix of the log up to its first damaged batch: the damaged segment's
    /// bytes from the damage on go to `<segment>.log.damaged` and the segment is cut there (kept,
    /// empty, when the damage is at its first byte, so the log keeps its start offset and its
    /// offsets continue from the segment's base), later segments are renamed to
    /// `<segment>.log.damaged`, and their indexes (derived data) are removed to be rebuilt. An
    /// existing `.damaged` file is never overwritten: the next free `.damaged.1`, `.damaged.2`...
    /// is used. The recovery point is set to the new end, so the broker accepts the shorter log.
    public static func truncateAfterDamage(directory: FilePath) throws(StorageError) -> LogRepairResult {
        let report = try LogVerifier.verify(directory: directory)
        var result = LogRepairResult(logEndOffset: report.validEndOffset)
        guard let damage = report.firstDamage else { return result }
        let names = try FileSystem.listDirectory(directory)
        let bases = names.compactMap(LogSegment.baseOffset(ofLogFile:)).sorted()
        for base in bases where base >= damage.base {
            let logPath = directory.appending(LogSegment.fileName(base, LogSegment.logSuffix))
            let damagedPath = unusedDamagedPath(for: LogSegment.fileName(base, LogSegment.logSuffix), in: directory)
            let probe = try MappedFile(path: logPath, options: [], capacity: 0)
            let size = try probe.size()
            // The damaged segment is cut at the damage (emptied when it is at byte 0) unless its
            // base itself is wrong (it does not continue the log), then it goes whole like the rest.
            if base == damage.base && (damage.position > 0 || base == report.validEndOffset) {
                let file = try MappedFile(path: logPath, options: [], capacity: size)
                let removed = Array(file.bytes(damage.position..<size))
                try FileSystem.writeAtomically(bytes: removed, to: damagedPath, directory: directory)
                try file.truncate(to: damage.position)
                try file.sync()
                result.removedBytes += removed.count
            } else {
                try FileSystem.rename(logPath, to: damagedPath)
                result.removedBytes += size
            }
            result.damagedFiles.append(damagedPath)
            for suffix in [LogSegment.offsetIndexSuffix, LogSegment.timeIndexSuffix] {
                let path = directory.appending(LogSegment.fileName(base, suffix))
                if FileSystem.exists(path) { try FileSystem.remove(path) }
            }
        }
        try acceptEnd(report.validEndOffset, directory: directory)
        return result
    }

    /// `<name>.damaged`, or `<name>.damaged.<n>` with the smallest `n` no file has yet.
    static func unusedDamagedPath(for name: String, in directory: FilePath) -> FilePath {
        var candidate = directory.appending(name + ".damaged")
        var n = 0
        while FileSystem.exists(candidate) {
            n += 1
            candidate = directory.appending(name + ".damaged.\(n)")
        }
        return candidate
    }

    /// Accepts that the log ends where it ends now (after a lost tail was reported): the recovery
    /// point is set to the current end and the clean-shutdown marker removed, so the next start
    /// scans only the last segment and serves the log. Refuses a log with damage (repair that first).
    public static func acceptLostTail(directory: FilePath) throws(StorageError) -> LogRepairResult {
        let report = try LogVerifier.verify(directory: directory)
        if let problem = report.problems.first(where: { $0.position != nil }) {
            throw StorageError(
                code: .corruptSegment,
                message: "the log is damaged; run `fjord log repair --truncate-after-damage` first: \(problem.reason)",
                path: problem.path, position: problem.position)
        }
        try acceptEnd(report.validEndOffset, directory: directory)
        return LogRepairResult(logEndOffset: report.validEndOffset)
    }

    private static func acceptEnd(_ end: Int64, directory: FilePath) throws(StorageError) {
        let marker = directory.appending(PartitionLog.cleanShutdownFile)
        if FileSystem.exists(marker) { try FileSystem.remove(marker) }
        try FileSystem.writeAtomically("1\n\(end)\n", to: directory.appending(PartitionLog.recoveryPointFile), directory: directory)
        // A producer-state snapshot past the new end describes batches that are gone.
        try ProducerStateLoader(directory: directory, configuration: LogConfiguration(), logger: .init(label: "fjord.repair"))
            .removeSnapshot()
        try FileSystem.syncDirectory(directory)
    }
}
