#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
public import NIOCore
import SystemPackage

/// Owns the file handle of a ``LogSlice/fileRegion()`` and closes it when released.
///
/// A `FileRegion` does not own its handle; whoever writes it keeps this object until the write
/// completes (or fails), then lets go of it. If the region is never written, releasing this object
/// closes the handle all the same.
public final class SegmentFileHandle: Sendable {
    /// The handle the region reads from: a duplicate of the segment's descriptor, so it keeps the
    /// file readable after retention deletes it.
    public let handle: NIOFileHandle

    init(_ handle: NIOFileHandle) { self.handle = handle }

    deinit {
        // Released on an event loop once the region is written; closing the last descriptor of a
        // segment that retention deleted frees its blocks, so close on the release queue.
        let handle = self.handle
        BackgroundRelease.run { try? handle.close() }
    }
}

extension LogSlice {
    /// The slice as a range of its segment file, for `sendfile` on a channel without TLS: the
    /// bytes go from the page cache to the socket without passing through the process.
    ///
    /// Makes sure the pages are in the page cache first (reading cold data from disk here, so
    /// `sendfile` on the event loop does not block on the disk), without leaving them mapped.
    /// Blocking file I/O: call it on a storage thread. Returns `nil` for an empty slice, when the
    /// pages cannot be read (an I/O error: read with ``copyBytes(into:)`` then, which reports it),
    /// or when no file descriptor is left to duplicate (use ``mappedBuffer()``).
    ///
    /// ```swift
    /// if let (region, owner) = result.records.fileRegion() {
    ///     channel.write(IOData.fileRegion(region)).whenComplete { _ in withExtendedLifetime(owner) {} }
    /// }
    /// ```
    public func fileRegion() -> (region: FileRegion, owner: SegmentFileHandle)? {
        guard let file, !range.isEmpty else { return nil }
        // A slice from a read was checked (or read in) by the read's verification already.
        if !pagesResident, !file.isResident(range) {
            guard file.populate(range) else { return nil }
        }
        // Unmap what populating, or locating the batches, mapped: the bytes leave from the page cache.
        file.releasePages(range)
        let duplicate = fcntl(file.descriptor.rawValue, F_DUPFD_CLOEXEC, 0)
        guard duplicate >= 0 else { return nil }
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: duplicate)
        let region = FileRegion(fileHandle: handle, readerIndex: range.lowerBound, endIndex: range.upperBound)
        return (region, SegmentFileHandle(handle))
    }
}
