import FjordRecords
import Logging
import Synchronization
import SystemPackage

/// Walks a segment's log file batch by batch: recovery validates and re-indexes with it, and the
/// log rebuilds missing or damaged indexes with it.
struct SegmentScanner {
    /// Where and why a scan stopped before the end of the file.
    struct Damage: Error {
        var position: Int
        var reason: String
    }

    struct Result {
        var state: SegmentState
        /// `nil` when every byte up to the end was a valid batch.
        var damage: Damage?
        /// Whether a valid batch follows the damaged one: the damage is then inside the log, not a torn tail.
        var validDataAfterDamage: Bool
    }

    let configuration: LogConfiguration

    /// Scans `segment`'s first `fileSize` bytes, checking frames, CRCs and offset continuity, and
    /// (when `writeIndexes`) writes fresh index entries into the segment's (empty) index files.
    func scan(_ segment: LogSegment, fileSize: Int, writeIndexes: Bool) throws(StorageError) -> Result {
        var state = SegmentState(segment: segment)
        var offsetEntries: [UInt8] = []
        var timeEntries: [UInt8] = []
        let bytes = segment.log.bytes(0..<fileSize)
        var iterator = FramedBatchIterator(bytes)
        var damage: Damage?
        var validAfter = false

        var epoch: Int32?
        var firstEpoch: Int32?
        while let element = iterator.next() {
            let batch = element.batch
            let header = batch.header
            if let problem = batch.storedBatchProblem(expectedBaseOffset: state.nextOffset, previousEpoch: epoch) {
                damage = Damage(position: element.position, reason: problem)
                break
            }
            epoch = header.partitionLeaderEpoch
            if firstEpoch == nil { firstEpoch = header.partitionLeaderEpoch }
            record(
                header: header, position: element.position, frameSize: element.end - element.position, into: &state,
                offsetEntries: &offsetEntries, timeEntries: &timeEntries)
        }
        if damage == nil, let (reason, position) = iterator.stopReason.damage {
            damage = Damage(position: position, reason: reason)
        }
        if let damage {
            validAfter = containsValidBatch(bytes, after: damage.position)
        }
        // Everything up to the damage (or the end) was just verified.
        if let firstEpoch, let epoch {
            let scanned = VerifiedRange(
                lower: 0, upper: state.size, firstOffset: state.baseOffset, firstEpoch: firstEpoch,
                nextOffset: state.nextOffset, lastEpoch: epoch)
            segment.verified.withLock { $0.insert(scanned) }
        }
        if writeIndexes {
            try write(offsetEntries, to: segment.offsetIndex.file)
            try write(timeEntries, to: segment.timeIndex.file)
        }
        return Result(state: state, damage: damage, validDataAfterDamage: validAfter)
    }

    /// Adds a batch to `state`, emitting index entries every `indexIntervalBytes`, exactly as appends do.
    func record(
        header: RecordBatchHeader, position: Int, frameSize: Int, into state: inout SegmentState,
        offsetEntries: inout [UInt8], timeEntries: inout [UInt8]
    ) {
        let timestamp = configuration.timestampType == .createTime ? header.maxTimestamp : header.logAppendTime
        state.maxTimestamp = max(state.maxTimestamp, timestamp)
        if state.bytesSinceIndexEntry >= configuration.indexIntervalBytes {
            OffsetIndex.encode(.init(offset: header.baseOffset, position: position), base: state.baseOffset, into: &offsetEntries)
            state.offsetIndexCount += 1
            if state.maxTimestamp > state.lastIndexedTimestamp {
                TimeIndex.encode(.init(timestamp: state.maxTimestamp, offset: header.baseOffset), base: state.baseOffset, into: &timeEntries)
                state.timeIndexCount += 1
                state.lastIndexedTimestamp = state.maxTimestamp
            }
            state.bytesSinceIndexEntry = 0
        }
        state.bytesSinceIndexEntry += frameSize
        if state.firstAppendTime == nil { state.firstAppendTime = header.logAppendTime }
        state.size = position + frameSize
        state.nextOffset = header.lastOffset &+ 1
    }

    /// Whether any complete batch with a valid CRC starts after `position`. A torn tail has none;
    /// damage inside the log (a flipped bit, a bad length) has valid batches after it. Searches
    /// every byte, since a damaged length means the next frame's position is unknown.
    private func containsValidBatch(_ bytes: UnsafeRawBufferPointer, after position: Int) -> Bool {
        let headerTagsEnd = BatchFraming.prefixSize + RecordBatchLayout.headerSize
        var candidate = position + 1
        while candidate + headerTagsEnd <= bytes.count {
            defer { candidate += 1 }
            guard bytes[candidate] == BatchFraming.tag,
                let length = BatchFraming.readPrefix(bytes.baseAddress! + candidate),
                length >= RecordBatchLayout.headerSize,
                candidate + BatchFraming.prefixSize + length <= bytes.count
            else { continue }
            let start = candidate + BatchFraming.prefixSize
            let batch = RecordBatchView(UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]))
            if RecordBatchLayout.tags.allSatisfy({ batch.bytes[$0.position] == $0.tag }) && batch.isCRCValid {
                return true
            }
        }
        return false
    }

    private func write(_ entries: [UInt8], to file: MappedFile) throws(StorageError) {
        try file.truncate(to: 0)
        guard !entries.isEmpty else { return }
        try file.write(entries, at: 0)
    }
}
