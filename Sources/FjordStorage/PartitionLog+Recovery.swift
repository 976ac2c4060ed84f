import FjordRecords
public import Logging
public import NIOPosix
public import SystemPackage

extension PartitionLog {
    /// Opens the log in `directory`, creating it if needed, and recovers it.
    ///
    /// After a clean close (the marker file is present) the scan is skipped. Otherwise every
    /// segment that may hold offsets at or after the recovery point is validated batch by batch
    /// (frames, CRC32C, offset continuity) and re-indexed. A torn tail, damage with no valid
    /// batch after it in the last segment, is truncated. Damage anywhere else throws
    /// ``StorageError/Code/corruptSegment`` naming the file and byte position: that data is
    /// never served. Missing or inconsistent index files are rebuilt in any case.
    ///
    /// Runs on `threadPool`.
    public static func open(
        directory: FilePath, configuration: LogConfiguration = LogConfiguration(),
        threadPool: NIOThreadPool = .singleton, logger: Logger = Logger(label: "fjord.storage"),
        clock: @escaping @Sendable () -> Int64 = PartitionLog.wallClockMilliseconds
    ) async throws(StorageError) -> PartitionLog {
        try configuration.validate()
        return try await onPool(threadPool) { () throws(StorageError) in
            try openBlocking(
                directory: directory, configuration: configuration, threadPool: threadPool, logger: logger, clock: clock)
        }
    }

    /// Like ``open(directory:configuration:threadPool:logger:clock:)`` on the calling thread.
    public static func openBlocking(
        directory: FilePath, configuration: LogConfiguration = LogConfiguration(),
        threadPool: NIOThreadPool = .singleton, logger: Logger = Logger(label: "fjord.storage"),
        clock: @escaping @Sendable () -> Int64 = PartitionLog.wallClockMilliseconds
    ) throws(StorageError) -> PartitionLog {
        try configuration.validate()
        try FileSystem.createDirectory(directory)
        var recovery = Recovery(directory: directory, configuration: configuration, logger: logger)
        let (segments, recoveryPoint) = try recovery.run()
        let producers = ProducerStateLoader(directory: directory, configuration: configuration, logger: logger)
            .load(segments: segments, now: clock())
        return PartitionLog(
            directory: directory, configuration: configuration, threadPool: threadPool, logger: logger, clock: clock,
            segments: segments, recoveryPoint: recoveryPoint, producers: producers)
    }
}

/// Brings a log directory to a consistent state and describes its segments.
struct Recovery {
    let directory: FilePath
    let configuration: LogConfiguration
    let logger: Logger

    var activeCapacity: Int { configuration.segmentBytes + configuration.maxBatchBytes + BatchFraming.prefixSize }

    mutating func run() throws(StorageError) -> ([SegmentState], Int64) {
        let names = try FileSystem.listDirectory(directory)
        // Leftovers of an interrupted truncation or checkpoint write.
        for name in names where name.hasSuffix(".tmp") || name.hasSuffix(".truncating") {
            try FileSystem.remove(directory.appending(name))
        }
        var bases = names.compactMap(LogSegment.baseOffset(ofLogFile:)).sorted()
        let logBases = Set(bases)
        for name in names where name.hasSuffix(LogSegment.offsetIndexSuffix) || name.hasSuffix(LogSegment.timeIndexSuffix) {
            let stem = String(name.prefix(while: { $0 != "." }))
            if Int64(stem).map({ !logBases.contains($0) }) ?? false {
                try FileSystem.remove(directory.appending(name))  // index without a log
            }
        }

        let markerPath = directory.appending(PartitionLog.cleanShutdownFile)
        let clean = FileSystem.exists(markerPath)
        let recordedEnd = clean ? Self.readOffsetFile(markerPath) : nil
        let recoveryPoint = Self.readOffsetFile(directory.appending(PartitionLog.recoveryPointFile)) ?? 0

        if bases.isEmpty {
            // A new log (no recovery point yet), or one whose files all vanished (then the check
            // below reports the lost tail).
            bases = [0]
        }
        var segments: [SegmentState] = []
        let scanner = SegmentScanner(configuration: configuration)
        for (i, base) in bases.enumerated() {
            let isLast = i == bases.count - 1
            let nextBase = isLast ? nil : bases[i + 1]
            let state = try recoverSegment(
                base: base, nextBase: nextBase, clean: clean, recoveryPoint: recoveryPoint, scanner: scanner)
            segments.append(state)
        }

        // A log that ends below what it had made durable lost acknowledged records: report it and
        // stay offline (the marker stays, so the next start finds the same) until an operator accepts it.
        let end = segments[segments.count - 1].nextOffset
        let durableEnd = clean ? (recordedEnd ?? recoveryPoint) : recoveryPoint
        if end < durableEnd {
            let basis = clean
                ? "the end recorded at the last clean shutdown is \(durableEnd)"
                : "the recovery point (every offset below it was fsynced) is \(durableEnd)"
            var error = StorageError(
                code: .logTailLost,
                message: "the log ends at offset \(end) but \(basis): offsets \(end) to \(durableEnd - 1) are missing. The partition stays offline until an operator accepts the loss: stop the broker and run `fjord log repair \(directory) --accept-lost-tail`",
                path: directory)
            error.firstAffectedOffset = end
            throw error
        }
        // The marker is consumed now: if we crash from here on, the next open must scan.
        if clean {
            try FileSystem.remove(markerPath)
            try FileSystem.syncDirectory(directory)
        }
        let logEnd = segments[segments.count - 1].nextOffset
        logger.info(
            "opened log",
            metadata: [
                "log.directory": "\(directory)", "log.segments": "\(segments.count)",
                "log.start_offset": "\(segments[0].baseOffset)", "log.end_offset": "\(logEnd)",
                "log.clean_shutdown": "\(clean)",
            ])
        return (segments, clean ? logEnd : min(recoveryPoint, logEnd))
    }

