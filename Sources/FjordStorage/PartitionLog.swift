#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FjordRecords
import Logging
public import NIOCore
import NIOPosix
import Synchronization
public import SystemPackage

/// One partition's log: an append-only sequence of record batches in segment files, with
/// offsets, sparse indexes, flush policies, recovery and retention.
///
/// Appends to one log are applied in order by a serial writer on a thread pool; appends to
/// different logs run in parallel. File I/O, fsync and page faults on cold data happen on the
/// pool, never on the caller's thread, except in the `Blocking` variants.
///
/// ```swift
/// let log = try await PartitionLog.open(directory: "/var/lib/fjord/orders-0")
/// var builder = RecordBatchBuilder()
/// builder.append(Record(value: Array("hello".utf8), timestamp: 1_700_000_000_000))
/// let appended = try await log.append(builder.build(), durability: .durable)
/// let read = try await log.read(from: appended.baseOffset, maxBytes: 1 << 20)
/// try await log.close()
/// ```
public final class PartitionLog: Sendable {
    /// The directory holding the segment files.
    public let directory: FilePath
    /// The log's configuration.
    public let configuration: LogConfiguration
    let threadPool: NIOThreadPool
    let logger: Logger
    let validator: RecordBatchValidator
    let clock: @Sendable () -> Int64
    let state: Mutex<State>
    /// Idempotent producers' state; only the serial writer (and open) change it.
    let producerState: Mutex<ProducerStateTable>
    /// Told the duration of every successful flush (fsync), for metrics.
    let flushObserver = Mutex<(@Sendable (_ nanoseconds: Int64) -> Void)?>(nil)
    /// Told about damage found in a segment, once per segment, for metrics.
    let damageObserver = Mutex<(@Sendable (StorageError) -> Void)?>(nil)
    /// Serializes writes of the recovery-point file (the flusher and the writer both write it).
    let checkpointLock = Mutex(())

    /// Name of the marker written by a clean close; its presence lets the next open skip the scan.
    static let cleanShutdownFile = ".clean-shutdown"
    /// Name of the file holding the recovery point: every offset below it is known to be on disk.
    static let recoveryPointFile = "recovery-point"

    struct State {
        var segments: [SegmentState]
        var logStartOffset: Int64
        /// Every offset below this is fsynced.
        var recoveryPoint: Int64
        var pending: [PendingOperation] = []
        var writerScheduled = false
        var flush = FlushState()
        var closed = false
        /// Set when damage was found: every later read and append fails with it (the log is offline).
        var fault: StorageError?
        /// The recovery point last written to the file, and when (monotonic nanoseconds).
        var checkpoint: (offset: Int64, nanoseconds: Int64) = (0, 0)

        var active: SegmentState {
            get { segments[segments.count - 1] }
            set { segments[segments.count - 1] = newValue }
        }
        var logEndOffset: Int64 { active.nextOffset }
    }

    struct FlushState {
        var waiters: [DurableWaiter] = []
        var rolledSegments: [LogSegment] = []
        var directoryDirty = false
        var requested = false
        var scheduled = false
        var timerPending = false
    }

    struct DurableWaiter {
        var result: AppendResult
        var completion: @Sendable (Result<AppendResult, StorageError>) -> Void
    }

    enum PendingOperation {
        case append(PendingAppend)
        /// Runs on the writer between appends (truncation, close).
        case barrier(@Sendable () -> Void)
    }

    struct PendingAppend {
        var batch: ByteBuffer
        var header: RecordBatchHeader
        var leaderEpoch: Int32
        var durable: Bool
        var completion: @Sendable (Result<AppendResult, StorageError>) -> Void
    }

    init(
        directory: FilePath, configuration: LogConfiguration, threadPool: NIOThreadPool, logger: Logger,
        clock: @escaping @Sendable () -> Int64, segments: [SegmentState], recoveryPoint: Int64,
        producers: ProducerStateTable = ProducerStateTable()
    ) {
        self.producerState = Mutex(producers)
        self.directory = directory
        self.configuration = configuration
        self.threadPool = threadPool
        self.logger = logger
        self.validator = RecordBatchValidator(maxBatchBytes: configuration.maxBatchBytes)
        self.clock = clock
        var initial = State(segments: segments, logStartOffset: segments[0].baseOffset, recoveryPoint: recoveryPoint)
        initial.checkpoint = (recoveryPoint, Self.monotonicNanoseconds())
        self.state = Mutex(initial)
    }

    /// Calls `observer` with the duration of every successful flush (the fsyncs of durable appends,
    /// flush policies and ``flush()``), on the storage thread that ran it; for metrics.
    public func observeFlushes(_ observer: @escaping @Sendable (_ nanoseconds: Int64) -> Void) {
        flushObserver.withLock { $0 = observer }
    }

