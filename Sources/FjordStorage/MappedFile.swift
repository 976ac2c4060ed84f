#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage

/// A file open for appending with `pwrite`, read through a shared read-only memory map.
///
/// The map reserves `capacity` bytes of address space up front, so a growing file never needs
/// remapping: bytes become readable through the map as soon as `pwrite` returns. Only ranges
/// below the size the owner has published are ever read, so the pages past the end of the file
/// are never touched. The mapping lives as long as this object: a view holding it keeps the bytes
/// readable after the file is unlinked or replaced.
///
/// Immutable after initialisation; the bytes it maps are published to readers through the log's
/// lock, which is why it is `@unchecked Sendable`.
final class MappedFile: @unchecked Sendable {
    let path: FilePath
    let descriptor: FileDescriptor
    private let base: UnsafeMutableRawPointer?
    let capacity: Int

    /// Opens (creating or truncating as `options` say) `path` and maps `capacity` bytes of it.
    /// `access` is `.readOnly` for tools that only read (writing then fails).
    init(
        path: FilePath, options: FileDescriptor.OpenOptions, capacity: Int,
        access: FileDescriptor.AccessMode = .readWrite
    ) throws(StorageError) {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(
                path, access, options: options.union(.closeOnExec), permissions: [.ownerReadWrite])
        } catch {
            throw StorageError.systemCall("open", error as? Errno ?? .ioError, path: path)
        }
        self.path = path
        self.descriptor = descriptor
        self.capacity = capacity
        if capacity > 0 {
            let pointer = mmap(nil, capacity, PROT_READ, MAP_SHARED, descriptor.rawValue, 0)
            guard let pointer, pointer != MAP_FAILED else {
                let errno = Errno(rawValue: Glibc.errno)
                try? descriptor.close()
                throw StorageError.systemCall("mmap", errno, path: path)
            }
            self.base = pointer
        } else {
            self.base = nil
        }
    }

    deinit {
        if let base { munmap(base, capacity) }
        try? descriptor.close()
    }

    /// The mapped bytes in `range`, which must lie within published data.
    @inline(__always)
    func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.upperBound <= capacity)
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }

    /// Populates the page tables for `range` with one `madvise(MADV_POPULATE_READ)` (Linux 5.14+),
    /// reading the pages in if needed; on older kernels touches one byte per page instead.
    ///
    /// Returns `false` when the kernel could not read the pages in (an I/O error, or the file is
    /// shorter than `range`): touching those pages would raise `SIGBUS`, so the caller must read
    /// them with `pread` instead, which reports the error.
    @discardableResult
    func populate(_ range: Range<Int>) -> Bool {
        guard let base, !range.isEmpty else { return true }
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound & ~(pageSize - 1)
        let madvPopulateRead: Int32 = 22
        if madvise(base + start, range.upperBound - start, madvPopulateRead) == 0 { return true }
        // EINVAL: a kernel without MADV_POPULATE_READ. Anything else (EFAULT, EIO, ENOMEM...)
        // means the pages cannot be mapped.
        guard Glibc.errno == EINVAL else { return false }
        guard (try? size()).map({ $0 >= range.upperBound }) ?? false else { return false }
        var sum: UInt8 = 0
        var position = range.lowerBound
        while position < range.upperBound {
            sum &+= base.load(fromByteOffset: position, as: UInt8.self)
            position += pageSize
        }
        sum &+= base.load(fromByteOffset: range.upperBound - 1, as: UInt8.self)
        withExtendedLifetime(sum) {}
        return true
    }

    /// Whether every page of `range` is in the page cache (`mincore`, which maps nothing).
    func isResident(_ range: Range<Int>) -> Bool {
        residency(range).isResident(range)
    }

    /// Which pages of `range` are in the page cache now (one `mincore`, which maps nothing), to
    /// ask about parts of it later, after touching them.
    func residency(_ range: Range<Int>) -> Residency {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard !range.isEmpty else { return Residency(start: range.lowerBound, pageSize: pageSize, pages: []) }
        let start = range.lowerBound & ~(pageSize - 1)
        let length = range.upperBound - start
        var vector = [UInt8](repeating: 0, count: (length + pageSize - 1) / pageSize)
        let ok = bytes(start..<range.upperBound).baseAddress.map { base in
            vector.withUnsafeMutableBufferPointer { mincore(UnsafeMutableRawPointer(mutating: base), length, $0.baseAddress) == 0 }
        } ?? false
        return Residency(start: start, pageSize: pageSize, pages: ok ? vector : [])
    }

    /// The answer of one `mincore` over a page-aligned run of a file's pages.
    struct Residency {
        /// First byte of the first page asked about.
        var start: Int
        /// The system's page size.
        var pageSize: Int
        /// One byte per page; bit 0 set when the page was resident.
        var pages: [UInt8]

        /// Whether every page of `range` was asked about and was resident (an empty range is).
        func isResident(_ range: Range<Int>) -> Bool {
            guard !range.isEmpty else { return true }
            guard range.lowerBound >= start else { return false }
            let first = (range.lowerBound - start) / pageSize
            let last = (range.upperBound - 1 - start) / pageSize
            guard last < pages.count else { return false }
            return pages[first...last].allSatisfy { $0 & 1 == 1 }
        }
    }

    /// Drops this process's page-table entries around `range` (`madvise(MADV_DONTNEED)` on a
    /// shared file mapping): the data stays in the page cache and a later access maps it again with
    /// a minor fault, but pages a reader touched stop counting in the broker's resident set.
    ///
    /// The range is widened to ``releaseAlignment`` on both sides: a fault on a file mapping maps
    /// the whole page-cache folio around the address (up to 2 MiB with large folios) plus the
    /// kernel's fault-around pages, so peeking at one batch header can map far more than the header.
    func releasePages(_ range: Range<Int>) {
        guard let base, let region = releaseRegion(around: range) else { return }
        _ = madvise(base + region.lowerBound, region.count, MADV_DONTNEED)
    }

    /// The bytes ``releasePages(_:)`` unmaps for `range`; `nil` when none.
    func releaseRegion(around range: Range<Int>) -> Range<Int>? {
        guard !range.isEmpty else { return nil }
        let alignment = Self.releaseAlignment
        let start = range.lowerBound & ~(alignment - 1)
        let end = min(capacity, (range.upperBound + alignment + alignment - 1) & ~(alignment - 1))
        return end > start ? start..<end : nil
    }

    /// The largest page-cache folio a fault may map (a PMD: 2 MiB on x86-64 and arm64 with 4 KiB pages).
    static let releaseAlignment = 2 << 20

    /// Current size of the file on disk.
    func size() throws(StorageError) -> Int {
        var info = stat()
        guard fstat(descriptor.rawValue, &info) == 0 else {
            throw StorageError.systemCall("fstat", Errno(rawValue: Glibc.errno), path: path)
        }
        return Int(info.st_size)
    }

    /// Writes `bytes` at `offset`, retrying short writes.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(StorageError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(descriptor.rawValue, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                let errno = Errno(rawValue: Glibc.errno)
                if errno == .interrupted { continue }
                throw StorageError.systemCall("pwrite", errno, path: path)
            }
            done += n
        }
    }

    /// Reads `range` of the file into `destination` with `pread` (no mapping touched).
    func read(_ range: Range<Int>, into destination: UnsafeMutableRawBufferPointer) throws(StorageError) {
        precondition(destination.count >= range.count)
        var done = 0
        while done < range.count {
            let n = pread(descriptor.rawValue, destination.baseAddress! + done, range.count - done, off_t(range.lowerBound + done))
            if n < 0 {
                let errno = Errno(rawValue: Glibc.errno)
                if errno == .interrupted { continue }
                throw StorageError.systemCall("pread", errno, path: path)
            }
            if n == 0 {
                throw StorageError(code: .ioError, message: "the file ended at \(range.lowerBound + done) inside a published range", path: path)
            }
            done += n
        }
    }

    /// Writes an array of bytes at `offset`.
    func write(_ bytes: [UInt8], at offset: Int) throws(StorageError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(StorageError) in try write(raw, at: offset) } }
        try result.get()
    }

    /// Writes the buffers described by `iovecs` contiguously from `offset`, retrying short writes.
    /// `iovecs` is consumed (advanced) as the data goes out.
    func write(_ iovecs: inout [iovec], at offset: Int) throws(StorageError) {
        var position = offset
        var first = 0
        while first < iovecs.count {
            let count = Int32(min(iovecs.count - first, 1024))
            let n = iovecs.withUnsafeBufferPointer { pwritev(descriptor.rawValue, $0.baseAddress! + first, count, off_t(position)) }
            if n < 0 {
                let errno = Errno(rawValue: Glibc.errno)
                if errno == .interrupted { continue }
                throw StorageError.systemCall("pwritev", errno, path: path)
            }
            position += n
            var remaining = n
            while remaining > 0, first < iovecs.count {
                if remaining >= iovecs[first].iov_len {
                    remaining -= iovecs[first].iov_len
                    first += 1
                } else {
                    iovecs[first].iov_base += remaining
                    iovecs[first].iov_len -= remaining
                    remaining = 0
                }
            }
            while first < iovecs.count, iovecs[first].iov_len == 0 { first += 1 }
        }
    }

    /// Forces written data to disk.
    func sync() throws(StorageError) {
        while fdatasync(descriptor.rawValue) != 0 {
            let errno = Errno(rawValue: Glibc.errno)
            if errno != .interrupted { throw StorageError.systemCall("fdatasync", errno, path: path) }
        }
    }

    /// Sets the file's size; used to drop a torn or failed tail, never below published data.
    func truncate(to size: Int) throws(StorageError) {
        while ftruncate(descriptor.rawValue, off_t(size)) != 0 {
            let errno = Errno(rawValue: Glibc.errno)
            if errno != .interrupted { throw StorageError.systemCall("ftruncate", errno, path: path) }
        }
    }
}