    private func recoverSegment(
        base: Int64, nextBase: Int64?, clean: Bool, recoveryPoint: Int64, scanner: SegmentScanner
    ) throws(StorageError) -> SegmentState {
        let isLast = nextBase == nil
        let probe = try MappedFile(
            path: directory.appending(LogSegment.fileName(base, LogSegment.logSuffix)), options: [.create], capacity: 0)
        let fileSize = try probe.size()
        let capacity = isLast ? max(fileSize, activeCapacity) : fileSize
        // Segments that may hold unflushed data are validated after an unclean shutdown.
        let mayHoldUnflushed = nextBase.map { $0 > recoveryPoint } ?? true
        if !clean && mayHoldUnflushed {
            let segment = try LogSegment(
                directory: directory, baseOffset: base, logCapacity: capacity, indexEntries: configuration.maxIndexEntries,
                truncateIndexes: true)
            var result = try scanner.scan(segment, fileSize: fileSize, writeIndexes: true)
            if let damage = result.damage {
                if result.state.nextOffset < recoveryPoint {
                    throw StorageError.damaged(
                        result.state.nextOffset,
                        code: .corruptSegment,
                        message: "\(damage.reason) at offset \(result.state.nextOffset), below the recovery point \(recoveryPoint) (fsynced data, so not a torn write). The partition cannot be opened until the segment is repaired (`fjord log verify`, `fjord log repair --truncate-after-damage`)",
                        path: segment.log.path, position: damage.position)
                }
                if !isLast || result.validDataAfterDamage {
                    throw StorageError.damaged(
                        result.state.nextOffset,
                        code: .corruptSegment,
                        message: "\(damage.reason); valid data follows, so this is not a torn write. The partition cannot be opened until the segment is repaired (`fjord log verify`, `fjord log repair --truncate-after-damage`)",
                        path: segment.log.path, position: damage.position)
                }
                logger.warning(
                    "truncating torn tail",
                    metadata: [
                        "log.file": "\(segment.log.path)", "log.position": "\(damage.position)",
                        "log.dropped_bytes": "\(fileSize - damage.position)", "reason": "\(damage.reason)",
                    ])
                try segment.log.truncate(to: damage.position)
                try segment.log.sync()
                result.state.size = damage.position
            }
            try checkContinuity(result.state, nextBase: nextBase)
            return result.state
        }
        let segment = try LogSegment(
            directory: directory, baseOffset: base, logCapacity: capacity, indexEntries: configuration.maxIndexEntries,
            truncateIndexes: false)
        if let state = try loadFromIndexes(segment, fileSize: fileSize, nextBase: nextBase) {
            return state
        }
        logger.info("rebuilding index", metadata: ["log.file": "\(segment.log.path)"])
        let result = try scanner.scan(segment, fileSize: fileSize, writeIndexes: true)
        if let damage = result.damage {
            throw StorageError.damaged(
                result.state.nextOffset,
                code: .corruptSegment, message: "\(damage.reason) (found while rebuilding its index)",
                path: segment.log.path, position: damage.position)
        }
        try checkContinuity(result.state, nextBase: nextBase)
        return result.state
    }