    static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    /// Milliseconds since the Unix epoch from the system's real-time clock.
    @Sendable public static func wallClockMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    // MARK: Offsets

    /// The first offset still in the log.
    public var logStartOffset: Int64 { state.withLock { $0.logStartOffset } }

    /// The offset the next appended record will get.
    public var logEndOffset: Int64 { state.withLock { $0.logEndOffset } }

    /// Every offset below this is on disk (fsynced).
    public var recoveryPoint: Int64 { state.withLock { $0.recoveryPoint } }

    /// Number of segments.
    public var segmentCount: Int { state.withLock { $0.segments.count } }

    /// Total bytes of all segment log files.
    public var sizeInBytes: Int { state.withLock { $0.segments.reduce(0) { $0 + $1.size } } }

    /// Base offsets of the segments, oldest first.
    public var segmentBaseOffsets: [Int64] { state.withLock { $0.segments.map(\.baseOffset) } }

    // MARK: Append

    /// Validates `batch`, queues it, and calls `completion` once it is appended (and on disk when
    /// `durability` is ``AppendDurability/durable`` or the flush policy is every batch).
    ///
    /// Validation (sizes, layout, CRC32C, record count) runs on the caller's thread and fails fast;
    /// writing runs on the log's serial writer. `batch` is not modified: the stamped fields are
    /// written from a separate buffer, so the payload goes to the file without a copy.
    public func append(
        _ batch: ByteBuffer, leaderEpoch: Int32 = 0, durability: AppendDurability = .written,
        completion: @escaping @Sendable (Result<AppendResult, StorageError>) -> Void
    ) {
        let header: RecordBatchHeader
        do {
            header = try batch.withUnsafeReadableBytes { bytes throws(RecordBatchError) in try validator.validate(bytes) }
        } catch {
            completion(.failure(.invalidBatch(error)))
            return
        }
        let durable = durability == .durable || configuration.flushPolicy == .everyBatch
        let operation = PendingOperation.append(
            PendingAppend(batch: batch, header: header, leaderEpoch: leaderEpoch, durable: durable, completion: completion))
        switch enqueue(operation) {
        case .queued: return
        case .closed: completion(.failure(StorageError(code: .logClosed, message: "the log at \(directory) is closed")))
        case .faulted(let fault): completion(.failure(fault))
        }
    }

