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
    /// Verifies up to about `maxBytes` of batches nobody has verified since the log was opened,
    /// oldest segment first and resuming where the last step stopped, on the thread pool: the
    /// background scrubber's step (`log.scrub.*`). Damage takes the log offline as a read would.
    /// The pages it read in are unmapped from the process again (unless a fetch response holds
    /// them), so scrubbing a large log does not grow the broker's resident set.
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
        for (index, segment) in segments.enumerated() {
            let known = segment.segment.verified.withLock { $0 }
            guard let gap = known.firstGap(size: segment.size) else { continue }
            // Verify whole frames from the gap's start, up to its end or the budget.
            var iterator = FramedBatchIterator(segment.segment.log.bytes(0..<gap.upperBound), from: gap.lowerBound)
            var end = gap.lowerBound
            while end - gap.lowerBound < maxBytes, let framed = iterator.next() { end = framed.end }
            if end == gap.lowerBound {
                // Not even one frame parses here: the verification below reports why.
                end = gap.upperBound
            }
            let before = known.ending(at: gap.lowerBound)
            let previousEpoch = index > 0 ? Self.lastEpoch(of: segments[index - 1]) : nil
            let location = Location(
                position: gap.lowerBound, baseOffset: before?.nextOffset ?? segment.baseOffset,
                previousEpoch: before?.lastEpoch ?? previousEpoch)
            do throws(StorageError) {
                // Not covered, so verified in any case; read in first, as residency is not asked.
                let verified = try Self.verify(gap.lowerBound..<end, in: segment, location: location, resident: false)
                // What follows the verified bytes must continue them: the next range, or the log's
                // idea of the segment's end. Compared with what this verification computed.
                if let verified, verified.upper == end {
                    if end == segment.size, verified.nextOffset != segment.nextOffset {
                        throw StorageError.corrupt(
                            "the segment's last batch ends at offset \(verified.nextOffset) but the log expects \(segment.nextOffset)",
                            segment: segment, position: end, firstLostOffset: verified.nextOffset)
                    }
                    if let next = known.ranges.first(where: { $0.lower == end }), !verified.isContinued(by: next) {
                        throw StorageError.corrupt(
                            "the batch here has offset \(next.firstOffset) and epoch \(next.firstEpoch) but the batch before ends at offset \(verified.nextOffset) with epoch \(verified.lastEpoch)",
                            segment: segment, position: end, firstLostOffset: verified.nextOffset)
                    }
                }
            } catch let error where error.code == .corruptSegment {
                throw reportDamage(error, in: segment.segment)
            }
            // Give back the pages the verification mapped, unless a fetch response is sending them.
            let file = segment.segment.log
            if !MappedBufferRegistry.shared.holds(file, near: gap.lowerBound..<end) {
                file.releasePages(gap.lowerBound..<end)
            }
            return end - gap.lowerBound
        }
        return 0
    }
}