    private func checkContinuity(_ state: SegmentState, nextBase: Int64?) throws(StorageError) {
        if let nextBase, state.nextOffset != nextBase {
            throw StorageError(
                code: .corruptSegment,
                message: "segment ends at offset \(state.nextOffset) but the next segment starts at \(nextBase)",
                path: state.segment.log.path, position: state.size)
        }
    }

    /// Trusts the index files after checking them, and reads only the segment's tail (the batches
    /// after the last index entry) for its end offset and newest timestamp. `nil` when the indexes
    /// are missing or inconsistent.
    private func loadFromIndexes(_ segment: LogSegment, fileSize: Int, nextBase: Int64?) throws(StorageError) -> SegmentState? {
        let offsetBytes = try segment.offsetIndex.file.size()
        let timeBytes = try segment.timeIndex.file.size()
        guard offsetBytes % OffsetIndex.entrySize == 0, timeBytes % TimeIndex.entrySize == 0 else { return nil }
        let offsetCount = offsetBytes / OffsetIndex.entrySize
        let timeCount = timeBytes / TimeIndex.entrySize
        guard offsetCount < configuration.maxIndexEntries, timeCount < configuration.maxIndexEntries else { return nil }
        if fileSize == 0 {
            return offsetCount == 0 && timeCount == 0 ? SegmentState(segment: segment) : nil
        }
        let log = segment.log.bytes(0..<fileSize)
        var previous = OffsetIndexEntry(offset: segment.baseOffset, position: 0)
        for i in 0..<offsetCount {
            let entry = segment.offsetIndex.entry(i)
            guard entry.offset > previous.offset, entry.position > previous.position, entry.position < fileSize else {
                return nil
            }
            previous = entry
        }
        var lastTimestamp = Int64.min
        for i in 0..<timeCount {
            let entry = segment.timeIndex.entry(i)
            guard entry.timestamp > lastTimestamp, entry.offset >= segment.baseOffset else { return nil }
            lastTimestamp = entry.timestamp
        }
        // The last offset entry must point at a batch with that base offset.
        var iterator = FramedBatchIterator(log, from: previous.position)
        guard let first = iterator.next(), first.batch.baseOffset == previous.offset else { return nil }
        var state = SegmentState(segment: segment)
        state.offsetIndexCount = offsetCount
        state.timeIndexCount = timeCount
        state.lastIndexedTimestamp = lastTimestamp
        state.maxTimestamp = lastTimestamp
        var firstIterator = FramedBatchIterator(log)
        guard let head = firstIterator.next(), head.batch.baseOffset == segment.baseOffset else { return nil }
        state.firstAppendTime = head.batch.logAppendTime
        // Walk the tail after the last index entry.
        iterator = FramedBatchIterator(log, from: previous.position)
        var end = previous.position
        var nextOffset = previous.offset
        var sinceEntry = 0
        var lastFrame = 0
        while let framed = iterator.next() {
            guard framed.batch.baseOffset == nextOffset else { return nil }
            let timestamp = configuration.timestampType == .createTime ? framed.batch.maxTimestamp : framed.batch.logAppendTime
            state.maxTimestamp = max(state.maxTimestamp, timestamp)
            lastFrame = framed.end - framed.position
            sinceEntry += lastFrame
            end = framed.end
            nextOffset = framed.batch.lastOffset &+ 1
        }
        guard iterator.stopReason == .endOfBytes, end == fileSize else { return nil }
        if let nextBase, nextOffset != nextBase { return nil }
        // Appends add an entry once `indexIntervalBytes` have been written since the last one, so
        // a longer tail means entries are missing (a deleted or emptied index): rebuild it.
        guard sinceEntry - lastFrame < configuration.indexIntervalBytes else { return nil }
        state.size = fileSize
        state.nextOffset = nextOffset
        state.bytesSinceIndexEntry = sinceEntry
        return state
    }

    /// The offset in a version-1 offset file (`1\n<offset>\n`): the log end a clean close recorded
    /// in the marker, or the recovery point. `nil` when missing, unreadable or of another version.
    static func readOffsetFile(_ path: FilePath) -> Int64? {
        guard let text = FileSystem.readSmallFile(path) else { return nil }
        let lines = text.split(separator: "\n")
        guard lines.count >= 2, lines[0] == "1" else { return nil }
        return Int64(lines[1])
    }
}

extension StorageError {
    /// A `corruptSegment` error found at open, whose first unservable offset is `firstAffectedOffset`.
    static func damaged(
        _ firstAffectedOffset: Int64, code: Code, message: String, path: FilePath, position: Int
    ) -> StorageError {
        var error = StorageError(code: code, message: message, path: path, position: position)
        error.firstAffectedOffset = firstAffectedOffset
        return error
    }
}
