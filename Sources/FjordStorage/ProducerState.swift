public import FjordRecords

/// One batch an idempotent producer appended: its sequence range and where it landed.
public struct ProducerBatch: Sendable, Hashable {
    /// Sequence of the batch's first record.
    public var firstSequence: Int32
    /// Sequence of its last record.
    public var lastSequence: Int32
    /// Offset of its first record.
    public var baseOffset: Int64
    /// Offset of its last record.
    public var lastOffset: Int64
    /// The broker time stamped at append.
    public var logAppendTime: Int64
}

/// What a log remembers about one idempotent producer: its epoch and its last few batches, enough
/// to recognise a retried batch and to reject one that skips or repeats sequence numbers.
public struct ProducerEntry: Sendable, Hashable {
    /// The newest epoch seen; batches from older epochs are fenced.
    public var epoch: Int32
    /// The most recent batches, oldest first, at most ``ProducerStateTable/retainedBatches``.
    public var batches: [ProducerBatch]

    /// The sequence of the last record appended.
    var lastSequence: Int32 { batches.last?.lastSequence ?? -1 }
    /// When the producer last appended.
    var lastAppendTime: Int64 { batches.last?.logAppendTime ?? 0 }
}

/// The idempotent-producer state of one partition log, as Kafka's `ProducerStateManager` keeps it.
///
/// A batch from producer `id` with epoch `e` and sequences `[first, last]` is, against the entry
/// for `id`:
/// - a **duplicate** when one of the remembered batches has exactly that epoch and sequence range:
///   it is answered with that batch's offsets and not written again;
/// - **in order** when `first` follows the entry's last sequence (or is 0 in a newer epoch, or the
///   producer is unknown and `first` is 0): it is appended;
/// - otherwise rejected: an older epoch with `invalidProducerEpoch`, a gap or a repeat with
///   `outOfOrderSequence`, a non-zero first sequence from an unknown producer with
///   `unknownProducerID`.
///
/// Only the log's serial writer touches the table, so it needs no lock of its own.
public struct ProducerStateTable: Sendable, Hashable {
    /// How many recent batches are remembered per producer: a producer keeps at most this many
    /// batches in flight per partition, so any retry matches one of them (Kafka uses 5 too).
    public static let retainedBatches = 5

    /// The entries, by producer id.
    public private(set) var producers: [Int64: ProducerEntry] = [:]

    /// Creates an empty table.
    public init() {}

    /// The verdict on one batch.
    public enum Verdict: Sendable, Hashable {
        /// Not an idempotent batch, or the next one in sequence: append it.
        case append
        /// Already appended: answer with these offsets.
        case duplicate(ProducerBatch)
        /// Refuse it.
        case reject(StorageError.Code, String)
    }

    /// The sequence of the last record of a batch: sequences wrap from `Int32.max` to 0.
    static func lastSequence(of header: RecordBatchHeader) -> Int32 {
        Int32(truncatingIfNeeded: (Int64(header.baseSequence) + Int64(header.recordCount) - 1) % (Int64(Int32.max) + 1))
    }

    static func next(after sequence: Int32) -> Int32 { sequence == .max ? 0 : sequence + 1 }

    /// Judges `header` without changing the table.
    public func check(_ header: RecordBatchHeader) -> Verdict {
        let id = header.producerID
        guard id >= 0 else { return .append }
        guard header.producerEpoch >= 0, header.baseSequence >= 0 else {
            return .reject(
                .invalidArgument,
                "producer \(id) sent epoch \(header.producerEpoch) and base sequence \(header.baseSequence); both must be >= 0")
        }
        let first = header.baseSequence
        let last = Self.lastSequence(of: header)
        guard let entry = producers[id] else {
            if first == 0 { return .append }
            return .reject(
                .unknownProducerID,
                "producer \(id) is not known to this partition (its state expired or was never written) and sent sequence \(first); start again with a new producer id")
        }
        if header.producerEpoch < entry.epoch {
            return .reject(
                .invalidProducerEpoch,
                "producer \(id) epoch \(header.producerEpoch) is fenced: epoch \(entry.epoch) has written to this partition")
        }
        if header.producerEpoch > entry.epoch {
            if first == 0 { return .append }
            return .reject(
                .outOfOrderSequence,
                "producer \(id) started epoch \(header.producerEpoch) with sequence \(first); a new epoch starts at 0")
        }
        if let original = entry.batches.first(where: { $0.firstSequence == first && $0.lastSequence == last }) {
            return .duplicate(original)
        }
        let expected = Self.next(after: entry.lastSequence)
        if first == expected { return .append }
        return .reject(
            .outOfOrderSequence,
            "producer \(id) epoch \(entry.epoch) sent sequence \(first) but the next expected is \(expected)")
    }

