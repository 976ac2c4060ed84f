import FjordRecords
public import NIOCore

/// A run of whole framed batches inside a segment's memory map, returned by a read.
///
/// No bytes are copied: the slice points into the map and keeps it alive, so its bytes stay
/// valid while the slice (or a copy of it) exists, even if retention deletes the segment or the
/// log is truncated meanwhile. The bytes are any number of `RecordBatchSet.batches` fields (see
/// ``FjordRecords/BatchFraming``), ready to be sent as-is.
///
/// ```swift
/// let result = try await log.read(from: offset, maxBytes: 1 << 20)
/// result.records.withUnsafeBytes { bytes in
///     var batches = FramedBatchIterator(bytes)
///     while let framed = batches.next() { print(framed.batch.baseOffset) }
/// }
/// ```
public struct LogSlice: Sendable {
    let file: MappedFile?
    /// Byte range within the segment file.
    public let range: Range<Int>
    /// Offset of the first record of the first batch (may be below the offset that was asked for).
    public let firstOffset: Int64
    /// Offset after the last record of the last batch.
    public let nextOffset: Int64
    /// Whether the read that made the slice found (or brought) its pages in the page cache, so
    /// sending it need not check again (``mappedBuffer()``, ``fileRegion()``).
    var pagesResident = false

    static func empty(at offset: Int64) -> LogSlice {
        LogSlice(file: nil, range: 0..<0, firstOffset: offset, nextOffset: offset)
    }

    /// Number of bytes.
    public var count: Int { range.count }
    /// Whether the slice holds no batches.
    public var isEmpty: Bool { range.isEmpty }

    /// Copies the slice's bytes to the end of `buffer` with `pread`, without touching the memory
    /// map: the way to fill a network frame, since the bytes are copied there anyway (for TLS, or
    /// into a socket buffer). Unlike copying from the map, it adds nothing to the process's resident
    /// set however much of the log is read. Blocking file I/O: call it off any event loop.
    public func copyBytes(into buffer: inout ByteBuffer) throws(StorageError) {
        guard let file, !range.isEmpty else { return }
        let count = range.count
        var failure: StorageError?
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
            do throws(StorageError) {
                try file.read(range, into: raw)
                return count
            } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
    }

    /// Tells the kernel this process no longer needs the slice's pages (and the folios around it)
    /// mapped, once its bytes were copied out: the data stays in the page cache, but a reader
    /// catching up through a large backlog does not grow the process's resident set by the size
    /// of the backlog. Any later access (by this or another reader) maps the pages again with a
    /// minor fault. A no-op for an empty slice.
    public func releaseMappedPages() {
        file?.releasePages(range)
    }

    /// Calls `body` with the bytes. Do not let the pointer escape `body`.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        guard let file else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(file.bytes(range))
    }
}

/// What a read returns: the batches and the log's bounds at the time of the read.
public struct LogReadResult: Sendable {
    /// Whole batches starting with the one holding the requested offset; empty at the log end.
    public var records: LogSlice
    /// The log start offset.
    public var logStartOffset: Int64
    /// The log end offset (the offset the next record will get).
    public var logEndOffset: Int64
}

/// What an append returns.
public struct AppendResult: Sendable, Hashable {
    /// Offset given to the batch's first record.
    public var baseOffset: Int64
    /// Offset given to its last record.
    public var lastOffset: Int64
    /// The broker time stamped into the batch, ms since the epoch.
    public var logAppendTime: Int64
    /// The log start offset after the append.
    public var logStartOffset: Int64
    /// Whether the batch was a retry of one already in the log (an idempotent producer's
    /// duplicate): the offsets are the original's and nothing was written.
    public var duplicate: Bool = false
}

/// When an append completes.
public enum AppendDurability: Sendable, Hashable {
    /// Once the batch is written to the file (in the page cache), like Kafka's `acks=1`.
    case written
    /// Once the batch is on disk (fsync). Concurrent durable appends share one fsync (group commit).
    case durable
}