/// File-system operations on paths, mapped to ``StorageError``.
enum FileSystem {
    static func createDirectory(_ path: FilePath) throws(StorageError) {
        var prefix = FilePath(path.root?.string ?? "")
        for component in path.components {
            prefix.append(component)
            if mkdir(prefix.string, 0o700) != 0 {
                let errno = Errno(rawValue: Glibc.errno)
                if errno != .fileExists { throw StorageError.systemCall("mkdir", errno, path: prefix) }
            }
        }
    }

    static func exists(_ path: FilePath) -> Bool {
        access(path.string, F_OK) == 0
    }

    static func remove(_ path: FilePath) throws(StorageError) {
        if unlink(path.string) != 0 {
            let errno = Errno(rawValue: Glibc.errno)
            if errno != .noSuchFileOrDirectory { throw StorageError.systemCall("unlink", errno, path: path) }
        }
    }

    static func rename(_ from: FilePath, to: FilePath) throws(StorageError) {
        if Glibc.rename(from.string, to.string) != 0 {
            throw StorageError.systemCall("rename", Errno(rawValue: Glibc.errno), path: from)
        }
    }

    static func listDirectory(_ path: FilePath) throws(StorageError) -> [String] {
        guard let dir = opendir(path.string) else {
            throw StorageError.systemCall("opendir", Errno(rawValue: Glibc.errno), path: path)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// fsyncs a directory so that created, renamed and removed entries survive a crash.
    static func syncDirectory(_ path: FilePath) throws(StorageError) {
        let fd = open(path.string, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StorageError.systemCall("open", Errno(rawValue: Glibc.errno), path: path) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw StorageError.systemCall("fsync", Errno(rawValue: Glibc.errno), path: path) }
    }

    /// Writes a small file atomically: a temporary file, fsync, rename, directory fsync.
    static func writeAtomically(_ contents: String, to path: FilePath, directory: FilePath) throws(StorageError) {
        try writeAtomically(bytes: Array(contents.utf8), to: path, directory: directory)
    }

    /// Writes a file atomically: a temporary file, fsync, rename, directory fsync.
    static func writeAtomically(bytes: [UInt8], to path: FilePath, directory: FilePath) throws(StorageError) {
        let temporary = FilePath(path.string + ".tmp")
        let file = try MappedFile(path: temporary, options: [.create, .truncate], capacity: 0)
        try file.write(bytes, at: 0)
        try file.sync()
        try rename(temporary, to: path)
        try syncDirectory(directory)
    }

    /// The whole contents of a file, or `nil` if it cannot be read.
    static func readFile(_ path: FilePath) -> [UInt8]? {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return nil }
        defer { try? fd.close() }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            guard let n = try? buffer.withUnsafeMutableBytes({ try fd.read(into: $0) }) else { return nil }
            if n == 0 { return result }
            result.append(contentsOf: buffer[..<n])
        }
    }

    static func readSmallFile(_ path: FilePath) -> String? {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return nil }
        defer { try? fd.close() }
        var buffer = [UInt8](repeating: 0, count: 4096)
        guard let n = try? buffer.withUnsafeMutableBytes({ try fd.read(into: $0) }) else { return nil }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }

    /// Copies the first `length` bytes of `source` (from its map) into a new, fsynced file at `destination`.
    static func copyPrefix(of source: MappedFile, length: Int, to destination: FilePath) throws(StorageError) -> MappedFile {
        let target = try MappedFile(path: destination, options: [.create, .truncate], capacity: 0)
        let chunk = 8 << 20
        var copied = 0
        while copied < length {
            let end = min(length, copied + chunk)
            try target.write(source.bytes(copied..<end), at: copied)
            copied = end
        }
        try target.sync()
        return target
    }
}
