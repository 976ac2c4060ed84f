#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
@_spi(CustomByteBufferAllocator) public import NIOCore
import Synchronization

extension LogSlice {
    /// The slice's bytes as a `ByteBuffer` that points into the segment's memory map: no copy.
    ///
    /// This is how a fetch response carries stored batches. Written to a TLS channel, encryption
    /// reads the page cache directly and is the only copy of the bytes; written to a plaintext
    /// socket, the kernel's copy into the socket buffer is. The buffer keeps the mapping alive (like
    /// the slice), and when the last copy of it is released the pages it covered are unmapped from
    /// the process (``releaseMappedPages()``), so a reader catching up through a large backlog does
    /// not grow the broker's resident set by more than what is in flight.
    ///
    /// Reads pages that are not in the page cache in first (`MADV_POPULATE_READ`): call it on a
    /// storage thread, so the event loop that writes the buffer does not block on the disk. Returns `nil` for an empty
    /// slice, or when the kernel cannot read the pages in (an I/O error): read the bytes with
    /// ``copyBytes(into:)`` then, which reports that error instead of faulting.
    ///
    /// The buffer is read-only (the map is `PROT_READ`); appending to it moves its bytes to the heap
    /// first, as growing any `ByteBuffer` may.
    ///
    /// ```swift
    /// let result = try log.readBlocking(from: offset, maxBytes: 1 << 20)
    /// if let batches = result.records.mappedBuffer() {
    ///     channel.write(batches, promise: nil)  // from an event loop, after hopping there
    /// }
    /// ```
    public func mappedBuffer() -> ByteBuffer? {
        // Pages already in the page cache are mapped by the encryption's minor faults, which
        // costs less than populating them here (measured); others are read in here, off the event
        // loop. A slice from a read was checked (or read in) by the read's verification already.
        guard let file, !range.isEmpty, pagesResident || file.isResident(range) || file.populate(range) else {
            return nil
        }
        let bytes = file.bytes(range)
        MappedBufferRegistry.shared.retain(bytes.baseAddress!, file: file, range: range)
        return ByteBuffer(
            takingOwnershipOf: UnsafeMutableRawBufferPointer(mutating: bytes), allocator: MappedBufferRegistry.allocator)
    }
}

/// The mappings that `ByteBuffer`s point into, by start address.
///
/// `ByteBufferAllocator`'s hooks are C functions with no context, so the buffer's owner (the
/// ``MappedFile``, whose mapping must outlive the buffer) is found here from the address the
/// buffer frees. Several buffers may start at the same address (two readers fetching the same
/// batch), hence the count.
final class MappedBufferRegistry: Sendable {
    static let shared = MappedBufferRegistry()

    private struct Entry: Sendable {
        var file: MappedFile
        var range: Range<Int>
        var references: Int
    }

    private let entries = Mutex<[UInt: Entry]>([:])

    /// The allocator of mapped buffers: frees and growth of a mapped address go through the
    /// registry, everything else (a grown buffer's new heap storage) through `malloc`.
    static let allocator = ByteBufferAllocator(
        allocate: { size in malloc(size) },
        reallocate: { pointer, oldSize, newSize in
            guard let pointer else { return malloc(newSize) }
            guard MappedBufferRegistry.shared.isMapped(pointer) else { return realloc(pointer, newSize) }
            // Growing a buffer that points into a map (nothing in the broker does): move its bytes
            // to the heap, as the map is read-only, and let go of the mapping.
            guard let moved = malloc(newSize) else { return nil }
            moved.copyMemory(from: pointer, byteCount: min(oldSize, newSize))
            MappedBufferRegistry.shared.release(pointer)
            return moved
        },
        deallocate: { pointer in
            if !MappedBufferRegistry.shared.release(pointer) { free(pointer) }
        },
        copy: { destination, source, count in destination.copyMemory(from: source, byteCount: count) }
    )

    /// Number of mapped buffers alive that start at `address` (for tests).
    func references(at address: UnsafeRawPointer) -> Int {
        entries.withLock { $0[UInt(bitPattern: address)]?.references ?? 0 }
    }

    func retain(_ address: UnsafeRawPointer, file: MappedFile, range: Range<Int>) {
        let key = UInt(bitPattern: address)
        entries.withLock { entries in
            if var entry = entries[key], entry.file === file {
                entry.references += 1
                entry.range = min(entry.range.lowerBound, range.lowerBound)..<max(entry.range.upperBound, range.upperBound)
                entries[key] = entry
            } else {
                entries[key] = Entry(file: file, range: range, references: 1)
            }
        }
    }

    /// Whether a mapped buffer alive points into `file` near `range` (inside the region
    /// ``MappedFile/releasePages(_:)`` would unmap for it).
    func holds(_ file: MappedFile, near range: Range<Int>) -> Bool {
        guard let region = file.releaseRegion(around: range) else { return false }
        return entries.withLock { entries in
            entries.values.contains { $0.file === file && $0.range.overlaps(region) }
        }
    }

    func isMapped(_ address: UnsafeMutableRawPointer) -> Bool {
        entries.withLock { $0[UInt(bitPattern: address)] != nil }
    }

    /// Drops one reference to the mapped buffer at `address`; `false` if no mapped buffer starts
    /// there (the address is heap memory). The last reference unmaps the pages from the process
    /// and lets go of the file (which unmaps the whole segment if it was deleted meanwhile), both
    /// on the ``BackgroundRelease`` queue.
    @discardableResult
    func release(_ address: UnsafeMutableRawPointer) -> Bool {
        let key = UInt(bitPattern: address)
        let (found, last) = entries.withLock { entries -> (Bool, (MappedFile, Range<Int>)?) in
            guard var entry = entries[key] else { return (false, nil) }
            entry.references -= 1
            if entry.references > 0 {
                entries[key] = entry
                return (true, nil)
            }
            entries[key] = nil
            return (true, (entry.file, entry.range))
        }
        // Usually called on an event loop (the buffer was just written): unmap, and perhaps close
        // a deleted segment, on the release queue instead.
        if let (file, range) = last { BackgroundRelease.run { file.releasePages(range) } }
        return found
    }
}