    /// What ``record(_:)`` changed, so ``undo(_:)`` can put it back.
    public struct Undo: Sendable {
        let id: Int64
        let previous: ProducerEntry?
    }

    /// Remembers an appended batch and returns how to forget it again. Batches without a producer
    /// id are ignored (`nil`).
    @discardableResult
    public mutating func record(_ header: RecordBatchHeader) -> Undo? {
        let id = header.producerID
        guard id >= 0 else { return nil }
        let undo = Undo(id: id, previous: producers[id])
        let batch = ProducerBatch(
            firstSequence: header.baseSequence, lastSequence: Self.lastSequence(of: header),
            baseOffset: header.baseOffset, lastOffset: header.lastOffset, logAppendTime: header.logAppendTime)
        if var entry = producers[id], entry.epoch == header.producerEpoch {
            if entry.batches.count == Self.retainedBatches { entry.batches.removeFirst() }
            entry.batches.append(batch)
            producers[id] = entry
        } else if producers[id].map({ header.producerEpoch > $0.epoch }) ?? true {
            producers[id] = ProducerEntry(epoch: header.producerEpoch, batches: [batch])
        }
        return undo
    }

    /// Reverts ``record(_:)`` calls, given in the order they were made.
    public mutating func undo(_ changes: [Undo]) {
        for change in changes.reversed() { producers[change.id] = change.previous }
    }

    /// Forgets producers that have not appended since `cutoff` (ms), as Kafka's
    /// `producer.id.expiration.ms` does, so the table stays bounded.
    public mutating func expire(before cutoff: Int64) {
        producers = producers.filter { $0.value.lastAppendTime >= cutoff }
    }

    /// Forgets batches at or after `offset` (the log was truncated there).
    public mutating func truncate(from offset: Int64) {
        for (id, var entry) in producers {
            entry.batches.removeAll { $0.lastOffset >= offset }
            producers[id] = entry.batches.isEmpty ? nil : entry
        }
    }
}

// MARK: Snapshot file

extension ProducerStateTable {
    /// Name of the snapshot file in a log directory.
    static let snapshotFile = "producer-state.snapshot"
    private static let magic: UInt32 = 0x4650_5331  // "FPS1"
    private static let version: UInt16 = 1

    /// Encodes the table as it stood at `offset` (every batch below it recorded): a versioned
    /// little-endian file ending in a CRC32C of everything before it.
    func encodeSnapshot(offset: Int64) -> [UInt8] {
        var bytes: [UInt8] = []
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        put(Self.magic)
        put(Self.version)
        put(UInt16(0))
        put(offset)
        put(UInt32(producers.count))
        for (id, entry) in producers.sorted(by: { $0.key < $1.key }) {
            put(id)
            put(entry.epoch)
            put(UInt8(entry.batches.count))
            for batch in entry.batches {
                put(batch.firstSequence)
                put(batch.lastSequence)
                put(batch.baseOffset)
                put(batch.lastOffset)
                put(batch.logAppendTime)
            }
        }
        put(bytes.withUnsafeBytes { CRC32C.checksum($0) })
        return bytes
    }

    /// Decodes a snapshot; `nil` when it is damaged or of another version (the caller then rebuilds
    /// the table from the log).
    static func decodeSnapshot(_ bytes: [UInt8]) -> (table: ProducerStateTable, offset: Int64)? {
        guard bytes.count >= 24 else { return nil }
        var position = 0
        func get<T: FixedWidthInteger>(_: T.Type) -> T? {
            guard position + MemoryLayout<T>.size <= bytes.count else { return nil }
            defer { position += MemoryLayout<T>.size }
            return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: position, as: T.self)) }
        }
        let body = bytes.count - 4
        let stored = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: body, as: UInt32.self)) }
        guard bytes.withUnsafeBytes({ CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[..<body])) }) == stored,
            get(UInt32.self) == magic, get(UInt16.self) == version, get(UInt16.self) != nil,
            let offset = get(Int64.self), let count = get(UInt32.self)
        else { return nil }
        var table = ProducerStateTable()
        for _ in 0..<count {
            guard let id = get(Int64.self), let epoch = get(Int32.self), let batchCount = get(UInt8.self) else { return nil }
            var entry = ProducerEntry(epoch: epoch, batches: [])
            for _ in 0..<batchCount {
                guard let first = get(Int32.self), let last = get(Int32.self), let base = get(Int64.self),
                    let lastOffset = get(Int64.self), let time = get(Int64.self)
                else { return nil }
                entry.batches.append(
                    ProducerBatch(firstSequence: first, lastSequence: last, baseOffset: base, lastOffset: lastOffset, logAppendTime: time))
            }
            table.producers[id] = entry
        }
        guard position == body else { return nil }
        return (table, offset)
    }
}
