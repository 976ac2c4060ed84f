import FjordRecords
import Logging
import Synchronization
import SystemPackage

extension StorageError {
    /// Damage found in `segment` at byte `position`, which makes offsets from `firstLostOffset`
    /// to the segment's end unservable.
    static func corrupt(
        _ reason: String, segment: SegmentState, position: Int, firstLostOffset: Int64,
        file: String = #fileID, line: Int = #line
    ) -> StorageError {
        let last = segment.nextOffset - 1
        let offsets = firstLostOffset <= last ? "offsets \(firstLostOffset) to \(last)" : "offset \(firstLostOffset) on"
        var error = StorageError(
            code: .corruptSegment,
            message: "damaged log data: \(reason); \(offsets) of this segment cannot be served. The partition is offline until the segment is repaired (stop the broker, run `fjord log verify` and `fjord log repair --truncate-after-damage` on the partition directory)",
            path: segment.segment.log.path, position: position, file: file, line: line)
        error.firstAffectedOffset = firstLostOffset
        return error
    }
}

extension PartitionLog {
    /// The damage that took this log offline, or `nil` while it serves. Once set, every read and
    /// append fails with it until the log is reopened after a repair.
    public var fault: StorageError? { state.withLock { $0.fault } }

    /// Calls `observer` once per damaged segment found by reads (or the scrubber), for metrics;
    /// on the storage thread that found it.
    public func observeDamage(_ observer: @escaping @Sendable (StorageError) -> Void) {
        damageObserver.withLock { $0 = observer }
    }

    /// Takes the log offline with `error` (the first damage wins), logs it once per segment with
    /// the file, position and offsets, tells the damage observer, and returns the error to throw.
    func reportDamage(_ error: StorageError, in segment: LogSegment) -> StorageError {
        let fault = state.withLock { state in
            if state.fault == nil { state.fault = error }
            return state.fault ?? error
        }
        if !segment.damageReported.exchange(true, ordering: .relaxed) {
            logger.error(
                "damaged log data; the partition is offline and serves nothing until it is repaired",
                metadata: [
                    "log.file": "\(error.path.map(\.string) ?? "")", "log.position": "\(error.position ?? -1)",
                    "log.first_affected_offset": "\(error.firstAffectedOffset ?? -1)", "error": "\(error.message)",
                ])
            if let observer = damageObserver.withLock({ $0 }) { observer(error) }
        }
        return fault
    }
}

extension PartitionLog {
    /// Verifies up to about `maxBytes` of batches nobody has read since the log was opened, oldest
    /// segment first, on the thread pool: the background scrubber's step (`log.scrub.*`). Damage
    /// takes the log offline as a read would.
    ///
    /// - Returns: the bytes verified; 0 once every segment is verified (or the log is offline).
    @discardableResult
    public func scrub(maxBytes: Int) async throws(StorageError) -> Int {
        try await Self.onPool(threadPool) { [self] () throws(StorageError) in try scrubBlocking(maxBytes: maxBytes) }
    }

    /// Like ``scrub(maxBytes:)`` on the calling thread. Never call it on an event loop.
    public func scrubBlocking(maxBytes: Int) throws(StorageError) -> Int {
        let segments: [SegmentState]? = state.withLock { $0.fault == nil && !$0.closed ? $0.segments : nil }
        guard let segments else { return 0 }
        for segment in segments {
            let known = segment.segment.verified.withLock { $0 }
            if known.lower == 0 && known.upper >= segment.size { continue }
            // Continue the range that starts at the segment's start, else start one there.
            let from = known.lower == 0 ? known.upper : 0
            var iterator = FramedBatchIterator(segment.segment.log.bytes(0..<segment.size), from: from)
            var end = from
            while end - from < maxBytes, let framed = iterator.next() { end = framed.end }
            if end == from {
                // Not even one frame parses here: the verification below reports why.
                end = segment.size
            }
            let location = Location(position: from, baseOffset: known.lower == 0 ? known.nextOffset : segment.baseOffset,
                previousEpoch: known.lower == 0 ? known.lastEpoch : nil)
            do throws(StorageError) {
                try Self.verify(from..<end, in: segment, location: location)
                if end == segment.size {
                    let next = segment.segment.verified.withLock { $0.nextOffset }
                    if next != segment.nextOffset {
                        throw StorageError.corrupt(
                            "the segment's last batch ends at offset \(next) but the log expects \(segment.nextOffset)",
                            segment: segment, position: end, firstLostOffset: next)
                    }
                }
            } catch let error where error.code == .corruptSegment {
                throw reportDamage(error, in: segment.segment)
            }
            return end - from
        }
        return 0
    }
}
