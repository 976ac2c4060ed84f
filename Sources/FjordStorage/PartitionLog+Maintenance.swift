import FjordRecords
import Logging
import Synchronization
import NIOPosix
import SystemPackage

/// What one retention pass did.
public struct RetentionResult: Sendable, Hashable {
    /// Base offsets of the deleted segments.
    public var deletedSegments: [Int64]
    /// Bytes of log files deleted.
    public var deletedBytes: Int
    /// The log start offset afterwards.
    public var logStartOffset: Int64
}

extension PartitionLog {
    // MARK: Retention

    /// Deletes the oldest whole segments that are past the retention time or beyond the retention
    /// size, and advances the log start offset. The active segment is never deleted. Readers
    /// holding slices of a deleted segment keep reading them.
    ///
    /// A segment is past retention when its newest timestamp (of the configured type) is older
    /// than `now - retention.milliseconds`; size retention deletes the oldest segment while the log
    /// would still hold at least `retention.bytes` without it (Kafka's rules). Runs on the log's
    /// writer between appends.
    @discardableResult
    public func applyRetention(now: Int64? = nil) async throws(StorageError) -> RetentionResult {
        let now = now ?? clock()
        // Runs on the writer, like truncation, so the two never see different segment lists.
        return try await onWriter { [self] () throws(StorageError) in try retainOnWriter(now: now) }
    }

    private func retainOnWriter(now: Int64) throws(StorageError) -> RetentionResult {
        let retention = configuration.retention
        let (removed, logStart): ([SegmentState], Int64) = state.withLock { state in
            var total = Int64(state.segments.reduce(0) { $0 + $1.size })
            var count = 0
            while count < state.segments.count - 1 {
                let segment = state.segments[count]
                let expired = retention.milliseconds.map { segment.maxTimestamp != .min && segment.maxTimestamp < now - $0 } ?? false
                let oversize = retention.bytes.map { total - Int64(segment.size) >= $0 } ?? false
                guard expired || oversize else { break }
                total -= Int64(segment.size)
                count += 1
            }
            let removed = Array(state.segments.prefix(count))
            if count > 0 {
                state.segments.removeFirst(count)
                state.logStartOffset = state.segments[0].baseOffset
            }
            return (removed, state.logStartOffset)
        }
        guard !removed.isEmpty else { return RetentionResult(deletedSegments: [], deletedBytes: 0, logStartOffset: logStart) }
        // Readers holding slices keep the deleted files' maps alive.
        for segment in removed {
            for path in segment.segment.paths { try FileSystem.remove(path) }
        }
        try FileSystem.syncDirectory(directory)
        logger.info(
            "retention deleted segments",
            metadata: [
                "log.directory": "\(directory)", "log.deleted_segments": "\(removed.count)", "log.start_offset": "\(logStart)",
            ])
        return RetentionResult(
            deletedSegments: removed.map(\.baseOffset), deletedBytes: removed.reduce(0) { $0 + $1.size },
            logStartOffset: logStart)
    }

    // MARK: Truncation

    /// Removes every record at or after `offset`, which must be a batch boundary between the log
    /// start and end. Runs on the writer, between appends. Readers holding slices of the removed
    /// data keep reading the old bytes: the kept prefix is copied to a new file that replaces the
    /// old one, so no mapped file ever shrinks under a reader.
    public func truncate(to offset: Int64) async throws(StorageError) {
        try await onWriter { [self] () throws(StorageError) in try truncateOnWriter(to: offset) }
    }

