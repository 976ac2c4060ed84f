import SystemPackage

/// An entry of a segment's sparse offset index: a batch's base offset and its frame's position.
struct OffsetIndexEntry: Hashable, Sendable {
    var offset: Int64
    var position: Int
}

/// An entry of a segment's time index: the largest timestamp seen in the segment up to and
/// including the batch at `offset`.
struct TimeIndexEntry: Hashable, Sendable {
    var timestamp: Int64
    var offset: Int64
}

/// A segment's sparse offset index file: 8-byte entries `(offset - base: UInt32 LE, position: UInt32 LE)`,
/// ascending, one per `indexIntervalBytes` of log. Appended with `pwrite`, searched through the map.
struct OffsetIndex: Sendable {
    static let entrySize = 8
    let file: MappedFile
    let baseOffset: Int64

    func entry(_ i: Int) -> OffsetIndexEntry {
        let raw = file.bytes(i * Self.entrySize..<(i + 1) * Self.entrySize)
        let relative = UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self))
        let position = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        return OffsetIndexEntry(offset: baseOffset &+ Int64(relative), position: Int(position))
    }

    /// The last of the first `count` entries whose offset is at most `offset`; the segment start when none is.
    func lookup(_ offset: Int64, count: Int) -> OffsetIndexEntry {
        var low = 0
        var high = count  // first entry with offset > target
        while low < high {
            let mid = (low + high) / 2
            if entry(mid).offset <= offset { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? OffsetIndexEntry(offset: baseOffset, position: 0) : entry(low - 1)
    }

    static func encode(_ entry: OffsetIndexEntry, base: Int64, into bytes: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(entry.offset - base).littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(entry.position).littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// A segment's time index file: 12-byte entries `(timestamp: Int64 LE, offset - base: UInt32 LE)`,
/// with strictly increasing timestamps.
struct TimeIndex: Sendable {
    static let entrySize = 12
    let file: MappedFile
    let baseOffset: Int64

    func entry(_ i: Int) -> TimeIndexEntry {
        let raw = file.bytes(i * Self.entrySize..<(i + 1) * Self.entrySize)
        let timestamp = Int64(littleEndian: raw.loadUnaligned(as: Int64.self))
        let relative = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        return TimeIndexEntry(timestamp: timestamp, offset: baseOffset &+ Int64(relative))
    }

    /// The last of the first `count` entries whose timestamp is below `timestamp`: every batch up
    /// to and including its offset is older, so a search may start there. `nil` when none is.
    func lastEntry(before timestamp: Int64, count: Int) -> TimeIndexEntry? {
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) / 2
            if entry(mid).timestamp < timestamp { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : entry(low - 1)
    }

    static func encode(_ entry: TimeIndexEntry, base: Int64, into bytes: inout [UInt8]) {
        withUnsafeBytes(of: entry.timestamp.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(entry.offset - base).littleEndian) { bytes.append(contentsOf: $0) }
    }
}
