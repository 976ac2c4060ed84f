import FjordRecords
import SystemPackage

/// A run of bytes of one segment whose batches were verified (CRC32C, header tags, offset
/// continuity, non-decreasing leader epochs), with the offsets and epochs at both of its ends.
///
/// Never empty: ``lower`` < ``upper``, both frame boundaries.
struct VerifiedRange: Sendable, Hashable {
    /// First verified byte (a frame boundary).
    var lower: Int
    /// Byte after the last verified frame.
    var upper: Int
    /// Base offset of the batch at ``lower``.
    var firstOffset: Int64
    /// Leader epoch of the batch at ``lower``.
    var firstEpoch: Int32
    /// Base offset the batch at ``upper`` must have.
    var nextOffset: Int64
    /// Leader epoch of the batch before ``upper``.
    var lastEpoch: Int32

    /// Number of bytes.
    var count: Int { upper - lower }

    /// Whether `range` lies entirely inside the verified bytes.
    func covers(_ range: Range<Int>) -> Bool { lower <= range.lowerBound && range.upperBound <= upper }

    /// Whether `next` starts exactly where this range ends and continues its offsets and epochs,
    /// so the two form one verified run.
    func isContinued(by next: VerifiedRange) -> Bool {
        next.lower == upper && next.firstOffset == nextOffset && next.firstEpoch >= lastEpoch
    }
}

/// The verified bytes of one segment since it was opened: a small set of disjoint
/// ``VerifiedRange``s, sorted by position (see "Verification on read" in `docs/storage-format.md`).
///
/// Reads inside one range send the bytes as they are (while they stay in the page cache); a read
/// past or outside the ranges verifies the batches it is about to hand out first, once, and adds
/// them. Appends made by this process add what they wrote (the batches were validated before
/// they were written), as does a recovery scan. Ranges that touch and continue each other's
/// offsets and epochs merge, so the range a tailing reader and the appends share keeps growing;
/// at most ``maximumCount`` are kept, dropping the smallest (never the last one, where appends go).
struct VerifiedRanges: Sendable, Hashable {
    /// Most ranges kept per segment.
    static let maximumCount = 8

    /// The ranges, sorted by ``VerifiedRange/lower``, disjoint.
    private(set) var ranges: [VerifiedRange] = []

    /// The range holding all of `range`, if one does.
    func covering(_ range: Range<Int>) -> VerifiedRange? {
        ranges.first { $0.covers(range) }
    }

    /// The range ending exactly at `position`, if one does: what the batch there must continue.
    func ending(at position: Int) -> VerifiedRange? {
        ranges.first { $0.upper == position }
    }

    /// The range holding `position` or ending there, if one does: a read starting there may
    /// continue it from its end.
    func continuable(from position: Int) -> VerifiedRange? {
        ranges.first { $0.lower <= position && position <= $0.upper }
    }

    /// The first bytes of a segment of `size` bytes no range covers, from the start: from the end
    /// of the range starting at byte 0 (or from 0) to the next range (or `size`). `nil` when every
    /// byte is covered.
    func firstGap(size: Int) -> Range<Int>? {
        var start = 0
        var next = 0
        if let first = ranges.first, first.lower == 0 {
            start = first.upper
            next = 1
        }
        guard start < size else { return nil }
        let end = next < ranges.count ? min(ranges[next].lower, size) : size
        return end > start ? start..<end : nil
    }

    /// Adds `range`: overlapping ranges merge, as do touching ones that continue each other; then
    /// the smallest ranges (never the last) are dropped beyond ``maximumCount``.
    mutating func insert(_ range: VerifiedRange) {
        guard range.lower < range.upper else { return }
        var all = ranges
        all.append(range)
        all.sort { $0.lower < $1.lower || ($0.lower == $1.lower && $0.upper > $1.upper) }
        var merged: [VerifiedRange] = []
        merged.reserveCapacity(all.count)
        for next in all {
            guard var last = merged.last else {
                merged.append(next)
                continue
            }
            if next.lower < last.upper || last.isContinued(by: next) {
                // Overlapping ranges were verified along the same frames; the later end wins.
                if next.upper > last.upper {
                    last.upper = next.upper
                    last.nextOffset = next.nextOffset
                    last.lastEpoch = next.lastEpoch
                }
                merged[merged.count - 1] = last
            } else {
                merged.append(next)
            }
        }
        while merged.count > Self.maximumCount {
            let candidates = merged.indices.dropLast()
            guard let smallest = candidates.min(by: { merged[$0].count < merged[$1].count }) else { break }
            merged.remove(at: smallest)
        }
        ranges = merged
    }

    /// Forgets everything (the file was replaced).
    mutating func removeAll() { ranges = [] }
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

extension FramedBatchIterator.StopReason {
    /// Why iteration stopped before a frame boundary at the end, for people, and where; `nil`
    /// when it reached the end on a frame boundary (or has not stopped).
    var damage: (reason: String, position: Int)? {
        switch self {
        case .truncated(let position): return ("a batch frame runs past the segment's end", position)
        case .malformed(let position): return ("no batch frame at this position", position)
        case .none, .endOfBytes: return nil
        }
    }
}

enum SegmentVerifier {
    /// Checks every framed batch in `range` of `bytes` (a segment's log file), starting with a
    /// batch whose base offset must be `expectedOffset` and whose epoch must not be below
    /// `previousEpoch`. Returns the verified range (`nil` for an empty `range`).
    static func verify(
        _ bytes: UnsafeRawBufferPointer, range: Range<Int>, expectedOffset: Int64, previousEpoch: Int32?
    ) -> Result<VerifiedRange?, SegmentDamage> {
        let limited = UnsafeRawBufferPointer(rebasing: bytes[..<range.upperBound])
        var iterator = FramedBatchIterator(limited, from: range.lowerBound)
        var expected = expectedOffset
        var epoch = previousEpoch
        var firstEpoch: Int32?
        while let framed = iterator.next() {
            if let problem = framed.batch.storedBatchProblem(expectedBaseOffset: expected, previousEpoch: epoch) {
                return .failure(SegmentDamage(position: framed.position, reason: problem, firstLostOffset: expected))
            }
            // The base offset is `expected` now; wrapping only matters for a log at the end of Int64.
            expected = framed.batch.lastOffset &+ 1
            let batchEpoch = framed.batch.header.partitionLeaderEpoch
            if firstEpoch == nil { firstEpoch = batchEpoch }
            epoch = batchEpoch
        }
        if let (reason, position) = iterator.stopReason.damage {
            return .failure(SegmentDamage(position: position, reason: reason, firstLostOffset: expected))
        }
        guard let firstEpoch, let epoch else { return .success(nil) }
        return .success(
            VerifiedRange(
                lower: range.lowerBound, upper: range.upperBound, firstOffset: expectedOffset, firstEpoch: firstEpoch,
                nextOffset: expected, lastEpoch: epoch))
    }
}