    private func truncateOnWriter(to offset: Int64) throws(StorageError) {
        let (segments, logStart, logEnd) = state.withLock { ($0.segments, $0.logStartOffset, $0.logEndOffset) }
        guard offset < logEnd else { return }
        guard offset >= logStart else { throw StorageError.outOfRange(offset, start: logStart, end: logEnd) }
        let index = Self.segmentIndex(containing: offset, in: segments)
        let target = segments[index]
        var replacement: SegmentState
        if offset == target.baseOffset {
            // The segment goes entirely; start a fresh, empty one at the same base.
            for path in target.segment.paths { try FileSystem.remove(path) }
            let segment = try LogSegment(
                directory: directory, baseOffset: offset, logCapacity: activeCapacity,
                indexEntries: configuration.maxIndexEntries, truncateIndexes: true)
            try segment.log.truncate(to: 0)
            replacement = SegmentState(segment: segment)
        } else {
            guard let location = try Self.locate(offset, in: target), location.baseOffset == offset else {
                throw StorageError(
                    code: .invalidArgument, message: "offset \(offset) is not the first offset of a batch; truncate to a batch boundary")
            }
            let logName = LogSegment.fileName(target.baseOffset, LogSegment.logSuffix)
            let temporary = directory.appending(logName + ".truncating")
            let position = location.position
            _ = try FileSystem.copyPrefix(of: target.segment.log, length: position, to: temporary)
            try FileSystem.rename(temporary, to: target.segment.log.path)
            let segment = try LogSegment(
                directory: directory, baseOffset: target.baseOffset, logCapacity: max(position, activeCapacity),
                indexEntries: configuration.maxIndexEntries, truncateIndexes: true)
            let scan = try SegmentScanner(configuration: configuration).scan(segment, fileSize: position, writeIndexes: true)
            if let damage = scan.damage {
                throw StorageError(code: .corruptSegment, message: damage.reason, path: segment.log.path, position: damage.position)
            }
            replacement = scan.state
        }
        let removed = segments[(index + 1)...]
        for segment in removed {
            for path in segment.segment.paths { try FileSystem.remove(path) }
        }
        // A snapshot taken past the new end describes batches that are gone.
        try ProducerStateLoader(directory: directory, configuration: configuration, logger: logger).removeSnapshot()
        producerState.withLock { $0.truncate(from: offset) }
        try FileSystem.syncDirectory(directory)
        state.withLock { state in
            state.segments.removeLast(state.segments.count - index)
            state.segments.append(replacement)
            state.recoveryPoint = min(state.recoveryPoint, offset)
        }
        try writeRecoveryPoint(min(recoveryPoint, offset))
        logger.info("truncated log", metadata: ["log.directory": "\(directory)", "log.end_offset": "\(offset)"])
    }

    // MARK: Close

    /// Stops accepting appends, waits for queued ones, fsyncs, and writes the recovery point and
    /// the clean-shutdown marker so the next open skips the scan. Idempotent.
    ///
    /// A log taken offline by damage (``fault``) gets no marker: the next open then scans its last
    /// segment (damage there, below the recovery point, fails the open) and reads verify the rest,
    /// so a restart or a reconfiguration does not bring the damaged partition back unchecked.
    public func close() async throws(StorageError) {
        let alreadyClosed = state.withLock { state in
            defer { state.closed = true }
            return state.closed
        }
        if alreadyClosed { return }
        try await onWriter(evenIfClosed: true) { [self] () throws(StorageError) in try closeOnWriter() }
    }

    private func closeOnWriter() throws(StorageError) {
        let (segments, logEnd, rolled, fault) = state.withLock {
            ($0.segments, $0.logEndOffset, $0.flush.rolledSegments, $0.fault)
        }
        for segment in rolled { try segment.log.sync() }
        try segments[segments.count - 1].segment.log.sync()
        try FileSystem.syncDirectory(directory)
        try writeRecoveryPoint(logEnd)
        state.withLock { $0.recoveryPoint = logEnd }
        var producers = producerState.withLock { $0 }
        producers.expire(before: clock() - configuration.producerIDExpirationMilliseconds)
        try ProducerStateLoader(directory: directory, configuration: configuration, logger: logger)
            .writeSnapshot(producers, offset: logEnd)
        if let fault {
            logger.warning(
                "closed a damaged log without the clean-shutdown marker; the next open scans it",
                metadata: ["log.directory": "\(directory)", "log.end_offset": "\(logEnd)", "error": "\(fault.message)"])
            return
        }
        // The marker records the end, so the next open notices a log that came back shorter.
        try FileSystem.writeAtomically(
            "1\n\(logEnd)\n", to: directory.appending(Self.cleanShutdownFile), directory: directory)
        logger.info("closed log", metadata: ["log.directory": "\(directory)", "log.end_offset": "\(logEnd)"])
    }

    /// Runs `body` on the log's serial writer, between appends; fails with `logClosed` once the
    /// log is closed (unless `evenIfClosed`).
    func onWriter<T: Sendable>(
        evenIfClosed: Bool = false, _ body: @escaping @Sendable () throws(StorageError) -> T
    ) async throws(StorageError) -> T {
        let result: Result<T, StorageError> = await withCheckedContinuation { continuation in
            let outcome = enqueue(
                .barrier { continuation.resume(returning: Result { () throws(StorageError) in try body() }) },
                evenIfClosed: evenIfClosed)
            if case .closed = outcome {
                continuation.resume(
                    returning: .failure(StorageError(code: .logClosed, message: "the log at \(directory) is closed")))
            }
        }
        return try result.get()
    }

    /// Runs blocking file work on `pool`, keeping the `StorageError` it throws.
    static func onPool<T: Sendable>(
        _ pool: NIOThreadPool, _ body: @escaping @Sendable () throws(StorageError) -> T
    ) async throws(StorageError) -> T {
        do {
            return try await pool.runIfActive { try body() }
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError(code: .ioError, message: "the storage thread pool is not running: \(error)")
        }
    }
}
