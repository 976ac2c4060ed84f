#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage

/// Small blocking file helpers that report failures as ``TLSConfigurationError``.
enum FileIO {
    /// PEM files larger than this are refused rather than read into memory.
    static let maximumFileSize = 16 << 20

    /// Reads a whole file.
    static func read(_ path: String) throws(TLSConfigurationError) -> [UInt8] {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        } catch {
            throw failure(error, reading: path)
        }
        defer { try? descriptor.close() }

        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { try descriptor.read(into: $0, retryOnInterrupt: true) }
            } catch {
                throw failure(error, reading: path)
            }
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[..<count])
            guard contents.count <= maximumFileSize else {
                throw TLSConfigurationError(
                    code: .unreadableFile, message: "file is larger than \(maximumFileSize) bytes", path: path)
            }
        }
    }

    /// Whether `path` names a regular file (following symbolic links).
    static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// Creates `path` with `permissions` if it is missing, creating missing parents (0755) too.
    static func makeDirectory(_ path: String, permissions: FilePermissions) throws(TLSConfigurationError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw TLSConfigurationError(code: .unwritableFile, message: "not a directory", path: path)
            }
            return
        }
        let parent = FilePath(path).removingLastComponent()
        if !parent.isEmpty, parent.string != path {
            try makeDirectory(parent.string, permissions: [.ownerReadWriteExecute, .groupReadExecute, .otherReadExecute])
        }
        if mkdir(path, mode_t(permissions.rawValue)) != 0 {
            let error = Errno(rawValue: errno)
            guard error == .fileExists else {
                throw TLSConfigurationError.wrapping(.unwritableFile, "cannot create directory", path: path, error)
            }
        }
    }

    /// Writes `contents` to `path` atomically: a temporary file in the same directory, flushed, then renamed.
    static func writeAtomically(
        _ contents: String, to path: String, permissions: FilePermissions
    ) throws(TLSConfigurationError) {
        let target = FilePath(path)
        let fileName = target.lastComponent?.string ?? "file"
        let temporary = target.removingLastComponent()
            .appending(".\(fileName).\(UInt32.random(in: 0 ... .max)).tmp").string
        do {
            let descriptor = try FileDescriptor.open(
                FilePath(temporary), .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec],
                permissions: permissions)
            do {
                try descriptor.closeAfter {
                    _ = try descriptor.writeAll(Array(contents.utf8))
                    // The mode given to open is reduced by the umask; set it exactly.
                    if fchmod(descriptor.rawValue, mode_t(permissions.rawValue)) != 0 { throw Errno(rawValue: errno) }
                    if fsync(descriptor.rawValue) != 0 { throw Errno(rawValue: errno) }
                }
                if rename(temporary, path) != 0 { throw Errno(rawValue: errno) }
            } catch {
                _ = unlink(temporary)
                throw error
            }
        } catch {
            throw TLSConfigurationError.wrapping(.unwritableFile, "cannot write file", path: path, error)
        }
    }

    /// Joins a directory and a file name.
    static func join(_ directory: String, _ name: String) -> String {
        FilePath(directory).appending(name).string
    }

    private static func failure(_ error: any Error, reading path: String) -> TLSConfigurationError {
        if let errno = error as? Errno, errno == .noSuchFileOrDirectory {
            return TLSConfigurationError(
                code: .fileNotFound, message: "file not found", path: path,
                underlyingErrorDescription: String(describing: errno))
        }
        return TLSConfigurationError.wrapping(.unreadableFile, "cannot read file", path: path, error)
    }
}
