import FjordRecords
import SystemPackage

/// The byte range of one segment whose batches were verified (CRC32C, header tags, offset
/// continuity, non-decreasing leader epochs) since the log was opened, and what the log expects
/// right after it.
///
/// Reads inside the range send the bytes as they are; a read past it verifies the batches it is
/// about to hand out first, once, and extends the range. Appends made by this process extend it
/// too (the batches were validated before they were written), as does a recovery scan.
struct VerifiedRange: Sendable, Hashable {
    /// First verified byte (a frame boundary).
    var lower: Int
    /// Byte after the last verified frame.
    var upper: Int
    /// Base offset the batch at ``upper`` must have.
    var nextOffset: Int64
    /// Leader epoch of the batch before ``upper``; `nil` when unknown.
    var lastEpoch: Int32?

    /// Nothing verified yet: the empty range at the segment's start, where the first batch must
    /// have the segment's base offset.
    static func empty(base: Int64) -> VerifiedRange {
        VerifiedRange(lower: 0, upper: 0, nextOffset: base, lastEpoch: nil)
    }

    /// Whether `range` lies entirely inside the verified bytes.
    func covers(_ range: Range<Int>) -> Bool { lower <= range.lowerBound && range.upperBound <= upper }
}

/// Damage found while verifying stored batches: where, why, and which offsets it makes unservable.
struct SegmentDamage: Error, Sendable {
    /// Byte position of the damaged frame.
    var position: Int
    /// What is wrong, for people.
    var reason: String
    /// The offset the damaged batch should have started at.
    var firstLostOffset: Int64
}

enum SegmentVerifier {
    /// Checks every framed batch in `range` of `bytes` (a segment's log file), starting with a
    /// batch whose base offset must be `expectedOffset` and whose epoch must not be below
    /// `previousEpoch`. Returns the offset after the last batch and the last batch's epoch.
    static func verify(
        _ bytes: UnsafeRawBufferPointer, range: Range<Int>, expectedOffset: Int64, previousEpoch: Int32?
    ) -> Result<(nextOffset: Int64, lastEpoch: Int32?), SegmentDamage> {
        let limited = UnsafeRawBufferPointer(rebasing: bytes[..<range.upperBound])
        var iterator = FramedBatchIterator(limited, from: range.lowerBound)
        var expected = expectedOffset
        var epoch = previousEpoch
        while let framed = iterator.next() {
            if let problem = framed.batch.storedBatchProblem(expectedBaseOffset: expected, previousEpoch: epoch) {
                return .failure(SegmentDamage(position: framed.position, reason: problem, firstLostOffset: expected))
            }
            expected = framed.batch.lastOffset + 1
            epoch = framed.batch.header.partitionLeaderEpoch
        }
        switch iterator.stopReason {
        case .truncated(let position):
            return .failure(
                SegmentDamage(position: position, reason: "a batch frame runs past the segment's end", firstLostOffset: expected))
        case .malformed(let position):
            return .failure(
                SegmentDamage(position: position, reason: "no batch frame at this position", firstLostOffset: expected))
        default:
            return .success((expected, epoch))
        }
    }
}