    /// Appends `batch` and returns the offsets it was given. See ``append(_:leaderEpoch:durability:completion:)``.
    @discardableResult
    public func append(
        _ batch: ByteBuffer, leaderEpoch: Int32 = 0, durability: AppendDurability = .written
    ) async throws(StorageError) -> AppendResult {
        let result: Result<AppendResult, StorageError> = await withCheckedContinuation { continuation in
            append(batch, leaderEpoch: leaderEpoch, durability: durability) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// What ``enqueue(_:evenIfClosed:)`` did.
    enum EnqueueOutcome {
        case queued
        /// The log is closed; nothing was queued.
        case closed
        /// The log is offline because of damage (appends only); nothing was queued.
        case faulted(StorageError)
    }

    /// Queues an operation for the writer. Appends are refused once the log is closed or faulted;
    /// barriers only once it is closed (unless `evenIfClosed`).
    func enqueue(_ operation: PendingOperation, evenIfClosed: Bool = false) -> EnqueueOutcome {
        let schedule: Result<Bool, StorageError>? = state.withLock { state in
            if state.closed && !evenIfClosed { return nil }
            if case .append = operation, let fault = state.fault { return .failure(fault) }
            state.pending.append(operation)
            if state.writerScheduled { return .success(false) }
            state.writerScheduled = true
            return .success(true)
        }
        switch schedule {
        case nil: return .closed
        case .failure(let fault)?: return .faulted(fault)
        case .success(let start)?:
            if start { threadPool.submit { [self] _ in drainWriter() } }
            return .queued
        }
    }

    /// The serial writer: takes everything queued and writes it. If more arrived meanwhile it queues
    /// itself again behind the pool's other work (reads, fsyncs, other logs' writers) rather than
    /// keeping the thread, so a busy log cannot starve the rest.
    private func drainWriter() {
        let operations: [PendingOperation] = state.withLock { state in
            var taken: [PendingOperation] = []
            swap(&taken, &state.pending)
            return taken
        }
        var scratch = WriterScratch()
        var appends: [PendingAppend] = []
        appends.reserveCapacity(operations.count)
        for operation in operations {
            switch operation {
            case .append(let append):
                appends.append(append)
            case .barrier(let body):
                if !appends.isEmpty {
                    writeAppends(appends, scratch: &scratch)
                    appends.removeAll(keepingCapacity: true)
                }
                body()
            }
        }
        if !appends.isEmpty { writeAppends(appends, scratch: &scratch) }
        let more = state.withLock { state in
            if state.pending.isEmpty { state.writerScheduled = false }
            return !state.pending.isEmpty
        }
        if more { threadPool.submit { [self] _ in drainWriter() } }
    }

    /// Buffers the writer reuses between groups.
    struct WriterScratch {
        var heads: [UInt8] = []
        var iovecs: [iovec] = []
        var offsetEntries: [UInt8] = []
        var timeEntries: [UInt8] = []
    }

    /// Bytes written from the writer's own buffer for each batch: the frame prefix and the
    /// stamped part of the header (up to the CRC field).
    static let stampedHeadSize = BatchFraming.prefixSize + 23

    /// Writes a group of appends with as few `pwritev` calls as segment rolls allow.
    private func writeAppends(_ appends: [PendingAppend], scratch: inout WriterScratch) {
        var active = state.withLock { $0.active }
        let now = clock()
        var index = 0
        while index < appends.count {
            // Roll first if the next batch does not belong in the active segment.
            if shouldRoll(active, before: appends[index], now: now) {
                do {
                    active = try roll(from: active)
                } catch {
                    logger.error("segment roll failed", metadata: ["log.directory": "\(directory)", "error": "\(error)"])
                    appends[index].completion(.failure(error))
                    index += 1
                    continue
                }
            }
            // Take every following batch that fits in this segment.
            var end = index + 1
            var projected = active
            project(appends[index], into: &projected, now: now)
            while end < appends.count, !shouldRoll(projected, before: appends[end], now: now) {
                project(appends[end], into: &projected, now: now)
                end += 1
            }
            active = writeChunk(appends[index..<end], to: active, now: now, scratch: &scratch)
            index = end
        }
    }

    /// Updates only the size and offset fields, to decide on rolls while grouping.
    private func project(_ append: PendingAppend, into state: inout SegmentState, now: Int64) {
        state.size += BatchFraming.prefixSize + append.batch.readableBytes
        state.nextOffset += Int64(append.header.recordCount)
        if state.firstAppendTime == nil { state.firstAppendTime = now }
    }

    private func shouldRoll(_ segment: SegmentState, before append: PendingAppend, now: Int64) -> Bool {
        guard !segment.isEmpty else { return false }
        let frameSize = BatchFraming.prefixSize + append.batch.readableBytes
        if segment.size + frameSize > configuration.segmentBytes { return true }
        if let first = segment.firstAppendTime, now - first >= configuration.segmentMilliseconds { return true }
        if segment.nextOffset + Int64(append.header.recordCount) - 1 - segment.baseOffset > Int64(UInt32.max) { return true }
        if segment.offsetIndexCount >= configuration.maxIndexEntries - 1
            || segment.timeIndexCount >= configuration.maxIndexEntries - 1
        {
            return true
        }
        return false
    }

    /// Writes `chunk` to the end of `segment` in one `pwritev`, publishes it, and completes or
    /// parks its appends. On failure the appends fail and the segment is left as it was.
    ///
    /// Idempotent batches are judged here, in log order, against the producer state: duplicates
    /// are answered with their original offsets and rejected ones fail, neither is written. The
    /// state changes only if the write succeeds.
    private func writeChunk(
        _ chunk: ArraySlice<PendingAppend>, to segment: SegmentState, now: Int64, scratch: inout WriterScratch
    ) -> SegmentState {
        var updated = segment
        let head = Self.stampedHeadSize
        scratch.heads.removeAll(keepingCapacity: true)
        scratch.heads.reserveCapacity(chunk.count * head)
        scratch.offsetEntries.removeAll(keepingCapacity: true)
        scratch.timeEntries.removeAll(keepingCapacity: true)
        scratch.iovecs.removeAll(keepingCapacity: true)
        var outcomes: [Result<AppendResult, StorageError>] = []
        outcomes.reserveCapacity(chunk.count)
        var written = 0
        let scanner = SegmentScanner(configuration: configuration)
        let logStart = state.withLock { $0.logStartOffset }
        // Idempotent batches are judged and recorded in place, with an undo list for a failed write
        // (only this serial writer touches the table, so nothing else sees the interim state).
        var undo: [ProducerStateTable.Undo] = []

        // Stamp each batch's head into scratch and account for it as recovery would.
        for append in chunk {
            var header = append.header
            let idempotent = header.producerID >= 0
            if idempotent {
                switch producerState.withLock({ $0.check(header) }) {
                case .append:
                    break
                case .duplicate(let original):
                    outcomes.append(
                        .success(
                            AppendResult(
                                baseOffset: original.baseOffset, lastOffset: original.lastOffset,
                                logAppendTime: original.logAppendTime, logStartOffset: logStart, duplicate: true)))
                    continue
                case .reject(let code, let message):
                    outcomes.append(.failure(StorageError(code: code, message: message)))
                    continue
                }
            }
            header.baseOffset = updated.nextOffset
            header.partitionLeaderEpoch = append.leaderEpoch
            header.logAppendTime = now
            if idempotent, let change = producerState.withLock({ $0.record(header) }) { undo.append(change) }
            let length = append.batch.readableBytes
            let start = scratch.heads.count
            scratch.heads.append(contentsOf: repeatElement(0, count: head))
            scratch.heads.withUnsafeMutableBytes { raw in
                let pointer = raw.baseAddress! + start
                BatchFraming.writePrefix(length: length, to: pointer)
                append.batch.withUnsafeReadableBytes { batch in
                    (pointer + BatchFraming.prefixSize).copyMemory(from: batch.baseAddress!, byteCount: 23)
                }
                RecordBatchHeader.stamp(
                    pointer + BatchFraming.prefixSize, baseOffset: header.baseOffset,
                    partitionLeaderEpoch: append.leaderEpoch, logAppendTime: now)
            }
            scanner.record(
                header: header, position: updated.size, frameSize: BatchFraming.prefixSize + length, into: &updated,
                offsetEntries: &scratch.offsetEntries, timeEntries: &scratch.timeEntries)
            outcomes.append(
                .success(
                    AppendResult(
                        baseOffset: header.baseOffset, lastOffset: header.lastOffset, logAppendTime: now,
                        logStartOffset: logStart)))
            written += 1
        }

        // One pwritev: [head 0][rest of batch 0][head 1][rest of batch 1]...
        var writeResult: Result<Void, StorageError> = .success(())
        if written > 0 {
            writeResult = scratch.heads.withUnsafeMutableBytes { heads in
                var i = 0
                for (append, outcome) in zip(chunk, outcomes) {
                    guard case .success(let result) = outcome, !result.duplicate else { continue }
                    scratch.iovecs.append(iovec(iov_base: heads.baseAddress! + i * head, iov_len: head))
                    append.batch.withUnsafeReadableBytes { batch in
                        // The batch's storage outlives the write: `chunk` holds the buffer and nothing mutates it.
                        scratch.iovecs.append(
                            iovec(iov_base: UnsafeMutableRawPointer(mutating: batch.baseAddress! + 23), iov_len: batch.count - 23))
                    }
                    i += 1
                }
                return Result { () throws(StorageError) in try segment.segment.log.write(&scratch.iovecs, at: segment.size) }
            }
        }
        if case .failure(let error) = writeResult {
            logger.warning(
                "append failed", metadata: ["log.directory": "\(directory)", "error": "\(error)", "batches": "\(chunk.count)"])
            // Drop whatever part of the write reached the file; the next append overwrites it anyway.
            try? segment.segment.log.truncate(to: segment.size)
            if !undo.isEmpty { producerState.withLock { $0.undo(undo) } }
            for (append, outcome) in zip(chunk, outcomes) {
                // A duplicate may point into this very write, so it fails with it; rejections stand.
                if case .failure = outcome { append.completion(outcome) } else { append.completion(.failure(error)) }
            }
            return segment
        }

        // Index entries are an optimisation: if writing them fails, lookups scan a little further.
        updated = writeIndexEntries(from: segment, to: updated, scratch: scratch)
        // What this process validated and wrote needs no verification when it is read back.
        var firstEpoch: Int32?
        var lastEpoch: Int32?
        for (append, outcome) in zip(chunk, outcomes) {
            guard case .success(let result) = outcome, !result.duplicate else { continue }
            if firstEpoch == nil { firstEpoch = append.leaderEpoch }
            lastEpoch = append.leaderEpoch
        }
        if let firstEpoch, let lastEpoch {
            let appended = VerifiedRange(
                lower: segment.size, upper: updated.size, firstOffset: segment.nextOffset, firstEpoch: firstEpoch,
                nextOffset: updated.nextOffset, lastEpoch: lastEpoch)
            segment.segment.verified.withLock { $0.insert(appended) }
        }

        var durable: [DurableWaiter] = []
        let requestFlush: Bool = state.withLock { state in
            state.active = updated
            for (append, outcome) in zip(chunk, outcomes) where append.durable {
                // A duplicate waits for the same flush as new data: its original may not be on disk yet.
                if case .success(let result) = outcome {
                    durable.append(DurableWaiter(result: result, completion: append.completion))
                }
            }
            guard !durable.isEmpty else { return false }
            state.flush.waiters.append(contentsOf: durable)
            return true
        }
        for (append, outcome) in zip(chunk, outcomes) {
            if case .success = outcome, append.durable { continue }
            append.completion(outcome)
        }
        if requestFlush {
            self.requestFlush()
        } else if case .interval(let milliseconds) = configuration.flushPolicy {
            scheduleFlushTimer(milliseconds: milliseconds)
        }
        return updated
    }

    private func writeIndexEntries(from before: SegmentState, to after: SegmentState, scratch: WriterScratch) -> SegmentState {
        var result = after
        do {
            if !scratch.offsetEntries.isEmpty {
                try before.segment.offsetIndex.file.write(
                    scratch.offsetEntries, at: before.offsetIndexCount * OffsetIndex.entrySize)
            }
            if !scratch.timeEntries.isEmpty {
                try before.segment.timeIndex.file.write(scratch.timeEntries, at: before.timeIndexCount * TimeIndex.entrySize)
            }
        } catch {
            logger.warning("index write failed", metadata: ["log.directory": "\(directory)", "error": "\(error)"])
            result.offsetIndexCount = before.offsetIndexCount
            result.timeIndexCount = before.timeIndexCount
            result.lastIndexedTimestamp = before.lastIndexedTimestamp
        }
        return result
    }

    /// Starts a new active segment at `previous.nextOffset`. The old one is fsynced by the flusher.
    private func roll(from previous: SegmentState) throws(StorageError) -> SegmentState {
        let segment = try LogSegment(
            directory: directory, baseOffset: previous.nextOffset, logCapacity: activeCapacity,
            indexEntries: configuration.maxIndexEntries, truncateIndexes: true)
        try segment.log.truncate(to: 0)
        let fresh = SegmentState(segment: segment)
        state.withLock { state in
            state.segments.append(fresh)
            state.flush.rolledSegments.append(previous.segment)
            state.flush.directoryDirty = true
        }
        logger.debug(
            "rolled segment", metadata: ["log.directory": "\(directory)", "segment.base": "\(previous.nextOffset)"])
        requestFlush()
        return fresh
    }

    /// Address space reserved for an active segment's log file.
    var activeCapacity: Int { configuration.segmentBytes + configuration.maxBatchBytes + BatchFraming.prefixSize }

    // MARK: Flush

    /// Forces everything written so far to disk and advances the recovery point.
    public func flush() async throws(StorageError) {
        let target = logEndOffset
        let result: Result<Void, StorageError> = await withCheckedContinuation { continuation in
            let waiter = DurableWaiter(
                result: AppendResult(baseOffset: target, lastOffset: target - 1, logAppendTime: 0, logStartOffset: 0),
                completion: { result in continuation.resume(returning: result.map { _ in () }) })
            state.withLock { $0.flush.waiters.append(waiter) }
            requestFlush()
        }
        try result.get()
    }

    func requestFlush() {
        let schedule = state.withLock { state in
            state.flush.requested = true
            if state.flush.scheduled { return false }
            state.flush.scheduled = true
            return true
        }
        if schedule { threadPool.submit { [self] _ in drainFlusher() } }
    }

    private func scheduleFlushTimer(milliseconds: Int64) {
        let start = state.withLock { state in
            if state.flush.timerPending { return false }
            state.flush.timerPending = true
            return true
        }
        guard start else { return }
        Task { [self] in
            try? await Task.sleep(for: .milliseconds(milliseconds))
            state.withLock { $0.flush.timerPending = false }
            requestFlush()
        }
    }

    /// The flusher: one fdatasync covers every batch written before it started (group commit).
    /// Runs beside the writer, so appends continue while a sync is in progress.
    private func drainFlusher() {
        while true {
            let work: (FlushState, LogSegment, Int64)? = state.withLock { state in
                guard state.flush.requested else {
                    state.flush.scheduled = false
                    return nil
                }
                let taken = state.flush
                state.flush.requested = false
                state.flush.waiters = []
                state.flush.rolledSegments = []
                state.flush.directoryDirty = false
                return (taken, state.active.segment, state.logEndOffset)
            }
            guard let (taken, active, flushedTo) = work else { return }
            let started = Self.monotonicNanoseconds()
            let outcome: Result<Void, StorageError> = Result { () throws(StorageError) in
                for segment in taken.rolledSegments { try segment.log.sync() }
                try active.log.sync()
                if taken.directoryDirty { try FileSystem.syncDirectory(directory) }
                if !taken.rolledSegments.isEmpty || checkpointDue(flushedTo) { try writeRecoveryPoint(flushedTo) }
            }
            if case .failure(let error) = outcome {
                logger.error("fsync failed", metadata: ["log.directory": "\(directory)", "error": "\(error)"])
                state.withLock { state in
                    state.flush.rolledSegments.insert(contentsOf: taken.rolledSegments, at: 0)
                    state.flush.directoryDirty = state.flush.directoryDirty || taken.directoryDirty
                }
            } else {
                state.withLock { $0.recoveryPoint = max($0.recoveryPoint, flushedTo) }
                if let observer = flushObserver.withLock({ $0 }) { observer(Self.monotonicNanoseconds() - started) }
            }
            for waiter in taken.waiters {
                waiter.completion(outcome.map { waiter.result })
            }
        }
    }

    /// Whether the flusher should write the recovery point `flushedTo` although no segment rolled:
    /// it advanced, and the last write is `recoveryPointCheckpointMilliseconds` old.
    private func checkpointDue(_ flushedTo: Int64) -> Bool {
        let now = Self.monotonicNanoseconds()
        let interval = configuration.recoveryPointCheckpointMilliseconds * 1_000_000
        return state.withLock { flushedTo > $0.checkpoint.offset && now - $0.checkpoint.nanoseconds >= interval }
    }

    func writeRecoveryPoint(_ offset: Int64) throws(StorageError) {
        try checkpointLock.withLock { _ throws(StorageError) in
            try FileSystem.writeAtomically(
                "1\n\(offset)\n", to: directory.appending(Self.recoveryPointFile), directory: directory)
            let now = Self.monotonicNanoseconds()
            state.withLock { $0.checkpoint = (offset, now) }
        }
    }

    // MARK: Read

    /// Reads whole batches from the one holding `offset`, up to about `maxBytes` (at least one
    /// batch, however large), from a single segment, without copying.
    ///
    /// Runs on the thread pool, which reads cold pages in (and verifies them) before returning, so
    /// the caller (an event loop) can send the bytes without blocking on the disk.
    ///
    /// - Throws: ``StorageError/Code/offsetOutOfRange`` naming both bounds when `offset` is below
    ///   the log start or beyond the log end. Reading at the log end returns an empty slice.
    public func read(from offset: Int64, maxBytes: Int) async throws(StorageError) -> LogReadResult {
        try await Self.onPool(threadPool) { [self] () throws(StorageError) in
            try readBlocking(from: offset, maxBytes: maxBytes)
        }
    }

    /// Like ``read(from:maxBytes:)`` but on the calling thread, which may block on page faults.
    /// Never call it on an event loop.
    ///
    /// Batches not verified since the log was opened, or whose pages left the page cache since
    /// they were verified, are verified before they are returned (CRC32C, frames, offset
    /// continuity, leader epochs; see ``VerifiedRanges``). The returned pages are in the page cache.
    ///
    /// - Throws: ``StorageError/Code/corruptSegment`` when the batches to return (or the frames
    ///   leading to them) are damaged: the log then goes offline and fails every later read and
    ///   append with the same error. ``StorageError/Code/offsetOutOfRange`` as for ``read(from:maxBytes:)``.
    public func readBlocking(from offset: Int64, maxBytes: Int) throws(StorageError) -> LogReadResult {
        let (found, start, end) = try state.withLock {
            state throws(StorageError) -> ((SegmentState, SegmentState?)?, Int64, Int64) in
            if let fault = state.fault { throw fault }
            let start = state.logStartOffset
            let end = state.logEndOffset
            guard offset >= start, offset <= end else { throw StorageError.outOfRange(offset, start: start, end: end) }
            if offset == end { return (nil, start, end) }
            let index = Self.segmentIndex(containing: offset, in: state.segments)
            return ((state.segments[index], index > 0 ? state.segments[index - 1] : nil), start, end)
        }
        guard let (segment, previous) = found else {
            return LogReadResult(records: .empty(at: end), logStartOffset: start, logEndOffset: end)
        }
        let slice: LogSlice
        do {
            slice = try Self.slice(
                of: segment, from: offset, maxBytes: maxBytes, previousSegmentEpoch: previous.flatMap(Self.lastEpoch))
        } catch let error where error.code == .corruptSegment {
            throw reportDamage(error, in: segment.segment)
        }
        return LogReadResult(records: slice, logStartOffset: start, logEndOffset: end)
    }

    /// Index of the last segment whose base offset is at most `offset`.
    static func segmentIndex(containing offset: Int64, in segments: [SegmentState]) -> Int {
        var low = 0
        var high = segments.count
        while low < high {
            let mid = (low + high) / 2
            if segments[mid].baseOffset <= offset { low = mid + 1 } else { high = mid }
        }
        return max(0, low - 1)
    }

    /// Where the batch holding `offset` is in `segment`, found from the offset index.
    struct Location {
        /// Position of the batch's frame.
        var position: Int
        /// The batch's base offset.
        var baseOffset: Int64
        /// Leader epoch of the batch before it, when known: the walk passed it, a verified range
        /// ends there, or it is the previous segment's last batch.
        var previousEpoch: Int32?
    }

    /// Leader epoch of the last batch of `segment`, when a verified range reaches its end.
    static func lastEpoch(of segment: SegmentState) -> Int32? {
        segment.segment.verified.withLock { $0.ending(at: segment.size)?.lastEpoch }
    }

    /// Locates the frame of the batch holding `offset` in `segment`: from the nearest index entry,
    /// walks the frames, checking that each base offset continues the previous batch (the first
    /// must match the index entry). `nil` when `offset` is at or past the segment's end.
    ///
    /// The epoch before the entry is taken from a verified range ending there, or, at the
    /// segment's start, from `previousSegmentEpoch` (the previous segment's last batch).
    ///
    /// - Throws: ``StorageError/Code/corruptSegment`` when a frame does not parse, offsets do not
    ///   continue, or the segment ends before `offset` although the log says it holds it.
    static func locate(
        _ offset: Int64, in segment: SegmentState, previousSegmentEpoch: Int32? = nil
    ) throws(StorageError) -> Location? {
        guard offset < segment.nextOffset else { return nil }
        let entry = segment.segment.offsetIndex.lookup(offset, count: segment.offsetIndexCount)
        let bytes = segment.segment.log.bytes(0..<segment.size)
        var iterator = FramedBatchIterator(bytes, from: entry.position)
        var expected = entry.offset
        var previousEpoch: Int32? =
            segment.segment.verified.withLock { $0.ending(at: entry.position)?.lastEpoch }
            ?? (entry.position == 0 ? previousSegmentEpoch : nil)
        while let framed = iterator.next() {
            let batch = framed.batch
            guard batch.baseOffset == expected, batch.recordCount > 0 else {
                let what = framed.position == entry.position && entry.position > 0
                    ? "the offset index says offset \(expected) starts here" : "the previous batch ends before offset \(expected)"
                throw StorageError.corrupt(
                    "batch base offset \(batch.baseOffset) with \(batch.recordCount) records, but \(what)", segment: segment,
                    position: framed.position, firstLostOffset: expected)
            }
            if batch.lastOffset >= offset {
                return Location(position: framed.position, baseOffset: batch.baseOffset, previousEpoch: previousEpoch)
            }
            expected = batch.lastOffset &+ 1
            previousEpoch = batch.header.partitionLeaderEpoch
        }
        let (reason, position) = iterator.stopReason.damage
            ?? ("the segment ends at offset \(expected) but the log holds offsets up to \(segment.nextOffset - 1)", segment.size)
        throw StorageError.corrupt(reason, segment: segment, position: position, firstLostOffset: expected)
    }

    /// Whole batches of `segment` from the one holding `offset`, up to about `maxBytes` (at least
    /// one), verified (see ``verify(_:in:location:)``) unless already verified and still in the
    /// page cache. The slice stops before a batch whose base offset does not continue the one
    /// before it (that damage is reported by the read that starts there).
    static func slice(
        of segment: SegmentState, from offset: Int64, maxBytes: Int, previousSegmentEpoch: Int32? = nil
    ) throws(StorageError) -> LogSlice {
        guard offset < segment.nextOffset else { return .empty(at: segment.nextOffset) }
        // Ask which pages are in the page cache before the walk below touches (and so reads in)
        // any of them: the walk spans at most an index interval or so before the slice.
        let entry = segment.segment.offsetIndex.lookup(offset, count: segment.offsetIndexCount)
        let ahead = min(max(maxBytes, 0), segment.size) + Self.residencyLookahead
        let residency = segment.segment.log.residency(entry.position..<min(segment.size, entry.position + ahead))
        guard let location = try locate(offset, in: segment, previousSegmentEpoch: previousSegmentEpoch) else {
            return .empty(at: segment.nextOffset)
        }
        let start = location.position
        let bytes = segment.segment.log.bytes(0..<segment.size)
        var iterator = FramedBatchIterator(bytes, from: start)
        var end = start
        var nextOffset = location.baseOffset
        // Nothing here is verified yet: stop at a discontinuity before doing arithmetic on offsets.
        while let framed = iterator.next(), framed.batch.baseOffset == nextOffset {
            if end > start && framed.end - start > maxBytes { break }
            end = framed.end
            nextOffset = framed.batch.lastOffset &+ 1
        }
        if end == start {
            // Not even one whole frame: the damage is at `start`.
            let reason = iterator.stopReason.damage?.reason ?? "no batch frame at this position"
            throw StorageError.corrupt(reason, segment: segment, position: start, firstLostOffset: location.baseOffset)
        }
        try verify(start..<end, in: segment, location: location, resident: residency.isResident(start..<end))
        if end == segment.size, nextOffset != segment.nextOffset {
            throw StorageError.corrupt(
                "the segment's last batch ends at offset \(nextOffset) but the log expects \(segment.nextOffset)",
                segment: segment, position: end, firstLostOffset: nextOffset)
        }
        return LogSlice(
            file: segment.segment.log, range: start..<end, firstOffset: location.baseOffset, nextOffset: nextOffset,
            pagesResident: true)
    }

    /// Bytes past a read's index entry and `maxBytes` whose residency a read asks about up front.
    static let residencyLookahead = 256 << 10

    /// Verifies the frames in `range` of `segment` unless a verified range covers them and their
    /// pages were in the page cache (`resident`, asked before anything touched them): one pass of
    /// hardware CRC32C plus header checks per batch, offset continuity from the batch before (or
    /// the index entry it was located from), leader epochs that never decrease. Adds what it
    /// verified to the segment's ranges, so reading the same bytes again costs one `mincore`
    /// (the caller's).
    ///
    /// Bytes that left the page cache are read from disk again, so they are verified again: no
    /// batch is sent that was not verified since it was last read from disk. On return the pages
    /// of `range` are in the page cache (checked, or read in here).
    ///
    /// - Returns: the verified range holding `range` (`nil` only for an empty `range`); its
    ///   ``VerifiedRange/nextOffset`` is what must follow it.
    @discardableResult
    static func verify(
        _ range: Range<Int>, in segment: SegmentState, location: Location, resident: Bool
    ) throws(StorageError) -> VerifiedRange? {
        guard !range.isEmpty else { return nil }
        let file = segment.segment.log
        let known = segment.segment.verified.withLock { $0 }
        if resident, let covering = known.covering(range) { return covering }
        // Pages read from disk again are verified from the read's start; resident ones continue a
        // verified range the read starts inside or right after.
        let continued = resident ? known.continuable(from: range.lowerBound) : nil
        let from = continued?.upper ?? range.lowerBound
        let expected = continued?.nextOffset ?? location.baseOffset
        let epoch = continued?.lastEpoch ?? known.ending(at: range.lowerBound)?.lastEpoch ?? location.previousEpoch
        if !resident, !file.populate(range) {
            throw StorageError(
                code: .ioError, message: "the kernel could not read the segment's pages", path: file.path, position: from)
        }
        switch SegmentVerifier.verify(
            file.bytes(0..<segment.size), range: from..<range.upperBound, expectedOffset: expected, previousEpoch: epoch)
        {
        case .failure(let damage):
            throw StorageError.corrupt(
                damage.reason, segment: segment, position: damage.position, firstLostOffset: damage.firstLostOffset)
        case .success(let verified):
            guard var verified else { return continued }
            if let continued {
                verified.lower = continued.lower
                verified.firstOffset = continued.firstOffset
                verified.firstEpoch = continued.firstEpoch
            }
            let added = verified
            segment.segment.verified.withLock { $0.insert(added) }
            return verified
        }
    }

    // MARK: Offset for time

    /// The first offset whose record timestamp (of the configured type) is at least `timestamp`,
    /// or `nil` when every record is older. Uses the segments' time indexes.
    public func offset(forTimestamp timestamp: Int64) async throws(StorageError) -> Int64? {
        try await Self.onPool(threadPool) { [self] () throws(StorageError) in try offsetBlocking(forTimestamp: timestamp) }
    }

    /// Like ``offset(forTimestamp:)`` on the calling thread. Never call it on an event loop.
    public func offsetBlocking(forTimestamp timestamp: Int64) throws(StorageError) -> Int64? {
        let (candidate, logStart) = state.withLock { state in
            (state.segments.first { $0.maxTimestamp >= timestamp }, state.logStartOffset)
        }
        guard let segment = candidate else { return nil }
        let from = segment.segment.timeIndex.lastEntry(before: timestamp, count: segment.timeIndexCount)?.offset
            ?? segment.baseOffset
        guard let location = try Self.locate(from, in: segment) else { return nil }
        var iterator = FramedBatchIterator(segment.segment.log.bytes(0..<segment.size), from: location.position)
        let useAppendTime = configuration.timestampType == .logAppendTime
        var expected = location.baseOffset
        while let framed = iterator.next() {
            let batch = framed.batch
            // Unverified bytes: an offset that does not continue the previous batch is damage.
            guard batch.baseOffset == expected else {
                let error = StorageError.corrupt(
                    "batch base offset \(batch.baseOffset), expected \(expected)", segment: segment, position: framed.position,
                    firstLostOffset: expected)
                throw reportDamage(error, in: segment.segment)
            }
            expected = batch.lastOffset &+ 1
            if useAppendTime {
                if batch.logAppendTime >= timestamp { return max(batch.baseOffset, logStart) }
            } else if batch.maxTimestamp >= timestamp {
                let index = batch.firstRecordIndex(withTimestampAtLeast: timestamp) ?? 0
                return max(batch.baseOffset + Int64(index), logStart)
            }
        }
        return nil
    }
}
