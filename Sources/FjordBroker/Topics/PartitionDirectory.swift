import FjordProto
import Foundation
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A partition's directory under `logs/` and the topic incarnation that owns it.
///
/// Every partition directory holds a `topic-id` file naming the id of the topic that made it. A
/// topic opens only a directory stamped with its own id (or an unstamped one, which it stamps): a
/// directory left behind by an earlier topic of the same name is moved aside as
/// `<topic>-<n>.<its id>.stray` and never served as the new topic's records.
///
/// Deleting a topic renames each of its directories to `<topic>-<n>.<topic id>.deleted` before
/// the metadata forgets the topic, so a deletion cut short by a crash is finished at the next
/// start (``deletedTopicIDs(in:)``). All functions here do blocking file I/O: call them on the
/// storage thread pool.
enum PartitionDirectory {
    /// The file naming the owning topic's id.
    static let topicIDFileName = "topic-id"
    /// Suffix (after the topic id) of a deleted partition's directory until it is removed.
    static let deletedSuffix = ".deleted"
    /// Suffix (after the old topic id) of a directory some other incarnation left behind.
    static let straySuffix = ".stray"

    /// Makes `directory` belong to topic `topicID`, creating and stamping it as needed. A directory
    /// stamped with another id is renamed aside first (with a warning), so the topic starts empty.
    static func claim(_ directory: FilePath, topicID: String, logger: Logger) throws(BrokerError) {
        let stamp = directory.appending(topicIDFileName).string
        if let owner = try? String(contentsOfFile: stamp, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) {
            if owner == topicID { return }
            let aside = uniquePath(directory.string + ".\(owner.isEmpty ? "unknown" : owner)" + straySuffix)
            guard rename(directory.string, aside) == 0 else {
                throw failure("moving aside \(directory), which belongs to topic id \(owner)", errno)
            }
            logger.warning(
                "moved aside a partition directory left by an earlier topic of the same name; remove it once it is not needed",
                metadata: ["directory": "\(aside)", "topic.id.old": "\(owner)", "topic.id": "\(topicID)"])
        }
        if mkdir(directory.string, 0o700) != 0, errno != EEXIST {
            throw failure("creating \(directory)", errno)
        }
        try writeDurably(topicID + "\n", to: stamp)
    }

    /// Renames `directory` to its deleted name and returns that name; `nil` when it is not there.
    static func markDeleted(_ directory: FilePath, topicID: String) throws(BrokerError) -> String? {
        let target = deletedPath(directory, topicID: topicID)
        if rename(directory.string, target) == 0 { return target }
        if errno == ENOENT { return nil }
        throw failure("renaming \(directory) to \(target)", errno)
    }

    /// `<directory>.<topic id>.deleted`.
    static func deletedPath(_ directory: FilePath, topicID: String) -> String {
        directory.string + ".\(topicID)" + deletedSuffix
    }

    /// The topic ids named by `*.deleted` directories in `logs`: deletions a crash interrupted.
    static func deletedTopicIDs(in logs: FilePath) -> Set<String> {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: logs.string)) ?? []
        var ids = Set<String>()
        for name in names where name.hasSuffix(deletedSuffix) {
            let parts = name.dropLast(deletedSuffix.count).split(separator: ".")
            if parts.count >= 2, let id = parts.last { ids.insert(String(id)) }
        }
        return ids
    }

    /// Removes every `*.deleted` directory in `logs`; failures are logged, not thrown.
    static func removeDeleted(in logs: FilePath, logger: Logger) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: logs.string)) ?? []
        for name in names where name.hasSuffix(deletedSuffix) {
            let path = logs.appending(name).string
            do { try FileManager.default.removeItem(atPath: path) } catch {
                logger.warning("removing a deleted partition's directory failed", metadata: ["directory": "\(path)", "error": "\(error)"])
            }
        }
    }

    /// Makes renames and creations of entries in `directory` durable.
    static func syncDirectory(_ directory: FilePath) {
        guard let descriptor = try? FileDescriptor.open(directory, .readOnly, options: [.closeOnExec]) else { return }
        _ = fsync(descriptor.rawValue)
        try? descriptor.close()
    }

    private static func writeDurably(_ text: String, to path: String) throws(BrokerError) {
        let temporary = path + ".tmp"
        do {
            let descriptor = try FileDescriptor.open(
                FilePath(temporary), .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: [.ownerReadWrite])
            try descriptor.closeAfter {
                _ = try descriptor.writeAll(Array(text.utf8))
                guard fsync(descriptor.rawValue) == 0 else { throw Errno(rawValue: errno) }
            }
        } catch {
            throw BrokerError(.storageError, "writing \(path) failed: \(error)")
        }
        guard Glibc.rename(temporary, path) == 0 else { throw failure("renaming \(temporary) to \(path)", errno) }
    }

    private static func uniquePath(_ path: String) -> String {
        var candidate = path
        var counter = 1
        while FileManager.default.fileExists(atPath: candidate) {
            candidate = "\(path).\(counter)"
            counter += 1
        }
        return candidate
    }

    private static func failure(_ what: String, _ code: Int32) -> BrokerError {
        BrokerError(.storageError, "\(what) failed: \(String(cString: strerror(code)))")
    }
}
