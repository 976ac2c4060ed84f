import FjordRecords
import Synchronization
import SystemPackage

/// The files of one segment: `<base>.log`, `<base>.index` and `<base>.timeindex`, where `<base>` is
/// the segment's first offset as 20 zero-padded digits (Kafka's naming).
///
/// Immutable: the log publishes how much of each file is valid in ``SegmentState``. A new
/// `LogSegment` is made when the files are replaced (truncation) or reopened for appending; the
/// old one, and its maps, live on while any reader holds it.
final class LogSegment: Sendable {
    let baseOffset: Int64
    let log: MappedFile
    let offsetIndex: OffsetIndex
    let timeIndex: TimeIndex
    /// The bytes verified since this segment was opened (see ``VerifiedRanges``).
    let verified = Mutex(VerifiedRanges())
    /// Set once damage in this segment was logged, so it is logged once.
    let damageReported = Atomic<Bool>(false)

    static let logSuffix = ".log"
    static let offsetIndexSuffix = ".index"
    static let timeIndexSuffix = ".timeindex"

    static func fileName(_ baseOffset: Int64, _ suffix: String) -> String {
        let digits = String(baseOffset)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + suffix
    }

    /// The base offset a segment log file name encodes, or `nil` for other names.
    static func baseOffset(ofLogFile name: String) -> Int64? {
        guard name.hasSuffix(logSuffix) else { return nil }
        let stem = name.dropLast(logSuffix.count)
        guard stem.count == 20, stem.allSatisfy(\.isASCII), stem.allSatisfy(\.isNumber) else { return nil }
        return Int64(stem)
    }

    /// Opens a segment's files, creating any that are missing.
    ///
    /// - Parameters:
    ///   - logCapacity: address space to reserve for the log file; at least its size.
    ///   - truncateIndexes: start the index files empty (they will be rebuilt).
    init(
        directory: FilePath, baseOffset: Int64, logCapacity: Int, indexEntries: Int, truncateIndexes: Bool
    ) throws(StorageError) {
        self.baseOffset = baseOffset
        self.log = try MappedFile(
            path: directory.appending(Self.fileName(baseOffset, Self.logSuffix)), options: [.create],
            capacity: logCapacity)
        let indexOptions: FileDescriptor.OpenOptions = truncateIndexes ? [.create, .truncate] : [.create]
        self.offsetIndex = OffsetIndex(
            file: try MappedFile(
                path: directory.appending(Self.fileName(baseOffset, Self.offsetIndexSuffix)), options: indexOptions,
                capacity: indexEntries * OffsetIndex.entrySize),
            baseOffset: baseOffset)
        self.timeIndex = TimeIndex(
            file: try MappedFile(
                path: directory.appending(Self.fileName(baseOffset, Self.timeIndexSuffix)), options: indexOptions,
                capacity: indexEntries * TimeIndex.entrySize),
            baseOffset: baseOffset)
    }

    /// The three file paths of this segment.
    var paths: [FilePath] { [log.path, offsetIndex.file.path, timeIndex.file.path] }
}

/// What the log knows about one segment: its files and how much of them is valid.
///
/// Readers copy this out under the log's lock and then read without it; only bytes below
/// ``size`` and index entries below the counts are ever read.
struct SegmentState: Sendable {
    var segment: LogSegment
    /// Bytes of valid, published log data.
    var size: Int
    /// Offset the next batch appended to this segment would get.
    var nextOffset: Int64
    var offsetIndexCount: Int
    var timeIndexCount: Int
    /// Largest timestamp (of the configured type) in the segment; `Int64.min` when empty.
    var maxTimestamp: Int64
    /// Broker append time of the first batch, `nil` when empty: the segment's age for rolling.
    var firstAppendTime: Int64?
    /// Bytes written since the last index entry.
    var bytesSinceIndexEntry: Int
    /// Timestamp of the last time-index entry, `Int64.min` when none.
    var lastIndexedTimestamp: Int64

    var baseOffset: Int64 { segment.baseOffset }
    var isEmpty: Bool { size == 0 }

    init(segment: LogSegment) {
        self.segment = segment
        self.size = 0
        self.nextOffset = segment.baseOffset
        self.offsetIndexCount = 0
        self.timeIndexCount = 0
        self.maxTimestamp = .min
        self.firstAppendTime = nil
        self.bytesSinceIndexEntry = 0
        self.lastIndexedTimestamp = .min
    }
}
